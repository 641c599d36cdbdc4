//! Batches: whole trees and many files in one secure connection, one question, and
//! hostile batches refused whole.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fup::batch::frame::{self, Frame, MANIFEST};
use fup::batch::{Entry, Kind};

use crate::util::*;

/// Every path below `dir`, relative, sorted; directories end in `/`.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for e in fs::read_dir(&at).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                stack.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn trees_arrive_whole_with_their_structure_and_links_are_skipped() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let photos = src.path().join("photos");
    fs::create_dir_all(photos.join("2026/empty")).unwrap();
    fs::create_dir_all(photos.join("사진 모음")).unwrap();
    fs::write(photos.join("a.jpg"), b"jpeg").unwrap();
    fs::write(photos.join("2026/big.bin"), pattern(300_000)).unwrap();
    fs::write(photos.join("사진 모음/with space.png"), b"png").unwrap();
    fs::write(photos.join("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(photos.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", photos.join("link")).unwrap();
    let notes = src.path().join("notes.txt");
    fs::write(&notes, b"notes").unwrap();
    // A "photos" is there already: it is kept.
    fs::create_dir(dir.path().join("photos")).unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let out = fup_client(
        &server.port(),
        &[photos.to_str().unwrap(), notes.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "fup-client: warning: skipped {}: a symbolic link (never followed)\n",
            photos.join("link").display()
        )
    );
    // Off a terminal: one line per file, then the batch's.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "sent \"photos/2026/big.bin\" 293.0 KiB: stored as \"photos (1)/2026/big.bin\", secure, verified",
            "sent \"photos/a.jpg\" 4 B: stored as \"photos (1)/a.jpg\", secure, verified",
            "sent \"photos/run.sh\" 10 B: stored as \"photos (1)/run.sh\", secure, verified",
            "sent \"photos/사진 모음/with space.png\" 3 B: stored as \"photos (1)/사진 모음/with space.png\", secure, verified",
            "sent \"notes.txt\" 5 B: stored, secure, verified",
        ]
    );
    assert!(
        lines[5].starts_with("batch of 5 files, 4 folders, 293.0 KiB in ")
            && lines[5].ends_with(": 5 stored, 1 skipped"),
        "{stdout}"
    );
    let log = server.line();
    assert!(
        log.starts_with(
            "stored batch of 5 files, 4 folders, 293.0 KiB (300022 bytes) as \"photos (1)\", \"notes.txt\" in "
        ),
        "{log}"
    );
    let landed = dir.path().join("photos (1)");
    assert_eq!(
        tree(&landed),
        [
            "2026/",
            "2026/big.bin",
            "2026/empty/",
            "a.jpg",
            "run.sh",
            "사진 모음/",
            "사진 모음/with space.png"
        ]
    );
    assert!(fs::read(landed.join("2026/big.bin")).unwrap() == pattern(300_000));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o111;
    assert_ne!(
        mode(&landed.join("run.sh")),
        0,
        "the executable bit travels"
    );
    assert_eq!(mode(&landed.join("a.jpg")), 0);
    assert_eq!(tree(&dir.path().join("photos")), Vec::<String>::new());
    assert_eq!(fs::read(dir.path().join("notes.txt")).unwrap(), b"notes");
    assert_eq!(entries(dir.path()), ["notes.txt", "photos", "photos (1)"]);
}

#[test]
fn one_question_for_a_whole_batch() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let logs = src.path().join("logs");
    fs::create_dir(&logs).unwrap();
    for i in 0..20 {
        fs::write(logs.join(format!("{i:02}.log")), format!("line {i}\n")).unwrap();
    }
    let args = [logs.to_str().unwrap().to_string()];
    let port = server.port();
    let run = {
        let (port, args) = (port.clone(), args.clone());
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            fup_client(&port, &args)
        }
    };
    // No: nothing is stored, and the client hears it once.
    let client = std::thread::spawn(run.clone());
    let asked = server.err_line_containing("wants to send");
    assert!(
        asked.ends_with("wants to send 20 files, 1 folder, 150 B (150 bytes): \"logs\""),
        "{asked}"
    );
    server.err_line_containing("accept? [y/N/a]");
    server.answer("n");
    let out = client.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out).1,
        "fup-client: batch of 20 files, 1 folder, 150 B denied by server, secure\n"
    );
    assert!(
        server
            .line()
            .starts_with("denied batch of 20 files, 1 folder, 150 B")
    );
    assert!(entries(dir.path()).is_empty());
    // Yes: all of it, after one answer.
    let client = std::thread::spawn(run);
    server.err_line_containing("accept? [y/N/a]");
    server.answer("y");
    assert!(client.join().unwrap().status.success());
    assert!(
        server
            .line()
            .starts_with("stored batch of 20 files, 1 folder")
    );
    assert_eq!(tree(&dir.path().join("logs")).len(), 20);
}

#[test]
fn hostile_batches_are_refused_whole_and_nothing_is_made() {
    let inbox = tempfile::tempdir().unwrap();
    let server = Running::fup_server(inbox.path(), &["--yes"], Input::Text(""));
    let port = server.addr.port();
    let deep: String = (0..65)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let mut too_deep: Vec<Entry> = Vec::new();
    for depth in 1..=65 {
        let path: Vec<String> = deep.split('/').take(depth).map(str::to_string).collect();
        too_deep.push(Entry {
            path,
            kind: Kind::Dir,
            modified: None,
        });
    }
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "dot dot",
            vec![dir_entry("a"), file_entry("a/../../etc/x", 1)],
            "\"a/../../etc/x\": name is . or ..",
        ),
        (
            "absolute",
            vec![file_entry("/etc/passwd", 1)],
            "\"/etc/passwd\": name is empty",
        ),
        (
            "file and directory",
            vec![file_entry("a", 1), file_entry("a/b", 1)],
            "\"a/b\" is inside a file",
        ),
        (
            "duplicate",
            vec![dir_entry("a"), file_entry("a/b", 1), file_entry("a/b", 1)],
            "\"a/b\" comes twice",
        ),
        (
            "no parent",
            vec![file_entry("a/b", 1)],
            "\"a/b\" comes before its directory",
        ),
        (
            "out of its run",
            vec![dir_entry("a"), dir_entry("b"), file_entry("a/x", 1)],
            "\"a/x\" comes after another top item",
        ),
        (
            "hidden at the top",
            vec![file_entry(".ssh", 1)],
            "\".ssh\": name starts with a dot",
        ),
        ("too deep", too_deep, "is more than 64 levels deep"),
    ];
    for (what, batch, says) in cases {
        let (_config, mut link) = secure_link(port);
        frame::write_manifest(&mut link, &batch).unwrap();
        link.flush().unwrap();
        let why = verdict(&mut link).unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(why.contains(says), "{what}: {why}");
        let log = server.line();
        assert!(
            log.starts_with("refused batch from 127.0.0.1:") && log.contains(says),
            "{what}: {log}"
        );
        assert!(entries(inbox.path()).is_empty(), "{what}");
    }
    // A manifest message after the one marked last, and a size that lies: the batch fails
    // at once, the tree it was in is not published.
    let lies: [(&str, Vec<u8>); 2] = [
        ("a manifest after the end", {
            let mut m = Vec::new();
            frame::send(&mut m, MANIFEST, 0, true, &[]).unwrap();
            m
        }),
        ("more bytes than announced", {
            let mut m = Frame {
                id: 1,
                kind: frame::DATA,
                len: 5,
                last: true,
                seq: 0,
            }
            .encode()
            .to_vec();
            m.extend_from_slice(b"12345");
            m
        }),
    ];
    for (what, after) in lies {
        let (_config, mut link) = secure_link(port);
        frame::write_manifest(&mut link, &[dir_entry("t"), file_entry("t/f", 3)]).unwrap();
        link.flush().unwrap();
        assert_eq!(verdict(&mut link), None, "{what}");
        link.write_all(&after).unwrap();
        link.flush().unwrap();
        let log = server.line();
        assert!(
            log.starts_with("failed batch of 1 file, 1 folder") && log.ends_with("; nothing kept"),
            "{what}: {log}"
        );
        assert!(
            entries(inbox.path()).is_empty(),
            "{what}: {:?}",
            entries(inbox.path())
        );
    }
}

/// Starts `fup-client FILE TREE` in small messages, and returns once the tree is being
/// received (its temp directory exists in `dir`).
fn send_until_the_tree_starts(
    server: &Running,
    dir: &Path,
    file: &Path,
    tree: &Path,
) -> std::process::Child {
    let client = spawn_fup_client(&[
        "--port",
        &server.port(),
        "--chunk-size",
        "4096",
        "127.0.0.1",
        file.to_str().unwrap(),
        tree.to_str().unwrap(),
    ]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !entries(dir).iter().any(|e| e.ends_with(".tree")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    client
}

#[test]
fn a_cut_batch_keeps_whole_top_items_only() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Keeping no partials, as before (tests/resume.rs has the cut batches that resume).
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--max-partial", "0"],
        Input::Text(""),
    );
    let first = src.path().join("first.txt");
    fs::write(&first, b"whole").unwrap();
    let big = src.path().join("big");
    fs::create_dir(&big).unwrap();
    fs::write(big.join("a.bin"), pattern(1 << 20)).unwrap();
    fs::write(big.join("b.bin"), pattern(64 << 20)).unwrap();
    // Cut once the tree is being received.
    let mut client = send_until_the_tree_starts(&server, dir.path(), &first, &big);
    client.kill().unwrap();
    client.wait().unwrap();
    let log = server.line();
    assert!(
        log.starts_with("failed batch of 3 files, 1 folder")
            && log.ends_with("; kept \"first.txt\""),
        "{log}"
    );
    assert_eq!(entries(dir.path()), ["first.txt"]);
    assert_eq!(fs::read(dir.path().join("first.txt")).unwrap(), b"whole");
    // The server killed (SIGKILL: nothing of its own cleaning runs) in the middle of a tree:
    // its temp directory stays, and the next start sweeps it; what was published stays.
    let second = src.path().join("second.txt");
    fs::write(&second, b"also whole").unwrap();
    let mut client = send_until_the_tree_starts(&server, dir.path(), &second, &big);
    signal(server.pid(), "KILL");
    client.wait().unwrap();
    drop(server);
    assert!(entries(dir.path()).iter().any(|e| e.ends_with(".tree")));
    let mut again = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    let server = Running::command(
        again
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--yes",
                "--max-partial",
                "0",
            ])
            .arg(dir.path()),
        Input::Text(""),
    );
    assert_eq!(
        server.err_line(),
        "fup-server: removed 1 partial upload(s) left by an earlier run"
    );
    assert_eq!(entries(dir.path()), ["first.txt", "second.txt"]);
}

#[test]
fn plain_servers_get_several_files_at_once_with_parallel() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let files: Vec<String> = (0..8)
        .map(|i| {
            let path = src.path().join(format!("f{i}.bin"));
            fs::write(&path, pattern(100_000 + i)).unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect();
    let mut args = vec!["--plain", "-j", "4"];
    args.extend(files.iter().map(String::as_str));
    let out = fup_client(&server.port(), &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        9,
        "a line per file and the totals: {stdout}"
    );
    assert!(stdout.ends_with("\n8 stored\n"), "{stdout}");
    for i in 0..8 {
        assert!(server.line().starts_with("stored \"f"));
        assert!(fs::read(dir.path().join(format!("f{i}.bin"))).unwrap() == pattern(100_000 + i));
    }
    // A directory to a plain server says how to send it instead.
    let out = fup_client(&server.port(), &["--plain", src.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("is a directory (send a folder as an archive: tar c "),
        "{}",
        text(&out).1
    );
}

// Every secure file is checked end to end before it is published.
#[test]
fn a_lying_digest_publishes_nothing() {
    let inbox = tempfile::tempdir().unwrap();
    let server = Running::fup_server(inbox.path(), &["--yes"], Input::Text(""));
    let (_config, mut link) = secure_link(server.addr.port());
    frame::write_manifest(&mut link, &[file_entry("f.txt", 3)]).unwrap();
    link.flush().unwrap();
    assert_eq!(verdict(&mut link), None);
    let mut data = Frame {
        id: 0,
        kind: frame::DATA,
        len: 3,
        last: true,
        seq: 0,
    }
    .encode()
    .to_vec();
    data.extend_from_slice(b"abc");
    link.write_all(&data).unwrap();
    // The BLAKE3 of other bytes.
    frame::send(
        &mut link,
        frame::DIGEST,
        0,
        true,
        blake3::hash(b"abd").as_bytes(),
    )
    .unwrap();
    link.flush().unwrap();
    let head = Frame::read_from(&mut link).unwrap().unwrap();
    assert_eq!(head.kind, frame::DONE);
    let body = frame::read_body(&mut link, head.len, 1 << 20).unwrap();
    let done = frame::decode_done(&body).unwrap();
    assert!(!done[0].is_stored(), "{done:?}");
    let log = server.line();
    assert!(
        log.starts_with("failed \"f.txt\"")
            && log.ends_with("the file's BLAKE3 does not match the client's: changed on the way, or a lying client"),
        "{log}"
    );
    assert!(entries(inbox.path()).is_empty());
}

// A bit flipped below TLS: the record fails its check, nothing is published.
#[test]
fn a_bit_flipped_on_the_wire_publishes_nothing() {
    use std::io::Read;
    use std::net::{Shutdown, TcpListener};
    let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(inbox.path(), &["--yes"], Input::Text(""));
    let target = server.addr;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A relay that flips one bit of the client's 200,000th byte (deep in the file's data).
    let relay = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut upstream = connect(target);
        let (mut back_from, mut back_to) =
            (upstream.try_clone().unwrap(), client.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
            let _ = back_to.shutdown(Shutdown::Both);
        });
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (mut seen, mut buf) = (0usize, vec![0; 16 * 1024]);
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if (seen..seen + n).contains(&200_000) {
                        buf[200_000 - seen] ^= 0x10;
                    }
                    seen += n;
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = upstream.shutdown(Shutdown::Write);
        let _ = back.join();
    });
    let path = src.path().join("data.bin");
    fs::write(&path, pattern(1 << 20)).unwrap();
    let out = fup_client(
        &port.to_string(),
        &["--timeout", "10", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).0);
    let log = server.line();
    assert!(log.starts_with("failed \"data.bin\""), "{log}");
    assert!(
        log.contains("decrypt") || log.contains("TLS") || log.contains("invalid"),
        "{log}"
    );
    relay.join().unwrap();
    // What arrived before the flip passed its checks, and waits hidden for a resume.
    assert!(entries(inbox.path()).iter().all(|e| e == ".fup-partial"));
}

// The client reports a verification failure: here a client whose end-to-end check
// is switched off sends no digest, which a server that checks cannot match.
#[test]
fn the_client_reports_a_verification_failure() {
    let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(inbox.path(), &["--yes"], Input::Text(""));
    let path = src.path().join("f.bin");
    fs::write(&path, pattern(100_000)).unwrap();
    pin_shared(&server.port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    with_config(&mut cmd)
        .env(frame::NO_VERIFY_VAR, "1")
        .args(["--port", &server.port(), "127.0.0.1"])
        .arg(&path);
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "fup-client: \"f.bin\" 97.7 KiB: server reported that storing the file failed: the \
         file's BLAKE3 does not match the client's: changed on the way, or a lying client, \
         secure\n"
    );
    assert!(server.line().starts_with("failed \"f.bin\""));
    assert!(entries(inbox.path()).is_empty());
}
