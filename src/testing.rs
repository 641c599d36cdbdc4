//! Fixtures shared by the unit tests and the fuzz targets (feature `testing`): the golden
//! vectors and an in-memory duplex stream.

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

pub use crate::wire::golden::*;

/// A stream whose reads come from a fixed script of bytes and whose writes are kept.
#[derive(Debug, Default)]
pub struct Duplex {
    /// What the peer "sent".
    pub input: Cursor<Vec<u8>>,
    /// What was written to the peer.
    pub output: Vec<u8>,
}

impl Duplex {
    /// A duplex that will read `parts` in order, then end.
    pub fn new(parts: &[&[u8]]) -> Duplex {
        Duplex {
            input: Cursor::new(parts.concat()),
            output: Vec::new(),
        }
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

/// No socket under it: no timeouts to set, never hung up, data always moves through a buffer.
impl crate::net::Conn for Duplex {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}
