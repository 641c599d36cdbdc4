//! Secure mode: identities, the probe, pinning, trust, and what is on the wire.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Runs `program --show-identity` with `FUP_CONFIG_DIR=dir`.
fn show_identity(program: &str, dir: &std::path::Path) -> std::process::Output {
    assert_cmd::Command::new(program)
        .arg("--show-identity")
        .env("FUP_CONFIG_DIR", dir)
        .timeout(TIMEOUT)
        .output()
        .unwrap()
}

#[test]
fn both_programs_show_the_installations_identity() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fup");
    let server = show_identity(env!("CARGO_BIN_EXE_fup-server"), &dir);
    let client = show_identity(env!("CARGO_BIN_EXE_fup-client"), &dir);
    assert_eq!(server.status.code(), Some(0), "{}", text(&server).1);
    assert_eq!(
        client.stdout, server.stdout,
        "one installation, one identity"
    );
    let id = text(&server).0;
    let groups: Vec<&str> = id.trim_end().split('-').collect();
    assert_eq!(groups.len(), 8, "{id}");
    assert!(groups.iter().all(|g| g.len() == 7), "{id}");
    assert!(id.parse::<fup::secure::Identity>().is_ok(), "{id}");
    let key = dir.join("identity.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Another installation has another identity.
    let other = show_identity(env!("CARGO_BIN_EXE_fup-server"), &root.path().join("b"));
    assert_ne!(other.stdout, server.stdout);
    // A key that others may read is refused, with how to mend it.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = show_identity(env!("CARGO_BIN_EXE_fup-client"), &dir);
    assert_eq!(refused.status.code(), Some(1));
    let (stdout, stderr) = text(&refused);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "fup-client: cannot use this installation's identity: {} may be read by others (mode 644): run chmod 600 on it\n",
            key.display()
        )
    );
}

/// What a relay does with the server's first 16 bytes (the probe's answer).
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Forward,
    /// Drops it and hangs up on the client.
    Swallow,
}

/// A relay on 127.0.0.1 for one connection to `target`: forwards both ways (see [`Answer`]),
/// and returns every byte the client sent.
fn relay(target: SocketAddr, answer: Answer) -> (u16, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = connect(target);
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (mut to_client, mut from_server) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let back = thread::spawn(move || {
            let mut first = [0; 16];
            if from_server.read_exact(&mut first).is_err() {
                return;
            }
            if answer == Answer::Swallow {
                let _ = to_client.shutdown(Shutdown::Both);
                return;
            }
            let _ = to_client.write_all(&first);
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
        let mut seen = Vec::new();
        let mut buf = [0; 64 * 1024];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(Shutdown::Write);
        back.join().unwrap();
        seen
    });
    (port, handle)
}

const PROBE: [u8; 16] = [b'F', b'U', b'P', b'S', 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0];

#[test]
fn a_secure_upload_shows_nothing_of_the_file_on_the_wire() {
    let (server_install, client_install) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = server_install.server(dir.path(), &["--yes"], Input::Text(""));
    let secret = "SECRET-PAYLOAD-0123456789/".repeat(20_000);
    let file = src.path().join("secret-name.txt");
    fs::write(&file, &secret).unwrap();
    let (port, wire) = relay(server.addr, Answer::Forward);
    let out = client_install.client(port, &[file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.trim_end().ends_with(": stored, secure, verified"),
        "{stdout}"
    );
    // First contact without a terminal: pinned, and said so (ssh's accept-new).
    assert_eq!(
        stderr,
        format!(
            "fup-client: first contact with 127.0.0.1:{port}: pinned its identity {} in {} (no terminal to ask)\n",
            server_install.id,
            client_install.known_hosts().display()
        )
    );
    let wire = wire.join().unwrap();
    assert_eq!(wire[..16], PROBE);
    assert!(
        wire.len() > secret.len(),
        "all of it went through the relay"
    );
    for plain in [&b"SECRET-PAYLOAD"[..], b"secret-name", b"0123456789/SECRET"] {
        assert!(
            !wire.windows(plain.len()).any(|w| w == plain),
            "plaintext on the wire"
        );
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("secret-name.txt")).unwrap(),
        secret
    );
    let log = server.line();
    assert!(
        log.contains(&format!(
            ", secure, client {}, verified (accepted: --yes)",
            client_install.id
        )),
        "{log}"
    );
}

#[test]
fn an_impostor_gets_nothing_from_a_client_that_pinned_the_real_server() {
    let (real, impostor, client) = (install(), install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = src.path().join("f.txt");
    fs::write(&file, "for the real server only").unwrap();
    let server = impostor.server(dir.path(), &["--yes"], Input::Text(""));
    // The client met the real server at this address before; now the relay there leads to
    // the impostor.
    let (port, wire) = relay(server.addr, Answer::Forward);
    fs::write(
        client.known_hosts(),
        format!("# pinned earlier\n127.0.0.1:{port} {}\n", real.id),
    )
    .unwrap();
    let out = client.client(port, &[file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "fup-client: THE IDENTITY OF 127.0.0.1:{port} HAS CHANGED: pinned {}, now showing {}. \
             Someone may be in the middle, or the server got a new key. Nothing was sent. If the \
             change is expected, remove line 2 of {}\n",
            real.id,
            impostor.id,
            client.known_hosts().display()
        )
    );
    // The client stopped in the handshake: no certificate of its own, no request, no data.
    let wire = wire.join().unwrap();
    assert!(!wire.windows(8).any(|w| w == b"for the "), "data sent");
    assert!(
        server
            .line()
            .contains("connection failed before a request: secure handshake failed")
    );
    assert!(entries(dir.path()).is_empty());
    // --pin says the same without known_hosts, straight to the impostor.
    let out = install().client(
        server.addr.port(),
        &["--pin", &real.id, file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.ends_with(&format!(
            "127.0.0.1:{} showed identity {}, not {} given with --pin; nothing was sent\n",
            server.addr.port(),
            impostor.id,
            real.id
        )),
        "{}",
        text(&out).1
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_pinned_server_whose_probe_goes_unanswered_is_never_sent_plain() {
    let (server_install, client) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = src.path().join("f.txt");
    fs::write(&file, "plain would leak this").unwrap();
    let server = server_install.server(dir.path(), &["--yes"], Input::Text(""));
    let (port, wire) = relay(server.addr, Answer::Swallow);
    fs::write(
        client.known_hosts(),
        format!("127.0.0.1:{port} {}\n", server_install.id),
    )
    .unwrap();
    let out = client.client(port, &["--timeout", "5", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.ends_with(&format!(
            "127.0.0.1:{port} is pinned ({} line 1) but did not answer the secure-mode probe (it closed the connection); not falling back to plain, nothing was sent\n",
            client.known_hosts().display()
        )),
        "{}",
        text(&out).1
    );
    // The probe, and to a pinned server the TLS handshake's first message right behind it
    // (a plain server reads only the probe): never a byte of the plain protocol.
    let wire = wire.join().unwrap();
    assert_eq!(wire[..16], PROBE);
    assert!(
        wire.len() == 16 || wire[16] == 22,
        "a TLS handshake record, if anything"
    );
    assert!(!wire.windows(5).any(|w| w == b"plain"), "no plaintext");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn trusted_clients_are_accepted_without_asking_and_others_are_asked() {
    let (server_install, laptop, stranger) = (install(), install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let trusted = src.path().join("trusted");
    fs::write(
        &trusted,
        format!("# who may upload\n{} my laptop\n", laptop.id),
    )
    .unwrap();
    // Nobody at the terminal: whoever is not trusted is denied.
    let server = server_install.server(
        dir.path(),
        &["--trusted-clients", trusted.to_str().unwrap()],
        Input::Text(""),
    );
    let file = src.path().join("t.txt");
    fs::write(&file, "trusted").unwrap();
    let port = server.addr.port();
    assert!(
        laptop
            .client(port, &[file.to_str().unwrap()])
            .status
            .success()
    );
    let log = server.line();
    assert!(
        log.ends_with(&format!(
            "secure, client {} \"my laptop\", verified (accepted: trusted client \"my laptop\")",
            laptop.id
        )),
        "{log}"
    );
    let out = stranger.client(port, &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("denied by server (no answer: no one is at the server's terminal), secure"),
        "{}",
        text(&out).1
    );
    let log = server.line();
    assert!(
        log.starts_with("denied \"t.txt\"")
            && log.contains(&format!("secure, client {}: no answer", stranger.id)),
        "{log}"
    );
    assert_eq!(entries(dir.path()), ["t.txt"]);
}

#[test]
fn always_trusts_the_client_from_then_on() {
    let (server_install, client) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = server_install.server(dir.path(), &[], Input::Pipe);
    let file = src.path().join("a.txt");
    fs::write(&file, "always").unwrap();
    let port = server.addr.port();
    let first = {
        let (client_dir, file) = (client.dir.path().to_path_buf(), file.clone());
        thread::spawn(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
            cmd.env("FUP_CONFIG_DIR", client_dir)
                .args(["--port", &port.to_string(), "127.0.0.1"])
                .arg(file);
            assert_cmd::Command::from_std(cmd)
                .timeout(TIMEOUT)
                .output()
                .unwrap()
        })
    };
    let who = server.err_line_containing("secure, client");
    assert!(
        who.contains(&format!("{} (not trusted yet; a: accept", client.id)),
        "{who}"
    );
    server.err_line_containing("accept? [y/N/a]");
    server.answer("a");
    assert!(first.join().unwrap().status.success());
    let trusted = server_install.dir.path().join("trusted_clients");
    let log = server.line();
    assert!(
        log.ends_with(&format!(
            "(accepted always: client added to {})",
            trusted.display()
        )),
        "{log}"
    );
    assert_eq!(
        fs::read_to_string(&trusted).unwrap(),
        format!("{}\n", client.id)
    );
    // Next time, nobody is asked.
    assert!(
        client
            .client(port, &[file.to_str().unwrap()])
            .status
            .success()
    );
    assert!(server.line().ends_with("(accepted: trusted client)"));
    assert_eq!(entries(dir.path()), ["a (1).txt", "a.txt"]);
}

#[test]
fn require_secure_denies_plain_uploads_and_says_why() {
    let (server_install, client) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = server_install.server(dir.path(), &["--yes", "--require-secure"], Input::Text(""));
    let file = src.path().join("p.txt");
    fs::write(&file, "plain").unwrap();
    let port = server.addr.port();
    let out = client.client(port, &["--plain", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out).1,
        "fup-client: \"p.txt\" 5 B: denied by server, plain\n"
    );
    let log = server.line();
    assert!(
        log.starts_with("denied \"p.txt\"")
            && log.ends_with(", plain: plain upload refused (--require-secure)"),
        "{log}"
    );
    assert!(
        client
            .client(port, &[file.to_str().unwrap()])
            .status
            .success()
    );
    assert!(server.line().contains(", secure, client "));
    assert_eq!(entries(dir.path()), ["p.txt"]);
}

/// A plain server as the Python one is: a connection whose first message is not a request
/// is closed (after reading it); a request is accepted and answered with the golden bytes.
/// Serves `connections` connections; returns what each client sent.
fn plain_server(connections: usize) -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut head = [0; 16];
            stream.read_exact(&mut head).unwrap();
            if head[4] != 1 {
                seen.push(head.to_vec());
                continue;
            }
            // One request, one data message (a small file), as the golden upload.
            let mut got = head.to_vec();
            let read = |stream: &mut std::net::TcpStream, got: &mut Vec<u8>, len: usize| {
                let mut buf = vec![0; len];
                stream.read_exact(&mut buf).unwrap();
                got.extend_from_slice(&buf);
                buf
            };
            let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
            read(&mut stream, &mut got, len);
            stream.write_all(GOLDEN_RESPONSE).unwrap();
            let data = read(&mut stream, &mut got, 16);
            let len = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
            read(&mut stream, &mut got, len);
            stream.write_all(GOLDEN_RESULT).unwrap();
            got.extend(read_until_closed(&mut stream));
            seen.push(got);
        }
        // Nobody else came.
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "one connection too many");
        seen
    });
    (port, handle)
}

#[test]
fn secure_refuses_a_plain_server_and_the_default_falls_back_once() {
    let client = install();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("hello.txt");
    fs::write(&file, b"hi\n").unwrap();
    // --secure: the probe is dropped, nothing else is sent.
    let (port, seen) = plain_server(1);
    let out = client.client(port, &["--secure", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.ends_with(&format!(
            "127.0.0.1:{port} does not offer secure mode (--secure); nothing was sent\n"
        )),
        "{}",
        text(&out).1
    );
    assert_eq!(seen.join().unwrap(), [PROBE.to_vec()]);
    // By default: the probe, then exactly the plain protocol's bytes, and one note.
    let (port, seen) = plain_server(2);
    let out = client.client(port, &[file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        stderr,
        format!(
            "fup-client: note: 127.0.0.1:{port} does not offer secure mode; sending in plain (unencrypted, unauthenticated; --secure refuses this)\n"
        )
    );
    assert!(stdout.contains("stored, plain"), "{stdout}");
    let seen = seen.join().unwrap();
    assert_eq!(seen[0], PROBE);
    assert_eq!(seen[1], [GOLDEN_REQUEST, GOLDEN_DATA].concat());
    assert!(
        !client.known_hosts().exists(),
        "nothing pinned for a plain server"
    );
}

#[test]
fn hostile_handshakes_end_by_the_deadline_and_store_nothing() {
    let server_install = install();
    let dir = tempfile::tempdir().unwrap();
    let server = server_install.server(dir.path(), &["--yes", "--timeout", "1"], Input::Text(""));
    let mut huge = vec![22, 3, 1, 0x40, 0x00];
    huge.extend(pattern(1 << 20));
    let cases: [(&str, Vec<u8>); 4] = [
        ("silent", Vec::new()),
        ("not TLS", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "a record claiming 64 KiB",
            vec![22, 3, 1, 0xff, 0xff, 1, 2, 3],
        ),
        ("a megabyte of handshake", huge),
    ];
    for (what, bytes) in cases {
        let started = Instant::now();
        let mut stream = connect(server.addr);
        stream.write_all(&PROBE).unwrap();
        let mut answer = [0; 16];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer, PROBE, "{what}: the probe is answered");
        let _ = stream.write_all(&bytes);
        // Whatever alert comes back, the server closes.
        let _ = read_until_closed(&mut stream);
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        let log = server.line();
        assert!(
            log.contains(": connection failed before a request: secure handshake failed"),
            "{what}: {log}"
        );
    }
    assert!(entries(dir.path()).is_empty());
    // And it still serves.
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("after.txt");
    fs::write(&file, b"after").unwrap();
    assert!(
        install()
            .client(server.addr.port(), &[file.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(entries(dir.path()), ["after.txt"]);
}

#[test]
fn first_contact_at_a_terminal_asks_before_trusting() {
    use rexpect::session::spawn_command;
    let (server_install, client) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A server that gives a connection one second: the question outlives it.
    let server = server_install.server(
        dir.path(),
        &["--yes", "--timeout", "1", "--hello-timeout", "1"],
        Input::Text(""),
    );
    let file = src.path().join("q.txt");
    fs::write(&file, "question").unwrap();
    let port = server.addr.port().to_string();
    let in_pty = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
        cmd.env("FUP_CONFIG_DIR", client.dir.path())
            .args(["--port", &port, "127.0.0.1"])
            .arg(&file);
        spawn_command(cmd, Some(TIMEOUT.as_millis() as u64)).unwrap()
    };
    // No: nothing is sent, nothing pinned.
    let mut pty = in_pty();
    pty.exp_string(&format!(
        "first contact with 127.0.0.1:{port}, which shows the identity"
    ))
    .unwrap();
    pty.exp_string(&format!("trust {}? [y/N] ", server_install.id))
        .unwrap();
    pty.send_line("n").unwrap();
    pty.exp_string("was not trusted; nothing was sent").unwrap();
    pty.exp_eof().unwrap();
    assert!(!client.known_hosts().exists());
    assert!(entries(dir.path()).is_empty());
    // Yes, after comparing identities for longer than the server waits (what this test is
    // about, not a wait for readiness): pinned, and sent over a new connection.
    let mut pty = in_pty();
    pty.exp_string(&format!("trust {}? [y/N] ", server_install.id))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    pty.send_line("y").unwrap();
    pty.exp_string(&format!("identity {} is now pinned in", server_install.id))
        .unwrap();
    pty.exp_string("stored, secure").unwrap();
    pty.exp_eof().unwrap();
    assert_eq!(
        fs::read_to_string(client.known_hosts()).unwrap(),
        format!("127.0.0.1:{port} {}\n", server_install.id)
    );
    // Known now: no question.
    let out = client.client(server.addr.port(), &[file.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(text(&out).1, "");
    assert_eq!(entries(dir.path()), ["q (1).txt", "q.txt"]);
}

// Inside secure mode only fup programs speak, in the default convention, whatever
// --accept-byte says for plain clients.
#[test]
fn secure_uploads_ignore_the_plain_clients_response_convention() {
    let (server_install, client) = (install(), install());
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = server_install.server(
        dir.path(),
        &["--yes", "--accept-byte", "1", "--max-size", "10"],
        Input::Text(""),
    );
    let (small, big) = (src.path().join("small.txt"), src.path().join("big.txt"));
    fs::write(&small, "fits").unwrap();
    fs::write(&big, "does not fit").unwrap();
    let port = server.addr.port();
    let out = client.client(port, &[small.to_str().unwrap()]);
    assert!(text(&out).0.contains("stored, secure"), "{}", text(&out).1);
    let out = client.client(port, &[big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.ends_with(
            "\"big.txt\" 12 B: denied by server (larger than --max-size 10 B), secure\n"
        ),
        "{}",
        text(&out).1
    );
    assert_eq!(entries(dir.path()), ["small.txt"]);
}
