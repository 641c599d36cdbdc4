//! The pure wire format: headers, the four messages, their limits and msgid conventions.
//! Nothing here touches a socket or a file; everything is bytes in, values out (and back).
//!
//! A new message kind goes here: a [`MsgType`], a [`Body`] variant, its decoding in
//! [`Message::read_from`] and its encoding in [`Message::write_to`], with golden bytes.

#[cfg(any(test, feature = "testing"))]
pub mod golden;
mod header;
mod limits;
mod message;

pub use header::{ByteField, HEADER_LEN, Header, MsgType};
pub use limits::{
    FILESIZE_LEN, Limit, MAX_DATA_LEN, MAX_REQUEST_BODY, MAX_SENT_NAME_LEN, VERDICT_BODY_LEN,
};
pub use message::{
    Body, FileRequest, Message, Outcome, REQUEST_ID, RESPONSE_ID, RESULT_ID, ResponseByte, Verdict,
    data_header,
};
