//! Resume: a secure upload cut (client killed, connection cut, server killed) goes on
//! from where it was when the same client runs the same command again, moving only the rest,
//! after proving its copy starts with what the server kept.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// What a relay does when its first connection has carried `at` bytes to the server.
#[derive(Clone, Copy)]
enum Then {
    /// Cuts both ways at once, as a network failing would.
    Close,
    /// Stops reading the client and waits for it to go (the test kills it, or the server).
    Wait,
}

/// A relay on 127.0.0.1 in front of `target`: every connection forwarded both ways, the
/// bytes each carried from its client counted; the first one stopped after `cut` bytes.
struct Relay {
    port: u16,
    /// Where new connections go.
    target: Arc<Mutex<SocketAddr>>,
    /// Bytes each connection carried to the server, in order.
    up: Arc<Mutex<Vec<u64>>>,
    /// Told when the first connection reached its cut.
    cut: Receiver<()>,
}

impl Relay {
    fn start(target: SocketAddr, cut: Option<(u64, Then)>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(Mutex::new(Vec::new()));
        let (tell, told) = mpsc::channel();
        let counts = Arc::clone(&up);
        let target = Arc::new(Mutex::new(target));
        let to = Arc::clone(&target);
        std::thread::spawn(move || {
            // At most a few connections per test; the thread ends with the test process.
            for number in 0..8 {
                let Ok((client, _)) = listener.accept() else {
                    return;
                };
                let slot = {
                    let mut counts = counts.lock().unwrap();
                    counts.push(0);
                    counts.len() - 1
                };
                let counts = Arc::clone(&counts);
                let cut = cut.filter(|_| number == 0);
                let tell = tell.clone();
                let target = *to.lock().unwrap();
                std::thread::spawn(move || forward(client, target, cut, &counts, slot, &tell));
            }
        });
        Relay {
            port,
            target,
            up,
            cut: told,
        }
    }

    /// Sends the connections from now on to `target`.
    fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    fn port(&self) -> String {
        self.port.to_string()
    }

    /// Waits until the first connection reached its cut.
    fn wait_cut(&self) {
        self.cut
            .recv_timeout(TIMEOUT)
            .expect("the upload reached the cut in time");
    }

    /// Bytes connection `n` carried to the server.
    fn up(&self, n: usize) -> u64 {
        self.up.lock().unwrap().get(n).copied().unwrap_or(0)
    }
}

fn forward(
    mut client: std::net::TcpStream,
    target: SocketAddr,
    cut: Option<(u64, Then)>,
    counts: &Mutex<Vec<u64>>,
    slot: usize,
    tell: &mpsc::Sender<()>,
) {
    let mut upstream = connect(target);
    let (mut back_from, mut back_to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Write);
    });
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut seen = 0u64;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut take = n;
        if let Some((at, _)) = cut {
            take = take.min(usize::try_from(at.saturating_sub(seen)).unwrap());
        }
        if upstream.write_all(&buf[..take]).is_err() {
            break;
        }
        seen += take as u64;
        counts.lock().unwrap()[slot] = seen;
        if let Some((at, then)) = cut
            && seen >= at
        {
            let _ = tell.send(());
            if let Then::Wait = then {
                // Until the client is gone: the server sees nothing more, then the end.
                let deadline = Instant::now() + TIMEOUT;
                while Instant::now() < deadline && matches!(client.read(&mut buf), Ok(n) if n > 0) {
                }
            }
            break;
        }
    }
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
    let _ = back.join();
}

/// The partials the server keeps in `dir`.
fn partials(dir: &Path) -> usize {
    fs::read_dir(dir.join(".fup-partial")).map_or(0, Iterator::count)
}

/// Bytes of the data files the server's partials hold.
fn held(dir: &Path) -> u64 {
    let Ok(partials) = fs::read_dir(dir.join(".fup-partial")) else {
        return 0;
    };
    partials
        .flatten()
        .flat_map(|p| fs::read_dir(p.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("data-"))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Sends `sources` to `server` (over `dir`) through a relay that stops after `cut` bytes;
/// once the server has written `written` bytes of the file it was receiving (all but the
/// last message, cut short), kills it (SIGKILL: nothing of its own cleaning runs) and the
/// client, and starts a new server on the same directory.
fn kill_server_mid_upload(
    server: Running,
    dir: &Path,
    sources: &[&Path],
    cut: u64,
    written: u64,
) -> Running {
    let relay = Relay::start(server.addr, Some((cut, Then::Wait)));
    let mut client = spawn_client(&relay.port(), &[], sources);
    relay.wait_cut();
    let deadline = Instant::now() + TIMEOUT;
    while held(dir) < written {
        assert!(Instant::now() < deadline, "held {}", held(dir));
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(server.pid(), "KILL");
    client.kill().unwrap();
    let _ = client.wait();
    drop(server);
    Running::fup_server(dir, &["--yes"], Input::Text(""))
}

/// `fup-client` through `relay` in the background (stdout and stderr captured), sending
/// `files` with `extra` options.
fn spawn_client(port: &str, extra: &[&str], files: &[&Path]) -> Child {
    let files: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    spawn_piped_client(port, &[&["--timeout", "10"], extra, &files].concat())
}

/// Sends `path` through a relay that cuts the connection at half the file, as a network
/// failing would: the client fails, and the server's log line says what it kept.
fn cut_at_half(server: &Running, path: &Path) -> String {
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Close)));
    let (code, stdout, stderr) = finish(spawn_client(&relay.port(), &[], &[path]));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let log = server.line();
    assert!(log.starts_with("failed \"big.bin\""), "{log}");
    log
}

/// The file used by most tests: large enough for a cut in its middle.
const SIZE: usize = 24 << 20;

#[test]
fn a_killed_client_resumes_asks_again_and_moves_only_the_rest() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Wait)));
    let mut client = spawn_client(&relay.port(), &[], &[&path]);
    server.err_line_containing("wants to send \"big.bin\"");
    server.answer("y");
    relay.wait_cut();
    client.kill().unwrap();
    let _ = client.wait();
    let log = server.line();
    assert!(log.starts_with("failed \"big.bin\""), "{log}");
    assert!(log.contains("to resume"), "{log}");
    assert!(!dir.path().join("big.bin").exists());
    assert_eq!(
        entries(dir.path()),
        [".fup-partial"],
        "only the hidden partial"
    );

    // The same command again: asked again, with how far it got; only the rest moves.
    let again = Relay::start(server.addr, None);
    let client = spawn_client(&again.port(), &[], &[&path]);
    let question = server.err_line_containing("resuming at");
    assert!(
        question.contains("% : ") || question.contains("%: "),
        "{question}"
    );
    server.answer("y");
    let (code, stdout, stderr) = finish(client);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("fup-client: resuming at "), "{stderr}");
    assert!(
        stdout.contains("stored, secure, verified, resumed at "),
        "{stdout}"
    );
    let log = server.line();
    assert!(log.starts_with("stored \"big.bin\""), "{log}");
    assert!(log.contains(", verified, resumed at "), "{log}");
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), pattern(SIZE));
    // Half was there: the rest, the handshake and the messages' headers moved again.
    let moved = again.up(0);
    assert!(
        moved < (SIZE as u64) * 55 / 100,
        "moved {moved} of {SIZE} bytes again"
    );
    assert_eq!(entries(dir.path()), ["big.bin"], "the partial is gone");
}

#[test]
fn a_changed_prefix_starts_over_and_stores_the_new_content() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let path = src.path().join("big.bin");
    let mut content = pattern(SIZE);
    fs::write(&path, &content).unwrap();
    assert!(cut_at_half(&server, &path).contains("to resume"));
    // One byte of the first half changes: nothing the server kept can be used.
    content[1000] ^= 0xff;
    fs::write(&path, &content).unwrap();
    let again = Relay::start(server.addr, None);
    let (code, stdout, stderr) = finish(spawn_client(&again.port(), &[], &[&path]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("differ from this copy: it starts over"),
        "{stderr}"
    );
    assert!(again.up(0) > SIZE as u64, "the whole file moved again");
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), content);
    assert_eq!(entries(dir.path()), ["big.bin"]);
}

#[test]
fn a_killed_server_resumes_after_its_restart() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    let half = (SIZE / 2) as u64;
    let server = kill_server_mid_upload(server, dir.path(), &[&path], half, half - (1 << 20));
    assert_eq!(partials(dir.path()), 1);
    let again = Relay::start(server.addr, None);
    let (code, stdout, stderr) = finish(spawn_client(&again.port(), &[], &[&path]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("resuming at "), "{stderr}");
    assert!(server.line().contains(", verified, resumed at "));
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), pattern(SIZE));
    assert!(again.up(0) < (SIZE as u64) * 55 / 100, "{}", again.up(0));
}

#[test]
fn retry_reconnects_and_resumes_after_a_cut() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Close)));
    let (code, stdout, stderr) = finish(spawn_client(&relay.port(), &["--retry", "3"], &[&path]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("connection lost") && stderr.contains("trying again in 1 s (1 of 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("resuming at "), "{stderr}");
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), pattern(SIZE));
    assert!(relay.up(1) < (SIZE as u64) * 55 / 100, "{}", relay.up(1));
    // Without tries left, the exit status is the last try's.
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Close)));
    let (code, _, stderr) = finish(spawn_client(&relay.port(), &[], &[&path]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("trying again"), "{stderr}");
}

#[test]
fn another_client_cannot_resume_a_partial() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    assert!(cut_at_half(&server, &path).contains("to resume"));
    // Another installation (another key) sends the same file: from zero, and the first
    // client's partial stays for it.
    let other = tempfile::tempdir().unwrap();
    let again = Relay::start(server.addr, None);
    let out = Command::new(env!("CARGO_BIN_EXE_fup-client"))
        .env("FUP_CONFIG_DIR", other.path())
        .args(["--port", &again.port(), "127.0.0.1"])
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("resuming"), "{stderr}");
    assert!(again.up(0) > SIZE as u64);
    assert!(!server.line().contains("resumed"));
    assert_eq!(partials(dir.path()), 1);
    // Its owner still resumes it.
    let third = Relay::start(server.addr, None);
    let (code, _, stderr) = finish(spawn_client(&third.port(), &[], &[&path]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("resuming at "), "{stderr}");
    assert_eq!(entries(dir.path()), ["big (1).bin", "big.bin"]);
    assert_eq!(
        fs::read(dir.path().join("big (1).bin")).unwrap(),
        pattern(SIZE)
    );
}

#[test]
fn an_expired_partial_is_swept() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--keep-partial", "1s"],
        Input::Text(""),
    );
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    assert!(cut_at_half(&server, &path).contains("to resume"));
    let swept = server.line();
    assert!(
        swept.contains("removed 1 expired partial upload (1"),
        "{swept}"
    );
    assert!(entries(dir.path()).is_empty());
    assert_eq!(partials(dir.path()), 0);
    // Nothing left to resume: the whole file moves.
    let again = Relay::start(server.addr, None);
    let (code, _, stderr) = finish(spawn_client(&again.port(), &[], &[&path]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("resuming"), "{stderr}");
    assert!(again.up(0) > SIZE as u64);
}

#[test]
fn a_cut_batch_resumes_at_its_first_unstored_file_inside_a_tree() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let first = src.path().join("first.txt");
    fs::write(&first, b"whole").unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a.bin"), pattern(1 << 20)).unwrap();
    fs::write(tree.join("sub/b.bin"), pattern(SIZE)).unwrap();
    fs::write(tree.join("z.txt"), b"last").unwrap();
    // Cut in the middle of sub/b.bin.
    let cut = (1 << 20) + SIZE as u64 / 2;
    let relay = Relay::start(server.addr, Some((cut, Then::Close)));
    let (code, _, _) = finish(spawn_client(&relay.port(), &[], &[&first, &tree]));
    assert_eq!(code, Some(1));
    let log = server.line();
    assert!(log.contains("kept \"first.txt\"; kept "), "{log}");
    assert_eq!(entries(dir.path()), [".fup-partial", "first.txt"]);
    let again = Relay::start(server.addr, None);
    let (code, stdout, stderr) = finish(spawn_client(&again.port(), &[], &[&first, &tree]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("2 files stored before"), "{stderr}");
    assert!(
        stdout.contains(" MiB there): 4 stored\n") && stdout.contains("/s, resumed with "),
        "{stdout}"
    );
    assert!(
        stdout.contains("sent \"first.txt\" 5 B: stored, secure, by an earlier try\n")
            && stdout.contains(
                "sent \"tree/sub/b.bin\" 24.0 MiB: stored, secure, verified, resumed at "
            )
            && stdout.contains("sent \"tree/z.txt\" 4 B: stored, secure, verified\n"),
        "{stdout}"
    );
    // Nothing twice: first.txt is not sent again, nor stored as "first.txt (1)".
    assert_eq!(entries(dir.path()), ["first.txt", "tree"]);
    assert_eq!(
        fs::read(dir.path().join("tree/a.bin")).unwrap(),
        pattern(1 << 20)
    );
    assert_eq!(
        fs::read(dir.path().join("tree/sub/b.bin")).unwrap(),
        pattern(SIZE)
    );
    assert_eq!(fs::read(dir.path().join("tree/z.txt")).unwrap(), b"last");
    assert!(again.up(0) < (SIZE as u64) * 55 / 100, "{}", again.up(0));
    let log = server.line();
    assert!(
        log.starts_with("stored batch of 4 files, 2 folders"),
        "{log}"
    );
    assert!(log.contains("resumed at"), "{log}");
}

// --checksum: b3sum's format on both sides.
#[test]
fn checksum_prints_blake3_in_b3sum_format_on_both_sides() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes", "--checksum"], Input::Text(""));
    let path = src.path().join("f.bin");
    fs::write(&path, pattern(100_000)).unwrap();
    let out = fup_client(&server.port(), &["--checksum", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let hex = blake3::hash(&pattern(100_000)).to_hex().to_string();
    assert!(
        stdout.contains(&format!("{hex}  {}\n", path.display())),
        "{stdout}"
    );
    assert!(server.line().starts_with("stored \"f.bin\""));
    assert_eq!(
        server.line(),
        format!("{hex}  {}", dir.path().join("f.bin").display())
    );
    // In JSON, a field of the file's object.
    let out = fup_client(
        &server.port(),
        &["--json", "--checksum", path.to_str().unwrap()],
    );
    let object: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(object["blake3"], hex.as_str(), "{object}");
    assert_eq!(object["verdict"], "stored");
}

// --max-partial bounds what cut uploads keep; 0 keeps nothing, as plain uploads.
#[test]
fn a_partial_over_the_bound_is_not_kept() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--max-partial", "1M"],
        Input::Text(""),
    );
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    let log = cut_at_half(&server, &path);
    assert!(!log.contains("to resume"), "{log}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

// --retry resumes after the network's failures, never past an identity check.
#[test]
fn retry_stops_at_a_server_that_is_not_the_pinned_one() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    // An impostor: another key, where the relay sends connections after the cut.
    let keys = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.env("FUP_CONFIG_DIR", keys.path())
        .args(["--port", "0", "--bind", "127.0.0.1", "--yes"])
        .arg(dir.path().join("impostor"));
    let impostor = Running::command(&mut cmd, Input::Text(""));
    let path = src.path().join("big.bin");
    fs::write(&path, pattern(SIZE)).unwrap();
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Close)));
    let client = spawn_client(&relay.port(), &["--retry", "3"], &[&path]);
    relay.wait_cut();
    relay.retarget(impostor.addr);
    let (code, stdout, stderr) = finish(client);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.matches("trying again").count(), 1, "{stderr}");
    assert!(stderr.contains("HAS CHANGED"), "{stderr}");
    assert!(!dir.path().join("impostor").join("big.bin").exists());
}

// Cut inside a tree, then the resumed try's server killed: what it wrote after its
// last checkpoint goes, nothing is stored twice or half.
#[test]
fn a_tree_resumed_then_killed_again_is_stored_whole_once() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let tree = src.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.bin"), pattern(SIZE)).unwrap();
    fs::write(tree.join("b.bin"), pattern(SIZE / 2)).unwrap();
    // Cut inside a.bin; the next try resumes there and is killed with the server inside b.bin.
    let relay = Relay::start(server.addr, Some(((SIZE / 2) as u64, Then::Close)));
    assert_eq!(
        finish(spawn_client(&relay.port(), &[], &[&tree])).0,
        Some(1)
    );
    assert!(server.line().contains("to resume"));
    let cut = (SIZE / 2 + SIZE / 4) as u64;
    let server = kill_server_mid_upload(server, dir.path(), &[&tree], cut, 0);
    let again = Relay::start(server.addr, None);
    let (code, stdout, stderr) = finish(spawn_client(&again.port(), &[], &[&tree]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(entries(dir.path()), ["tree"]);
    assert_eq!(entries(&dir.path().join("tree")), ["a.bin", "b.bin"]);
    assert_eq!(
        fs::read(dir.path().join("tree/a.bin")).unwrap(),
        pattern(SIZE)
    );
    assert_eq!(
        fs::read(dir.path().join("tree/b.bin")).unwrap(),
        pattern(SIZE / 2)
    );
    assert!(
        server
            .line()
            .starts_with("stored batch of 2 files, 1 folder")
    );
}

// A large file inside a tree starts after a checkpoint: a server killed in its
// middle resumes inside it.
#[test]
fn a_server_killed_inside_a_trees_large_file_resumes_inside_it() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a.bin"), pattern(1 << 20)).unwrap();
    fs::write(tree.join("sub/big.bin"), pattern(SIZE)).unwrap();
    let cut = (1 << 20) + (SIZE / 2) as u64;
    let written = (SIZE / 2 - (1 << 20)) as u64;
    let server = kill_server_mid_upload(server, dir.path(), &[&tree], cut, written);
    let again = Relay::start(server.addr, None);
    let (code, stdout, stderr) = finish(spawn_client(&again.port(), &[], &[&tree]));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("1 file stored before"), "{stderr}");
    assert!(again.up(0) < (SIZE as u64) * 55 / 100, "{}", again.up(0));
    assert_eq!(entries(dir.path()), ["tree"]);
    assert_eq!(
        fs::read(dir.path().join("tree/a.bin")).unwrap(),
        pattern(1 << 20)
    );
    assert_eq!(
        fs::read(dir.path().join("tree/sub/big.bin")).unwrap(),
        pattern(SIZE)
    );
}
