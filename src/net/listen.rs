//! The thread-per-connection accept loop that fup-server and echo-server share: one thread per
//! connection, at most a maximum at once and a smaller one per address, every trouble
//! reported and survived.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// Connections served at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u16 = 64;

/// How many connections are served at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In all.
    pub max: usize,
    /// From one address (see [`address_key`]).
    pub per_address: usize,
}

/// The address a limit per address counts under: an IPv4 address itself, an IPv6 address's
/// /64 (one host's usual share: it can pick any address in it), an IPv4-mapped IPv6 address
/// as the IPv4 one.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// How long to wait after a failed accept (out of descriptors and the like) before the next,
/// so the loop does not spin on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One accepted connection, handed to the handler on its own thread.
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's number, counted from 1.
    pub number: u64,
}

/// Something the accept loop had to give up on; the loop itself goes on.
#[derive(Debug)]
pub enum ListenEvent {
    /// A connection was closed at once: the maximum is already being served.
    TooMany {
        /// The client's address.
        peer: SocketAddr,
        /// The maximum.
        max: usize,
    },
    /// A connection was closed at once: its address already holds the most it may.
    TooManyFromAddress {
        /// The client's address.
        peer: SocketAddr,
        /// The maximum per address.
        max: usize,
    },
    /// Accepting a connection failed.
    AcceptFailed(io::Error),
    /// No thread could be started for a connection, which was closed.
    SpawnFailed(SocketAddr, io::Error),
}

impl ListenEvent {
    /// Whether this is the server's own trouble (for stderr) rather than a client's fate.
    pub fn is_error(&self) -> bool {
        !matches!(
            self,
            ListenEvent::TooMany { .. } | ListenEvent::TooManyFromAddress { .. }
        )
    }
}

impl fmt::Display for ListenEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenEvent::TooMany { peer, max } => write!(
                f,
                "{peer}: closed at once: already serving {max} connections (--max-connections)"
            ),
            ListenEvent::TooManyFromAddress { peer, max } => write!(
                f,
                "{peer}: closed at once: its address already holds {max} connections (--max-per-address)"
            ),
            ListenEvent::AcceptFailed(err) => write!(f, "cannot accept a connection: {err}"),
            ListenEvent::SpawnFailed(peer, err) => {
                write!(f, "{peer}: closed, cannot start a thread: {err}")
            }
        }
    }
}

/// Accepts connections from `listener` forever and runs `handle` for each on a thread of its
/// own named `{name} {peer}`, at most `limits.max` at once and `limits.per_address` from one
/// address; more are closed as they arrive. Troubles go to `report`, from the accepting
/// thread.
///
/// # Errors
///
/// None today: single failed accepts are reported and skipped. The `Result` leaves room for a
/// listener that stops.
pub fn serve_each<H, R>(
    listener: &TcpListener,
    name: &str,
    limits: Limits,
    handle: H,
    report: R,
) -> io::Result<()>
where
    H: Fn(Accepted) + Send + Sync + 'static,
    R: Fn(ListenEvent),
{
    let handle = Arc::new(handle);
    let active = Arc::new(Mutex::new(Active::default()));
    let mut number: u64 = 0;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(err) => {
                report(ListenEvent::AcceptFailed(err));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(err) => {
                report(ListenEvent::AcceptFailed(err));
                continue;
            }
        };
        // Only this thread takes slots, so the check cannot race past the maximum.
        let slot = match Slot::take(&active, peer.ip(), limits) {
            Ok(slot) => slot,
            Err(full) => {
                drop(stream);
                report(match full {
                    Full::All => ListenEvent::TooMany {
                        peer,
                        max: limits.max,
                    },
                    Full::Address => ListenEvent::TooManyFromAddress {
                        peer,
                        max: limits.per_address,
                    },
                });
                continue;
            }
        };
        let handle = Arc::clone(&handle);
        number += 1;
        let accepted = Accepted {
            stream,
            peer,
            number,
        };
        let spawned = thread::Builder::new()
            .name(format!("{name} {peer}"))
            .spawn(move || {
                let _slot = slot;
                handle(accepted);
            });
        // A failed spawn drops the closure, and with it the slot and the stream.
        if let Err(err) = spawned {
            report(ListenEvent::SpawnFailed(peer, err));
        }
    }
    Ok(())
}

/// The connections being served: in all, and per address.
#[derive(Default)]
struct Active {
    all: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Which limit a connection ran into.
enum Full {
    All,
    Address,
}

/// One counted connection; gives its place back when dropped.
struct Slot {
    active: Arc<Mutex<Active>>,
    address: IpAddr,
}

impl Slot {
    /// A place for a connection from `ip`, or which limit says there is none.
    fn take(active: &Arc<Mutex<Active>>, ip: IpAddr, limits: Limits) -> Result<Slot, Full> {
        let address = address_key(ip);
        let mut now = active.lock().unwrap_or_else(PoisonError::into_inner);
        if now.all >= limits.max {
            return Err(Full::All);
        }
        let from = now.by_address.entry(address).or_insert(0);
        if *from >= limits.per_address {
            if *from == 0 {
                now.by_address.remove(&address);
            }
            return Err(Full::Address);
        }
        *from += 1;
        now.all += 1;
        Ok(Slot {
            active: Arc::clone(active),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut now = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        now.all -= 1;
        if let Some(from) = now.by_address.get_mut(&self.address) {
            *from -= 1;
            if *from == 0 {
                now.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::mpsc;

    #[test]
    fn connections_over_the_maximum_are_closed_and_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        let release = std::sync::Mutex::new(release);
        let (events_tx, events) = mpsc::channel();
        thread::spawn(move || {
            serve_each(
                &listener,
                "test",
                Limits {
                    max: 1,
                    per_address: 1,
                },
                move |accepted| {
                    started_tx.send(accepted.number).unwrap();
                    // Hold the only slot until the test says so.
                    let _ = release.lock().unwrap().recv();
                },
                move |event| events_tx.send(event.to_string()).unwrap(),
            )
        });
        let timeout = Duration::from_secs(10);
        let _first = TcpStream::connect(addr).unwrap();
        assert_eq!(started.recv_timeout(timeout).unwrap(), 1);
        let mut second = TcpStream::connect(addr).unwrap();
        second.set_read_timeout(Some(timeout)).unwrap();
        let event = events.recv_timeout(timeout).unwrap();
        assert!(
            event.ends_with("closed at once: already serving 1 connections (--max-connections)"),
            "{event}"
        );
        assert_eq!(second.read(&mut [0; 1]).unwrap(), 0, "closed at once");
        release_tx.send(()).unwrap();
        // The slot is free again: the next connection is served, numbered on.
        let deadline = crate::net::Deadline::after(timeout);
        loop {
            let _next = TcpStream::connect(addr).unwrap();
            match started.recv_timeout(Duration::from_millis(200)) {
                Ok(number) => {
                    assert!(number >= 2);
                    break;
                }
                Err(_) => assert!(deadline.time_left().is_ok(), "never served"),
            }
        }
    }
}
