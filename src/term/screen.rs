//! One terminal shared by log lines, a live status line per upload, and the operator's
//! questions, so that none of them writes through another.
//!
//! Status lines are drawn at the bottom while no question is being asked, each cut to the
//! terminal's width as it is at that moment, so a line never wraps and every redraw takes
//! away exactly what it drew. While a question waits, a log line is slid in above the prompt
//! (scroll up, insert a line, restore the cursor): the prompt's row, with whatever the operator
//! has typed on it, is never rewritten. A terminal that cannot do that (`TERM=dumb`, or one of
//! unknown width) gets nothing live, and log lines that arrive during a question are printed
//! after its answer.
//!
//! indicatif's `MultiProgress` prints above live lines and fits them to the width too, but it
//! redraws its last line, which is where the prompt and the operator's typing are; so the
//! screen stays this small piece of hand-written code.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The question itself, after the lines that describe the upload.
pub const PROMPT: &str = "accept? [y/N] ";
/// The prompt for a secure client, whom the operator may also trust from now on.
pub const PROMPT_ALWAYS: &str = "accept? [y/N/a] ";

/// A live line: `text`, whose `give` range (a name, say) gives way first when the line is
/// too wide for the terminal, so that what follows it (the figures) stays in view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The whole line.
    pub text: String,
    /// The bytes of `text` that are cut first (empty: the line is cut at its end).
    pub give: std::ops::Range<usize>,
}

/// The fewest characters a name that gives way keeps, `…` included.
const MIN_GIVEN: usize = 8;

impl Status {
    /// The line in `room` columns: the `give` range cut (to no less than a few characters),
    /// then the end if that is not enough.
    pub fn fitted(&self, room: usize) -> String {
        let width = console::measure_text_width(&self.text);
        let valid = self.give.start <= self.give.end && self.text.get(self.give.clone()).is_some();
        if width <= room || !valid || self.give.is_empty() {
            return console::truncate_str(&self.text, room, "…").into_owned();
        }
        let given = &self.text[self.give.clone()];
        let over = width - room;
        let keep = console::measure_text_width(given)
            .saturating_sub(over)
            .max(MIN_GIVEN);
        let line = format!(
            "{}{}{}",
            &self.text[..self.give.start],
            console::truncate_str(given, keep, "…"),
            &self.text[self.give.end..]
        );
        console::truncate_str(&line, room, "…").into_owned()
    }
}

impl From<String> for Status {
    fn from(text: String) -> Status {
        Status { text, give: 0..0 }
    }
}

impl From<&str> for Status {
    fn from(text: &str) -> Status {
        Status::from(text.to_string())
    }
}

/// What the screen needs to know about the terminal, asked at every draw.
pub trait Terminal: Send + Sync {
    /// Its width in columns, if known.
    fn width(&self) -> Option<usize>;
    /// Whether this process is in its foreground (a background job draws nothing live).
    fn foreground(&self) -> bool;
}

/// The terminal on standard error.
#[derive(Debug)]
pub struct Stderr;

impl Terminal for Stderr {
    fn width(&self) -> Option<usize> {
        let (_, cols) = console::Term::stderr().size_checked()?;
        Some(usize::from(cols)).filter(|&c| c > 0)
    }

    fn foreground(&self) -> bool {
        crate::sys::stderr_in_foreground().unwrap_or(true)
    }
}

/// A terminal of a fixed width, always in the foreground (for tests, and for callers that
/// know better).
#[derive(Debug)]
pub struct Fixed(pub Option<usize>);

impl Terminal for Fixed {
    fn width(&self) -> Option<usize> {
        self.0
    }

    fn foreground(&self) -> bool {
        true
    }
}

/// The live part of a terminal: see the module documentation.
pub struct Screen {
    state: Mutex<State>,
    terminal: Box<dyn Terminal>,
    /// Whether anything live may be drawn at all (not on `TERM=dumb`).
    live: bool,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Default for Screen {
    fn default() -> Screen {
        Screen::on(Fixed(Some(80)), true)
    }
}

#[derive(Debug, Default)]
struct State {
    /// A question is being asked: no status lines until it is over.
    asking: bool,
    /// [`PROMPT`] is on the last line, waiting for the answer.
    prompt_shown: bool,
    /// Status lines by key (a connection number), drawn in key order.
    status: BTreeMap<u64, Status>,
    /// How many status lines are on screen, just above the cursor, one row each.
    drawn: usize,
    /// Log lines held back while a prompt waits on a terminal that cannot slide them in.
    held: Vec<String>,
}

impl Screen {
    /// The screen of the terminal on standard error: live unless `TERM` says `dumb`.
    pub fn new() -> Screen {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Screen::on(Stderr, !dumb)
    }

    /// A screen on `terminal`, drawing live lines only when `live`.
    pub fn on(terminal: impl Terminal + 'static, live: bool) -> Screen {
        Screen {
            state: Mutex::default(),
            terminal: Box::new(terminal),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a few assignments: the state stays usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The width live lines may use, if they may be drawn now at all.
    fn live_width(&self) -> Option<usize> {
        if !self.live || !self.terminal.foreground() {
            return None;
        }
        self.terminal.width()
    }

    /// Takes the status lines away (each is one row, so this is exact).
    fn erase(state: &mut State, out: &mut dyn Write) {
        if state.drawn > 0 {
            // To the start of the first status line, then clear to the end of the screen.
            let _ = write!(out, "\x1b[{}F\x1b[J", state.drawn);
            state.drawn = 0;
        }
    }

    /// Draws the status lines, each cut to the width now, unless a question is being asked.
    fn draw(&self, state: &mut State, out: &mut dyn Write) {
        if state.asking || state.prompt_shown {
            return;
        }
        let Some(width) = self.live_width() else {
            return;
        };
        // One column spare: a line that fills the last column would wrap on some terminals.
        let room = width.saturating_sub(1).max(1);
        for line in state.status.values() {
            let _ = writeln!(out, "{}", line.fitted(room));
        }
        state.drawn = state.status.len();
    }

    /// Prints a log line above whatever is live.
    pub fn log(&self, out: &mut dyn Write, line: &str) {
        let mut state = self.lock();
        if state.prompt_shown {
            match self.live_width() {
                Some(width) => slide_in_above(out, line, width),
                None => state.held.push(line.to_string()),
            }
        } else {
            Screen::erase(&mut state, out);
            let _ = writeln!(out, "{line}");
            self.draw(&mut state, out);
        }
        let _ = out.flush();
    }

    /// Sets (or with `None` removes) the status line under `key` and redraws the status
    /// lines, unless a question is being asked or nothing live may be drawn.
    pub fn set_status(&self, out: &mut dyn Write, key: u64, line: Option<Status>) {
        let mut state = self.lock();
        let changed = match line {
            Some(line) if self.live => {
                state.status.insert(key, line);
                true
            }
            Some(_) => false,
            None => state.status.remove(&key).is_some(),
        };
        if changed && !state.asking {
            Screen::erase(&mut state, out);
            self.draw(&mut state, out);
            let _ = out.flush();
        }
    }

    /// Starts a question: takes the status lines away and writes `text` (the lines that
    /// describe the upload).
    pub fn begin_question(&self, out: &mut dyn Write, text: &str) {
        let mut state = self.lock();
        Screen::erase(&mut state, out);
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

    /// Shows `prompt` ([`PROMPT`] or [`PROMPT_ALWAYS`]) and waits: log lines printed
    /// meanwhile go above it.
    pub fn show_prompt(&self, out: &mut dyn Write, prompt: &str) {
        let mut state = self.lock();
        let _ = write!(out, "{prompt}");
        let _ = out.flush();
        state.prompt_shown = true;
    }

    /// The answer came (or will not): the prompt is no longer waiting. The line the answer
    /// ended is on screen already; log lines held back meanwhile are printed now.
    pub fn prompt_answered(&self, out: &mut dyn Write) {
        let mut state = self.lock();
        state.prompt_shown = false;
        for line in std::mem::take(&mut state.held) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// Ends the question: the status lines come back.
    pub fn end_question(&self, out: &mut dyn Write) {
        let mut state = self.lock();
        state.asking = false;
        state.prompt_shown = false;
        self.draw(&mut state, out);
        let _ = out.flush();
    }
}

/// Writes `line` on new rows just above the cursor's row, whose contents stay as they are, and
/// puts the cursor back where it was on that row, wherever the row is on the screen and
/// without asking the terminal where that is (its answer would land in the operator's input).
/// For a line of `n` rows:
/// - save the cursor (`ESC 7`);
/// - `n` newlines, then `n` reverse indexes (`ESC M`): the cursor is back on the prompt's row,
///   and there are at least `n` free rows below it (the screen scrolled up if it had to);
/// - insert `n` blank rows there (`CSI n L`), pushing the prompt's row down into them, and
///   write the line on the blank rows;
/// - restore the cursor (`ESC 8`) and move it `n` rows down (`CSI n B`): the move stops at the
///   bottom, which is exactly the prompt's row again if the screen had to scroll.
fn slide_in_above(out: &mut dyn Write, line: &str, width: usize) {
    let n = console::measure_text_width(line)
        .div_ceil(width.max(1))
        .max(1);
    let down = "\n".repeat(n);
    let up = "\x1bM".repeat(n);
    let _ = write!(out, "\x1b7{down}{up}\r\x1b[{n}L{line}\x1b8\x1b[{n}B");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// What a person sees: the bytes rendered by a terminal emulator of `cols` columns.
    fn rendered(out: &[u8], cols: u16) -> Vec<String> {
        use std::num::NonZeroU16;
        let size = |n| NonZeroU16::new(n).unwrap();
        let mut parser = vt100::Parser::new(size(12), size(cols), 0);
        // As a terminal's driver sends it (ONLCR): each newline also returns the carriage.
        let mut sent = Vec::with_capacity(out.len());
        for &byte in out {
            if byte == b'\n' {
                sent.push(b'\r');
            }
            sent.push(byte);
        }
        parser.process(&sent);
        parser.screen().rows(0, cols).collect()
    }

    #[test]
    fn log_lines_go_above_status_lines() {
        let screen = Screen::default();
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
    fn status_lines_never_wrap_in_a_narrow_terminal() {
        let screen = Screen::on(Fixed(Some(24)), true);
        let mut out = Vec::new();
        let long = "receiving \"a rather long file name.bin\" 1.0 MiB / 2.0 MiB (50%)";
        for i in 0..20 {
            screen.set_status(&mut out, 1, Some(format!("{long} {i}").into()));
        }
        screen.set_status(&mut out, 1, None);
        screen.log(&mut out, "stored");
        let rows = rendered(&out, 24);
        assert_eq!(rows[0], "stored", "{rows:#?}");
        assert!(
            rows[1..].iter().all(String::is_empty),
            "stale lines: {rows:#?}"
        );
    }

    #[test]
    fn typed_input_stays_in_view_when_a_log_line_arrives() {
        // At the top of a fresh terminal, and at its bottom after a screenful of lines.
        for before in [0, 5, 9, 10, 11, 30] {
            typed_input_stays_in_view(before);
        }
    }

    fn typed_input_stays_in_view(before: usize) {
        let screen = Screen::on(Fixed(Some(40)), true);
        let mut out = Vec::new();
        for i in 0..before {
            screen.log(&mut out, &format!("earlier line {i}"));
        }
        screen.begin_question(&mut out, "peer wants to send \"q\"\n");
        screen.show_prompt(&mut out, PROMPT);
        out.extend_from_slice(b"ye"); // the terminal's echo of what the operator typed
        screen.log(
            &mut out,
            "stored \"x\" 3 B (3 bytes) in 0.00 s from 127.0.0.1:4000",
        );
        out.extend_from_slice(b"s"); // typed after the log line
        let rows = rendered(&out, 40);
        let prompt_row = rows
            .iter()
            .position(|r| r.starts_with("accept?"))
            .unwrap_or_else(|| panic!("{before}: {rows:#?}"));
        assert_eq!(rows[prompt_row], "accept? [y/N] yes", "{before}: {rows:#?}");
        assert_eq!(
            rows[prompt_row - 1],
            "127.0.0.1:4000",
            "{before}: {rows:#?}"
        );
        assert!(
            rows[prompt_row - 2].starts_with("stored \"x\""),
            "{before}: {rows:#?}"
        );
        assert!(
            rows[prompt_row - 3].starts_with("peer wants"),
            "{before}: {rows:#?}"
        );
    }

    #[test]
    fn nothing_live_on_a_dumb_terminal() {
        let screen = Screen::on(Fixed(Some(80)), false);
        let mut out = Vec::new();
        screen.set_status(&mut out, 1, Some("receiving a".into()));
        screen.log(&mut out, "stored x");
        screen.begin_question(&mut out, "peer wants to send \"q\"\n");
        screen.show_prompt(&mut out, PROMPT);
        out.extend_from_slice(b"ye");
        screen.log(&mut out, "stored y");
        out.extend_from_slice(b"s\n");
        screen.prompt_answered(&mut out);
        screen.end_question(&mut out);
        assert_eq!(
            text(&out),
            "stored x\npeer wants to send \"q\"\naccept? [y/N] yes\nstored y\n"
        );
    }

    #[test]
    fn a_name_gives_way_before_the_figures() {
        let line = "receiving \"a rather long file name.bin\" 1.0 MiB / 2.0 MiB (50%)";
        let status = Status {
            text: line.to_string(),
            give: 11..38,
        };
        assert_eq!(&line[status.give.clone()], "a rather long file name.bin");
        assert_eq!(status.fitted(80), line);
        assert_eq!(
            status.fitted(50),
            "receiving \"a rather long…\" 1.0 MiB / 2.0 MiB (50%)"
        );
        // The name keeps a few characters; then the end goes.
        assert_eq!(status.fitted(30), "receiving \"a rathe…\" 1.0 MiB …");
        for room in 1..90 {
            assert!(
                console::measure_text_width(&status.fitted(room)) <= room,
                "{room}"
            );
        }
        // A range that is not in the line (or not on a character's edge) cuts at the end.
        let odd = Status {
            text: "사진 1.jpg".into(),
            give: 1..2,
        };
        assert_eq!(odd.fitted(4), "사…");
    }

    #[test]
    fn questions_hide_status_lines_and_come_back_after() {
        let screen = Screen::default();
        let mut out = Vec::new();
        screen.set_status(&mut out, 1, Some("receiving a".into()));
        screen.begin_question(&mut out, "peer wants to send \"q\"\n");
        screen.set_status(&mut out, 1, Some("receiving a, later".into()));
        screen.show_prompt(&mut out, PROMPT);
        out.extend_from_slice(b"y\n");
        screen.prompt_answered(&mut out);
        screen.end_question(&mut out);
        assert_eq!(
            text(&out),
            concat!(
                "receiving a\n",
                "\x1b[1F\x1b[Jpeer wants to send \"q\"\n",
                "accept? [y/N] y\n",
                "receiving a, later\n",
            )
        );
    }
}
