//! The probe that offers secure mode on the plain protocol's port, as bytes, and the version
//! of what runs inside TLS that the two ends agree on.
//!
//! A client that may speak TLS opens with [`PROBE`]: a data header (type 3) with an empty
//! body and the msgid `FUPS`. Every plain server reads it as a data message where a request
//! belongs and closes (the Python server with no prompt, no file and no traceback; fup 1.0
//! with one log line), so the client learns "plain only" from the close. A fup server that
//! speaks secure mode answers with the same 16 bytes but for `seq`, which then says the
//! version both speak (the lower of the two: [`answer`]), and the TLS 1.3 handshake starts on
//! the same connection. Plain clients never send it and are served as before.
//!
//! `seq` carries the version of what runs inside TLS: 1 is the FUP exchange itself
//! (request, response, data, result), with 0 meaning accepted; 2 adds batches, told apart
//! from a request by the first message's type; 3 checks every file of a batch end to end and
//! resumes cut batches; 4 types every file's result (a reason code and a short text), refuses
//! files one by one by policy inside an accepted batch, carries modification times, and lets
//! hidden names inside folders and two top items of one name through; 5 adds pairing, a
//! first contact proven by a short code ([`pair`](super::pair)), and is 4 otherwise.

use crate::wire::{Body, HEADER_LEN, Message};

/// The msgid of the probe and its answer: `FUPS` on the wire.
pub const PROBE_ID: u32 = u32::from_le_bytes(*b"FUPS");

/// The version of secure mode this build speaks at best, carried in `seq`.
pub const VERSION: u16 = 5;
/// The oldest version whose batches are this build's (4): older peers are told to update.
pub const BATCHES: u16 = 4;
/// The first version with pairing codes.
pub const PAIRING: u16 = 5;
/// The oldest version this build still speaks (a peer from before the current one).
pub const OLDEST: u16 = 3;

/// The probe offering `version`: an empty last data message named `FUPS`, `seq` the version.
pub const fn probe(version: u16) -> [u8; HEADER_LEN] {
    let v = version.to_le_bytes();
    [
        b'F', b'U', b'P', b'S', // msgid "FUPS"
        3, 0, 0, 0, // msgtype: data
        0, 0, 0, 0, // bodylen: empty
        0, // frag
        1, // last
        v[0], v[1], // seq: the version
    ]
}

/// The client's probe: "I can speak secure mode, up to version 4".
pub const PROBE: [u8; HEADER_LEN] = probe(VERSION);

/// Whether `msg`, the first message of a connection, is the probe (of any version).
pub fn is_probe(msg: &Message) -> bool {
    msg.id == PROBE_ID && msg.body == Body::Data { len: 0 } && msg.last && !msg.fragmented
}

/// A server's answer to a probe offering `offered` (its `seq`): the probe's bytes with the
/// version both speak, the lower of the two (never below [`OLDEST`]), and that version.
pub fn answer(offered: u16) -> ([u8; HEADER_LEN], u16) {
    let version = offered.clamp(OLDEST, VERSION);
    (probe(version), version)
}

/// The version a server's answer agrees on, if `bytes` are an answer to [`PROBE`]: the
/// probe's bytes with a version from [`OLDEST`] to [`VERSION`].
pub fn answered(bytes: &[u8; HEADER_LEN]) -> Option<u16> {
    let version = u16::from_le_bytes([bytes[14], bytes[15]]);
    ((OLDEST..=VERSION).contains(&version) && bytes[..14] == PROBE[..14]).then_some(version)
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
            [0x46, 0x55, 0x50, 0x53, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0]
        );
        // A data message of an upload is not a probe, even an empty last one.
        let data = Message::read_from(&crate::wire::data_header(1, 0, false, true, 0)[..])
            .unwrap()
            .unwrap();
        assert!(!is_probe(&data));
    }

    #[test]
    fn both_ends_speak_the_lower_version() {
        // A client of version 3 (fup before typed results) gets version 3's bytes back,
        // exactly as the server of version 3 answered it.
        let (bytes, version) = answer(3);
        assert_eq!(
            bytes,
            [0x46, 0x55, 0x50, 0x53, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0]
        );
        assert_eq!(version, 3);
        // A client of 2.1 (version 4) is answered in version 4: batches as it knows them.
        assert_eq!(answer(4), (probe(4), 4));
        assert_eq!(answer(5), (PROBE, 5));
        // A later client is answered with what this build speaks.
        assert_eq!(answer(9), (PROBE, 5));
        assert_eq!(answered(&probe(3)), Some(3));
        assert_eq!(answered(&probe(4)), Some(4));
        assert_eq!(answered(&PROBE), Some(5));
        assert_eq!(answered(&probe(2)), None, "too old to speak");
        assert_eq!(answered(&probe(6)), None, "not what was offered");
        let mut other = PROBE;
        other[4] = 1;
        assert_eq!(answered(&other), None);
    }
}
