//! The batch exchange's messages, inside secure mode only (never on the plain protocol): the
//! same 16-byte header as FUP, with message types of their own. This is version 4 (see
//! [`probe`](crate::secure::probe)); a server meeting a client of version 3 only tells it, in
//! version 3's words ([`encode_old_denial`]), to update.
//!
//! ```text
//! client                                          server
//!   | MANIFEST (0x11) × n, entries, last on the end  |
//!   | ---------------------------------------------> |  checks each entry as it comes
//!   | VERDICT (0x12): 1 denied, a code and why; or   |  decides once for the batch, and
//!   |   0 accepted, next u32, held u64 (where the    |  refuses files by policy one by one
//!   |   batch resumes), the files refused by policy  |
//!   | <--------------------------------------------- |
//!   | only when held > 0:                            |
//!   | PROOF (0x15): msgid next, held u64 + the       |
//!   |   BLAKE3 of the client's first held bytes      |
//!   | ---------------------------------------------> |  compared with what the server holds
//!   | RESUME_AT (0x16): msgid next, offset u64:      |
//!   |   held (it matches) or 0 (start that file over)|
//!   | <--------------------------------------------- |
//!   | DATA (0x03) × n per file not refused, from     |
//!   |   entry next on (from the offset in that one): |
//!   |   msgid = index, seq 0, 1, …, last on the      |
//!   |   file's end, then DIGEST (0x14): its BLAKE3   |
//!   | ---------------------------------------------> |  files and trees published as they end
//!   | ITEM (0x17): a top item's fate, as it is known |
//!   | <--------------------------------------------- |  (between the client's files)
//!   | DONE (0x13): each top item: a code, the name   |
//!   |   it was stored under, or why it was not       |
//!   | <--------------------------------------------- |
//! ```
//!
//! A manifest entry is `kind u8` (0 directory, 1 file, 2 executable file; `0x80` added when
//! its time is not known), for a file its size, then (when known) its modification time as
//! the difference in nanoseconds from the last time known before it in the manifest (0 before
//! the first), zigzag-coded, then the path's length and the path in UTF-8, its components
//! joined by `/`. Numbers are LEB128 (seven bits a byte, low first): a small file's entry takes
//! a few bytes besides its path. See [`EntryCodec`].

use std::io::{self, Read, Write};

use byteorder::{ByteOrder, LittleEndian as LE};

use super::manifest::Manifest;
use super::{Entry, Kind, Mtime};
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
/// While the data flows: one top item's fate, as soon as it is known (published, or
/// refused), in the form of a DONE body of one item. The client reads these between files.
pub const ITEM: u32 = 0x17;

/// Why a file, a top item or a batch was not stored (or that it was): a byte on the wire,
/// with a short text beside it for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// It was stored.
    Stored,
    /// The operator said no, or no one answered.
    Denied,
    /// Larger than the server takes (`--max-size`).
    TooLarge,
    /// Not enough free space.
    NoSpace,
    /// The batch breaks the batch rule (a name, a path, a limit): refused whole.
    Refused,
    /// Its BLAKE3 as received is not the client's: nothing of it was published.
    Mismatch,
    /// The server could not store it (its disk, a file-size limit).
    ServerError,
    /// The batch was cut before it was whole (the connection, or what the client sent).
    Cut,
    /// The server is busy (too many questions or lists waiting): to try again later.
    Busy,
    /// The server is shutting down.
    ShuttingDown,
    /// A code this build does not know (from a later server).
    Unknown(u8),
}

impl Code {
    /// Its byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Code::Stored => 0,
            Code::Denied => 1,
            Code::TooLarge => 2,
            Code::NoSpace => 3,
            Code::Refused => 4,
            Code::Mismatch => 5,
            Code::ServerError => 6,
            Code::Cut => 7,
            Code::Busy => 8,
            Code::ShuttingDown => 9,
            Code::Unknown(byte) => byte,
        }
    }

    /// The code a byte stands for.
    pub fn from_byte(byte: u8) -> Code {
        match byte {
            0 => Code::Stored,
            1 => Code::Denied,
            2 => Code::TooLarge,
            3 => Code::NoSpace,
            4 => Code::Refused,
            5 => Code::Mismatch,
            6 => Code::ServerError,
            7 => Code::Cut,
            8 => Code::Busy,
            9 => Code::ShuttingDown,
            other => Code::Unknown(other),
        }
    }

    /// Its name for programs (`--json`'s `code`): `stored`, `denied`, `too-large`,
    /// `no-space`, `refused`, `mismatch`, `server-error`, `cut`, `busy`, `shutting-down`,
    /// `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Stored => "stored",
            Code::Denied => "denied",
            Code::TooLarge => "too-large",
            Code::NoSpace => "no-space",
            Code::Refused => "refused",
            Code::Mismatch => "mismatch",
            Code::ServerError => "server-error",
            Code::Cut => "cut",
            Code::Busy => "busy",
            Code::ShuttingDown => "shutting-down",
            Code::Unknown(_) => "unknown",
        }
    }
}

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

/// Files of an accepted batch that the server's policy refused, all for one reason: they are
/// not sent, and the rest goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why, for programs.
    pub code: Code,
    /// Why, for people (at most [`MAX_WHY`] bytes).
    pub why: String,
    /// Their indices in the manifest, in order.
    pub entries: Vec<u32>,
}

/// The server's one answer to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: where it starts, and the files refused by policy (not to be sent).
    Accepted(ResumePoint, Vec<Refused>),
    /// Denied whole: why, for programs and for people.
    Denied(Code, String),
}

/// `why` cut to [`MAX_WHY`] bytes, on a character's boundary.
fn short(why: &str) -> &str {
    let mut end = why.len().min(MAX_WHY);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    &why[..end]
}

fn put_text(body: &mut Vec<u8>, text: &str) {
    let text = short(text);
    body.extend_from_slice(&(text.len() as u16).to_le_bytes());
    body.extend_from_slice(text.as_bytes());
}

/// Reads what [`put_text`] wrote, from the start of `rest`; moves `rest` past it.
fn take_text(rest: &mut &[u8], cut: &dyn Fn() -> io::Error) -> io::Result<String> {
    let len = usize::from(LE::read_u16(rest.get(..2).ok_or_else(cut)?));
    let text = rest.get(2..2 + len).ok_or_else(cut)?;
    let text = String::from_utf8_lossy(text).into_owned();
    *rest = &rest[2 + len..];
    Ok(text)
}

fn take<'a>(rest: &mut &'a [u8], n: usize, cut: &dyn Fn() -> io::Error) -> io::Result<&'a [u8]> {
    let taken = rest.get(..n).ok_or_else(cut)?;
    *rest = &rest[n..];
    Ok(taken)
}

impl Verdict {
    /// Its body: `0`, `next u32`, `held u64`, `groups u16`, then per group of refused files
    /// `code u8`, `why_len u16`, `why`, `count u32`, `index u32` × count; or `1`, `code u8`,
    /// then why in UTF-8 (the rest of the body).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Verdict::Accepted(at, refused) => {
                let mut body = vec![0];
                body.extend_from_slice(&at.next.to_le_bytes());
                body.extend_from_slice(&at.held.to_le_bytes());
                body.extend_from_slice(&(refused.len() as u16).to_le_bytes());
                for group in refused {
                    body.push(group.code.byte());
                    put_text(&mut body, &group.why);
                    body.extend_from_slice(&(group.entries.len() as u32).to_le_bytes());
                    for index in &group.entries {
                        body.extend_from_slice(&index.to_le_bytes());
                    }
                }
                body
            }
            Verdict::Denied(code, why) => {
                let mut body = vec![1, code.byte()];
                body.extend_from_slice(short(why).as_bytes());
                body
            }
        }
    }

    /// Reads a verdict's body.
    ///
    /// # Errors
    ///
    /// A body cut short, or with a first byte other than 0 and 1.
    pub fn decode(body: &[u8]) -> io::Result<Verdict> {
        let cut = || invalid("a verdict cut short");
        let (&first, mut rest) = body.split_first().ok_or_else(cut)?;
        match first {
            0 => {
                let head = take(&mut rest, 14, &cut)?;
                let at = ResumePoint {
                    next: LE::read_u32(&head[0..4]),
                    held: LE::read_u64(&head[4..12]),
                };
                let groups = LE::read_u16(&head[12..14]);
                let mut refused = Vec::new();
                for _ in 0..groups {
                    let code = Code::from_byte(take(&mut rest, 1, &cut)?[0]);
                    let why = take_text(&mut rest, &cut)?;
                    let count = LE::read_u32(take(&mut rest, 4, &cut)?) as usize;
                    // Checked against what is there before anything is allocated.
                    let indices = take(&mut rest, count.checked_mul(4).ok_or_else(cut)?, &cut)?;
                    let entries = indices.chunks_exact(4).map(LE::read_u32).collect();
                    refused.push(Refused { code, why, entries });
                }
                Ok(Verdict::Accepted(at, refused))
            }
            1 => {
                let (&code, why) = rest.split_first().ok_or_else(cut)?;
                let why = String::from_utf8_lossy(why).into_owned();
                Ok(Verdict::Denied(Code::from_byte(code), why))
            }
            _ => Err(invalid("a verdict that is neither 0 nor 1")),
        }
    }
}

/// A denial in the words of version 3 (`1`, then why), for a client of that version: what a
/// server of this version tells it (to update).
pub fn encode_old_denial(why: &str) -> Vec<u8> {
    let mut body = vec![1];
    body.extend_from_slice(short(why).as_bytes());
    body
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
/// Most bytes of all the manifest's messages together (1,000,000 entries of 60-byte paths,
/// or 300,000 of 200), checked before they are read.
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Most bytes of a verdict or of a done message (whose items each carry a reason of at most
/// [`MAX_WHY`], and a verdict the indices of the files it refuses).
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
    let mut codec = EntryCodec::default();
    let mut body = Vec::new();
    let mut one = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        one.clear();
        codec.encode(entry, &mut one)?;
        if body.len() + one.len() > MAX_MANIFEST_CHUNK {
            send(w, MANIFEST, 0, false, &body)?;
            body.clear();
        }
        body.extend_from_slice(&one);
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

/// One manifest entry as it came, its path not checked yet (see [`Manifest::push`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// What it is.
    pub kind: Kind,
    /// When it was last changed, if the client knew.
    pub modified: Option<Mtime>,
    /// Its path's bytes.
    pub path: &'a [u8],
    /// Bytes it took on the wire.
    pub wire: usize,
}

/// The most bytes an entry's head takes: its kind, then three numbers of at most 10 bytes.
pub const MAX_ENTRY_HEAD: usize = 1 + 3 * 10;
/// The kind byte's flag for a time not known.
const TIME_UNKNOWN: u8 = 0x80;

/// What both ends keep along one manifest: each entry's time goes as its difference from the
/// last time known before it (files made together differ by little), so the state moves on
/// entry by entry, across messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryCodec {
    /// The last time known, in nanoseconds since the Unix epoch (0 before the first).
    last: i64,
}

impl EntryCodec {
    /// Appends `entry`'s bytes to `out`.
    ///
    /// # Errors
    ///
    /// A path longer than [`MAX_PATH`].
    pub fn encode(&mut self, entry: &Entry, out: &mut Vec<u8>) -> io::Result<()> {
        let path = entry.path.join("/");
        if path.len() > MAX_PATH {
            return Err(invalid("a path longer than 4096 bytes"));
        }
        let time = entry.modified.map(|m| m.0).filter(|&ns| ns != i64::MIN);
        let (kind, size) = match entry.kind {
            Kind::Dir => (0, None),
            Kind::File {
                size,
                executable: false,
            } => (1, Some(size)),
            Kind::File {
                size,
                executable: true,
            } => (2, Some(size)),
        };
        out.push(kind | if time.is_none() { TIME_UNKNOWN } else { 0 });
        if let Some(size) = size {
            put_varint(out, size);
        }
        if let Some(ns) = time {
            put_varint(out, zigzag(ns.wrapping_sub(self.last)));
            self.last = ns;
        }
        put_varint(out, path.len() as u64);
        out.extend_from_slice(path.as_bytes());
        Ok(())
    }

    /// The first entry in `buf`, if a whole one is there, and how many bytes of `buf` it took;
    /// the state moves on only past a whole entry.
    ///
    /// # Errors
    ///
    /// An unknown kind, a number longer than 10 bytes, a time out of range, or a path longer
    /// than [`MAX_PATH`] (told from its length, before it is read).
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> io::Result<Option<(RawEntry<'a>, usize)>> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let mut at = 1;
        let kind = match first & !TIME_UNKNOWN {
            0 => Kind::Dir,
            1 | 2 => {
                let Some(size) = get_varint(buf, &mut at)? else {
                    return Ok(None);
                };
                Kind::File {
                    size,
                    executable: first & !TIME_UNKNOWN == 2,
                }
            }
            _ => return Err(invalid("an unknown kind of manifest entry")),
        };
        let time = match first & TIME_UNKNOWN {
            0 => {
                let Some(delta) = get_varint(buf, &mut at)? else {
                    return Ok(None);
                };
                match self.last.wrapping_add(unzigzag(delta)) {
                    i64::MIN => return Err(invalid("a time out of range")),
                    ns => Some(ns),
                }
            }
            _ => None,
        };
        let Some(len) = get_varint(buf, &mut at)? else {
            return Ok(None);
        };
        if len > MAX_PATH as u64 {
            // The batch rule's refusal, told from the length alone (with a reason).
            let problem = super::BatchProblem::PathLength { len, max: MAX_PATH };
            return Err(io::Error::new(io::ErrorKind::InvalidData, problem));
        }
        let end = at + len as usize;
        let Some(path) = buf.get(at..end) else {
            return Ok(None);
        };
        if let Some(ns) = time {
            self.last = ns;
        }
        let entry = RawEntry {
            kind,
            modified: time.map(Mtime),
            path,
            wire: end,
        };
        Ok(Some((entry, end)))
    }
}

/// `n` as LEB128: seven bits a byte, the low ones first, the high bit set on all but the last.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The LEB128 number at `buf[*at..]`, moving `at` past it; `None` if it is cut short.
fn get_varint(buf: &[u8], at: &mut usize) -> io::Result<Option<u64>> {
    let mut n: u64 = 0;
    for shift in (0..70).step_by(7) {
        let Some(&byte) = buf.get(*at) else {
            return Ok(None);
        };
        *at += 1;
        // The tenth byte holds the last bit of 64; anything above it is out of range.
        if shift == 63 && byte > 1 {
            return Err(invalid("a number too large"));
        }
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some(n));
        }
    }
    Err(invalid("a number longer than 10 bytes"))
}

/// A signed difference as an unsigned number that is small when the difference is.
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

/// Reads the entries of one manifest message's body into `manifest`, each checked as it is
/// added, `codec` carrying on from the messages before.
///
/// # Errors
///
/// A body that does not parse (a truncated entry, an unknown kind, a number out of range), or
/// an entry the batch rule refuses (its [`BatchProblem`](super::BatchProblem), as
/// [`io::ErrorKind::InvalidData`]).
pub fn parse_manifest(
    body: &[u8],
    codec: &mut EntryCodec,
    manifest: &mut Manifest,
) -> io::Result<()> {
    let mut rest = body;
    while !rest.is_empty() {
        let (entry, used) = codec
            .decode(rest)?
            .ok_or_else(|| invalid("a manifest entry cut short"))?;
        manifest
            .push(entry)
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
    /// Whether it was stored ([`Code::Stored`]), or why not.
    pub code: Code,
    /// The name it was stored under (the same, or `name (1)`…); empty when not stored.
    pub name: String,
    /// Why it was not stored, for people (at most [`MAX_WHY`] bytes); empty when stored.
    pub why: String,
}

/// Most bytes of the reason a refused file or a failed item carries.
pub const MAX_WHY: usize = 1024;

impl ItemDone {
    /// A top item stored under `name`.
    pub fn stored(index: u32, name: &str) -> ItemDone {
        ItemDone {
            index,
            code: Code::Stored,
            name: name.to_string(),
            why: String::new(),
        }
    }

    /// A top item that was not stored, for `code`, and why (cut to [`MAX_WHY`] bytes).
    pub fn failed(index: u32, code: Code, why: &str) -> ItemDone {
        ItemDone {
            index,
            code,
            name: String::new(),
            why: short(why).to_string(),
        }
    }

    /// Whether it was stored.
    pub fn is_stored(&self) -> bool {
        self.code == Code::Stored
    }

    /// Why it was not stored, when the server said.
    pub fn why(&self) -> Option<&str> {
        (!self.is_stored() && !self.why.is_empty()).then_some(self.why.as_str())
    }
}

/// A DONE body: `count u32`, then per item `index u32, code u8, name_len u16, name,
/// why_len u16, why`.
pub fn encode_done(items: &[ItemDone]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        body.extend_from_slice(&item.index.to_le_bytes());
        body.push(item.code.byte());
        put_text(&mut body, &item.name);
        put_text(&mut body, &item.why);
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
    let mut rest = body;
    let count = LE::read_u32(take(&mut rest, 4, &cut)?) as usize;
    // Each item takes at least 9 bytes: what is there bounds what is allocated.
    let mut items = Vec::with_capacity(count.min(rest.len() / 9));
    for _ in 0..count {
        let head = take(&mut rest, 5, &cut)?;
        let index = LE::read_u32(&head[0..4]);
        let code = Code::from_byte(head[4]);
        let name = take_text(&mut rest, &cut)?;
        let why = take_text(&mut rest, &cut)?;
        items.push(ItemDone {
            index,
            code,
            name,
            why,
        });
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
            modified: None,
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
    fn verdicts_in_golden_bytes_and_back() {
        let at = ResumePoint {
            next: 2,
            held: 0x0102_0304_0506,
        };
        let accepted = Verdict::Accepted(
            at,
            vec![Refused {
                code: Code::TooLarge,
                why: "big".into(),
                entries: vec![1, 3],
            }],
        );
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0,                         // accepted
            2, 0, 0, 0,                // next 2
            6, 5, 4, 3, 2, 1, 0, 0,    // held
            1, 0,                      // one group of refused files
            2,                         // too large
            3, 0, b'b', b'i', b'g',    // why
            2, 0, 0, 0,                // two files
            1, 0, 0, 0, 3, 0, 0, 0,    // entries 1 and 3
        ];
        assert_eq!(accepted.encode(), golden);
        assert_eq!(Verdict::decode(golden).unwrap(), accepted);
        for cut in 0..golden.len() {
            assert!(Verdict::decode(&golden[..cut]).is_err(), "{cut}");
        }
        let denied = Verdict::Denied(Code::NoSpace, "not enough free space".into());
        let body = denied.encode();
        assert_eq!(&body[..2], &[1, 3]);
        assert_eq!(&body[2..], b"not enough free space");
        assert_eq!(Verdict::decode(&body).unwrap(), denied);
        assert!(Verdict::decode(&[2]).is_err());
        // A count that claims more than is there allocates nothing.
        let mut lying = golden.to_vec();
        lying[22] = 0xff;
        assert!(Verdict::decode(&lying).is_err());
        // A version 3 client is told in its own words: 1, then why.
        assert_eq!(encode_old_denial("update"), b"\x01update");
        // Every code's byte reads back as itself; unknown ones are kept as they came.
        for byte in 0..=255u8 {
            assert_eq!(Code::from_byte(byte).byte(), byte);
        }
        assert_eq!(Code::from_byte(200), Code::Unknown(200));
    }

    #[test]
    fn resume_messages_in_golden_bytes_and_back() {
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
        let mut entries = vec![
            entry("d", Kind::Dir),
            entry(
                "d/x",
                Kind::File {
                    size: 300,
                    executable: true,
                },
            ),
            entry(
                "d/y",
                Kind::File {
                    size: 0,
                    executable: false,
                },
            ),
        ];
        entries[1].modified = Some(Mtime(0x0102));
        entries[2].modified = Some(Mtime(0x0100));
        let mut out = Vec::new();
        write_manifest(&mut out, &entries).unwrap();
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0, 0, 0, 0, 0x11, 0, 0, 0, 19, 0, 0, 0, 0, 1, 0, 0, // header: manifest, 19 bytes, last
            0x80,                                               // directory, time not known
            1, b'd',                                            //   "d"
            2,                                                  // executable file
            0xac, 0x02,                                         //   300 bytes
            0x84, 0x04,                                         //   258 ns after 1970 (+258)
            3, b'd', b'/', b'x',                                //   "d/x"
            1,                                                  // file
            0,                                                  //   empty
            3,                                                  //   256 ns after 1970 (-2)
            3, b'd', b'/', b'y',                                //   "d/y"
        ];
        assert_eq!(out, golden);
        let frame = Frame::read_from(&mut &out[..]).unwrap().unwrap();
        assert_eq!((frame.kind, frame.len, frame.last), (MANIFEST, 19, true));
        let mut back = Manifest::new(crate::batch::Limits::DEFAULT);
        parse_manifest(&out[16..], &mut EntryCodec::default(), &mut back).unwrap();
        let back: Vec<(&str, Kind, Option<Mtime>)> =
            back.iter().map(|e| (e.path, e.kind, e.modified)).collect();
        assert_eq!(
            back,
            [
                ("d", entries[0].kind, None),
                ("d/x", entries[1].kind, Some(Mtime(0x0102))),
                ("d/y", entries[2].kind, Some(Mtime(0x0100))),
            ]
        );
        // Cut anywhere, an entry is not there yet, and the state has not moved.
        let body = &out[16..];
        let mut codec = EntryCodec::default();
        for cut in 0..body.len() {
            let mut at = 0;
            let mut c = codec;
            while let Some((_, used)) = c.decode(&body[at..cut]).unwrap() {
                at += used;
            }
            assert!(at <= cut);
        }
        assert!(codec.decode(body).unwrap().is_some());
    }

    #[test]
    fn numbers_and_times_at_their_edges() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut at = 0;
            assert_eq!(get_varint(&out, &mut at).unwrap(), Some(n));
            assert_eq!(at, out.len());
            assert_eq!(get_varint(&out[..out.len() - 1], &mut 0).unwrap(), None);
        }
        let mut at = 0;
        assert!(
            get_varint(
                &[0xff; 9].iter().chain(&[2]).copied().collect::<Vec<_>>(),
                &mut at
            )
            .is_err()
        );
        assert!(get_varint(&[0x80; 11], &mut 0).is_err());
        for n in [0, 1, -1, i64::MAX, i64::MIN + 1, 1_700_000_000_123_456_789] {
            assert_eq!(unzigzag(zigzag(n)), n);
        }
        // Times a lifetime apart, in either order, and the edges of the range.
        let times = [
            i64::MAX,
            i64::MIN + 1,
            0,
            -5,
            1_700_000_000_123_456_789,
            i64::MAX,
        ];
        let entries: Vec<Entry> = times
            .iter()
            .enumerate()
            .map(|(i, &ns)| Entry {
                modified: Some(Mtime(ns)),
                ..entry(
                    &format!("f{i}"),
                    Kind::File {
                        size: 1,
                        executable: false,
                    },
                )
            })
            .collect();
        let (mut encoder, mut decoder) = (EntryCodec::default(), EntryCodec::default());
        for e in &entries {
            let mut out = Vec::new();
            encoder.encode(e, &mut out).unwrap();
            let (raw, used) = decoder.decode(&out).unwrap().unwrap();
            assert_eq!(
                (raw.modified, used, raw.wire),
                (e.modified, out.len(), out.len())
            );
        }
        // A time that decodes to the value kept for "not known" is refused.
        let mut out = vec![1, 1];
        put_varint(&mut out, zigzag(i64::MIN));
        out.extend_from_slice(&[1, b'a']);
        assert!(EntryCodec::default().decode(&out).is_err());
    }

    #[test]
    fn long_manifests_are_cut_and_bad_ones_refused() {
        let mut entries = vec![entry("d", Kind::Dir)];
        entries.extend((0..20_000).map(|i| entry(&format!("d/{i:0>120}"), Kind::Dir)));
        let mut out = Vec::new();
        write_manifest(&mut out, &entries).unwrap();
        let mut r = &out[..];
        let mut back = Manifest::new(crate::batch::Limits::DEFAULT);
        let mut codec = EntryCodec::default();
        let mut messages = 0;
        while let Some(frame) = Frame::read_from(&mut r).unwrap() {
            messages += 1;
            let body = read_body(&mut r, frame.len, MAX_MANIFEST_CHUNK as u64).unwrap();
            parse_manifest(&body, &mut codec, &mut back).unwrap();
            assert_eq!(frame.last, r.is_empty());
        }
        assert_eq!(messages, 3, "2.5 MB in messages of at most 1 MiB");
        assert_eq!(back.len(), entries.len());
        assert!(
            back.iter()
                .zip(&entries)
                .all(|(a, b)| a.path == b.display_path())
        );
        let mut long = vec![0x80];
        put_varint(&mut long, MAX_PATH as u64 + 1);
        let bad: [(Vec<u8>, &str); 6] = [
            (vec![1, 0], "cut short"),
            (vec![9, 0], "unknown kind"),
            (vec![0x83, 0], "unknown kind"),
            ([&[0x80, 5][..], b"a"].concat(), "cut short"),
            (vec![0x81, 1, 1, 0xff], "neither UTF-8"),
            (long, "longer than 4096"),
        ];
        for (body, says) in bad {
            let mut manifest = Manifest::new(crate::batch::Limits::DEFAULT);
            let err = parse_manifest(&body, &mut EntryCodec::default(), &mut manifest).unwrap_err();
            assert!(err.to_string().contains(says), "{says}: {err}");
        }
        let one = vec![0x80, 1, b'a'];
        let two = [one.clone(), one].concat();
        let one = crate::batch::Limits {
            max_entries: 1,
            ..crate::batch::Limits::DEFAULT
        };
        let err =
            parse_manifest(&two, &mut EntryCodec::default(), &mut Manifest::new(one)).unwrap_err();
        assert!(err.to_string().contains("more than 1 entries"), "{err}");
        assert!(read_body(&mut &[0u8; 8][..], 9, 8).is_err());
    }

    #[test]
    fn done_round_trips() {
        let items = vec![
            ItemDone::stored(0, "photos (1)"),
            ItemDone::failed(7, Code::Mismatch, "the file's BLAKE3 does not match"),
        ];
        let body = encode_done(&items);
        #[rustfmt::skip]
        assert_eq!(&body[..20], &[
            2, 0, 0, 0,                     // two items
            0, 0, 0, 0,                     // entry 0
            0,                              // stored
            10, 0, b'p', b'h', b'o', b't', b'o', b's', b' ', b'(', b'1', // as "photos (1)"
        ][..20]);
        assert_eq!(decode_done(&body).unwrap(), items);
        assert!(decode_done(&[2, 0, 0, 0, 1]).is_err());
        assert_eq!(items[1].why(), Some("the file's BLAKE3 does not match"));
        assert_eq!(items[0].why(), None);
        // A reason is cut to its limit, on a character's boundary.
        let long = ItemDone::failed(1, Code::ServerError, &"한".repeat(MAX_WHY));
        assert!(long.why.len() <= MAX_WHY);
    }
}
