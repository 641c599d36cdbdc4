//! Starting the real binaries and talking to them, every wait bounded by [`TIMEOUT`].

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use fup::batch::frame::{self, Frame, VERDICT};
use fup::net::Conn;
use fup::secure::dial::{Dialer, Link, Mode};
use fup::secure::files::HostPort;

/// The most any single step of a test may wait.
pub const TIMEOUT: Duration = Duration::from_secs(20);

// PROTOCOL.md's captured bytes, shared with the unit tests rather than copied.
#[path = "../src/wire/golden.rs"]
mod golden;
pub use golden::{GOLDEN_DATA, GOLDEN_REQUEST, GOLDEN_RESPONSE, GOLDEN_RESULT};

/// The configuration directory every binary started here uses unless a test sets
/// `FUP_CONFIG_DIR` itself: one per test run (under cargo's target tmp), its key made once
/// here, so every server and client of the run has the same identity and pins always agree
/// whatever port a server gets. Tests of identities give each side a directory of its own.
pub fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("config-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        fup::secure::Keys::load_or_create(&dir).unwrap();
        dir
    })
}

/// The identity of every server and client that uses [`config_dir`].
pub fn shared_identity() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        fup::secure::Keys::load_or_create(config_dir())
            .unwrap()
            .identity()
            .to_string()
    })
    .clone()
}

/// Pins [`shared_identity`] for 127.0.0.1:`port` in [`config_dir`]'s known_hosts, as a
/// client that met that server before would have: no first-contact note in the tests that
/// are not about it. (Servers on that port with other identities are met only by clients
/// with directories of their own.)
pub fn pin_shared(port: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let file = config_dir().join("known_hosts");
    let line = format!("127.0.0.1:{port} {}\n", shared_identity());
    let known = std::fs::read_to_string(&file).unwrap_or_default();
    if !known.contains(&line) {
        use std::io::Write as _;
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&file)
            .unwrap();
        out.write_all(line.as_bytes()).unwrap();
    }
}

/// Sets `FUP_CONFIG_DIR` to [`config_dir`] unless `cmd` sets it already.
pub fn with_config(cmd: &mut Command) -> &mut Command {
    if !cmd.get_envs().any(|(key, _)| key == "FUP_CONFIG_DIR") {
        cmd.env("FUP_CONFIG_DIR", config_dir());
    }
    cmd
}

/// A server binary running in the background; killed when dropped.
pub struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stdin: Option<ChildStdin>,
    /// The address it printed in its `listening on` line.
    pub addr: SocketAddr,
    /// That first line, as printed.
    pub ready: String,
    /// The `identity: ID` line that follows it (fup-server), once read.
    identity: RefCell<Option<String>>,
    /// The lines about the page, once read.
    web: RefCell<Vec<String>>,
    /// Lines read while looking for those, still to be returned.
    pending: RefCell<std::collections::VecDeque<String>>,
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

    /// `fup-server --port 0 --bind 127.0.0.1 EXTRA DIR` under a 64 KiB file-size limit: an
    /// upload past it fails (EFBIG: the server ignores SIGXFSZ) and the server goes on.
    pub fn limited_fup_server(dir: &Path, extra: &str, input: Input<'_>) -> Running {
        let script = format!(
            "ulimit -f 64 && exec {} --port 0 --bind 127.0.0.1 {extra} {}",
            env!("CARGO_BIN_EXE_fup-server"),
            dir.display()
        );
        Running::command(Command::new("bash").args(["-c", &script]), input)
    }

    /// `echo-server 127.0.0.1 --port 0`.
    pub fn echo_server() -> Running {
        Running::echo_server_with(&[])
    }

    /// `echo-server 127.0.0.1 --port 0 EXTRA…`.
    pub fn echo_server_with(extra: &[&str]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-server"));
        cmd.args(["127.0.0.1", "--port", "0"]).args(extra);
        Running::start(cmd, Input::Text(""))
    }

    /// Any command that starts a server printing `listening on` first (its program,
    /// arguments and environment).
    pub fn command(cmd: &mut Command, input: Input<'_>) -> Running {
        Running::start(Running::owned(cmd), input)
    }

    /// Like [`Running::command`] for a server on a loopback address other than 127.0.0.1.
    pub fn command_any_address(cmd: &mut Command, input: Input<'_>) -> Running {
        Running::start_on(Running::owned(cmd), input, |addr| {
            assert!(addr.ip().is_loopback(), "{addr}")
        })
    }

    /// Like [`Running::command`] for a server bound to every interface (in a network
    /// namespace of the test's own: nothing outside can reach it).
    pub fn command_every_interface(cmd: &mut Command, input: Input<'_>) -> Running {
        Running::start_on(Running::owned(cmd), input, |addr| {
            assert!(addr.ip().is_unspecified(), "{addr}")
        })
    }

    /// A copy of `cmd` (program, arguments, environment) that this module can set up.
    fn owned(cmd: &Command) -> Command {
        let mut owned = Command::new(cmd.get_program());
        owned.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => owned.env(key, value),
                None => owned.env_remove(key),
            };
        }
        owned
    }

    fn start(cmd: Command, input: Input<'_>) -> Running {
        Running::start_on(cmd, input, |addr| {
            assert_eq!(addr.ip().to_string(), "127.0.0.1")
        })
    }

    fn start_on(mut cmd: Command, input: Input<'_>, check: fn(&SocketAddr)) -> Running {
        let mut child = with_config(&mut cmd)
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
            ready: String::new(),
            identity: RefCell::new(None),
            web: RefCell::new(Vec::new()),
            pending: RefCell::default(),
        };
        let first = running.next_line();
        // `listening on ADDR`, or `{"listening":"ADDR","identity":ID}` with --json.
        let addr = match first.strip_prefix("listening on ") {
            Some(addr) => addr.to_string(),
            None => {
                let json = serde_json::from_str::<serde_json::Value>(&first)
                    .unwrap_or_else(|_| panic!("first line: {first:?}"));
                if let Some(id) = json["identity"].as_str() {
                    *running.identity.borrow_mut() = Some(id.to_string());
                }
                json["listening"]
                    .as_str()
                    .unwrap_or_else(|| panic!("first line: {first:?}"))
                    .to_string()
            }
        };
        running.addr = addr.parse().unwrap();
        running.ready = first;
        check(&running.addr);
        assert_ne!(running.addr.port(), 0);
        running
    }

    /// The port, as a string for command lines.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The next line on standard output, without the timestamp that starts a log line when
    /// stdout is not a terminal (tests of it use [`Running::raw_line`]).
    pub fn line(&self) -> String {
        let line = self.raw_line();
        match stamp_len(&line) {
            Some(len) => line[len..].to_string(),
            None => line,
        }
    }

    /// The next line on standard output, as printed (after fup-server's `identity:` line).
    pub fn raw_line(&self) -> String {
        let line = self.next_line();
        if self.identity.borrow().is_none()
            && let Some(id) = line.strip_prefix("identity: ")
        {
            *self.identity.borrow_mut() = Some(id.to_string());
            return self.next_line();
        }
        line
    }

    /// The next line on standard output; fup-server's lines about its page (`web: URL`, its
    /// certificate) are kept aside for [`Running::web`].
    fn next_line(&self) -> String {
        if let Some(line) = self.pending.borrow_mut().pop_front() {
            return line;
        }
        loop {
            let line = self
                .stdout
                .recv_timeout(TIMEOUT)
                .expect("a line on the server's stdout in time");
            if line.starts_with("web: ") || line.starts_with("web certificate") {
                self.web.borrow_mut().push(line);
                continue;
            }
            return line;
        }
    }

    /// The next line on standard output within `wait`, if one comes (timestamp removed).
    pub fn try_line(&self, wait: Duration) -> Option<String> {
        let line = self.stdout.recv_timeout(wait).ok()?;
        Some(match stamp_len(&line) {
            Some(len) => line[len..].to_string(),
            None => line,
        })
    }

    /// fup-server's lines about its page seen so far, without waiting for more.
    pub fn web_seen(&self) -> Vec<String> {
        self.web.borrow().clone()
    }

    /// fup-server's lines about its page (`web: URL`…, then its certificate's), read up to
    /// the certificate's; lines that come between are kept for [`Running::line`].
    pub fn web(&self) -> Vec<String> {
        while !self
            .web
            .borrow()
            .iter()
            .any(|l| l.starts_with("web certificate"))
        {
            let line = self
                .stdout
                .recv_timeout(TIMEOUT)
                .expect("the page's lines on the server's stdout in time");
            match line.starts_with("web: ") || line.starts_with("web certificate") {
                true => self.web.borrow_mut().push(line),
                false => self.pending.borrow_mut().push_back(line),
            }
        }
        self.web.borrow().clone()
    }

    /// The identity fup-server printed after `listening on`.
    pub fn identity(&self) -> String {
        if self.identity.borrow().is_none() {
            let line = self.next_line();
            let id = line
                .strip_prefix("identity: ")
                .unwrap_or_else(|| panic!("{line:?}"));
            *self.identity.borrow_mut() = Some(id.to_string());
        }
        self.identity.borrow().clone().unwrap()
    }

    /// The next line on standard error.
    pub fn err_line(&self) -> String {
        self.stderr
            .recv_timeout(TIMEOUT)
            .expect("a line on the server's stderr in time")
    }

    /// Skips standard-error lines until one contains `needle`, and returns it. Prompts end
    /// without a newline, so a prompt arrives as the start of the next line.
    pub fn err_line_containing(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push_str(&line),
                Err(_) => panic!("no stderr line with {needle:?}; saw {seen:?}"),
            }
        }
    }

    /// Every standard-error line still to come, until the stream ends (stop the process
    /// first) or [`TIMEOUT`] passes.
    pub fn err_rest(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            lines.push(line);
        }
        lines
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most [`TIMEOUT`]) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit in time"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards each line of `pipe` to a channel, so reads can have a deadline. A prompt, which
/// waits for its answer without a newline, counts as a line of its own; empty lines are skipped.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    const PROMPT_ENDS: [&[u8]; 2] = [b"[y/N] ", b"[y/N/a] "];
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut pipe = pipe;
        let mut line = Vec::new();
        let mut byte = [0; 1];
        while let Ok(1) = pipe.read(&mut byte) {
            if byte[0] != b'\n' {
                line.push(byte[0]);
            }
            if byte[0] == b'\n' || PROMPT_ENDS.iter().any(|end| line.ends_with(end)) {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if !text.is_empty() && tx.send(text).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// Runs a binary to completion (at most [`TIMEOUT`]), with [`config_dir`].
pub fn run(bin: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    with_config(cmd.args(args));
    assert_cmd::Command::from_std(cmd)
        .timeout(TIMEOUT)
        .output()
        .expect("run binary")
}

/// Runs `fup-client` against `port` on 127.0.0.1 with `args` (files and options), the
/// server's identity pinned already (see [`pin_shared`]).
pub fn fup_client(port: &str, args: &[&str]) -> Output {
    pin_shared(port);
    let mut all = vec!["--port", port, "127.0.0.1"];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_fup-client"), &all)
}

/// Runs `fup-client` against `port` on 127.0.0.1 with `args`, as a client that never met a
/// server there (a configuration directory of its own): for servers that are not fup's.
pub fn fup_client_fresh(port: &str, args: &[&str]) -> Output {
    let config = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    cmd.env("FUP_CONFIG_DIR", config.path())
        .args(["--port", port, "127.0.0.1"])
        .args(args);
    assert_cmd::Command::from_std(cmd)
        .timeout(TIMEOUT)
        .output()
        .expect("run fup-client")
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

/// A fake server on 127.0.0.1 for one connection: replies `script`, closes its sending side,
/// and records what the client sends until it closes.
pub fn fake_server(script: Vec<Vec<u8>>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    fake_server_with(script, true)
}

/// Like [`fake_server`], but with `hang_up` false it then stalls: it keeps the connection open
/// and silent until the client gives up.
pub fn fake_server_with(
    script: Vec<Vec<u8>>,
    hang_up: bool,
) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        for part in script {
            stream.write_all(&part).unwrap();
        }
        if hang_up {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        read_until_closed(&mut stream)
    });
    (addr, handle)
}

/// Names of the directory's entries, sorted; but for the server's directory of partials
/// when there is nothing in it (once made, it is kept).
pub fn entries(dir: &Path) -> Vec<String> {
    let partials = dir.join(".fup-partial");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name != ".fup-partial"
                || std::fs::read_dir(&partials).map_or(true, |mut d| d.next().is_some())
        })
        .collect();
    names.sort();
    names
}

/// Deterministic test data of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A raw header, field by field, for building frames by hand (good and bad ones).
pub fn header(id: u32, msg_type: u32, len: u32, frag: u8, last: u8, seq: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&msg_type.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&[frag, last]);
    h.extend_from_slice(&seq.to_le_bytes());
    h
}

/// A request (msgid 1) for `size` bytes under a name given as raw bytes.
pub fn request_bytes(size: u64, name: &[u8]) -> Vec<u8> {
    let mut m = header(1, 1, 8 + name.len() as u32, 0, 1, 0);
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(name);
    m
}

/// A request (msgid 1) for `size` bytes called `name`.
pub fn request(size: u64, name: &str) -> Vec<u8> {
    request_bytes(size, name.as_bytes())
}

/// A data message with msgid `id` carrying `body`.
pub fn data(id: u32, seq: u16, last: bool, body: &[u8]) -> Vec<u8> {
    [
        header(id, 3, body.len() as u32, 0, u8::from(last), seq),
        body.to_vec(),
    ]
    .concat()
}

/// The whole client side of an upload of `file` in chunks of `chunk` bytes.
pub fn upload_bytes(name: &str, file: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = request(file.len() as u64, name);
    let chunks: Vec<&[u8]> = file.chunks(chunk).collect();
    for (i, part) in chunks.iter().enumerate() {
        out.extend(data(1, i as u16, i + 1 == chunks.len(), part));
    }
    out
}

/// Starts `fup-client` with `args` in the background, output discarded, for tests that stop
/// it midway.
pub fn spawn_fup_client(args: &[&str]) -> std::process::Child {
    if let Some(at) = args.iter().position(|a| *a == "--port") {
        pin_shared(args[at + 1]);
    }
    with_config(&mut Command::new(env!("CARGO_BIN_EXE_fup-client")))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fup-client")
}

/// Sends signal `name` (`INT`, `TERM`…) to process `pid`, with kill(1): no `unsafe` here.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// The length of the RFC 3339 timestamp and space that start `line` (`2026-11-26T10:05:42Z `),
/// if they do.
pub fn stamp_len(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ ";
    (b.len() > shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            s => s == c,
        }))
    .then_some(shape.len())
}

/// A secure connection to `port` on 127.0.0.1, as a client of its own.
pub fn secure_link(port: u16) -> (Install, Link) {
    let client = install();
    let link = secure_link_as(&client, port);
    (client, link)
}

/// A secure connection to `port` on 127.0.0.1 as `install`.
pub fn secure_link_as(install: &Install, port: u16) -> Link {
    let keys = fup::secure::Keys::load_or_create(install.dir.path()).unwrap();
    let host = HostPort {
        host: "127.0.0.1".into(),
        port,
    };
    let known = install.known_hosts();
    let mut dialer = Dialer::new(
        host,
        Mode::Secure,
        Some(&keys),
        known,
        None,
        TIMEOUT,
        |_, _| fup::secure::dial::FirstContact::Recorded,
    )
    .unwrap();
    let (link, _) = dialer.dial().unwrap();
    assert!(link.server_id().is_some());
    link
}

/// A file of `size` bytes at `path` (components joined by `/`) in a batch.
pub fn file_entry(path: &str, size: u64) -> fup::batch::Entry {
    fup::batch::Entry {
        path: path.split('/').map(str::to_string).collect(),
        kind: fup::batch::Kind::File {
            size,
            executable: false,
        },
        modified: None,
    }
}

/// A directory at `path` in a batch.
pub fn dir_entry(path: &str) -> fup::batch::Entry {
    fup::batch::Entry {
        path: path.split('/').map(str::to_string).collect(),
        kind: fup::batch::Kind::Dir,
        modified: None,
    }
}

/// Reads the server's verdict: `None` when accepted, the reason when denied.
pub fn verdict(link: &mut Link) -> Option<String> {
    link.set_read_timeout(Some(TIMEOUT)).unwrap();
    let head = Frame::read_from(link).unwrap().expect("a verdict");
    assert_eq!(head.kind, VERDICT);
    let body = frame::read_body(link, head.len, 1 << 24).unwrap();
    match frame::Verdict::decode(&body).unwrap() {
        frame::Verdict::Accepted(..) => None,
        frame::Verdict::Denied(_, why) => Some(why),
    }
}

/// An installation of its own: a configuration directory and the identity made in it.
pub struct Install {
    /// Its configuration directory.
    pub dir: tempfile::TempDir,
    /// Its identity.
    pub id: String,
}

pub fn install() -> Install {
    let dir = tempfile::tempdir().unwrap();
    let id = fup::secure::Keys::load_or_create(dir.path())
        .unwrap()
        .identity()
        .to_string();
    Install { dir, id }
}

impl Install {
    pub fn known_hosts(&self) -> std::path::PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `fup-server --port 0 --bind 127.0.0.1 DIR EXTRA…` as this installation.
    pub fn server(&self, dir: &Path, extra: &[&str], input: Input<'_>) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
        cmd.env("FUP_CONFIG_DIR", self.dir.path())
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .arg(dir)
            .args(extra);
        let server = Running::command(&mut cmd, input);
        assert_eq!(server.identity(), self.id, "the identity line");
        server
    }

    /// `fup-client --port PORT 127.0.0.1 ARGS…` as this installation, to its end.
    pub fn client(&self, port: u16, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
        cmd.env("FUP_CONFIG_DIR", self.dir.path())
            .args(["--port", &port.to_string(), "127.0.0.1"])
            .args(args);
        assert_cmd::Command::from_std(cmd)
            .timeout(TIMEOUT)
            .output()
            .unwrap()
    }
}

/// A field of `/proc/PID/status`, in kB for sizes (`VmHWM:`, `Threads:`…).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

/// Checks one `fup-client --json` object against the documented schema: every key there,
/// each of its type (`null` where it may be), and nothing else.
pub fn check_schema(object: &serde_json::Value) {
    use serde_json::Value;
    let map = object.as_object().expect("an object");
    type Check = fn(&Value) -> bool;
    let kinds: [(&str, Check); 14] = [
        ("file", Value::is_string),
        ("name", Value::is_string),
        ("verdict", |v| {
            ["stored", "denied", "failed", "skipped", "error"].contains(&v.as_str().unwrap_or(""))
        }),
        ("code", |v| v.as_str().is_some_and(|c| !c.is_empty())),
        ("reason", |v| v.is_string() || v.is_null()),
        ("stored", Value::is_boolean),
        ("stored_as", |v| v.is_string() || v.is_null()),
        ("size", |v| v.is_u64() || v.is_null()),
        ("seconds", |v| v.is_f64() || v.is_null()),
        ("rate", |v| v.is_u64() || v.is_null()),
        ("blake3", |v| {
            v.as_str().is_some_and(|h| h.len() == 64) || v.is_null()
        }),
        ("sha256", |v| {
            v.as_str().is_some_and(|h| h.len() == 64) || v.is_null()
        }),
        ("resumed", Value::is_u64),
        ("secure", Value::is_boolean),
    ];
    assert_eq!(map.len(), kinds.len(), "{object}");
    for (key, ok) in kinds {
        assert!(map.get(key).is_some_and(ok), "{key} in {object}");
    }
    let stored = map["verdict"] == "stored";
    assert_eq!(map["stored"], stored, "{object}");
    assert_eq!(map["code"] == "stored", stored, "{object}");
    if !stored {
        assert!(map["reason"].is_string(), "why, for people: {object}");
    }
}

/// A relay on 127.0.0.1 in front of `target` that carries at most `rate` bytes a second from
/// each client (answers go back at once): a slow link, so that live lines are seen moving.
pub struct Throttle {
    /// Where clients connect.
    pub port: u16,
    /// Bytes carried so far (all connections), told as they pass.
    carried: Receiver<u64>,
}

impl Throttle {
    pub fn start(target: SocketAddr, rate: u64) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tell, carried) = mpsc::channel();
        thread::spawn(move || {
            // A few connections per test; the thread ends with the test process.
            for _ in 0..4 {
                let Ok((client, _)) = listener.accept() else {
                    return;
                };
                let tell = tell.clone();
                thread::spawn(move || forward_slowly(client, target, rate, &tell));
            }
        });
        Throttle { port, carried }
    }

    /// Waits (at most [`TIMEOUT`]) until `bytes` went through to the server.
    pub fn wait_for(&self, bytes: u64) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.carried.recv_timeout(left) {
                Ok(carried) if carried >= bytes => return,
                Ok(_) => {}
                Err(_) => panic!("{bytes} bytes never went through"),
            }
        }
    }
}

fn forward_slowly(client: TcpStream, target: SocketAddr, rate: u64, tell: &mpsc::Sender<u64>) {
    // A small receive buffer: the client's bytes wait at its end, as on a slow link, rather
    // than megabytes of them in this socket at once.
    let client = socket2::Socket::from(client);
    let _ = client.set_recv_buffer_size(32 * 1024);
    let mut client = TcpStream::from(client);
    let mut upstream = connect(target);
    let (mut back_from, mut back_to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
    let back = thread::spawn(move || {
        // Each answer on at once, as it comes (not io::copy, which may wait to fill a pipe).
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = back_from.read(&mut buf) {
            if back_to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = back_to.shutdown(std::net::Shutdown::Write);
    });
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        let _ = tell.send(sent);
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
    let _ = upstream.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

/// `fup-client --port PORT 127.0.0.1 ARGS…` started with stdout and stderr piped, the shared
/// server identity pinned for that port.
pub fn spawn_piped_client(port: &str, args: &[&str]) -> Child {
    pin_shared(port);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    with_config(&mut cmd)
        .args(["--port", port, "127.0.0.1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fup-client")
}

/// A piped child's exit code, stdout and stderr once it ends.
pub fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}
