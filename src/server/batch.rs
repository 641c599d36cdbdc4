//! A batch received over secure mode (#12): the manifest read and checked whole, one
//! decision for all of it, then every file's data in manifest order, pipelined. A file at the
//! top is published as soon as it is whole; a tree as soon as its last entry is, under one
//! no-replace rename of its top directory. A cut keeps what was published and nothing else.

use std::io::Write;
use std::time::Instant;

use super::names::RequestName;
use super::policy::Reason;
use super::session::{MAX_EMPTY_DATA, Session};
use super::summary::End;
use super::tree::IncomingTree;
use super::{Event, Progress};
use crate::batch::frame::{
    self, DATA, DIGEST, Frame, ItemDone, MANIFEST, MAX_MANIFEST, MAX_MANIFEST_CHUNK, VERDICT,
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

/// Top files received whole, to be flushed in one go and then published.
#[derive(Default)]
struct Pending {
    files: Vec<(u32, crate::server::store::Incoming, String)>,
    bytes: u64,
    since: Option<Instant>,
}

impl Pending {
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
        // One file alone is asked about and logged as the single upload it is.
        let single = entries.len() == 1 && totals.files == 1;
        let decision = match single {
            true => {
                self.summary.request = Some(FileRequest::new(totals.bytes, &first_top));
                self.summary.name = Some(name.clone());
                self.decide_upload(stream, &name, totals.bytes, None)
            }
            false => {
                let batch = Some((&totals, largest));
                self.decide_upload(stream, &name, totals.bytes, batch)
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
            if stream.peer_closed() {
                return Ok(End::Abandoned);
            }
            let why = decision.reason.as_ref().map(Reason::to_string);
            send_verdict(stream, Verdict::Denied, why.as_deref().unwrap_or_default())?;
            return Ok(End::Denied);
        }
        send_verdict(stream, Verdict::Accepted, "")?;
        let started = Instant::now();
        let mut done = Vec::new();
        let mut mover = Mover::new(self.server.checksum && single);
        if frame::verifying() {
            mover = mover.with_blake3();
        }
        let mut current = 0;
        let received =
            self.receive_batch(stream, &entries, total, &mut mover, &mut current, &mut done);
        self.summary.transfer = started.elapsed();
        let stored = done.iter().map(|item| item.name.clone()).collect();
        match received {
            Ok(()) => {
                frame::send(stream, frame::DONE, 0, true, &frame::encode_done(&done))?;
                stream.flush()?;
                self.summary.sha256 = mover.sha256();
                match (single, done.first()) {
                    (true, Some(item)) => Ok(End::Stored(self.server.store.dir().join(&item.name))),
                    _ => Ok(End::Batch(stored)),
                }
            }
            Err(err) => {
                // What was published stays; the client hears which top item failed.
                self.summary.batch_stored = stored;
                done.push(ItemDone {
                    index: current,
                    stored: false,
                    name: String::new(),
                });
                let _ = frame::send(stream, frame::DONE, 0, true, &frame::encode_done(&done));
                let _ = stream.flush();
                self.linger(stream);
                Err(err)
            }
        }
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

    /// Receives every file of the batch in order, making directories and publishing each top
    /// item as soon as it is whole; `done` gets them as they are.
    /// `current` is kept at the index of the top item being received.
    fn receive_batch<S: Conn>(
        &mut self,
        stream: &mut S,
        entries: &[Entry],
        total: u64,
        mover: &mut Mover,
        current: &mut u32,
        done: &mut Vec<ItemDone>,
    ) -> Result<()> {
        let store = &self.server.store;
        let mut tree: Option<OpenTree> = None;
        let mut pending = Pending::default();
        for (index, entry) in entries.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let Some((top, inside)) = entry.path.split_first() else {
                continue;
            };
            if inside.is_empty() {
                if let Some(open) = tree.take() {
                    pending.publish(store, done)?;
                    done.push(publish_tree(open)?);
                }
                // Files done before a tree begins are published first: a tree may take long.
                if pending.due() || entry.kind == Kind::Dir {
                    pending.publish(store, done)?;
                }
                *current = index;
                match entry.kind {
                    Kind::Dir => tree = Some((index, top.clone(), store.incoming_tree()?)),
                    Kind::File { size, executable } => {
                        let mut incoming = store.incoming()?;
                        self.receive_file(stream, index, size, incoming.file(), mover)?;
                        if executable {
                            make_executable(incoming.file())?;
                        }
                        pending.files.push((index, incoming, top.clone()));
                        pending.bytes += size;
                        pending.since.get_or_insert_with(Instant::now);
                    }
                }
            } else {
                // The batch check saw to it that a tree's entries follow its top, in one run.
                let (_, _, open) = tree.as_ref().ok_or(Error::BatchOrder("its directory"))?;
                match entry.kind {
                    Kind::Dir => open.mkdir(inside)?,
                    Kind::File { size, executable } => {
                        let mut file = open.create(inside, executable)?;
                        self.receive_file(stream, index, size, &mut file, mover)?;
                    }
                }
            }
            if let Kind::File { .. } = entry.kind {
                self.batch_progress(top, self.summary.received, total);
            }
        }
        pending.publish(store, done)?;
        if let Some(open) = tree.take() {
            done.push(publish_tree(open)?);
        }
        Ok(())
    }

    /// Receives entry `index`'s `size` bytes into `file`: data messages carrying its index,
    /// `seq` counting from 0, the last one marked, adding up to exactly `size`.
    fn receive_file<S: Conn>(
        &mut self,
        stream: &mut S,
        index: u32,
        size: u64,
        file: &mut std::fs::File,
        mover: &mut Mover,
    ) -> Result<()> {
        let mut received = 0u64;
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
            Some(_) => {
                self.summary.verified = true;
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
