//! **fup**: the File Upload Protocol, wire-compatible with the original Python programs.
//!
//! A client sends one upload per TCP connection. Every message is a 16-byte little-endian
//! [`Header`] followed by `bodylen` bytes of body:
//!
//! ```text
//! client                                   server
//!   | request   (0x01: filesize u64 + name)  |
//!   | ------------------------------------>  |  operator accepts or denies
//!   | response  (0x02: msgid + 0 yes / 1 no) |
//!   | <------------------------------------  |
//!   | data      (0x03: file bytes) × n       |
//!   | ------------------------------------>  |
//!   | result    (0x04: msgid + 1 ok / 0 fail)|
//!   | <------------------------------------  |
//! ```
//!
//! The library is built in layers, each using only those below it:
//!
//! ```text
//! src/bin/*      the four programs: arguments, wiring, presentation
//! term           the operator's terminal: prompt, screen, value parsers
//! server client  the two sides' logic (echo beside them)
//! batch secure   files and trees as one batch; secure mode (TLS 1.3, identities)
//! net            sockets and descriptors: Conn, deadlines, moving bytes, accept loop, sys
//! wire           the pure format: header, messages, limits, msgids
//! error text     the error type; escaping and human sizes
//! ```
//!
//! # Example
//!
//! Decode the response a Python-convention server sends to accept request 1:
//!
//! ```
//! use fup::{Body, Message, ResponseByte, Verdict};
//!
//! let bytes = [0, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0];
//! let msg = Message::read_from(&bytes[..])?.expect("a message");
//! let Body::Response { request_id: 1, byte } = msg.body else { panic!("not a response") };
//! assert_eq!(byte.meaning(ResponseByte::DEFAULT_ACCEPT), Verdict::Accepted);
//! # Ok::<(), fup::Error>(())
//! ```
#![warn(missing_docs)]
// Every `unsafe` line lives in `sys`, whose platform modules allow it for themselves alone.
#![deny(unsafe_code)]

pub mod batch;
pub mod client;
pub mod echo;
pub mod error;
pub mod net;
pub mod secure;
pub mod server;
pub mod sys;
pub mod term;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod wire;

pub use error::{Error, Result};
pub use wire::{
    Body, FileRequest, HEADER_LEN, Header, Message, MsgType, Outcome, ResponseByte, Verdict,
};

/// The TCP port FUP and the echo pair use unless told otherwise.
pub const DEFAULT_PORT: u16 = 5425;
