//! Every file accounted for, as it happens: one result per file in every mode (the JSON
//! schema on every verdict), policy per file inside a batch, items told as they are
//! published, times and dot files that travel, arguments checked before connecting, and
//! words that say what to do when the server goes or the user stops.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use crate::util::*;

/// The JSON objects on `stdout`, each checked against the schema, by their `name`.
fn by_name(stdout: &str) -> BTreeMap<String, serde_json::Value> {
    stdout
        .lines()
        .map(|line| {
            let object: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}"));
            check_schema(&object);
            (object["name"].as_str().unwrap().to_string(), object)
        })
        .collect()
}

/// `name`'s verdict and code.
fn fate(objects: &BTreeMap<String, serde_json::Value>, name: &str) -> (String, String) {
    let o = objects
        .get(name)
        .unwrap_or_else(|| panic!("no object for {name}: {objects:#?}"));
    (
        o["verdict"].as_str().unwrap().to_string(),
        o["code"].as_str().unwrap().to_string(),
    )
}

fn pair(verdict: &str, code: &str) -> (String, String) {
    (verdict.to_string(), code.to_string())
}

/// The client's files for the policy tests: two small, two large (one in a folder), a
/// symlink inside the folder, and a path that is not there.
fn mixed_files(src: &Path) -> Vec<String> {
    let album = src.join("album");
    fs::create_dir_all(&album).unwrap();
    for (path, len) in [
        (src.join("small.bin"), 10_000),
        (src.join("big.bin"), 300_000),
        (album.join("small.jpg"), 20_000),
        (album.join("big.jpg"), 250_000),
    ] {
        fs::write(path, pattern(len)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", album.join("link")).unwrap();
    [
        src.join("small.bin"),
        src.join("big.bin"),
        album,
        src.join("missing.bin"),
    ]
    .iter()
    .map(|p| p.to_str().unwrap().to_string())
    .collect()
}

#[test]
fn a_size_policy_refuses_only_its_files_and_every_file_gets_one_object() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &["--max-size", "200K"], Input::Pipe);
    let files = mixed_files(src.path());
    let port = server.port();
    let mut args = vec!["--json"];
    args.extend(files.iter().map(String::as_str));
    let client = spawn_piped_client(&port, &args);
    // One question, about what the policy left.
    let question = server.err_line_containing("refused already");
    assert_eq!(
        question.trim(),
        "2 files refused already (larger than --max-size 200.0 KiB): the question is about the rest"
    );
    server.answer("y");
    let (code, stdout, stderr) = finish(client);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr, "", "everything is in the JSON");
    let objects = by_name(&stdout);
    assert_eq!(objects.len(), 6, "{stdout}");
    assert_eq!(fate(&objects, "missing.bin"), pair("error", "unreadable"));
    assert_eq!(fate(&objects, "album/link"), pair("skipped", "symlink"));
    assert_eq!(fate(&objects, "big.bin"), pair("denied", "too-large"));
    assert_eq!(fate(&objects, "album/big.jpg"), pair("denied", "too-large"));
    assert_eq!(fate(&objects, "small.bin"), pair("stored", "stored"));
    assert_eq!(fate(&objects, "album/small.jpg"), pair("stored", "stored"));
    assert_eq!(
        objects["big.bin"]["reason"],
        "larger than --max-size 200.0 KiB"
    );
    let stored = &objects["album/small.jpg"];
    assert_eq!(stored["size"], 20_000);
    assert_eq!(stored["secure"], true);
    assert_eq!(stored["stored_as"], "album/small.jpg");
    assert_eq!(stored["blake3"].as_str().unwrap().len(), 64);
    assert_eq!(entries(dir.path()), ["album", "small.bin"]);
    assert_eq!(entries(&dir.path().join("album")), ["small.jpg"]);
    let log = server.line();
    assert!(
        log.starts_with("stored 2 of a batch of 4 files, 1 folder"),
        "{log}"
    );
    assert!(
        log.contains(" (2 refused: larger than --max-size 200.0 KiB) in "),
        "{log}"
    );

    // Plain: the same files one by one; the policy denies the big one unasked, the folder
    // cannot go, and every file still gets one object in the same schema.
    let plain = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(plain.path(), &["--max-size", "200K"], Input::Pipe);
    let mut args = vec!["--json", "--plain"];
    args.extend(files.iter().map(String::as_str));
    let client = spawn_piped_client(&server.port(), &args);
    server.err_line_containing("accept? [y/N]");
    server.answer("y");
    let (code, stdout, stderr) = finish(client);
    assert_eq!(code, Some(1), "{stderr}");
    let objects = by_name(&stdout);
    assert_eq!(objects.len(), 4, "{stdout}");
    assert_eq!(fate(&objects, "missing.bin"), pair("error", "unreadable"));
    assert_eq!(fate(&objects, "album"), pair("error", "directory"));
    assert_eq!(fate(&objects, "big.bin"), pair("denied", "denied"));
    assert_eq!(fate(&objects, "small.bin"), pair("stored", "stored"));
    assert_eq!(objects["small.bin"]["secure"], false);
    assert_eq!(entries(plain.path()), ["small.bin"]);
}

#[test]
fn each_item_is_told_as_it_is_published_not_at_the_end() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let first = src.path().join("first.txt");
    let big = src.path().join("big.bin");
    fs::write(&first, b"first").unwrap();
    fs::write(&big, pattern(3 << 20)).unwrap();
    // About two seconds for the big file.
    let slow = Throttle::start(server.addr, 3 << 19);
    let mut client = spawn_piped_client(
        &slow.port.to_string(),
        &[
            "--chunk-size",
            "64K",
            first.to_str().unwrap(),
            big.to_str().unwrap(),
        ],
    );
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("sent \"first.txt\" 5 B: stored"), "{line}");
    // Told while the big file is still on its way.
    assert!(
        client.try_wait().unwrap().is_none(),
        "the client is still sending"
    );
    assert!(!dir.path().join("big.bin").exists());
    let (code, rest, stderr) = {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = client.wait_with_output().unwrap();
        (
            out.status.code(),
            rest,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        rest.starts_with("sent \"big.bin\" 3.0 MiB: stored"),
        "{rest}"
    );
    assert!(rest.ends_with(": 2 stored\n"), "{rest}");
}

/// 2001-02-03T04:05:06.789Z, and a second later.
fn times() -> (SystemTime, SystemTime) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(981_173_106_789);
    (t, t + Duration::from_secs(1))
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn set_modified(path: &Path, time: SystemTime) {
    fs::File::open(path).unwrap().set_modified(time).unwrap();
}

#[test]
fn times_travel_and_dot_files_inside_folders_too() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let project = src.path().join("project");
    fs::create_dir_all(project.join(".config")).unwrap();
    for (name, body) in [
        (".gitignore", "target\n"),
        (".env", "KEY=1\n"),
        (".config/settings", "x"),
        ("main.rs", "fn main() {}\n"),
    ] {
        fs::write(project.join(name), body).unwrap();
    }
    let (file_time, dir_time) = times();
    set_modified(&project.join("main.rs"), file_time);
    set_modified(&project.join(".config"), dir_time);
    set_modified(&project, dir_time);
    let lone = src.path().join("notes.txt");
    fs::write(&lone, b"notes").unwrap();
    set_modified(&lone, file_time);
    // A dot file at the top of the upload directory is still refused, before connecting.
    let top_dot = src.path().join(".profile");
    fs::write(&top_dot, b"x").unwrap();
    let out = fup_client(
        &server.port(),
        &[
            project.to_str().unwrap(),
            lone.to_str().unwrap(),
            top_dot.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "fup-client: {}: its name: name starts with a dot\n",
            top_dot.display()
        )
    );
    assert!(stdout.ends_with(": 5 stored, 1 not sent\n"), "{stdout}");
    let got = dir.path().join("project");
    for (name, body) in [
        (".gitignore", "target\n"),
        (".env", "KEY=1\n"),
        (".config/settings", "x"),
    ] {
        assert_eq!(fs::read_to_string(got.join(name)).unwrap(), body, "{name}");
    }
    assert_eq!(modified(&got.join("main.rs")), file_time);
    assert_eq!(modified(&got.join(".config")), dir_time);
    assert_eq!(modified(&got), dir_time);
    assert_eq!(modified(&dir.path().join("notes.txt")), file_time);
}

#[test]
fn arguments_are_checked_before_connecting() {
    let src = tempfile::tempdir().unwrap();
    // Something listening that counts on nobody calling.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dot = src.path().join(".env");
    fs::write(&dot, b"x").unwrap();
    let missing = src.path().join("missing.bin");
    let folder = src.path().join("folder");
    fs::create_dir_all(&folder).unwrap();
    for args in [
        vec![dot.to_str().unwrap(), missing.to_str().unwrap()],
        vec![
            "--plain",
            folder.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
        vec!["--json", missing.to_str().unwrap()],
    ] {
        let out = fup_client(&port, &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        match args[0] {
            "--json" => {
                assert_eq!(stderr, "");
                let object: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                check_schema(&object);
                assert_eq!(object["code"], "unreadable");
            }
            _ => assert_eq!(stderr.lines().count(), 2, "{args:?}: {stderr}"),
        }
        if args[0] == "--plain" {
            assert!(
                stderr.contains("is a directory (send a folder as an archive: tar c "),
                "{stderr}"
            );
        }
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "{args:?} connected"
        );
    }
}

#[test]
fn retry_waits_for_a_server_that_is_restarting() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = src.path().join("later.txt");
    fs::write(&file, b"later").unwrap();
    // A port with nothing on it, for now.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let mut client = spawn_piped_client(&port, &["--retry", "5", file.to_str().unwrap()]);
    let mut stderr = BufReader::new(client.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!("fup-client: cannot connect to 127.0.0.1:{port}: "))
            && line.ends_with("; trying again in 1 s (1 of 5)\n"),
        "{line}"
    );
    // The server comes back on its port.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.args(["--yes", "--bind", "127.0.0.1", "--port", &port])
        .arg(dir.path());
    let _server = Running::command(&mut cmd, Input::Text(""));
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(fs::read(dir.path().join("later.txt")).unwrap(), b"later");
    // Without --retry, the error says what to do.
    let out = fup_client("1", &[file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("(is fup-server running there? --retry N waits for it)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A big file sent slowly to a fresh server in `dir`: the server, the client, and the file.
fn slow_upload(dir: &Path, src: &Path) -> (Running, Throttle, Child, PathBuf) {
    let server = Running::fup_server(dir, &["--yes"], Input::Text(""));
    let big = src.join("big.bin");
    fs::write(&big, pattern(4 << 20)).unwrap();
    let slow = Throttle::start(server.addr, 1 << 20);
    let client = spawn_piped_client(
        &slow.port.to_string(),
        &["--chunk-size", "64K", big.to_str().unwrap()],
    );
    (server, slow, client, big)
}

#[test]
fn a_lost_server_and_ctrl_c_say_what_happens_next() {
    let src = tempfile::tempdir().unwrap();
    // The server killed in the middle: run again, or --retry.
    let dir = tempfile::tempdir().unwrap();
    let (mut server, slow, client, _) = slow_upload(dir.path(), src.path());
    slow.wait_for(1 << 20);
    signal(server.pid(), "KILL");
    server.wait_exit();
    let (code, _, stderr) = finish(client);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("fup-client: connection lost: ")
            && stderr.ends_with(
                "what reached the server is kept: run the same command again to resume (or add --retry N)\n"
            ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Ctrl-C: what the server keeps, and how to go on.
    let dir = tempfile::tempdir().unwrap();
    let (_server, slow, client, _) = slow_upload(dir.path(), src.path());
    slow.wait_for(1 << 20);
    signal(client.id(), "INT");
    let (code, _, stderr) = finish(client);
    assert_eq!(code, Some(130));
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("fup-client: interrupted; the server keeps what reached it (")
            && last.ends_with(" of 4.0 MiB) for a resume: run the same command again"),
        "{stderr}"
    );
}

#[test]
fn one_cause_that_stops_a_batch_is_said_once() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Files past 64 KiB cannot be written there: the first one stops the batch.
    let server = Running::limited_fup_server(dir.path(), "--yes", Input::Text(""));
    let tree = src.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..30 {
        fs::write(tree.join(format!("f{i:02}.bin")), pattern(100_000)).unwrap();
    }
    let (a, b) = (src.path().join("a.txt"), src.path().join("b.txt"));
    fs::write(&a, b"a").unwrap();
    fs::write(&b, b"b").unwrap();
    let paths = [
        tree.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ];
    let out = fup_client(&server.port(), &paths);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("fup-client: tree: ")
            && lines[0].contains("File too large")
            && lines[0].ends_with(" (30 files not stored)"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("fup-client: not sent: the server stopped the batch (")
            && lines[1].ends_with(" (2 files not stored)"),
        "{stderr}"
    );
    assert!(stdout.ends_with(": 0 stored, 32 failed\n"), "{stdout}");
    // In JSON, one object per file all the same.
    let mut args = vec!["--json"];
    args.extend(paths);
    let out = fup_client(&server.port(), &args);
    let objects = by_name(&text(&out).0);
    assert_eq!(objects.len(), 32);
    assert!(objects.values().all(|o| o["verdict"] == "failed"));
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_plain_server_sent_only_folders_gets_nothing_but_the_offer() {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let src = tempfile::tempdir().unwrap();
    let folder = src.path().join("folder");
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join("a.txt"), b"a").unwrap();
    // A plain server as the Python one behaves: it reads the offer as a data message where a
    // request belongs, and closes. It counts the connections it is given.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (count, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let server = {
        let (count, done) = (Arc::clone(&count), Arc::clone(&done));
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + TIMEOUT;
            // Until the client is done, and then every connection still in the queue.
            loop {
                let over = done.load(Ordering::SeqCst);
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                        let mut head = [0; 16];
                        let _ = conn.read_exact(&mut head);
                    }
                    Err(_) if over || std::time::Instant::now() > deadline => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let out = fup_client_fresh(&port, &[folder.to_str().unwrap()]);
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not offer secure mode"), "{stderr}");
    assert!(
        stderr.contains("is a directory (send a folder as an archive"),
        "{stderr}"
    );
    assert_eq!(stdout, "0 stored, 1 not sent\n");
    assert_eq!(count.load(Ordering::SeqCst), 1, "only the offer: {stderr}");
}
