//! The page's two requests that move files: an offer, decided once for the whole selection
//! like a batch of fup-client's, and each file's bytes, received into a partial (or a temp
//! file) and published whole, a folder's files together once the last one is in.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Web;
use super::http::{Buffered, Head, Response, Status, send_continue};
use super::offer::{Held, ItemState, MAX_OFFER_BODY, Offer, Offered, OfferedFile, lock};
use crate::error::Error;
use crate::net::transfer::BUFFER_LEN;
use crate::net::{Conn, Deadline, Mover};
use crate::server::budget::address_key;
use crate::server::names::RequestName;
use crate::server::partial::{Opened, Partial};
use crate::server::policy::{Decision, Reason};
use crate::server::session::{BatchAsk, Resuming, Session};
use crate::server::store::Incoming;
use crate::server::summary::{End, Summary};
use crate::server::{Event, Progress};
use crate::text;
use crate::wire::{FileRequest, Verdict};

/// Memory an offer's JSON may take while read, per byte of it (its text, then its values).
const JSON_COST: u64 = 8;

/// Where one file's bytes go while received.
enum Target {
    /// A partial of its own, kept if the upload is cut.
    Partial(Box<Partial>, File),
    /// A temp file in the upload directory, removed if the upload is cut.
    Temp(Incoming),
}

impl Target {
    fn file(&mut self) -> &mut File {
        match self {
            Target::Partial(_, file) => file,
            Target::Temp(incoming) => incoming.file(),
        }
    }
}

/// Why a file's request is turned away before its bytes: the answer, and whether its body
/// was left unread.
type Refusal = (Response, bool);

/// The owner a browser page's partials are recorded under: a digest of the page's key (the
/// key itself, which lets a page resume, is never written down).
fn owner(page: &[u8; 16]) -> String {
    let digest = blake3::hash(page);
    format!("browser {}", text::hex(&digest.as_bytes()[..8]))
}

/// `from=N` in a query, or 0 without one.
fn query_from(query: Option<&str>) -> Option<u64> {
    let Some(query) = query else { return Some(0) };
    let mut from = 0;
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("from=") {
            if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            from = value.parse().ok()?;
        }
    }
    Some(from)
}

/// `TOKEN/INDEX` of a file's path: 32 hex digits, then at most 6 digits.
fn parse_target(rest: &str) -> Option<([u8; 16], usize)> {
    let (token, index) = rest.split_once('/')?;
    let digits = !index.is_empty() && index.len() <= 6 && index.bytes().all(|b| b.is_ascii_digit());
    let index = digits.then(|| index.parse::<usize>().ok()).flatten()?;
    Some((text::unhex::<16>(token)?, index))
}

/// A time in milliseconds since the Unix epoch, as a system time (none before it).
fn system_time(ms: i64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(ms).ok()?))
}

impl Session<'_> {
    /// A log line's summary for one upload of this connection.
    fn web_upload_summary(&self) -> Summary {
        let mut summary = Summary::new(self.summary.peer, self.summary.connection);
        summary.client = self.summary.client.clone();
        summary
    }

    /// A log line's summary for one file of a page's upload: its name as the page sent it
    /// (a path inside a folder), stored under its last part.
    fn web_file_summary(&self, file: &OfferedFile) -> Summary {
        let mut summary = self.web_upload_summary();
        summary.request = Some(FileRequest {
            size: file.size,
            name: file.path.as_bytes().to_vec(),
        });
        summary.name = Some(RequestName {
            sent: file.path.clone(),
            stored: file.name().to_string(),
            cp949: false,
        });
        summary
    }

    fn web_report_upload(&self, summary: Summary) {
        if let Some(report) = self.report {
            report(Event::Upload(Box::new(summary)));
        }
    }

    /// `POST /offer`: reads the selection, refuses the files the rules refuse one by one,
    /// asks once about the rest, and answers each file's verdict (with, for an accepted
    /// one, how much of it the server holds from a cut try, and that part's SHA-256).
    pub(super) fn web_offer<C: Conn>(
        &mut self,
        web: &Web,
        conn: &mut C,
        buf: &mut Buffered,
        head: &Head,
        https: bool,
    ) -> Refusal {
        let Some(len) = head.length else {
            return (
                Response::error(Status::LengthRequired, "an offer needs a Content-Length"),
                true,
            );
        };
        // JSON, as the page sends it: another site's form cannot send that without the
        // browser asking this server first (which it refuses).
        if !head
            .content_type
            .as_deref()
            .is_some_and(|kind| kind.starts_with("application/json"))
        {
            return (
                Response::error(
                    Status::UnsupportedType,
                    "an offer is JSON (application/json)",
                ),
                len == 0,
            );
        }
        if len > MAX_OFFER_BODY as u64 {
            let why = format!("an offer of more than {MAX_OFFER_BODY} bytes");
            return (Response::error(Status::TooLarge, &why), false);
        }
        // The offer is held while the operator decides: it counts against the memory all
        // lists of entries in flight may take.
        let mut charge = self.server.budget.manifests.charge();
        if charge.at_least(len * JSON_COST).is_err() {
            let why = Reason::ManifestMemory(self.server.budget.manifests.limit()).for_sender();
            return (Response::error(Status::Busy, &why), false);
        }
        if head.expect_continue && send_continue(conn).is_err() {
            return (
                Response::error(Status::BadRequest, "connection failed"),
                false,
            );
        }
        let deadline = Deadline::after(self.server.timeout);
        // `len` is at most MAX_OFFER_BODY.
        let body = match buf.read_body(conn, len as usize, deadline) {
            Ok(body) => body,
            Err(_) => {
                return (
                    Response::error(Status::BadRequest, "the offer did not arrive whole in time"),
                    false,
                );
            }
        };
        let mut offered = match Offered::parse(&body) {
            Ok(offered) => offered,
            Err(err) => return (Response::error(Status::BadRequest, &err.to_string()), true),
        };
        drop(body);
        if let Some(max) = self.server.policy.max_size {
            for file in offered.files.iter_mut().filter(|f| f.refused.is_none()) {
                if file.size > max {
                    file.refused = Some(Reason::MaxSize(max).for_sender());
                }
            }
        }
        let decision = self.web_decide_offer(web, conn, &offered);
        self.summary.reason.clone_from(&decision.reason);
        if decision.verdict == Verdict::Denied {
            return (self.web_deny_offer(&offered, &decision, https), true);
        }
        let states = offered
            .files
            .iter()
            .map(|file| match file.refused {
                Some(_) => ItemState::Refused,
                None => ItemState::Waiting,
            })
            .collect();
        let page = offered.key;
        let offer = Offer {
            owner: address_key(self.summary.peer.ip()),
            page,
            files: offered.files.clone(),
            states,
            reason: decision.reason.clone(),
            folder_started: Default::default(),
            touched: Instant::now(),
            finished: None,
        };
        let token = match web.offers.insert(offer) {
            Ok(token) => token,
            Err(reason) => {
                return (
                    self.web_deny_offer(&offered, &Decision::deny(reason), https),
                    true,
                );
            }
        };
        let files: Vec<Value> = offered
            .files
            .iter()
            .map(|file| match &file.refused {
                Some(why) => json!({"verdict": "denied", "reason": why}),
                None => {
                    let (from, sha256) = self.web_resume_point(&page, file);
                    json!({"verdict": "accepted", "from": from, "sha256": sha256})
                }
            })
            .collect();
        let answer = json!({
            "verdict": "accepted",
            "token": text::hex(&token),
            "files": files,
        });
        (Response::json(Status::Ok, &answer), true)
    }

    /// The decision on an offer: refused outright when every file is, or the server holds
    /// all the offers it may; else the policy, then the operator, once for the rest.
    fn web_decide_offer<C: Conn>(&self, web: &Web, conn: &C, offered: &Offered) -> Decision {
        let accepted: Vec<&OfferedFile> = offered
            .files
            .iter()
            .filter(|file| file.refused.is_none())
            .collect();
        let Some(first) = accepted.first() else {
            return Decision::from(Verdict::Denied);
        };
        if let Err(reason) = web.offers.room_for(self.summary.peer.ip()) {
            return Decision::deny(reason);
        }
        let totals = offered.totals();
        let refused: Vec<&String> = offered
            .files
            .iter()
            .filter_map(|f| f.refused.as_ref())
            .collect();
        let largest = accepted.iter().map(|file| file.size).max().unwrap_or(0);
        let name = RequestName {
            sent: first.path.clone(),
            stored: first.top().to_string(),
            cp949: false,
        };
        let why = refused.first().map(|why| why.as_str()).unwrap_or_default();
        let ask = BatchAsk {
            totals: &totals,
            largest,
            refused: (!refused.is_empty()).then_some((refused.len(), why)),
        };
        let single = accepted.len() == 1 && refused.is_empty() && !first.in_folder();
        // What this page's cut tries left counts as there already (the question says so);
        // what other partials miss stays free for them.
        let resuming = self.server.partials().map(|partials| Resuming {
            held: accepted
                .iter()
                .map(|file| self.web_held(&offered.key, file))
                .fold(0, u64::saturating_add),
            reserved: partials.reserved(&first.key(&offered.key)),
        });
        self.decide_upload(
            conn,
            &name,
            totals.bytes,
            (!single).then_some(&ask),
            resuming,
        )
    }

    /// The bytes of `file` a cut try from this page left, if the server keeps them.
    fn web_held(&self, page: &[u8; 16], file: &OfferedFile) -> u64 {
        self.web_held_data(page, file)
            .map_or(0, |(_, _, held)| held.min(file.size))
    }

    /// `file`'s partial from this page, locked, its data file and that file's length, if
    /// the server keeps partials and holds one.
    fn web_held_data(
        &self,
        page: &[u8; 16],
        file: &OfferedFile,
    ) -> Option<(Box<Partial>, File, u64)> {
        let partials = self.server.partials()?;
        let Ok(Opened::Partial(partial)) = partials.open(file.key(page), &owner(page), false)
        else {
            return None;
        };
        let data = partial.open_data(0).ok().flatten()?;
        let held = data.metadata().map_or(0, |meta| meta.len());
        Some((partial, data, held))
    }

    /// The answer to a denied offer, and its log line: every file denied, each with its
    /// own reason or the offer's.
    fn web_deny_offer(&self, offered: &Offered, decision: &Decision, https: bool) -> Response {
        let why = match &decision.reason {
            Some(Reason::PlainRefused) if !https => {
                "plain http is refused here (--require-secure): open this page at its https:// address".to_string()
            }
            Some(reason) => reason.for_sender(),
            None if offered.files.iter().all(|f| f.refused.is_some()) => {
                "no file of the selection can be taken".to_string()
            }
            None => "denied by the server's operator".to_string(),
        };
        let mut summary = self.web_upload_summary();
        let refused: Vec<&String> = offered
            .files
            .iter()
            .filter_map(|f| f.refused.as_ref())
            .collect();
        summary.reason.clone_from(&decision.reason);
        summary.batch = Some(offered.totals());
        if let Some(first) = refused.first() {
            summary.refused = Some((refused.len(), (*first).clone()));
        }
        summary.end = End::Denied;
        self.web_report_upload(summary);
        let files: Vec<Value> = offered
            .files
            .iter()
            .map(|file| json!({"verdict": "denied", "reason": file.refused.as_ref().unwrap_or(&why)}))
            .collect();
        Response::json(
            Status::Ok,
            &json!({"verdict": "denied", "reason": why, "files": files}),
        )
    }

    /// How much of `file` the server holds from this page's cut try, and the SHA-256 of
    /// those bytes (for the page to compare with its own copy before it sends the rest).
    fn web_resume_point(&self, page: &[u8; 16], file: &OfferedFile) -> (u64, Option<String>) {
        let Some((_locked, mut data, held)) = self.web_held_data(page, file) else {
            return (0, None);
        };
        if held == 0 || held > file.size {
            return (0, None);
        }
        match sha256_prefix(&mut data, held) {
            Ok(digest) => (held, Some(text::hex(&digest))),
            Err(_) => (0, None),
        }
    }

    /// `GET /file/TOKEN/INDEX`: how much of an accepted file the server holds from a try of
    /// this same offer that was cut, for the page to send the rest (`{"from": N}`), or that
    /// it is being received still, or stored.
    pub(super) fn web_file_status(&self, web: &Web, rest: &str) -> Response {
        let Some((token, index)) = parse_target(rest) else {
            return Response::error(Status::NotFound, "no such upload");
        };
        let Some(shared) = web.offers.get(&token) else {
            return Response::error(Status::NotFound, "no such upload");
        };
        let offer = lock(&shared);
        if offer.owner != address_key(self.summary.peer.ip()) {
            return Response::error(
                Status::Forbidden,
                "this upload was offered from another address",
            );
        }
        let Some(file) = offer.files.get(index) else {
            return Response::error(Status::NotFound, "no such file in this upload");
        };
        let state = match &offer.states[index] {
            ItemState::Refused => json!({"state": "denied"}),
            ItemState::Waiting => {
                json!({"state": "waiting", "from": self.web_held(&offer.page, file)})
            }
            ItemState::Receiving => json!({"state": "receiving"}),
            ItemState::Received(_) => json!({"state": "received"}),
            ItemState::Stored(name) => json!({"state": "stored", "stored": name}),
        };
        Response::json(Status::Ok, &state)
    }

    /// `PUT /file/TOKEN/INDEX?from=N`: one accepted file's bytes from `N` on, exactly the
    /// rest of it; stored when whole (with its folder, once the folder is whole).
    pub(super) fn web_file<C: Conn>(
        &mut self,
        web: &Web,
        conn: &mut C,
        buf: &mut Buffered,
        head: &Head,
        rest: &str,
    ) -> Refusal {
        let no_body = head.length.unwrap_or(0) == 0;
        let Some((token, index)) = parse_target(rest) else {
            return (Response::error(Status::NotFound, "no such upload"), no_body);
        };
        let Some(from) = query_from(head.query.as_deref()) else {
            return (
                Response::error(Status::BadRequest, "from= takes a number of bytes"),
                no_body,
            );
        };
        // Without a length (and without chunks), a request has no body: an empty file.
        let len = head.length.unwrap_or(0);
        let Some(shared) = web.offers.get(&token) else {
            let why = "no such upload (it was never accepted, or was dropped after a long pause): choose the files again";
            return (Response::error(Status::NotFound, why), no_body);
        };
        let (file, page, reason) = {
            let mut offer = lock(&shared);
            if offer.owner != address_key(self.summary.peer.ip()) {
                return (
                    Response::error(
                        Status::Forbidden,
                        "this upload was offered from another address",
                    ),
                    no_body,
                );
            }
            let Some(file) = offer.files.get(index).cloned() else {
                return (
                    Response::error(Status::NotFound, "no such file in this upload"),
                    no_body,
                );
            };
            let why = match &offer.states[index] {
                ItemState::Waiting => None,
                ItemState::Refused => Some((Status::Forbidden, "this file was not accepted")),
                ItemState::Receiving => Some((
                    Status::Conflict,
                    "this file is being received on another connection",
                )),
                ItemState::Received(_) | ItemState::Stored(_) => {
                    Some((Status::Conflict, "this file was received already"))
                }
            };
            if let Some((status, why)) = why {
                return (Response::error(status, why), no_body);
            }
            let rest = file.size.checked_sub(from);
            if rest != Some(len) {
                let why = match rest {
                    None => format!(
                        "from={from} is past the end of this file ({} bytes)",
                        file.size
                    ),
                    Some(rest) => format!(
                        "a Content-Length of {len} bytes, where the rest of this file from {from} is {rest}"
                    ),
                };
                return (Response::error(Status::BadRequest, &why), no_body);
            }
            offer.states[index] = ItemState::Receiving;
            offer.touched = Instant::now();
            offer
                .folder_started
                .entry(file.top().to_string())
                .or_insert_with(Instant::now);
            (file, offer.page, offer.reason.clone())
        };
        let received = self.web_receive_file(conn, buf, head, &file, &page, from, len);
        let mut offer = lock(&shared);
        offer.touched = Instant::now();
        let (response, consumed) = match received {
            Err(refusal) => {
                offer.states[index] = ItemState::Waiting;
                refusal
            }
            Ok((target, started)) => {
                let stored = self.web_finish_file(
                    &mut offer, index, &file, &page, target, from, started, reason,
                );
                (stored, true)
            }
        };
        if offer.is_done() {
            // Kept a while, for a page whose last answer was lost to ask.
            offer.finished = Some(Instant::now());
        }
        drop(offer);
        (response, consumed)
    }

    /// Opens where `file`'s bytes from `from` go, receives the `len` of them, and keeps
    /// what a cut left. Returns the target, whole, and when the bytes began.
    #[allow(clippy::too_many_arguments)]
    fn web_receive_file<C: Conn>(
        &mut self,
        conn: &mut C,
        buf: &mut Buffered,
        head: &Head,
        file: &OfferedFile,
        page: &[u8; 16],
        from: u64,
        len: u64,
    ) -> Result<(Target, Instant), Refusal> {
        let no_body = len == 0;
        let mut target = self
            .web_open_target(file, page, from)
            .map_err(|(status, why)| (Response::error(status, &why), no_body))?;
        if head.expect_continue && send_continue(conn).is_err() {
            return Err((
                Response::error(Status::BadRequest, "connection failed"),
                false,
            ));
        }
        let started = Instant::now();
        let mut mover = Mover::new(self.server.checksum && from == 0);
        let moved = self.web_receive_body(conn, buf, &mut target, &mut mover, file, from, len);
        let mut summary = self.web_file_summary(file);
        summary.transfer = started.elapsed();
        summary.sha256 = mover.sha256();
        match moved {
            Ok(()) => Ok((target, started)),
            Err((err, got)) => {
                summary.received = got;
                summary.kept = self.web_keep_cut(target);
                summary.resumed = (from > 0).then_some(from);
                summary.end = End::Failed(err);
                self.web_report_upload(summary);
                Err((
                    Response::error(Status::BadRequest, "the upload was cut"),
                    false,
                ))
            }
        }
    }

    /// The file `file`'s bytes go to, from `from` on: its partial when the server keeps
    /// them (what an earlier try left, cut back to `from`), else a new temp file.
    fn web_open_target(
        &self,
        file: &OfferedFile,
        page: &[u8; 16],
        from: u64,
    ) -> Result<Target, (Status, String)> {
        let server_error =
            |err: io::Error| (Status::ServerError, format!("cannot store it: {err}"));
        let temp = || {
            self.server
                .store
                .incoming()
                .map(Target::Temp)
                .map_err(server_error)
        };
        let Some(partials) = self.server.partials() else {
            if from > 0 {
                return Err((
                    Status::Conflict,
                    "this server keeps nothing of cut uploads: send the file from 0".into(),
                ));
            }
            return temp();
        };
        let mut partial = match partials.open(file.key(page), &owner(page), true) {
            Ok(Opened::Partial(partial)) => partial,
            Ok(Opened::InUse | Opened::Absent) => {
                return Err((
                    Status::Conflict,
                    "this file is being received on another connection".into(),
                ));
            }
            Err(err) => {
                if let (Some(refusal), Some(report)) = (partials.refusal_once(), self.report) {
                    report(Event::PartialsRefused(refusal));
                }
                if from > 0 {
                    return Err(server_error(err));
                }
                return temp();
            }
        };
        partial.state.total = file.size;
        let data = match from {
            0 => partial.create_data(0, false).map_err(server_error)?,
            from => {
                let held = partial.open_data(0).map_err(server_error)?;
                let mut data = match held {
                    Some(data) if data.metadata().is_ok_and(|meta| meta.len() >= from) => data,
                    _ => {
                        return Err((
                            Status::Conflict,
                            format!(
                                "the server holds less than {from} bytes of this file: send it from 0"
                            ),
                        ));
                    }
                };
                data.set_len(from).map_err(server_error)?;
                data.seek(SeekFrom::Start(from)).map_err(server_error)?;
                data
            }
        };
        Ok(Target::Partial(partial, data))
    }

    /// Receives the body's `len` bytes into `target`: what came with the head first, then
    /// the connection's, each stretch within the server's timeout. On failure, says how
    /// many arrived.
    #[allow(clippy::too_many_arguments)]
    fn web_receive_body<C: Conn>(
        &mut self,
        conn: &mut C,
        buf: &mut Buffered,
        target: &mut Target,
        mover: &mut Mover,
        file: &OfferedFile,
        from: u64,
        len: u64,
    ) -> Result<(), (Error, u64)> {
        let early = buf.take(usize::try_from(len).unwrap_or(usize::MAX));
        let mut got = early.len() as u64;
        target
            .file()
            .write_all(early)
            .map_err(|err| (Error::Io(err), 0))?;
        while got < len {
            let chunk = (len - got).min(BUFFER_LEN as u64 * 4);
            let deadline = Deadline::after(self.server.timeout);
            if let Err(err) = mover.receive(conn, target.file(), chunk, deadline) {
                // What arrived of the chunk is in the file: its length says how much.
                let written = target
                    .file()
                    .metadata()
                    .map_or(from + got, |meta| meta.len());
                let err = deadline.error(err, crate::wire::MsgType::Data);
                return Err((err, written.saturating_sub(from)));
            }
            got += chunk;
            self.web_progress(file, from + got);
        }
        Ok(())
    }

    /// Reports a file's progress, at most every [`PROGRESS_EVERY`](crate::server::PROGRESS_EVERY).
    fn web_progress(&mut self, file: &OfferedFile, received: u64) {
        let Some(report) = self.report else { return };
        let Some(elapsed) = self.throttle.due(Instant::now(), received == file.size) else {
            return;
        };
        report(Event::Progress(Progress {
            connection: self.summary.connection,
            peer: self.summary.peer,
            name: file.path.clone(),
            received,
            size: file.size,
            elapsed,
        }));
    }

    /// After a cut: a partial keeps what arrived (durable, within `--max-partial`); a temp
    /// file goes. Returns the bytes kept.
    fn web_keep_cut(&self, target: Target) -> Option<u64> {
        let Target::Partial(mut partial, data) = target else {
            return None;
        };
        let partials = self.server.partials()?;
        let held = data.metadata().map_or(0, |meta| meta.len());
        let saved = data.sync_data().and_then(|()| {
            partial.state.held = Some(held);
            partial.state.kept = held;
            partial.save(true)
        });
        drop(data);
        if held == 0 || saved.is_err() || partial.bytes() > partials.max_bytes() {
            let _ = partial.remove();
            return None;
        }
        drop(partial);
        let _ = partials.enforce_max();
        Some(held)
    }

    /// A file received whole: published alone, or kept for its folder (published with the
    /// folder's last file). Returns the page's answer; logs what was stored.
    #[allow(clippy::too_many_arguments)]
    fn web_finish_file(
        &self,
        offer: &mut Offer,
        index: usize,
        file: &OfferedFile,
        page: &[u8; 16],
        mut target: Target,
        from: u64,
        started: Instant,
        reason: Option<Reason>,
    ) -> Response {
        if let Some(at) = file.modified.and_then(system_time) {
            let _ = target.file().set_modified(at);
        }
        if !file.in_folder() {
            let mut summary = self.web_file_summary(file);
            summary.reason = reason;
            summary.resumed = (from > 0).then_some(from);
            summary.received = file.size - from;
            let published = self.web_publish_file(target, file.name());
            summary.transfer = started.elapsed();
            return match published {
                Ok(path) => {
                    let stored = path
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    offer.states[index] = ItemState::Stored(stored.clone());
                    summary.end = End::Stored(path);
                    self.web_report_upload(summary);
                    Response::json(Status::Ok, &json!({"verdict": "stored", "stored": stored}))
                }
                Err(err) => {
                    offer.states[index] = ItemState::Waiting;
                    let why = format!("cannot store it: {err}");
                    summary.end = End::Failed(Error::Io(err));
                    self.web_report_upload(summary);
                    Response::error(Status::ServerError, &why)
                }
            };
        }
        let held = match target {
            Target::Temp(incoming) => Held::Temp(incoming),
            Target::Partial(mut partial, data) => {
                let size = file.size;
                let saved = data.sync_data().and_then(|()| {
                    partial.state.held = Some(size);
                    partial.state.kept = size;
                    partial.save(false)
                });
                if let Err(err) = saved {
                    offer.states[index] = ItemState::Waiting;
                    return Response::error(Status::ServerError, &format!("cannot keep it: {err}"));
                }
                Held::Partial(file.key(page))
            }
        };
        offer.states[index] = ItemState::Received(held);
        let top = file.top().to_string();
        let members = offer.folder_files(&top);
        let whole = members
            .iter()
            .all(|&i| matches!(offer.states[i], ItemState::Received(_)));
        if !whole {
            return Response::json(Status::Ok, &json!({"verdict": "received"}));
        }
        let folder_started = offer.folder_started.get(&top).copied().unwrap_or(started);
        let bytes: u64 = members.iter().map(|&i| offer.files[i].size).sum();
        let mut summary = self.web_upload_summary();
        summary.reason.clone_from(&offer.reason);
        let folder_only = Offered {
            key: *page,
            files: members.iter().map(|&i| offer.files[i].clone()).collect(),
        };
        summary.batch = Some(folder_only.totals());
        summary.received = bytes;
        let published = self.web_publish_folder(offer, &members, &top);
        summary.transfer = folder_started.elapsed();
        match published {
            Ok(path) => {
                let stored = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                for &i in &members {
                    offer.states[i] = ItemState::Stored(stored.clone());
                }
                summary.end = End::Batch(vec![stored.clone()]);
                self.web_report_upload(summary);
                Response::json(Status::Ok, &json!({"verdict": "stored", "folder": stored}))
            }
            Err(err) => {
                for &i in &members {
                    offer.states[i] = ItemState::Waiting;
                }
                let why = format!("cannot store the folder: {err}");
                summary.end = End::Failed(Error::Io(err));
                self.web_report_upload(summary);
                Response::error(Status::ServerError, &why)
            }
        }
    }

    /// Publishes one whole file under `name` (or a free name next to it).
    fn web_publish_file(&self, target: Target, name: &str) -> io::Result<PathBuf> {
        let store = &self.server.store;
        match target {
            Target::Temp(incoming) => incoming.publish(name),
            Target::Partial(partial, data) => {
                let incoming = store.adopt(data, partial.dir(), &Partial::data_name(0))?;
                let path = incoming.publish(name)?;
                let _ = partial.remove();
                Ok(path)
            }
        }
    }

    /// Publishes folder `top` whole: a new tree, every file of it moved in (from its
    /// partial, or its temp file), then the tree under `top` or a free name next to it.
    fn web_publish_folder(
        &self,
        offer: &mut Offer,
        members: &[usize],
        top: &str,
    ) -> io::Result<PathBuf> {
        let tree = self.server.store.incoming_tree()?;
        let mut made = HashSet::new();
        let mut used = Vec::new();
        let owner = owner(&offer.page);
        for &i in members {
            let inner = offer.files[i]
                .path
                .get(top.len() + 1..)
                .unwrap_or_default()
                .to_string();
            let mut at = 0;
            while let Some(slash) = inner[at..].find('/') {
                let dir = &inner[..at + slash];
                if made.insert(dir.to_string()) {
                    tree.mkdir(dir)?;
                }
                at += slash + 1;
            }
            let held = std::mem::replace(&mut offer.states[i], ItemState::Receiving);
            match held {
                ItemState::Received(Held::Temp(incoming)) => incoming.move_into(&tree, &inner)?,
                ItemState::Received(Held::Partial(key)) => {
                    let partials = self
                        .server
                        .partials()
                        .ok_or_else(|| io::Error::other("no partials"))?;
                    let Ok(Opened::Partial(partial)) = partials.open(key, &owner, false) else {
                        return Err(io::Error::other("a file of the folder is no longer kept"));
                    };
                    tree.adopt(&inner, partial.dir(), &Partial::data_name(0))?;
                    used.push(partial);
                }
                _ => return Err(io::Error::other("a file of the folder is missing")),
            }
        }
        let path = tree.publish(top, &[])?;
        for partial in used {
            let _ = partial.remove();
        }
        Ok(path)
    }
}

/// The SHA-256 of the first `len` bytes of `file`.
fn sha256_prefix(file: &mut File, len: u64) -> io::Result<[u8; 32]> {
    use std::io::Read;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let copied = io::copy(&mut (&mut *file).take(len), &mut HashWriter(&mut hasher))?;
    if copied != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(hasher.finalize().into())
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_digits_only() {
        assert_eq!(query_from(None), Some(0));
        assert_eq!(query_from(Some("from=12")), Some(12));
        assert_eq!(query_from(Some("x=1&from=7")), Some(7));
        assert_eq!(query_from(Some("from=-1")), None);
        assert_eq!(query_from(Some("from=")), None);
        assert_eq!(query_from(Some("from=99999999999999999999")), None);
    }

    #[test]
    fn a_prefix_digest() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"abcdef").unwrap();
        assert_eq!(
            sha256_prefix(&mut file, 3).unwrap(),
            <[u8; 32]>::from(Sha256::digest(b"abc"))
        );
        assert!(sha256_prefix(&mut file, 7).is_err());
    }
}
