//! Pairing codes: `fup-server --pair` and `fup-client --code`, real binaries on 127.0.0.1.

use std::process::{Command, Output};

use crate::util::{Input, Install, Running, TIMEOUT, install, text};

/// `fup-server --pair EXTRA DIR` as `server`, stdin closed (no one to ask): the server and
/// the code it printed.
fn pairing_server(server: &Install, dir: &std::path::Path, extra: &[&str]) -> (Running, String) {
    let mut args = vec!["--pair", "--json"];
    args.extend_from_slice(extra);
    let running = server.server(dir, &args, Input::Text(""));
    let ready: serde_json::Value = serde_json::from_str(&running.ready).unwrap();
    let code = ready["code"].as_str().expect("a code").to_string();
    (running, code)
}

/// `fup-client ARGS` as `client`.
fn client(client: &Install, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    cmd.env("FUP_CONFIG_DIR", client.dir.path()).args(args);
    assert_cmd::Command::from_std(cmd)
        .timeout(TIMEOUT)
        .output()
        .unwrap()
}

fn file(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn the_right_code_pairs_both_ways_and_the_next_upload_needs_neither_code_nor_question() {
    let (server, laptop) = (install(), install());
    let inbox = tempfile::tempdir().unwrap();
    let (running, code) = pairing_server(&server, inbox.path(), &[]);
    let words: Vec<&str> = code.split('-').collect();
    assert_eq!(words.len(), 4, "{code}");
    let src = tempfile::tempdir().unwrap();
    let first = file(src.path(), "first.txt", "one");
    let addr = running.addr.to_string();
    let out = client(
        &laptop,
        &[
            "--code",
            &code,
            "--server",
            &addr,
            "--label",
            "my laptop",
            &first,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("paired with 127.0.0.1:"), "{stderr}");
    assert!(
        stderr.contains(&format!("pinned its identity {}", server.id)),
        "{stderr}"
    );
    // The server said so, and keeps the client with its label.
    let paired: serde_json::Value = serde_json::from_str(&running.line()).unwrap();
    assert_eq!(paired["paired"], laptop.id);
    assert_eq!(paired["label"], "my laptop");
    let trusted = std::fs::read_to_string(server.dir.path().join("trusted_clients")).unwrap();
    assert_eq!(trusted, format!("{} my laptop\n", laptop.id));
    let stored: serde_json::Value = serde_json::from_str(&running.line()).unwrap();
    assert_eq!(stored["verdict"], "stored");
    assert_eq!(stored["reason"], "trusted client \"my laptop\"");
    // Next time: no code, no question (stdin is closed: a question would be a denial).
    let second = file(src.path(), "second.txt", "two");
    let out = client(&laptop, &["--secure", &addr, &second]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        std::fs::read(inbox.path().join("second.txt")).unwrap(),
        b"two"
    );
    let known = std::fs::read_to_string(laptop.dir.path().join("known_hosts")).unwrap();
    assert_eq!(known, format!("{addr} {}\n", server.id));
}

#[test]
fn a_wrong_code_fails_spends_the_code_and_is_logged() {
    let (server, stranger, friend) = (install(), install(), install());
    let inbox = tempfile::tempdir().unwrap();
    let (running, code) = pairing_server(&server, inbox.path(), &[]);
    let src = tempfile::tempdir().unwrap();
    let sent = file(src.path(), "x.txt", "x");
    let addr = running.addr.to_string();
    // Same number, other words.
    let number = code.split('-').next().unwrap();
    let wrong = format!("{number}-abandon-ability-able");
    let out = client(&stranger, &["--code", &wrong, "--server", &addr, &sent]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("the code did not match"), "{stderr}");
    assert!(stderr.contains("nothing was sent or pinned"), "{stderr}");
    assert!(!stranger.dir.path().join("known_hosts").exists());
    let log: serde_json::Value = serde_json::from_str(&running.line()).unwrap();
    let error = log["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("pairing with client {} failed", stranger.id)),
        "{error}"
    );
    assert!(error.ends_with("the code is spent"), "{error}");
    // The right code is worth nothing now.
    let out = client(&friend, &["--code", &code, "--server", &addr, &sent]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no pairing code is open on this server"),
        "{stderr}"
    );
    assert!(!inbox.path().join("x.txt").exists());
    assert!(!server.dir.path().join("trusted_clients").exists());
}

#[test]
fn another_servers_code_pins_nothing_and_a_code_expires() {
    let (a, b, laptop) = (install(), install(), install());
    let (inbox_a, inbox_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_running_a, code_a) = pairing_server(&a, inbox_a.path(), &[]);
    let (running_b, _code_b) = pairing_server(&b, inbox_b.path(), &[]);
    let src = tempfile::tempdir().unwrap();
    let sent = file(src.path(), "x.txt", "x");
    let out = client(
        &laptop,
        &[
            "--code",
            &code_a,
            "--server",
            &running_b.addr.to_string(),
            &sent,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("the code did not match"),
        "{:?}",
        text(&out)
    );
    assert!(!laptop.dir.path().join("known_hosts").exists());
    assert!(!b.dir.path().join("trusted_clients").exists());
    // A code good for a millisecond has expired by the time anyone uses it.
    let c = install();
    let inbox_c = tempfile::tempdir().unwrap();
    let (running_c, code_c) = pairing_server(&c, inbox_c.path(), &["--pair-timeout", "1ms"]);
    let out = client(
        &laptop,
        &[
            "--code",
            &code_c,
            "--server",
            &running_c.addr.to_string(),
            &sent,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("the pairing code expired"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn codes_are_checked_before_connecting() {
    let laptop = install();
    for (code, says) in [
        ("17-apple-orbit", "a pairing code is a number and 3 words"),
        (
            "17-apple-orbit-zebrra",
            "\"zebrra\" is not a word of pairing codes",
        ),
    ] {
        let out = client(&laptop, &["--code", code, "--server", "127.0.0.1:9", "f"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).1.contains(says), "{:?}", text(&out));
    }
    // --server is for a code (without --code, the server is the first argument).
    let out = client(&laptop, &["--server", "127.0.0.1", "127.0.0.1", "f"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A relay between a client and a server that ends TLS on each side with a key of its own
/// and passes every frame inside along, as someone in the middle would: a frame from the
/// client, one from the server, and so on, until either side stops.
fn relay(server: std::net::SocketAddr) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use fup::batch::frame::{self, Frame};
    use fup::secure::{probe, stream, tls};
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let keys_dir = tempfile::tempdir().unwrap();
        let keys = fup::secure::Keys::load_or_create(keys_dir.path()).unwrap();
        let deadline = fup::net::Deadline::after(TIMEOUT);
        let (mut client_side, _) = listener.accept().unwrap();
        client_side.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut offered = [0; 16];
        client_side.read_exact(&mut offered).unwrap();
        let (answer, _) = probe::answer(u16::from_le_bytes([offered[14], offered[15]]));
        client_side.write_all(&answer).unwrap();
        let mut to_client =
            stream::accept(client_side, tls::server_config(&keys).unwrap(), deadline).unwrap();
        let mut server_side = std::net::TcpStream::connect(server).unwrap();
        server_side.set_read_timeout(Some(TIMEOUT)).unwrap();
        server_side.write_all(&probe::PROBE).unwrap();
        let mut answered = [0; 16];
        server_side.read_exact(&mut answered).unwrap();
        let (config, _) = tls::client_config(&keys, None).unwrap();
        let mut to_server = stream::connect(server_side, config, deadline).unwrap();
        let pass = |from: &mut dyn Read, to: &mut dyn Write| -> Option<()> {
            let mut from = from;
            let mut to = to;
            let head = Frame::read_from(&mut from).ok()??;
            let body = frame::read_body(&mut from, head.len, 1 << 20).ok()?;
            frame::send(&mut to, head.kind, head.id, head.last, &body).ok()?;
            to.flush().ok()
        };
        for _ in 0..4 {
            if pass(&mut to_client, &mut to_server).is_none()
                || pass(&mut to_server, &mut to_client).is_none()
            {
                break;
            }
        }
    });
    (addr, handle)
}

#[test]
fn a_relay_in_the_middle_fails_the_confirmation_and_pins_nothing() {
    let (server, laptop) = (install(), install());
    let inbox = tempfile::tempdir().unwrap();
    let (running, code) = pairing_server(&server, inbox.path(), &[]);
    let (relay_addr, relay) = relay(running.addr);
    let src = tempfile::tempdir().unwrap();
    let sent = file(src.path(), "secret.txt", "for the server only");
    let out = client(
        &laptop,
        &["--code", &code, "--server", &relay_addr.to_string(), &sent],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("the code did not match"), "{stderr}");
    relay.join().unwrap();
    assert!(!laptop.dir.path().join("known_hosts").exists());
    assert!(!server.dir.path().join("trusted_clients").exists());
    assert!(!inbox.path().join("secret.txt").exists());
    let log: serde_json::Value = serde_json::from_str(&running.line()).unwrap();
    assert!(
        log["error"].as_str().unwrap().contains("the code is spent"),
        "{log}"
    );
}
