//! Fixtures shared by the unit tests and the fuzz targets (feature `testing`): the golden
//! vectors, an in-memory duplex stream, and a connected pair of sockets on every platform.

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use crate::net::Conn;

pub use crate::wire::golden::*;

/// Two ends of one TCP connection over loopback: a socket pair on every platform.
///
/// # Panics
///
/// If loopback cannot be used.
pub fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let a = std::net::TcpStream::connect(listener.local_addr().expect("its address"))
        .expect("a loopback connection");
    let (b, _) = listener.accept().expect("the connection accepted");
    (a, b)
}

/// A stream whose reads come from a fixed script of bytes and whose writes are kept.
#[derive(Debug, Default)]
pub struct Duplex {
    /// What the peer "sent".
    pub input: Cursor<Vec<u8>>,
    /// What was written to the peer.
    pub output: Vec<u8>,
    /// Whether the end of the script is the peer hanging up, for [`Conn::peer_closed`] and
    /// [`Conn::closes_within`] to see; otherwise they cannot tell.
    pub hangs_up: bool,
}

impl Duplex {
    /// A duplex that will read `parts` in order, then end; it cannot tell whether the peer
    /// has hung up.
    pub fn new(parts: &[&[u8]]) -> Duplex {
        Duplex {
            input: Cursor::new(parts.concat()),
            ..Duplex::default()
        }
    }

    /// A duplex whose peer hangs up once `parts` have been read, as a socket would show it.
    pub fn hanging_up(parts: &[&[u8]]) -> Duplex {
        Duplex {
            hangs_up: true,
            ..Duplex::new(parts)
        }
    }

    fn all_read(&self) -> bool {
        self.input.position() >= self.input.get_ref().len() as u64
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// No socket under it: no timeouts to set, and data always moves through a buffer. Its whole
/// script is there from the start, so it never claims that input arrived mid-exchange.
impl Conn for Duplex {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn peer_closed(&self) -> bool {
        self.hangs_up && self.all_read()
    }

    fn closes_within(&self, _: Duration) -> Option<bool> {
        self.hangs_up.then(|| self.all_read())
    }
}
