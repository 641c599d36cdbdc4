//! An installation's identity as people compare and paste it: the SHA-256 of its public key,
//! in base32, cut into groups, with a check character per quarter so that a typo, a
//! swapped pair or a pasted invisible character is caught rather than trusted.
//!
//! ```text
//! AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG-HHHHHHH
//! 4 × (13 base32 characters of the hash + 1 Luhn mod 32 check character), shown as 8 × 7
//! ```

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The base32 alphabet of RFC 4648: no 0/1/8, which are easily read as O/I/B.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Base32 characters of the hash (256 bits, the last character carrying 1 bit).
const HASH_CHARS: usize = 52;
/// The hash's characters are checked in this many chunks, each followed by its check char.
const CHUNKS: usize = 4;
const CHUNK: usize = HASH_CHARS / CHUNKS;
/// Characters in the written form, without separators.
const ID_CHARS: usize = HASH_CHARS + CHUNKS;
/// Characters per group in the written form.
const GROUP: usize = 7;

/// An identity: the SHA-256 of a public key (the key, not its certificate, so that a
/// certificate can be renewed without changing the identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity([u8; 32]);

/// Why a text is not an identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A character that is not in the alphabet (after upper-casing), such as a pasted
    /// invisible one; positions count characters from 1.
    #[error("character {position} ({found:?}) is not part of an identity")]
    BadChar {
        /// Its position in the text, from 1.
        position: usize,
        /// The character.
        found: char,
    },
    /// Too few or too many characters.
    #[error("an identity has {ID_CHARS} characters (without dashes), this has {0}")]
    Length(usize),
    /// A check character does not match: a typo in that quarter of the identity.
    #[error("typo in the identity: group {first} or {} does not check out", .first + 1)]
    Check {
        /// The first of the two groups (of the written form, from 1) the check covers.
        first: usize,
    },
}

impl Identity {
    /// The identity of a public key, given as its DER-encoded SubjectPublicKeyInfo.
    pub fn of_public_key(spki_der: &[u8]) -> Identity {
        Identity(Sha256::digest(spki_der).into())
    }

    /// The hash itself.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for log lines: the first group.
    pub fn short(&self) -> String {
        self.to_string()[..GROUP].to_string()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = base32(&self.0);
        let mut chars = Vec::with_capacity(ID_CHARS);
        for chunk in hash.chunks(CHUNK) {
            chars.extend_from_slice(chunk);
            chars.push(luhn32(chunk));
        }
        for (i, group) in chars.chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // The alphabet is ASCII.
            f.write_str(std::str::from_utf8(group).unwrap_or_default())?;
        }
        Ok(())
    }
}

impl FromStr for Identity {
    type Err = IdError;

    /// Reads an identity as shown, in any case, with or without its dashes; spaces around
    /// it are ignored, any other character is an error, and so is a failed check.
    fn from_str(text: &str) -> Result<Identity, IdError> {
        let mut chars = Vec::with_capacity(ID_CHARS);
        for (i, c) in text.trim().chars().enumerate() {
            match c.to_ascii_uppercase() {
                '-' => {}
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => chars.push(c as u8),
                _ => {
                    return Err(IdError::BadChar {
                        position: i + 1,
                        found: c,
                    });
                }
            }
        }
        if chars.len() != ID_CHARS {
            return Err(IdError::Length(chars.len()));
        }
        let mut hash = Vec::with_capacity(HASH_CHARS);
        for (i, chunk) in chars.chunks(CHUNK + 1).enumerate() {
            let (body, check) = chunk.split_at(CHUNK);
            if luhn32(body) != check[0] {
                // Chunk i covers groups 2i+1 and 2i+2 of the written form.
                return Err(IdError::Check { first: 2 * i + 1 });
            }
            hash.extend_from_slice(body);
        }
        unbase32(&hash).map(Identity).ok_or(IdError::Check {
            first: CHUNKS * 2 - 1,
        })
    }
}

/// RFC 4648 base32 of 32 bytes, without padding: 52 characters.
fn base32(bytes: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HASH_CHARS);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize]);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize]);
    }
    out
}

/// The inverse of [`base32`]; `None` if the unused low bits of the last character are set.
fn unbase32(chars: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let (mut acc, mut bits, mut n) = (0u32, 0, 0);
    for &c in chars {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 32 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// The Luhn mod 32 check character of `chars` (Wikipedia's "Luhn mod N algorithm"): it
/// catches every single-character error and most swaps of neighbours.
fn luhn32(chars: &[u8]) -> u8 {
    let n = 32;
    let mut factor = 2;
    let mut sum = 0;
    for &c in chars.iter().rev() {
        let code = ALPHABET.iter().position(|&a| a == c).unwrap_or(0);
        let addend = factor * code;
        factor = if factor == 2 { 1 } else { 2 };
        sum += addend / n + addend % n;
    }
    ALPHABET[(n - sum % n) % n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> Identity {
        Identity::of_public_key(&[seed; 44])
    }

    #[test]
    fn written_form_reads_back() {
        for seed in 0..=255 {
            let id = id(seed);
            let text = id.to_string();
            assert_eq!(text.len(), ID_CHARS + ID_CHARS / GROUP - 1, "{text}");
            assert_eq!(text.split('-').count(), 8);
            assert_eq!(text.parse::<Identity>(), Ok(id));
            assert_eq!(text.to_lowercase().parse::<Identity>(), Ok(id));
            assert_eq!(text.replace('-', "").parse::<Identity>(), Ok(id));
            assert_eq!(format!("  {text}\n").parse::<Identity>(), Ok(id));
            assert_eq!(id.short(), text[..7]);
        }
        // A known value, so the format cannot drift: the hash characters of SHA-256("") are
        // its RFC 4648 base32 (as Python's base64.b32encode writes it, less the padding).
        let text = Identity::of_public_key(b"").to_string().replace('-', "");
        let hash: String = text
            .as_bytes()
            .chunks(CHUNK + 1)
            .map(|chunk| std::str::from_utf8(&chunk[..CHUNK]).unwrap())
            .collect();
        assert_eq!(hash, "4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ");
    }

    #[test]
    fn every_single_typo_is_caught() {
        let text = id(7).to_string();
        for (i, c) in text.char_indices().filter(|(_, c)| *c != '-') {
            for other in ALPHABET.iter().map(|&a| a as char).filter(|&a| a != c) {
                let mut typo = text.clone();
                typo.replace_range(i..i + 1, &other.to_string());
                assert!(typo.parse::<Identity>().is_err(), "{typo} passed");
            }
        }
    }

    #[test]
    fn pasted_junk_is_named() {
        let text = id(9).to_string();
        let cases = [
            (
                format!("{}\u{200b}{}", &text[..3], &text[3..]),
                4,
                '\u{200b}',
            ),
            (format!("{}0{}", &text[..3], &text[4..]), 4, '0'),
            (format!("{} {}", &text[..8], &text[8..]), 9, ' '),
        ];
        for (bad, position, found) in cases {
            assert_eq!(
                bad.parse::<Identity>(),
                Err(IdError::BadChar { position, found }),
                "{bad:?}"
            );
        }
        assert_eq!(text[..20].parse::<Identity>(), Err(IdError::Length(18)));
        let swapped = {
            let mut chars: Vec<char> = text.chars().collect();
            chars.swap(0, 1);
            chars.into_iter().collect::<String>()
        };
        if swapped != text {
            assert!(swapped.parse::<Identity>().is_err(), "{swapped}");
        }
    }
}
