//! Every length the protocol allows, named, so each is checked before anything is allocated.

use std::fmt;

/// Longest name a request may carry, in bytes. Python clients send a base name, but the C#
/// clients send the path as typed (`C:\Users\…\f.bin`), which can be longer than one path
/// component may be; this is Linux's `PATH_MAX`. What is stored is a single component of at
/// most 255 bytes (`server::names::MAX_NAME_LEN`).
pub const MAX_SENT_NAME_LEN: usize = 4096;
/// Length of the `filesize` field that starts a request body.
pub const FILESIZE_LEN: usize = 8;
/// Longest request body: `filesize` plus the longest name.
pub const MAX_REQUEST_BODY: u32 = (FILESIZE_LEN + MAX_SENT_NAME_LEN) as u32;
/// Exact length of a response or result body: `msgid u32` + one byte.
pub const VERDICT_BODY_LEN: u32 = 5;
/// Largest data body accepted or sent. Data is streamed, so this bounds what one message may
/// claim, not what is ever held in memory.
pub const MAX_DATA_LEN: u32 = 16 * 1024 * 1024;

/// What a length that broke its limit was the length of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A request body over [`MAX_REQUEST_BODY`].
    RequestBody,
    /// A data message over [`MAX_DATA_LEN`].
    DataMessage,
    /// A file name over [`MAX_SENT_NAME_LEN`], refused before it is encoded.
    FileName,
    /// Data messages adding up to more than the request announced.
    AnnouncedSize,
    /// A batch's manifest over its limit (secure mode only).
    Manifest,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::RequestBody => "request body",
            Limit::DataMessage => "data message",
            Limit::FileName => "file name",
            Limit::AnnouncedSize => "data beyond the announced size",
            Limit::Manifest => "batch manifest",
        })
    }
}
