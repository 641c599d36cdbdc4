//! Who decides whether an upload is accepted: the [`Approve`] trait, an accept-all policy, and
//! the operator at a terminal, asked one question at a time in arrival order.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::display;
use crate::message::Verdict;

/// How often a waiting question checks whether its client is still there.
const POLL: Duration = Duration::from_millis(100);

/// What the operator is asked about: one upload request whose name has already passed
/// [`check_name`](crate::store::check_name).
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The file's name, as the client sent it.
    pub name: &'a str,
    /// The file's size in bytes, as announced.
    pub size: u64,
    /// The name it will be stored under: `name`, or `name (1).ext`… when `name` exists.
    pub save_as: &'a str,
    /// Whether the client has hung up; an approver that waits should give up then.
    pub gone: &'a dyn Fn() -> bool,
}

impl fmt::Debug for Ask<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("peer", &self.peer)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("save_as", &self.save_as)
            .finish_non_exhaustive()
    }
}

/// Decides on upload requests. Called from many connection threads at once.
pub trait Approve: Send + Sync {
    /// Returns the verdict on one request; blocking here holds only that connection.
    fn approve(&self, ask: &Ask<'_>) -> Verdict;
}

impl<F: Fn(&Ask<'_>) -> Verdict + Send + Sync> Approve for F {
    fn approve(&self, ask: &Ask<'_>) -> Verdict {
        self(ask)
    }
}

/// Accepts every request without asking (`fup-server --yes`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl Approve for AcceptAll {
    fn approve(&self, _: &Ask<'_>) -> Verdict {
        Verdict::Accepted
    }
}

/// Asks an operator: writes a question to `W` and takes one line of answer from an input read
/// by a thread of its own (so that a question can time out).
///
/// `y` or `yes` in any case accepts; anything else, an empty line included, denies. Once the
/// input is at end of file every request is denied, with a line pointing at `--yes`. Exactly
/// one question is on screen at a time; the others wait in arrival order, and one whose
/// client hangs up leaves the queue. A question unanswered within the prompt timeout is
/// denied, and an answer typed after that is not taken for the next question.
pub struct TerminalApprover<W> {
    queue: Mutex<Queue>,
    turn: Condvar,
    io: Mutex<Terminal<W>>,
    prompt_timeout: Option<Duration>,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: VecDeque<u64>,
}

struct Terminal<W> {
    answers: Receiver<String>,
    output: W,
    /// The last question ended without its answer; lines already typed are late answers.
    stale: bool,
}

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
                    // End of input, or an unreadable one, both end the answers.
                    match input.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if tx.send(line).is_err() => break,
                        Ok(_) => {}
                    }
                }
            })?;
        Ok(TerminalApprover {
            queue: Mutex::default(),
            turn: Condvar::new(),
            io: Mutex::new(Terminal {
                answers,
                output,
                stale: false,
            }),
            prompt_timeout,
        })
    }

    /// Waits for this question's turn; `None` if the client hung up first.
    fn take_turn(&self, gone: &dyn Fn() -> bool) -> Option<Turn<'_, W>> {
        let mut queue = lock(&self.queue);
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(ticket);
        loop {
            if queue.waiting.front() == Some(&ticket) {
                return Some(Turn {
                    approver: self,
                    ticket,
                });
            }
            queue = self
                .turn
                .wait_timeout(queue, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if gone() {
                queue.waiting.retain(|&t| t != ticket);
                self.turn.notify_all();
                return None;
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
        queue.waiting.retain(|&t| t != self.ticket);
        self.approver.turn.notify_all();
    }
}

impl<W: Write + Send> Approve for TerminalApprover<W> {
    fn approve(&self, ask: &Ask<'_>) -> Verdict {
        let Some(_turn) = self.take_turn(ask.gone) else {
            return Verdict::Denied;
        };
        let mut term = lock(&self.io);
        let term = &mut *term;
        if term.stale {
            while term.answers.try_recv().is_ok() {}
            term.stale = false;
        }
        let out = &mut term.output;
        let _ = write!(
            out,
            "{} wants to send \"{}\" ({}, {} bytes)",
            ask.peer,
            display::escape(ask.name),
            display::bytes(ask.size),
            ask.size
        );
        if ask.save_as != ask.name {
            let _ = write!(
                out,
                ", to be saved as \"{}\" (exists, keeping both)",
                display::escape(ask.save_as)
            );
        }
        let _ = write!(out, ". accept? [y/N] ");
        let _ = out.flush();
        let deadline = self
            .prompt_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let verdict = loop {
            let wait = deadline.map_or(POLL, |d| {
                d.saturating_duration_since(Instant::now()).min(POLL)
            });
            match term.answers.recv_timeout(wait) {
                Ok(answer) => {
                    break if is_yes(&answer) {
                        Verdict::Accepted
                    } else {
                        Verdict::Denied
                    };
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = writeln!(
                        out,
                        "\nno answer: standard input is closed, so the upload is denied \
                         (start fup-server with --yes to accept every upload)"
                    );
                    break Verdict::Denied;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if (ask.gone)() {
                        let _ = writeln!(out, "\n{} hung up; question withdrawn", ask.peer);
                        term.stale = true;
                        break Verdict::Denied;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let secs = self.prompt_timeout.unwrap_or_default().as_secs_f64();
                        let _ =
                            writeln!(out, "\nno answer within {secs} s, so the upload is denied");
                        term.stale = true;
                        break Verdict::Denied;
                    }
                }
            }
        };
        let _ = out.flush();
        verdict
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked mid-question leaves the queue and terminal usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_yes(answer: &str) -> bool {
    let answer = answer.trim();
    answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn never() -> bool {
        false
    }

    /// Waits (at most 10 s) until `needle` is on the screen.
    fn wait_for(screen: &Screen, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !screen.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
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

    fn ask<'a>(name: &'a str, save_as: &'a str, gone: &'a dyn Fn() -> bool) -> Ask<'a> {
        Ask {
            peer: "127.0.0.1:4000".parse().unwrap(),
            name,
            size: 1536,
            save_as,
            gone,
        }
    }

    fn ask_all(input: &str, questions: usize) -> (Vec<Verdict>, String) {
        let screen = Screen::default();
        let approver =
            TerminalApprover::new(Cursor::new(input.to_string()), screen.clone(), None).unwrap();
        let verdicts = (0..questions)
            .map(|_| approver.approve(&ask("a\u{1b}[2J.txt", "a\u{1b}[2J.txt", &never)))
            .collect();
        (verdicts, screen.text())
    }

    #[test]
    fn answers_are_read_one_line_per_question() {
        use Verdict::*;
        let (verdicts, output) = ask_all("y\nYES\n\nno\nyess\n Yes \n", 7);
        assert_eq!(
            verdicts,
            [Accepted, Accepted, Denied, Denied, Denied, Accepted, Denied]
        );
        assert!(output.contains(
            r#"127.0.0.1:4000 wants to send "a\u{1b}[2J.txt" (1.5 KiB, 1536 bytes). accept? [y/N] "#
        ));
        assert!(!output.contains('\u{1b}'));
        assert_eq!(output.matches("--yes").count(), 1, "{output}");
    }

    #[test]
    fn end_of_input_denies_every_request() {
        let (verdicts, output) = ask_all("", 2);
        assert_eq!(verdicts, [Verdict::Denied, Verdict::Denied]);
        assert_eq!(output.matches("standard input is closed").count(), 2);
    }

    #[test]
    fn prompt_shows_the_name_it_will_be_saved_under() {
        let screen = Screen::default();
        let approver =
            TerminalApprover::new(Cursor::new("y\n".to_string()), screen.clone(), None).unwrap();
        approver.approve(&ask("a.txt", "a (1).txt", &never));
        assert!(screen.text().contains(r#"wants to send "a.txt" (1.5 KiB, 1536 bytes), to be saved as "a (1).txt" (exists, keeping both). accept? [y/N] "#), "{}", screen.text());
    }

    #[test]
    fn unanswered_question_times_out_and_late_answers_are_dropped() {
        let (tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = TerminalApprover {
            queue: Mutex::default(),
            turn: Condvar::new(),
            io: Mutex::new(Terminal {
                answers: rx,
                output: screen.clone(),
                stale: false,
            }),
            prompt_timeout: Some(Duration::from_millis(50)),
        };
        assert_eq!(approver.approve(&ask("a", "a", &never)), Verdict::Denied);
        assert!(
            screen.text().contains("no answer within 0.05 s"),
            "{}",
            screen.text()
        );
        // "y" typed too late (no question on screen) must not accept the next question.
        tx.send("y\n".into()).unwrap();
        assert_eq!(approver.approve(&ask("b", "b", &never)), Verdict::Denied);
        let typist = answer_when_asked(&screen, &tx, "c", "y\n");
        assert_eq!(approver.approve(&ask("c", "c", &never)), Verdict::Accepted);
        typist.join().unwrap();
    }

    #[test]
    fn client_that_hangs_up_leaves_the_queue() {
        let (tx, rx) = mpsc::channel::<String>();
        let screen = Screen::default();
        let approver = Arc::new(TerminalApprover {
            queue: Mutex::default(),
            turn: Condvar::new(),
            io: Mutex::new(Terminal {
                answers: rx,
                output: screen.clone(),
                stale: false,
            }),
            prompt_timeout: None,
        });
        // The first question holds the screen until its client hangs up.
        let first_gone = Arc::new(AtomicBool::new(false));
        let first = {
            let (approver, gone) = (Arc::clone(&approver), Arc::clone(&first_gone));
            thread::spawn(move || {
                approver.approve(&ask("first", "first", &|| gone.load(Ordering::SeqCst)))
            })
        };
        wait_for(&screen, "\"first\"");
        // A second one queued behind it hangs up while waiting: it leaves without a question.
        let second = approver.approve(&ask("second", "second", &|| true));
        assert_eq!(second, Verdict::Denied);
        assert!(!screen.text().contains("\"second\""));
        first_gone.store(true, Ordering::SeqCst);
        assert_eq!(first.join().unwrap(), Verdict::Denied);
        assert!(screen.text().contains("hung up; question withdrawn"));
        // The next question gets the next answer.
        let typist = answer_when_asked(&screen, &tx, "third", "y\n");
        assert_eq!(
            approver.approve(&ask("third", "third", &never)),
            Verdict::Accepted
        );
        typist.join().unwrap();
    }

    #[test]
    fn closures_and_accept_all_approve() {
        let a = ask("x", "x", &never);
        let deny = |_: &Ask<'_>| Verdict::Denied;
        assert_eq!(deny.approve(&a), Verdict::Denied);
        assert_eq!(AcceptAll.approve(&a), Verdict::Accepted);
    }
}
