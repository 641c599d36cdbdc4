//! Pairing: a first contact proven by a short code instead of compared identities. The
//! server's operator gets a [`Code`] (`17-apple-orbit-crane`: a number that names the pairing
//! on the LAN, then three words of BIP-39's list, 33 bits); the client's user types it. Inside
//! the TLS session both ends run SPAKE2 over the code, with both identities in its transcript
//! and the TLS channel (an exporter) in the confirmations, and confirm explicitly both ways:
//! the client pins the server, the server trusts the client, and only then do files go.
//!
//! ```text
//! client                                          server
//!   | PAIR (0x18): number u16, label (u8 length +    |  the code is spent, right or wrong
//!   |   UTF-8), SPAKE2 message (33 bytes)            |
//!   | ---------------------------------------------> |
//!   | PAIR_REPLY (0x19): 0, SPAKE2 message, the      |
//!   |   server's confirmation (32); or 1 and why     |
//!   | <--------------------------------------------- |
//!   | PAIR_CONFIRM (0x1a): the client's (32)         |  checked
//!   | ---------------------------------------------> |
//!   | PAIRED (0x1b): 0; or 1 and why                 |  trusted from now on
//!   | <--------------------------------------------- |
//! ```
//!
//! What a code proves: that whoever answers holds it. Someone who saw it before it was used
//! can pair in its place; a code works once (a wrong one spends it too), so that shows.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use spake2::{Ed25519Group, Identity as SpakeId, Password, Spake2};

use super::id::Identity;
use crate::batch::frame::{self, Frame};
use crate::net::{Conn, Deadline};

/// BIP-39's English list: 2,048 words, sorted, 11 bits each.
const WORD_LIST: &str = include_str!("words.txt");
/// Words in a code: 33 bits besides the number.
pub const CODE_WORDS: usize = 3;
/// The largest number a code starts with.
pub const MAX_NUMBER: u16 = 999;
/// How long a code is good for, unless told (`--pair-timeout`).
pub const DEFAULT_PAIR_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest label a client may give itself, in bytes.
pub const MAX_LABEL: usize = 64;

/// The client's offer: number, label, SPAKE2 message.
pub const PAIR: u32 = 0x18;
/// The server's answer: its SPAKE2 message and confirmation, or why not.
pub const PAIR_REPLY: u32 = 0x19;
/// The client's confirmation.
pub const PAIR_CONFIRM: u32 = 0x1a;
/// The server's last word: paired, or why not.
pub const PAIRED: u32 = 0x1b;

/// The length of a SPAKE2 message over Ed25519 (a side byte and a point).
const SPAKE_MSG: usize = 33;
/// The label of the TLS exporter bound into the confirmations.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-fup-pairing";

fn words() -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| WORD_LIST.split_whitespace().collect())
}

/// A pairing code: `N-word-word-word`.
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    number: u16,
    words: [u16; CODE_WORDS],
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The words are the secret.
        write!(f, "Code({}-…)", self.number)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number)?;
        for &word in &self.words {
            write!(f, "-{}", words()[usize::from(word)])?;
        }
        Ok(())
    }
}

/// Why a typed code is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not a number and three words, joined by `-`.
    #[error("a pairing code is a number and {CODE_WORDS} words, such as 17-apple-orbit-crane")]
    Shape,
    /// The number is out of range.
    #[error("a pairing code starts with a number from 1 to {MAX_NUMBER}")]
    Number,
    /// A word is not in the list.
    #[error("\"{0}\" is not a word of pairing codes (check its spelling)")]
    Word(String),
}

impl FromStr for Code {
    type Err = CodeError;

    /// Reads a code as people type it: any case, spaces around, `-` or spaces between.
    fn from_str(text: &str) -> Result<Code, CodeError> {
        let lower = text.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower
            .split(|c: char| c == '-' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .collect();
        let [number, typed @ ..] = parts.as_slice() else {
            return Err(CodeError::Shape);
        };
        if typed.len() != CODE_WORDS {
            return Err(CodeError::Shape);
        }
        if number.len() > 3 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Number);
        }
        let number: u16 = number.parse().map_err(|_| CodeError::Number)?;
        if !(1..=MAX_NUMBER).contains(&number) {
            return Err(CodeError::Number);
        }
        let mut code = Code {
            number,
            words: [0; CODE_WORDS],
        };
        for (slot, word) in code.words.iter_mut().zip(typed) {
            let at = words()
                .binary_search(word)
                .map_err(|_| CodeError::Word(crate::text::from_peer(word)))?;
            *slot = u16::try_from(at).map_err(|_| CodeError::Shape)?;
        }
        Ok(code)
    }
}

impl Code {
    /// A new code from the system's random numbers.
    pub fn generate() -> Code {
        let mut random = [0u8; 2 * (CODE_WORDS + 1)];
        getrandom::fill(&mut random).expect("the system's random numbers are unavailable");
        let at = |i: usize| u16::from_le_bytes([random[2 * i], random[2 * i + 1]]);
        // 1 to 999 (a bias of under 2%, on a number that is no secret).
        let number = at(0) % MAX_NUMBER + 1;
        let mut words = [0; CODE_WORDS];
        for (i, word) in words.iter_mut().enumerate() {
            *word = at(i + 1) & 0x7ff;
        }
        Code { number, words }
    }

    /// The number that names it on the LAN (no secret).
    pub fn number(&self) -> u16 {
        self.number
    }

    /// What SPAKE2 runs over: the whole code, as written.
    fn password(&self) -> Password {
        Password::new(self.to_string().as_bytes())
    }
}

/// What both ends bind into the exchange: who each one is, and the TLS channel they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The client's identity (its TLS certificate's key).
    pub client: Identity,
    /// The server's identity.
    pub server: Identity,
    /// The TLS session's exporter ([`EXPORTER_LABEL`]): a relay between two TLS sessions
    /// has two different ones.
    pub channel: [u8; 32],
}

impl Binding {
    fn ids(&self) -> (SpakeId, SpakeId) {
        let id = |side: &[u8], id: &Identity| SpakeId::new(&[side, id.as_bytes()].concat());
        (
            id(b"fup pairing client ", &self.client),
            id(b"fup pairing server ", &self.server),
        )
    }

    /// The two confirmations, from SPAKE2's key and both messages.
    fn confirmations(&self, key: &[u8], client_msg: &[u8], server_msg: &[u8]) -> Confirmations {
        let mut material = Vec::with_capacity(key.len() + 32);
        material.extend_from_slice(key);
        material.extend_from_slice(&self.channel);
        let mac_key = blake3::derive_key("fup pairing 1 confirmation", &material);
        let confirm = |side: &[u8]| {
            let mut mac = blake3::Hasher::new_keyed(&mac_key);
            mac.update(side);
            mac.update(client_msg);
            mac.update(server_msg);
            mac.finalize()
        };
        Confirmations {
            server: confirm(b"server"),
            client: confirm(b"client"),
        }
    }
}

/// Both ends' confirmations (compared in constant time: `blake3::Hash`'s equality is).
struct Confirmations {
    server: blake3::Hash,
    client: blake3::Hash,
}

/// Why a pairing failed.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// The connection failed, or a message was malformed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server has no code open (none asked for, spent, or expired).
    #[error("the server refused to pair: {0}")]
    Refused(String),
    /// The confirmations did not match: a wrong code, another server's code, or someone in
    /// between.
    #[error("the code did not match")]
    Mismatch,
    /// The server speaks a secure mode older than pairing.
    #[error("the server speaks secure mode {0}, which has no pairing: it needs fup 2.2 or later")]
    TooOld(u16),
}

/// The client's side, on a secure link whose TLS is up: offers `code` as `label`, checks the
/// server's confirmation, sends its own, and waits for the server's word. On `Ok`, the
/// server trusts this client, and the client may pin the server.
///
/// # Errors
///
/// [`PairError::Mismatch`] for a wrong code (or a relay), [`PairError::Refused`] with the
/// server's reason, or the link's error.
pub fn client<L: Read + Write>(
    link: &mut L,
    code: &Code,
    label: &str,
    binding: &Binding,
) -> Result<(), PairError> {
    let (id_a, id_b) = binding.ids();
    let (state, mine) = Spake2::<Ed25519Group>::start_a(&code.password(), &id_a, &id_b);
    let label = cut_label(label);
    let mut body = Vec::with_capacity(3 + label.len() + mine.len());
    body.extend_from_slice(&code.number.to_le_bytes());
    body.push(label.len() as u8);
    body.extend_from_slice(label.as_bytes());
    body.extend_from_slice(&mine);
    frame::send(link, PAIR, 0, true, &body)?;
    link.flush()?;
    let reply = read(link, PAIR_REPLY)?;
    let (theirs, confirm) = match reply.split_first() {
        Some((0, rest)) if rest.len() == SPAKE_MSG + 32 => rest.split_at(SPAKE_MSG),
        Some((1, why)) => return Err(PairError::Refused(crate::text::from_peer_bytes(why))),
        _ => return Err(malformed()),
    };
    let key = state.finish(theirs).map_err(|_| PairError::Mismatch)?;
    let expected = binding.confirmations(&key, &mine, theirs);
    let matched = expected.server == blake3::Hash::from_slice(confirm).map_err(|_| malformed())?;
    // Sent either way, so that the server knows the try failed (this confirmation, from a
    // key the two do not share, tells it nothing about the code).
    frame::send(link, PAIR_CONFIRM, 0, true, expected.client.as_bytes())?;
    link.flush()?;
    if !matched {
        return Err(PairError::Mismatch);
    }
    let last = read(link, PAIRED)?;
    match last.split_first() {
        Some((0, [])) => Ok(()),
        Some((1, why)) => Err(PairError::Refused(crate::text::from_peer_bytes(why))),
        _ => Err(malformed()),
    }
}

/// A client's offer, as the server read it.
#[derive(Debug)]
pub struct Offer {
    /// The number it names.
    pub number: u16,
    /// The label it gives itself (as sent; escape it where it is shown).
    pub label: String,
    message: Vec<u8>,
}

/// Reads a PAIR frame's body (its header read already: `len` bytes follow).
///
/// # Errors
///
/// If it is malformed or over its bounds.
pub fn read_offer(link: &mut impl Read, len: u32) -> Result<Offer, PairError> {
    let limit = 3 + MAX_LABEL + SPAKE_MSG;
    let body = frame::read_body(link, len, limit as u64)?;
    let (number, rest) = body.split_at_checked(2).ok_or_else(malformed)?;
    let (&label_len, rest) = rest.split_first().ok_or_else(malformed)?;
    let (label, message) = rest
        .split_at_checked(usize::from(label_len))
        .ok_or_else(malformed)?;
    if message.len() != SPAKE_MSG {
        return Err(malformed());
    }
    Ok(Offer {
        number: u16::from_le_bytes([number[0], number[1]]),
        label: String::from_utf8_lossy(label).into_owned(),
        message: message.to_vec(),
    })
}

/// The server's side, for an `offer` read and the code it had open (`Err`: none, with the
/// reason to tell): answers, reads the client's confirmation by `deadline` and checks it. On
/// `Ok` the server should trust the client; its last word ([`finish`]) is sent by the caller
/// once it has done so.
///
/// # Errors
///
/// [`PairError::Mismatch`] for a wrong code (the client is told), [`PairError::Refused`]
/// when no code is open, or the link's error.
pub fn server<C: Conn>(
    link: &mut C,
    offer: &Offer,
    code: Result<&Code, &str>,
    binding: &Binding,
    deadline: Deadline,
) -> Result<(), PairError> {
    let code = match code {
        Ok(code) => code,
        Err(why) => {
            send_word(link, PAIR_REPLY, Err(why))?;
            return Err(PairError::Refused(why.to_string()));
        }
    };
    let (id_a, id_b) = binding.ids();
    let (state, mine) = Spake2::<Ed25519Group>::start_b(&code.password(), &id_a, &id_b);
    // A message that is not a point ends it like a wrong code.
    let Ok(key) = state.finish(&offer.message) else {
        send_word(link, PAIR_REPLY, Err("the code did not match"))?;
        return Err(PairError::Mismatch);
    };
    let expected = binding.confirmations(&key, &offer.message, &mine);
    let mut reply = Vec::with_capacity(1 + SPAKE_MSG + 32);
    reply.push(0);
    reply.extend_from_slice(&mine);
    reply.extend_from_slice(expected.server.as_bytes());
    frame::send(link, PAIR_REPLY, 0, true, &reply)?;
    link.flush()?;
    let confirm = read(&mut deadline.reader(link), PAIR_CONFIRM)?;
    let theirs = blake3::Hash::from_slice(&confirm).map_err(|_| malformed())?;
    // A wrong number is a wrong code too: it was meant for another server.
    if theirs != expected.client || offer.number != code.number {
        // The client may be gone already: the try failed either way.
        let _ = send_word(link, PAIRED, Err("the code did not match"));
        return Err(PairError::Mismatch);
    }
    Ok(())
}

/// The server's last word to a client that confirmed: paired, or why not after all.
///
/// # Errors
///
/// If the link fails.
pub fn finish(link: &mut impl Write, paired: Result<(), &str>) -> io::Result<()> {
    send_word(link, PAIRED, paired)
}

fn send_word(link: &mut impl Write, kind: u32, word: Result<(), &str>) -> io::Result<()> {
    let body = match word {
        Ok(()) => vec![0],
        Err(why) => [&[1][..], crate::text::cut(why, 200).as_bytes()].concat(),
    };
    frame::send(link, kind, 0, true, &body)?;
    link.flush()
}

/// Reads one frame of `kind` (a small body).
fn read(link: &mut impl Read, kind: u32) -> io::Result<Vec<u8>> {
    let head =
        Frame::read_from(link)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    if head.kind != kind {
        return Err(malformed_io());
    }
    frame::read_body(link, head.len, 1024)
}

fn malformed_io() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a malformed pairing message")
}

fn malformed() -> PairError {
    PairError::Io(malformed_io())
}

/// `label` cut to [`MAX_LABEL`] bytes, on a character's boundary.
fn cut_label(label: &str) -> &str {
    let mut end = label.len().min(MAX_LABEL);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// The server's pairing: the one code open at a time, until it is used (right or wrong) or
/// expires.
#[derive(Debug)]
pub struct Pairing {
    open: Mutex<Option<(Code, Instant)>>,
    timeout: Duration,
}

/// Why no code could be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// None was opened, or it was used.
    None,
    /// It expired.
    Expired,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Closed::None => "no pairing code is open on this server (each works once)",
            Closed::Expired => "the pairing code expired",
        })
    }
}

impl Pairing {
    /// Pairing with codes good for `timeout` each; none open yet.
    pub fn new(timeout: Duration) -> Pairing {
        Pairing {
            open: Mutex::new(None),
            timeout,
        }
    }

    /// Opens a new code (any other one is closed) and returns it.
    pub fn open(&self) -> Code {
        let code = Code::generate();
        let until = Instant::now() + self.timeout;
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = Some((code.clone(), until));
        code
    }

    /// How long a code is good for.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The open code's number, if one is open and fresh (for announcing it).
    pub fn number(&self) -> Option<u16> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.as_ref()
            .filter(|(_, until)| Instant::now() <= *until)
            .map(|(code, _)| code.number())
    }

    /// Takes the open code for one try: from now on it is spent, whatever the try gives.
    ///
    /// # Errors
    ///
    /// Why there is none.
    pub fn take(&self) -> Result<Code, Closed> {
        let taken = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match taken {
            None => Err(Closed::None),
            Some((_, until)) if Instant::now() > until => Err(Closed::Expired),
            Some((code, _)) => Ok(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(channel: u8) -> Binding {
        Binding {
            client: Identity::of_public_key(b"client"),
            server: Identity::of_public_key(b"server"),
            channel: [channel; 32],
        }
    }

    #[test]
    fn codes_read_back_and_carry_33_bits() {
        assert_eq!(words().len(), 2048);
        for _ in 0..100 {
            let code = Code::generate();
            assert!((1..=MAX_NUMBER).contains(&code.number()));
            let text = code.to_string();
            assert_eq!(text.split('-').count(), 4, "{text}");
            assert_eq!(text.parse::<Code>().unwrap(), code);
            assert_eq!(
                text.to_uppercase()
                    .replace('-', " ")
                    .parse::<Code>()
                    .unwrap(),
                code
            );
        }
        assert!(
            !format!("{:?}", "7-abandon-ability-able".parse::<Code>().unwrap()).contains("abandon")
        );
        assert_eq!("7-abandon-ability".parse::<Code>(), Err(CodeError::Shape));
        assert_eq!(
            "0-abandon-ability-able".parse::<Code>(),
            Err(CodeError::Number)
        );
        assert_eq!(
            "1000-abandon-ability-able".parse::<Code>(),
            Err(CodeError::Number)
        );
        assert_eq!(
            "7-abandon-ability-zzz".parse::<Code>(),
            Err(CodeError::Word("zzz".into()))
        );
    }

    /// Runs both sides over a socket pair: the client's result and the server's.
    fn pair(
        client_code: &str,
        server_code: Option<&str>,
        client_binding: Binding,
        server_binding: Binding,
    ) -> (Result<(), PairError>, Result<(), PairError>) {
        let (mut a, mut b) = crate::testing::socket_pair();
        let server_code = server_code.map(|c| c.parse::<Code>().unwrap());
        let server = std::thread::spawn(move || {
            let head = Frame::read_from(&mut b).unwrap().unwrap();
            assert_eq!(head.kind, PAIR);
            let offer = read_offer(&mut b, head.len)?;
            let deadline = Deadline::after(Duration::from_secs(10));
            let code = server_code.as_ref().ok_or("none open");
            server(&mut b, &offer, code, &server_binding, deadline)?;
            finish(&mut b, Ok(()))?;
            Ok(())
        });
        let client = client(
            &mut a,
            &client_code.parse().unwrap(),
            "laptop",
            &client_binding,
        );
        // A client that gives up closes its end, as a program does when it exits.
        drop(a);
        (client, server.join().unwrap())
    }

    #[test]
    fn the_right_code_pairs_and_anything_else_does_not() {
        let code = "17-apple-orbit-crane";
        let (c, s) = pair(code, Some(code), binding(1), binding(1));
        assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
        // A wrong code, another server's code (another number), no code open.
        let (c, s) = pair(code, Some("17-apple-orbit-crawl"), binding(1), binding(1));
        assert!(matches!(c, Err(PairError::Mismatch)) && matches!(s, Err(PairError::Mismatch)));
        let (c, s) = pair("18-apple-orbit-crane", Some(code), binding(1), binding(1));
        assert!(c.is_err() && matches!(s, Err(PairError::Mismatch)), "{c:?}");
        let (c, s) = pair(code, None, binding(1), binding(1));
        assert!(matches!(c, Err(PairError::Refused(_))) && s.is_err());
        // A relay between two TLS sessions: the channels differ, the confirmations fail.
        let (c, s) = pair(code, Some(code), binding(1), binding(2));
        assert!(matches!(c, Err(PairError::Mismatch)) && s.is_err());
        // A relay showing its own key to the client: the identities differ.
        let mut other = binding(1);
        other.server = Identity::of_public_key(b"relay");
        let (c, s) = pair(code, Some(code), other, binding(1));
        assert!(matches!(c, Err(PairError::Mismatch)) && s.is_err());
    }

    #[test]
    fn a_code_works_once_and_expires() {
        let pairing = Pairing::new(Duration::from_secs(60));
        assert_eq!(pairing.take(), Err(Closed::None));
        let code = pairing.open();
        assert_eq!(pairing.number(), Some(code.number()));
        assert_eq!(pairing.take(), Ok(code));
        assert_eq!(pairing.take(), Err(Closed::None));
        assert_eq!(pairing.number(), None);
        let quick = Pairing::new(Duration::ZERO);
        quick.open();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(quick.number(), None);
        assert_eq!(quick.take(), Err(Closed::Expired));
    }

    #[test]
    fn golden_bytes() {
        // PAIR_REPLY refusing, and PAIRED agreeing: header and body as on the wire.
        let mut out = Vec::new();
        send_word(&mut out, PAIR_REPLY, Err("no")).unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 0, 0x19, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 1, b'n', b'o'
            ]
        );
        let mut out = Vec::new();
        finish(&mut out, Ok(())).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        // An offer: number 17, label "pc", then the 33-byte message.
        let mut body = vec![17, 0, 2, b'p', b'c'];
        body.extend_from_slice(&[0x41; SPAKE_MSG]);
        let offer = read_offer(&mut &body[..], body.len() as u32).unwrap();
        assert_eq!((offer.number, offer.label.as_str()), (17, "pc"));
        assert!(read_offer(&mut &body[..4], 4).is_err());
        let long = [17, 0, 200]
            .iter()
            .copied()
            .chain([b'x'; 240])
            .collect::<Vec<u8>>();
        assert!(read_offer(&mut &long[..], long.len() as u32).is_err());
    }
}
