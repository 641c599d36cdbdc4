//! fup-server against hostile peers and faults: names, files already in the
//! directory, killed clients, full disks, slow peers, floods and signals.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Sends a request for `name` and returns the response's verdict byte (0 accepted, 1 denied).
fn verdict_for(server: &Running, name: &[u8]) -> u8 {
    let mut stream = connect(server.addr);
    stream.write_all(&request_bytes(2, name)).unwrap();
    let mut response = [0; 21];
    stream.read_exact(&mut response).unwrap();
    response[20]
}

fn assert_printable(line: &str) {
    assert!(
        !line
            .chars()
            .any(|c| c.is_control() || fup::text::is_invisible(c)),
        "raw byte in {line:?}"
    );
}

#[test]
fn hostile_names_are_denied_without_a_prompt_and_logged_escaped() {
    // A private parent, so that anything escaping the upload directory would show.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("inbox");
    // No --yes and no answer ever typed: a question would block, so only a refusal answers.
    let server = Running::fup_server(&dir, &[], Input::Pipe);
    let long = vec![b'a'; 256];
    let too_long = vec![b'a'; 4097];
    // Paths whose last part is a good name are stored under it: see
    // `paths_are_stored_under_their_last_part_inside_the_directory`. These are refused.
    let hostile: Vec<&[u8]> = vec![
        b"",
        b".",
        b"..",
        b"a/",
        b"/",
        b"a/..",
        b"..\\..",
        b"dir\\",
        b"sub/.hidden",
        b"C:\\x\\CON",
        b"a\0b",
        b"\0",
        b"\xff\xfe",
        b"\x80",
        &long,
        &too_long,
        b".hidden",
        b".fup-abc.part",
        b"a\nb",
        b"a\rb",
        b"\x1b[2J",
        b"\x1b]0;pwned\x07",
        b"a\x7f",
        "a\u{9b}31m".as_bytes(),
        "\u{202e}gnp.exe".as_bytes(),
        "a\u{200b}b".as_bytes(),
        "\u{feff}x".as_bytes(),
        "a\u{2028}b".as_bytes(),
        "a\u{2066}b".as_bytes(),
        b"CON",
        b"nul.txt",
        b"Com1",
        b"LPT9.log",
        b"con .txt",
        b"C:x",
        b"a:b",
        b"trailing.",
        b"trailing ",
        b"tab\there",
    ];
    assert!(hostile.len() >= 30);
    for name in &hostile {
        if name.len() > 4096 {
            // Past the request body limit (8 + 4096): refused from the header alone.
            let mut stream = connect(server.addr);
            stream.write_all(&request_bytes(2, name)).unwrap();
            assert!(read_until_closed(&mut stream).is_empty());
            assert!(
                server
                    .line()
                    .contains("request body of 4105 bytes exceeds the limit of 4104")
            );
            continue;
        }
        assert_eq!(
            verdict_for(&server, name),
            1,
            "{:?} must be denied",
            String::from_utf8_lossy(name)
        );
        let log = server.line();
        assert!(log.starts_with("refused \""), "{log}");
        assert_printable(&log);
    }
    assert!(entries(&dir).is_empty());
    assert_eq!(
        entries(root.path()),
        ["inbox"],
        "nothing escaped the directory"
    );
}

// The C# clients send the path as typed.
#[test]
fn paths_are_stored_under_their_last_part_inside_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("inbox");
    let server = Running::fup_server(&dir, &["--yes"], Input::Text(""));
    let cases: [(&[u8], &str); 8] = [
        (b"../x", "x"),
        (b"../../etc/passwd", "passwd"),
        (b"/abs", "abs"),
        (b"a/b", "b"),
        (b"a\\c", "c"),
        (b"..\\y", "y"),
        (br"C:\Users\u\f.bin", "f.bin"),
        // An overlong UTF-8 "/" is not UTF-8; as CP949 it is the syllable 유.
        (b"\xc0\xaf", "유"),
    ];
    for (name, stored) in cases {
        let mut stream = connect(server.addr);
        let mut upload = request_bytes(2, name);
        upload.extend(data(1, 0, true, b"ok"));
        stream.write_all(&upload).unwrap();
        assert_eq!(&read_until_closed(&mut stream)[21..], GOLDEN_RESULT);
        let log = server.line();
        assert!(
            log.contains(&format!(" as \"{stored}\" "))
                || log.contains(&format!("\"{stored}\" (decoded from CP949) 2 B")),
            "{log}"
        );
        assert_printable(&log);
    }
    let mut expected: Vec<&str> = cases.iter().map(|(_, stored)| *stored).collect();
    expected.sort();
    assert_eq!(entries(&dir), expected);
    assert_eq!(
        entries(root.path()),
        ["inbox"],
        "nothing escaped the directory"
    );
}

#[test]
fn odd_but_harmless_names_are_stored_under_exactly_those_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let long = "가".repeat(85); // 255 bytes
    let names = [
        "-rf",
        "$(x)",
        "a b",
        "사진 1.jpg",
        long.as_str(),
        "*?<>|",
        "'q'\"q\"",
        "#h;s&m",
        "~user",
        "a.b.c",
        "a..b",
    ];
    for name in names {
        let mut stream = connect(server.addr);
        stream.write_all(&upload_bytes(name, b"ok", 1024)).unwrap();
        assert_eq!(
            &read_until_closed(&mut stream)[21..],
            GOLDEN_RESULT,
            "{name}"
        );
        server.line();
    }
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(entries(dir.path()), expected);
}

#[test]
fn client_prints_names_escaped() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a\x1b[2Jb");
    fs::write(&file, b"x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    // The client refuses the name itself, escaped, before connecting.
    let out = fup_client(&server.port(), &[file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.ends_with("a\\u{1b}[2Jb: its name: name contains a control character\n"),
        "{stderr}"
    );
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'));
    // Nothing was connected: the next line of the server's is the plain upload's.
    // Sent plain, the server refuses it, and the client says so escaped.
    let out = fup_client(&server.port(), &["--plain", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(r#""a\u{1b}[2Jb" 1 B: denied by server"#),
        "{stderr}"
    );
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'));
    assert!(server.line().contains("name contains a control character"));
}

#[test]
fn entries_already_in_the_directory_are_never_followed_opened_or_replaced() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target.txt");
    fs::write(&target, b"precious").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("link.txt")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("new.txt"),
        dir.path().join("dangling.txt"),
    )
    .unwrap();
    fs::create_dir(dir.path().join("dir.txt")).unwrap();
    fs::write(dir.path().join("exists.txt"), b"old").unwrap();
    let status = Command::new("mkfifo")
        .arg(dir.path().join("fifo.txt"))
        .status()
        .unwrap();
    assert!(status.success());

    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    for name in [
        "link.txt",
        "dangling.txt",
        "dir.txt",
        "exists.txt",
        "fifo.txt",
    ] {
        let mut stream = connect(server.addr);
        stream.write_all(&upload_bytes(name, b"upload", 4)).unwrap();
        assert_eq!(
            &read_until_closed(&mut stream)[21..],
            GOLDEN_RESULT,
            "{name}"
        );
        let stem = name.trim_end_matches(".txt");
        assert!(
            server
                .line()
                .starts_with(&format!("stored \"{name}\" as \"{stem} (1).txt\""))
        );
        assert_eq!(
            fs::read(dir.path().join(format!("{stem} (1).txt"))).unwrap(),
            b"upload"
        );
    }
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    assert!(!outside.path().join("new.txt").exists());
    assert_eq!(fs::read(dir.path().join("exists.txt")).unwrap(), b"old");
    assert!(
        fs::symlink_metadata(dir.path().join("fifo.txt"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        fs::symlink_metadata(dir.path().join("link.txt"))
            .unwrap()
            .is_symlink()
    );
    assert!(dir.path().join("dir.txt").is_dir());
}

/// A deterministic stream of cut points (a small LCG: no extra crate, same run every time).
fn cut_points(len: usize, count: usize) -> Vec<usize> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % len
        })
        .collect()
}

#[test]
fn clients_killed_at_random_points_leave_nothing_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let file = pattern(300_000);
    let upload = upload_bytes("victim.bin", &file, 16 * 1024);
    // Every cut past the request's header, plus the edges around each message boundary.
    let mut cuts = cut_points(upload.len(), 40);
    cuts.extend([1, 16, 24, 25, 41, 41 + 16 * 1024, upload.len() - 1]);
    for cut in &cuts {
        let mut stream = connect(server.addr);
        stream.write_all(&upload[..*cut]).unwrap();
        // The "kill": the kernel closes the socket of a dead process just like this.
        drop(stream);
        let log = server.line();
        assert!(
            log.starts_with("failed") || log.contains("before a request"),
            "cut {cut}: {log}"
        );
        assert!(
            entries(dir.path()).is_empty(),
            "cut {cut}: {:?}",
            entries(dir.path())
        );
    }
    // Real processes killed mid-upload, too (plain ones: a secure client's cut upload is
    // kept hidden for it to resume, see tests/resume.rs).
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("big.bin");
    fs::write(&big, pattern(64 << 20)).unwrap();
    for _ in 0..3 {
        let mut client = spawn_fup_client(&[
            "--plain",
            "--port",
            &server.port(),
            "--chunk-size",
            "512",
            "127.0.0.1",
            big.to_str().unwrap(),
        ]);
        // Kill it once its temp file exists, i.e. mid-upload.
        let deadline = Instant::now() + TIMEOUT;
        while entries(dir.path()).is_empty() {
            assert!(Instant::now() < deadline, "upload never started");
            thread::sleep(Duration::from_millis(1));
        }
        client.kill().unwrap();
        client.wait().unwrap();
        assert!(server.line().starts_with("failed \"big.bin\""));
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
    // Still serving.
    let out = fup_client(&server.port(), &[big.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(entries(dir.path()), ["big.bin"]);
}

/// Uploads `len` bytes with the real client; returns (exit code, stderr).
fn upload_len(server: &Running, src: &Path, name: &str, len: usize) -> (Option<i32>, String) {
    let path = src.join(name);
    fs::write(&path, pattern(len)).unwrap();
    let out = fup_client(&server.port(), &[path.to_str().unwrap()]);
    (out.status.code(), text(&out).1)
}

#[test]
fn file_size_limit_fails_the_upload_not_the_server() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB file-size limit: past it writes fail with EFBIG (SIGXFSZ is ignored).
    let server = Running::limited_fup_server(dir.path(), "--yes", Input::Text(""));
    let (code, stderr) = upload_len(&server, src.path(), "big.bin", 200_000);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("storing the file failed"), "{stderr}");
    let log = server.line();
    assert!(
        log.starts_with("failed \"big.bin\"") && log.contains("File too large"),
        "{log}"
    );
    assert!(entries(dir.path()).is_empty());
    let (code, stderr) = upload_len(&server, src.path(), "small.bin", 10_000);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(entries(dir.path()), ["small.bin"]);
}

/// A tiny tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_disk_fails_the_upload_not_the_server() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(mount.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Needs root; the file-size-limit test covers the same path without it.
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    let mount = Tmpfs(mount);
    let src = tempfile::tempdir().unwrap();
    let server = Running::fup_server(mount.0.path(), &["--yes"], Input::Text(""));
    // Too large for the free space: denied before anything is written.
    let (code, stderr) = upload_len(&server, src.path(), "big.bin", 1 << 20);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("denied by server"), "{stderr}");
    assert!(
        server
            .line()
            .contains("not enough free space (256.0 KiB free)")
    );
    // Fits when accepted, but the disk fills up before the data arrives: ENOSPC mid-write.
    let mut stream = connect(server.addr);
    stream.write_all(&request(200_000, "late.bin")).unwrap();
    let mut response = [0; 21];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(response[20], 0, "accepted");
    let filler = mount.0.path().join("filler");
    let _ = fs::write(&filler, vec![0u8; 200_000]);
    let _ = stream.write_all(&data(1, 0, true, &pattern(200_000)));
    let replies = read_until_closed(&mut stream);
    assert_eq!(replies.get(20), Some(&0), "a failure result");
    let log = server.line();
    assert!(
        log.starts_with("failed \"late.bin\"") && log.contains("No space left on device"),
        "{log}"
    );
    fs::remove_file(&filler).unwrap();
    assert!(entries(mount.0.path()).is_empty());
    let (code, stderr) = upload_len(&server, src.path(), "small.bin", 10_000);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(entries(mount.0.path()), ["small.bin"]);
}

#[test]
fn silent_and_trickling_peers_are_cut_off_by_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    // Without the page, a silent connection is a failure worth a line (with it, see
    // web::a_browsers_spare_connection_is_closed_quietly).
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--timeout", "1", "--no-web"],
        Input::Text(""),
    );

    // Silent: connects and sends nothing.
    let started = Instant::now();
    let mut idle = connect(server.addr);
    assert!(read_until_closed(&mut idle).is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        server
            .line()
            .contains("timed out after 1 s waiting for a request")
    );

    // Trickling the request a byte at a time, each byte well within any per-read timeout.
    let trickle = |stream: TcpStream, bytes: Vec<u8>| {
        thread::spawn(move || {
            let mut stream = stream;
            for byte in bytes.into_iter().take(60) {
                if stream.write_all(&[byte]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    let mut slow = connect(server.addr);
    let writer = trickle(slow.try_clone().unwrap(), request(100, "slow.bin"));
    assert!(read_until_closed(&mut slow).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server
            .line()
            .contains("timed out after 1 s waiting for a request")
    );
    // The server may already have reset the connection: that is what is tested.
    let _ = slow.shutdown(Shutdown::Both);
    writer.join().unwrap();

    // Trickling data after being accepted: cut off, told so, nothing kept.
    let mut slow = connect(server.addr);
    slow.write_all(&request(100, "slow.bin")).unwrap();
    let mut response = [0; 21];
    slow.read_exact(&mut response).unwrap();
    assert_eq!(response[20], 0);
    let started = Instant::now();
    let writer = trickle(slow.try_clone().unwrap(), data(1, 0, true, &[7; 100]));
    let replies = read_until_closed(&mut slow);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(replies[20], 0, "a failure result");
    let log = server.line();
    assert!(
        log.starts_with("failed \"slow.bin\"")
            && log.contains("timed out after 1 s waiting for a data message"),
        "{log}"
    );
    // The server may already have reset the connection: that is what is tested.
    let _ = slow.shutdown(Shutdown::Both);
    writer.join().unwrap();
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn unanswered_prompt_denies_and_a_client_that_hangs_up_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &["--prompt-timeout", "1"], Input::Pipe);
    // Nobody answers: denied after the prompt timeout.
    let started = Instant::now();
    assert_eq!(verdict_for(&server, b"a.txt"), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.line().starts_with("denied \"a.txt\""));
    server.err_line_containing("no answer within 1 s");

    // First asks; second queues behind it and hangs up; only then does the operator answer.
    let mut first = connect(server.addr);
    first.write_all(&request(0, "first")).unwrap();
    server.err_line_containing("\"first\"");
    server.err_line_containing("accept? [y/N");
    let second = connect(server.addr);
    (&second).write_all(&request(0, "second")).unwrap();
    drop(second);
    assert!(server.line().starts_with("dropped \"second\""));
    server.answer("y");
    let mut response = [0; 21];
    first.read_exact(&mut response).unwrap();
    assert_eq!(response[20], 0, "the answer went to the first question");
    assert!(server.line().starts_with("stored \"first\""));
}

#[test]
fn connection_flood_is_bounded_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &[
            "--yes",
            "--max-connections",
            "64",
            "--max-per-address",
            "200",
            "--timeout",
            "30",
        ],
        Input::Text(""),
    );
    let flood: Vec<TcpStream> = (0..200).map(|_| connect(server.addr)).collect();
    for _ in 0..136 {
        let line = server.line();
        assert!(
            line.ends_with("closed at once: already serving 64 connections (--max-connections)"),
            "{line}"
        );
    }
    let threads = threads_of(server.pid());
    eprintln!("fup-server threads under a 200-connection flood: {threads}");
    // The connections', the accepting one, the main one and the sweeper of partials.
    assert!(threads <= 64 + 3, "{threads} threads");
    drop(flood);
    for _ in 0..64 {
        assert!(
            server
                .line()
                .ends_with("connection closed without a request")
        );
    }
    let src = tempfile::tempdir().unwrap();
    let (code, stderr) = upload_len(&server, src.path(), "after.bin", 1000);
    assert_eq!(code, Some(0), "{stderr}");
}

// echo-server shares fup-server's accept loop, and with it the connection cap.
#[test]
fn echo_server_caps_its_connections() {
    let server = Running::echo_server_with(&["--max-connections", "2"]);
    let held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr)).collect();
    // Each held connection answers, so both have their thread before the next comes.
    for mut stream in &held {
        stream.write_all(b"x").unwrap();
        let mut one = [0; 1];
        stream.read_exact(&mut one).unwrap();
    }
    let mut third = connect(server.addr);
    assert_eq!(
        server.line(),
        format!(
            "{}: closed at once: already serving 2 connections (--max-connections)",
            third.local_addr().unwrap()
        )
    );
    assert!(read_until_closed(&mut third).is_empty());
    drop(held);
    for _ in 0..2 {
        let line = server.line();
        assert!(line.ends_with(": echoed 1 bytes"), "{line}");
    }
    // Slots given back: served again. A slot comes back as its handler returns, just after
    // the handler's line, so a try in between is still closed at once (and says so).
    let served = (0..50).any(|_| {
        let mut fourth = connect(server.addr);
        let _ = fourth.write_all(b"back");
        let _ = fourth.shutdown(Shutdown::Write);
        if read_until_closed(&mut fourth) == b"back" {
            return true;
        }
        let line = server.line();
        assert!(line.contains("closed at once"), "{line}");
        false
    });
    assert!(served, "never served again");
}

fn threads_of(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

#[test]
fn four_gib_claims_do_not_grow_server_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let before = status_field(server.pid(), "VmHWM:");
    for i in 0..50 {
        let mut stream = connect(server.addr);
        // A request body, and after acceptance a data message, each claiming 4 GiB.
        let claim = if i % 2 == 0 {
            header(1, 1, u32::MAX, 0, 1, 0)
        } else {
            [
                request(1 << 20, "huge.bin"),
                header(1, 3, u32::MAX, 0, 1, 0),
            ]
            .concat()
        };
        stream.write_all(&claim).unwrap();
        // Done sending, as a real client would be: the server need not wait for more.
        stream.shutdown(Shutdown::Write).unwrap();
        read_until_closed(&mut stream);
        assert!(server.line().contains("exceeds the limit"));
    }
    let after = status_field(server.pid(), "VmHWM:");
    eprintln!("fup-server peak RSS: {before} kB before, {after} kB after 50 claims of 4 GiB");
    assert!(after < 16 * 1024, "peak RSS {after} kB");
}

#[test]
fn interrupt_removes_partial_uploads_and_start_sweeps_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(".fup-crashed.part"),
        b"left by a killed server",
    )
    .unwrap();
    let mut server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    assert!(
        server
            .err_line()
            .contains("removed 1 partial upload(s) left by an earlier run")
    );
    assert!(entries(dir.path()).is_empty());

    let mut stream = connect(server.addr);
    stream.write_all(&request(1000, "partial.bin")).unwrap();
    let mut response = [0; 21];
    stream.read_exact(&mut response).unwrap();
    stream.write_all(&data(1, 0, false, &[1; 500])).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while entries(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "temp file never appeared");
        thread::sleep(Duration::from_millis(1));
    }
    signal(server.pid(), "INT");
    assert_eq!(server.wait_exit(), Some(130));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn client_gives_up_on_a_stalling_server() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"data").unwrap();
    let file = file.to_str().unwrap();
    // Never answers the request.
    let (addr, fake) = fake_server_with(vec![], false);
    let started = Instant::now();
    let out = fup_client(
        &addr.port().to_string(),
        &["--plain", "--answer-timeout", "1", file],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("timed out after 1 s waiting for the server's answer"),
        "{}",
        text(&out).1
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    fake.join().unwrap();
    // Accepts, takes the data, never gives a result.
    let (addr, fake) = fake_server_with(vec![GOLDEN_RESPONSE.to_vec()], false);
    let out = fup_client(
        &addr.port().to_string(),
        &["--plain", "--timeout", "1", file],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("timed out after 1 s waiting for the server's result"),
        "{}",
        text(&out).1
    );
    fake.join().unwrap();
    // Lies about which request the result is for.
    let mut lie = GOLDEN_RESULT.to_vec();
    lie[16] = 9;
    let (addr, fake) = fake_server(vec![GOLDEN_RESPONSE.to_vec(), lie]);
    let out = fup_client(&addr.port().to_string(), &["--plain", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("expected message id 1, got 9"),
        "{}",
        text(&out).1
    );
    fake.join().unwrap();
}

#[test]
fn interrupt_denies_requests_waiting_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let mut first = connect(server.addr);
    first.write_all(&request(10, "first")).unwrap();
    server.err_line_containing("accept? [y/N");
    let mut second = connect(server.addr);
    second.write_all(&request(10, "second")).unwrap();
    signal(server.pid(), "INT");
    for stream in [&mut first, &mut second] {
        let mut response = [0; 21];
        stream.read_exact(&mut response).unwrap();
        assert_eq!(response[20], 1, "denied, not just dropped");
    }
    assert_eq!(server.wait_exit(), Some(130));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn client_interrupted_exits_130_and_the_server_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nobody answers: the client waits for the server's answer until interrupted.
    let server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let file = src.path().join("f.bin");
    fs::write(&file, pattern(1000)).unwrap();
    let mut client = spawn_fup_client(&[
        "--port",
        &server.port(),
        // Bounded even if the signal went astray.
        "--answer-timeout",
        "20",
        "127.0.0.1",
        file.to_str().unwrap(),
    ]);
    server.err_line_containing("accept? [y/N");
    signal(client.id(), "INT");
    assert_eq!(client.wait().unwrap().code(), Some(130));
    assert!(
        server.line().starts_with("dropped \"f.bin\""),
        "the question was withdrawn"
    );
    assert!(entries(dir.path()).is_empty());
}

// Before: a server whose terminal is gone could not be stopped: the signal handler panicked
// writing to stderr before it could exit.
#[test]
fn terminate_works_even_when_stderr_is_gone() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = with_config(&mut Command::new(env!("CARGO_BIN_EXE_fup-server")))
        .args(["--yes", "--port", "0", "--bind", "127.0.0.1"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody will ever read stderr again: writes to it now fail.
    drop(child.stderr.take());
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    signal(child.id(), "TERM");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fup-server did not exit on SIGTERM");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
}
