//! Everything that touches a socket or a descriptor: the [`Conn`] capabilities the protocol
//! code needs, deadlines, moving file bytes, the accept loop and socket setup (the system
//! calls under them are in [`crate::sys`]).
//!
//! A new transport goes here: implement [`Conn`] for it, and the server's session and the
//! client's upload run over it unchanged.

pub mod deadline;
pub mod discover;
pub mod listen;
pub mod transfer;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::sys::{self, AsSock, Peeked, Sock};
pub use deadline::Deadline;
pub use listen::{Accepted, DEFAULT_MAX_CONNECTIONS, ListenEvent, serve_each};
pub use transfer::{Mover, Source, discard};

/// A byte stream to a peer: `Read + Write`, plus read timeouts and, for sockets, the
/// descriptor (for zero-copy moves and hang-up checks). In-memory streams implement it too,
/// so the protocol code is tested without sockets.
pub trait Conn: Read + Write {
    /// Limits how long each following read may block (`None`: no limit).
    ///
    /// # Errors
    ///
    /// If the limit cannot be set.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// The socket under this stream, if there is one.
    fn socket(&self) -> Option<Sock<'_>> {
        None
    }

    /// Whether the peer has closed the connection, checked without blocking or consuming
    /// anything. Streams that cannot tell say `false`.
    fn peer_closed(&self) -> bool {
        self.socket()
            .is_some_and(|sock| sys::peek(sock, false) == Peeked::Closed)
    }

    /// Whether the peer has sent something, or closed, that is waiting to be read; checked
    /// without blocking or consuming anything. Streams that cannot tell say `false`.
    fn has_input(&self) -> bool {
        self.socket()
            .is_some_and(|sock| sys::peek(sock, false) != Peeked::Nothing)
    }

    /// Bytes written that the peer has not acknowledged yet (still in this side's buffers
    /// or on the way), for progress that says what reached the other end; 0 for streams
    /// that cannot tell.
    fn unacknowledged(&self) -> u64 {
        self.socket().and_then(sys::unacknowledged).unwrap_or(0)
    }

    /// Whether the peer closes the connection within `wait`, consuming nothing: `Some(true)`
    /// at its end of stream (or a reset), `Some(false)` as soon as it sends data or once
    /// `wait` is over, `None` for streams that cannot tell.
    fn closes_within(&self, wait: Duration) -> Option<bool> {
        let sock = self.socket()?;
        if wait.is_zero() || self.set_read_timeout(Some(wait)).is_err() {
            return Some(self.peer_closed());
        }
        Some(sys::peek(sock, true) == Peeked::Closed)
    }

    /// Sends our end of stream (a TCP FIN) while still reading, so that a peer sees all we
    /// sent before the connection goes.
    ///
    /// # Errors
    ///
    /// If the socket cannot be shut down.
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! socket_conn {
    ($($t:ty => $base:ident),*) => {$(
        impl Conn for $t {
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                $base::set_read_timeout(self, timeout)
            }

            fn socket(&self) -> Option<Sock<'_>> {
                Some(self.as_sock())
            }

            fn shutdown_write(&self) -> io::Result<()> {
                $base::shutdown(self, Shutdown::Write)
            }
        }
    )*};
}

socket_conn!(TcpStream => TcpStream, &TcpStream => TcpStream);
#[cfg(unix)]
socket_conn!(UnixStream => UnixStream, &UnixStream => UnixStream);

impl<C: Conn + ?Sized> Conn for &mut C {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn socket(&self) -> Option<Sock<'_>> {
        (**self).socket()
    }

    fn peer_closed(&self) -> bool {
        (**self).peer_closed()
    }

    fn has_input(&self) -> bool {
        (**self).has_input()
    }

    fn unacknowledged(&self) -> u64 {
        (**self).unacknowledged()
    }

    fn closes_within(&self, wait: Duration) -> Option<bool> {
        (**self).closes_within(wait)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        (**self).shutdown_write()
    }
}

/// A [`Conn`] whose first bytes were already read (to tell the protocol apart): they are
/// read again first, then the connection's own.
#[derive(Debug)]
pub struct Prefixed<C> {
    first: Vec<u8>,
    at: usize,
    inner: C,
}

impl<C> Prefixed<C> {
    /// `inner`, with `first` read again before anything of its own.
    pub fn new(first: &[u8], inner: C) -> Prefixed<C> {
        Prefixed {
            first: first.to_vec(),
            at: 0,
            inner,
        }
    }

    fn waiting(&self) -> usize {
        self.first.len() - self.at
    }
}

impl<C: Read> Read for Prefixed<C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.waiting() == 0 {
            return self.inner.read(buf);
        }
        let n = buf.len().min(self.waiting());
        buf[..n].copy_from_slice(&self.first[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl<C: Write> Write for Prefixed<C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<C: Conn> Conn for Prefixed<C> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    fn socket(&self) -> Option<Sock<'_>> {
        // Bytes read from the socket through it must not skip those waiting here.
        match self.waiting() {
            0 => self.inner.socket(),
            _ => None,
        }
    }

    fn peer_closed(&self) -> bool {
        self.waiting() == 0 && self.inner.peer_closed()
    }

    fn has_input(&self) -> bool {
        self.waiting() > 0 || self.inner.has_input()
    }

    fn unacknowledged(&self) -> u64 {
        self.inner.unacknowledged()
    }

    fn closes_within(&self, wait: Duration) -> Option<bool> {
        match self.waiting() {
            0 => self.inner.closes_within(wait),
            _ => Some(false),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.inner.shutdown_write()
    }
}

/// Sets up a fresh TCP connection for FUP, on either side: no Nagle delay (small control
/// messages go at once) and writes limited to `write_timeout`, so a peer that stops reading
/// cannot hold a thread forever.
///
/// # Errors
///
/// If an option cannot be set.
pub fn prepare(stream: &TcpStream, write_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(write_timeout))
}

/// Binds a listener on `addr`, saying plainly when the port is taken.
///
/// # Errors
///
/// If the address cannot be bound.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|err| match err.kind() {
        io::ErrorKind::AddrInUse => io::Error::new(
            err.kind(),
            "the port is already in use (another server? choose one with --port)",
        ),
        io::ErrorKind::AddrNotAvailable => {
            io::Error::new(err.kind(), "no interface of this machine has that address")
        }
        _ => err,
    })
}

/// Most addresses [`reachable_at`] lists.
pub const MAX_SHOWN_ADDRESSES: usize = 8;

/// The addresses a client could use to reach a listener bound to `bound`: `bound` itself,
/// or for an unspecified address (every interface) each running interface's address of its
/// family (both for `::`, which takes IPv4 too), IPv4 first, without loopback and link-local
/// ones unless there is nothing else; at most [`MAX_SHOWN_ADDRESSES`].
pub fn reachable_at(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let ips = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.oper_status != if_addrs::IfOperStatus::Down)
        .map(|i| i.ip())
        .collect();
    usable_addresses(bound, ips)
}

/// [`reachable_at`]'s choice among the interfaces' `ips`.
fn usable_addresses(bound: SocketAddr, mut ips: Vec<std::net::IpAddr>) -> Vec<SocketAddr> {
    use std::net::IpAddr;
    ips.retain(|ip| match (bound.ip(), ip) {
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
        (_, IpAddr::V6(v6)) => !v6.is_unicast_link_local() && !v6.is_unspecified(),
        (_, IpAddr::V4(v4)) => !v4.is_link_local() && !v4.is_unspecified(),
    });
    if ips.iter().any(|ip| !ip.is_loopback()) {
        ips.retain(|ip| !ip.is_loopback());
    }
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.dedup();
    ips.truncate(MAX_SHOWN_ADDRESSES);
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

/// Connects to the first address of `addr` that answers within `timeout` each, and
/// [`prepare`]s the connection with the same `timeout` for writes.
///
/// # Errors
///
/// If the name does not resolve, or no address accepts: the last address's error.
pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    let addrs = addr.to_socket_addrs().map_err(|err| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the name does not resolve ({err})"),
        )
    })?;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                prepare(&stream, timeout)?;
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_a_client_can_use() {
        let ips: Vec<std::net::IpAddr> = [
            "127.0.0.1",
            "::1",
            "192.168.1.7",
            "10.0.0.3",
            "169.254.3.4",
            "fe80::1",
            "2001:db8::7",
            "10.0.0.3",
        ]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
        let shown = |bound: &str, ips: &[std::net::IpAddr]| -> Vec<String> {
            usable_addresses(bound.parse().unwrap(), ips.to_vec())
                .iter()
                .map(SocketAddr::to_string)
                .collect()
        };
        assert_eq!(
            shown("0.0.0.0:5425", &ips),
            ["10.0.0.3:5425", "192.168.1.7:5425"]
        );
        assert_eq!(
            shown("[::]:5425", &ips),
            ["10.0.0.3:5425", "192.168.1.7:5425", "[2001:db8::7]:5425"]
        );
        // Nothing but loopback: that, rather than nothing.
        assert_eq!(shown("0.0.0.0:1", &ips[..2]), ["127.0.0.1:1"]);
        assert_eq!(shown("[::]:1", &ips[..2]), ["127.0.0.1:1", "[::1]:1"]);
        let many: Vec<std::net::IpAddr> = (1..=20).map(|i| [10, 0, 0, i].into()).collect();
        assert_eq!(shown("0.0.0.0:1", &many).len(), MAX_SHOWN_ADDRESSES);
        // Bound to one address: that one.
        assert_eq!(
            reachable_at("127.0.0.1:9".parse().unwrap()),
            ["127.0.0.1:9".parse().unwrap()]
        );
        // This machine's own interfaces: at least loopback is there.
        assert!(!reachable_at("0.0.0.0:9".parse().unwrap()).is_empty());
    }

    #[test]
    fn connect_tries_every_address_and_sets_the_socket_up() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect(("127.0.0.1", port), Duration::from_secs(5)).unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(
            stream.write_timeout().unwrap(),
            Some(Duration::from_secs(5))
        );
        assert!(stream.socket().is_some() && !stream.peer_closed());
        drop(listener);
        let err = connect(("127.0.0.1", port), Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // A name that cannot resolve (rejected before any lookup: nothing leaves the machine).
        let err = connect(("bad\0name", port), Duration::from_secs(5)).unwrap_err();
        assert!(
            err.to_string().starts_with("the name does not resolve ("),
            "{err}"
        );
    }

    #[test]
    fn a_port_in_use_says_so() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the port is already in use (another server? choose one with --port)"
        );
    }
}
