//! The operator at a terminal as an [`Approve`]r: one question at a time, in turn across
//! addresses, answered by a line of input, sharing the screen with the log and status lines.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use super::screen::{PROMPT, PROMPT_ALWAYS, Screen};
use crate::net::Deadline;
use crate::server::budget::{FairQueue, address_key};
use crate::server::{Approve, Ask, Client, Decision, Reason};
use crate::text;
use crate::wire::Verdict;

/// How often a waiting question checks whether its client is still there.
const POLL: Duration = Duration::from_millis(100);
/// Answers that are neither yes nor no are asked again this many times in all, then denied.
pub const MAX_TRIES: u32 = 3;
/// Time the operator has to answer a question unless told otherwise.
pub const DEFAULT_PROMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Asks an operator: writes a question to `W` and takes one line of answer from an input read
/// by a thread of its own (so that a question can time out).
///
/// `y`/`yes` in any case accepts; `n`/`no` or an empty line (Enter) denies; for a secure
/// client, `a`/`always` accepts and trusts it from now on; anything else is asked again,
/// [`MAX_TRIES`] times in all, then denied. Once the input is at its end, [`CLOSED_NOTICE`]
/// is said once and every request is denied without a question (the log has its line). Exactly one question is on screen
/// at a time, saying how many more wait; the others wait in turn across addresses (see
/// [`FairQueue`]), and one whose client hangs up leaves the queue. A question unanswered within the prompt timeout is
/// denied, and an answer typed after that is not taken for the next question.
pub struct TerminalApprover<W> {
    queue: Mutex<FairQueue<IpAddr>>,
    turn: Condvar,
    io: Mutex<Terminal<W>>,
    prompt_timeout: Option<Duration>,
    /// The terminal the questions share with log and status lines.
    screen: Arc<Screen>,
    /// Set by [`Approve::stop`]: every question is denied from then on.
    stopping: AtomicBool,
    /// Whether the process is in the terminal's foreground, where answers can be typed.
    foreground: Box<dyn Fn() -> bool + Send + Sync>,
}

struct Terminal<W> {
    answers: Receiver<String>,
    output: W,
    /// The last question ended without its answer; lines already typed are late answers.
    stale: bool,
    /// A line typed before its question was asked: that question's answer.
    early: Option<String>,
    /// The input is at its end: no question is asked any more (said once).
    closed: bool,
}

/// Said once when the input ends: from then on, every question is denied without being
/// asked, and the log has one line per decision.
pub const CLOSED_NOTICE: &str = "fup-server: standard input is closed: uploads that need a \
     question are denied from now on, without asking (--yes, --accept-from or trusted clients \
     accept without a question)";

impl<W> fmt::Debug for TerminalApprover<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalApprover")
            .field("prompt_timeout", &self.prompt_timeout)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> TerminalApprover<W> {
    /// An approver reading answers from `input` and writing questions to `output`; a question
    /// not answered within `prompt_timeout` is denied (`None`: wait forever).
    ///
    /// # Errors
    ///
    /// If the thread that reads `input` cannot be started.
    pub fn new<R>(input: R, output: W, prompt_timeout: Option<Duration>) -> io::Result<Self>
    where
        R: BufRead + Send + 'static,
    {
        let (tx, answers) = mpsc::channel();
        thread::Builder::new()
            .name("fup answers".into())
            .spawn(move || {
                let mut input = input;
                loop {
                    let mut line = String::new();
                    match input.read_line(&mut line) {
                        // A background job's read of its terminal fails with EIO (SIGTTIN is
                        // ignored): wait to be brought to the foreground.
                        Err(err) if crate::sys::is_background_read(&err) => {
                            thread::sleep(POLL);
                        }
                        // End of input, or an unreadable one, both end the answers.
                        Ok(0) | Err(_) => break,
                        Ok(_) if tx.send(line).is_err() => break,
                        Ok(_) => {}
                    }
                }
            })?;
        Ok(TerminalApprover::with_answers(
            answers,
            output,
            prompt_timeout,
        ))
    }

    /// An approver taking its answers, one line each, from `answers`.
    fn with_answers(
        answers: Receiver<String>,
        output: W,
        prompt_timeout: Option<Duration>,
    ) -> TerminalApprover<W> {
        TerminalApprover {
            queue: Mutex::default(),
            turn: Condvar::new(),
            io: Mutex::new(Terminal {
                answers,
                output,
                stale: false,
                early: None,
                closed: false,
            }),
            prompt_timeout,
            screen: Arc::default(),
            stopping: AtomicBool::new(false),
            foreground: Box::new(|| true),
        }
    }

    /// Tells the approver how to know whether the process is in the terminal's foreground:
    /// a question asked in the background says that it waits for `fg`, and one that times out
    /// there says so.
    pub fn with_foreground(
        mut self,
        foreground: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        self.foreground = Box::new(foreground);
        self
    }

    /// Shares `screen` with whoever else writes to the same terminal (log and status lines).
    pub fn with_screen(mut self, screen: Arc<Screen>) -> Self {
        self.screen = screen;
        self
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How many questions wait behind the one on screen.
    fn waiting_behind(&self) -> usize {
        lock(&self.queue).behind()
    }

    /// Waits for this question's turn (asked from `peer`); or says why it will not come.
    fn take_turn(
        &self,
        peer: IpAddr,
        client_gone: &dyn Fn() -> bool,
    ) -> Result<Turn<'_, W>, Reason> {
        let mut queue = lock(&self.queue);
        let ticket = queue.join(address_key(peer));
        loop {
            let leave = if self.is_stopping() {
                Some(Reason::ShuttingDown)
            } else if queue.is_turn(ticket) {
                return Ok(Turn {
                    approver: self,
                    ticket,
                });
            } else {
                queue = self
                    .turn
                    .wait_timeout(queue, POLL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                client_gone().then_some(Reason::HungUpWaiting)
            };
            if let Some(reason) = leave {
                queue.leave(ticket);
                self.turn.notify_all();
                return Err(reason);
            }
        }
    }

    /// Asks on screen until a verdict, or a reason why there will be none.
    fn ask_on_screen(&self, term: &mut Terminal<W>, ask: &Ask<'_>) -> Decision {
        if term.stale {
            while term.answers.try_recv().is_ok() {}
            term.stale = false;
        }
        if term.early.is_none() && !term.closed {
            match term.answers.try_recv() {
                Ok(line) => term.early = Some(line),
                Err(TryRecvError::Disconnected) => {
                    term.closed = true;
                    self.screen.log(&mut term.output, CLOSED_NOTICE);
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        if term.closed {
            return Decision::deny(Reason::NoInput);
        }
        let early = &mut term.early;
        let out = &mut term.output;
        let save_as = ask.save_as();
        self.screen
            .begin_question(out, &question(ask, &save_as, self.waiting_behind()));
        let deadline = self.prompt_timeout.map(Deadline::after);
        if !(self.foreground)() {
            let until = match self.prompt_timeout {
                Some(t) => format!(", or it is denied in {} s", t.as_secs_f64()),
                None => String::new(),
            };
            self.screen.question_line(
                out,
                &format!(
                    "(fup-server runs in the background: bring it back with fg to answer{until})"
                ),
            );
        }
        // Only a client that proved an identity can be trusted from now on.
        let secure = ask.client.id().is_some();
        let prompt = if secure { PROMPT_ALWAYS } else { PROMPT };
        for tries in 1..=MAX_TRIES {
            self.screen.show_prompt(out, prompt);
            let answered = match early.take() {
                Some(answer) => Ok(answer),
                None => self.wait_for_answer(&term.answers, deadline, ask.client_gone),
            };
            self.screen.prompt_answered(out);
            let answer = match answered {
                Ok(answer) => answer,
                Err(reason) => {
                    self.screen
                        .question_line(out, &format!("\n{reason}, so the upload is denied"));
                    if reason == Reason::NoInput {
                        term.closed = true;
                        self.screen.question_line(out, CLOSED_NOTICE);
                    }
                    // Lines typed from now on answer no question on screen.
                    term.stale = reason != Reason::NoInput;
                    return Decision::deny(reason);
                }
            };
            if let Some(decision) = parse_answer(&answer, secure) {
                return decision;
            }
            if tries < MAX_TRIES {
                let choices = match secure {
                    true => "please answer y (yes), n (no) or a (always: trust this client)",
                    false => "please answer y (yes) or n (no)",
                };
                self.screen.question_line(out, choices);
            }
        }
        self.screen.question_line(
            out,
            &format!("no valid answer after {MAX_TRIES} tries, so the upload is denied"),
        );
        Decision::deny(Reason::NoValidAnswer)
    }

    /// Waits for one line of answer; or says why none will come.
    fn wait_for_answer(
        &self,
        answers: &Receiver<String>,
        deadline: Option<Deadline>,
        client_gone: &dyn Fn() -> bool,
    ) -> Result<String, Reason> {
        loop {
            let wait = deadline.map_or(POLL, |d| d.time_left().unwrap_or_default().min(POLL));
            match answers.recv_timeout(wait) {
                Ok(answer) => return Ok(answer),
                Err(RecvTimeoutError::Disconnected) => return Err(Reason::NoInput),
                Err(RecvTimeoutError::Timeout) => {
                    if self.is_stopping() {
                        return Err(Reason::ShuttingDown);
                    }
                    if client_gone() {
                        return Err(Reason::Withdrawn);
                    }
                    if deadline.is_some_and(|d| d.time_left().is_err()) {
                        let limit = self.prompt_timeout.unwrap_or_default();
                        return Err(match (self.foreground)() {
                            true => Reason::PromptTimeout(limit),
                            false => Reason::InBackground(limit),
                        });
                    }
                }
            }
        }
    }
}

/// Holds the screen for one question; gives it to the next in line when dropped.
struct Turn<'a, W> {
    approver: &'a TerminalApprover<W>,
    ticket: u64,
}

impl<W> Drop for Turn<'_, W> {
    fn drop(&mut self) {
        let mut queue = lock(&self.approver.queue);
        queue.leave(self.ticket);
        self.approver.turn.notify_all();
    }
}

impl<W: Write + Send> Approve for TerminalApprover<W> {
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the waiting questions so that they see it at once.
        let _queue = lock(&self.queue);
        self.turn.notify_all();
    }

    fn approve(&self, ask: &Ask<'_>) -> Decision {
        let _turn = match self.take_turn(ask.peer.ip(), ask.client_gone) {
            Ok(turn) => turn,
            Err(reason) => return Decision::deny(reason),
        };
        let mut term = lock(&self.io);
        let decision = self.ask_on_screen(&mut term, ask);
        self.screen.end_question(&mut term.output);
        decision
    }
}

/// Asks the client's user whether to trust `host`'s identity `id`, met for the first time:
/// the question on `out`, the answer from `input` (yes only for `y` or `yes`).
pub fn ask_trust(
    host: &str,
    id: &crate::secure::Identity,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> bool {
    let _ = write!(
        out,
        "fup-client: first contact with {host}, which shows the identity\n  {id}\n\
         Compare it with the `identity:` line fup-server prints when it starts (or with\n\
         `fup-server --show-identity` on that machine) before you say yes.\n\
         trust {id}? [y/N] "
    );
    let _ = out.flush();
    let mut answer = String::new();
    if input.read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The lines that describe an upload to the operator, before the prompt: who, what (as sent,
/// and how its name was read when that is not plain), how large, where it will be stored
/// (`save_as`), the free space, and how many more wait.
pub fn question(ask: &Ask<'_>, save_as: &str, waiting: usize) -> String {
    let name = ask.name;
    let mut text = match ask.batch {
        None => format!(
            "{} wants to send \"{}\" ({}, {} bytes)\n",
            ask.peer,
            text::from_peer(&name.sent),
            text::bytes(ask.size),
            ask.size,
        ),
        Some(totals) => {
            let mut tops: Vec<String> = totals
                .first_tops
                .iter()
                .map(|top| format!("\"{}\"", text::escape(top)))
                .collect();
            if totals.tops > tops.len() {
                tops.push(format!("and {} more", totals.tops - tops.len()));
            }
            format!(
                "{} wants to send {totals} ({} bytes): {}\n",
                ask.peer,
                totals.bytes,
                tops.join(", ")
            )
        }
    };
    match ask.client {
        Client::Plain => {
            text.push_str("  plain: unencrypted, unauthenticated (the address proves nothing)\n");
        }
        Client::Browser { https: false, agent } => text.push_str(&format!(
            "  a browser over plain http: unencrypted, unauthenticated (the address proves nothing)\n  \"{}\"\n",
            text::from_peer(agent)
        )),
        Client::Browser { https: true, agent } => text.push_str(&format!(
            "  a browser over https: encrypted, but nothing proves who it is\n  \"{}\"\n",
            text::from_peer(agent)
        )),
        Client::Secure { id, trusted } => {
            text.push_str(&format!("  secure, client {id}"));
            match trusted {
                Some(Some(label)) => {
                    text.push_str(&format!(" (trusted: \"{}\")", text::escape(label)));
                }
                Some(None) => text.push_str(" (trusted)"),
                None => text.push_str(" (not trusted yet; a: accept and always trust it)"),
            }
            text.push('\n');
        }
    }
    if let Some((count, why)) = ask.refused {
        let files = if count == 1 { "file" } else { "files" };
        text.push_str(&format!(
            "  {count} {files} refused already ({}): the question is about the rest\n",
            text::escape(why)
        ));
    }
    if let Some(held) = ask.resuming {
        text.push_str(&format!(
            "  resuming at {}: {} of it is here from a try that was cut\n",
            text::percent(held, ask.size),
            text::bytes(held)
        ));
    }
    let mut notes = Vec::new();
    if name.cp949 {
        notes.push("decoded from CP949".to_string());
    }
    if name.is_path() {
        notes.push(format!(
            "a path: stored under its last part \"{}\"",
            text::escape(&name.stored)
        ));
    }
    if !notes.is_empty() {
        text.push_str(&format!("  name {}\n", notes.join("; ")));
    }
    let path = ask.store.dir().join(save_as);
    text.push_str(&format!("  to {}", text::visible(&path.to_string_lossy())));
    if save_as != name.stored {
        text.push_str(" (exists, keeping both)");
    }
    if let Some(free) = ask.free {
        text.push_str(&format!("; {} free", text::bytes(free)));
    }
    if waiting > 0 {
        text.push_str(&format!("; {waiting} more waiting"));
    }
    text.push('\n');
    text
}

/// `y`/`yes` accepts, `n`/`no`/empty denies, in any case, and `a`/`always` accepts and
/// trusts when `always` is offered; anything else is not an answer.
fn parse_answer(answer: &str, always: bool) -> Option<Decision> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Verdict::Accepted.into()),
        "" | "n" | "no" => Some(Verdict::Denied.into()),
        "a" | "always" if always => Some(Decision::always()),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked mid-question leaves the queue and terminal usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Store;
    use crate::server::names::{RequestName, read_request_name};
    use crate::term::screen::PROMPT;
    use std::io::Cursor;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A writer the test can read back while the approver still holds it.
    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// An approver reading answers from `rx` and asking on `screen`.
    fn approver_on(
        rx: Receiver<String>,
        screen: &Screen,
        prompt_timeout: Option<Duration>,
    ) -> TerminalApprover<Screen> {
        TerminalApprover::with_answers(rx, screen.clone(), prompt_timeout)
    }

    fn never() -> bool {
        false
    }

    /// Waits (at most 10 s) until `needle` is on the screen.
    fn wait_for(screen: &Screen, needle: &str) {
        let deadline = Deadline::after(Duration::from_secs(10));
        while !screen.text().contains(needle) {
            assert!(
                deadline.time_left().is_ok(),
                "{needle:?} never shown in {:?}",
                screen.text()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Types `line` once the question about `name` is on the screen, as a person would.
    fn answer_when_asked(
        screen: &Screen,
        tx: &mpsc::Sender<String>,
        name: &str,
        line: &str,
    ) -> thread::JoinHandle<()> {
        let (screen, tx, needle, line) = (
            screen.clone(),
            tx.clone(),
            format!("\"{name}\""),
            line.to_string(),
        );
        thread::spawn(move || {
            wait_for(&screen, &needle);
            tx.send(line).unwrap();
        })
    }

    /// An upload directory for the questions to point at, shared by the tests.
    fn store() -> &'static Store {
        static STORE: std::sync::OnceLock<(tempfile::TempDir, Store)> = std::sync::OnceLock::new();
        let (_, store) = STORE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("a.txt"), b"exists").unwrap();
            let store = Store::open(dir.path()).unwrap();
            (dir, store)
        });
        store
    }

    /// The name `raw` stands for, kept for the whole test run (an `Ask` borrows it): read as
    /// a server reads it when it passes, taken as it is when it does not (the escaping tests).
    fn name(raw: &str) -> &'static RequestName {
        let name = read_request_name(raw.as_bytes()).unwrap_or_else(|_| RequestName {
            sent: raw.into(),
            stored: raw.into(),
            cp949: false,
        });
        Box::leak(Box::new(name))
    }

    fn ask<'a>(name: &'a str, _save_as: &'a str, client_gone: &'a dyn Fn() -> bool) -> Ask<'a> {
        Ask {
            peer: "127.0.0.1:4000".parse().unwrap(),
            client: &Client::Plain,
            name: self::name(name),
            size: 1536,
            batch: None,
            refused: None,
            resuming: None,
            store: store(),
            free: Some(2048),
            client_gone,
        }
    }

    fn ask_all(input: &str, questions: usize) -> (Vec<Verdict>, String) {
        let screen = Screen::default();
        let approver =
            TerminalApprover::new(Cursor::new(input.to_string()), screen.clone(), None).unwrap();
        let verdicts = (0..questions)
            .map(|_| {
                approver
                    .approve(&ask("a\u{1b}[2J.txt", "a\u{1b}[2J.txt", &never))
                    .verdict
            })
            .collect();
        (verdicts, screen.text())
    }

    #[test]
    fn answers_are_read_one_line_per_question() {
        use Verdict::*;
        // yess and the three after Yes are not answers: asked again, then denied.
        let (verdicts, output) = ask_all("y\nYES\n\nno\nN\nyess\n Yes \nmaybe\nwhat\nhuh\n", 6);
        assert_eq!(
            verdicts,
            [Accepted, Accepted, Denied, Denied, Denied, Accepted]
        );
        assert!(
            output.contains(
                "127.0.0.1:4000 wants to send \"a\\u{1b}[2J.txt\" (1.5 KiB, 1536 bytes)\n"
            ),
            "{output}"
        );
        assert!(
            output.contains("[2J.txt; 2.0 KiB free\naccept? [y/N] "),
            "{output}"
        );
        assert_eq!(
            output.matches("please answer y (yes) or n (no)").count(),
            1,
            "{output}"
        );
        assert!(!output.contains('\u{1b}'));
        let (verdicts, output) = ask_all("maybe\nwhat\nhuh\ny\n", 1);
        assert_eq!(verdicts, [Denied]);
        assert!(
            output.contains("no valid answer after 3 tries, so the upload is denied"),
            "{output}"
        );
        assert_eq!(output.matches("accept? [y/N] ").count(), 3);
    }

    #[test]
    fn end_of_input_denies_every_request() {
        let (verdicts, output) = ask_all("", 3);
        assert_eq!(verdicts, [Verdict::Denied; 3]);
        // Said once; a question is asked at most before the end was seen, never after.
        assert_eq!(output.matches(CLOSED_NOTICE).count(), 1, "{output}");
        let notice = output.find(CLOSED_NOTICE).unwrap();
        assert!(!output[notice..].contains("accept?"), "{output}");
        assert!(output.matches("accept?").count() <= 1, "{output}");
    }

    #[test]
    fn prompt_shows_the_name_it_will_be_saved_under() {
        let screen = Screen::default();
        let approver =
            TerminalApprover::new(Cursor::new("y\n".to_string()), screen.clone(), None).unwrap();
        let decision = approver.approve(&ask("a.txt", "a (1).txt", &never));
        assert_eq!(decision, Verdict::Accepted.into());
        assert!(
            screen
                .text()
                .contains("wants to send \"a.txt\" (1.5 KiB, 1536 bytes)\n  plain: unencrypted, unauthenticated (the address proves nothing)\n  to "),
            "{}",
            screen.text()
        );
        assert!(
            screen
                .text()
                .contains("a (1).txt (exists, keeping both); 2.0 KiB free\naccept? [y/N] "),
            "{}",
            screen.text()
        );
    }

    #[test]
    fn unanswered_question_times_out_and_late_answers_are_dropped() {
        let (tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = approver_on(rx, &screen, Some(Duration::from_millis(50)));
        assert_eq!(
            approver.approve(&ask("a", "a", &never)).verdict,
            Verdict::Denied
        );
        assert!(
            screen.text().contains("no answer within 0.05 s"),
            "{}",
            screen.text()
        );
        // "y" typed too late (no question on screen) must not accept the next question.
        tx.send("y\n".into()).unwrap();
        assert_eq!(
            approver.approve(&ask("b", "b", &never)).verdict,
            Verdict::Denied
        );
        let typist = answer_when_asked(&screen, &tx, "c", "y\n");
        assert_eq!(
            approver.approve(&ask("c", "c", &never)).verdict,
            Verdict::Accepted
        );
        typist.join().unwrap();
    }

    #[test]
    fn client_that_hangs_up_leaves_the_queue() {
        let (tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = Arc::new(approver_on(rx, &screen, None));
        // The first question holds the screen until its client hangs up.
        let first_gone = Arc::new(AtomicBool::new(false));
        let first = {
            let (approver, gone) = (Arc::clone(&approver), Arc::clone(&first_gone));
            thread::spawn(move || {
                approver
                    .approve(&ask("first", "first", &|| gone.load(Ordering::SeqCst)))
                    .verdict
            })
        };
        wait_for(&screen, "\"first\"");
        // A second one queued behind it hangs up while waiting: it leaves without a question.
        let second = approver.approve(&ask("second", "second", &|| true)).verdict;
        assert_eq!(second, Verdict::Denied);
        assert!(!screen.text().contains("\"second\""));
        first_gone.store(true, Ordering::SeqCst);
        assert_eq!(first.join().unwrap(), Verdict::Denied);
        assert!(screen.text().contains("hung up; question withdrawn"));
        // The next question gets the next answer.
        let typist = answer_when_asked(&screen, &tx, "third", "y\n");
        assert_eq!(
            approver.approve(&ask("third", "third", &never)).verdict,
            Verdict::Accepted
        );
        typist.join().unwrap();
    }

    #[test]
    fn log_lines_are_printed_above_a_waiting_prompt() {
        let (tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = Arc::new(approver_on(rx, &screen, None));
        let mut log = screen.clone();
        approver.screen.log(&mut log, "before any question");
        let asking = {
            let approver = Arc::clone(&approver);
            thread::spawn(move || approver.approve(&ask("q", "q", &never)).verdict)
        };
        wait_for(&screen, PROMPT);
        approver.screen.log(&mut log, "stored \"x\"");
        tx.send("y\n".into()).unwrap();
        assert_eq!(asking.join().unwrap(), Verdict::Accepted);
        // Answered: nothing to redraw any more.
        approver.screen.log(&mut log, "after");
        let text = screen.text();
        assert!(text.starts_with("before any question\n"), "{text:?}");
        assert!(text.ends_with("\x1b8\x1b[1Bafter\n"), "{text:?}");
        // Slid in above the prompt, whose row is never rewritten (see screen.rs).
        assert!(
            text.contains("accept? [y/N] \x1b7\n\x1bM\r\x1b[1Lstored \"x\"\x1b8\x1b[1B"),
            "{text:?}"
        );
    }

    #[test]
    fn stop_denies_the_question_on_screen_and_those_waiting() {
        let (_tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = Arc::new(approver_on(rx, &screen, None));
        let asking: Vec<_> = ["one", "two", "three"]
            .into_iter()
            .map(|name| {
                let approver = Arc::clone(&approver);
                thread::spawn(move || approver.approve(&ask(name, name, &never)))
            })
            .collect();
        wait_for(&screen, PROMPT);
        approver.stop();
        for asked in asking {
            assert_eq!(asked.join().unwrap(), Decision::deny(Reason::ShuttingDown));
        }
        assert_eq!(
            approver.approve(&ask("late", "late", &never)).verdict,
            Verdict::Denied
        );
    }

    #[test]
    fn closures_approve_as_the_operator() {
        let a = ask("x", "x", &never);
        let deny = |_: &Ask<'_>| Verdict::Denied;
        assert_eq!(
            deny.approve(&a),
            Decision {
                verdict: Verdict::Denied,
                reason: None,
                always: false,
            }
        );
    }

    #[test]
    fn question_says_who_what_where_and_how_many_wait() {
        let a = ask("a.txt", "a.txt", &never);
        let text = question(&a, "a (1).txt", 2);
        let to = store().dir().join("a (1).txt");
        assert_eq!(
            text,
            format!(
                "127.0.0.1:4000 wants to send \"a.txt\" (1.5 KiB, 1536 bytes)\n  plain: unencrypted, unauthenticated (the address proves nothing)\n  to {} (exists, keeping both); 2.0 KiB free; 2 more waiting\n",
                to.display()
            )
        );
        let plain = Ask { free: None, ..a };
        let to = format!("{}\n", store().dir().join("a.txt").display());
        assert!(question(&plain, "a.txt", 0).ends_with(&to));
        // A secure client: its identity, and whether (and as whom) it is trusted.
        let id = crate::secure::Identity::of_public_key(b"k");
        for (trusted, says) in [
            (
                None,
                format!("  secure, client {id} (not trusted yet; a: accept and always trust it)\n"),
            ),
            (Some(None), format!("  secure, client {id} (trusted)\n")),
            (
                Some(Some("lab pc".to_string())),
                format!("  secure, client {id} (trusted: \"lab pc\")\n"),
            ),
        ] {
            let client = Client::Secure { id, trusted };
            let secure = Ask {
                client: &client,
                ..a
            };
            let text = question(&secure, "a.txt", 0);
            assert!(text.contains(&says), "{text}");
            assert!(!text.contains("plain"), "{text}");
        }
        // A browser: which way it came, and its user agent, escaped.
        for (https, says) in [
            (
                false,
                "  a browser over plain http: unencrypted, unauthenticated",
            ),
            (
                true,
                "  a browser over https: encrypted, but nothing proves who it is",
            ),
        ] {
            let client = Client::Browser {
                https,
                agent: "Phone\u{1b}[2J".into(),
            };
            let browser = Ask {
                client: &client,
                ..a
            };
            let text = question(&browser, "a.txt", 0);
            assert!(text.contains(says), "{text}");
            assert!(text.contains(r#"  "Phone\u{1b}[2J""#), "{text}");
        }
    }

    #[test]
    fn question_says_how_far_a_resumed_upload_got() {
        let a = ask("a.txt", "a.txt", &never);
        let resumed = Ask {
            resuming: Some(952),
            ..a
        };
        let text = question(&resumed, "a.txt", 0);
        assert!(
            text.contains("\n  resuming at 61%: 952 B of it is here from a try that was cut\n"),
            "{text}"
        );
        assert!(!question(&a, "a.txt", 0).contains("resuming"));
    }

    #[test]
    fn always_is_an_answer_for_secure_clients_only() {
        assert_eq!(parse_answer(" A ", true), Some(Decision::always()));
        assert_eq!(parse_answer("always", true), Some(Decision::always()));
        assert_eq!(parse_answer("a", false), None);
        assert_eq!(parse_answer("y", true), Some(Verdict::Accepted.into()));
    }

    #[test]
    fn question_says_how_the_name_was_read() {
        let path = ask(r"C:\Users\u\f.bin", "", &never);
        let text = question(&path, "f.bin", 0);
        assert!(
            text.starts_with(&format!(
                "127.0.0.1:4000 wants to send \"C:\\\\Users\\\\u\\\\f.bin\" (1.5 KiB, 1536 bytes)\n  plain: unencrypted, unauthenticated (the address proves nothing)\n  name a path: stored under its last part \"f.bin\"\n  to {};",
                store().dir().join("f.bin").display()
            )),
            "{text}"
        );
        let korean = Ask {
            name: Box::leak(Box::new(
                read_request_name(b"\xbb\xe7\xc1\xf8.jpg").unwrap(),
            )),
            ..path
        };
        let text = question(&korean, "사진.jpg", 0);
        assert!(
            text.contains(
                "wants to send \"사진.jpg\" (1.5 KiB, 1536 bytes)\n  plain: unencrypted, unauthenticated (the address proves nothing)\n  name decoded from CP949\n  to "
            ),
            "{text}"
        );
    }
}
