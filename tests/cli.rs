//! The binaries end to end, as a user or a script runs them.

use std::fs;

use crate::util::*;

#[test]
fn uploads_of_every_edge_size_and_odd_names_arrive_exactly() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let cases: &[(&str, usize)] = &[
        ("empty.bin", 0),
        ("one.bin", 1),
        ("a4095.bin", 4095),
        ("a4096.bin", 4096),
        ("a4097.bin", 4097),
        ("with space.txt", 65_537),
        ("한글 이름.bin", 3_000_000),
        ("-rf", 5),
    ];
    for (name, len) in cases {
        let path = src.path().join(name);
        fs::write(&path, pattern(*len)).unwrap();
        let out = fup_client(&server.port(), &[path.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stdout.starts_with(&format!("sent \"{name}\" "))
                && stdout.trim_end().ends_with(": stored, secure, verified"),
            "{stdout}"
        );
        assert_eq!(
            fs::read(dir.path().join(name)).unwrap(),
            pattern(*len),
            "{name}"
        );
        let log = server.line();
        assert!(log.starts_with(&format!("stored \"{name}\" ")), "{log}");
        assert!(log.contains(&format!("({len} bytes)")), "{log}");
    }
    assert_eq!(
        entries(dir.path()).len(),
        cases.len(),
        "no stray temp files"
    );
}

#[test]
fn several_files_in_order_and_existing_names_are_kept() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"theirs").unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let a = src.path().join("notes.txt");
    fs::write(&a, b"first").unwrap();
    // As one batch, two arguments of one name are both sent, and both kept.
    let out = fup_client(&server.port(), &[a.to_str().unwrap(), a.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>()[..2],
        [
            "sent \"notes.txt\" 5 B: stored as \"notes (1).txt\", secure, verified",
            "sent \"notes.txt\" 5 B: stored as \"notes (2).txt\", secure, verified"
        ]
    );
    assert!(server.line().starts_with("stored batch of 2 files"));
    for name in ["notes (1).txt", "notes (2).txt"] {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    // One by one (plain), each is kept under a free name.
    let out = fup_client(
        &server.port(),
        &["--plain", a.to_str().unwrap(), a.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.ends_with("\n2 stored\n"), "{stdout}");
    assert_eq!(fs::read(dir.path().join("notes.txt")).unwrap(), b"theirs");
    assert_eq!(
        fs::read(dir.path().join("notes (1).txt")).unwrap(),
        b"first"
    );
    assert_eq!(
        fs::read(dir.path().join("notes (2).txt")).unwrap(),
        b"first"
    );
    assert!(
        server
            .line()
            .starts_with(r#"stored "notes.txt" as "notes (1).txt""#)
    );
    assert!(
        server
            .line()
            .starts_with(r#"stored "notes.txt" as "notes (2).txt""#)
    );
}

#[test]
fn operator_answers_one_line_per_question() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let file = src.path().join("q.txt");
    fs::write(&file, b"question").unwrap();
    let file = file.to_str().unwrap();
    for (answer, stored) in [
        ("y", true),
        ("", false),
        ("no", false),
        ("YES", true),
        // Not an answer: asked again, and the second line answers.
        ("yess\nn", false),
    ] {
        server.answer(answer);
        let out = fup_client(&server.port(), &[file]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.success(), stored, "answer {answer:?}: {stderr}");
        if !stored {
            assert_eq!(out.status.code(), Some(1));
            assert!(
                stderr.contains("\"q.txt\" 8 B: denied by server"),
                "{stderr}"
            );
            assert!(
                server
                    .line()
                    .starts_with(r#"denied "q.txt" 8 B (8 bytes) from 127.0.0.1:"#)
            );
        } else {
            assert!(server.line().starts_with(r#"stored "q.txt""#));
        }
    }
    assert!(dir.path().join("q.txt").exists());
    assert!(dir.path().join("q (1).txt").exists());
    assert_eq!(entries(dir.path()).len(), 2);
}

#[test]
fn closed_stdin_denies_with_one_log_line_each_and_no_question() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Text(""));
    let file = src.path().join("x.bin");
    fs::write(&file, b"x").unwrap();
    for plain in [false, true, false] {
        let mut args = vec![file.to_str().unwrap()];
        if plain {
            args.insert(0, "--plain");
        }
        let out = fup_client(&server.port(), &args);
        assert_eq!(out.status.code(), Some(1));
        let (_, stderr) = text(&out);
        // The sender hears that no one answers, not the operator's hints.
        if !plain {
            assert!(
                stderr.contains(
                    "denied by server (no answer: no one is at the server's terminal), secure"
                ),
                "{stderr}"
            );
        }
        assert!(!stderr.contains("--yes"), "{stderr}");
        let log = server.line();
        assert!(
            log.starts_with("denied \"x.bin\"")
                && log.ends_with(": no answer: standard input is closed"),
            "{log}"
        );
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // The operator's side: the notice once, with the hint; at most the first question (if
    // it came before the end of input was seen), never one after the notice.
    signal(server.pid(), "TERM");
    assert_eq!(server.wait_exit(), Some(143));
    let stderr = server.err_rest();
    let notice = stderr
        .iter()
        .position(|l| l.contains("standard input is closed: uploads that need a question"))
        .unwrap_or_else(|| panic!("{stderr:?}"));
    assert!(stderr[notice].contains("--yes"), "{stderr:?}");
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.contains("standard input is closed:"))
            .count(),
        1,
        "{stderr:?}"
    );
    assert!(
        !stderr[notice..]
            .iter()
            .any(|l| l.contains("wants to send") || l.contains("accept?")),
        "{stderr:?}"
    );
}

#[test]
fn seq_wraps_so_small_chunks_have_no_size_limit() {
    // 70,000 chunks of 16 bytes: seq wraps past 65,535 and the server takes it.
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let file = src.path().join("wrap.bin");
    fs::write(&file, pattern(16 * 70_000 + 5)).unwrap();
    let out = fup_client(
        &server.port(),
        &["--chunk-size", "16", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        fs::read(dir.path().join("wrap.bin")).unwrap(),
        pattern(16 * 70_000 + 5)
    );
}

#[test]
fn client_errors_are_one_clear_line_each() {
    let src = tempfile::tempdir().unwrap();
    let missing = src.path().join("missing.bin");
    // In plain mode each file is looked at before connecting (a directory too).
    let out = fup_client(
        "9",
        &[
            "--plain",
            missing.to_str().unwrap(),
            src.path().to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].ends_with("missing.bin: cannot open file: No such file or directory (os error 2)"),
        "{stderr}"
    );
    assert!(
        lines[1].ends_with(&format!(
            ": is a directory (send a folder as an archive: tar c {} | fup-client HOST - --name {}.tar)",
            src.path().display(),
            src.path().file_name().unwrap().to_string_lossy()
        )),
        "{stderr}"
    );
    assert_eq!(stdout, "0 stored, 2 not sent\n");

    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let file = src.path().join("f.txt");
    fs::write(&file, b"data").unwrap();
    let out = fup_client(&port, &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!(
            "cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_fup-client");
    for args in [
        &[][..],
        &["127.0.0.1"],
        &["--chunk-size", "0", "h", "f"],
        &["--chunk-size", "16777217", "h", "f"],
        &["--port", "x", "h", "f"],
    ] {
        let out = run(bin, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = run(env!("CARGO_BIN_EXE_fup-server"), &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn client_reports_a_server_that_closes_early_or_misbehaves() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"data").unwrap();
    let file = file.to_str().unwrap();
    let mut accepted = GOLDEN_RESPONSE.to_vec();
    accepted[20] = 0;
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (
            vec![],
            "connection closed by peer while waiting for a response message",
        ),
        (
            vec![GOLDEN_RESPONSE[..10].to_vec()],
            "connection closed in the middle of a message",
        ),
        (
            vec![GOLDEN_RESULT.to_vec()],
            "expected a response message, got result",
        ),
        // Accepted with 0, then closed at once without a result: how a server that uses 1 for
        // accepted denies, unless told the server's convention.
        (vec![accepted.clone()], "\"f.txt\" 4 B: denied by server"),
        (vec![vec![0xee; 16]], "unknown message type 0xeeeeeeee"),
    ];
    let forced = (
        vec![accepted.clone()],
        "connection closed by peer while waiting for a result message",
    );
    for (i, (script, message)) in cases.into_iter().chain([forced]).enumerate() {
        let (addr, fake) = fake_server(script);
        // Fake servers speak the plain protocol only.
        let mut args = vec!["--plain", file];
        if i == 5 {
            args.extend(["--accept-byte", "0"]);
        }
        let out = fup_client(&addr.port().to_string(), &args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "want {message:?} in {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        fake.join().unwrap();
    }
}

#[test]
fn client_sends_exactly_the_captured_bytes() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("hello.txt");
    fs::write(&file, b"hi\n").unwrap();
    let (addr, fake) = fake_server(vec![GOLDEN_RESPONSE.to_vec(), GOLDEN_RESULT.to_vec()]);
    let out = fup_client(
        &addr.port().to_string(),
        &["--plain", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(fake.join().unwrap(), [GOLDEN_REQUEST, GOLDEN_DATA].concat());
}

#[test]
fn server_reports_a_missing_or_bad_directory() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f");
    fs::write(&file, b"").unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_fup-server"),
        &["--port", "0", "--bind", "127.0.0.1", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.starts_with("fup-server: cannot use upload directory"),
        "{stderr}"
    );
    // A directory that does not exist yet is created.
    let dir = src.path().join("new/inbox");
    let _server = Running::fup_server(&dir, &["--yes"], Input::Text(""));
    assert!(dir.is_dir());
}

#[test]
fn echo_pair_counts_and_summarises() {
    let server = Running::echo_server();
    let out = run(
        env!("CARGO_BIN_EXE_echo-client"),
        &[
            "--port",
            &server.port(),
            "--count",
            "3",
            "--interval",
            "0",
            "127.0.0.1",
            "안녕 \u{1b}[2J",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in &lines[..3] {
        assert!(
            line.starts_with(&format!("11 bytes from {}: time=", server.addr)),
            "{line}"
        );
        assert!(line.ends_with(r#"echo="안녕 \u{1b}[2J""#), "{line}");
    }
    assert_eq!(lines[3], format!("--- {} echo statistics ---", server.addr));
    assert!(
        lines[4].starts_with("3 sent, 3 ok, time min/avg/max/mdev = "),
        "{}",
        lines[4]
    );
    for _ in 0..3 {
        assert!(server.line().ends_with(": echoed 11 bytes"));
    }
}

#[test]
fn echo_client_reports_a_short_echo() {
    // Like the original Python echo server: one read of at most 1024 bytes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fake = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0; 1024];
        let mut got = 0;
        while got < buf.len() {
            match stream.read(&mut buf[got..]).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        stream.write_all(&buf[..got]).unwrap();
    });
    let message = "x".repeat(3000);
    let out = run(
        env!("CARGO_BIN_EXE_echo-client"),
        &["--port", &port, "127.0.0.1", &message],
    );
    fake.join().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("short echo from 127.0.0.1:")
            && stderr.contains("1024 of 3000 bytes came back"),
        "{stderr}"
    );
}

#[test]
fn policies_accept_from_and_max_size_decide_unasked_with_reasons() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No --yes and no answers: only a policy can decide without the prompt timing out.
    let server = Running::fup_server(
        dir.path(),
        &["--accept-from", "10.0.0.0/8,127.0.0.1", "--max-size", "1K"],
        Input::Pipe,
    );
    let small = src.path().join("small.txt");
    fs::write(&small, b"fits").unwrap();
    let out = fup_client(&server.port(), &[small.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let log = server.line();
    assert!(
        log.ends_with("(accepted: --accept-from 127.0.0.1/32)"),
        "{log}"
    );
    let big = src.path().join("big.bin");
    fs::write(&big, pattern(2000)).unwrap();
    let out = fup_client(&server.port(), &[big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let log = server.line();
    assert!(
        log.starts_with("denied \"big.bin\"") && log.ends_with(": larger than --max-size 1.0 KiB"),
        "{log}"
    );
    assert_eq!(entries(dir.path()).len(), 1);
    for bad in [
        &["--accept-from", "10.0.0.0/33"][..],
        &["--max-size", "10XB"],
    ] {
        let mut args = vec!["--port", "0", dir.path().to_str().unwrap()];
        args.extend_from_slice(bad);
        assert_eq!(
            run(env!("CARGO_BIN_EXE_fup-server"), &args).status.code(),
            Some(2),
            "{bad:?}"
        );
    }
}

#[test]
fn no_bars_off_a_terminal_and_quiet_prints_only_problems() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--max-size", "1K"], Input::Text(""));
    let ok = src.path().join("ok.bin");
    fs::write(&ok, pattern(3_000)).unwrap();
    let small = src.path().join("small.bin");
    fs::write(&small, pattern(10)).unwrap();
    // Not a terminal: one line per file, no progress bar, nothing on stderr when all is well.
    let out = fup_client(&server.port(), &[small.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with("sent \"small.bin\" 10 B in ")
            && stdout.ends_with(": stored, secure, verified\n"),
        "{stdout}"
    );
    assert_eq!(stderr, "");
    // Quiet: nothing for stored files, the denial still said.
    let out = fup_client(
        &server.port(),
        &["-q", small.to_str().unwrap(), ok.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout, "");
    // A file over --max-size is refused alone, saying why; the rest goes on.
    assert_eq!(
        stderr,
        "fup-client: \"ok.bin\" 2.9 KiB: denied by server (larger than --max-size 1.0 KiB), secure\n"
    );
}

// SHA-256 in plain mode, BLAKE3 in secure mode.
#[test]
fn checksums_on_both_sides_match_the_content() {
    use sha2::{Digest, Sha256};
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--checksum"], Input::Text(""));
    for (name, len, plain) in [
        ("empty.bin", 0, true),
        ("data.bin", 3_000_001, true),
        ("empty.b3", 0, false),
        ("data.b3", 3_000_001, false),
    ] {
        let file = src.path().join(name);
        fs::write(&file, pattern(len)).unwrap();
        let expected: String = match plain {
            true => Sha256::digest(pattern(len))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            false => blake3::hash(&pattern(len)).to_hex().to_string(),
        };
        let mut args = vec!["--checksum", file.to_str().unwrap()];
        if plain {
            args.insert(0, "--plain");
        }
        let out = fup_client(&server.port(), &args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[1],
            format!("{expected}  {}", file.display()),
            "{stdout}"
        );
        assert!(server.line().starts_with(&format!("stored \"{name}\"")));
        assert_eq!(
            server.line(),
            format!("{expected}  {}", dir.path().join(name).display())
        );
    }
}

#[test]
fn quiet_server_prints_only_failures() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "-q", "--max-size", "100"],
        Input::Text(""),
    );
    let ok = src.path().join("ok.bin");
    fs::write(&ok, pattern(10)).unwrap();
    let big = src.path().join("big.bin");
    fs::write(&big, pattern(1000)).unwrap();
    assert_eq!(
        fup_client(&server.port(), &[ok.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        fup_client(&server.port(), &[big.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    // A failed upload: accepted, then the client hangs up before sending everything.
    let mut stream = connect(server.addr);
    std::io::Write::write_all(&mut stream, &request(50, "cut.bin")).unwrap();
    let mut response = [0; 21];
    std::io::Read::read_exact(&mut stream, &mut response).unwrap();
    drop(stream);
    // The first line printed after "listening on" is the failure: nothing for stored or denied.
    assert!(server.line().starts_with("failed \"cut.bin\""));
}
