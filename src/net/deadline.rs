//! Deadlines: a fixed instant by which a whole message must have arrived, however the peer
//! trickles it, and the one place where a timed-out socket call becomes a typed timeout.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::Conn;
use crate::error::{Error, Result};
use crate::wire::{Message, MsgType};

/// An instant by which something must be done, with the limit it was set from (for errors).
///
/// Deadlines, not per-read timeouts: each read may block only for the time left, so a peer
/// sending a byte at a time cannot stretch the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    until: Instant,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now. A limit too large to represent means no practical limit, never an
    /// overflow panic.
    pub fn after(limit: Duration) -> Deadline {
        let now = Instant::now();
        let until = now
            .checked_add(limit)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        Deadline { until, limit }
    }

    /// The limit this deadline was set from.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Time left, or [`io::ErrorKind::TimedOut`] once the deadline has passed.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] when no time is left.
    pub fn time_left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }

    /// Sets `conn`'s read timeout to the time left, so that the next read ends by the deadline.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] when no time is left, or if the timeout cannot be set.
    pub fn arm<C: Conn + ?Sized>(&self, conn: &C) -> io::Result<()> {
        conn.set_read_timeout(Some(self.time_left()?))
    }

    /// Reads from `conn` until this deadline.
    pub fn reader<'c, C: Conn + ?Sized>(&self, conn: &'c mut C) -> DeadlineReader<'c, C> {
        DeadlineReader {
            conn,
            deadline: *self,
        }
    }

    /// Reads one whole message (header and body) of the kind the exchange calls for, `want`,
    /// by this deadline. The kind is not checked here; it names what was awaited in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the peer closed before the message, [`Error::TimedOut`] past the
    /// deadline, and what [`Message::read_from`] returns otherwise.
    pub fn read_message<C: Conn + ?Sized>(&self, conn: &mut C, want: MsgType) -> Result<Message> {
        match Message::read_from(self.reader(conn)) {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(Error::Closed(want)),
            Err(Error::Io(err)) => Err(self.error(err, want)),
            Err(err) => Err(err),
        }
    }

    /// What an I/O error met while waiting for a `want` message means: the peer closing
    /// mid-message is [`Error::Truncated`], a timed-out socket call [`Error::TimedOut`].
    pub fn error(&self, err: io::Error, want: MsgType) -> Error {
        match timed_out(err) {
            err if err.kind() == io::ErrorKind::TimedOut => Error::TimedOut {
                waiting_for: want,
                limit: self.limit,
            },
            err if err.kind() == io::ErrorKind::UnexpectedEof => Error::Truncated,
            err => Error::Io(err),
        }
    }
}

/// The one mapping of a socket timeout: a socket call that ran out of the time its timeout
/// allowed fails with `EAGAIN` (`WouldBlock`); callers see [`io::ErrorKind::TimedOut`].
pub fn timed_out(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::WouldBlock {
        io::ErrorKind::TimedOut.into()
    } else {
        err
    }
}

/// Reads from a [`Conn`] until a [`Deadline`]; past it, reads fail with
/// [`io::ErrorKind::TimedOut`].
#[derive(Debug)]
pub struct DeadlineReader<'c, C: ?Sized> {
    conn: &'c mut C,
    deadline: Deadline,
}

impl<C: Conn + ?Sized> Read for DeadlineReader<'_, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.deadline.arm(&*self.conn)?;
        self.conn.read(buf).map_err(timed_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn deadline_bounds_a_silent_peer() {
        let (mut a, _b) = crate::testing::socket_pair();
        let started = Instant::now();
        let err = Deadline::after(Duration::from_millis(50))
            .reader(&mut a)
            .read(&mut [0; 4])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deadline_passes_data_through() {
        let (mut a, mut b) = crate::testing::socket_pair();
        b.write_all(b"abc").unwrap();
        let mut buf = [0; 3];
        Deadline::after(Duration::from_secs(5))
            .reader(&mut a)
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf, b"abc");
        // A huge limit is accepted and means no practical limit.
        let forever = Deadline::after(Duration::MAX);
        assert!(forever.time_left().unwrap() > Duration::from_secs(3600));
        b.write_all(b"d").unwrap();
        assert_eq!(forever.reader(&mut a).read(&mut buf).unwrap(), 1);
    }

    #[test]
    fn read_message_names_what_it_waited_for() {
        let (mut a, b) = crate::testing::socket_pair();
        let deadline = Deadline::after(Duration::from_millis(50));
        let err = deadline
            .read_message(&mut a, MsgType::Response)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TimedOut {
                    waiting_for: MsgType::Response,
                    limit
                } if limit == Duration::from_millis(50)
            ),
            "{err:?}"
        );
        drop(b);
        let err = Deadline::after(Duration::from_secs(5))
            .read_message(&mut a, MsgType::Result)
            .unwrap_err();
        assert!(matches!(err, Error::Closed(MsgType::Result)), "{err:?}");
    }

    #[test]
    fn errors_are_mapped_once() {
        let deadline = Deadline::after(Duration::from_secs(1));
        for (kind, want) in [
            (
                io::ErrorKind::WouldBlock,
                "timed out after 1 s waiting for a data message",
            ),
            (
                io::ErrorKind::TimedOut,
                "timed out after 1 s waiting for a data message",
            ),
            (
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a message",
            ),
        ] {
            let err = deadline.error(kind.into(), MsgType::Data);
            assert_eq!(err.to_string(), want);
        }
        let other = deadline.error(io::ErrorKind::PermissionDenied.into(), MsgType::Data);
        assert!(matches!(other, Error::Io(_)));
    }
}
