//! The fixed 16-byte message header and the four message types, as pure bytes with no I/O.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::error::{Error, Result};

/// Which one-byte field held a value the protocol does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteField {
    /// The header's `frag` flag (0 or 1).
    Frag,
    /// The header's `last` flag (0 or 1).
    Last,
    /// A response's verdict byte (0 or 1).
    Response,
    /// A result's outcome byte (0 or 1).
    Result,
}

impl fmt::Display for ByteField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteField::Frag => "frag",
            ByteField::Last => "last",
            ByteField::Response => "response",
            ByteField::Result => "result",
        })
    }
}

/// Length of the encoded header in bytes.
pub const HEADER_LEN: usize = 16;

/// The kind of a message, from the header's `msgtype` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    /// `0x01` REQ_FILE_SEND: a client asks to upload a file.
    Request = 1,
    /// `0x02` REP_FILE_SEND: the server accepts or denies a request.
    Response = 2,
    /// `0x03` FILE_SEND_DATA: a run of the file's bytes.
    Data = 3,
    /// `0x04` FILE_SEND_RES: the server's verdict on the upload.
    Result = 4,
}

impl TryFrom<u32> for MsgType {
    type Error = Error;

    fn try_from(value: u32) -> Result<MsgType> {
        match value {
            1 => Ok(MsgType::Request),
            2 => Ok(MsgType::Response),
            3 => Ok(MsgType::Data),
            4 => Ok(MsgType::Result),
            other => Err(Error::UnknownType(other)),
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MsgType::Request => "request",
            MsgType::Response => "response",
            MsgType::Data => "data",
            MsgType::Result => "result",
        })
    }
}

/// The fixed header in front of every message (little-endian, no padding):
///
/// ```text
/// offset 0       4         8         12     13     14    16
///        | msgid | msgtype | bodylen | frag | last | seq |
///          u32     u32       u32       u8     u8     u16
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message id; see PROTOCOL.md for which id each message carries.
    pub msg_id: u32,
    /// The kind of message.
    pub msg_type: MsgType,
    /// Length of the body that follows the header.
    pub body_len: u32,
    /// Whether the file is split over several data messages.
    pub fragmented: bool,
    /// Whether this is the last message of its run.
    pub last: bool,
    /// Sequence number of a data message, wrapping modulo 2^16.
    pub seq: u16,
}

impl Header {
    /// Decodes a header from its 16 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownType`] for a `msgtype` outside 1..=4, and [`Error::BadByte`] for a
    /// `frag` or `last` byte other than 0 or 1. The Python peer only ever sends 0 or 1 there,
    /// and anything else would leave it looping (PROTOCOL.md), so we refuse it outright.
    ///
    /// # Example
    ///
    /// ```
    /// use fup::{Header, MsgType};
    ///
    /// let bytes = [1, 0, 0, 0, 1, 0, 0, 0, 17, 0, 0, 0, 0, 1, 0, 0];
    /// let header = Header::decode(&bytes)?;
    /// assert_eq!(header.msg_type, MsgType::Request);
    /// assert_eq!(header.body_len, 17);
    /// assert_eq!(header.encode(), bytes);
    /// # Ok::<(), fup::Error>(())
    /// ```
    pub fn decode(buf: &[u8; HEADER_LEN]) -> Result<Header> {
        Ok(Header {
            msg_id: LE::read_u32(&buf[0..4]),
            msg_type: MsgType::try_from(LE::read_u32(&buf[4..8]))?,
            body_len: LE::read_u32(&buf[8..12]),
            fragmented: flag(ByteField::Frag, buf[12])?,
            last: flag(ByteField::Last, buf[13])?,
            seq: LE::read_u16(&buf[14..16]),
        })
    }

    /// Encodes the header into its 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0; HEADER_LEN];
        LE::write_u32(&mut buf[0..4], self.msg_id);
        LE::write_u32(&mut buf[4..8], self.msg_type as u32);
        LE::write_u32(&mut buf[8..12], self.body_len);
        buf[12] = u8::from(self.fragmented);
        buf[13] = u8::from(self.last);
        LE::write_u16(&mut buf[14..16], self.seq);
        buf
    }
}

fn flag(field: ByteField, value: u8) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(Error::BadByte { field, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL.md, first captured message: the request for `hello.txt`.
    const REQUEST_HEADER: [u8; 16] = [
        0x01, 0x00, 0x00, 0x00, // msgid = 1
        0x01, 0x00, 0x00, 0x00, // msgtype = 1 (request)
        0x11, 0x00, 0x00, 0x00, // bodylen = 17
        0x00, // frag = 0
        0x01, // last = 1
        0x00, 0x00, // seq = 0
    ];

    #[test]
    fn golden_request_header() {
        let header = Header::decode(&REQUEST_HEADER).unwrap();
        let expected = Header {
            msg_id: 1,
            msg_type: MsgType::Request,
            body_len: 17,
            fragmented: false,
            last: true,
            seq: 0,
        };
        assert_eq!(header, expected);
        assert_eq!(expected.encode(), REQUEST_HEADER);
    }

    #[test]
    fn fields_are_little_endian() {
        let header = Header {
            msg_id: 0x0403_0201,
            msg_type: MsgType::Data,
            body_len: 0x0c0b_0a09,
            fragmented: true,
            last: false,
            seq: 0x0f0e,
        };
        let bytes = header.encode();
        assert_eq!(bytes, [1, 2, 3, 4, 3, 0, 0, 0, 9, 10, 11, 12, 1, 0, 14, 15]);
        assert_eq!(Header::decode(&bytes).unwrap(), header);
    }

    #[test]
    fn unknown_type_is_rejected() {
        for bad in [0u32, 5, 0x100, u32::MAX] {
            let mut bytes = REQUEST_HEADER;
            bytes[4..8].copy_from_slice(&bad.to_le_bytes());
            assert!(matches!(Header::decode(&bytes), Err(Error::UnknownType(t)) if t == bad));
        }
    }

    #[test]
    fn flag_bytes_other_than_0_or_1_are_rejected() {
        for (index, field) in [(12, ByteField::Frag), (13, ByteField::Last)] {
            for value in [2u8, 0x80, 0xff] {
                let mut bytes = REQUEST_HEADER;
                bytes[index] = value;
                match Header::decode(&bytes) {
                    Err(Error::BadByte { field: f, value: v }) => {
                        assert_eq!((f, v), (field, value));
                    }
                    other => panic!("expected BadByte, got {other:?}"),
                }
            }
        }
    }
}
