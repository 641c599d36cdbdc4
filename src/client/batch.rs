//! Sending a batch over secure mode (#12): the manifest, one verdict for it all, then every
//! file's data in manifest order without waiting between files, and the server's account of
//! every top item at the end.

use std::fs::File;
use std::time::Duration;

use super::Options;
use crate::batch::frame::{self, DATA, DIGEST, DONE, Frame, ItemDone, MAX_SMALL_BODY, VERDICT};
use crate::batch::walk::Found;
use crate::batch::{Entry, Kind};
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Mover, Source};
use crate::wire::{MAX_DATA_LEN, MsgType};

/// What the server made of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Denied whole, with the server's reason (empty when its operator said no).
    Denied(String),
    /// Accepted: every top item's fate, in manifest order.
    Done(Vec<ItemDone>),
}

/// Sends the batch `found` (see [`walk`](crate::batch::walk)) on `stream`, a secure
/// connection: calls `progress(0, 0)` once the server accepts, then with the bytes sent so
/// far and how many files were sent whole.
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
    mut progress: impl FnMut(u64, usize),
) -> Result<BatchOutcome> {
    let chunk = options.chunk_size;
    assert!((1..=MAX_DATA_LEN).contains(&chunk), "chunk size {chunk}");
    let entries: Vec<Entry> = found.iter().map(|f| f.entry.clone()).collect();
    frame::write_manifest(stream, &entries)?;
    stream.flush()?;
    let verdict = read_message(stream, VERDICT, options.answer_timeout, MsgType::Response)?;
    if verdict.first() != Some(&0) {
        let why = String::from_utf8_lossy(verdict.get(1..).unwrap_or_default()).into_owned();
        return Ok(BatchOutcome::Denied(why));
    }
    progress(0, 0);
    let sending = send_files(stream, found, chunk, &mut progress);
    // A write that failed may mean the server gave up and said which item failed; a local
    // failure (a file changed or vanished) has nothing to wait for.
    match sending {
        Ok(()) => stream.flush()?,
        Err(Error::Io(_)) => {}
        Err(err) => return Err(err),
    }
    match read_message(stream, DONE, options.timeout, MsgType::Result) {
        Ok(done) => Ok(BatchOutcome::Done(frame::decode_done(&done)?)),
        Err(err) => Err(sending.err().unwrap_or(err)),
    }
}

/// Sends every file's data in order, until the end or the server speaks (it only does
/// before the end to give up).
fn send_files<S: Conn>(
    stream: &mut S,
    found: &[Found],
    chunk: u32,
    progress: &mut impl FnMut(u64, usize),
) -> Result<()> {
    let mut mover = match frame::verifying() {
        true => Mover::new(false).with_blake3(),
        false => Mover::new(false),
    };
    let mut sent = 0u64;
    let mut files = 0;
    for (index, found) in found.iter().enumerate() {
        let Kind::File { size, .. } = found.entry.kind else {
            continue;
        };
        // Gone since the walk: the batch cannot go on (the server waits for its bytes).
        let file = File::open(&found.source).map_err(|_| Error::FileChanged {
            expected: size,
            got: 0,
        })?;
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        send_file(stream, &mut mover, &file, index, size, chunk, &mut |n| {
            progress(sent + n, files);
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
        progress(sent, files);
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
    size: u64,
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
    let mut source = Source::file(file);
    super::send_data(stream, &mut source, size, chunk, mover, &header, progress)?;
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
