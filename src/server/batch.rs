//! A batch received over secure mode: the manifest read and checked entry by entry within
//! the memory budget, one decision for all of it, then every file's data in manifest order,
//! pipelined. A file at the top is published as soon as it is whole; a tree as soon as its
//! last entry is, under one no-replace rename of its top directory. A cut keeps what was
//! published; from a secure client, with partials configured, it also keeps what the cut
//! interrupted, in a [`Partial`] that the same client's next try of the same batch resumes
//! from, once that client proved its file starts with the same bytes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::budget::Charge;
use super::names::RequestName;
use super::partial::{Key, Opened, Partial};
use super::policy::Reason;
use super::session::{BatchAsk, MAX_EMPTY_DATA, Resuming, Session};
use super::summary::End;
use super::tree::IncomingTree;
use super::{Event, Progress};
use crate::batch::frame::{
    self, Code, DATA, DIGEST, Frame, ItemDone, MANIFEST, MAX_MANIFEST, PROOF, RESUME_AT, Refused,
    ResumePoint, VERDICT,
};
use crate::batch::{BatchProblem, EntryRef, Kind, Limits, Manifest, Mtime};
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Mover};
use crate::wire::{FileRequest, Limit, MAX_DATA_LEN, MsgType, Verdict};

/// Bytes of a manifest read at a time: many entries a read, and any one entry whole (a longer
/// path is refused from its length, before it is read).
const MANIFEST_BUF: usize = 64 * 1024;
const _: () = assert!(MANIFEST_BUF >= frame::MAX_ENTRY_HEAD + frame::MAX_PATH);

/// Why a manifest is refused before anyone is asked.
enum Refusal {
    /// An entry breaks the batch rule.
    Problem(BatchProblem),
    /// Keeping it would take the manifests in flight past their memory budget.
    Busy,
}

/// The tree being received.
struct OpenTree {
    /// Its top entry's index.
    index: u32,
    /// Its name.
    name: String,
    /// Where it is built.
    tree: IncomingTree,
    /// When its directories were last changed, as the client said: set once it is whole (a
    /// directory's time changes with every entry made in it). Its own first, then the
    /// directories inside, in manifest order.
    times: Vec<(String, Mtime)>,
}

impl OpenTree {
    fn new(index: u32, name: &str, tree: IncomingTree, modified: Option<Mtime>) -> OpenTree {
        OpenTree {
            index,
            name: name.to_string(),
            tree,
            times: modified.map(|at| (String::new(), at)).into_iter().collect(),
        }
    }

    /// Publishes it whole, with its directories' times.
    fn publish(self) -> Result<ItemDone> {
        let OpenTree {
            index,
            name,
            tree,
            times,
        } = self;
        let path = tree.publish(&name, &times)?;
        Ok(stored(index, &path))
    }
}

/// Files of a batch that the policy refused one by one: not sent, the rest goes on.
#[derive(Debug, Default)]
struct Refusals {
    groups: Vec<Refused>,
    /// Each group's reason, for the log.
    reasons: Vec<Reason>,
    /// Bytes of the files refused.
    bytes: u64,
}

impl Refusals {
    /// The files of `manifest` that `policy` refuses whatever else is decided.
    fn of(manifest: &Manifest, policy: &super::Policy) -> Refusals {
        let mut refusals = Refusals::default();
        for (index, entry) in manifest.iter().enumerate() {
            let Kind::File { size, .. } = entry.kind else {
                continue;
            };
            let Some(reason) = policy.refuses_file(size) else {
                continue;
            };
            let (code, why) = (reason.code(), reason.for_sender());
            let group = match refusals
                .groups
                .iter_mut()
                .position(|g| g.code == code && g.why == why)
            {
                Some(at) => &mut refusals.groups[at],
                None => {
                    refusals.groups.push(Refused {
                        code,
                        why,
                        entries: Vec::new(),
                    });
                    refusals.reasons.push(reason);
                    let last = refusals.groups.len() - 1;
                    &mut refusals.groups[last]
                }
            };
            group.entries.push(index as u32);
            refusals.bytes += size;
        }
        refusals
    }

    /// How many files.
    fn count(&self) -> usize {
        self.groups.iter().map(|g| g.entries.len()).sum()
    }

    /// Why entry `index` is refused, if it is.
    fn of_entry(&self, index: u32) -> Option<&Refused> {
        self.groups
            .iter()
            .find(|g| g.entries.binary_search(&index).is_ok())
    }

    /// Bytes they take in memory.
    fn heap_bytes(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| g.entries.capacity() as u64 * 4 + g.why.capacity() as u64)
            .sum()
    }
}

/// Top files received whole and waiting to be flushed together and published: at most this
/// many, …
const FLUSH_FILES: usize = 256;
/// … this many bytes, …
const FLUSH_BYTES: u64 = 64 * 1024 * 1024;
/// … or this long after the first of them.
const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// A file this large, when the batch may resume, starts after a checkpoint: what comes before
/// is made durable and recorded, so that a server killed in the middle of it resumes inside
/// it. Inside a tree, a checkpoint is also taken after as many files, bytes or time as
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

    /// Whether what waits would wait past [`FLUSH_AFTER`] if it waited `more` (the time the
    /// next file will take): then it is published and told first.
    fn waits_past(&self, more: Duration) -> bool {
        self.since
            .is_some_and(|at| at.elapsed().saturating_add(more) >= FLUSH_AFTER)
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
    /// How many of `done` the client was told of already (ITEM messages).
    reported: usize,
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
        if due && let Some(open) = &self.tree {
            open.tree.flush()?;
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

/// How long `size` bytes will take at the pace of `received` bytes in `elapsed` (a pace not
/// known yet: long).
fn time_for(size: u64, received: u64, elapsed: Duration) -> Duration {
    match received {
        0 => Duration::MAX,
        _ => Duration::from_secs_f64(
            (size as f64 * elapsed.as_secs_f64() / received as f64).min(1e9),
        ),
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
    /// Tells a client of an older version of secure mode, in that version's words, that it
    /// must be updated.
    pub(super) fn too_old<S: Conn>(&mut self, stream: &mut S, version: u16) -> End {
        let reason = Reason::OldClient(version);
        let _ = frame::send(
            stream,
            VERDICT,
            0,
            true,
            &frame::encode_old_denial(&reason.to_string()),
        );
        let _ = stream.flush();
        self.summary.reason = Some(reason);
        self.linger(stream);
        End::TurnedAway
    }

    /// Serves a batch whose first manifest message's header is `first`.
    pub(super) fn batch<S: Conn>(&mut self, stream: &mut S, first: Frame) -> Result<End> {
        // Held until the batch ends: the manifest lives as long.
        let mut charge = self.server.budget.manifests.charge();
        let manifest = match self.read_manifest(stream, first, &mut charge)? {
            Ok(manifest) => manifest,
            Err(refusal) => {
                let (end, code, why) = match refusal {
                    Refusal::Problem(problem) => {
                        let why = problem.to_string();
                        (End::BatchRefused(problem), Code::Refused, why)
                    }
                    Refusal::Busy => {
                        let reason = Reason::ManifestMemory(self.server.budget.manifests.limit());
                        let why = reason.for_sender();
                        self.summary.reason = Some(reason);
                        (End::TurnedAway, Code::Busy, why)
                    }
                };
                let _ = send_verdict(stream, &frame::Verdict::Denied(code, why));
                self.linger(stream);
                return Ok(end);
            }
        };
        // Files the policy refuses whatever else is decided: the rest goes on.
        let refusals = Refusals::of(&manifest, &self.server.policy);
        if charge
            .at_least(manifest.heap_bytes() + refusals.heap_bytes())
            .is_err()
        {
            let reason = Reason::ManifestMemory(self.server.budget.manifests.limit());
            let _ = send_verdict(
                stream,
                &frame::Verdict::Denied(Code::Busy, reason.for_sender()),
            );
            self.summary.reason = Some(reason);
            self.linger(stream);
            return Ok(End::TurnedAway);
        }
        let totals = manifest.totals().clone();
        let index_of = |entry: &EntryRef<'_>, at: usize| (entry.size(), at as u32);
        // Sizes as they count from now on: a refused file's as nothing.
        let counted = |(size, at): (u64, u32)| match refusals.of_entry(at) {
            Some(_) => 0,
            None => size,
        };
        let sizes = || {
            manifest
                .iter()
                .enumerate()
                .map(|(at, entry)| counted(index_of(&entry, at)))
        };
        let accepted_bytes = totals.bytes - refusals.bytes;
        let largest = sizes().max().unwrap_or(0);
        let first_top = totals.first_tops.first().cloned().unwrap_or_default();
        let name = RequestName {
            sent: first_top.clone(),
            stored: first_top.clone(),
            cp949: false,
        };
        // A cut try of this batch from this client may have left a partial. Before a
        // decision nothing is made for it: an earlier try's is only opened.
        let key = self
            .summary
            .client
            .id()
            .map(|id| Key::of_manifest(&id, &manifest));
        let mut partial = key.and_then(|key| self.open_partial(key, accepted_bytes, false));
        let start = match &mut partial {
            Some(partial) => resume_point(partial, &manifest)?,
            None => ResumePoint::default(),
        };
        // A batch resumed needs only what it misses; the other partials keep what they miss.
        let resuming = self
            .server
            .partials()
            .zip(key)
            .map(|(partials, key)| Resuming {
                held: match partial {
                    Some(_) => start.bytes_before(sizes()),
                    None => 0,
                },
                reserved: partials.reserved(&key),
            });
        let refused = refusals.count();
        self.summary.refused = (refused > 0).then(|| {
            let why = match &refusals.groups[..] {
                [one] => one.why.clone(),
                _ => "refused by policy".to_string(),
            };
            (refused, why)
        });
        // One file alone is asked about and logged as the single upload it is; a batch whose
        // every file is refused already is denied without asking.
        let single = manifest.len() == 1 && totals.files == 1;
        if single {
            self.summary.request = Some(FileRequest::new(totals.bytes, &first_top));
            self.summary.name = Some(name.clone());
        }
        let everything_refused = totals.files > 0 && refused == totals.files;
        let decision = match (single, refusals.reasons.first()) {
            (_, Some(reason)) if everything_refused => super::Decision::deny(reason.clone()),
            (true, _) => self.decide_upload(stream, &name, totals.bytes, None, resuming),
            (false, _) => {
                let ask = BatchAsk {
                    totals: &totals,
                    largest,
                    refused: self
                        .summary
                        .refused
                        .as_ref()
                        .map(|(count, why)| (*count, why.as_str())),
                };
                self.decide_upload(stream, &name, accepted_bytes, Some(&ask), resuming)
            }
        };
        if !single {
            self.summary.batch = Some(totals.clone());
        }
        let total = accepted_bytes;
        self.summary.reason = decision.reason.clone();
        if decision.always {
            self.trust_client();
        }
        if decision.verdict == Verdict::Denied {
            // A partial from earlier tries waits for the next.
            drop(partial);
            if stream.peer_closed() {
                return Ok(End::Abandoned);
            }
            let (code, why) = match &decision.reason {
                Some(reason) => (reason.code(), reason.for_sender()),
                None => (Code::Denied, String::new()),
            };
            send_verdict(stream, &frame::Verdict::Denied(code, why))?;
            return Ok(End::Denied);
        }
        // Accepted: now a partial is made for this try, if there is none, so that a cut
        // leaves something to resume.
        if partial.is_none() {
            partial = key.and_then(|key| self.open_partial(key, accepted_bytes, true));
        }
        send_verdict(
            stream,
            &frame::Verdict::Accepted(start, refusals.groups.clone()),
        )?;
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
                    .map(|_| start.bytes_before(sizes()))
                    .filter(|&held| held > 0);
                let batch = (&manifest, &refusals);
                self.receive_batch(stream, batch, start, total, &mut mover, &mut rx)
            });
        self.summary.transfer = started.elapsed();
        let stored = rx
            .done
            .iter()
            .filter(|item| item.is_stored())
            .map(|item| item.name.clone())
            .collect();
        match received {
            Ok(()) => {
                if let Some(partial) = rx.partial.take() {
                    // Done: nothing to resume. A partial left behind only costs space.
                    let _ = partial.remove();
                }
                frame::send(stream, frame::DONE, 0, true, &frame::encode_done(&rx.done))?;
                stream.flush()?;
                self.summary.blake3 = self.stored_digests(&manifest, &rx.done);
                match (single, rx.done.first()) {
                    (true, Some(item)) if item.is_stored() => {
                        Ok(End::Stored(self.server.store.dir().join(&item.name)))
                    }
                    _ => Ok(End::Batch(stored)),
                }
            }
            Err(err) => {
                self.keep_partial(&manifest, &mut rx, &mover, &err);
                // What was published stays; the client hears which top item failed, and why.
                self.summary.batch_stored = stored;
                let mut done = rx.done.clone();
                done.push(ItemDone::failed(
                    rx.current,
                    code_of(&err),
                    &err.to_string(),
                ));
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
        manifest: &Manifest,
        done: &[ItemDone],
    ) -> Vec<(std::path::PathBuf, [u8; 32])> {
        let dir = self.server.store.dir();
        let mut digests = std::mem::take(&mut self.digests);
        digests.sort_by_key(|(index, _)| *index);
        let names: std::collections::HashMap<u32, &str> = done
            .iter()
            .map(|item| (item.index, item.name.as_str()))
            .collect();
        let mut digests = digests.into_iter().peekable();
        let mut stored = Vec::new();
        // One pass: a file's top item is the last entry at the top up to it.
        let mut top = 0;
        for (at, entry) in manifest.iter().enumerate() {
            if entry.depth() == 1 {
                top = at as u32;
            }
            while let Some((_, digest)) = digests.next_if(|(index, _)| *index as usize == at) {
                if let Some(name) = names.get(&top) {
                    let mut path = dir.join(name);
                    if let Some(inside) = entry.inside() {
                        path.extend(inside.split('/'));
                    }
                    stored.push((path, digest));
                }
            }
        }
        stored
    }

    /// The partial `key` of this batch from this client, locked, if the server keeps
    /// partials: an earlier try's, or (with `make`) a new one. `None` (this try cannot
    /// resume, nor be resumed) when there is none to open, another session holds it, or it
    /// cannot be opened.
    ///
    /// The session that holds it may still be finding out that its connection died (the same
    /// client is back sooner than its timeout): it is waited for, up to this server's timeout.
    fn open_partial(&mut self, key: Key, total: u64, make: bool) -> Option<Partial> {
        let partials = self.server.partials()?;
        let id = self.summary.client.id()?;
        let deadline = Deadline::after(self.server.timeout);
        loop {
            match partials.open(key, &id.to_string(), make) {
                Ok(Opened::Partial(mut partial)) => {
                    partial.state.total = total;
                    return Some(*partial);
                }
                Ok(Opened::InUse) if !make && deadline.time_left().is_ok() => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Ok(Opened::InUse | Opened::Absent) => return None,
                Err(_) => {
                    if let (Some(refusal), Some(report)) = (partials.refusal_once(), self.report) {
                        report(Event::PartialsRefused(refusal));
                    }
                    return None;
                }
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
    fn keep_partial(
        &mut self,
        manifest: &Manifest,
        rx: &mut Receiving,
        mover: &Mover,
        err: &Error,
    ) {
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
        let kept = ResumePoint { next, held }.bytes_before(manifest.iter().map(|e| e.size()));
        partial.state.kept = kept;
        // The tree the cut fell in stays only if the cut was inside one of its files.
        let in_tree = rx.file.is_some() && rx.tree.as_ref().is_some_and(|open| open.index < next);
        if !in_tree {
            rx.tree = None;
            let _ = partial.remove_tree();
        }
        // The files of a kept tree will not be checked again: they are made durable now. The
        // bytes of the file cut short need not be: the next try proves them first.
        let saved = match in_tree {
            true => partial.flush(),
            false => Ok(()),
        }
        .and_then(|()| partial.save(true));
        let bytes = partial.bytes();
        if saved.is_err() || bytes > partials.max_bytes() {
            let _ = partial.remove();
            return;
        }
        self.summary.kept = Some(kept);
        drop(partial);
        let _ = partials.enforce_max();
    }

    /// Reads the manifest's messages, `first` already read: every entry checked by the batch
    /// rule as it arrives, and held only within `charge`'s budget. One deadline for the whole
    /// manifest, and every message but the last must bring entries.
    fn read_manifest<S: Conn>(
        &mut self,
        stream: &mut S,
        first: Frame,
        charge: &mut Charge,
    ) -> Result<Result<Manifest, Refusal>> {
        let deadline = Deadline::after(self.server.timeout);
        let mut manifest = Manifest::new(Limits::DEFAULT);
        let mut buf = vec![0; MANIFEST_BUF];
        let mut codec = frame::EntryCodec::default();
        let mut frame = first;
        let mut read = 0u64;
        loop {
            if frame.kind != MANIFEST {
                return Err(Error::BatchOrder("a manifest message"));
            }
            if frame.len == 0 && !frame.last {
                return Err(Error::BatchOrder("a manifest message with entries"));
            }
            read += u64::from(frame.len);
            if read > MAX_MANIFEST {
                return Err(Error::TooLarge {
                    what: Limit::Manifest,
                    got: read,
                    limit: MAX_MANIFEST,
                });
            }
            let mut left = frame.len as usize;
            let mut have = 0;
            while left > 0 {
                let want = left.min(MANIFEST_BUF - have);
                let n = deadline
                    .reader(stream)
                    .read(&mut buf[have..have + want])
                    .map_err(|err| deadline.error(err, MsgType::Request))?;
                if n == 0 {
                    return Err(Error::Truncated);
                }
                (have, left) = (have + n, left - n);
                let mut at = 0;
                loop {
                    let (entry, used) = match codec.decode(&buf[at..have]) {
                        Ok(Some(decoded)) => decoded,
                        Ok(None) => break,
                        // A path too long to read is refused as the batch rule says, with
                        // its reason; anything else that does not parse ends the connection.
                        Err(err) => match err.get_ref().and_then(|e| e.downcast_ref()) {
                            Some(problem @ BatchProblem::PathLength { .. }) => {
                                return Ok(Err(Refusal::Problem(problem.clone())));
                            }
                            _ => return Err(err.into()),
                        },
                    };
                    // Asked before anything is allocated: past the budget, nothing is.
                    let need = manifest.heap_bytes() + manifest.growth_for(entry.path.len());
                    if charge.at_least(need).is_err() {
                        return Ok(Err(Refusal::Busy));
                    }
                    if let Err(problem) = manifest.push(entry) {
                        return Ok(Err(Refusal::Problem(problem)));
                    }
                    charge.settle(manifest.heap_bytes());
                    at += used;
                }
                buf.copy_within(at..have, 0);
                have -= at;
            }
            if have > 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a manifest entry cut short",
                )
                .into());
            }
            if frame.last {
                return Ok(match manifest.finish() {
                    Ok(()) => Ok(manifest),
                    Err(problem) => Err(Refusal::Problem(problem)),
                });
            }
            frame = Frame::read_from(&mut deadline.reader(stream))
                .map_err(|err| deadline.error(err, MsgType::Request))?
                .ok_or(Error::Closed(MsgType::Request))?;
        }
    }

    /// Receives every file of the batch in order from `start` (but those refused), making
    /// directories and publishing each top item as soon as it is whole, with the times the
    /// client gave; `rx.done` gets them as they are, and the top files refused.
    fn receive_batch<S: Conn>(
        &mut self,
        stream: &mut S,
        (manifest, refusals): (&Manifest, &Refusals),
        start: ResumePoint,
        total: u64,
        mover: &mut Mover,
        rx: &mut Receiving,
    ) -> Result<()> {
        let store = &self.server.store;
        let first = usize::try_from(start.next).unwrap_or(usize::MAX);
        // Resuming inside a tree: it is there as its last checkpoint left it, and what a
        // killed server wrote after that (its entries from `first` on) goes.
        if let (Some(partial), Some(entry)) = (&rx.partial, manifest.get(first))
            && entry.depth() > 1
        {
            let top = manifest
                .iter()
                .take(first)
                .rposition(|e| e.depth() == 1)
                .ok_or(Error::BatchOrder("its directory"))?;
            let tree = partial.tree(store, false)?;
            let later: Vec<_> = manifest
                .iter()
                .skip(first)
                .take_while(|e| e.depth() > 1)
                .collect();
            for later in later.iter().rev() {
                if let Some(inside) = later.inside() {
                    tree.remove(inside, later.kind == Kind::Dir)?;
                }
            }
            let index = u32::try_from(top).unwrap_or(u32::MAX);
            let top_entry = manifest
                .get(top)
                .ok_or(Error::BatchOrder("its directory"))?;
            let mut open = OpenTree::new(index, top_entry.path, tree, top_entry.modified);
            // The times of its directories made before the cut.
            open.times.extend(
                manifest
                    .iter()
                    .take(first)
                    .skip(top + 1)
                    .filter(|e| e.kind == Kind::Dir)
                    .filter_map(|e| Some((e.inside()?.to_string(), e.modified?))),
            );
            rx.current = index;
            rx.tree = Some(open);
            rx.mark(start.next)?;
        }
        // How fast bytes come, to tell how long the next file will take.
        let began = Instant::now();
        for (index, entry) in manifest.iter().enumerate().skip(first) {
            // What was published (or refused) since the last entry, told at once.
            report_items(stream, rx)?;
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let offset = if index == start.next { start.held } else { 0 };
            let top = entry.top();
            self.live = Some((top.to_string(), total));
            let refused = refusals.of_entry(index);
            match entry.inside() {
                None => {
                    if let Some(open) = rx.tree.take() {
                        rx.pending.publish(store, &mut rx.done)?;
                        rx.done.push(open.publish()?);
                    }
                    if let Some(refused) = refused {
                        // Not sent: said in the account, in its place.
                        rx.done
                            .push(ItemDone::failed(index, refused.code, &refused.why));
                        continue;
                    }
                    // Files done before a tree begins are published first, and told: a tree may
                    // take long. So before a large file (and with partials, a checkpoint: see
                    // `mark`), and before any file that would keep them waiting past
                    // FLUSH_AFTER at the pace so far: each is told within about that.
                    let large =
                        matches!(entry.kind, Kind::File { size, .. } if size >= CHECKPOINT_BEFORE);
                    let takes = match entry.kind {
                        Kind::File { size, .. } => {
                            time_for(size, self.summary.received, began.elapsed())
                        }
                        Kind::Dir => Duration::ZERO,
                    };
                    if rx.pending.due()
                        || entry.kind == Kind::Dir
                        || large
                        || rx.pending.waits_past(takes)
                    {
                        rx.pending.publish(store, &mut rx.done)?;
                        // Told before what may take long.
                        report_items(stream, rx)?;
                    }
                    rx.current = index;
                    if rx.pending.is_empty() {
                        rx.mark(index)?;
                    }
                    match entry.kind {
                        Kind::Dir => {
                            rx.unchecked = (0, 0, None);
                            let tree = match &rx.partial {
                                Some(partial) => partial.tree(store, true)?,
                                None => store.incoming_tree()?,
                            };
                            rx.tree = Some(OpenTree::new(index, top, tree, entry.modified));
                        }
                        Kind::File { size, executable } => {
                            let incoming = match &rx.partial {
                                None => {
                                    let mut incoming = store.incoming()?;
                                    self.receive_file(
                                        stream,
                                        index,
                                        size,
                                        0,
                                        incoming.file(),
                                        mover,
                                    )?;
                                    if executable {
                                        crate::sys::make_executable(incoming.file())?;
                                    }
                                    set_time(incoming.file(), entry.modified)?;
                                    crate::sys::flush_one(incoming.file())?;
                                    incoming
                                }
                                Some(_) => {
                                    let file = self.receive_partial(
                                        stream, rx, index, size, executable, offset, mover,
                                    )?;
                                    set_time(&file, entry.modified)?;
                                    crate::sys::flush_one(&file)?;
                                    let partial = rx
                                        .partial
                                        .as_ref()
                                        .ok_or(Error::BatchOrder("a partial"))?;
                                    store.adopt(file, partial.dir(), &Partial::data_name(index))?
                                }
                            };
                            rx.pending.files.push((index, incoming, top.to_string()));
                            rx.pending.bytes += size;
                            rx.pending.since.get_or_insert_with(Instant::now);
                        }
                    }
                }
                // Refused inside a tree: the tree is made without it.
                Some(_) if refused.is_some() => continue,
                Some(inside) => {
                    // The batch check saw to it that a tree's entries follow its top, in one run.
                    let open = rx.tree.as_mut().ok_or(Error::BatchOrder("its directory"))?;
                    match entry.kind {
                        Kind::Dir => {
                            open.tree.mkdir(inside)?;
                            if let Some(at) = entry.modified {
                                open.times.push((inside.to_string(), at));
                            }
                        }
                        Kind::File { size, executable } if rx.partial.is_none() => {
                            let mut file = open.tree.create(inside, executable)?;
                            self.receive_file(stream, index, size, 0, &mut file, mover)?;
                            set_time(&file, entry.modified)?;
                            crate::sys::flush_one(&file)?;
                        }
                        Kind::File { size, executable } => {
                            if index != start.next {
                                rx.checkpoint_tree(index, size)?;
                            }
                            let file = self.receive_partial(
                                stream, rx, index, size, executable, offset, mover,
                            )?;
                            set_time(&file, entry.modified)?;
                            crate::sys::flush_one(&file)?;
                            drop(file);
                            let (Some(partial), Some(open)) = (&rx.partial, &rx.tree) else {
                                return Err(Error::BatchOrder("its directory"));
                            };
                            open.tree
                                .adopt(inside, partial.dir(), &Partial::data_name(index))?;
                        }
                    }
                }
            }
            if let Kind::File { .. } = entry.kind {
                let there = self.summary.received + self.summary.resumed.unwrap_or(0);
                self.batch_progress(top, there, total, true);
            }
        }
        rx.pending.publish(store, &mut rx.done)?;
        if let Some(open) = rx.tree.take() {
            rx.done.push(open.publish()?);
        }
        // The last ones are in the account that follows.
        rx.reported = rx.done.len();
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
            // Live during a file too, not only after each (throttled).
            if let Some((top, total)) = self.live.clone() {
                let there = self.summary.received + self.summary.resumed.unwrap_or(0);
                self.batch_progress(&top, there, total, false);
            }
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

    /// Reports the batch's progress, throttled like a single upload's (`whole`: a file just
    /// ended).
    fn batch_progress(&mut self, top: &str, received: u64, total: u64, whole: bool) {
        let Some(report) = self.report else { return };
        let last = whole && received == total;
        let Some(elapsed) = self.throttle.due(Instant::now(), last) else {
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
fn resume_point(partial: &mut Partial, manifest: &Manifest) -> Result<ResumePoint> {
    let state = &partial.state;
    let next = state.next as usize;
    let fits = next < manifest.len()
        && state.done.iter().all(|item| (item.index as usize) < next)
        && manifest
            .get(next)
            .is_some_and(|entry| entry.depth() == 1 || partial.has_tree());
    if !fits {
        partial.clear()?;
        return Ok(ResumePoint::default());
    }
    let held = match manifest.get(next).map(|entry| entry.kind) {
        Some(Kind::File { size, .. }) => match partial.open_data(state.next)? {
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
        _ => 0,
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

/// Tells the client, one ITEM message each, of the top items done since it was last told.
fn report_items<S: Conn>(stream: &mut S, rx: &mut Receiving) -> Result<()> {
    if rx.reported == rx.done.len() {
        return Ok(());
    }
    for item in &rx.done[rx.reported..] {
        let body = frame::encode_done(std::slice::from_ref(item));
        frame::send(stream, frame::ITEM, 0, true, &body)?;
    }
    rx.reported = rx.done.len();
    stream.flush()?;
    Ok(())
}

/// The one answer to a batch.
fn send_verdict<S: Write>(stream: &mut S, verdict: &frame::Verdict) -> Result<()> {
    frame::send(stream, VERDICT, 0, true, &verdict.encode())?;
    stream.flush()?;
    Ok(())
}

fn stored(index: u32, path: &std::path::Path) -> ItemDone {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ItemDone::stored(index, &name)
}

/// What a top item failed of, for the client: its bytes did not check out, the server's
/// disk, or (the rest) the batch was cut before it was whole.
fn code_of(err: &Error) -> Code {
    match err {
        Error::Verification => Code::Mismatch,
        Error::Io(_) if !resumable(err) => Code::ServerError,
        _ => Code::Cut,
    }
}

/// Sets a file's modification time to what the client said, if it said.
fn set_time(file: &std::fs::File, modified: Option<Mtime>) -> std::io::Result<()> {
    match modified {
        Some(at) => file.set_modified(at.to_system_time()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Entry;
    use crate::secure::Identity;
    use crate::server::budget::{Budget, MemoryBudget};
    use crate::server::{Partials, Policy, Server, Store, Summary};
    use crate::testing::Duplex;
    use std::sync::Arc;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind,
            modified: None,
        }
    }

    fn file(size: u64) -> Kind {
        Kind::File {
            size,
            executable: false,
        }
    }

    /// A whole batch from a client: its manifest, then each file's data and digest.
    fn batch(entries: &[Entry], contents: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_manifest(&mut out, entries).unwrap();
        for (index, bytes) in contents {
            frame::send(&mut out, DATA, *index, true, bytes).unwrap();
            frame::send(
                &mut out,
                DIGEST,
                *index,
                true,
                blake3::hash(bytes).as_bytes(),
            )
            .unwrap();
        }
        out
    }

    fn run(server: &Server, client: &[u8]) -> (Summary, Vec<Frame>) {
        let mut duplex = Duplex::new(&[client]);
        let summary = server
            .session("127.0.0.1:4000".parse().unwrap())
            .run_authenticated(&mut duplex, Identity::of_public_key(&[1]), 4);
        let mut frames = Vec::new();
        let mut replies = &duplex.output[..];
        while let Some(frame) = Frame::read_from(&mut replies).unwrap() {
            frame::read_body(&mut replies, frame.len, 1 << 20).unwrap();
            frames.push(frame);
        }
        (summary, frames)
    }

    #[test]
    fn a_batch_over_any_stream_is_stored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let keep = std::time::Duration::from_secs(60);
        let partials = Partials::in_dir(dir.path(), keep, 1 << 20).unwrap();
        let server = Server::new(Store::open(dir.path()).unwrap(), Policy::accept_all())
            .with_partials(partials);
        let entries = [
            entry("d", Kind::Dir),
            entry("d/x", file(3)),
            entry("f", file(2)),
        ];
        let (summary, frames) = run(&server, &batch(&entries, &[(1, b"abc"), (2, b"hi")]));
        assert!(summary.is_stored(), "{summary}");
        let kinds: Vec<u32> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [VERDICT, frame::DONE]);
        assert_eq!(std::fs::read(dir.path().join("d/x")).unwrap(), b"abc");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"hi");
        // The partial made for it went with its end; the directory of partials stays.
        assert_eq!(
            std::fs::read_dir(dir.path().join(".fup-partial"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_manifest_past_the_memory_budget_is_turned_away_and_the_memory_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget {
            manifests: Arc::new(MemoryBudget::new(64 * 1024)),
            ..Budget::default()
        };
        let server =
            Server::new(Store::open(dir.path()).unwrap(), Policy::accept_all()).with_budget(budget);
        let many: Vec<Entry> = (0..10_000)
            .map(|i| entry(&format!("f{i}"), file(0)))
            .collect();
        let (summary, frames) = run(&server, &batch(&many, &[]));
        assert!(matches!(summary.end, End::TurnedAway), "{summary}");
        assert_eq!(summary.reason, Some(Reason::ManifestMemory(64 * 1024)));
        assert_eq!(frames[0].kind, VERDICT);
        assert_eq!(server.budget().manifests.used(), 0);
        // A small one fits.
        let (summary, _) = run(&server, &batch(&[entry("a", file(1))], &[(0, b"a")]));
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(server.budget().manifests.used(), 0);
    }
}
