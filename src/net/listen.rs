//! The thread-per-connection accept loop that fup-server and echo-server share: one thread per
//! connection, at most a maximum at once, every trouble reported and survived.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// Connections served at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u16 = 64;

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
    /// Accepting a connection failed.
    AcceptFailed(io::Error),
    /// No thread could be started for a connection, which was closed.
    SpawnFailed(SocketAddr, io::Error),
}

impl ListenEvent {
    /// Whether this is the server's own trouble (for stderr) rather than a client's fate.
    pub fn is_error(&self) -> bool {
        !matches!(self, ListenEvent::TooMany { .. })
    }
}

impl fmt::Display for ListenEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenEvent::TooMany { peer, max } => write!(
                f,
                "{peer}: closed at once: already serving {max} connections (--max-connections)"
            ),
            ListenEvent::AcceptFailed(err) => write!(f, "cannot accept a connection: {err}"),
            ListenEvent::SpawnFailed(peer, err) => {
                write!(f, "{peer}: closed, cannot start a thread: {err}")
            }
        }
    }
}

/// Accepts connections from `listener` forever and runs `handle` for each on a thread of its
/// own named `{name} {peer}`, at most `max` at once; more are closed as they arrive. Troubles
/// go to `report`, from the accepting thread.
///
/// # Errors
///
/// None today: single failed accepts are reported and skipped. The `Result` leaves room for a
/// listener that stops.
pub fn serve_each<H, R>(
    listener: &TcpListener,
    name: &str,
    max: usize,
    handle: H,
    report: R,
) -> io::Result<()>
where
    H: Fn(Accepted) + Send + Sync + 'static,
    R: Fn(ListenEvent),
{
    let handle = Arc::new(handle);
    let active = Arc::new(AtomicUsize::new(0));
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
        if active.load(Ordering::SeqCst) >= max {
            drop(stream);
            report(ListenEvent::TooMany { peer, max });
            continue;
        }
        let slot = Slot::take(&active);
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
                1,
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
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let _next = TcpStream::connect(addr).unwrap();
            match started.recv_timeout(Duration::from_millis(200)) {
                Ok(number) => {
                    assert!(number >= 2);
                    break;
                }
                Err(_) => assert!(std::time::Instant::now() < deadline, "never served"),
            }
        }
    }
}
