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
//! The library holds the wire format ([`header`], [`message`]), the server's per-connection
//! session ([`server`]), the client's upload ([`client`]), the echo pair ([`echo`]), the
//! upload directory ([`store`]) and who approves uploads ([`approve`]). The binaries only
//! parse arguments, bind sockets and talk to the terminal.
//!
//! # Example
//!
//! Decode the response a server sends to accept request 1:
//!
//! ```
//! use fup::{Body, Message, Verdict};
//!
//! let bytes = [0, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0];
//! let msg = Message::read_from(&bytes[..])?.expect("a message");
//! assert_eq!(msg.body, Body::Response { request_id: 1, verdict: Verdict::Accepted });
//! # Ok::<(), fup::Error>(())
//! ```
#![warn(missing_docs)]

pub mod approve;
pub mod cli;
pub mod client;
pub mod conn;
pub mod display;
pub mod echo;
pub mod error;
#[cfg(test)]
mod golden;
pub mod header;
pub mod message;
pub mod policy;
pub mod screen;
pub mod server;
pub mod store;
#[cfg(test)]
mod testing;

pub use error::{Error, Result};
pub use header::{HEADER_LEN, Header, MsgType};
pub use message::{Body, FileRequest, Message, Outcome, Verdict};

/// The TCP port FUP and the echo pair use unless told otherwise.
pub const DEFAULT_PORT: u16 = 5425;
