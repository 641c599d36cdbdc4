//! The server side: a [`Server`] (where files go, its policy, its operator, its limits), one
//! [`Session`] per connection over any [`Conn`](crate::net::Conn), the thread-per-connection
//! [`Server::serve`], and [`Server::shutdown`].
//!
//! A new policy rule goes in [`policy`]; a new way to approve implements [`Approve`]; a new
//! log line is a case of [`Summary`]'s `Display`.

pub mod approve;
pub mod batch;
pub mod budget;
pub mod handle;
pub mod names;
pub mod partial;
pub mod policy;
pub mod session;
pub mod store;
pub mod summary;
pub mod tree;
pub mod trust;
pub mod web;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

pub use approve::{Approve, Ask};
pub use budget::Budget;
pub use partial::Partials;
pub use policy::{Decision, Policy, Reason};
pub use session::{PROGRESS_EVERY, Session};
pub use store::Store;
pub use summary::{End, Summary};
pub use trust::{Client, SecureMode, TrustedClients};

use crate::error::Error;
pub use crate::net::listen::DEFAULT_MAX_CONNECTIONS;
use crate::net::{self, Accepted, ListenEvent};
use crate::secure::pair::Pairing;
use crate::wire::ResponseByte;

/// Default time allowed for each message to arrive whole (see [`Server::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Server::shutdown`] lets the denials of waiting requests go out before it
/// removes the partial files and returns.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// An accepted upload moving on, reported at most every [`PROGRESS_EVERY`] and at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The connection's number, as in [`Summary::connection`].
    pub connection: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The file's name, as sent (it passed the name checks).
    pub name: String,
    /// Bytes received so far.
    pub received: u64,
    /// Bytes announced.
    pub size: u64,
    /// Time since the first data arrived.
    pub elapsed: Duration,
}

/// What a running server reports to whoever prints its log.
#[derive(Debug)]
pub enum Event {
    /// An accepted upload moved on.
    Progress(Progress),
    /// A connection ended.
    Finished(Box<Summary>),
    /// One browser upload ended (a file, a folder, or a selection denied); its connection
    /// may go on.
    Upload(Box<Summary>),
    /// The accept loop gave up on a connection, or on accepting one; the server goes on.
    Listen(ListenEvent),
    /// Partials of cut uploads expired and were removed.
    Swept(partial::Swept),
    /// The directory for partials is not the server's own (a symlink, another user's, open
    /// to others): cut uploads are not kept. Reported once.
    PartialsRefused(partial::PartialsError),
    /// The trusted clients' file changed and cannot be read: no one is trusted from it until
    /// it can. Reported once per problem.
    TrustedClientsUnreadable(crate::secure::files::FileError),
    /// A client brought the open pairing code and is trusted from now on.
    Paired(Paired),
}

/// A client paired by code.
#[derive(Debug)]
pub struct Paired {
    /// Its address.
    pub peer: SocketAddr,
    /// Its identity.
    pub id: crate::secure::Identity,
    /// The label it gave itself (as sent).
    pub label: String,
    /// The trusted clients' file it was added to, or why it could not be.
    pub file: Result<std::path::PathBuf, String>,
}

impl fmt::Display for Paired {
    /// `paired with client ID "label" from ADDR: trusted from now on (added to FILE)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "paired with client {} \"{}\" from {} by its code: ",
            self.id,
            crate::text::from_peer(&self.label),
            self.peer
        )?;
        match &self.file {
            Ok(file) => write!(
                f,
                "trusted from now on (added to {})",
                crate::text::visible(&file.to_string_lossy())
            ),
            Err(err) => write!(f, "trusted for this connection only: {err}"),
        }
    }
}

/// A FUP server: where files go, which rules decide without asking, who is asked otherwise,
/// how long a quiet peer is waited for and how many are served at once.
pub struct Server {
    store: Store,
    policy: Policy,
    approver: Option<Box<dyn Approve>>,
    timeout: Duration,
    max_connections: usize,
    checksum: bool,
    accept_byte: ResponseByte,
    secure: Option<SecureMode>,
    partials: Option<Partials>,
    budget: Budget,
    per_address: usize,
    web: Option<web::Web>,
    pairing: Option<Arc<Pairing>>,
    stopping: AtomicBool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server storing into `store` under `policy`, with no operator (what no rule decides is
    /// denied), [`DEFAULT_TIMEOUT`] and [`DEFAULT_MAX_CONNECTIONS`].
    pub fn new(store: Store, policy: Policy) -> Server {
        Server {
            store,
            policy,
            approver: None,
            timeout: DEFAULT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS.into(),
            checksum: false,
            accept_byte: ResponseByte::DEFAULT_ACCEPT,
            secure: None,
            partials: None,
            budget: Budget::default(),
            per_address: budget::DEFAULT_PER_ADDRESS,
            web: None,
            pairing: None,
            stopping: AtomicBool::new(false),
        }
    }

    /// Asks `approver` about every request no policy rule decided.
    pub fn with_operator(mut self, approver: impl Approve + 'static) -> Server {
        self.approver = Some(Box::new(approver));
        self
    }

    /// Computes the SHA-256 of every upload while receiving it (see [`Summary::sha256`]). This
    /// takes the buffered path instead of the zero-copy one.
    pub fn with_checksum(mut self, checksum: bool) -> Server {
        self.checksum = checksum;
        self
    }

    /// Answers accepted requests with `byte`, and denied ones with the other (`--accept-byte`):
    /// 0 for the Python programs, fup and the C# author's client, 1 for the C# copies that
    /// use it. Requests look the same from both, so the operator says which.
    pub fn with_accept_byte(mut self, byte: ResponseByte) -> Server {
        self.accept_byte = byte;
        self
    }

    /// Sets the deadline per message after the first (which has the budget's shorter
    /// `hello_timeout`): each data message must arrive whole within `timeout` of the previous
    /// one's end, a batch's whole manifest within `timeout` of its start. Deadlines, not
    /// per-read timeouts: a peer trickling a byte at a time is cut off too.
    /// Writes to a peer that does not read time out after the same time.
    pub fn with_timeout(mut self, timeout: Duration) -> Server {
        self.timeout = timeout;
        self
    }

    /// Offers secure mode: a client's probe is answered, and its upload runs over TLS 1.3
    /// with `secure`'s key; its trusted clients are accepted without asking. Without it, a
    /// probe is refused like any message out of place, as fup 1.0 did.
    pub fn with_secure(mut self, secure: SecureMode) -> Server {
        self.secure = Some(secure);
        self
    }

    /// Keeps what a cut secure batch received in `partials`, for the same client's next try
    /// of the same batch to resume. Without it, a cut keeps only what was published.
    pub fn with_partials(mut self, partials: Partials) -> Server {
        self.partials = Some(partials);
        self
    }

    /// Serves the upload page on the same port (see [`web`]): a connection that opens with
    /// an HTTP request or a TLS ClientHello is a browser's. Without it, those are closed as
    /// any bytes that are not FUP.
    pub fn with_web(mut self, web: web::Web) -> Server {
        self.web = Some(web);
        self
    }

    /// Pairs clients that bring the code `pairing` has open (see
    /// [`pair`](crate::secure::pair)): each one that confirms it is trusted from then on.
    pub fn with_pairing(mut self, pairing: Arc<Pairing>) -> Server {
        self.pairing = Some(pairing);
        self
    }

    /// The pairing codes, if this server pairs.
    pub fn pairing(&self) -> Option<&Arc<Pairing>> {
        self.pairing.as_ref()
    }

    /// The upload page, if served.
    pub fn web(&self) -> Option<&web::Web> {
        self.web.as_ref()
    }

    /// Where cut batches are kept, if they are.
    pub fn partials(&self) -> Option<&Partials> {
        self.partials.as_ref()
    }

    /// Sets how many connections are served at once; more are closed as they arrive.
    pub fn with_max_connections(mut self, max: usize) -> Server {
        self.max_connections = max;
        self
    }

    /// Sets how many connections one address may hold at once (see
    /// [`budget::address_key`]); more from it are closed as they arrive.
    pub fn with_max_per_address(mut self, max: usize) -> Server {
        self.per_address = max;
        self
    }

    /// Sets what unknown peers may cost before a decision (see [`Budget`]).
    pub fn with_budget(mut self, budget: Budget) -> Server {
        self.budget = budget;
        self
    }

    /// What unknown peers may cost before a decision.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The upload directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A session for one connection from `peer`, outside [`Server::serve`] (numbered 0, no
    /// progress reports).
    pub fn session(&self, peer: SocketAddr) -> Session<'_> {
        Session::new(self, peer, 0, None)
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Starts shutting down: every request from now on, and every one waiting for the
    /// operator, is denied for [`Reason::ShuttingDown`]. Uploads already accepted go on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(approver) = &self.approver {
            approver.stop();
        }
    }

    /// Shuts down for a process about to exit (destructors will not run): [`stop`]s, lets
    /// the denials go out for `grace`, then removes the partial files of the uploads in
    /// flight. Returns how many were removed.
    ///
    /// [`stop`]: Server::stop
    pub fn shutdown(&self, grace: Duration) -> usize {
        self.stop();
        thread::sleep(grace);
        self.store.remove_in_flight()
    }

    /// Serves connections from an already bound `listener` forever, one thread each, at most
    /// the maximum at once, and reports every event to `report` (from the connection threads
    /// and the accepting one).
    ///
    /// # Errors
    ///
    /// Only if the listener itself stops yielding connections; single failed accepts are
    /// reported and skipped.
    pub fn serve<F>(self: Arc<Self>, listener: TcpListener, report: F) -> io::Result<()>
    where
        F: Fn(Event) + Send + Sync + 'static,
    {
        crate::sys::ignore_file_size_signal();
        let report = Arc::new(report);
        if let Some(partials) = self.partials.clone() {
            let report = Arc::clone(&report);
            // Expired partials go within a tenth of their time (between 1 s and 10 min).
            let every =
                (partials.keep() / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
            thread::Builder::new()
                .name("fup-sweep".into())
                .spawn(move || {
                    loop {
                        thread::sleep(every);
                        if let Ok(swept) = partials.sweep()
                            && swept.removed > 0
                        {
                            report(Event::Swept(swept));
                        }
                    }
                })?;
        }
        let on_connection = Arc::clone(&report);
        let limits = net::listen::Limits {
            max: self.max_connections,
            per_address: self.per_address,
        };
        net::serve_each(
            &listener,
            "fup",
            limits,
            move |accepted| {
                let summary = self.handle(accepted, &*on_connection);
                on_connection(Event::Finished(Box::new(summary)));
            },
            |event| report(Event::Listen(event)),
        )
    }

    fn handle(&self, accepted: Accepted, report: &(dyn Fn(Event) + Sync)) -> Summary {
        let Accepted {
            stream,
            peer,
            number,
        } = accepted;
        if let Err(err) = net::prepare(&stream, self.timeout) {
            let mut summary = Summary::new(peer, number);
            summary.end = End::Failed(Error::from(err));
            return summary;
        }
        Session::new(self, peer, number, Some(report)).run(&stream)
    }
}
