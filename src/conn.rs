//! Connections the server and client can put time limits on and check for a hang-up, so the
//! protocol code stays testable over in-memory streams.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A byte stream to a peer: `Read + Write`, plus read deadlines and hang-up detection.
pub trait Conn: Read + Write {
    /// Limits how long each following read may block (`None`: no limit).
    ///
    /// # Errors
    ///
    /// If the limit cannot be set.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Whether the peer has closed the connection, checked without blocking or consuming
    /// anything. Streams that cannot tell say `false`.
    fn peer_closed(&mut self) -> bool;
}

macro_rules! socket_conn {
    ($($t:ty => $base:ident),*) => {$(
        impl Conn for $t {
            fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                $base::set_read_timeout(self, timeout)
            }

            fn peer_closed(&mut self) -> bool {
                socket_closed(self.as_raw_fd())
            }
        }
    )*};
}

socket_conn!(TcpStream => TcpStream, &TcpStream => TcpStream, UnixStream => UnixStream, &UnixStream => UnixStream);

/// Peeks one byte without blocking: end of stream, or an error such as a reset, means the
/// peer is gone; pending data or nothing yet means it is still there.
fn socket_closed(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket borrowed for the duration of the call, and the buffer is
    // one byte that we own.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast::<libc::c_void>(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            io::Error::last_os_error().kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

impl<C: Conn + ?Sized> Conn for &mut C {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn peer_closed(&mut self) -> bool {
        (**self).peer_closed()
    }
}

/// Reads from a [`Conn`] until a fixed instant: each read may block only for the time left, so
/// a peer that trickles bytes cannot stretch the deadline. Past it, reads fail with
/// [`io::ErrorKind::TimedOut`].
#[derive(Debug)]
pub struct Deadline<'c, C: ?Sized> {
    conn: &'c mut C,
    until: Instant,
}

impl<'c, C: Conn + ?Sized> Deadline<'c, C> {
    /// Reads from `conn` for at most `limit` from now.
    pub fn new(conn: &'c mut C, limit: Duration) -> Deadline<'c, C> {
        // A limit too large to represent is no limit at all.
        let until = Instant::now().checked_add(limit).unwrap_or_else(far_future);
        Deadline { conn, until }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl<C: Conn + ?Sized> Read for Deadline<'_, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.conn.set_read_timeout(Some(left))?;
        match self.conn.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                Err(io::ErrorKind::TimedOut.into())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    #[test]
    fn deadline_bounds_a_silent_peer() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let err = Deadline::new(&mut a, Duration::from_millis(50))
            .read(&mut [0; 4])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deadline_passes_data_through() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"abc").unwrap();
        let mut buf = [0; 3];
        Deadline::new(&mut a, Duration::from_secs(5))
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf, b"abc");
        // A huge limit is accepted and means no practical limit.
        b.write_all(b"d").unwrap();
        assert_eq!(
            Deadline::new(&mut a, Duration::MAX).read(&mut buf).unwrap(),
            1
        );
    }

    #[test]
    fn hang_up_is_seen_without_consuming_data() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        assert!(!a.peer_closed());
        b.write_all(b"x").unwrap();
        assert!(!a.peer_closed(), "pending data is not a hang-up");
        let mut one = [0; 1];
        a.read_exact(&mut one).unwrap();
        b.shutdown(Shutdown::Both).unwrap();
        assert!(a.peer_closed());
        drop(b);
        assert!(a.peer_closed());
    }
}
