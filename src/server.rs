//! The server side: one [`Session`] per connection, written over any [`Conn`] with the
//! operator's decision injected, and [`Server::serve`], the thread-per-connection loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::approve::{Approve, Ask, Decision, SHUTTING_DOWN};
use crate::conn::{Conn, Deadline, Scratch, deadline_after};
use crate::display;
use crate::error::{Error, Result};
use crate::header::MsgType;
use crate::message::{Body, FileRequest, Message, Outcome, Verdict};
use crate::policy::Cidr;
use crate::store::{Incoming, NameProblem, Store, check_name};

/// Default time allowed for each message to arrive whole (see [`Server::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How often, at most, an upload reports its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long to wait for the optional empty data message after an empty upload: our client
/// sends it right behind the request's acceptance, and a Python client sends none.
const EMPTY_TRAILER_GRACE: Duration = Duration::from_secs(1);

/// The msgid of the server's response; its result uses the next one (PROTOCOL.md, steps 2 and 5).
const RESPONSE_ID: u32 = 0;
const RESULT_ID: u32 = 1;

/// How one connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed the connection without sending a request.
    NoRequest,
    /// The name was refused without asking the operator.
    Refused(NameProblem),
    /// The operator (or policy) denied the request.
    Denied,
    /// The client hung up while its request waited for the operator.
    Abandoned,
    /// The file was stored whole under this path.
    Stored(PathBuf),
    /// The exchange failed; nothing was stored.
    Failed(Error),
}

/// What happened on one connection, for the server's log.
#[derive(Debug)]
pub struct Summary {
    /// The connection's number, counted from 1 by [`Server::serve`] (0 for a bare session).
    pub connection: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The request, once one arrived.
    pub request: Option<FileRequest>,
    /// File bytes received.
    pub received: u64,
    /// Time from the connection's start to its end, operator's think time included.
    pub elapsed: Duration,
    /// Time spent receiving data, from acceptance to the end.
    pub transfer: Duration,
    /// Why the request was accepted or denied, when no operator answered it.
    pub reason: Option<String>,
    /// The SHA-256 of the stored file, computed while receiving, with [`Server::with_checksum`].
    pub sha256: Option<[u8; 32]>,
    /// How it ended.
    pub end: End,
}

impl Summary {
    fn new(peer: SocketAddr, end: End) -> Summary {
        Summary {
            connection: 0,
            peer,
            request: None,
            received: 0,
            elapsed: Duration::ZERO,
            transfer: Duration::ZERO,
            reason: None,
            sha256: None,
            end,
        }
    }

    /// Whether the upload was stored.
    pub fn is_stored(&self) -> bool {
        matches!(self.end, End::Stored(_))
    }
}

impl fmt::Display for Summary {
    /// One log line, with the name escaped: `stored "a.txt" 3 B (3 bytes) in 0.00 s (…/s) from …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(req) = &self.request else {
            return match &self.end {
                End::Failed(err) => write!(
                    f,
                    "{}: connection failed before a request: {err}",
                    self.peer
                ),
                _ => write!(f, "{}: connection closed without a request", self.peer),
            };
        };
        let name = display::escape_bytes(&req.name);
        let size = format!("{} ({} bytes)", display::bytes(req.size), req.size);
        match &self.end {
            End::Stored(path) => {
                let stored_as = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                write!(f, "stored \"{name}\"")?;
                if stored_as.as_bytes() != req.name.as_slice() {
                    write!(f, " as \"{}\"", display::escape(&stored_as))?;
                }
                write!(
                    f,
                    " {size} in {:.2} s ({}) from {}",
                    self.transfer.as_secs_f64(),
                    display::rate(self.received, self.transfer),
                    self.peer
                )?;
                match &self.reason {
                    Some(reason) => write!(f, " (accepted: {reason})"),
                    None => Ok(()),
                }
            }
            End::Refused(problem) => {
                write!(f, "refused \"{name}\" {size} from {}: {problem}", self.peer)
            }
            End::Denied => {
                write!(f, "denied \"{name}\" {size} from {}", self.peer)?;
                match &self.reason {
                    Some(reason) => write!(f, ": {reason}"),
                    None => Ok(()),
                }
            }
            End::Abandoned => {
                write!(
                    f,
                    "dropped \"{name}\" {size} from {}: client hung up while waiting",
                    self.peer
                )
            }
            End::Failed(err) => write!(
                f,
                "failed \"{name}\" after {} of {} bytes in {:.2} s from {}: {err}",
                self.received,
                req.size,
                self.transfer.as_secs_f64(),
                self.peer
            ),
            End::NoRequest => write!(f, "{}: connection closed without a request", self.peer),
        }
    }
}

/// What a running server reports to whoever prints its log.
#[derive(Debug)]
pub enum Event {
    /// An accepted upload moved on; reported at most every [`PROGRESS_EVERY`] and at its end.
    Progress {
        /// The connection's number, as in [`Summary::connection`].
        connection: u64,
        /// The client's address.
        peer: SocketAddr,
        /// The file's name, as sent (check it with [`check_name`] passed).
        name: String,
        /// Bytes received so far.
        received: u64,
        /// Bytes announced.
        size: u64,
        /// Time since the upload was accepted.
        elapsed: Duration,
    },
    /// A connection ended.
    Finished(Summary),
    /// A connection was closed at once: the server already serves its maximum.
    TooMany(SocketAddr, usize),
    /// Accepting a connection failed; the server goes on.
    AcceptFailed(io::Error),
    /// No thread could be started for a connection, which was closed; the server goes on.
    SpawnFailed(SocketAddr, io::Error),
}

/// A FUP server: where files go, who approves them, how long a quiet peer is waited for and
/// how many are served at once.
pub struct Server {
    store: Store,
    approver: Box<dyn Approve>,
    timeout: Duration,
    max_connections: usize,
    max_size: Option<u64>,
    accept_from: Vec<Cidr>,
    checksum: bool,
    stopping: AtomicBool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server storing into `store` and asking `approver` about each request, with
    /// [`DEFAULT_TIMEOUT`] and [`DEFAULT_MAX_CONNECTIONS`].
    pub fn new(store: Store, approver: impl Approve + 'static) -> Server {
        Server {
            store,
            approver: Box::new(approver),
            timeout: DEFAULT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_size: None,
            accept_from: Vec::new(),
            checksum: false,
            stopping: AtomicBool::new(false),
        }
    }

    /// Computes the SHA-256 of every upload while receiving it (see [`Summary::sha256`]). This
    /// takes the buffered path instead of the zero-copy one.
    pub fn with_checksum(mut self, checksum: bool) -> Server {
        self.checksum = checksum;
        self
    }

    /// Starts shutting down: every request from now on, and every one waiting for the
    /// operator, is denied with that reason. Uploads already accepted go on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.approver.stop();
    }

    /// Denies, without asking, files larger than `max` bytes.
    pub fn with_max_size(mut self, max: Option<u64>) -> Server {
        self.max_size = max;
        self
    }

    /// Accepts, without asking, uploads from peers in these ranges (sizes are still checked).
    pub fn with_accept_from(mut self, ranges: Vec<Cidr>) -> Server {
        self.accept_from = ranges;
        self
    }

    /// Sets the deadline per message: the request must arrive whole within `timeout` of the
    /// connection's start, and each data message within `timeout` of the previous one's end.
    /// Deadlines, not per-read timeouts: a peer trickling a byte at a time is cut off too.
    /// Writes to a peer that does not read time out after the same time.
    pub fn with_timeout(mut self, timeout: Duration) -> Server {
        self.timeout = timeout;
        self
    }

    /// Sets how many connections are served at once; more are closed as they arrive.
    pub fn with_max_connections(mut self, max: usize) -> Server {
        self.max_connections = max;
        self
    }

    /// The upload directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A session for one connection from `peer`.
    pub fn session(&self, peer: SocketAddr) -> Session<'_> {
        Session {
            server: self,
            peer,
            connection: 0,
            report: None,
            progress_times: Cell::default(),
        }
    }

    /// Serves connections from an already bound `listener` forever, one thread each, at most
    /// the maximum at once, and reports every event to `report` (from the connection threads).
    ///
    /// # Errors
    ///
    /// Only if the listener itself stops yielding connections; single failed accepts are
    /// reported and skipped.
    pub fn serve<F>(self: Arc<Self>, listener: TcpListener, report: F) -> io::Result<()>
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        let report = Arc::new(report);
        let active = Arc::new(AtomicUsize::new(0));
        let mut connections: u64 = 0;
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(stream) => stream,
                Err(err) => {
                    report(Event::AcceptFailed(err));
                    // Out of file descriptors and the like: don't spin on the error.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let peer = match stream.peer_addr() {
                Ok(peer) => peer,
                Err(err) => {
                    report(Event::AcceptFailed(err));
                    continue;
                }
            };
            // Only this thread increments, so the check cannot race past the maximum.
            if active.load(Ordering::SeqCst) >= self.max_connections {
                drop(stream);
                report(Event::TooMany(peer, self.max_connections));
                continue;
            }
            let slot = Slot::take(&active);
            let server = Arc::clone(&self);
            let thread_report = Arc::clone(&report);
            connections += 1;
            let connection = connections;
            let spawned = thread::Builder::new()
                .name(format!("fup {peer}"))
                .spawn(move || {
                    let _slot = slot;
                    let summary = server.handle(stream, peer, connection, &*thread_report);
                    thread_report(Event::Finished(summary));
                });
            // A failed spawn drops the closure, and with it the slot and the stream.
            if let Err(err) = spawned {
                report(Event::SpawnFailed(peer, err));
            }
        }
        Ok(())
    }

    fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        connection: u64,
        report: &(dyn Fn(Event) + Sync),
    ) -> Summary {
        let setup = stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| stream.set_nodelay(true));
        if let Err(err) = setup {
            return Summary::new(peer, End::Failed(err.into()));
        }
        let session = Session {
            server: self,
            peer,
            connection,
            report: Some(report),
            progress_times: Cell::default(),
        };
        session.run(&stream)
    }
}

/// One counted connection; gives its place back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection's exchange: request, verdict, data, result.
pub struct Session<'a> {
    server: &'a Server,
    peer: SocketAddr,
    connection: u64,
    report: Option<&'a (dyn Fn(Event) + Sync)>,
    /// When the upload was accepted and when its progress was last reported.
    progress_times: Cell<Option<(Instant, Option<Instant>)>>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl Session<'_> {
    /// Serves one upload on `stream` to its end and says how it went. Never panics on what
    /// the peer sends; on any failure nothing is stored.
    pub fn run<S: Conn>(self, mut stream: S) -> Summary {
        let started = Instant::now();
        let mut summary = Summary::new(self.peer, End::NoRequest);
        summary.connection = self.connection;
        summary.end = self.exchange(&mut stream, &mut summary);
        summary.elapsed = started.elapsed();
        summary
    }

    fn exchange<S: Conn>(&self, stream: &mut S, summary: &mut Summary) -> End {
        let limit = self.server.timeout;
        let msg = match Message::read_from(Deadline::new(&mut *stream, limit)) {
            Ok(Some(msg)) => msg,
            Ok(None) => return End::NoRequest,
            Err(err) => return End::Failed(err.or_timed_out("a request", limit)),
        };
        let request_id = msg.id;
        let req = match msg.body {
            Body::Request(req) => req,
            other => {
                return End::Failed(Error::Unexpected {
                    expected: MsgType::Request,
                    got: other.msg_type(),
                });
            }
        };
        let req = summary.request.insert(req);
        let name = match check_name(&req.name) {
            Ok(name) => name,
            Err(problem) => {
                // Refused before anyone is asked; the client just sees a denial.
                let _ = respond(stream, request_id, Verdict::Denied);
                return End::Refused(problem);
            }
        };
        let free = self.server.store.free_space();
        let decision = self.decide(req.size, free, || {
            let conn = RefCell::new(&mut *stream);
            let gone = || conn.borrow_mut().peer_closed();
            let store = &self.server.store;
            let ask = Ask {
                peer: self.peer,
                name,
                size: req.size,
                store,
                free,
                gone: &gone,
            };
            self.server.approver.approve(&ask)
        });
        let verdict = decision.verdict;
        summary.reason = decision.reason;
        if verdict == Verdict::Denied && stream.peer_closed() {
            return End::Abandoned;
        }
        if let Err(err) = respond(stream, request_id, verdict) {
            return End::Failed(err);
        }
        if verdict == Verdict::Denied {
            return End::Denied;
        }
        let (size, name) = (req.size, name.to_string());
        let started = Instant::now();
        let end = self.receive_and_store(
            stream,
            request_id,
            size,
            &name,
            &mut summary.received,
            &mut summary.sha256,
        );
        summary.transfer = started.elapsed();
        end
    }

    /// Reports progress to the log, at most every [`PROGRESS_EVERY`] and at the end.
    fn progress(&self, name: &str, received: u64, size: u64, last: bool) {
        let Some(report) = self.report else { return };
        let now = Instant::now();
        let (started, reported) = self.progress_times.get().unwrap_or((now, None));
        if !last && reported.is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY) {
            self.progress_times.set(Some((started, reported)));
            return;
        }
        self.progress_times.set(Some((started, Some(now))));
        let elapsed = now.duration_since(started);
        report(Event::Progress {
            connection: self.connection,
            peer: self.peer,
            name: name.to_string(),
            received,
            size,
            elapsed,
        });
    }

    /// The server's own policies first (size limit, free space, trusted ranges), and only
    /// then the approver.
    fn decide(&self, size: u64, free: Option<u64>, ask: impl FnOnce() -> Decision) -> Decision {
        if self.server.stopping.load(Ordering::SeqCst) {
            return Decision::auto(Verdict::Denied, SHUTTING_DOWN);
        }
        if let Some(max) = self.server.max_size.filter(|&max| size > max) {
            return Decision::auto(
                Verdict::Denied,
                format!("larger than --max-size {}", display::bytes(max)),
            );
        }
        if let Some(free) = free.filter(|&free| size > free) {
            return Decision::auto(
                Verdict::Denied,
                format!("not enough free space ({} free)", display::bytes(free)),
            );
        }
        let peer = self.peer.ip();
        if let Some(range) = self
            .server
            .accept_from
            .iter()
            .find(|range| range.contains(peer))
        {
            return Decision::auto(Verdict::Accepted, format!("--accept-from {range}"));
        }
        ask()
    }

    fn receive_and_store<S: Conn>(
        &self,
        stream: &mut S,
        request_id: u32,
        size: u64,
        name: &str,
        received: &mut u64,
        sha256: &mut Option<[u8; 32]>,
    ) -> End {
        let limit = self.server.timeout;
        let mut scratch = if self.server.checksum {
            Scratch::hashing()
        } else {
            Scratch::default()
        };
        let outcome = self
            .server
            .store
            .incoming()
            .map_err(Error::from)
            .and_then(|mut incoming| {
                let upload = Upload {
                    request_id,
                    size,
                    limit,
                };
                let last_id = receive(
                    stream,
                    upload,
                    &mut incoming,
                    &mut scratch,
                    received,
                    &mut |received, last| self.progress(name, received, size, last),
                )?;
                Ok((incoming.publish(name)?, last_id))
            });
        match outcome {
            Ok((path, last_id)) => {
                *sha256 = scratch.sha256();
                if let Err(err) = finish(stream, last_id, Outcome::Success) {
                    // Stored, but the client never heard: keep the file, report the failure.
                    return End::Failed(err);
                }
                if size == 0 {
                    // A Python client sends no data for an empty file and waits for the result
                    // it now has; ours sends one empty last data message, which we take quietly.
                    // Reading it (rather than closing on it) keeps the kernel from answering
                    // with a reset that could destroy the result before the client reads it.
                    let grace = limit.min(EMPTY_TRAILER_GRACE);
                    let _ = Message::read_from(Deadline::new(&mut *stream, grace));
                }
                End::Stored(path)
            }
            Err(err) => {
                let _ = finish(stream, request_id, Outcome::Failure);
                End::Failed(err)
            }
        }
    }
}

/// What the data messages of an accepted upload must match.
#[derive(Clone, Copy)]
struct Upload {
    /// The request's msgid, which every data message repeats.
    request_id: u32,
    /// The size the request announced.
    size: u64,
    /// The time allowed for each data message.
    limit: Duration,
}

/// Receives the data messages of an accepted upload into `incoming`, each within the limit.
/// Returns the msgid of the last data message, which the result echoes (PROTOCOL.md, step 5).
fn receive<S: Conn>(
    stream: &mut S,
    upload: Upload,
    incoming: &mut Incoming,
    scratch: &mut Scratch,
    received: &mut u64,
    progress: &mut dyn FnMut(u64, bool),
) -> Result<u32> {
    let Upload {
        request_id,
        size,
        limit,
    } = upload;
    if size == 0 {
        // Answer at once: see `receive_and_store`.
        return Ok(request_id);
    }
    let mut next_seq: u16 = 0;
    loop {
        // One deadline for the whole message, header and body.
        let until = deadline_after(limit);
        let msg = Message::read_from(Deadline::until(&mut *stream, until))
            .map_err(|e| e.or_timed_out("a data message", limit))?
            .ok_or(Error::Closed(MsgType::Data))?;
        let Body::Data { len } = msg.body else {
            return Err(Error::Unexpected {
                expected: MsgType::Data,
                got: msg.body.msg_type(),
            });
        };
        // Every data message carries the request's msgid (PROTOCOL.md, step 3).
        if msg.id != request_id {
            return Err(Error::MessageId {
                expected: request_id,
                got: msg.id,
            });
        }
        // seq counts 0, 1, 2, … and wraps modulo 2^16, so uploads have no size limit.
        if msg.seq != next_seq {
            return Err(Error::Sequence {
                expected: next_seq,
                got: msg.seq,
            });
        }
        next_seq = next_seq.wrapping_add(1);
        let total = *received + u64::from(len);
        if total > size {
            return Err(Error::TooLarge {
                what: "data beyond the announced size",
                got: total,
                limit: size,
            });
        }
        // The body shares the message's deadline with its header.
        stream
            .recv_into_file(incoming.file(), len.into(), scratch, until)
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => Error::Truncated,
                _ => Error::from(err).or_timed_out("a data message", limit),
            })?;
        *received = total;
        progress(total, msg.last);
        if msg.last {
            if *received != size {
                return Err(Error::SizeMismatch {
                    announced: size,
                    received: *received,
                });
            }
            return Ok(msg.id);
        }
    }
}

fn respond<S: Write>(stream: &mut S, request_id: u32, verdict: Verdict) -> Result<()> {
    Message::single(
        RESPONSE_ID,
        Body::Response {
            request_id,
            verdict,
        },
    )
    .write_to(&mut *stream)?;
    stream.flush()?;
    Ok(())
}

fn finish<S: Write>(stream: &mut S, request_id: u32, outcome: Outcome) -> Result<()> {
    Message::single(
        RESULT_ID,
        Body::Result {
            request_id,
            outcome,
        },
    )
    .write_to(&mut *stream)?;
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approve::AcceptAll;
    use crate::testing::*;
    use std::fs;
    use tempfile::TempDir;

    fn server(approver: impl Approve + 'static) -> (TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, Server::new(store, approver))
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
        let (dir, server) = server(AcceptAll);
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
        // Over --max-size: denied with the reason, even from a trusted range.
        let (dir, server) = server(never);
        let server = server
            .with_max_size(Some(2))
            .with_accept_from(vec!["127.0.0.0/8".parse().unwrap()]);
        let (summary, output) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert_eq!(output[20], Verdict::Denied as u8);
        assert_eq!(
            summary.to_string(),
            "denied \"hello.txt\" 3 B (3 bytes) from 127.0.0.1:4000: larger than --max-size 2 B"
        );
        // From a trusted range and within limits: accepted, and the log says why.
        let server = server.with_max_size(Some(3));
        let (summary, _) = run(&server, &[GOLDEN_REQUEST, GOLDEN_DATA]);
        assert!(summary.is_stored());
        assert!(
            summary
                .to_string()
                .ends_with("from 127.0.0.1:4000 (accepted: --accept-from 127.0.0.0/8)"),
            "{summary}"
        );
        assert_eq!(files(&dir).len(), 1);
        // More than the free space: denied with the reason.
        let (_other_dir, plain) = super::tests::server(never);
        let (summary, _) = run(&plain, &[&request(1, u64::MAX / 2, b"huge.bin")]);
        assert!(
            summary.to_string().contains(": not enough free space ("),
            "{summary}"
        );
    }

    #[test]
    fn progress_is_reported_throttled_and_at_the_end() {
        let (_dir, server) = server(AcceptAll);
        let chunks = 1000;
        let mut parts = vec![request(1, chunks as u64, b"p.bin")];
        for i in 0..chunks {
            parts.push(data(1, i as u16, i + 1 == chunks, &[7]));
        }
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let events = std::sync::Mutex::new(Vec::new());
        let report = |event: Event| {
            if let Event::Progress {
                connection,
                received,
                size,
                ..
            } = event
            {
                events.lock().unwrap().push((connection, received, size));
            }
        };
        let session = Session {
            server: &server,
            peer: "127.0.0.1:4000".parse().unwrap(),
            connection: 7,
            report: Some(&report),
            progress_times: Cell::default(),
        };
        let summary = session.run(&mut Duplex::new(&parts));
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
            &[&request(1, 3, b"../escape"), &data(1, 0, true, b"hi\n")],
        );
        assert!(
            matches!(summary.end, End::Refused(NameProblem::Separator)),
            "{summary:?}"
        );
        assert_eq!(output[20], Verdict::Denied as u8);
        assert!(files(&dir).is_empty());
    }

    #[test]
    fn empty_file_from_python_client_is_answered_at_once() {
        let (dir, server) = server(AcceptAll);
        let (summary, output) = run(&server, &[&request(1, 0, b"empty")]);
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(&output[21..], result(Outcome::Success));
        assert_eq!(files(&dir), [("empty".to_string(), vec![])]);
    }

    #[test]
    fn empty_file_with_trailing_empty_data_message() {
        let (dir, server) = server(AcceptAll);
        let (summary, output) = run(&server, &[&request(1, 0, b"empty"), &data(1, 0, true, b"")]);
        assert!(summary.is_stored(), "{summary}");
        assert_eq!(&output[21..], result(Outcome::Success));
        assert_eq!(files(&dir), [("empty".to_string(), vec![])]);
    }

    #[test]
    fn chunks_are_joined_and_seq_may_wrap() {
        let (dir, server) = server(AcceptAll);
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
        let (dir, server) = server(AcceptAll);
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
            let (dir, server) = server(AcceptAll);
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

    proptest::proptest! {
        /// Whatever a client sends after a valid request, the session ends without panicking,
        /// and unless it stored the announced bytes exactly, nothing is left behind.
        #[test]
        fn any_client_bytes_never_panic_or_leave_partial_files(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let (dir, server) = server(AcceptAll);
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
        let (dir, server) = server(AcceptAll);
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
