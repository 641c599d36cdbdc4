//! Test fixtures shared by the unit tests: PROTOCOL.md's captured bytes and an in-memory duplex.

use std::io::{self, Cursor, Read, Write};

/// PROTOCOL.md's capture of uploading `hello.txt` (`hi\n`), one message per constant.
pub const GOLDEN_REQUEST: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1
    0x01, 0x00, 0x00, 0x00, // msgtype = request
    0x11, 0x00, 0x00, 0x00, // bodylen = 17
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x03, 0, 0, 0, 0, 0, 0, 0, // filesize = 3
    b'h', b'e', b'l', b'l', b'o', b'.', b't', b'x', b't', // name
];
pub const GOLDEN_RESPONSE: &[u8] = &[
    0x00, 0x00, 0x00, 0x00, // msgid = 0
    0x02, 0x00, 0x00, 0x00, // msgtype = response
    0x05, 0x00, 0x00, 0x00, // bodylen = 5
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x01, 0x00, 0x00, 0x00, // request msgid = 1
    0x00, // accepted
];
pub const GOLDEN_DATA: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1 (the request's)
    0x03, 0x00, 0x00, 0x00, // msgtype = data
    0x03, 0x00, 0x00, 0x00, // bodylen = 3
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    b'h', b'i', b'\n',
];
pub const GOLDEN_RESULT: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1
    0x04, 0x00, 0x00, 0x00, // msgtype = result
    0x05, 0x00, 0x00, 0x00, // bodylen = 5
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x01, 0x00, 0x00, 0x00, // request msgid = 1
    0x01, // success
];

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
