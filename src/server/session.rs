//! One connection's exchange, as a state machine over any [`Conn`]: read the request, check
//! its name, decide (policy, then operator), answer, receive the data into a temp file,
//! publish it, send the result. Never panics on what the peer sends; on any failure nothing
//! is stored.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::approve::Ask;
use super::budget::address_key;
use super::names::{RequestName, read_request_name};
use super::policy::{Decision, Reason};
use super::store::Incoming;
use super::summary::{End, Summary};
use super::trust::Client;
use super::{Event, Progress, Server};
use crate::batch::{self, Totals};
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Mover, discard};
use crate::secure::{Identity, pair, probe, stream as tls};
use crate::wire::{
    Body, HEADER_LEN, Limit, MAX_DATA_LEN, Message, MsgType, Outcome, RESPONSE_ID, RESULT_ID,
    ResponseByte, Verdict,
};

/// How often, at most, an upload reports its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long to wait for the optional empty data message after an empty upload: our client
/// sends it right behind the request's acceptance, and a Python client sends none.
const EMPTY_TRAILER_GRACE: Duration = Duration::from_secs(1);

/// Empty data messages in a row, none of them the last, that an upload may bring before it is
/// failed: each one costs the server a header's work and brings it no closer to the end (the
/// C# client sends them forever past 2 GiB). Our client sends at most one, as the last.
pub const MAX_EMPTY_DATA: u32 = 16;

/// After sending a failure result, how much of what the client already sent is read and
/// dropped before closing (see [`discard`]): a few of the largest data messages.
const LINGER_BYTES: u64 = 4 * MAX_DATA_LEN as u64;
/// And for how long at most (less if the server's timeout is shorter).
const LINGER_TIME: Duration = Duration::from_secs(10);
/// And until the client pauses this long: what it had in flight has arrived by then.
const LINGER_IDLE: Duration = Duration::from_millis(200);

/// One connection's exchange: request, verdict, data, result.
pub struct Session<'a> {
    pub(super) server: &'a Server,
    pub(super) report: Option<&'a (dyn Fn(Event) + Sync)>,
    /// What has happened so far; returned whole by [`Session::run`].
    pub(super) summary: Summary,
    pub(super) throttle: Throttle,
    /// With `--checksum`, each file of a batch checked so far: its index and BLAKE3.
    pub(super) digests: Vec<(u32, [u8; 32])>,
    /// In a batch: the top item being received and the bytes of the batch, for live
    /// progress during each file.
    pub(super) live: Option<(String, u64)>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.summary.peer)
            .field("connection", &self.summary.connection)
            .finish_non_exhaustive()
    }
}

/// What a batch brings to the decision besides its first name and its size.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchAsk<'a> {
    /// What it holds.
    pub totals: &'a Totals,
    /// Its largest file not refused already.
    pub largest: u64,
    /// How many of its files the policy refused already, and why.
    pub refused: Option<(usize, &'a str)>,
}

/// What a batch resumed from a partial brings to the decision.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Resuming {
    /// Bytes already there from earlier tries.
    pub held: u64,
    /// Bytes the other partials still miss, kept free for them.
    pub reserved: u64,
}

impl<'a> Session<'a> {
    /// A session of `server` for connection number `connection` from `peer`, reporting its
    /// progress to `report` if given.
    pub(super) fn new(
        server: &'a Server,
        peer: SocketAddr,
        connection: u64,
        report: Option<&'a (dyn Fn(Event) + Sync)>,
    ) -> Session<'a> {
        Session {
            server,
            report,
            summary: Summary::new(peer, connection),
            throttle: Throttle::default(),
            digests: Vec::new(),
            live: None,
        }
    }

    /// Serves one upload on `stream` to its end and says how it went. Never panics on what
    /// the peer sends; on any failure nothing is stored.
    pub fn run<S: Conn>(mut self, mut stream: S) -> Summary {
        let started = Instant::now();
        self.summary.end = self.exchange(&mut stream).unwrap_or_else(End::Failed);
        self.summary.elapsed = started.elapsed();
        self.summary
    }

    /// The first message decides the connection: secure mode's probe (when this server
    /// offers it) starts TLS, and the exchange runs inside; anything else is a plain request.
    fn exchange<S: Conn>(&mut self, stream: &mut S) -> Result<End> {
        // A stranger holds a slot until it says something: seconds, not the timeout.
        let hello = self.server.budget.hello_timeout.min(self.server.timeout);
        let deadline = Deadline::after(hello);
        // A header's worth first: enough to tell a browser from FUP (an HTTP request line is
        // at least 16 bytes, a ClientHello more).
        let mut head = [0; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match deadline.reader(stream).read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if got == 0 && err.kind() == io::ErrorKind::UnexpectedEof => break,
                // Browsers open a connection ahead of need and may never use it: with the
                // page on, nothing at all within the hello time is that, not a failure.
                Err(err)
                    if got == 0
                        && self.server.web.is_some()
                        && err.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(End::Idle(hello));
                }
                Err(err) => return Err(deadline.error(err, MsgType::Request)),
            }
        }
        if let (Some(web), Some(kind), HEADER_LEN) =
            (&self.server.web, super::web::kind_of(&head), got)
        {
            return self.web(web, stream, &head, kind, deadline);
        }
        let first = match Message::read_from((&head[..got]).chain(deadline.reader(stream))) {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(End::NoRequest),
            Err(Error::Io(err)) => return Err(deadline.error(err, MsgType::Request)),
            Err(err) => return Err(err),
        };
        let Some(secure) = self
            .server
            .secure
            .as_ref()
            .filter(|_| probe::is_probe(&first))
        else {
            return self.request(stream, first);
        };
        // The version both speak: the lower of the two.
        let (answer, version) = probe::answer(first.seq);
        stream.write_all(&answer)?;
        stream.flush()?;
        // The handshake must end by the same first deadline.
        let mut tls = tls::accept(&mut *stream, Arc::clone(&secure.config), deadline)
            .map_err(Error::Handshake)?;
        // `accept` fails a client that shows no certificate: this is always there.
        let id = tls.peer().ok_or_else(|| {
            Error::Handshake(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer showed no certificate",
            ))
        })?;
        // What a pairing binds itself to: this TLS session, and no other.
        let channel = tls
            .exporter(pair::EXPORTER_LABEL)
            .map_err(Error::Handshake)?;
        self.authenticated(&mut tls, id, version, channel)
    }

    /// Serves what follows secure mode's handshake on `stream`, for a client that proved it
    /// holds the key of `id` and agreed on `version`: the same as [`Session::run`] once TLS
    /// is up, for tests and for fuzzing the frames that come inside it.
    pub fn run_authenticated<S: Conn>(
        mut self,
        mut stream: S,
        id: Identity,
        version: u16,
    ) -> Summary {
        let started = Instant::now();
        // No TLS here: a pairing binds itself to no channel.
        self.summary.end = self
            .authenticated(&mut stream, id, version, [0; 32])
            .unwrap_or_else(End::Failed);
        self.summary.elapsed = started.elapsed();
        self.summary
    }

    /// Inside secure mode, from a client that is `id` and speaks `version` over the TLS
    /// session `channel` stands for: a pairing first, if it brings one; then a batch or one
    /// request, told apart by the first message's type.
    fn authenticated<S: Conn>(
        &mut self,
        tls: &mut S,
        id: Identity,
        version: u16,
        channel: [u8; 32],
    ) -> Result<End> {
        let trusted = self.server.secure.as_ref().and_then(|secure| {
            if let (Some(err), Some(report)) = (secure.trusted.refresh(), self.report) {
                report(Event::TrustedClientsUnreadable(err));
            }
            secure.trusted.find(&id)
        });
        self.summary.client = Client::Secure { id, trusted };
        // Keys are free to make, but each one's connections are counted all the same.
        let clients = &self.server.budget.clients;
        let Some(_held) = clients.take(&id) else {
            return Err(Error::TooManyFromClient(clients.max()));
        };
        // Then the first message within the timeout: the client may have asked its user
        // whether to trust this server first.
        let deadline = Deadline::after(self.server.timeout);
        let Some(mut head) = first_header(tls, deadline)? else {
            return Ok(End::NoRequest);
        };
        if u32::from_le_bytes([head[4], head[5], head[6], head[7]]) == pair::PAIR {
            self.pair(tls, id, version, &head, channel)?;
            let deadline = Deadline::after(self.server.timeout);
            let Some(next) = first_header(tls, deadline)? else {
                return Ok(End::NoRequest);
            };
            head = next;
        }
        if u32::from_le_bytes([head[4], head[5], head[6], head[7]]) == batch::frame::MANIFEST {
            let frame = batch::frame::Frame::read_from(&mut &head[..])?
                .ok_or(Error::Closed(MsgType::Request))?;
            if version < probe::BATCHES {
                return Ok(self.too_old(tls, version));
            }
            return self.batch(tls, frame);
        }
        let first = match Message::read_from((&head[..]).chain(deadline.reader(tls))) {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(End::NoRequest),
            Err(Error::Io(err)) => return Err(deadline.error(err, MsgType::Request)),
            Err(err) => return Err(err),
        };
        self.request(tls, first)
    }

    /// A pairing, the first frame's header `head` read: the open code is spent on it, right
    /// or wrong; a client that confirms it is trusted from now on (and said so in the log).
    fn pair<S: Conn>(
        &mut self,
        tls: &mut S,
        id: Identity,
        version: u16,
        head: &[u8; HEADER_LEN],
        channel: [u8; 32],
    ) -> Result<()> {
        let failed = |err| Error::Pair { id, err };
        let (Some(secure), Some(pairing)) = (&self.server.secure, &self.server.pairing) else {
            let no = pair::PairError::Refused("this server does not pair by code".into());
            let _ = pair::finish(tls, Err("this server does not pair by code"));
            return Err(failed(no));
        };
        if version < probe::PAIRING {
            return Err(Error::BatchOrder("a pairing, in a secure mode without one"));
        }
        let frame = batch::frame::Frame::read_from(&mut &head[..])?
            .ok_or(Error::Closed(MsgType::Request))?;
        let deadline = Deadline::after(self.server.timeout);
        let offer = pair::read_offer(&mut deadline.reader(tls), frame.len).map_err(failed)?;
        let binding = pair::Binding {
            client: id,
            server: secure.identity,
            channel,
        };
        let code = pairing.take().map_err(|closed| closed.to_string());
        let code = code.as_ref().map_err(String::as_str);
        pair::server(tls, &offer, code, &binding, deadline).map_err(failed)?;
        let label = crate::text::defuse(&offer.label);
        let label = (!label.trim().is_empty()).then_some(label);
        let added = secure
            .trusted
            .add(&id, label.as_deref())
            .map(|()| secure.trusted.file().to_path_buf())
            .map_err(|err| err.to_string());
        pair::finish(tls, Ok(()))?;
        self.summary.client = Client::Secure {
            id,
            trusted: Some(label.clone()),
        };
        if let Some(report) = self.report {
            report(Event::Paired(super::Paired {
                peer: self.summary.peer,
                id,
                label: label.unwrap_or_default(),
                file: added,
            }));
        }
        Ok(())
    }

    /// The exchange that follows a request, `msg`: name checks, decision, answer, data.
    fn request<S: Conn>(&mut self, stream: &mut S, msg: Message) -> Result<End> {
        let request_id = msg.id;
        let Body::Request(req) = msg.body else {
            return Err(msg.body.unexpected(MsgType::Request));
        };
        let req = self.summary.request.insert(req);
        let size = req.size;
        let name = match read_request_name(&req.name) {
            Ok(name) => self.summary.name.insert(name).clone(),
            Err(problem) => {
                // Refused before anyone is asked; the client just sees a denial.
                let _ = self.send_response(stream, request_id, Verdict::Denied);
                return Ok(End::Refused(problem));
            }
        };
        let decision = self.decide(stream, &name, size);
        self.summary.reason = decision.reason;
        if decision.always {
            self.trust_client();
        }
        if decision.verdict == Verdict::Denied {
            if stream.peer_closed() {
                return Ok(End::Abandoned);
            }
            self.send_response(stream, request_id, Verdict::Denied)?;
            return Ok(End::Denied);
        }
        self.send_response(stream, request_id, Verdict::Accepted)?;
        let path =
            self.receive_and_store(stream, Receiving::new(request_id, size), &name.stored)?;
        Ok(End::Stored(path))
    }

    /// The server's state and policy first, and only then the operator.
    fn decide<S: Conn>(&self, stream: &S, name: &RequestName, size: u64) -> Decision {
        self.decide_upload(stream, name, size, None, None)
    }

    /// [`Session::decide`] for one file or, with `batch`, for a whole batch (`name` is then
    /// its first top item, and `size` the bytes of the files not refused already).
    pub(super) fn decide_upload<S: Conn>(
        &self,
        stream: &S,
        name: &RequestName,
        size: u64,
        batch: Option<&BatchAsk<'_>>,
        resuming: Option<Resuming>,
    ) -> Decision {
        let server = self.server;
        if server.is_stopping() {
            return Decision::deny(Reason::ShuttingDown);
        }
        // A resumed batch needs only what it misses; other partials keep what they miss.
        let free = server.store.free_space().map(|free| match resuming {
            Some(Resuming { held, reserved }) => (free + held).saturating_sub(reserved),
            None => free,
        });
        let client = &self.summary.client;
        let largest = batch.map_or(size, |batch| batch.largest);
        if let Some(decision) =
            server
                .policy
                .decide_batch(self.summary.peer.ip(), client, largest, size, free)
        {
            return decision;
        }
        let Some(approver) = &server.approver else {
            return Decision::deny(Reason::NoOperator);
        };
        // Questions wait in turn across addresses, and only so many from each.
        let questions = &server.budget.questions;
        let Some(_waiting) = questions.take(&address_key(self.summary.peer.ip())) else {
            return Decision::deny(Reason::TooManyQuestions(questions.max()));
        };
        let theirs = &server.budget.client_questions;
        let _client_waiting = match client.id() {
            Some(id) => match theirs.take(&id) {
                Some(held) => Some(held),
                None => return Decision::deny(Reason::TooManyClientQuestions(theirs.max())),
            },
            None => None,
        };
        let client_gone = || stream.peer_closed();
        approver.approve(&Ask {
            peer: self.summary.peer,
            client,
            name,
            size,
            batch: batch.map(|batch| batch.totals),
            refused: batch.and_then(|batch| batch.refused),
            resuming: resuming.map(|r| r.held).filter(|&held| held > 0),
            store: &server.store,
            free,
            client_gone: &client_gone,
        })
    }

    /// The operator answered "always": the secure client is trusted from now on.
    pub(super) fn trust_client(&mut self) {
        let (Some(secure), Some(id)) = (&self.server.secure, self.summary.client.id()) else {
            return;
        };
        self.summary.trusted_now = Some(
            secure
                .trusted
                .add(&id, None)
                .map(|()| secure.trusted.file().to_path_buf())
                .map_err(|err| err.to_string()),
        );
    }

    /// Receives the accepted upload and stores it, then sends the result: success once the
    /// file is durable, failure (best effort) if it could not be stored. The summary gets the
    /// bytes received and the time taken, whatever happens.
    fn receive_and_store<S: Conn>(
        &mut self,
        stream: &mut S,
        mut receiving: Receiving,
        name: &str,
    ) -> Result<PathBuf> {
        let started = Instant::now();
        let stored = self.store(stream, &mut receiving, name);
        self.summary.received = receiving.received;
        let answered = match stored {
            Ok((path, last_id)) => self
                .answer_stored(stream, last_id, receiving.size)
                .map(|()| path),
            Err(err) => {
                let _ = send_result(stream, receiving.data_id(), Outcome::Failure);
                self.linger(stream);
                Err(err)
            }
        };
        self.summary.transfer = started.elapsed();
        answered
    }

    /// After a failure, makes sure the client can read what was said: sends our end of stream,
    /// then reads and drops what it already sent, bounded by bytes and time, so that closing
    /// does not reset the connection under the result (PROTOCOL.md, "Closing").
    pub(super) fn linger<S: Conn>(&self, stream: &mut S) {
        if stream.shutdown_write().is_ok() {
            let deadline = Deadline::after(self.server.timeout.min(LINGER_TIME));
            discard(stream, LINGER_BYTES, deadline, LINGER_IDLE);
        }
    }

    /// Sends the response to request `request_id` in this server's convention; inside
    /// secure mode, only fup programs speak, in the default one.
    fn send_response<S: Write>(
        &self,
        stream: &mut S,
        request_id: u32,
        verdict: Verdict,
    ) -> Result<()> {
        let accept = match self.summary.client.is_secure() {
            true => ResponseByte::DEFAULT_ACCEPT,
            false => self.server.accept_byte,
        };
        let byte = ResponseByte::saying(verdict, accept);
        send(stream, RESPONSE_ID, Body::Response { request_id, byte })
    }

    /// Receives the data into a temp file and publishes it under `name`. Returns where, and
    /// the msgid the result must echo.
    fn store<S: Conn>(
        &mut self,
        stream: &mut S,
        receiving: &mut Receiving,
        name: &str,
    ) -> Result<(PathBuf, u32)> {
        let server = self.server;
        let mut mover = Mover::new(server.checksum);
        let mut incoming = server.store.incoming()?;
        let last_id = self.receive(stream, receiving, &mut incoming, &mut mover, name)?;
        let path = incoming.publish(name)?;
        self.summary.sha256 = mover.sha256();
        Ok((path, last_id))
    }

    /// Tells the client its file is stored. If it never hears of it, the file stays and the
    /// log says failed.
    fn answer_stored<S: Conn>(&self, stream: &mut S, last_id: u32, size: u64) -> Result<()> {
        send_result(stream, last_id, Outcome::Success)?;
        if size == 0 {
            // A Python client sends no data for an empty file and waits for the result it now
            // has; ours sends one empty last data message, which we take quietly. Reading it
            // (rather than closing on it) keeps the kernel from answering with a reset that
            // could destroy the result before the client reads it.
            let grace = self.server.timeout.min(EMPTY_TRAILER_GRACE);
            let _ = Deadline::after(grace).read_message(stream, MsgType::Data);
        }
        Ok(())
    }

    /// Receives the data messages into `incoming`, each whole within the server's timeout.
    /// Returns the msgid of the last data message, which the result echoes (PROTOCOL.md,
    /// step 5).
    fn receive<S: Conn>(
        &mut self,
        stream: &mut S,
        receiving: &mut Receiving,
        incoming: &mut Incoming,
        mover: &mut Mover,
        name: &str,
    ) -> Result<u32> {
        if receiving.size == 0 {
            // Answer at once: see `answer_stored`.
            return Ok(receiving.request_id);
        }
        loop {
            // One deadline for the whole message, header and body.
            let deadline = Deadline::after(self.server.timeout);
            let msg = deadline.read_message(stream, MsgType::Data)?;
            let len = receiving.admit(&msg)?;
            mover
                .receive(stream, incoming.file(), len, deadline)
                .map_err(|err| deadline.error(err, MsgType::Data))?;
            receiving.received += len;
            self.progress(name, receiving, msg.last);
            if msg.last {
                receiving.check_complete()?;
                return Ok(msg.id);
            }
        }
    }

    /// Reports progress, at most every [`PROGRESS_EVERY`] and at the end.
    fn progress(&mut self, name: &str, receiving: &Receiving, last: bool) {
        let Some(report) = self.report else { return };
        let Some(elapsed) = self.throttle.due(Instant::now(), last) else {
            return;
        };
        report(Event::Progress(Progress {
            connection: self.summary.connection,
            peer: self.summary.peer,
            name: name.to_string(),
            received: receiving.received,
            size: receiving.size,
            elapsed,
        }));
    }
}

/// The first header of what a secure client sends, by `deadline`; `None` if it closes first
/// (with or without TLS's `close_notify`).
fn first_header<S: Conn>(tls: &mut S, deadline: Deadline) -> Result<Option<[u8; HEADER_LEN]>> {
    let mut head = [0; HEADER_LEN];
    match deadline.reader(tls).read(&mut head[..1]) {
        Ok(0) => return Ok(None),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(_) => {}
        Err(err) => return Err(deadline.error(err, MsgType::Request)),
    }
    deadline
        .reader(tls)
        .read_exact(&mut head[1..])
        .map_err(|err| deadline.error(err, MsgType::Request))?;
    Ok(Some(head))
}

/// The state of an accepted upload's data: what every data message must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Receiving {
    /// The request's msgid.
    request_id: u32,
    /// The msgid every data message carries: the first one's (see [`Receiving::admit`]).
    data_id: Option<u32>,
    /// The size the request announced.
    size: u64,
    /// The `seq` due next.
    next_seq: u16,
    /// File bytes admitted so far.
    received: u64,
    /// Empty data messages in a row, none of them the last.
    empty_run: u32,
}

impl Receiving {
    fn new(request_id: u32, size: u64) -> Receiving {
        Receiving {
            request_id,
            data_id: None,
            size,
            next_seq: 0,
            received: 0,
            empty_run: 0,
        }
    }

    /// The msgid a result echoes: the data messages' (PROTOCOL.md, step 5), or the request's
    /// when none came.
    fn data_id(&self) -> u32 {
        self.data_id.unwrap_or(self.request_id)
    }

    /// Checks a data message's header against the upload and moves `seq` on; returns the
    /// length of the body that follows it on the stream.
    fn admit(&mut self, msg: &Message) -> Result<u64> {
        let Body::Data { len } = msg.body else {
            return Err(msg.body.unexpected(MsgType::Data));
        };
        // All data messages carry one msgid, the first one's, whatever the request's was: both
        // reference servers accept exactly that, and the C# client sends request 0, data 1
        // (PROTOCOL.md, "The other dialect").
        let data_id = *self.data_id.get_or_insert(msg.id);
        if msg.id != data_id {
            return Err(Error::MessageId {
                expected: data_id,
                got: msg.id,
            });
        }
        // seq counts 0, 1, 2, … and wraps modulo 2^16, so uploads have no size limit.
        if msg.seq != self.next_seq {
            return Err(Error::Sequence {
                expected: self.next_seq,
                got: msg.seq,
            });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let total = self.received + u64::from(len);
        if total > self.size {
            return Err(Error::TooLarge {
                what: Limit::AnnouncedSize,
                got: total,
                limit: self.size,
            });
        }
        // Every message must bring the upload closer to its end, or end it: without this a
        // peer could keep a thread busy for ever with empty messages.
        self.empty_run = if len == 0 && !msg.last {
            self.empty_run + 1
        } else {
            0
        };
        if self.empty_run > MAX_EMPTY_DATA {
            return Err(Error::NoProgress(self.empty_run));
        }
        Ok(len.into())
    }

    /// After the last data message: the bytes must add up to the announced size.
    fn check_complete(&self) -> Result<()> {
        if self.received != self.size {
            return Err(Error::SizeMismatch {
                announced: self.size,
                received: self.received,
            });
        }
        Ok(())
    }
}

/// When progress is due: the first time, then at most every [`PROGRESS_EVERY`], and at the
/// end. Times are counted from the first report.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    started: Option<Instant>,
    reported: Option<Instant>,
}

impl Throttle {
    /// The time since the first report, if a report is due at `now`.
    pub(super) fn due(&mut self, now: Instant, last: bool) -> Option<Duration> {
        let started = *self.started.get_or_insert(now);
        if !last
            && self
                .reported
                .is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY)
        {
            return None;
        }
        self.reported = Some(now);
        Some(now.duration_since(started))
    }
}

/// Sends the result, echoing `request_id` (the last data message's msgid).
fn send_result<S: Write>(stream: &mut S, request_id: u32, outcome: Outcome) -> Result<()> {
    send(
        stream,
        RESULT_ID,
        Body::Result {
            request_id,
            outcome,
        },
    )
}

fn send<S: Write>(stream: &mut S, id: u32, body: Body) -> Result<()> {
    Message::single(id, body).write_to(&mut *stream)?;
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::approve::Approve;
    use crate::server::names::NameProblem;
    use crate::server::policy::Policy;
    use crate::server::store::Store;
    use crate::testing::*;
    use crate::wire::FileRequest;
    use std::fs;
    use tempfile::TempDir;

    /// A server with `policy` and no operator.
    fn server_with(policy: Policy) -> (TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, Server::new(store, policy))
    }

    /// A server whose every decision is `approver`'s.
    fn server(approver: impl Approve + 'static) -> (TempDir, Server) {
        let (dir, server) = server_with(Policy::default());
        (dir, server.with_operator(approver))
    }

    /// A server that accepts everything (`--yes`).
    fn yes() -> (TempDir, Server) {
        server_with(Policy::accept_all())
    }

    fn run(server: &Server, parts: &[&[u8]]) -> (Summary, Vec<u8>) {
        let mut duplex = Duplex::new(parts);
        let summary = server
            .session("127.0.0.1:4000".parse().unwrap())
            .run(&mut duplex);
        (summary, duplex.output)
    }

    fn files(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    fn data(id: u32, seq: u16, last: bool, bytes: &[u8]) -> Vec<u8> {
        let msg = Message {
            id,
            seq,
            fragmented: true,
            last,
            body: Body::Data {
                len: bytes.len() as u32,
            },
        };
        let mut out = Vec::new();
        msg.write_to(&mut out).unwrap();
        out.extend_from_slice(bytes);
        out
    }

    fn request(id: u32, size: u64, name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let req = FileRequest {
            size,
            name: name.to_vec(),
        };
        Message::single(id, Body::Request(req))
            .write_to(&mut out)
            .unwrap();
        out
    }

    fn result(outcome: Outcome) -> Vec<u8> {
        let mut out = Vec::new();
        Message::single(
            RESULT_ID,
            Body::Result {
                request_id: 1,
                outcome,
            },
        )
        .write_to(&mut out)
        .unwrap();
        out
    }

    #[test]
    fn golden_upload_answers_exactly_the_captured_bytes() {
        let (dir, server) = yes();
        let (summary, output) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(output, [GOLDEN_RESPONSE, GOLDEN_RESULT].concat());
        assert_eq!(files(&dir), [("hello.txt".to_string(), b"hi\n".to_vec())]);
        assert!(
            summary
                .to_string()
                .starts_with("stored \"hello.txt\" 3 B (3 bytes) in "),
            "{summary}"
        );
    }

    #[test]
    fn denied_upload_gets_the_denial_and_nothing_more() {
        let (dir, server) = server(|_: &Ask<'_>| Verdict::Denied);
        let (summary, output) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(matches!(summary.end, End::Denied));
        let mut expected = GOLDEN_RESPONSE.to_vec();
        expected[20] = 1; // denied
        assert_eq!(output, expected);
        assert!(files(&dir).is_empty());
    }

    #[test]
    fn policies_decide_before_the_operator_is_asked() {
        let never = |_: &Ask<'_>| panic!("the operator must not be asked");
        let dir = tempfile::tempdir().unwrap();
        let trusted = |max_size| {
            let policy = Policy {
                max_size: Some(max_size),
                accept_from: vec!["127.0.0.0/8".parse().unwrap()],
                ..Policy::default()
            };
            Server::new(Store::open(dir.path()).unwrap(), policy).with_operator(never)
        };
        // Over --max-size: denied with the reason, even from a trusted range.
        let (summary, output) = run(&trusted(2), &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert_eq!(output[20], Verdict::Denied as u8);
        assert_eq!(
            summary.to_string(),
            "denied \"hello.txt\" 3 B (3 bytes) from 127.0.0.1:4000, plain: larger than --max-size 2 B"
        );
        // From a trusted range and within limits: accepted, and the log says why.
        let (summary, _) = run(&trusted(3), &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(summary.is_stored());
        assert!(
            summary
                .to_string()
                .ends_with("from 127.0.0.1:4000, plain (accepted: --accept-from 127.0.0.0/8)"),
            "{summary}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // More than the free space: denied with the reason.
        let (_other_dir, plain) = server(never);
        let (summary, _) = run(&plain, &[&request(1, u64::MAX / 2, b"huge.bin")]);
        assert!(
            summary.to_string().contains(": not enough free space ("),
            "{summary}"
        );
        // --yes accepts, and says so.
        let (_yes_dir, yes) = yes();
        let (summary, _) = run(&yes, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(
            summary.to_string().ends_with("(accepted: --yes)"),
            "{summary}"
        );
        // No rule and no operator: denied, never accepted by default.
        let (_bare_dir, bare) = server_with(Policy::default());
        let (summary, _) = run(&bare, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(matches!(summary.end, End::Denied));
        assert_eq!(summary.reason, Some(Reason::NoOperator));
    }

    #[test]
    fn a_stopping_server_denies_without_asking() {
        let (dir, server) = server(|_: &Ask<'_>| panic!("the operator must not be asked"));
        server.stop();
        let (summary, output) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert_eq!(output[20], Verdict::Denied as u8);
        assert_eq!(summary.reason, Some(Reason::ShuttingDown));
        assert!(files(&dir).is_empty());
    }

    #[test]
    fn progress_is_reported_throttled_and_at_the_end() {
        let (_dir, server) = yes();
        let chunks = 1000;
        let mut parts = vec![request(1, chunks as u64, b"p.bin")];
        for i in 0..chunks {
            parts.push(data(1, i as u16, i + 1 == chunks, &[7]));
        }
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let events = std::sync::Mutex::new(Vec::new());
        let report = |event: Event| {
            if let Event::Progress(p) = event {
                events
                    .lock()
                    .unwrap()
                    .push((p.connection, p.received, p.size));
            }
        };
        let peer = "127.0.0.1:4000".parse().unwrap();
        let session = Session::new(&server, peer, 7, Some(&report));
        let summary = session.run(Duplex::new(&parts));
        assert!(summary.is_stored());
        assert_eq!(summary.connection, 7);
        let events = events.into_inner().unwrap();
        // The first message is always reported, then at most every PROGRESS_EVERY, and the end.
        assert_eq!(events.first(), Some(&(7, 1, 1000)));
        assert_eq!(events.last(), Some(&(7, 1000, 1000)));
        assert!(
            events.len() < 100,
            "{} events for 1000 messages",
            events.len()
        );
    }

    #[test]
    fn unsafe_name_is_refused_without_asking() {
        let (dir, server) = server(|_: &Ask<'_>| panic!("the operator must not be asked"));
        let (summary, output) = run(
            &server,
            &[&request(1, 3, b"photos/"), &data(1, 0, true, b"hi\n")],
        );
        assert!(
            matches!(summary.end, End::Refused(NameProblem::NoFileName)),
            "{summary:?}"
        );
        assert_eq!(output[20], 1, "denied");
        assert!(files(&dir).is_empty());
    }

    #[test]
    fn a_path_is_stored_under_its_last_part_and_nothing_escapes() {
        let root = tempfile::tempdir().unwrap();
        let inbox = root.path().join("in");
        let server = Server::new(Store::open(&inbox).unwrap(), Policy::accept_all());
        for name in [
            &b"../escape"[..],
            b"/etc/passwd",
            br"C:\Users\u\f.bin",
            b"sub/f.bin",
        ] {
            let (summary, _) = run(&server, &[&request(0, 3, name), &data(1, 0, true, b"hi\n")]);
            assert!(summary.is_stored(), "{summary}");
        }
        let mut names: Vec<String> = fs::read_dir(&inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["escape", "f (1).bin", "f.bin", "passwd"]);
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "nothing beside the inbox"
        );
    }

    #[test]
    fn empty_file_from_python_client_is_answered_at_once() {
        let (dir, server) = yes();
        let (summary, output) = run(&server, &[&request(1, 0, b"empty")]);
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(&output[21..], result(Outcome::Success));
        assert_eq!(files(&dir), [("empty".to_string(), vec![])]);
    }

    #[test]
    fn empty_file_with_trailing_empty_data_message() {
        let (dir, server) = yes();
        let (summary, output) = run(&server, &[&request(1, 0, b"empty"), &data(1, 0, true, b"")]);
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(&output[21..], result(Outcome::Success));
        assert_eq!(files(&dir), [("empty".to_string(), vec![])]);
    }

    #[test]
    fn chunks_are_joined_and_seq_may_wrap() {
        let (dir, server) = yes();
        let chunks = 65_536 + 3;
        let mut parts = vec![request(7, chunks as u64, b"wrap.bin")];
        for i in 0..chunks {
            parts.push(data(7, (i % 65_536) as u16, i + 1 == chunks, &[i as u8]));
        }
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let (summary, output) = run(&server, &parts);
        assert!(summary.is_stored(), "{summary}");
        let expected: Vec<u8> = (0..chunks).map(|i| i as u8).collect();
        assert_eq!(files(&dir), [("wrap.bin".to_string(), expected)]);
        // The result echoes the data messages' msgid.
        assert_eq!(&output[37..42], &[7, 0, 0, 0, 1]);
    }

    #[test]
    fn existing_name_is_kept_and_upload_stored_beside_it() {
        let (dir, server) = yes();
        fs::write(dir.path().join("hello.txt"), b"mine").unwrap();
        let (summary, _) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(
            summary
                .to_string()
                .starts_with("stored \"hello.txt\" as \"hello (1).txt\""),
            "{summary}"
        );
        assert_eq!(
            files(&dir),
            [
                ("hello (1).txt".to_string(), b"hi\n".to_vec()),
                ("hello.txt".to_string(), b"mine".to_vec())
            ]
        );
    }

    /// Each case is a broken client script after an accepted request for 4 bytes; every one
    /// must end in a failure result (when the stream allows it) and leave nothing behind.
    #[test]
    fn broken_uploads_fail_and_leave_nothing() {
        let req = request(1, 4, b"f.bin");
        let mut unknown = data(1, 0, true, b"abcd");
        unknown[4] = 9;
        let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("disconnect before data", vec![]),
            (
                "disconnect mid data",
                vec![data(1, 0, true, b"abcd")[..18].to_vec()],
            ),
            ("short then last", vec![data(1, 0, true, b"ab")]),
            ("too many bytes", vec![data(1, 0, true, b"abcde")]),
            (
                "more after size",
                vec![data(1, 0, false, b"abcd"), data(1, 1, true, b"e")],
            ),
            ("no last flag", vec![data(1, 0, false, b"abcd")]),
            (
                "seq gap",
                vec![data(1, 0, false, b"ab"), data(1, 2, true, b"cd")],
            ),
            ("seq starts at 1", vec![data(1, 1, true, b"abcd")]),
            (
                "msgid change",
                vec![data(1, 0, false, b"ab"), data(2, 1, true, b"cd")],
            ),
            ("request again", vec![req.clone()]),
            ("unknown type", vec![unknown]),
            ("result from client", vec![result(Outcome::Success)]),
        ];
        for (what, script) in cases {
            let (dir, server) = yes();
            let mut parts: Vec<&[u8]> = vec![&req];
            parts.extend(script.iter().map(Vec::as_slice));
            let (summary, output) = run(&server, &parts);
            assert!(matches!(summary.end, End::Failed(_)), "{what}: {summary:?}");
            assert_eq!(&output[21..], result(Outcome::Failure), "{what}");
            assert!(files(&dir).is_empty(), "{what}: {:?}", files(&dir));
            assert!(
                summary.to_string().starts_with("failed \"f.bin\""),
                "{what}: {summary}"
            );
        }
    }

    #[test]
    fn receiving_admits_only_the_next_message() {
        let data = |id, seq, len| Message {
            id,
            seq,
            fragmented: true,
            last: false,
            body: Body::Data { len },
        };
        let mut receiving = Receiving::new(7, 10);
        assert_eq!(receiving.admit(&data(7, 0, 4)).unwrap(), 4);
        receiving.received += 4;
        let cases = [
            (data(8, 1, 1), "expected message id 7, got 8"),
            (data(7, 2, 1), "expected seq 1, got 2"),
            (data(7, 0, 1), "expected seq 1, got 0"),
            (
                Message::single(7, Body::Request(FileRequest::new(1, "x"))),
                "expected a data message, got request",
            ),
        ];
        for (msg, error) in cases {
            let mut copy = receiving;
            assert_eq!(copy.admit(&msg).unwrap_err().to_string(), error);
        }
        let mut over = receiving;
        assert_eq!(
            over.admit(&data(7, 1, 7)).unwrap_err().to_string(),
            "data beyond the announced size of 11 bytes exceeds the limit of 10"
        );
        assert!(receiving.check_complete().is_err());
        receiving.received = 10;
        assert!(receiving.check_complete().is_ok());
        // The first data message's msgid holds, whatever the request's was.
        let mut csharp = Receiving::new(0, 10);
        assert_eq!(csharp.admit(&data(1, 0, 4)).unwrap(), 4);
        assert_eq!(csharp.data_id(), 1);
        assert!(csharp.admit(&data(0, 1, 1)).is_err());
        // Empty messages that are not the last: 16 in a row are let through, not 17.
        let mut stuck = Receiving::new(1, 10);
        for seq in 0..MAX_EMPTY_DATA as u16 {
            assert_eq!(stuck.admit(&data(1, seq, 0)).unwrap(), 0);
        }
        let err = stuck.admit(&data(1, 16, 0)).unwrap_err();
        assert!(matches!(err, Error::NoProgress(17)), "{err:?}");
        // A message with bytes resets the count.
        let mut moving = Receiving::new(1, 100);
        for seq in 0..100u16 {
            let len = u32::from(seq % 10 == 9);
            assert!(moving.admit(&data(1, seq, len)).is_ok(), "{seq}");
        }
        // seq wraps modulo 2^16.
        let mut wrap = Receiving::new(1, u64::MAX);
        wrap.next_seq = u16::MAX;
        assert!(wrap.admit(&data(1, u16::MAX, 1)).is_ok());
        assert_eq!(wrap.next_seq, 0);
    }

    #[test]
    fn throttle_reports_first_every_interval_and_last() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.due(t0, false), Some(Duration::ZERO));
        assert_eq!(throttle.due(t0 + PROGRESS_EVERY / 2, false), None);
        assert_eq!(
            throttle.due(t0 + PROGRESS_EVERY, false),
            Some(PROGRESS_EVERY)
        );
        let end = t0 + PROGRESS_EVERY + Duration::from_millis(1);
        assert_eq!(throttle.due(end, true), Some(end - t0));
    }

    proptest::proptest! {
        /// Whatever a client sends after a valid request, the session ends without panicking,
        /// and unless it stored the announced bytes exactly, nothing is left behind.
        #[test]
        fn any_client_bytes_never_panic_or_leave_partial_files(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let (dir, server) = yes();
            let (summary, _) = run(&server, &[&request(1, 4, b"f.bin"), &noise]);
            let stored = files(&dir);
            if summary.is_stored() {
                proptest::prop_assert_eq!(stored.len(), 1);
                proptest::prop_assert_eq!(stored[0].1.len(), 4);
            } else {
                proptest::prop_assert!(stored.is_empty());
            }
        }
    }

    #[test]
    fn garbage_before_a_request_closes_without_reply() {
        let (dir, server) = yes();
        for script in [
            GOLDEN_DATA,
            GOLDEN_RESULT,
            &[0xff; 16][..],
            &GOLDEN_REQUEST[..10],
        ] {
            let (summary, output) = run(&server, &[script]);
            assert!(matches!(summary.end, End::Failed(_)), "{summary:?}");
            assert!(output.is_empty());
        }
        let (summary, _) = run(&server, &[]);
        assert!(matches!(summary.end, End::NoRequest));
        assert!(files(&dir).is_empty());
    }
}
