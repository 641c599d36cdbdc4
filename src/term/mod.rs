//! The terminals: the operator's prompt that asks about uploads, the screen it shares with
//! log and live status lines, the client's bar and what it says per file (text or JSON), and
//! the parsers for the programs' command-line values.
//!
//! A new prompt or a new live line goes here; the server only sees an
//! [`Approve`](crate::server::Approve)r and reports [`Event`](crate::server::Event)s.

pub mod args;
pub mod bar;
pub mod generate;
pub mod prompt;
pub mod qr;
pub mod results;
pub mod screen;
pub mod signals;

pub use prompt::{DEFAULT_PROMPT_TIMEOUT, TerminalApprover};
pub use screen::{Screen, Status};

use crate::server::Progress;
use crate::text;

/// The live status line of an upload in flight, whose name gives way first on a narrow
/// terminal: `receiving "a.bin" 1.0 MiB / 2.0 MiB (50%) 10.0 MiB/s from 127.0.0.1:4000`.
pub fn status_line(progress: &Progress) -> Status {
    // An empty file is all there from the start.
    let percent = progress
        .received
        .saturating_mul(100)
        .checked_div(progress.size)
        .unwrap_or(100);
    let head = "receiving \"";
    let name = text::escape(&progress.name);
    let text = format!(
        "{head}{name}\" {} / {} ({percent}%) {} from {}",
        text::bytes(progress.received),
        text::bytes(progress.size),
        text::rate(progress.received, progress.elapsed),
        progress.peer,
    );
    Status {
        text,
        give: head.len()..head.len() + name.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_lines() {
        let mut progress = Progress {
            connection: 1,
            peer: "127.0.0.1:4000".parse().unwrap(),
            name: "a\nb".into(),
            received: 1 << 20,
            size: 2 << 20,
            elapsed: Duration::from_millis(100),
        };
        let line = status_line(&progress);
        assert_eq!(
            line.text,
            "receiving \"a\\nb\" 1.0 MiB / 2.0 MiB (50%) 10.0 MiB/s from 127.0.0.1:4000"
        );
        assert_eq!(&line.text[line.give.clone()], "a\\nb");
        progress.size = 0;
        progress.received = 0;
        assert!(status_line(&progress).text.contains("(100%)"));
    }
}
