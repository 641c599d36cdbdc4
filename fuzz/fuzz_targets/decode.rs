//! Fuzzes message decoding: any bytes either decode to messages that re-encode to the same
//! header bytes, or give an error; never a panic, never an allocation past the limits.
#![no_main]

use fup::{Body, HEADER_LEN, Header, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    // Bounded: every successful read consumes at least a header.
    while let Ok(Some(msg)) = Message::read_from(&mut stream) {
        let mut encoded = Vec::new();
        msg.write_to(&mut encoded).expect("a decoded message re-encodes");
        let header = Header::decode(encoded[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header, msg.header());
        assert_eq!(Message::read_from(&encoded[..]).unwrap().unwrap(), msg);
        if let Body::Data { len } = msg.body {
            // Skip the data bytes, as a receiver would.
            let skip = (len as usize).min(stream.len());
            stream = &stream[skip..];
        }
    }
});
