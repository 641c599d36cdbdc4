//! The operator's terminal: the prompt that asks about uploads, the screen it shares with log
//! and live status lines, and the parsers for the programs' command-line values.
//!
//! A new prompt or a new live line goes here; the server only sees an
//! [`Approve`](crate::server::Approve)r and reports [`Event`](crate::server::Event)s.

pub mod args;
pub mod generate;
pub mod prompt;
pub mod screen;
pub mod signals;

pub use prompt::{DEFAULT_PROMPT_TIMEOUT, TerminalApprover};
pub use screen::Screen;

use crate::server::Progress;
use crate::text;

/// The live status line of an upload in flight:
/// `receiving "a.bin" 1.0 MiB / 2.0 MiB (50%) 10.0 MiB/s from 127.0.0.1:4000`.
pub fn status_line(progress: &Progress) -> String {
    // An empty file is all there from the start.
    let percent = progress
        .received
        .saturating_mul(100)
        .checked_div(progress.size)
        .unwrap_or(100);
    format!(
        "receiving \"{}\" {} / {} ({percent}%) {} from {}",
        text::escape(&progress.name),
        text::bytes(progress.received),
        text::bytes(progress.size),
        text::rate(progress.received, progress.elapsed),
        progress.peer,
    )
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
        assert_eq!(
            status_line(&progress),
            "receiving \"a\\nb\" 1.0 MiB / 2.0 MiB (50%) 10.0 MiB/s from 127.0.0.1:4000"
        );
        progress.size = 0;
        progress.received = 0;
        assert!(status_line(&progress).contains("(100%)"));
    }
}
