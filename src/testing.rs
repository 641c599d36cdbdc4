//! Test fixtures shared by the unit tests: the golden vectors and an in-memory duplex.

use std::io::{self, Cursor, Read, Write};

pub use crate::golden::*;

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

impl crate::conn::Conn for Duplex {
    fn set_read_timeout(&mut self, _: Option<std::time::Duration>) -> io::Result<()> {
        Ok(())
    }

    fn peer_closed(&mut self) -> bool {
        false
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
