//! Who decides whether an upload is accepted: the [`Approve`] trait, an accept-all policy, and
//! the operator at a terminal, asked one question at a time.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::display;
use crate::message::Verdict;

/// What the operator is asked about: one upload request whose name has already passed
/// [`check_name`](crate::store::check_name).
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The file's name, as the client sent it.
    pub name: &'a str,
    /// The file's size in bytes, as announced.
    pub size: u64,
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

/// Asks an operator: writes a question to `W` and reads one line of answer from `R`.
///
/// `y` or `yes` in any case accepts; anything else, an empty line included, denies. Once `R`
/// is at end of file every request is denied, with a line pointing at `--yes`. A mutex keeps
/// exactly one question on screen: other connections wait their turn.
#[derive(Debug)]
pub struct TerminalApprover<R, W> {
    io: Mutex<(R, W)>,
}

impl<R: BufRead + Send, W: Write + Send> TerminalApprover<R, W> {
    /// An approver reading answers from `input` and writing questions to `output`.
    pub fn new(input: R, output: W) -> TerminalApprover<R, W> {
        TerminalApprover {
            io: Mutex::new((input, output)),
        }
    }
}

impl<R: BufRead + Send, W: Write + Send> Approve for TerminalApprover<R, W> {
    fn approve(&self, ask: &Ask<'_>) -> Verdict {
        // A thread that panicked while asking leaves the reader and writer usable.
        let mut guard = self
            .io
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (input, output) = &mut *guard;
        let _ = write!(
            output,
            "{} wants to send \"{}\" ({}, {} bytes). accept? [y/N] ",
            ask.peer,
            display::escape(ask.name),
            display::bytes(ask.size),
            ask.size,
        );
        let _ = output.flush();
        let mut answer = String::new();
        let verdict = match input.read_line(&mut answer) {
            Ok(0) => {
                let _ = writeln!(
                    output,
                    "\nno answer: standard input is closed, so the upload is denied \
                     (start fup-server with --yes to accept every upload)"
                );
                Verdict::Denied
            }
            Ok(_) if is_yes(&answer) => Verdict::Accepted,
            Ok(_) => Verdict::Denied,
            Err(err) => {
                let _ = writeln!(
                    output,
                    "\ncannot read the answer ({err}), so the upload is denied"
                );
                Verdict::Denied
            }
        };
        let _ = output.flush();
        verdict
    }
}

fn is_yes(answer: &str) -> bool {
    let answer = answer.trim();
    answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask_all(input: &str, questions: usize) -> (Vec<Verdict>, String) {
        let approver = TerminalApprover::new(input.as_bytes(), Vec::new());
        let ask = Ask {
            peer: "127.0.0.1:4000".parse().unwrap(),
            name: "a\u{1b}[2J.txt",
            size: 1536,
        };
        let verdicts = (0..questions).map(|_| approver.approve(&ask)).collect();
        let (_, output) = approver.io.into_inner().unwrap();
        (verdicts, String::from_utf8(output).unwrap())
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
    fn closures_and_accept_all_approve() {
        let ask = Ask {
            peer: "127.0.0.1:1".parse().unwrap(),
            name: "x",
            size: 0,
        };
        let deny = |_: &Ask<'_>| Verdict::Denied;
        assert_eq!(deny.approve(&ask), Verdict::Denied);
        assert_eq!(AcceptAll.approve(&ask), Verdict::Accepted);
    }
}
