//! Sending a batch over secure mode: the manifest, one verdict for it all, then every
//! file's data in manifest order without waiting between files, and the server's account of
//! every top item at the end.

use std::fs::File;
use std::time::Duration;

use super::Options;
use crate::batch::frame::{
    self, DATA, DIGEST, DONE, Frame, ItemDone, MAX_SMALL_BODY, PROOF, RESUME_AT, ResumePoint,
    VERDICT,
};
use crate::batch::walk::Found;
use crate::batch::{Entry, Kind};
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Mover, Source};
use crate::server::names::check_name;
use crate::text;
use crate::wire::{MAX_DATA_LEN, MsgType};

/// What the server made of a batch. Its words in it are cut and defused
/// ([`text::defuse`]); printed for people, they still go through [`text::escape`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Denied whole, with the server's reason (empty when its operator said no).
    Denied(String),
    /// Accepted: every top item's fate, in manifest order.
    Done(Vec<ItemDone>),
}

/// How a batch resumed a try that was cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Files the server had stored (or kept) whole from earlier tries.
    pub files: usize,
    /// Bytes it had, files and the start of the next one together: not sent again.
    pub bytes: u64,
    /// When the server held the start of a file that this copy does not start with: how
    /// many bytes of it, all sent again.
    pub differed: Option<u64>,
}

/// What happens on the way, besides progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchEvent {
    /// The server resumes a cut try (after this copy's prefix was proven).
    Resumed(Resumed),
    /// Entry `index` was sent whole, and these are its bytes' BLAKE3 (also those sent by an
    /// earlier try, for a file resumed in its middle).
    Sent {
        /// Its index among the entries.
        index: u32,
        /// The BLAKE3 of all its bytes.
        blake3: [u8; 32],
    },
}

/// Sends the batch `found` (see [`walk`](crate::batch::walk)) on `stream`, a secure
/// connection: once the server accepts, tells `event` if it resumes a cut try, then calls
/// `progress` with the bytes the server has so far (from earlier tries too) and how many
/// files are there whole; `event` hears of each file sent whole with its digest.
///
/// # Errors
///
/// The server hanging up, stalling past the options' limits or saying something out of
/// place; a file that cannot be opened or changed size since the walk ([`Error::FileChanged`]:
/// the batch is then cut, and the server keeps only what it had finished).
///
/// # Panics
///
/// If the chunk size is 0 or above [`MAX_DATA_LEN`].
pub fn send_batch<S: Conn>(
    stream: &mut S,
    found: &[Found],
    options: &Options,
    mut event: impl FnMut(BatchEvent),
    mut progress: impl FnMut(u64, usize),
) -> Result<BatchOutcome> {
    let chunk = options.chunk_size;
    assert!((1..=MAX_DATA_LEN).contains(&chunk), "chunk size {chunk}");
    let entries: Vec<Entry> = found.iter().map(|f| f.entry.clone()).collect();
    frame::write_manifest(stream, &entries)?;
    stream.flush()?;
    let verdict = read_message(stream, VERDICT, options.answer_timeout, MsgType::Response)?;
    if verdict.first() != Some(&0) {
        let why = String::from_utf8_lossy(verdict.get(1..).unwrap_or_default());
        return Ok(BatchOutcome::Denied(text::defuse(&why)));
    }
    let at = frame::decode_accept(&verdict)?;
    let mut mover = match frame::verifying() {
        true => Mover::new(false).with_blake3(),
        false => Mover::new(false),
    };
    let (at, file) = prove(stream, found, at, &mut mover, options)?;
    let before = at.bytes_before(found.iter().map(|f| f.entry.size()));
    let differed = file.as_ref().and_then(|(_, differed)| *differed);
    if before > 0 || differed.is_some() {
        event(BatchEvent::Resumed(Resumed {
            files: files_before(found, at.next),
            bytes: before,
            differed,
        }));
    }
    progress(before, files_before(found, at.next));
    let file = file.map(|(file, _)| file);
    let sending = send_files(
        stream,
        found,
        at,
        file,
        chunk,
        &mut mover,
        &mut |sent| match sent {
            Sending::Progress(bytes, files) => progress(bytes, files),
            Sending::Whole(index, blake3) => event(BatchEvent::Sent { index, blake3 }),
        },
    );
    // A write that failed may mean the server gave up and said which item failed; a local
    // failure (a file changed or vanished) has nothing to wait for.
    match sending {
        Ok(()) => stream.flush()?,
        Err(Error::Io(_)) => {}
        Err(err) => return Err(err),
    }
    match read_message(stream, DONE, options.timeout, MsgType::Result) {
        Ok(done) => Ok(BatchOutcome::Done(defused(frame::decode_done(&done)?))),
        Err(err) => Err(sending.err().unwrap_or(err)),
    }
}

/// The server's account as this side may keep and show it: every name and reason cut and
/// defused ([`text::defuse`]), and a stored name that the name rule refuses (a server
/// that says it stored `../x`) shown for what it is, never taken for a path.
fn defused(items: Vec<ItemDone>) -> Vec<ItemDone> {
    items
        .into_iter()
        .map(|mut item| {
            let safe = item.stored && check_name(item.name.as_bytes()).is_ok();
            if !safe {
                item.name = text::defuse(&item.name);
            }
            item
        })
        .collect()
}

/// A file of the batch that cannot be sent: it is gone, or not the one walked.
fn not_walked(found: &Found) -> Error {
    Error::NotWalked(text::escape(&found.source.to_string_lossy()))
}

/// What [`send_files`] reports.
enum Sending {
    Progress(u64, usize),
    Whole(u32, [u8; 32]),
}

/// Files among the first `next` entries.
fn files_before(found: &[Found], next: u32) -> usize {
    found
        .iter()
        .take(next as usize)
        .filter(|f| matches!(f.entry.kind, Kind::File { .. }))
        .count()
}

/// The open file being resumed, and (when the server's bytes were not its start) how many
/// of them differed.
type Resuming = (File, Option<u64>);

/// When the server holds the start of entry `at.next`: proves that this copy starts with the
/// same bytes (their BLAKE3, hashed into `mover` as the file's beginning), and learns where
/// that file goes on: there, or from 0 when they differ.
fn prove<S: Conn>(
    stream: &mut S,
    found: &[Found],
    at: ResumePoint,
    mover: &mut Mover,
    options: &Options,
) -> Result<(ResumePoint, Option<Resuming>)> {
    let Some(entry) = found.get(at.next as usize) else {
        return Err(Error::BatchOrder("a resume point inside the batch"));
    };
    let size = match entry.entry.kind {
        Kind::File { size, .. } => size,
        Kind::Dir if at.held == 0 => return Ok((at, None)),
        Kind::Dir => return Err(Error::BatchOrder("a resume point at a file")),
    };
    if at.held > size {
        return Err(Error::BatchOrder("a resume point inside the file"));
    }
    if at.held == 0 {
        return Ok((at, None));
    }
    let changed = || Error::FileChanged {
        expected: size,
        got: 0,
    };
    let mut file = entry.open().map_err(|_| not_walked(entry))?;
    let digest = mover
        .hash_prefix(&mut file, at.held)
        .map_err(|_| changed())?;
    let proof = frame::encode_proof(at.held, &digest);
    frame::send(stream, PROOF, at.next, true, &proof)?;
    stream.flush()?;
    let answer = read_message(stream, RESUME_AT, options.timeout, MsgType::Result)?;
    let offset = match <[u8; 8]>::try_from(answer.as_slice()) {
        Ok(bytes) => u64::from_le_bytes(bytes),
        Err(_) => return Err(Error::BatchOrder("where the file goes on")),
    };
    match offset {
        0 => {
            mover.restart_blake3();
            let from_zero = ResumePoint {
                next: at.next,
                held: 0,
            };
            Ok((from_zero, Some((file, Some(at.held)))))
        }
        held if held == at.held => Ok((at, Some((file, None)))),
        _ => Err(Error::BatchOrder("where the file goes on")),
    }
}

/// Sends every file's data in order from `at` (`resuming`: that file, open), until the end
/// or the server speaks (it only does before the end to give up).
fn send_files<S: Conn>(
    stream: &mut S,
    found: &[Found],
    at: ResumePoint,
    mut resuming: Option<File>,
    chunk: u32,
    mover: &mut Mover,
    progress: &mut impl FnMut(Sending),
) -> Result<()> {
    let mut sent = at.bytes_before(found.iter().map(|f| f.entry.size())) - at.held;
    let mut files = files_before(found, at.next);
    for (index, found) in found.iter().enumerate().skip(at.next as usize) {
        let Kind::File { size, .. } = found.entry.kind else {
            continue;
        };
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let from = if index == at.next { at.held } else { 0 };
        // Gone since the walk: the batch cannot go on (the server waits for its bytes).
        let file = match resuming.take().filter(|_| index == at.next) {
            Some(file) => file,
            None => found.open().map_err(|_| not_walked(found))?,
        };
        send_file(stream, mover, &file, index, (from, size), chunk, &mut |n| {
            progress(Sending::Progress(sent + from + n, files));
        })?;
        // What was read from the file, for the server to check what it received against.
        let digest = mover.take_blake3();
        frame::send(
            stream,
            DIGEST,
            index,
            true,
            digest.as_ref().map_or(&[][..], |d| &d[..]),
        )?;
        sent += size;
        files += 1;
        progress(Sending::Progress(sent, files));
        if let Some(blake3) = digest {
            progress(Sending::Whole(index, blake3));
        }
        if stream.has_input() {
            break;
        }
    }
    Ok(())
}

/// Sends one file's `size` bytes as data messages of `chunk` bytes for entry `index`
/// (stopping early if the server speaks: it only does to give up).
fn send_file<S: Conn>(
    stream: &mut S,
    mover: &mut Mover,
    file: &File,
    index: u32,
    (from, size): (u64, u64),
    chunk: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let header = |seq, last, len| {
        Frame {
            id: index,
            kind: DATA,
            len,
            last,
            seq,
        }
        .encode()
    };
    let mut source = Source::File { file, offset: from };
    super::send_data(
        stream,
        &mut source,
        size - from,
        chunk,
        mover,
        &header,
        progress,
    )?;
    Ok(())
}

/// Reads one message of type `kind` within `limit`, and returns its body.
fn read_message<S: Conn>(
    stream: &mut S,
    kind: u32,
    limit: Duration,
    want: MsgType,
) -> Result<Vec<u8>> {
    let deadline = Deadline::after(limit);
    let frame = Frame::read_from(&mut deadline.reader(stream))
        .map_err(|err| deadline.error(err, want))?
        .ok_or(Error::Closed(want))?;
    if frame.kind != kind {
        return Err(Error::BatchOrder(match kind {
            VERDICT => "the server's verdict",
            RESUME_AT => "where the file goes on",
            _ => "the server's account of the batch",
        }));
    }
    frame::read_body(
        &mut deadline.reader(stream),
        frame.len,
        MAX_SMALL_BODY.into(),
    )
    .map_err(|err| deadline.error(err, want))
}
