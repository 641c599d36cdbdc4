//! Starting the real binaries and talking to them, every wait bounded by [`TIMEOUT`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

/// The most any single step of a test may wait.
pub const TIMEOUT: Duration = Duration::from_secs(20);

// PROTOCOL.md's captured bytes, shared with the unit tests rather than copied.
#[path = "../src/golden.rs"]
mod golden;
pub use golden::{GOLDEN_DATA, GOLDEN_REQUEST, GOLDEN_RESPONSE, GOLDEN_RESULT};

/// A server binary running in the background; killed when dropped.
pub struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stdin: Option<ChildStdin>,
    /// The address it printed in its `listening on` line.
    pub addr: SocketAddr,
}

/// What the operator's standard input holds.
pub enum Input<'a> {
    /// A pipe the test writes answers into with [`Running::answer`].
    Pipe,
    /// These bytes, then end of file.
    Text(&'a str),
}

impl Running {
    /// `fup-server --port 0 --bind 127.0.0.1 DIR EXTRA…`.
    pub fn fup_server(dir: &Path, extra: &[&str], input: Input<'_>) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
        cmd.args(["--port", "0", "--bind", "127.0.0.1"])
            .arg(dir)
            .args(extra);
        Running::start(cmd, input)
    }

    /// `echo-server 127.0.0.1 --port 0`.
    pub fn echo_server() -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-server"));
        cmd.args(["127.0.0.1", "--port", "0"]);
        Running::start(cmd, Input::Text(""))
    }

    fn start(mut cmd: Command, input: Input<'_>) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server binary");
        let mut stdin = child.stdin.take();
        if let Input::Text(text) = input {
            let mut pipe = stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
            // Dropping the pipe is the end of file.
        }
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut running = Running {
            child,
            stdout,
            stderr,
            stdin,
            addr: ([0, 0, 0, 0], 0).into(),
        };
        let first = running.line();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"));
        running.addr = addr.parse().unwrap();
        assert_eq!(running.addr.ip().to_string(), "127.0.0.1");
        assert_ne!(running.addr.port(), 0);
        running
    }

    /// The port, as a string for command lines.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The next line on standard output.
    pub fn line(&self) -> String {
        self.stdout
            .recv_timeout(TIMEOUT)
            .expect("a line on the server's stdout in time")
    }

    /// The next line on standard error.
    pub fn err_line(&self) -> String {
        self.stderr
            .recv_timeout(TIMEOUT)
            .expect("a line on the server's stderr in time")
    }

    /// Types an answer at the prompt.
    pub fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("started with Input::Pipe");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards each line of `pipe` to a channel, so reads can have a deadline.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs a binary to completion (at most [`TIMEOUT`]).
pub fn run(bin: &str, args: &[&str]) -> Output {
    assert_cmd::Command::new(bin)
        .args(args)
        .timeout(TIMEOUT)
        .output()
        .expect("run binary")
}

/// Runs `fup-client` against `port` on 127.0.0.1 with `args` (files and options).
pub fn fup_client(port: &str, args: &[&str]) -> Output {
    let mut all = vec!["--port", port, "127.0.0.1"];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_fup-client"), &all)
}

/// Standard output and error as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A connection to `addr` with [`TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads everything until the peer closes; a reset counts as closed, a timeout fails the test.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("connection was not closed: {err}"),
    }
    got
}

/// A fake server on 127.0.0.1 for one connection: records what the client sends until it
/// closes, after replying `script` in order, one part per message the client sends.
pub fn fake_server(script: Vec<Vec<u8>>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        for part in script {
            stream.write_all(&part).unwrap();
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        read_until_closed(&mut stream)
    });
    (addr, handle)
}

/// Deterministic test data of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}
