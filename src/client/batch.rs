//! Sending a batch over secure mode: the manifest, one verdict for it all (with the files the
//! server's policy refused), then every other file's data in manifest order without waiting
//! between files, each top item's fate as the server knows it, and its account at the end.

use std::fs::File;
use std::time::Duration;

use super::Options;
use crate::batch::frame::{
    self, Code, DATA, DIGEST, DONE, Frame, ITEM, ItemDone, MAX_SMALL_BODY, PROOF, RESUME_AT,
    Refused, ResumePoint, VERDICT, Verdict,
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
    /// Denied whole: why, for programs and for people (empty when its operator said no).
    Denied(Code, String),
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
    /// Where it goes on: every file before `at.next` is there whole, and `at.held` bytes of
    /// that one.
    pub at: ResumePoint,
}

/// What happens on the way, besides progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchEvent {
    /// The server accepted the batch; these files its policy refused (they are not sent).
    Accepted(Vec<Refused>),
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
    /// A top item's fate, as soon as the server knew it (defused).
    Item(ItemDone),
}

/// Sends the batch `found` (see [`walk`](crate::batch::walk)) on `stream`, a secure
/// connection: once the server accepts, tells `event` which files its policy refused and
/// whether it resumes a cut try, then calls `progress` with the bytes the server has so far
/// (from earlier tries too) and how many files are there whole; `event` hears of each file
/// sent whole with its digest, and of each top item's fate as the server tells it.
///
/// # Errors
///
/// The server hanging up, stalling past the options' limits or saying something out of
/// place; a file that cannot be opened, or is not the one walked ([`Error::NotWalked`]: the
/// batch is then cut, and the server keeps only what it had finished).
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
    let (at, refused) = match Verdict::decode(&verdict)? {
        Verdict::Denied(code, why) => return Ok(BatchOutcome::Denied(code, text::defuse(&why))),
        Verdict::Accepted(at, refused) => (at, refused),
    };
    let refused: Vec<Refused> = refused
        .into_iter()
        .map(|group| Refused {
            why: text::defuse(&group.why),
            ..group
        })
        .collect();
    let skip = Skip(&refused);
    let sizes = || {
        found
            .iter()
            .enumerate()
            .map(|(at, f)| skip.size(at as u32, f.entry.size()))
    };
    event(BatchEvent::Accepted(refused.clone()));
    let mut mover = match frame::verifying() {
        true => Mover::new(false).with_blake3(),
        false => Mover::new(false),
    };
    let (at, file) = prove(stream, found, at, &mut mover, options)?;
    let before = at.bytes_before(sizes());
    let differed = file.as_ref().and_then(|(_, differed)| *differed);
    if before > 0 || differed.is_some() {
        event(BatchEvent::Resumed(Resumed {
            files: files_before(found, at.next, &skip),
            bytes: before,
            differed,
            at,
        }));
    }
    // What reached the server never goes back (a count taken while bytes were in flight
    // may pass one taken at a file's end).
    let high = std::cell::Cell::new(0);
    let mut progress = |bytes: u64, files| {
        high.set(high.get().max(bytes));
        progress(high.get(), files);
    };
    progress(before, files_before(found, at.next, &skip));
    let file = file.map(|(file, _)| file);
    let mut ended = None;
    let sending = send_files(
        stream,
        (found, &skip),
        at,
        file,
        chunk,
        &mut mover,
        &mut |sent| match sent {
            Sending::Progress(bytes, files) => progress(bytes, files),
            Sending::Whole(index, blake3) => event(BatchEvent::Sent { index, blake3 }),
            Sending::Item(item) => event(BatchEvent::Item(item)),
            Sending::Done(items) => ended = Some(items),
        },
    );
    if let Some(items) = ended {
        // The server ended the batch early (giving up), and said how it stands.
        return Ok(BatchOutcome::Done(items));
    }
    // A write that failed may mean the server gave up and said which item failed; a local
    // failure (a file changed or vanished) has nothing to wait for.
    // Everything not refused is sent: while its last bytes go, say how they arrive.
    let delivering = match sending {
        Ok(()) => {
            stream.flush()?;
            let files = found
                .iter()
                .enumerate()
                .filter(|(at, f)| {
                    matches!(f.entry.kind, Kind::File { .. }) && !skip.contains(*at as u32)
                })
                .count();
            Some((sizes().sum::<u64>(), files))
        }
        Err(Error::Io(_)) => None,
        Err(err) => return Err(err),
    };
    loop {
        if let Some((bytes, files)) = delivering {
            // Until the server speaks (an item published meanwhile, or the end).
            super::await_delivery(stream, bytes, high.get(), options.timeout, &mut |at| {
                progress(at, files)
            });
        }
        match read_answer(stream, options.timeout) {
            Ok(Answer::Item(item)) => event(BatchEvent::Item(item)),
            Ok(Answer::Done(items)) => return Ok(BatchOutcome::Done(items)),
            Err(err) => return Err(sending.err().unwrap_or(err)),
        }
    }
}

/// The files the server's policy refused: not sent.
struct Skip<'a>(&'a [Refused]);

impl Skip<'_> {
    fn contains(&self, index: u32) -> bool {
        self.0
            .iter()
            .any(|group| group.entries.binary_search(&index).is_ok())
    }

    /// Entry `index`'s size as it counts: nothing when it is not sent.
    fn size(&self, index: u32, size: u64) -> u64 {
        match self.contains(index) {
            true => 0,
            false => size,
        }
    }
}

/// What the server says while the data flows, or at its end.
enum Answer {
    Item(ItemDone),
    Done(Vec<ItemDone>),
}

/// Reads the server's next word within `limit`: one item's fate, or the batch's account.
fn read_answer<S: Conn>(stream: &mut S, limit: Duration) -> Result<Answer> {
    let deadline = Deadline::after(limit);
    let frame = Frame::read_from(&mut deadline.reader(stream))
        .map_err(|err| deadline.error(err, MsgType::Result))?
        .ok_or(Error::Closed(MsgType::Result))?;
    if frame.kind != ITEM && frame.kind != DONE {
        return Err(Error::BatchOrder("the server's account of the batch"));
    }
    let body = frame::read_body(
        &mut deadline.reader(stream),
        frame.len,
        MAX_SMALL_BODY.into(),
    )
    .map_err(|err| deadline.error(err, MsgType::Result))?;
    let items = defused(frame::decode_done(&body)?);
    match (frame.kind, &items[..]) {
        (ITEM, [_]) => Ok(Answer::Item(
            items
                .into_iter()
                .next()
                .unwrap_or_else(|| unreachable!("one item, just matched")),
        )),
        (ITEM, _) => Err(Error::BatchOrder("one item's fate")),
        _ => Ok(Answer::Done(items)),
    }
}

/// The server's account as this side may keep and show it: every name and reason cut and
/// defused ([`text::defuse`]), and a stored name that the name rule refuses (a server
/// that says it stored `../x`) shown for what it is, never taken for a path.
fn defused(items: Vec<ItemDone>) -> Vec<ItemDone> {
    items
        .into_iter()
        .map(|mut item| {
            if !(item.is_stored() && check_name(item.name.as_bytes()).is_ok()) {
                item.name = text::defuse(&item.name);
            }
            item.why = text::defuse(&item.why);
            item
        })
        .collect()
}

/// What [`send_files`] reports.
enum Sending {
    Progress(u64, usize),
    Whole(u32, [u8; 32]),
    /// The server told of a top item's fate meanwhile.
    Item(ItemDone),
    /// The server ended the batch (it gives up), with its account.
    Done(Vec<ItemDone>),
}

/// Files among the first `next` entries that are sent.
fn files_before(found: &[Found], next: u32, skip: &Skip<'_>) -> usize {
    found
        .iter()
        .enumerate()
        .take(next as usize)
        .filter(|(at, f)| matches!(f.entry.kind, Kind::File { .. }) && !skip.contains(*at as u32))
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
    let mut file = entry.open().map_err(|_| not_walked(entry))?;
    let digest = mover
        .hash_prefix(&mut file, at.held)
        .map_err(|_| not_walked(entry))?;
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

/// A file of the batch that cannot be sent: it is gone, or not the one walked.
fn not_walked(found: &Found) -> Error {
    Error::NotWalked(text::escape(&found.source.to_string_lossy()))
}

/// Reads what the server said while the data flowed: items' fates, told on; or the batch's
/// end (the server gives up), which stops the sending.
fn hear<S: Conn>(stream: &mut S, progress: &mut impl FnMut(Sending)) -> Result<bool> {
    while stream.has_input() {
        // Whatever came is followed at once by the rest of its message.
        match read_answer(stream, Duration::from_secs(10))? {
            Answer::Item(item) => progress(Sending::Item(item)),
            Answer::Done(items) => {
                progress(Sending::Done(items));
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Sends every file's data in order from `at` (`resuming`: that file, open) but those the
/// server refused, until the end or the server ends the batch.
fn send_files<S: Conn>(
    stream: &mut S,
    (found, skip): (&[Found], &Skip<'_>),
    at: ResumePoint,
    mut resuming: Option<File>,
    chunk: u32,
    mover: &mut Mover,
    progress: &mut impl FnMut(Sending),
) -> Result<()> {
    let sizes = found
        .iter()
        .enumerate()
        .map(|(at, f)| skip.size(at as u32, f.entry.size()));
    let mut sent = at.bytes_before(sizes) - at.held;
    let mut files = files_before(found, at.next, skip);
    for (index, found) in found.iter().enumerate().skip(at.next as usize) {
        let Kind::File { size, .. } = found.entry.kind else {
            continue;
        };
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        if skip.contains(index) {
            continue;
        }
        let from = if index == at.next { at.held } else { 0 };
        // Gone since the walk: the batch cannot go on (the server waits for its bytes).
        let file = match resuming.take().filter(|_| index == at.next) {
            Some(file) => file,
            None => found.open().map_err(|_| not_walked(found))?,
        };
        let mut ended = false;
        {
            // Both the bytes' progress and what the server says go to `progress`.
            let told = std::cell::RefCell::new(&mut *progress);
            send_file(
                stream,
                mover,
                (&file, index, (from, size), chunk),
                &mut |n, unacknowledged| {
                    let there = (sent + from + n).saturating_sub(unacknowledged);
                    (told.borrow_mut())(Sending::Progress(there, files))
                },
                &mut |stream: &mut S| {
                    ended = hear(stream, &mut |said| (told.borrow_mut())(said))?;
                    Ok(ended)
                },
            )?;
        }
        if ended {
            break;
        }
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
        let there = sent.saturating_sub(stream.unacknowledged());
        progress(Sending::Progress(there, files));
        if let Some(blake3) = digest {
            progress(Sending::Whole(index, blake3));
        }
        if hear(stream, progress)? {
            break;
        }
    }
    Ok(())
}

/// Sends one file's `size` bytes as data messages of `chunk` bytes for entry `index`, from
/// `from`; whatever the server says meanwhile goes to `heard`, which may stop it.
fn send_file<S: Conn>(
    stream: &mut S,
    mover: &mut Mover,
    (file, index, (from, size), chunk): (&File, u32, (u64, u64), u32),
    progress: &mut dyn FnMut(u64, u64),
    heard: &mut dyn FnMut(&mut S) -> Result<bool>,
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
        &super::Framing {
            chunk_size: chunk,
            header: &header,
        },
        mover,
        progress,
        heard,
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
