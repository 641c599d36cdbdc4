//! The four FUP messages as one enum of bodies, with exact-length framing over any stream.
//!
//! Lengths and types are derived from the [`Body`] when encoding, so a header can never
//! disagree with its body; every length read off the wire is checked against a named limit
//! before anything is allocated, and data bodies are left on the stream for the caller to move.

use std::io::{self, Read, Write};

use byteorder::{ByteOrder, LittleEndian as LE};

use super::header::{ByteField, HEADER_LEN, Header, MsgType};
use super::limits::{
    FILESIZE_LEN, Limit, MAX_DATA_LEN, MAX_REQUEST_BODY, MAX_SENT_NAME_LEN, VERDICT_BODY_LEN,
};
use crate::error::{Error, Result};

/// The msgid of a client's request, which every data message of the upload repeats
/// (PROTOCOL.md, steps 1 and 3).
pub const REQUEST_ID: u32 = 1;
/// The msgid of the server's response (PROTOCOL.md, step 2).
pub const RESPONSE_ID: u32 = 0;
/// The msgid of the server's result: the one after its response (PROTOCOL.md, step 5).
pub const RESULT_ID: u32 = 1;

/// An operator's (or a policy's) answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead and send the data.
    Accepted,
    /// The server refuses and closes the connection.
    Denied,
}

/// The answer byte of a response, as it is on the wire. Which byte means "accepted" is a
/// convention of each program, not of the protocol (PROTOCOL.md, "The other dialect"): `0`
/// for the Python programs, fup and the C# author's code, `1` for about half of the public C#
/// copies. Requests look the same from both, so a server is told which one its clients use
/// (`--accept-byte`), and a client can tell from whether the server closes at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResponseByte {
    /// `0`: accepted for the Python convention, denied for the other.
    Zero = 0,
    /// `1`: denied for the Python convention, accepted for the other.
    One = 1,
}

impl ResponseByte {
    /// The byte that means "accepted" unless told otherwise: the Python programs' `0`.
    pub const DEFAULT_ACCEPT: ResponseByte = ResponseByte::Zero;

    /// The byte that says `verdict` where `accept` means accepted.
    pub fn saying(verdict: Verdict, accept: ResponseByte) -> ResponseByte {
        match verdict {
            Verdict::Accepted => accept,
            Verdict::Denied => accept.other(),
        }
    }

    /// What this byte says where `accept` means accepted.
    pub fn meaning(self, accept: ResponseByte) -> Verdict {
        if self == accept {
            Verdict::Accepted
        } else {
            Verdict::Denied
        }
    }

    /// The other byte.
    pub fn other(self) -> ResponseByte {
        match self {
            ResponseByte::Zero => ResponseByte::One,
            ResponseByte::One => ResponseByte::Zero,
        }
    }
}

impl std::fmt::Display for ResponseByte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

impl TryFrom<u8> for ResponseByte {
    type Error = Error;

    fn try_from(value: u8) -> Result<ResponseByte> {
        match value {
            0 => Ok(ResponseByte::Zero),
            1 => Ok(ResponseByte::One),
            value => Err(Error::BadByte {
                field: ByteField::Response,
                value,
            }),
        }
    }
}

/// The server's result of an upload. On the wire **1 means success**, the opposite sense of
/// [`Verdict`], which is why neither is a `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// `0`: the file was not stored.
    Failure = 0,
    /// `1`: the file was stored whole.
    Success = 1,
}

impl TryFrom<u8> for Outcome {
    type Error = Error;

    fn try_from(value: u8) -> Result<Outcome> {
        match value {
            0 => Ok(Outcome::Failure),
            1 => Ok(Outcome::Success),
            value => Err(Error::BadByte {
                field: ByteField::Result,
                value,
            }),
        }
    }
}

/// The body of a request: the file's size and its name.
///
/// The name is kept as the raw bytes from the wire, so that a server can answer a request with
/// a bad name with a clean denial rather than dropping the connection; the server's name check
/// decides what is acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRequest {
    /// Size of the file in bytes.
    pub size: u64,
    /// The file's name, UTF-8 by contract but not yet checked.
    pub name: Vec<u8>,
}

impl FileRequest {
    /// A request for a file of `size` bytes called `name`.
    pub fn new(size: u64, name: &str) -> FileRequest {
        FileRequest {
            size,
            name: name.as_bytes().to_vec(),
        }
    }
}

/// What a message carries, one variant per message type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `0x01`: `filesize u64` followed by the name's bytes.
    Request(FileRequest),
    /// `0x02`: the request's msgid and the answer byte.
    Response {
        /// The msgid of the request this answers.
        request_id: u32,
        /// Accepted or denied, by a convention: see [`ResponseByte`].
        byte: ResponseByte,
    },
    /// `0x03`: `len` bytes of file data. The bytes are not part of the value: after
    /// [`Message::read_from`] they are the next `len` bytes on the stream, and
    /// [`Message::write_to`] writes only the header, for the caller to follow with the bytes.
    Data {
        /// Number of file bytes in this message.
        len: u32,
    },
    /// `0x04`: the request's msgid and the outcome.
    Result {
        /// The msgid the result refers to.
        request_id: u32,
        /// Success or failure.
        outcome: Outcome,
    },
}

impl Body {
    /// The message type that carries this body.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Body::Request(_) => MsgType::Request,
            Body::Response { .. } => MsgType::Response,
            Body::Data { .. } => MsgType::Data,
            Body::Result { .. } => MsgType::Result,
        }
    }

    /// The body's length on the wire.
    pub fn len(&self) -> u32 {
        match self {
            // A request is only ever built from a name of at most MAX_SENT_NAME_LEN bytes on the
            // decoding side; on the encoding side `write_to` checks before using this.
            Body::Request(req) => (FILESIZE_LEN + req.name.len()).min(u32::MAX as usize) as u32,
            Body::Response { .. } | Body::Result { .. } => VERDICT_BODY_LEN,
            Body::Data { len } => *len,
        }
    }

    /// Whether the body is empty (only an empty data message is).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The error for this body arriving where the exchange called for an `expected` one.
    pub fn unexpected(&self, expected: MsgType) -> Error {
        Error::Unexpected {
            expected,
            got: self.msg_type(),
        }
    }
}

/// One message: the header fields that vary, plus the body.
///
/// The header's `msgtype` and `bodylen` are not stored: they are derived from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header's `msgid`.
    pub id: u32,
    /// The header's `seq`.
    pub seq: u16,
    /// The header's `frag` flag.
    pub fragmented: bool,
    /// The header's `last` flag.
    pub last: bool,
    /// What the message carries.
    pub body: Body,
}

/// The header of data message `seq` of an upload with msgid `id`, carrying `len` bytes.
/// Both ways of sending file bytes (buffered and zero-copy) frame them with this.
pub fn data_header(id: u32, seq: u16, fragmented: bool, last: bool, len: u32) -> [u8; HEADER_LEN] {
    Message {
        id,
        seq,
        fragmented,
        last,
        body: Body::Data { len },
    }
    .header()
    .encode()
}

impl Message {
    /// A single, unfragmented message (`frag` 0, `last` 1, `seq` 0), as every control message
    /// of the original peer is.
    pub fn single(id: u32, body: Body) -> Message {
        Message {
            id,
            seq: 0,
            fragmented: false,
            last: true,
            body,
        }
    }

    /// The header this message is sent with.
    pub fn header(&self) -> Header {
        Header {
            msg_id: self.id,
            msg_type: self.body.msg_type(),
            body_len: self.body.len(),
            fragmented: self.fragmented,
            last: self.last,
            seq: self.seq,
        }
    }

    /// Reads one message. Returns `Ok(None)` if the stream ended cleanly before the first byte
    /// of a header.
    ///
    /// For a [`Body::Data`] message only the header is consumed: the next `len` bytes of the
    /// stream are the data, and the caller must move them before reading the next message.
    /// Pass `&mut stream` to keep using the stream afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the stream ends inside a message; [`Error::UnknownType`],
    /// [`Error::BadByte`], [`Error::BodyLength`] or [`Error::TooLarge`] for bytes that are
    /// not a valid message (checked before any body is read); [`Error::Io`] otherwise.
    ///
    /// # Example
    ///
    /// ```
    /// use fup::{Body, Message, Outcome};
    ///
    /// let bytes = [1, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1];
    /// let msg = Message::read_from(&bytes[..])?.expect("one message");
    /// assert_eq!(msg.body, Body::Result { request_id: 1, outcome: Outcome::Success });
    /// # Ok::<(), fup::Error>(())
    /// ```
    pub fn read_from<R: Read>(mut r: R) -> Result<Option<Message>> {
        let mut head = [0; HEADER_LEN];
        if !read_exact_or_eof(&mut r, &mut head)? {
            return Ok(None);
        }
        let header = Header::decode(&head)?;
        let body = match header.msg_type {
            MsgType::Request => Body::Request(read_request_body(&mut r, header.body_len)?),
            MsgType::Response => {
                let (request_id, byte) = read_verdict_body(&mut r, &header)?;
                Body::Response {
                    request_id,
                    byte: ResponseByte::try_from(byte)?,
                }
            }
            MsgType::Result => {
                let (request_id, byte) = read_verdict_body(&mut r, &header)?;
                Body::Result {
                    request_id,
                    outcome: Outcome::try_from(byte)?,
                }
            }
            MsgType::Data => Body::Data {
                len: check_data_len(header.body_len)?,
            },
        };
        Ok(Some(Message {
            id: header.msg_id,
            seq: header.seq,
            fragmented: header.fragmented,
            last: header.last,
            body,
        }))
    }

    /// Writes the message with a single `write_all`, so a small message never goes out as two
    /// segments. For [`Body::Data`] only the header is written; the caller follows it with
    /// exactly `len` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a request name over [`MAX_SENT_NAME_LEN`] or data over
    /// [`MAX_DATA_LEN`] (nothing is written then), and [`Error::Io`] if writing fails.
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<()> {
        let mut buf = [0; HEADER_LEN + MAX_REQUEST_BODY as usize];
        let len = self.encode_into(&mut buf)?;
        w.write_all(&buf[..len])?;
        Ok(())
    }

    /// Encodes the header and, except for data, the body into `buf`; returns the length used.
    fn encode_into(&self, buf: &mut [u8; HEADER_LEN + MAX_REQUEST_BODY as usize]) -> Result<usize> {
        let body = &mut buf[HEADER_LEN..];
        let body_len = match &self.body {
            Body::Request(req) => {
                if req.name.len() > MAX_SENT_NAME_LEN {
                    return Err(Error::TooLarge {
                        what: Limit::FileName,
                        got: req.name.len() as u64,
                        limit: MAX_SENT_NAME_LEN as u64,
                    });
                }
                LE::write_u64(&mut body[..FILESIZE_LEN], req.size);
                body[FILESIZE_LEN..FILESIZE_LEN + req.name.len()].copy_from_slice(&req.name);
                FILESIZE_LEN + req.name.len()
            }
            Body::Response { request_id, byte } => {
                encode_verdict_body(body, *request_id, *byte as u8)
            }
            Body::Result {
                request_id,
                outcome,
            } => encode_verdict_body(body, *request_id, *outcome as u8),
            Body::Data { len } => {
                check_data_len(*len)?;
                0
            }
        };
        buf[..HEADER_LEN].copy_from_slice(&self.header().encode());
        Ok(HEADER_LEN + body_len)
    }
}

/// A request body: `filesize u64` + name, at most [`MAX_REQUEST_BODY`] bytes, checked before
/// the body is allocated.
fn read_request_body<R: Read>(r: &mut R, len: u32) -> Result<FileRequest> {
    if len > MAX_REQUEST_BODY {
        return Err(Error::TooLarge {
            what: Limit::RequestBody,
            got: len.into(),
            limit: MAX_REQUEST_BODY.into(),
        });
    }
    if (len as usize) < FILESIZE_LEN {
        return Err(Error::BodyLength {
            msg_type: MsgType::Request,
            expected: FILESIZE_LEN as u32,
            got: len,
        });
    }
    let mut size = [0; FILESIZE_LEN];
    read_body(r, &mut size)?;
    // Bounded by MAX_REQUEST_BODY just above; the name is read straight into its own buffer.
    let mut name = vec![0; len as usize - FILESIZE_LEN];
    read_body(r, &mut name)?;
    Ok(FileRequest {
        size: LE::read_u64(&size),
        name,
    })
}

/// A response or result body: exactly `msgid u32` + one byte (h2's Ping rule: no other length).
fn read_verdict_body<R: Read>(r: &mut R, header: &Header) -> Result<(u32, u8)> {
    if header.body_len != VERDICT_BODY_LEN {
        return Err(Error::BodyLength {
            msg_type: header.msg_type,
            expected: VERDICT_BODY_LEN,
            got: header.body_len,
        });
    }
    let mut buf = [0; VERDICT_BODY_LEN as usize];
    read_body(r, &mut buf)?;
    Ok((LE::read_u32(&buf[..4]), buf[4]))
}

/// A response or result body: `msgid u32` + one byte.
fn encode_verdict_body(body: &mut [u8], request_id: u32, byte: u8) -> usize {
    LE::write_u32(&mut body[..4], request_id);
    body[4] = byte;
    VERDICT_BODY_LEN as usize
}

/// A data body may claim at most [`MAX_DATA_LEN`] bytes.
fn check_data_len(len: u32) -> Result<u32> {
    if len > MAX_DATA_LEN {
        return Err(Error::TooLarge {
            what: Limit::DataMessage,
            got: len.into(),
            limit: MAX_DATA_LEN.into(),
        });
    }
    Ok(len)
}

/// Fills `buf` from `r`. Returns `Ok(false)` if the stream was already at its end, and
/// [`Error::Truncated`] if it ended part-way.
fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Fills `buf` with a body that must be there: any end of stream is a truncation.
fn read_body<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<()> {
    if buf.is_empty() || read_exact_or_eof(r, buf)? {
        Ok(())
    } else {
        Err(Error::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::golden::*;
    use proptest::prelude::*;

    fn encode(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        msg.write_to(&mut out).unwrap();
        out
    }

    fn decode(bytes: &[u8]) -> Result<Option<Message>> {
        Message::read_from(bytes)
    }

    #[test]
    fn golden_request() {
        let msg = Message::single(1, Body::Request(FileRequest::new(3, "hello.txt")));
        assert_eq!(encode(&msg), GOLDEN_REQUEST);
        assert_eq!(decode(GOLDEN_REQUEST).unwrap(), Some(msg));
    }

    #[test]
    fn golden_response() {
        let msg = Message::single(
            0,
            Body::Response {
                request_id: 1,
                byte: ResponseByte::Zero,
            },
        );
        assert_eq!(encode(&msg), GOLDEN_RESPONSE);
        assert_eq!(decode(GOLDEN_RESPONSE).unwrap(), Some(msg));
    }

    #[test]
    fn golden_denied_response() {
        let msg = Message::single(
            0,
            Body::Response {
                request_id: 1,
                byte: ResponseByte::One,
            },
        );
        let bytes = encode(&msg);
        assert_eq!(&bytes[16..], &[0x01, 0x00, 0x00, 0x00, 0x01]);
        assert_eq!(decode(&bytes).unwrap(), Some(msg));
    }

    /// Both conventions, both ways (PROTOCOL.md, "The other dialect").
    #[test]
    fn response_bytes_mean_what_the_convention_says() {
        use ResponseByte::{One, Zero};
        use Verdict::{Accepted, Denied};
        #[rustfmt::skip]
        let cases = [
            // (accept byte, verdict, byte on the wire)
            (Zero, Accepted, Zero), (Zero, Denied, One),
            (One, Accepted, One), (One, Denied, Zero),
        ];
        for (accept, verdict, byte) in cases {
            assert_eq!(ResponseByte::saying(verdict, accept), byte);
            assert_eq!(byte.meaning(accept), verdict);
        }
        assert_eq!(ResponseByte::DEFAULT_ACCEPT, Zero);
    }

    #[test]
    fn golden_data() {
        let msg = Message::single(1, Body::Data { len: 3 });
        let mut bytes = encode(&msg);
        bytes.extend_from_slice(b"hi\n");
        assert_eq!(bytes, GOLDEN_DATA);
        let mut stream = GOLDEN_DATA;
        assert_eq!(Message::read_from(&mut stream).unwrap(), Some(msg));
        // The data is left on the stream for the caller.
        assert_eq!(stream, b"hi\n");
    }

    #[test]
    fn golden_result() {
        let msg = Message::single(
            1,
            Body::Result {
                request_id: 1,
                outcome: Outcome::Success,
            },
        );
        assert_eq!(encode(&msg), GOLDEN_RESULT);
        assert_eq!(decode(GOLDEN_RESULT).unwrap(), Some(msg));
    }

    #[test]
    fn every_prefix_is_eof_or_truncated() {
        for golden in [GOLDEN_REQUEST, GOLDEN_RESPONSE, GOLDEN_RESULT] {
            assert!(matches!(decode(&golden[..0]), Ok(None)));
            for cut in 1..golden.len() {
                assert!(
                    matches!(decode(&golden[..cut]), Err(Error::Truncated)),
                    "prefix of {cut} bytes"
                );
            }
        }
        // A data header alone is complete: its bytes are the caller's to read.
        for cut in 1..HEADER_LEN {
            assert!(matches!(decode(&GOLDEN_DATA[..cut]), Err(Error::Truncated)));
        }
    }

    #[test]
    fn consecutive_messages_then_clean_eof() {
        let mut bytes = GOLDEN_REQUEST.to_vec();
        bytes.extend_from_slice(GOLDEN_RESULT);
        let mut stream = &bytes[..];
        assert!(matches!(
            &Message::read_from(&mut stream).unwrap().unwrap().body,
            Body::Request(_)
        ));
        assert!(matches!(
            Message::read_from(&mut stream).unwrap().unwrap().body,
            Body::Result { .. }
        ));
        assert!(Message::read_from(&mut stream).unwrap().is_none());
    }

    fn with_body_len(golden: &[u8], len: u32) -> Vec<u8> {
        let mut bytes = golden.to_vec();
        bytes[8..12].copy_from_slice(&len.to_le_bytes());
        bytes
    }

    #[test]
    fn fixed_bodies_must_be_exactly_five_bytes() {
        for golden in [GOLDEN_RESPONSE, GOLDEN_RESULT] {
            for len in [0, 4, 6, u32::MAX] {
                let err = decode(&with_body_len(golden, len)).unwrap_err();
                assert!(
                    matches!(err, Error::BodyLength { expected: 5, got, .. } if got == len),
                    "{err:?}"
                );
            }
        }
    }

    #[test]
    fn request_body_limits_are_checked_before_reading() {
        // Claims far more than is sent: refused from the header alone, no allocation.
        let err = decode(&with_body_len(GOLDEN_REQUEST, u32::MAX)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: Limit::RequestBody,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = decode(&with_body_len(GOLDEN_REQUEST, MAX_REQUEST_BODY + 1)).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
        let err = decode(&with_body_len(GOLDEN_REQUEST, 7)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BodyLength {
                    expected: 8,
                    got: 7,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn data_length_limit() {
        let err = decode(&with_body_len(GOLDEN_DATA, MAX_DATA_LEN + 1)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: Limit::DataMessage,
                    ..
                }
            ),
            "{err:?}"
        );
        let ok = decode(&with_body_len(GOLDEN_DATA, MAX_DATA_LEN))
            .unwrap()
            .unwrap();
        assert_eq!(ok.body, Body::Data { len: MAX_DATA_LEN });
    }

    #[test]
    fn verdict_and_outcome_bytes_are_checked() {
        let mut bytes = GOLDEN_RESPONSE.to_vec();
        bytes[20] = 2;
        assert!(matches!(
            decode(&bytes),
            Err(Error::BadByte {
                field: ByteField::Response,
                value: 2
            })
        ));
        let mut bytes = GOLDEN_RESULT.to_vec();
        bytes[20] = 0xff;
        assert!(matches!(
            decode(&bytes),
            Err(Error::BadByte {
                field: ByteField::Result,
                value: 0xff
            })
        ));
    }

    #[test]
    fn names_that_are_not_utf8_still_decode() {
        // The server's name check, not the decoder, refuses such names: with a denial.
        let mut bytes = GOLDEN_REQUEST.to_vec();
        bytes[24] = 0xff;
        let msg = decode(&bytes).unwrap().unwrap();
        let Body::Request(req) = msg.body else {
            panic!("not a request")
        };
        assert_eq!(req.name[0], 0xff);
    }

    #[test]
    fn data_header_frames_the_golden_data() {
        assert_eq!(
            data_header(REQUEST_ID, 0, false, true, 3),
            GOLDEN_DATA[..HEADER_LEN]
        );
    }

    #[test]
    fn unexpected_names_both_kinds() {
        let err = Body::Data { len: 0 }.unexpected(MsgType::Request);
        assert_eq!(err.to_string(), "expected a request message, got data");
    }

    #[test]
    fn oversized_values_are_not_encoded() {
        let long = "x".repeat(MAX_SENT_NAME_LEN + 1);
        let msg = Message::single(1, Body::Request(FileRequest::new(0, &long)));
        assert!(matches!(
            msg.write_to(Vec::new()),
            Err(Error::TooLarge { .. })
        ));
        let msg = Message::single(
            1,
            Body::Data {
                len: MAX_DATA_LEN + 1,
            },
        );
        assert!(matches!(
            msg.write_to(Vec::new()),
            Err(Error::TooLarge { .. })
        ));
    }

    fn any_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_SENT_NAME_LEN)
            )
                .prop_map(|(size, name)| Body::Request(FileRequest { size, name })),
            (any::<u32>(), any::<bool>()).prop_map(|(request_id, one)| Body::Response {
                request_id,
                byte: if one {
                    ResponseByte::One
                } else {
                    ResponseByte::Zero
                },
            }),
            (0..=MAX_DATA_LEN).prop_map(|len| Body::Data { len }),
            (any::<u32>(), any::<bool>()).prop_map(|(request_id, yes)| Body::Result {
                request_id,
                outcome: if yes {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(id: u32, seq: u16, fragmented: bool, last: bool, body in any_body()) {
            let msg = Message { id, seq, fragmented, last, body };
            let bytes = encode(&msg);
            let expected_len = match msg.body {
                Body::Data { .. } => HEADER_LEN,
                _ => HEADER_LEN + msg.body.len() as usize,
            };
            prop_assert_eq!(bytes.len(), expected_len);
            prop_assert_eq!(Header::decode(bytes[..16].try_into().unwrap()).unwrap(), msg.header());
            let mut stream = &bytes[..];
            prop_assert_eq!(Message::read_from(&mut stream).unwrap(), Some(msg));
            prop_assert!(stream.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
