//! The library's error type: every way a peer, the disk or the network can fail an exchange.

use std::io;

use crate::wire::{ByteField, Limit, MsgType};

/// Everything that can go wrong while speaking FUP.
///
/// Messages are lowercase and never repeat their cause, so callers can print the whole chain
/// with `{:#}` (anyhow) without saying anything twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying stream or file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A client's pairing failed (the code is spent).
    #[error("pairing with client {id} failed: {err}; the code is spent")]
    Pair {
        /// The client's identity.
        id: crate::secure::Identity,
        /// Why.
        err: crate::secure::pair::PairError,
    },
    /// A browser's request to the upload page could not be read or served.
    #[error(transparent)]
    Http(#[from] crate::server::web::http::HttpError),
    /// The stream ended part-way through a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// The peer closed the connection where a message was required.
    #[error("connection closed by peer while waiting for a {0} message")]
    Closed(MsgType),
    /// The header's `msgtype` is not one of the four defined kinds.
    #[error("unknown message type {0:#x}")]
    UnknownType(u32),
    /// A fixed-size body has the wrong length.
    #[error("{msg_type} body must be {expected} bytes, got {got}")]
    BodyLength {
        /// The kind of message.
        msg_type: MsgType,
        /// The only length allowed for this kind.
        expected: u32,
        /// The length the header announced.
        got: u32,
    },
    /// A length is over the limit for its kind, checked before anything is allocated.
    #[error("{what} of {got} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: Limit,
        /// The length claimed.
        got: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// A one-byte field holds a value the protocol does not define.
    #[error("invalid {field} byte {value:#x}")]
    BadByte {
        /// The field.
        field: ByteField,
        /// The byte received.
        value: u8,
    },
    /// A message of the wrong kind for this point of the exchange.
    #[error("expected a {expected} message, got {got}")]
    Unexpected {
        /// What the exchange called for.
        expected: MsgType,
        /// What arrived.
        got: MsgType,
    },
    /// A message carries the wrong message id.
    #[error("expected message id {expected}, got {got}")]
    MessageId {
        /// The id this exchange uses.
        expected: u32,
        /// The id received.
        got: u32,
    },
    /// A data message is out of order.
    #[error("expected seq {expected}, got {got}")]
    Sequence {
        /// The next sequence number due.
        expected: u16,
        /// The sequence number received.
        got: u16,
    },
    /// The peer sent data messages that bring the upload no closer to its end.
    #[error("{0} empty data messages in a row, none of them the last")]
    NoProgress(u32),
    /// The server reported success before it had all the data.
    #[error("server reported success before all the data was sent")]
    EarlyResult,
    /// Secure mode's TLS handshake failed (a hostile or broken one, a key refused, a peer
    /// that stalled past the deadline).
    #[error("secure handshake failed: {0}")]
    Handshake(io::Error),
    /// A secure client already holds this many connections, the most one may (the limit per
    /// client identity).
    #[error("this client already holds {0} connections (--max-per-client)")]
    TooManyFromClient(usize),
    /// A batch's messages came out of order: this was expected instead.
    #[error("batch out of order: expected {0}")]
    BatchOrder(&'static str),
    /// A file's bytes as received do not hash to what the client read (secure mode checks
    /// every file end to end): nothing of it is published.
    #[error("the file's BLAKE3 does not match the client's: changed on the way, or a lying client")]
    Verification,
    /// The data messages did not add up to the size the request announced.
    #[error("announced {announced} bytes but the last data message came after {received}")]
    SizeMismatch {
        /// The size in the request.
        announced: u64,
        /// The bytes actually received.
        received: u64,
    },
    /// The peer sent nothing complete within the time allowed.
    #[error("timed out after {} s waiting for {}", .limit.as_secs_f64(), awaited(*.waiting_for))]
    TimedOut {
        /// The kind of message awaited.
        waiting_for: MsgType,
        /// The time allowed.
        limit: std::time::Duration,
    },
    /// A file of a batch is no longer the one the walk found (replaced, or a symlink put in
    /// its place), or cannot be opened any more: it is not sent.
    #[error(
        "{0} is no longer the file that was read when the batch was made; nothing of it was sent"
    )]
    NotWalked(String),
    /// The local file changed size while it was being sent.
    #[error("file changed size while being sent ({expected} bytes expected, {got} read)")]
    FileChanged {
        /// The size when the upload started.
        expected: u64,
        /// The bytes that could be read.
        got: u64,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is the peer hanging up (closing or resetting the connection) rather than
    /// saying something wrong.
    pub fn is_hang_up(&self) -> bool {
        match self {
            Error::Closed(_) | Error::Truncated => true,
            Error::Io(err) => matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// How a wait for a message of kind `kind` reads in an error: a server waits for requests and
/// data, a client for the server's answer and result.
fn awaited(kind: MsgType) -> &'static str {
    match kind {
        MsgType::Request => "a request",
        MsgType::Data => "a data message",
        MsgType::Response => "the server's answer",
        MsgType::Result => "the server's result",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_name_what_was_awaited() {
        let cases = [
            (
                MsgType::Request,
                "timed out after 1 s waiting for a request",
            ),
            (
                MsgType::Data,
                "timed out after 1 s waiting for a data message",
            ),
            (
                MsgType::Response,
                "timed out after 1 s waiting for the server's answer",
            ),
            (
                MsgType::Result,
                "timed out after 1.5 s waiting for the server's result",
            ),
        ];
        for (kind, text) in cases {
            let limit = if kind == MsgType::Result { 1500 } else { 1000 };
            let err = Error::TimedOut {
                waiting_for: kind,
                limit: Duration::from_millis(limit),
            };
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn typed_fields_print_as_before() {
        let err = Error::TooLarge {
            what: Limit::AnnouncedSize,
            got: 5,
            limit: 4,
        };
        assert_eq!(
            err.to_string(),
            "data beyond the announced size of 5 bytes exceeds the limit of 4"
        );
        let err = Error::BadByte {
            field: ByteField::Frag,
            value: 2,
        };
        assert_eq!(err.to_string(), "invalid frag byte 0x2");
    }
}
