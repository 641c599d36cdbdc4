//! The operator's side as a person sees it: fup-server in a pseudo-terminal,
//! answered by typing, with the real fup-client uploading.

use std::fs;
use std::io::{Read, Write};
use std::process::Command;
use std::thread;

use rexpect::session::{PtySession, spawn_command};

use crate::util::*;

/// fup-server in a pty on a free port; returns the session and the port.
fn server_in_pty(dir: &std::path::Path) -> (PtySession, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    with_config(cmd.args(["--port", "0", "--bind", "127.0.0.1"]).arg(dir));
    let mut pty =
        spawn_command(cmd, Some(TIMEOUT.as_millis() as u64)).expect("spawn fup-server in a pty");
    let (_, port) = pty.exp_regex(r"listening on 127\.0\.0\.1:\d+").unwrap();
    let port = port.rsplit(':').next().unwrap().to_string();
    (pty, port)
}

/// Uploads `path` with the real client in the background; returns its exit code when joined.
fn upload(port: &str, path: &std::path::Path) -> thread::JoinHandle<Option<i32>> {
    let (port, path) = (port.to_string(), path.to_path_buf());
    thread::spawn(move || fup_client(&port, &[path.to_str().unwrap()]).status.code())
}

#[test]
fn operator_answers_at_a_real_terminal() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut pty, port) = server_in_pty(dir.path());
    let file = src.path().join("a.txt");
    fs::write(&file, b"abc").unwrap();

    // y stores.
    let client = upload(&port, &file);
    let shown = pty.exp_string("accept? [y/N/a] ").unwrap();
    assert!(
        shown.contains("wants to send \"a.txt\" (3 B, 3 bytes)"),
        "{shown:?}"
    );
    assert!(shown.contains("127.0.0.1:"), "the peer is shown: {shown:?}");
    assert!(
        shown.contains("a.txt; ") && shown.contains(" free"),
        "{shown:?}"
    );
    pty.send_line("y").unwrap();
    pty.exp_string("stored \"a.txt\" 3 B (3 bytes)").unwrap();
    assert_eq!(client.join().unwrap(), Some(0));

    // Enter denies; the prompt says the upload would be kept beside the first.
    let client = upload(&port, &file);
    let shown = pty.exp_string("accept? [y/N/a] ").unwrap();
    assert!(
        shown.contains("a (1).txt (exists, keeping both)"),
        "{shown:?}"
    );
    pty.send_line("").unwrap();
    pty.exp_string("denied \"a.txt\"").unwrap();
    assert_eq!(client.join().unwrap(), Some(1));

    // Anything else asks again.
    let client = upload(&port, &file);
    pty.exp_string("accept? [y/N/a] ").unwrap();
    pty.send_line("maybe").unwrap();
    pty.exp_string("please answer y (yes), n (no) or a (always: trust this client)")
        .unwrap();
    pty.exp_string("accept? [y/N/a] ").unwrap();
    pty.send_line("YES").unwrap();
    pty.exp_string("stored \"a.txt\" as \"a (1).txt\"").unwrap();
    assert_eq!(client.join().unwrap(), Some(0));
    assert_eq!(entries(dir.path()).len(), 2);
}

#[test]
fn hostile_names_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pty, port) = server_in_pty(dir.path());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for name in [
        "\x1b]0;pwned\x07",
        "\x1b[2J\x1b[H",
        "a\u{202e}gnp.exe",
        "line\nbreak",
    ] {
        let mut stream = connect(addr);
        stream.write_all(&request(1, name)).unwrap();
        let mut response = [0; 21];
        stream.read_exact(&mut response).unwrap();
        assert_eq!(response[20], 1, "denied");
        let shown = pty.exp_string("refused \"").unwrap();
        let (rest, _) = pty
            .exp_regex(r"from 127\.0\.0\.1:\d+, plain: name contains")
            .unwrap();
        for text in [shown, rest] {
            assert!(
                !text.contains('\x1b') && !text.contains('\u{202e}') && !text.contains('\x07'),
                "{text:?}"
            );
        }
    }
}

#[test]
fn client_shows_a_progress_bar_on_a_terminal() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let file = src.path().join("bar.bin");
    fs::write(&file, pattern(100_000)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    // Pinned, so that no first-contact question comes before the bar.
    with_config(cmd.args([
        "--port",
        &server.port(),
        "127.0.0.1",
        "--pin",
        &server.identity(),
    ]))
    .arg(&file);
    let mut pty =
        spawn_command(cmd, Some(TIMEOUT.as_millis() as u64)).expect("spawn fup-client in a pty");
    // Until the operator answers, the bar says what it waits for.
    pty.exp_string("\"bar.bin\" [").unwrap();
    pty.exp_string("waiting for the server to accept").unwrap();
    server.err_line_containing("accept? [y/N/a]");
    // The operator thinks for a while (what this test is about, not a wait for readiness):
    // none of it may count in the transfer's figures.
    thread::sleep(std::time::Duration::from_millis(1500));
    server.answer("y");
    pty.exp_string("sent \"bar.bin\" 97.7 KiB in ").unwrap();
    let figures = pty.exp_string(": stored").unwrap();
    let seconds: f64 = figures.split(' ').next().unwrap().parse().unwrap();
    // 100 kB over loopback: milliseconds. Neither the 1.5 s wait for the answer nor the bar's
    // ticks (the old client added up to 0.25 s of them) may show.
    assert!(seconds < 0.1, "more than the transfer counted: {figures:?}");
    pty.exp_eof().unwrap();
}

#[test]
fn one_question_for_a_batch_at_a_real_terminal() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut pty, port) = server_in_pty(dir.path());
    let album = src.path().join("album");
    fs::create_dir_all(album.join("2026")).unwrap();
    for i in 0..12 {
        fs::write(album.join(format!("2026/p{i:02}.jpg")), vec![b'j'; 1000]).unwrap();
    }
    fs::write(src.path().join("notes.txt"), b"notes").unwrap();
    let client = {
        let (port, album, notes) = (port.clone(), album.clone(), src.path().join("notes.txt"));
        thread::spawn(move || {
            fup_client(&port, &[album.to_str().unwrap(), notes.to_str().unwrap()])
                .status
                .code()
        })
    };
    let shown = pty.exp_string("accept? [y/N/a] ").unwrap();
    assert!(
        shown.contains(
            "wants to send 13 files, 2 folders, 11.7 KiB (12005 bytes): \"album\", \"notes.txt\""
        ),
        "{shown:?}"
    );
    assert!(shown.contains("secure, client "), "{shown:?}");
    pty.send_line("y").unwrap();
    pty.exp_string("stored batch of 13 files, 2 folders")
        .unwrap();
    assert_eq!(client.join().unwrap(), Some(0));
    // Exactly one question was asked for all of it.
    assert_eq!(
        fs::read_dir(dir.path().join("album/2026")).unwrap().count(),
        12
    );
    assert!(dir.path().join("notes.txt").is_file());
}
