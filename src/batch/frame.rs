//! The batch exchange's messages, inside secure mode only (never on the plain protocol): the
//! same 16-byte header as FUP, with message types of their own.
//!
//! ```text
//! client                                          server
//!   | MANIFEST (0x11) × n, entries, last on the end  |
//!   | ---------------------------------------------> |  checks each entry as it comes, decides once
//!   | VERDICT (0x12): 1 denied + why, or 0 accepted, |
//!   |   next u32, held u64: where the batch resumes  |
//!   | <--------------------------------------------- |
//!   | only when held > 0:                            |
//!   | PROOF (0x15): msgid next, held u64 + the       |
//!   |   BLAKE3 of the client's first held bytes      |
//!   | ---------------------------------------------> |  compared with what the server holds
//!   | RESUME_AT (0x16): msgid next, offset u64:      |
//!   |   held (it matches) or 0 (start that file over)|
//!   | <--------------------------------------------- |
//!   | DATA (0x03) × n per file from entry next on,   |
//!   |   (from the offset in that one): msgid = index,|
//!   |   seq 0, 1, …, last on the file's end, then    |
//!   |   DIGEST (0x14): its BLAKE3, 32 bytes          |
//!   | ---------------------------------------------> |  files and trees published as they end
//!   | DONE (0x13): each top item's outcome and name  |
//!   | <--------------------------------------------- |
//! ```
//!
//! A manifest entry is `kind u8` (0 directory, 1 file, 2 executable file), `size u64` (0 for
//! a directory), `path_len u16`, then the path in UTF-8, its components joined by `/`.

use std::io::{self, Read, Write};

use byteorder::{ByteOrder, LittleEndian as LE};

use super::manifest::{ENTRY_HEAD, Manifest};
use super::{Entry, Kind};
use crate::wire::HEADER_LEN;

/// A run of manifest entries.
pub const MANIFEST: u32 = 0x11;
/// The server's one answer to the whole batch.
pub const VERDICT: u32 = 0x12;
/// The server's account of every top item, at the end.
pub const DONE: u32 = 0x13;
/// File bytes, as in the plain protocol.
pub const DATA: u32 = 3;
/// After a file's last data message: the BLAKE3 of its bytes as the client read them (32
/// bytes), for the server to compare before it publishes anything.
pub const DIGEST: u32 = 0x14;

/// The client's proof that its copy of the file being resumed starts with the bytes the
/// server holds: `held u64`, then their BLAKE3.
pub const PROOF: u32 = 0x15;
/// The server's answer to a proof: `offset u64`, where that file's data starts.
pub const RESUME_AT: u32 = 0x16;

/// Where an accepted batch starts: every entry before `next` is already stored from an
/// earlier try (or in the tree being built), and `held` bytes of entry `next` are there,
/// still to be proven. A new batch starts at 0, 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// The first entry to send.
    pub next: u32,
    /// Bytes of it the server holds.
    pub held: u64,
}

impl ResumePoint {
    /// Bytes of a batch already there at this point: the files before entry `next`, and
    /// `held`. `sizes` are the batch's entries' sizes, in order (0 for a directory).
    pub fn bytes_before(&self, sizes: impl IntoIterator<Item = u64>) -> u64 {
        let files: u64 = sizes.into_iter().take(self.next as usize).sum();
        files + self.held
    }
}

/// An accepting verdict's body: `0`, `next u32`, `held u64`.
pub fn encode_accept(at: ResumePoint) -> [u8; 13] {
    let mut body = [0; 13];
    LE::write_u32(&mut body[1..5], at.next);
    LE::write_u64(&mut body[5..13], at.held);
    body
}

/// The resume point of an accepting verdict's body (`body[0]` is 0).
///
/// # Errors
///
/// A body cut short.
pub fn decode_accept(body: &[u8]) -> io::Result<ResumePoint> {
    let rest = body
        .get(1..13)
        .ok_or_else(|| invalid("a verdict cut short"))?;
    Ok(ResumePoint {
        next: LE::read_u32(&rest[0..4]),
        held: LE::read_u64(&rest[4..12]),
    })
}

/// A proof's body: `held u64`, then the 32-byte BLAKE3 of the first `held` bytes.
pub fn encode_proof(held: u64, digest: &[u8; 32]) -> [u8; 40] {
    let mut body = [0; 40];
    LE::write_u64(&mut body[0..8], held);
    body[8..].copy_from_slice(digest);
    body
}

/// A proof's `held` and digest.
///
/// # Errors
///
/// A body that is not 40 bytes.
pub fn decode_proof(body: &[u8]) -> io::Result<(u64, [u8; 32])> {
    if body.len() != 40 {
        return Err(invalid("a proof is 40 bytes"));
    }
    let mut digest = [0; 32];
    digest.copy_from_slice(&body[8..]);
    Ok((LE::read_u64(&body[0..8]), digest))
}

/// Set in the environment of both programs, turns the end-to-end check off: for
/// `scripts/bench.sh` to measure what it costs, nothing else.
pub const NO_VERIFY_VAR: &str = "FUP_NO_VERIFY";

/// Whether this process checks files end to end (always, unless [`NO_VERIFY_VAR`] is set).
pub fn verifying() -> bool {
    std::env::var_os(NO_VERIFY_VAR).is_none()
}

/// Most bytes in one manifest message: the client cuts longer manifests into several.
pub const MAX_MANIFEST_CHUNK: usize = 1024 * 1024;
/// Most bytes of all the manifest's messages together (1,000,000 entries of 56-byte paths,
/// or 300,000 of 200), checked before they are read.
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Most bytes of a verdict's reason, or of a done message (whose failed items each carry a
/// reason of at most [`MAX_WHY`]).
pub const MAX_SMALL_BODY: u32 = 16 * 1024 * 1024;
/// Most bytes of a path in a manifest entry.
pub const MAX_PATH: usize = 4096;

/// A message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// For data: the entry's index in the manifest.
    pub id: u32,
    /// Its type: [`MANIFEST`], [`VERDICT`], [`DONE`] or [`DATA`].
    pub kind: u32,
    /// Bytes of body that follow.
    pub len: u32,
    /// The last of its run.
    pub last: bool,
    /// For data: its place in the file's run, from 0.
    pub seq: u16,
}

impl Frame {
    /// Its 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0; HEADER_LEN];
        LE::write_u32(&mut buf[0..4], self.id);
        LE::write_u32(&mut buf[4..8], self.kind);
        LE::write_u32(&mut buf[8..12], self.len);
        buf[12] = 0;
        buf[13] = u8::from(self.last);
        LE::write_u16(&mut buf[14..16], self.seq);
        buf
    }

    /// Reads one header; `None` at a clean end of stream before it.
    ///
    /// # Errors
    ///
    /// A read error, or a header cut short (`UnexpectedEof`), or flags other than 0 and 1.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut buf = [0; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if buf[12] > 1 || buf[13] > 1 {
            return Err(invalid("a flag byte that is neither 0 nor 1"));
        }
        Ok(Some(Frame {
            id: LE::read_u32(&buf[0..4]),
            kind: LE::read_u32(&buf[4..8]),
            len: LE::read_u32(&buf[8..12]),
            last: buf[13] == 1,
            seq: LE::read_u16(&buf[14..16]),
        }))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Writes `entries` as manifest messages of at most [`MAX_MANIFEST_CHUNK`] bytes each, the
/// last one marked.
///
/// # Errors
///
/// A write error, or a path longer than [`MAX_PATH`].
pub fn write_manifest(w: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    let mut body = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = entry.path.join("/");
        if path.len() > MAX_PATH {
            return Err(invalid("a path longer than 4096 bytes"));
        }
        let (kind, size) = match entry.kind {
            Kind::Dir => (0, 0),
            Kind::File {
                size,
                executable: false,
            } => (1, size),
            Kind::File {
                size,
                executable: true,
            } => (2, size),
        };
        let mut head = [0; 11];
        head[0] = kind;
        LE::write_u64(&mut head[1..9], size);
        LE::write_u16(&mut head[9..11], path.len() as u16);
        if body.len() + head.len() + path.len() > MAX_MANIFEST_CHUNK {
            send(w, MANIFEST, 0, false, &body)?;
            body.clear();
        }
        body.extend_from_slice(&head);
        body.extend_from_slice(path.as_bytes());
        if i + 1 == entries.len() {
            send(w, MANIFEST, 0, true, &body)?;
        }
    }
    if entries.is_empty() {
        send(w, MANIFEST, 0, true, &[])?;
    }
    Ok(())
}

/// Writes one whole message.
///
/// # Errors
///
/// A write error.
pub fn send(w: &mut impl Write, kind: u32, id: u32, last: bool, body: &[u8]) -> io::Result<()> {
    let frame = Frame {
        id,
        kind,
        len: u32::try_from(body.len()).map_err(|_| invalid("a body over 4 GiB"))?,
        last,
        seq: 0,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&frame.encode());
    out.extend_from_slice(body);
    w.write_all(&out)
}

/// Reads a body of `len` bytes, after checking it against `max`.
///
/// # Errors
///
/// A body over `max`, or a read error.
pub fn read_body(r: &mut impl Read, len: u32, max: u64) -> io::Result<Vec<u8>> {
    if u64::from(len) > max {
        return Err(invalid("a message longer than its limit"));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// The first entry in `buf`, if a whole one is there: its kind, its path's bytes (not yet
/// checked: see [`Manifest::push`]) and how many bytes of `buf` it took.
///
/// # Errors
///
/// An unknown kind, or a directory with a size.
pub fn decode_entry(buf: &[u8]) -> io::Result<Option<(Kind, &[u8], usize)>> {
    let Some(head) = buf.get(..ENTRY_HEAD) else {
        return Ok(None);
    };
    let size = LE::read_u64(&head[1..9]);
    let kind = match head[0] {
        0 if size == 0 => Kind::Dir,
        0 => return Err(invalid("a directory with a size")),
        1 | 2 => Kind::File {
            size,
            executable: head[0] == 2,
        },
        _ => return Err(invalid("an unknown kind of manifest entry")),
    };
    let end = ENTRY_HEAD + usize::from(LE::read_u16(&head[9..11]));
    Ok(buf.get(ENTRY_HEAD..end).map(|path| (kind, path, end)))
}

/// Reads the entries of one manifest message's body into `manifest`, each checked as it is
/// added.
///
/// # Errors
///
/// A body that does not parse (a truncated entry, an unknown kind, a directory with a size),
/// or an entry the batch rule refuses (its [`BatchProblem`](super::BatchProblem), as
/// [`io::ErrorKind::InvalidData`]).
pub fn parse_manifest(body: &[u8], manifest: &mut Manifest) -> io::Result<()> {
    let mut rest = body;
    while !rest.is_empty() {
        let (kind, path, used) =
            decode_entry(rest)?.ok_or_else(|| invalid("a manifest entry cut short"))?;
        manifest
            .push(path, kind)
            .map_err(|problem| invalid(&problem.to_string()))?;
        rest = &rest[used..];
    }
    Ok(())
}

/// What became of one top item of a batch (a file or a tree at the top).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemDone {
    /// Its entry's index in the manifest.
    pub index: u32,
    /// Whether it was stored.
    pub stored: bool,
    /// The name it was stored under (the same, or `name (1)`…); when not stored, why not
    /// (since version 3: empty when the server does not say).
    pub name: String,
}

/// Most bytes of the reason a failed item carries in its `name`.
pub const MAX_WHY: usize = 1024;

impl ItemDone {
    /// A top item that was not stored, and why (cut to [`MAX_WHY`] bytes, on a character's
    /// boundary).
    pub fn failed(index: u32, why: &str) -> ItemDone {
        let mut end = why.len().min(MAX_WHY);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        ItemDone {
            index,
            stored: false,
            name: why[..end].to_string(),
        }
    }

    /// Why it was not stored, when the server said.
    pub fn why(&self) -> Option<&str> {
        (!self.stored && !self.name.is_empty()).then_some(self.name.as_str())
    }
}

/// A DONE body: `count u32`, then per item `index u32, stored u8, name_len u16, name`.
pub fn encode_done(items: &[ItemDone]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        body.extend_from_slice(&item.index.to_le_bytes());
        body.push(u8::from(item.stored));
        let name = &item.name.as_bytes()[..item.name.len().min(u16::MAX as usize)];
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name);
    }
    body
}

/// Reads a DONE body.
///
/// # Errors
///
/// A body that does not parse.
pub fn decode_done(body: &[u8]) -> io::Result<Vec<ItemDone>> {
    let cut = || invalid("a done message cut short");
    let count = LE::read_u32(body.get(0..4).ok_or_else(cut)?) as usize;
    let mut rest = &body[4..];
    let mut items = Vec::with_capacity(count.min(rest.len() / 7));
    for _ in 0..count {
        let head = rest.get(0..7).ok_or_else(cut)?;
        let len = usize::from(LE::read_u16(&head[5..7]));
        let name = rest.get(7..7 + len).ok_or_else(cut)?;
        items.push(ItemDone {
            index: LE::read_u32(&head[0..4]),
            stored: head[4] == 1,
            name: String::from_utf8_lossy(name).into_owned(),
        });
        rest = &rest[7 + len..];
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind,
        }
    }

    #[test]
    fn a_resume_point_counts_the_files_before_it_and_what_is_held() {
        let batch = [
            entry(
                "a",
                Kind::File {
                    size: 10,
                    executable: false,
                },
            ),
            entry("d", Kind::Dir),
            entry(
                "d/b",
                Kind::File {
                    size: 5,
                    executable: true,
                },
            ),
        ];
        let at = |next, held| ResumePoint { next, held };
        let sizes = || batch.iter().map(Entry::size);
        assert_eq!(at(0, 0).bytes_before(sizes()), 0);
        assert_eq!(at(2, 0).bytes_before(sizes()), 10);
        assert_eq!(at(2, 3).bytes_before(sizes()), 13);
        assert_eq!(at(3, 0).bytes_before(sizes()), 15);
    }

    #[test]
    fn resume_messages_in_golden_bytes_and_back() {
        let at = ResumePoint {
            next: 2,
            held: 0x0102_0304_0506,
        };
        let body = encode_accept(at);
        assert_eq!(body, [0, 2, 0, 0, 0, 6, 5, 4, 3, 2, 1, 0, 0]);
        assert_eq!(decode_accept(&body).unwrap(), at);
        assert!(decode_accept(&body[..12]).is_err());
        let proof = encode_proof(5, &[0xab; 32]);
        assert_eq!(&proof[..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_proof(&proof).unwrap(), (5, [0xab; 32]));
        assert!(decode_proof(&proof[..39]).is_err());
        let mut out = Vec::new();
        send(&mut out, PROOF, 2, true, &proof).unwrap();
        assert_eq!(
            &out[..16],
            &[2, 0, 0, 0, 0x15, 0, 0, 0, 40, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn a_manifest_in_golden_bytes_and_back() {
        let entries = vec![
            entry("d", Kind::Dir),
            entry(
                "d/x",
                Kind::File {
                    size: 3,
                    executable: true,
                },
            ),
        ];
        let mut out = Vec::new();
        write_manifest(&mut out, &entries).unwrap();
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0, 0, 0, 0, 0x11, 0, 0, 0, 26, 0, 0, 0, 0, 1, 0, 0, // header: manifest, 26 bytes, last
            0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'd',             // directory "d"
            2, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, b'd', b'/', b'x', // executable file "d/x", 3 bytes
        ];
        assert_eq!(out, golden);
        let frame = Frame::read_from(&mut &out[..]).unwrap().unwrap();
        assert_eq!((frame.kind, frame.len, frame.last), (MANIFEST, 26, true));
        let mut back = Manifest::new(crate::batch::Limits::DEFAULT);
        parse_manifest(&out[16..], &mut back).unwrap();
        let back: Vec<(&str, Kind)> = back.iter().map(|e| (e.path, e.kind)).collect();
        assert_eq!(back, [("d", entries[0].kind), ("d/x", entries[1].kind)]);
    }

    #[test]
    fn long_manifests_are_cut_and_bad_ones_refused() {
        let mut entries = vec![entry("d", Kind::Dir)];
        entries.extend((0..20_000).map(|i| entry(&format!("d/{i:0>100}"), Kind::Dir)));
        let mut out = Vec::new();
        write_manifest(&mut out, &entries).unwrap();
        let mut r = &out[..];
        let mut back = Manifest::new(crate::batch::Limits::DEFAULT);
        let mut messages = 0;
        while let Some(frame) = Frame::read_from(&mut r).unwrap() {
            messages += 1;
            let body = read_body(&mut r, frame.len, MAX_MANIFEST_CHUNK as u64).unwrap();
            parse_manifest(&body, &mut back).unwrap();
            assert_eq!(frame.last, r.is_empty());
        }
        assert_eq!(messages, 3, "2.3 MB in messages of at most 1 MiB");
        assert_eq!(back.len(), entries.len());
        assert!(
            back.iter()
                .zip(&entries)
                .all(|(a, b)| a.path == b.display_path())
        );
        let bad: [(&[u8], &str); 5] = [
            (&[1, 0, 0], "cut short"),
            (&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "unknown kind"),
            (
                &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "a directory with a size",
            ),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, b'a'], "cut short"),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff], "neither UTF-8"),
        ];
        for (body, says) in bad {
            let mut manifest = Manifest::new(crate::batch::Limits::DEFAULT);
            let err = parse_manifest(body, &mut manifest).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
        let two = [[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'a']; 2].concat();
        let one = crate::batch::Limits {
            max_entries: 1,
            ..crate::batch::Limits::DEFAULT
        };
        let err = parse_manifest(&two, &mut Manifest::new(one)).unwrap_err();
        assert!(err.to_string().contains("more than 1 entries"), "{err}");
        assert!(read_body(&mut &[0u8; 8][..], 9, 8).is_err());
    }

    #[test]
    fn done_round_trips() {
        let items = vec![
            ItemDone {
                index: 0,
                stored: true,
                name: "photos (1)".into(),
            },
            ItemDone {
                index: 7,
                stored: false,
                name: String::new(),
            },
        ];
        assert_eq!(decode_done(&encode_done(&items)).unwrap(), items);
        assert!(decode_done(&[2, 0, 0, 0, 1]).is_err());
    }
}
