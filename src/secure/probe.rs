//! The probe that offers secure mode on the plain protocol's port, as bytes.
//!
//! A client that may speak TLS opens with [`PROBE`]: a data header (type 3) with an empty
//! body and the msgid `FUPS`. Every plain server reads it as a data message where a request
//! belongs and closes (the Python server with no prompt, no file and no traceback; fup 1.0
//! with one log line), so the client learns "plain only" from the close. A fup server that
//! speaks secure mode answers with [`ANSWER`], the same 16 bytes, and the TLS 1.3 handshake
//! starts on the same connection. Plain clients never send it and are served as before.
//!
//! `seq` carries the version of what runs inside TLS: 1 is the FUP exchange itself
//! (request, response, data, result), with 0 meaning accepted; 2 adds batches, told
//! apart from a request by the first message's type; 3 checks every file of a batch end to
//! end and resumes cut batches.

use crate::wire::{Body, HEADER_LEN, Message};

/// The msgid of the probe and its answer: `FUPS` on the wire.
pub const PROBE_ID: u32 = u32::from_le_bytes(*b"FUPS");

/// The version of secure mode this build speaks, carried in `seq`.
pub const VERSION: u16 = 3;

/// The client's probe: "I can speak secure mode, version 3".
pub const PROBE: [u8; HEADER_LEN] = [
    b'F', b'U', b'P', b'S', // msgid "FUPS"
    3, 0, 0, 0, // msgtype: data
    0, 0, 0, 0, // bodylen: empty
    0, // frag
    1, // last
    3, 0, // seq: version 3
];

/// A secure server's answer: the probe's own bytes. TLS follows at once, client first.
pub const ANSWER: [u8; HEADER_LEN] = PROBE;

/// Whether `msg`, the first message of a connection, is the probe (of any version).
pub fn is_probe(msg: &Message) -> bool {
    msg.id == PROBE_ID && msg.body == Body::Data { len: 0 } && msg.last && !msg.fragmented
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_an_empty_last_data_message_named_fups() {
        let msg = Message::read_from(&PROBE[..]).unwrap().unwrap();
        assert!(is_probe(&msg));
        assert_eq!(msg.seq, VERSION);
        assert_eq!(msg.body, Body::Data { len: 0 });
        assert_eq!(msg.header().encode(), PROBE);
        // What a plain server's reader makes of it: bodylen 0, so nothing more is awaited.
        assert_eq!(
            PROBE,
            [0x46, 0x55, 0x50, 0x53, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0]
        );
        // A data message of an upload is not a probe, even an empty last one.
        let data = Message::read_from(&crate::wire::data_header(1, 0, false, true, 0)[..])
            .unwrap()
            .unwrap();
        assert!(!is_probe(&data));
    }
}
