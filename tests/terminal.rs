//! The server's terminal as a person sees it: fup-server in a pseudo-terminal of 64
//! columns, its output rendered by a terminal emulator (vt100), and the three display bugs:
//! lines that wrap and leave stale copies, typed input erased, live lines on a dumb terminal.
//! Also: started in the background of a shell with job control, it is not stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU16;
use std::process::Command;
use std::thread;
use std::time::Duration;

use rexpect::session::{PtySession, spawn_command};

use crate::util::*;

const COLS: u16 = 64;
const ROWS: u16 = 24;

/// A program in a pty of [`COLS`] × [`ROWS`], with everything it printed kept for rendering.
struct Pty {
    session: PtySession,
    seen: String,
    cols: u16,
}

impl Pty {
    /// Runs `command` (a shell command line) in a pty, with `TERM` set to `term`.
    fn run(command: &str, term: &str) -> Pty {
        Pty::sized(command, term, COLS)
    }

    /// Like [`Pty::run`] in a pty of `cols` columns.
    fn sized(command: &str, term: &str, cols: u16) -> Pty {
        let mut cmd = Command::new("bash");
        with_config(&mut cmd)
            .args([
                "-c",
                // As a terminal is at a shell prompt: echoing what is typed (rexpect turns it off).
                &format!("stty cols {cols} rows {ROWS} echo 2>/dev/null; {command}"),
            ])
            .env("TERM", term);
        let session = spawn_command(cmd, Some(TIMEOUT.as_millis() as u64)).expect("spawn in a pty");
        Pty {
            session,
            seen: String::new(),
            cols,
        }
    }

    /// Waits for `needle`; returns what came before it.
    fn expect(&mut self, needle: &str) -> String {
        let before = self
            .session
            .exp_string(needle)
            .unwrap_or_else(|e| panic!("{needle:?} never came: {e}; seen {:?}", self.seen));
        self.seen.push_str(&before);
        self.seen.push_str(needle);
        before
    }

    /// Waits for the `listening on 127.0.0.1:PORT` line; returns the port.
    fn port(&mut self) -> String {
        let (before, line) = self
            .session
            .exp_regex(r"listening on 127\.0\.0\.1:\d+")
            .unwrap();
        self.seen.push_str(&before);
        self.seen.push_str(&line);
        line.rsplit(':').next().unwrap().to_string()
    }

    /// Waits for the `identity: ID` line; returns the identity.
    fn identity(&mut self) -> String {
        let (before, line) = self.session.exp_regex(r"identity: [A-Z2-7-]{63}").unwrap();
        self.seen.push_str(&before);
        self.seen.push_str(&line);
        line["identity: ".len()..].to_string()
    }

    /// Waits for the program to end; keeps what it printed until then.
    fn end(&mut self) {
        let rest = self.session.exp_eof().unwrap();
        self.seen.push_str(&rest);
    }

    /// Every line as drawn: what was printed, cut at each carriage return and newline, with
    /// escape sequences taken out.
    fn drawn(&self) -> Vec<String> {
        let printed = String::from_utf8_lossy(&self.bytes()).into_owned();
        let mut lines = Vec::new();
        let mut line = String::new();
        let mut chars = printed.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' | '\n' => lines.push(std::mem::take(&mut line)),
                // CSI: ESC [ parameters, then a final byte in @..~.
                '\x1b' if chars.peek() == Some(&'[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                c => line.push(c),
            }
        }
        lines.push(line);
        lines.retain(|l| !l.is_empty());
        lines
    }

    fn send(&mut self, text: &str) {
        self.session.send(text).unwrap();
        self.session.flush().unwrap();
    }

    /// The bytes printed so far: rexpect hands each byte over as one `char`.
    fn bytes(&self) -> Vec<u8> {
        self.seen.chars().map(|c| c as u32 as u8).collect()
    }

    /// The screen's rows now, as the emulator renders what was printed.
    fn screen(&self) -> Vec<String> {
        let size = |n| NonZeroU16::new(n).unwrap();
        let mut parser = vt100::Parser::new(size(ROWS), size(self.cols), 0);
        parser.process(&self.bytes());
        parser.screen().rows(0, self.cols).collect()
    }
}

fn fup_server(extra: &str, dir: &std::path::Path) -> String {
    format!(
        "exec {} --port 0 --bind 127.0.0.1 {extra} {}",
        env!("CARGO_BIN_EXE_fup-server"),
        dir.display()
    )
}

/// An upload of `chunks` × 1000 bytes under a long name, trickled so that the server redraws
/// its status line many times; returns the result bytes.
fn trickle(port: &str, name: &str, chunks: u16) -> thread::JoinHandle<Vec<u8>> {
    let (port, name) = (port.to_string(), name.to_string());
    thread::spawn(move || {
        let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
            .write_all(&request(u64::from(chunks) * 1000, &name))
            .unwrap();
        let mut response = [0; 21];
        stream.read_exact(&mut response).unwrap();
        for seq in 0..chunks {
            stream
                .write_all(&data(1, seq, seq + 1 == chunks, &[b'x'; 1000]))
                .unwrap();
            // Slower than the server's progress throttle (100 ms), so each one is drawn.
            thread::sleep(Duration::from_millis(120));
        }
        read_until_closed(&mut stream)
    })
}

// Before: at 64 columns, a status line wrapped and every redraw left a stale copy.
#[test]
fn status_lines_fit_a_narrow_terminal_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::run(&fup_server("--yes --no-web", dir.path()), "xterm");
    let port = pty.port();
    let name = "a file with a long name, longer than the terminal is wide.bin";
    let upload = trickle(&port, name, 12);
    pty.expect("receiving");
    pty.expect("stored");
    pty.expect("(accepted: --yes)");
    assert_eq!(&upload.join().unwrap()[16..], &[1, 0, 0, 0, 1]);
    let screen = pty.screen();
    let used: Vec<&String> = screen.iter().filter(|r| !r.is_empty()).collect();
    // The listening line, the identity line (2 rows at 64 columns) and the stored line (3
    // rows): each wraps, but is printed once, never redrawn.
    assert!(used.len() <= 6, "stale lines: {screen:#?}");
    assert!(
        !screen.iter().any(|r| r.contains("receiving")),
        "{screen:#?}"
    );
    let printed = String::from_utf8(pty.bytes()).unwrap();
    assert!(
        printed.contains("…"),
        "the status line was cut to the width"
    );
    for line in printed.split("\r\n").filter(|l| l.contains("receiving")) {
        let shown = line.rsplit("\x1b[J").next().unwrap();
        assert!(shown.chars().count() < usize::from(COLS), "{shown:?}");
    }
}

/// Lines drawn over one another (a bar, a status line) never wrap: what each shows is
/// narrower than the terminal, whose last column is left free (indicatif fills the rest of a
/// bar's row with spaces, leaving the cursor at its end, which is not a wrap).
fn assert_fit(lines: &[&String], cols: u16) {
    for line in lines {
        let width = line.trim_end().chars().count();
        assert!(
            width < usize::from(cols),
            "{width} columns of {cols}: {line:?}"
        );
    }
}

#[test]
fn live_lines_move_and_fit_64_and_80_columns_during_a_secure_upload() {
    let src = tempfile::tempdir().unwrap();
    let name = "a secure upload with a name longer than any of these terminals is wide.bin";
    let file = src.path().join(name);
    std::fs::write(&file, pattern(3 << 20)).unwrap();
    for cols in [64, 80] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Pty::sized(&fup_server("--yes", dir.path()), "xterm", cols);
        let port = server.port();
        let id = server.identity();
        // 3 MiB at 1.5 MiB/s: about two seconds of live lines on both sides.
        let slow = Throttle::start(format!("127.0.0.1:{port}").parse().unwrap(), 3 << 19);
        let client = format!(
            // Small data messages: the server's line moves with each.
            "exec {} --pin {id} --chunk-size 64K -p {} 127.0.0.1 '{}'",
            env!("CARGO_BIN_EXE_fup-client"),
            slow.port,
            file.display()
        );
        let mut client = Pty::sized(&client, "xterm", cols);
        server.expect("receiving");
        server.expect("stored \"a secure upload");
        client.expect("stored, secure, verified");
        client.end();
        // The server's status line moved while the file was on its way: several figures.
        let server_drawn = server.drawn();
        let status: Vec<&String> = server_drawn
            .iter()
            .filter(|l| l.starts_with("receiving"))
            .collect();
        let mut figures: Vec<&str> = status
            .iter()
            .filter_map(|l| l.split(" / ").next()?.rsplit("\" ").next())
            .collect();
        figures.dedup();
        assert!(figures.len() >= 3, "{cols} columns: {status:#?}");
        assert_fit(&status, cols);
        // The client's bar too, cut to the width with the name shortened.
        let drawn = client.drawn();
        let bars: Vec<&String> = drawn
            .iter()
            .filter(|l| l.starts_with('"') && l.contains("/s"))
            .collect();
        assert!(bars.len() >= 3, "{cols} columns: {drawn:#?}");
        assert!(bars.iter().all(|l| l.contains('…')), "{bars:#?}");
        assert_fit(&bars, cols);
        let waiting: Vec<&String> = drawn.iter().filter(|l| l.contains("waiting")).collect();
        assert_fit(&waiting, cols);
    }
}

// Before: typing "ye", a log line arrived and redrew the prompt empty; "s" then accepted.
#[test]
fn typed_input_stays_on_screen_when_a_log_line_arrives() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::run(&fup_server("", dir.path()), "xterm");
    let port = pty.port();
    let file = src.path().join("q.txt");
    std::fs::write(&file, b"question").unwrap();
    let client = {
        let (port, file) = (port.clone(), file.clone());
        thread::spawn(move || fup_client(&port, &[file.to_str().unwrap()]).status.code())
    };
    pty.expect("accept? [y/N/a] ");
    pty.send("ye");
    pty.expect("ye");
    // Another client's upload is refused meanwhile: a log line while the operator types.
    let mut other = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    other.write_all(&request(1, ".hidden")).unwrap();
    pty.expect("name starts with a dot");
    pty.send("s\r");
    pty.expect("stored \"q.txt\"");
    assert_eq!(client.join().unwrap(), Some(0));
    let screen = pty.screen();
    let prompt = screen
        .iter()
        .position(|r| r.starts_with("accept? [y/N/a]"))
        .unwrap_or_else(|| panic!("{screen:#?}"));
    assert_eq!(screen[prompt], "accept? [y/N/a] yes", "{screen:#?}");
    assert!(
        screen[..prompt]
            .iter()
            .any(|r| r.starts_with("refused \".hidden\"")),
        "the log line is above the prompt: {screen:#?}"
    );
}

// Before: TERM=dumb was ignored.
#[test]
fn nothing_live_on_a_dumb_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::run(&fup_server("--yes", dir.path()), "dumb");
    let port = pty.port();
    let upload = trickle(&port, "dumb.bin", 5);
    pty.expect("stored \"dumb.bin\"");
    pty.expect("(accepted: --yes)");
    upload.join().unwrap();
    assert!(
        !pty.seen.contains('\x1b'),
        "escape sequences: {:?}",
        pty.seen
    );
    assert!(!pty.seen.contains("receiving"), "{:?}", pty.seen);
}

// Before: `fup-server DIR &` was stopped at once, its port still bound.
#[test]
fn in_the_background_it_keeps_serving_and_questions_time_out_saying_why() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A shell with job control (set -m): the server is a background job, not in the
    // terminal's foreground process group, as after `fup-server DIR &` at a prompt.
    let server = fup_server("--prompt-timeout 1 --max-size 4", dir.path());
    let mut pty = Pty::run(&format!("set -m; {} & wait", &server[5..]), "xterm");
    let port = pty.port();
    // Its own process group is out of reach of the pty's hang-up: stopped by hand at the end.
    let pid = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("^\\S*fup-server --port 0 .* {}$", dir.path().display()),
        ])
        .output()
        .unwrap();
    let pid = String::from_utf8(pid.stdout).unwrap().trim().to_string();
    assert!(
        !pid.is_empty() && !pid.contains('\n'),
        "one server: {pid:?}"
    );
    let file = |name: &str, len: usize| {
        let path = src.path().join(name);
        std::fs::write(&path, vec![b'b'; len]).unwrap();
        path.to_str().unwrap().to_string()
    };
    // A policy decision is served at once.
    let out = fup_client(&port, &[&file("big.bin", 10)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("denied by server"));
    pty.expect("larger than --max-size");
    // A question waits, says why, and is denied after --prompt-timeout.
    let out = fup_client(&port, &[&file("q.bin", 2)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    pty.expect("runs in the background: bring it back with fg to answer");
    pty.expect("no answer within 1 s: fup-server runs in the background (fg brings it back)");
    signal(pid.parse().unwrap(), "TERM");
}

// On a terminal, the page's address comes with a QR code a phone can scan.
#[test]
fn the_page_address_comes_with_a_qr_code_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::run(&fup_server("--yes", dir.path()), "xterm");
    let port = pty.port();
    pty.expect(&format!("web: http://127.0.0.1:{port}/"));
    // The pty's text comes byte by byte: the code's last row (upper half blocks), as bytes.
    let as_bytes = |text: &str| -> String { text.bytes().map(char::from).collect() };
    pty.expect(&as_bytes(&format!("{}\r\n", "\u{2580}".repeat(25 + 8))));
    let printed = String::from_utf8(pty.bytes()).unwrap();
    let blocks = |c: char| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}');
    let rows: Vec<&str> = printed
        .split("\r\n")
        .filter(|row| !row.is_empty() && row.chars().all(blocks))
        .collect();
    // A version-2 code with its quiet zone, two modules per row.
    assert_eq!(rows.len(), (25_usize + 8).div_ceil(2), "{printed}");
    assert!(
        rows.iter().all(|row| row.chars().count() == 25 + 8),
        "{printed}"
    );
    // Scanners read dark on light: the quiet zone (light) is drawn as full blocks.
    assert!(rows[0].chars().all(|c| c == '\u{2588}'), "{printed}");
}
