//! One terminal shared by log lines, a live status line per upload, and the operator's
//! questions, so that none of them writes through another.
//!
//! Status lines are drawn at the bottom while no question is being asked; while one is, they
//! are taken away so the question has the operator's attention, and come back after. Log
//! lines are always printed above whatever is live, which is then drawn again.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The question itself, after the lines that describe the upload.
pub const PROMPT: &str = "accept? [y/N] ";

/// The live part of a terminal: see the module documentation.
#[derive(Debug, Default)]
pub struct Screen {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A question is being asked: no status lines until it is over.
    asking: bool,
    /// [`PROMPT`] is on the last line, waiting for the answer.
    prompt_shown: bool,
    /// Status lines by key (a connection number), drawn in key order.
    status: BTreeMap<u64, String>,
    /// How many status lines are on screen, just above the cursor.
    drawn: usize,
}

impl State {
    /// Takes away what is live (status lines, or the waiting prompt's line).
    fn erase(&mut self, out: &mut dyn Write) {
        if self.prompt_shown {
            let _ = write!(out, "\r\x1b[K");
        } else if self.drawn > 0 {
            // To the start of the first status line, then clear to the end of the screen.
            let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    /// Draws what is live again.
    fn draw(&mut self, out: &mut dyn Write) {
        if self.prompt_shown {
            let _ = write!(out, "{PROMPT}");
        } else if !self.asking {
            for line in self.status.values() {
                let _ = writeln!(out, "{line}");
            }
            self.drawn = self.status.len();
        }
    }
}

impl Screen {
    /// A screen with nothing live on it.
    pub fn new() -> Screen {
        Screen::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a few assignments: the state stays usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints a log line above whatever is live, and draws that again below it.
    pub fn log(&self, out: &mut dyn Write, line: &str) {
        let mut state = self.lock();
        state.erase(out);
        let _ = writeln!(out, "{line}");
        state.draw(out);
        let _ = out.flush();
    }

    /// Sets (or with `None` removes) the status line under `key` and redraws the status
    /// lines, unless a question is being asked.
    pub fn set_status(&self, out: &mut dyn Write, key: u64, line: Option<String>) {
        let mut state = self.lock();
        let changed = match line {
            Some(line) => {
                state.status.insert(key, line);
                true
            }
            None => state.status.remove(&key).is_some(),
        };
        if changed && !state.asking {
            state.erase(out);
            state.draw(out);
            let _ = out.flush();
        }
    }

    /// Starts a question: takes the status lines away and writes `text` (the lines that
    /// describe the upload).
    pub fn begin_question(&self, out: &mut dyn Write, text: &str) {
        let mut state = self.lock();
        state.erase(out);
        state.asking = true;
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    /// Writes a line that belongs to the question (a hint, a reason).
    pub fn question_line(&self, out: &mut dyn Write, line: &str) {
        let _state = self.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Shows [`PROMPT`] and waits: log lines printed meanwhile go above it.
    pub fn show_prompt(&self, out: &mut dyn Write) {
        let mut state = self.lock();
        let _ = write!(out, "{PROMPT}");
        let _ = out.flush();
        state.prompt_shown = true;
    }

    /// The answer came (or will not): the prompt is no longer waiting.
    pub fn prompt_answered(&self) {
        self.lock().prompt_shown = false;
    }

    /// Ends the question: the status lines come back.
    pub fn end_question(&self, out: &mut dyn Write) {
        let mut state = self.lock();
        state.asking = false;
        state.prompt_shown = false;
        state.draw(out);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn log_lines_go_above_status_lines() {
        let screen = Screen::new();
        let mut out = Vec::new();
        screen.set_status(&mut out, 2, Some("receiving b".into()));
        screen.set_status(&mut out, 1, Some("receiving a".into()));
        screen.log(&mut out, "stored x");
        screen.set_status(&mut out, 1, None);
        assert_eq!(
            text(&out),
            concat!(
                "receiving b\n",
                "\x1b[1F\x1b[Jreceiving a\nreceiving b\n",
                "\x1b[2F\x1b[Jstored x\nreceiving a\nreceiving b\n",
                "\x1b[2F\x1b[Jreceiving b\n",
            )
        );
    }

    #[test]
    fn questions_hide_status_lines_and_keep_their_prompt() {
        let screen = Screen::new();
        let mut out = Vec::new();
        screen.set_status(&mut out, 1, Some("receiving a".into()));
        screen.begin_question(&mut out, "peer wants to send \"q\"\n");
        screen.set_status(&mut out, 1, Some("receiving a, later".into()));
        screen.show_prompt(&mut out);
        screen.log(&mut out, "stored y");
        screen.prompt_answered();
        screen.end_question(&mut out);
        assert_eq!(
            text(&out),
            concat!(
                "receiving a\n",
                "\x1b[1F\x1b[Jpeer wants to send \"q\"\n",
                "accept? [y/N] ",
                "\r\x1b[Kstored y\naccept? [y/N] ",
                "receiving a, later\n",
            )
        );
    }
}
