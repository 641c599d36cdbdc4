//! PROTOCOL.md's captured bytes of one upload, pinned as golden vectors for the tests.

/// PROTOCOL.md's capture of uploading `hello.txt` (`hi\n`), one message per constant: the
/// client's request.
pub const GOLDEN_REQUEST: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1
    0x01, 0x00, 0x00, 0x00, // msgtype = request
    0x11, 0x00, 0x00, 0x00, // bodylen = 17
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x03, 0, 0, 0, 0, 0, 0, 0, // filesize = 3
    b'h', b'e', b'l', b'l', b'o', b'.', b't', b'x', b't', // name
];
/// The server's answer: request 1 accepted.
pub const GOLDEN_RESPONSE: &[u8] = &[
    0x00, 0x00, 0x00, 0x00, // msgid = 0
    0x02, 0x00, 0x00, 0x00, // msgtype = response
    0x05, 0x00, 0x00, 0x00, // bodylen = 5
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x01, 0x00, 0x00, 0x00, // request msgid = 1
    0x00, // accepted
];
/// The one data message, `hi\n`.
pub const GOLDEN_DATA: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1 (the request's)
    0x03, 0x00, 0x00, 0x00, // msgtype = data
    0x03, 0x00, 0x00, 0x00, // bodylen = 3
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    b'h', b'i', b'\n',
];
/// The server's result: request 1 stored.
pub const GOLDEN_RESULT: &[u8] = &[
    0x01, 0x00, 0x00, 0x00, // msgid = 1
    0x04, 0x00, 0x00, 0x00, // msgtype = result
    0x05, 0x00, 0x00, 0x00, // bodylen = 5
    0x00, 0x01, 0x00, 0x00, // frag 0, last 1, seq 0
    0x01, 0x00, 0x00, 0x00, // request msgid = 1
    0x01, // success
];
