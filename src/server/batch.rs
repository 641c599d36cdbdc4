//! A batch received over secure mode (#12): the manifest read and checked whole, one
//! decision for all of it, then every file's data in manifest order, pipelined. A file at the
//! top is published as soon as it is whole; a tree as soon as its last entry is, under one
//! no-replace rename of its top directory. A cut keeps what was published; from a secure
//! client, with partials configured, it also keeps what the cut interrupted, in a
//! [`Partial`] that the same client's next try of the same batch resumes from (#13), once
//! that client proved its file starts with the same bytes.

use std::io::Write;
use std::time::Instant;

use super::names::RequestName;
use super::partial::{Key, Opened, Partial};
use super::policy::Reason;
use super::session::{MAX_EMPTY_DATA, Resuming, Session};
use super::summary::End;
use super::tree::IncomingTree;
use super::{Event, Progress};
use crate::batch::frame::{
    self, DATA, DIGEST, Frame, ItemDone, MANIFEST, MAX_MANIFEST, MAX_MANIFEST_CHUNK, PROOF,
    RESUME_AT, ResumePoint, VERDICT,
};
use crate::batch::{Entry, Kind, Limits, check};
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Mover};
use crate::wire::{FileRequest, Limit, MAX_DATA_LEN, MsgType, Verdict};

/// The tree being received: its top entry's index, its name, and where it is built.
type OpenTree = (u32, String, IncomingTree);

/// Top files received whole and waiting to be flushed together and published: at most this
/// many, …
const FLUSH_FILES: usize = 256;
/// … this many bytes, …
const FLUSH_BYTES: u64 = 64 * 1024 * 1024;
/// … or this long after the first of them.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A file this large, when the batch may resume, starts after a checkpoint: what comes before
/// is made durable and recorded, so that a server killed in the middle of it resumes inside
/// it (#13). Inside a tree, a checkpoint is also taken after as many files, bytes or time as
/// a flush of top files.
const CHECKPOINT_BEFORE: u64 = 16 * 1024 * 1024;

/// Top files received whole, to be flushed in one go and then published.
#[derive(Default)]
struct Pending {
    files: Vec<(u32, crate::server::store::Incoming, String)>,
    bytes: u64,
    since: Option<Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn due(&self) -> bool {
        self.files.len() >= FLUSH_FILES
            || self.bytes >= FLUSH_BYTES
            || self.since.is_some_and(|at| at.elapsed() >= FLUSH_AFTER)
    }

    /// One flush of the file system for all, then each published without replacing
    /// anything, then one flush of the directory.
    fn publish(&mut self, store: &crate::server::Store, done: &mut Vec<ItemDone>) -> Result<()> {
        if self.files.is_empty() {
            return Ok(());
        }
        store.flush_all()?;
        for (index, incoming, name) in self.files.drain(..) {
            let path = incoming.publish_flushed(&name)?;
            done.push(stored(index, &path));
        }
        store.flush_dir()?;
        self.bytes = 0;
        self.since = None;
        Ok(())
    }
}

/// A batch being received: what is open, what is done, and where a cut would resume.
#[derive(Default)]
struct Receiving {
    /// The tree being received.
    tree: Option<OpenTree>,
    /// Top files received whole, not yet published.
    pending: Pending,
    /// The top item being received.
    current: u32,
    /// The entry whose bytes are arriving, if any.
    file: Option<u32>,
    /// Top items published, by earlier tries too.
    done: Vec<ItemDone>,
    /// Where this batch's bytes wait until they are published, when a cut may resume.
    partial: Option<Partial>,
    /// Inside a tree, what was received since its last checkpoint: files, bytes, since when.
    unchecked: (usize, u64, Option<Instant>),
}

impl Receiving {
    /// Before entry `index` of the open tree, `size` bytes: a checkpoint when that file is
    /// large or enough came since the last one (the tree flushed, then `index` recorded).
    fn checkpoint_tree(&mut self, index: u32, size: u64) -> Result<()> {
        let (files, bytes, since) = &mut self.unchecked;
        let due = size >= CHECKPOINT_BEFORE
            || *files >= FLUSH_FILES
            || *bytes >= FLUSH_BYTES
            || since.is_some_and(|at| at.elapsed() >= FLUSH_AFTER);
        if due && let Some((_, _, tree)) = &self.tree {
            tree.flush()?;
            self.unchecked = (0, 0, None);
            return self.mark(index);
        }
        *files += 1;
        *bytes += size;
        since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Records in the partial that everything before entry `next` is kept (the files before
    /// it are published), so that a server killed from now on resumes there.
    fn mark(&mut self, next: u32) -> Result<()> {
        if let Some(partial) = &mut self.partial {
            partial.state.next = next;
            partial.state.held = None;
            partial.state.digest = None;
            partial.state.done.clone_from(&self.done);
            partial.save(false)?;
        }
        Ok(())
    }
}

/// Whether an upload cut by `err` may resume: the connection failed or went quiet (or the
/// disk did), rather than the client saying something wrong or lying.
fn resumable(err: &Error) -> bool {
    use std::io::ErrorKind as Kind;
    match err {
        Error::Closed(_) | Error::Truncated | Error::TimedOut { .. } => true,
        // The network's troubles (and a TLS record that fails its check, as a connection
        // tampered with would), not the disk's: a full disk or a file-size limit would
        // fail the same way again.
        Error::Io(err) => matches!(
            err.kind(),
            Kind::ConnectionReset
                | Kind::ConnectionAborted
                | Kind::BrokenPipe
                | Kind::UnexpectedEof
                | Kind::TimedOut
                | Kind::NotConnected
                | Kind::InvalidData
        ),
        _ => false,
    }
}

impl Session<'_> {
    /// Serves a batch whose first manifest message's header is `first`.
    pub(super) fn batch<S: Conn>(&mut self, stream: &mut S, first: Frame) -> Result<End> {
        let limits = Limits::DEFAULT;
        let entries = self.read_manifest(stream, first, &limits)?;
        let totals = match check(&entries, &limits) {
            Ok(totals) => totals,
            Err(problem) => {
                let _ = send_verdict(stream, Verdict::Denied, &problem.to_string());
                self.linger(stream);
                return Ok(End::BatchRefused(problem));
            }
        };
        let largest = entries
            .iter()
            .map(|entry| match entry.kind {
                Kind::File { size, .. } => size,
                Kind::Dir => 0,
            })
            .max()
            .unwrap_or(0);
        let first_top = totals.tops.first().cloned().unwrap_or_default();
        let name = RequestName {
            sent: first_top.clone(),
            stored: first_top.clone(),
            cp949: false,
        };
        // A cut try of this batch from this client may have left a partial (#13).
        let mut partial = self.open_partial(&entries, totals.bytes);
        let start = match &mut partial {
            Some(partial) => resume_point(partial, &entries)?,
            None => ResumePoint::default(),
        };
        let resuming = partial.as_ref().map(|partial| Resuming {
            held: start.bytes_before(&entries),
            reserved: self
                .server
                .partials()
                .map_or(0, |partials| partials.reserved(partial)),
        });
        // One file alone is asked about and logged as the single upload it is.
        let single = entries.len() == 1 && totals.files == 1;
        let decision = match single {
            true => {
                self.summary.request = Some(FileRequest::new(totals.bytes, &first_top));
                self.summary.name = Some(name.clone());
                self.decide_upload(stream, &name, totals.bytes, None, resuming)
            }
            false => {
                let batch = Some((&totals, largest));
                self.decide_upload(stream, &name, totals.bytes, batch, resuming)
            }
        };
        if !single {
            self.summary.batch = Some(totals.clone());
        }
        let total = totals.bytes;
        self.summary.reason = decision.reason.clone();
        if decision.always {
            self.trust_client();
        }
        if decision.verdict == Verdict::Denied {
            // A partial made for this try only goes; one from earlier tries waits for the next.
            if let Some(partial) = partial.filter(Partial::is_new) {
                let _ = partial.remove();
            }
            if stream.peer_closed() {
                return Ok(End::Abandoned);
            }
            let why = decision.reason.as_ref().map(Reason::to_string);
            send_verdict(stream, Verdict::Denied, why.as_deref().unwrap_or_default())?;
            return Ok(End::Denied);
        }
        frame::send(stream, VERDICT, 0, true, &frame::encode_accept(start))?;
        stream.flush()?;
        let started = Instant::now();
        let mut mover = Mover::new(false);
        if frame::verifying() {
            mover = mover.with_blake3();
        }
        let mut rx = Receiving {
            current: start.next,
            done: partial
                .as_ref()
                .map(|partial| partial.state.done.clone())
                .unwrap_or_default(),
            partial,
            ..Receiving::default()
        };
        let received = self
            .prove(stream, start, &mut rx, &mut mover)
            .and_then(|start| {
                self.summary.resumed = rx
                    .partial
                    .as_ref()
                    .map(|_| start.bytes_before(&entries))
                    .filter(|&held| held > 0);
                self.receive_batch(stream, &entries, start, total, &mut mover, &mut rx)
            });
        self.summary.transfer = started.elapsed();
        let stored = rx.done.iter().map(|item| item.name.clone()).collect();
        match received {
            Ok(()) => {
                if let Some(partial) = rx.partial.take() {
                    // Done: nothing to resume. A partial left behind only costs space.
                    let _ = partial.remove();
                }
                frame::send(stream, frame::DONE, 0, true, &frame::encode_done(&rx.done))?;
                stream.flush()?;
                self.summary.blake3 = self.stored_digests(&entries, &rx.done);
                match (single, rx.done.first()) {
                    (true, Some(item)) => Ok(End::Stored(self.server.store.dir().join(&item.name))),
                    _ => Ok(End::Batch(stored)),
                }
            }
            Err(err) => {
                self.keep_partial(&entries, &mut rx, &mover, &err);
                // What was published stays; the client hears which top item failed.
                self.summary.batch_stored = rx.done.iter().map(|item| item.name.clone()).collect();
                let mut done = rx.done.clone();
                done.push(ItemDone::failed(rx.current, &err.to_string()));
                let _ = frame::send(stream, frame::DONE, 0, true, &frame::encode_done(&done));
                let _ = stream.flush();
                self.linger(stream);
                Err(err)
            }
        }
    }

    /// Where each file hashed for `--checksum` was stored, with its digest.
    fn stored_digests(
        &mut self,
        entries: &[Entry],
        done: &[ItemDone],
    ) -> Vec<(std::path::PathBuf, [u8; 32])> {
        let dir = self.server.store.dir();
        std::mem::take(&mut self.digests)
            .into_iter()
            .filter_map(|(index, digest)| {
                let entry = entries.get(index as usize)?;
                let top = entries
                    .iter()
                    .position(|e| e.depth() == 1 && e.path[0] == entry.path[0])?;
                let item = done.iter().find(|item| item.index as usize == top)?;
                let mut path = dir.join(&item.name);
                path.extend(&entry.path[1..]);
                Some((path, digest))
            })
            .collect()
    }

    /// The partial of this batch from this client, locked, if it is secure and the server
    /// keeps partials; `None` (this try cannot resume, nor be resumed) when another session
    /// holds it or it cannot be opened.
    ///
    /// The session that holds it may still be finding out that its connection died (the same
    /// client is back sooner than its timeout): it is waited for, up to this server's timeout.
    fn open_partial(&mut self, entries: &[Entry], total: u64) -> Option<Partial> {
        let partials = self.server.partials()?;
        let id = self.summary.client.id()?;
        let key = Key::new(&id, entries);
        let deadline = Instant::now() + self.server.timeout;
        loop {
            match partials.open(key, &id) {
                Ok(Opened::Partial(mut partial)) => {
                    partial.state.total = total;
                    return Some(partial);
                }
                Ok(Opened::InUse) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Ok(Opened::InUse) | Err(_) => return None,
            }
        }
    }

    /// When the resume point holds bytes of a file, reads the client's proof that its copy
    /// starts with them and compares: the same, and the file goes on from there; not, and it
    /// starts over (the client hears which). Returns where the batch really starts.
    fn prove<S: Conn>(
        &mut self,
        stream: &mut S,
        start: ResumePoint,
        rx: &mut Receiving,
        mover: &mut Mover,
    ) -> Result<ResumePoint> {
        let Some(partial) = rx.partial.as_mut().filter(|_| start.held > 0) else {
            return Ok(start);
        };
        let deadline = Deadline::after(self.server.timeout);
        let frame = next_frame(stream, deadline)?;
        if frame.kind != PROOF || frame.id != start.next {
            return Err(Error::BatchOrder("the proof of the file being resumed"));
        }
        let body = frame::read_body(&mut deadline.reader(stream), frame.len, 40)
            .map_err(|err| deadline.error(err, MsgType::Data))?;
        let (their_held, theirs) = frame::decode_proof(&body)?;
        let mut data = partial
            .open_data(start.next)?
            .ok_or(Error::BatchOrder("a partial's data"))?;
        let ours = mover.hash_prefix(&mut data, start.held)?;
        let same = their_held == start.held
            && theirs == ours
            && partial.state.digest.is_none_or(|kept| kept == ours);
        let at = match same {
            true => start,
            false => {
                // Not the same bytes: that file starts over, nothing of it is trusted.
                data.set_len(0)?;
                mover.restart_blake3();
                ResumePoint {
                    next: start.next,
                    held: 0,
                }
            }
        };
        frame::send(stream, RESUME_AT, at.next, true, &at.held.to_le_bytes())?;
        stream.flush()?;
        Ok(at)
    }

    /// After a cut: keeps what the partial holds for the next try when the cut may resume
    /// (the files received whole are published, the one cut short and the tree it was in
    /// stay hidden), or removes it when it may not, or holds more than allowed.
    fn keep_partial(&mut self, entries: &[Entry], rx: &mut Receiving, mover: &Mover, err: &Error) {
        let Some(mut partial) = rx.partial.take() else {
            return;
        };
        let Some(partials) = self.server.partials() else {
            return;
        };
        if !resumable(err) {
            let _ = partial.remove();
            return;
        }
        let store = &self.server.store;
        // The files received whole passed their checks: they are published as usual.
        if rx.pending.publish(store, &mut rx.done).is_err() {
            let _ = partial.remove();
            return;
        }
        let next = rx.file.unwrap_or(rx.current);
        let held = partial
            .open_data(next)
            .ok()
            .flatten()
            .and_then(|data| data.metadata().ok())
            .map_or(0, |meta| meta.len());
        partial.state.next = next;
        partial.state.held = Some(held);
        partial.state.digest = mover
            .blake3_so_far()
            .filter(|&(count, _)| count == held)
            .map(|(_, digest)| digest);
        partial.state.done.clone_from(&rx.done);
        // The tree the cut fell in stays only if the cut was inside one of its files.
        let in_tree = rx.file.is_some() && rx.tree.as_ref().is_some_and(|(top, ..)| *top < next);
        if !in_tree {
            rx.tree = None;
            let _ = std::fs::remove_dir_all(partial.tree_path());
        }
        // The files of a kept tree will not be checked again: they are made durable now. The
        // bytes of the file cut short need not be: the next try proves them first.
        let saved = match in_tree {
            true => std::fs::File::open(partial.dir())
                .and_then(|dir| rustix::fs::syncfs(dir).map_err(std::io::Error::from)),
            false => Ok(()),
        }
        .and_then(|()| partial.save(true));
        let bytes = partial.bytes();
        if saved.is_err() || bytes > partials.max_bytes() {
            let _ = partial.remove();
            return;
        }
        self.summary.kept = Some(ResumePoint { next, held }.bytes_before(entries));
        drop(partial);
        let _ = partials.enforce_max();
    }

    /// Reads the manifest's messages, `first` already read, within the limits.
    fn read_manifest<S: Conn>(
        &mut self,
        stream: &mut S,
        first: Frame,
        limits: &Limits,
    ) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut frame = first;
        let mut read = 0u64;
        loop {
            if frame.kind != MANIFEST {
                return Err(Error::BatchOrder("a manifest message"));
            }
            read += u64::from(frame.len);
            if read > MAX_MANIFEST {
                return Err(Error::TooLarge {
                    what: Limit::Manifest,
                    got: read,
                    limit: MAX_MANIFEST,
                });
            }
            let deadline = Deadline::after(self.server.timeout);
            let body = frame::read_body(
                &mut deadline.reader(stream),
                frame.len,
                MAX_MANIFEST_CHUNK as u64,
            )
            .map_err(|err| deadline.error(err, MsgType::Request))?;
            frame::parse_manifest(&body, &mut entries, limits.max_entries)?;
            if frame.last {
                return Ok(entries);
            }
            frame = next_frame(stream, Deadline::after(self.server.timeout))?;
        }
    }

    /// Receives every file of the batch in order from `start`, making directories and
    /// publishing each top item as soon as it is whole; `rx.done` gets them as they are.
    fn receive_batch<S: Conn>(
        &mut self,
        stream: &mut S,
        entries: &[Entry],
        start: ResumePoint,
        total: u64,
        mover: &mut Mover,
        rx: &mut Receiving,
    ) -> Result<()> {
        let store = &self.server.store;
        let first = usize::try_from(start.next).unwrap_or(usize::MAX);
        // Resuming inside a tree: it is there as its last checkpoint left it, and what a
        // killed server wrote after that (its entries from `first` on) goes.
        if let (Some(partial), Some(entry)) = (&rx.partial, entries.get(first))
            && entry.depth() > 1
        {
            let top = entries[..first]
                .iter()
                .rposition(|e| e.depth() == 1)
                .ok_or(Error::BatchOrder("its directory"))?;
            let tree = store.resumable_tree(&partial.tree_path(), false)?;
            let end = entries[first..]
                .iter()
                .position(|e| e.depth() == 1)
                .map_or(entries.len(), |n| first + n);
            for later in entries[first..end].iter().rev() {
                tree.remove(&later.path[1..], later.kind == Kind::Dir)?;
            }
            let index = u32::try_from(top).unwrap_or(u32::MAX);
            rx.current = index;
            rx.tree = Some((index, entries[top].path[0].clone(), tree));
            rx.mark(start.next)?;
        }
        for (index, entry) in entries.iter().enumerate().skip(first) {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let offset = if index == start.next { start.held } else { 0 };
            let Some((top, inside)) = entry.path.split_first() else {
                continue;
            };
            if inside.is_empty() {
                if let Some(open) = rx.tree.take() {
                    rx.pending.publish(store, &mut rx.done)?;
                    rx.done.push(publish_tree(open)?);
                }
                // Files done before a tree begins are published first: a tree may take long.
                // So before a large file that may be resumed: a checkpoint (see `mark`).
                let large =
                    matches!(entry.kind, Kind::File { size, .. } if size >= CHECKPOINT_BEFORE);
                if rx.pending.due() || entry.kind == Kind::Dir || (large && rx.partial.is_some()) {
                    rx.pending.publish(store, &mut rx.done)?;
                }
                rx.current = index;
                if rx.pending.is_empty() {
                    rx.mark(index)?;
                }
                match entry.kind {
                    Kind::Dir => {
                        rx.unchecked = (0, 0, None);
                        let tree = match &rx.partial {
                            Some(partial) => store.resumable_tree(&partial.tree_path(), true)?,
                            None => store.incoming_tree()?,
                        };
                        rx.tree = Some((index, top.clone(), tree));
                    }
                    Kind::File { size, executable } => {
                        let incoming = match &rx.partial {
                            None => {
                                let mut incoming = store.incoming()?;
                                self.receive_file(stream, index, size, 0, incoming.file(), mover)?;
                                if executable {
                                    make_executable(incoming.file())?;
                                }
                                incoming
                            }
                            Some(_) => {
                                let file = self.receive_partial(
                                    stream, rx, index, size, executable, offset, mover,
                                )?;
                                let partial =
                                    rx.partial.as_ref().ok_or(Error::BatchOrder("a partial"))?;
                                store.adopt(file, &partial.data_path(index))?
                            }
                        };
                        rx.pending.files.push((index, incoming, top.clone()));
                        rx.pending.bytes += size;
                        rx.pending.since.get_or_insert_with(Instant::now);
                    }
                }
            } else {
                // The batch check saw to it that a tree's entries follow its top, in one run.
                let (_, _, open) = rx.tree.as_ref().ok_or(Error::BatchOrder("its directory"))?;
                match entry.kind {
                    Kind::Dir => open.mkdir(inside)?,
                    Kind::File { size, executable } if rx.partial.is_none() => {
                        let mut file = open.create(inside, executable)?;
                        self.receive_file(stream, index, size, 0, &mut file, mover)?;
                    }
                    Kind::File { size, executable } => {
                        if index != start.next {
                            rx.checkpoint_tree(index, size)?;
                        }
                        drop(
                            self.receive_partial(
                                stream, rx, index, size, executable, offset, mover,
                            )?,
                        );
                        let (Some(partial), Some((_, _, open))) = (&rx.partial, &rx.tree) else {
                            return Err(Error::BatchOrder("its directory"));
                        };
                        open.adopt(inside, &partial.data_path(index))?;
                    }
                }
            }
            if let Kind::File { .. } = entry.kind {
                let there = self.summary.received + self.summary.resumed.unwrap_or(0);
                self.batch_progress(top, there, total);
            }
        }
        rx.pending.publish(store, &mut rx.done)?;
        if let Some(open) = rx.tree.take() {
            rx.done.push(publish_tree(open)?);
        }
        Ok(())
    }

    /// Receives entry `index` into the partial's data file, from `offset` (bytes already
    /// there and proven), and returns the file once it is whole and checked.
    #[allow(clippy::too_many_arguments)]
    fn receive_partial<S: Conn>(
        &mut self,
        stream: &mut S,
        rx: &mut Receiving,
        index: u32,
        size: u64,
        executable: bool,
        offset: u64,
        mover: &mut Mover,
    ) -> Result<std::fs::File> {
        let partial = rx.partial.as_ref().ok_or(Error::BatchOrder("a partial"))?;
        let mut file = match offset {
            0 => partial.create_data(index, executable)?,
            _ => {
                let mut file = partial
                    .open_data(index)?
                    .ok_or(Error::BatchOrder("a partial's data"))?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
                file
            }
        };
        rx.file = Some(index);
        self.receive_file(stream, index, size, offset, &mut file, mover)?;
        rx.file = None;
        Ok(file)
    }

    /// Receives entry `index`'s `size` bytes into `file`: data messages carrying its index,
    /// `seq` counting from 0, the last one marked, adding up to exactly `size`.
    fn receive_file<S: Conn>(
        &mut self,
        stream: &mut S,
        index: u32,
        size: u64,
        from: u64,
        file: &mut std::fs::File,
        mover: &mut Mover,
    ) -> Result<()> {
        let mut received = from;
        let mut seq = 0u16;
        let mut empty_run = 0;
        loop {
            let deadline = Deadline::after(self.server.timeout);
            let frame = next_frame(stream, deadline)?;
            if frame.kind != DATA {
                return Err(Error::BatchOrder("a data message"));
            }
            if frame.id != index {
                return Err(Error::MessageId {
                    expected: index,
                    got: frame.id,
                });
            }
            if frame.seq != seq {
                return Err(Error::Sequence {
                    expected: seq,
                    got: frame.seq,
                });
            }
            seq = seq.wrapping_add(1);
            let len = u64::from(frame.len);
            if frame.len > MAX_DATA_LEN {
                return Err(Error::TooLarge {
                    what: Limit::DataMessage,
                    got: len,
                    limit: MAX_DATA_LEN.into(),
                });
            }
            if received + len > size {
                return Err(Error::TooLarge {
                    what: Limit::AnnouncedSize,
                    got: received + len,
                    limit: size,
                });
            }
            empty_run = if len == 0 && !frame.last {
                empty_run + 1
            } else {
                0
            };
            if empty_run > MAX_EMPTY_DATA {
                return Err(Error::NoProgress(empty_run));
            }
            mover
                .receive(stream, file, len, deadline)
                .map_err(|err| deadline.error(err, MsgType::Data))?;
            received += len;
            self.summary.received += len;
            if frame.last {
                if received != size {
                    return Err(Error::SizeMismatch {
                        announced: size,
                        received,
                    });
                }
                return self.check_digest(stream, index, mover);
            }
        }
    }

    /// Reads the client's digest of file `index` and compares it with what was received,
    /// before anything is published.
    fn check_digest<S: Conn>(
        &mut self,
        stream: &mut S,
        index: u32,
        mover: &mut Mover,
    ) -> Result<()> {
        let deadline = Deadline::after(self.server.timeout);
        let frame = next_frame(stream, deadline)?;
        if frame.kind != DIGEST || frame.id != index {
            return Err(Error::BatchOrder("the file's digest"));
        }
        let theirs = frame::read_body(&mut deadline.reader(stream), frame.len, 32)
            .map_err(|err| deadline.error(err, MsgType::Data))?;
        match mover.take_blake3() {
            Some(ours) if theirs[..] != ours[..] => Err(Error::Verification),
            Some(ours) => {
                self.summary.verified = true;
                if self.server.checksum {
                    self.digests.push((index, ours));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Reports the batch's progress, throttled like a single upload's.
    fn batch_progress(&mut self, top: &str, received: u64, total: u64) {
        let Some(report) = self.report else { return };
        let Some(elapsed) = self.throttle.due(Instant::now(), received == total) else {
            return;
        };
        report(Event::Progress(Progress {
            connection: self.summary.connection,
            peer: self.summary.peer,
            name: top.to_string(),
            received,
            size: total,
            elapsed,
        }));
    }
}

/// Where a partial's batch can resume, checked against the batch (the partial is emptied
/// when it does not fit): after the entries it says are kept, and after the bytes of the
/// next that its data file holds (to be proven by the client).
fn resume_point(partial: &mut Partial, entries: &[Entry]) -> Result<ResumePoint> {
    let state = &partial.state;
    let next = state.next as usize;
    let fits = next < entries.len()
        && state.done.iter().all(|item| (item.index as usize) < next)
        && (entries[next].depth() == 1 || partial.tree_path().is_dir());
    if !fits {
        partial.clear()?;
        return Ok(ResumePoint::default());
    }
    let held = match entries[next].kind {
        Kind::File { size, .. } => match partial.open_data(state.next)? {
            Some(data) => {
                let len = data.metadata()?.len();
                match state.held {
                    // Bytes beyond what a clean cut recorded are not trusted.
                    Some(held) if held <= len && held <= size => held,
                    None if len <= size => len,
                    _ => 0,
                }
            }
            None => 0,
        },
        Kind::Dir => 0,
    };
    Ok(ResumePoint {
        next: state.next,
        held,
    })
}

/// The next message's header, by `deadline`.
fn next_frame<S: Conn>(stream: &mut S, deadline: Deadline) -> Result<Frame> {
    Frame::read_from(&mut deadline.reader(stream))
        .map_err(|err| deadline.error(err, MsgType::Data))?
        .ok_or(Error::Closed(MsgType::Data))
}

/// The one answer to a batch: 0 accepted, 1 denied, then why in UTF-8.
fn send_verdict<S: Write>(stream: &mut S, verdict: Verdict, why: &str) -> Result<()> {
    let mut body = vec![u8::from(verdict == Verdict::Denied)];
    body.extend_from_slice(why.as_bytes());
    frame::send(stream, VERDICT, 0, true, &body)?;
    stream.flush()?;
    Ok(())
}

fn publish_tree((index, top, open): OpenTree) -> Result<ItemDone> {
    let path = open.publish(&top)?;
    Ok(stored(index, &path))
}

fn stored(index: u32, path: &std::path::Path) -> ItemDone {
    ItemDone {
        index,
        stored: true,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Adds the execute bits where the read bits are, as a new program's mode would have them
/// (the umask already took its share of the read bits).
fn make_executable(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    file.set_permissions(std::fs::Permissions::from_mode(
        mode | ((mode & 0o444) >> 2),
    ))
}
