//! The client's way in: connect, offer secure mode with the probe, and either run the TLS
//! handshake against the server's pinned identity or, for a server never pinned that does not
//! answer, fall back to plain. Decides everything before a byte of the file is sent.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use super::files::{FileError, HostPort, add_known_host, known_host};
use super::id::Identity;
use super::keys::Keys;
use super::probe::{PROBE, answered};
use super::stream::{self, ClientTls};
use super::tls::client_config;
use crate::net::{self, Conn, Deadline};
use crate::wire::HEADER_LEN;

/// Longest wait for a probe's answer. A fup server answers at once; a plain server closes at
/// once, unless it serves one connection at a time and is busy (the Python server), when the
/// probe waits in its queue: after this long the client goes on in plain.
pub const PROBE_WAIT: Duration = Duration::from_secs(10);

/// How the client reaches a server (`--secure`, `--plain`, or neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Probe; secure if the server offers it, plain (with a note) if it does not, unless the
    /// server is pinned.
    Auto,
    /// Secure or nothing.
    Secure,
    /// Never probe: exactly the plain protocol's bytes.
    Plain,
}

/// Why a pinned identity is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// `--pin ID`.
    Given(Identity),
    /// A line of `known_hosts`.
    Known {
        /// The identity pinned there.
        id: Identity,
        /// The file.
        file: PathBuf,
        /// Its line, from 1.
        line: usize,
    },
}

impl Pin {
    /// The identity pinned.
    pub fn id(&self) -> Identity {
        match self {
            Pin::Given(id) | Pin::Known { id, .. } => *id,
        }
    }
}

/// Why a server could not be reached the way it must be.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Connecting, or talking to the socket, failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// `known_hosts` could not be read.
    #[error(transparent)]
    KnownHosts(#[from] FileError),
    /// `--secure`, and the server does not offer secure mode.
    #[error("{0} does not offer secure mode (--secure); nothing was sent")]
    NotOffered(HostPort),
    /// The server is pinned, and its probe went unanswered: whoever answers is not it.
    #[error(
        "{host} is pinned ({}) but did not answer the secure-mode probe ({why}); not falling back to plain, nothing was sent",
        pin_source(.pin)
    )]
    PinnedNotOffered {
        /// The server.
        host: HostPort,
        /// Its pin.
        pin: Box<Pin>,
        /// What came instead of the answer.
        why: &'static str,
    },
    /// The server showed another identity than the one pinned.
    #[error("{}", changed(.host, .pin, .got))]
    IdentityChanged {
        /// The server.
        host: HostPort,
        /// Its pin.
        pin: Box<Pin>,
        /// The identity it showed.
        got: Identity,
    },
    /// The handshake failed for another reason.
    // The cause is the source, printed once by whoever prints the chain (`{:#}`).
    #[error("secure handshake with {host} failed")]
    Handshake {
        /// The server.
        host: HostPort,
        /// What failed.
        source: io::Error,
    },
    /// First contact, and the user did not trust the identity shown.
    #[error("{host}'s identity {id} was not trusted; nothing was sent")]
    NotTrusted {
        /// The server.
        host: HostPort,
        /// The identity it showed.
        id: Identity,
    },
}

fn pin_source(pin: &Pin) -> String {
    match pin {
        Pin::Given(_) => "--pin".to_string(),
        Pin::Known { file, line, .. } => format!("{} line {line}", file.display()),
    }
}

fn changed(host: &HostPort, pin: &Pin, got: &Identity) -> String {
    match pin {
        Pin::Given(id) => {
            format!("{host} showed identity {got}, not {id} given with --pin; nothing was sent")
        }
        Pin::Known { id, file, line } => format!(
            "THE IDENTITY OF {host} HAS CHANGED: pinned {id}, now showing {got}. Someone may \
             be in the middle, or the server got a new key. Nothing was sent. If the change \
             is expected, remove line {line} of {}",
            file.display()
        ),
    }
}

/// A connection to a server, plain or secure.
#[derive(Debug)]
pub enum Link {
    /// The plain protocol: unencrypted, unauthenticated.
    Plain(TcpStream),
    /// Secure mode: TLS 1.3 to a server that proved its identity, speaking this version of
    /// what runs inside (see [`probe`](super::probe)).
    Secure(Box<ClientTls<TcpStream>>, u16),
}

impl Link {
    /// The server's identity, on a secure link.
    pub fn server_id(&self) -> Option<Identity> {
        match self {
            Link::Plain(_) => None,
            Link::Secure(tls, _) => tls.peer(),
        }
    }

    /// The version of secure mode both ends speak, on a secure link.
    pub fn version(&self) -> Option<u16> {
        match self {
            Link::Plain(_) => None,
            Link::Secure(_, version) => Some(*version),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Link::Plain($s) => $e,
            Link::Secure($s, _) => $e,
        }
    };
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, s => s.read(buf))
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(self, s => s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        each!(self, s => s.flush())
    }
}

impl Conn for Link {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        each!(self, s => s.set_read_timeout(timeout))
    }

    fn socket(&self) -> Option<crate::sys::Sock<'_>> {
        each!(self, s => s.socket())
    }

    fn peer_closed(&self) -> bool {
        each!(self, s => s.peer_closed())
    }

    fn has_input(&self) -> bool {
        each!(self, s => s.has_input())
    }

    fn closes_within(&self, wait: Duration) -> Option<bool> {
        each!(self, s => s.closes_within(wait))
    }

    fn unacknowledged(&self) -> u64 {
        each!(self, s => s.unacknowledged())
    }

    fn shutdown_write(&self) -> io::Result<()> {
        each!(self, s => s.shutdown_write())
    }
}

/// What the dialer did that the user should hear of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The server does not offer secure mode: the upload goes in plain.
    Plain,
    /// First contact: the server's identity is now pinned in this file.
    Pinned {
        /// The identity.
        id: Identity,
        /// The file.
        file: PathBuf,
    },
    /// Paired by code: the server proved it holds the code and is pinned in this file; it
    /// trusts this client from now on, under this label.
    Paired {
        /// The server's identity.
        id: Identity,
        /// The file it is pinned in.
        file: PathBuf,
        /// The label this client gave itself.
        label: String,
    },
}

/// What became of a server identity met for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstContact {
    /// Not trusted: nothing is sent.
    Refused,
    /// Trusted without asking anyone (no terminal: ssh's accept-new).
    Recorded,
    /// Trusted by a person who was asked, however long that took: the server's clock for
    /// this connection may have run out meanwhile, so the dialer connects again, pinned.
    Answered,
    /// To be proven on the connection by the caller (a pairing code): nothing is recorded
    /// yet; [`Dialer::pin_proven`] records it once proven.
    Deferred,
}

/// Decides on a server identity met for the first time.
type Decide<'a> = Box<dyn FnMut(&HostPort, &Identity) -> FirstContact + 'a>;

/// Reaches one server, for every upload of one command: remembers across them that the
/// server is plain (one probe, one note), or the identity it was first met with.
pub struct Dialer<'a> {
    host: HostPort,
    mode: Mode,
    keys: Option<&'a Keys>,
    known_hosts: PathBuf,
    pin: Option<Pin>,
    timeout: Duration,
    /// Set once the server did not answer a probe: later uploads go plain without one.
    plain: bool,
    /// Asked on first contact whether to trust an identity.
    first_contact: Decide<'a>,
}

impl std::fmt::Debug for Dialer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("host", &self.host)
            .field("mode", &self.mode)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl<'a> Dialer<'a> {
    /// A dialer for `host` in `mode`, with the client's `keys` (needed unless plain), the
    /// `known_hosts` file, `--pin` if given, and `timeout` for connecting and the handshake.
    /// `first_contact` decides on an identity met for the first time (pinned unless refused).
    ///
    /// # Errors
    ///
    /// If `known_hosts` cannot be read.
    pub fn new(
        host: HostPort,
        mode: Mode,
        keys: Option<&'a Keys>,
        known_hosts: PathBuf,
        given: Option<Identity>,
        timeout: Duration,
        first_contact: impl FnMut(&HostPort, &Identity) -> FirstContact + 'a,
    ) -> Result<Dialer<'a>, DialError> {
        let pin = match given {
            Some(id) => Some(Pin::Given(id)),
            None if mode == Mode::Plain => None,
            None => known_host(&known_hosts, &host)?.map(|known| Pin::Known {
                id: known.id,
                file: known_hosts.clone(),
                line: known.line,
            }),
        };
        Ok(Dialer {
            host,
            mode,
            keys,
            known_hosts,
            pin,
            timeout,
            plain: false,
            first_contact: Box::new(first_contact),
        })
    }

    /// The server's pin, if it has one.
    pub fn pin(&self) -> Option<&Pin> {
        self.pin.as_ref()
    }

    /// Pins `id` for this server in `known_hosts` (unless it is pinned already), once the
    /// caller proved it on the connection (a pairing code); later connections check it.
    /// Returns the file.
    ///
    /// # Errors
    ///
    /// If `known_hosts` cannot be written or read.
    pub fn pin_proven(&mut self, id: Identity) -> Result<PathBuf, DialError> {
        if self.pin.as_ref().is_some_and(|pin| pin.id() == id) {
            return Ok(self.known_hosts.clone());
        }
        add_known_host(&self.known_hosts, &self.host, &id)?;
        self.pin = Some(Pin::Known {
            id,
            file: self.known_hosts.clone(),
            line: known_host(&self.known_hosts, &self.host)?.map_or(0, |known| known.line),
        });
        Ok(self.known_hosts.clone())
    }

    /// Opens a connection for one upload, secure or (when allowed) plain, and says what the
    /// user should hear of.
    ///
    /// # Errors
    ///
    /// A [`DialError`]; in every case nothing of the file has been sent.
    pub fn dial(&mut self) -> Result<(Link, Option<Note>), DialError> {
        match self.dial_lazily()? {
            (Some(link), note) => Ok((link, note)),
            (None, note) => Ok((Link::Plain(self.connect()?), note)),
        }
    }

    /// Like [`Dialer::dial`], but a server found to be plain (its probe unanswered) is not
    /// connected to again: `None`, for a caller that may have nothing to send it (each file
    /// then goes over a connection of its own).
    ///
    /// # Errors
    ///
    /// As [`Dialer::dial`].
    pub fn dial_lazily(&mut self) -> Result<(Option<Link>, Option<Note>), DialError> {
        let keys = match self.keys {
            Some(keys) if self.mode != Mode::Plain && !self.plain => keys,
            _ => return Ok((Some(Link::Plain(self.connect()?)), None)),
        };
        let mut sock = self.connect()?;
        if self.pin.is_some() {
            // A pinned server answered the probe before: the handshake follows the probe
            // at once (one round trip less), and a missing answer is still an error.
            let (link, note) = self.handshake(sock, keys, None)?;
            return Ok((Some(link), note));
        }
        let why = match probe(&mut sock, self.timeout.min(PROBE_WAIT)) {
            Ok(version) => {
                let (link, note) = self.handshake(sock, keys, Some(version))?;
                return Ok((Some(link), note));
            }
            Err(why) => why,
        };
        drop(sock);
        if let Some(pin) = &self.pin {
            return Err(DialError::PinnedNotOffered {
                host: self.host.clone(),
                pin: Box::new(pin.clone()),
                why,
            });
        }
        if self.mode == Mode::Secure {
            return Err(DialError::NotOffered(self.host.clone()));
        }
        self.plain = true;
        Ok((None, Some(Note::Plain)))
    }

    fn connect(&self) -> io::Result<TcpStream> {
        net::connect((self.host.host.as_str(), self.host.port), self.timeout)
    }

    /// The handshake on `sock`, whose server answered the probe with `version`; or, for
    /// `None`, with the probe sent first and its answer read before the server's handshake.
    fn handshake(
        &mut self,
        mut sock: TcpStream,
        keys: &Keys,
        answered: Option<u16>,
    ) -> Result<(Link, Option<Note>), DialError> {
        let pinned = self.pin.as_ref().map(Pin::id);
        let (config, seen) = client_config(keys, pinned).map_err(io::Error::other)?;
        let deadline = Deadline::after(self.timeout);
        let mut refused = None;
        let mut version = answered.unwrap_or_default();
        let connected = match answered {
            Some(_) => stream::connect(sock, config, deadline),
            None => {
                let wait = self.timeout.min(PROBE_WAIT);
                sock.write_all(&PROBE)?;
                let mut answer = |sock: &mut TcpStream| {
                    read_answer(sock, wait)
                        .map(|agreed| version = agreed)
                        .map_err(|why| {
                            refused = Some(why);
                            io::Error::other(why)
                        })
                };
                stream::connect_pipelined(sock, config, deadline, Some(&mut answer))
            }
        };
        let tls = match (connected, refused, &self.pin) {
            (Ok(tls), _, _) => tls,
            (Err(_), Some(why), Some(pin)) => {
                return Err(DialError::PinnedNotOffered {
                    host: self.host.clone(),
                    pin: Box::new(pin.clone()),
                    why,
                });
            }
            (Err(source), _, _) => {
                return Err(match (&self.pin, seen.get()) {
                    (Some(pin), Some(got)) if got != pin.id() => DialError::IdentityChanged {
                        host: self.host.clone(),
                        pin: Box::new(pin.clone()),
                        got,
                    },
                    _ => DialError::Handshake {
                        host: self.host.clone(),
                        source,
                    },
                });
            }
        };
        // `connect` fails a server that shows no certificate: this is always there.
        let Some(id) = tls.peer() else {
            return Err(DialError::Handshake {
                host: self.host.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, "no server certificate"),
            });
        };
        let link = Link::Secure(Box::new(tls), version);
        if self.pin.is_some() {
            return Ok((link, None));
        }
        let answer = (self.first_contact)(&self.host, &id);
        match answer {
            FirstContact::Refused => {
                return Err(DialError::NotTrusted {
                    host: self.host.clone(),
                    id,
                });
            }
            FirstContact::Deferred => return Ok((link, None)),
            FirstContact::Recorded | FirstContact::Answered => {}
        }
        self.pin_proven(id)?;
        let note = Some(Note::Pinned {
            id,
            file: self.known_hosts.clone(),
        });
        match answer {
            // A person took their time: a new connection, pinned now, starts the server's
            // clock afresh.
            FirstContact::Answered => {
                drop(link);
                Ok((self.dial()?.0, note))
            }
            _ => Ok((link, note)),
        }
    }
}

/// Sends the probe and waits up to `wait` for its answer: the version both speak; or says
/// what came instead.
fn probe(sock: &mut TcpStream, wait: Duration) -> Result<u16, &'static str> {
    sock.write_all(&PROBE)
        .map_err(|_| "the connection failed")?;
    read_answer(sock, wait)
}

/// Reads the probe's answer within `wait`: the version both speak; or says what came instead.
fn read_answer(sock: &mut TcpStream, wait: Duration) -> Result<u16, &'static str> {
    let mut answer = [0; HEADER_LEN];
    let deadline = Deadline::after(wait);
    match sock_read_exact(sock, &mut answer, deadline) {
        Ok(()) => answered(&answer).ok_or("it sent something else"),
        Err(err) if err.kind() == io::ErrorKind::TimedOut => Err("no answer in time"),
        Err(_) => Err("it closed the connection"),
    }
}

fn sock_read_exact(sock: &mut TcpStream, buf: &mut [u8], deadline: Deadline) -> io::Result<()> {
    deadline.reader(sock).read_exact(buf)
}
