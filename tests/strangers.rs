//! Secure mode against anyone who can reach the port: what a stranger with a key made a
//! minute ago may cost before a decision, partials reached only by the server's own handles,
//! fairness across addresses, trust files, and nothing raw from the other side. One test (or
//! more) per finding of the review.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fup::batch::Kind;
use fup::batch::frame::{self, DATA, Frame, MANIFEST};
use fup::net::{Conn, Deadline};

use crate::util::*;

/// One manifest entry's bytes: its kind with the flag for a time not known (0x80), its size
/// (files only) and its path's length in LEB128, then the path.
fn entry_bytes(kind: u8, size: u64, path: &[u8]) -> Vec<u8> {
    let mut out = vec![kind | 0x80];
    if kind != 0 {
        leb128(&mut out, size);
    }
    leb128(&mut out, path.len() as u64);
    out.extend_from_slice(path);
    out
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// `entries` cut into manifest messages of at most 1 MiB, the last one marked.
fn manifest_frames(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if body.len() + entry.len() > frame::MAX_MANIFEST_CHUNK {
            frame::send(&mut out, MANIFEST, 0, false, &body).unwrap();
            body.clear();
        }
        body.extend_from_slice(entry);
        if i + 1 == entries.len() {
            frame::send(&mut out, MANIFEST, 0, true, &body).unwrap();
        }
    }
    out
}

/// Sends the manifest `entries(n)` from each of `count` clients of their own at once, each
/// written whole (what the server drops after answering may or may not all be written), and
/// returns why each was denied.
fn manifests_at_once(
    port: u16,
    count: usize,
    entries: impl Fn(usize) -> Vec<Vec<u8>> + Send + Sync + 'static,
) -> Vec<String> {
    let entries = std::sync::Arc::new(entries);
    let senders: Vec<_> = (0..count)
        .map(|n| {
            let (client, mut link) = secure_link(port);
            let entries = std::sync::Arc::clone(&entries);
            thread::spawn(move || {
                let _ = link.write_all(&manifest_frames(&entries(n)));
                let _ = link.flush();
                let why = verdict(&mut link);
                drop(client);
                why
            })
        })
        .collect();
    senders
        .into_iter()
        .map(|sender| sender.join().unwrap().expect("denied"))
        .collect()
}

/// A TCP connection to `to` from the loopback address `from` (a second address: 127.0.0.2).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

// Before: a manifest split into strings before it was checked: 64 MiB of
// '/' took the server to 1.64 GB; a 65,535-byte path came back as a 393 KB reason.
#[test]
fn hostile_manifests_are_refused_at_their_first_bad_entry_with_a_short_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let port = server.addr.port();
    let before = status_field(server.pid(), "VmHWM:");
    let slashes = entry_bytes(0, 0, &[b'/'; 4096]);
    let whys = manifests_at_once(port, 4, move |_| {
        vec![slashes.clone(); 32 * 1024 * 1024 / 4099]
    });
    for why in whys {
        assert_eq!(why, format!("\"{}…\": name is empty", "/".repeat(200)));
    }
    for _ in 0..4 {
        let log = server.line();
        assert!(log.starts_with("refused batch from 127.0.0.1:"), "{log}");
        assert!(log.len() < 400, "{} bytes: {log}", log.len());
    }
    let after = status_field(server.pid(), "VmHWM:");
    assert!(
        after < before + 64 * 1024,
        "peak RSS {before} kB before, {after} kB after"
    );
    // A path longer than the limit: refused by the length it is said to have, unread.
    let (_config, mut link) = secure_link(port);
    let long = entry_bytes(1, 1, &[b'a'; 65_535]);
    link.write_all(&manifest_frames(&[long])).unwrap();
    link.flush().unwrap();
    let why = verdict(&mut link).expect("denied");
    assert_eq!(why, "a path of 65535 bytes is longer than 4096 bytes");
    let log = server.line();
    assert!(log.len() < 400, "{} bytes: {log}", log.len());
    assert!(entries(dir.path()).is_empty());
}

// Before: all manifests in flight together were unbounded.
#[test]
fn manifests_in_flight_stay_within_their_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    // No operator (standard input closed): each batch is held until its manifest is whole.
    let server = Running::fup_server(dir.path(), &["--manifest-memory", "24M"], Input::Text(""));
    let port = server.addr.port();
    let before = status_field(server.pid(), "VmHWM:");
    // Four valid manifests of 12 MiB each (48,000 files of 250-byte names): together twice
    // what the budget holds.
    let whys = manifests_at_once(port, 4, |n| {
        (0..48_000)
            .map(|i| entry_bytes(1, 0, format!("{n}{i:0>249}").as_bytes()))
            .collect()
    });
    let busy = whys
        .iter()
        .filter(|why| why.contains("(--manifest-memory); try again later"))
        .count();
    assert!(busy >= 1, "{whys:?}");
    let after = status_field(server.pid(), "VmHWM:");
    assert!(
        after < before + 24 * 1024 + 32 * 1024,
        "peak RSS {before} kB before, {after} kB after: more than the budget and change"
    );
    let logs: Vec<String> = (0..4).map(|_| server.line()).collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("denied batch from 127.0.0.1:")
                && l.ends_with(
                    "hold all of the 24.0 MiB they may (--manifest-memory); try again later"
                )),
        "{logs:?}"
    );
    // All given back: a batch now gets as far as the operator (none here).
    let (_config, mut link) = secure_link(port);
    frame::write_manifest(&mut link, &[file_entry("a", 1)]).unwrap();
    link.flush().unwrap();
    let why = verdict(&mut link).expect("denied");
    assert_eq!(why, "no answer: no one is at the server's terminal");
}

// Before: empty manifest messages refreshed the deadline for ever.
#[test]
fn a_manifest_must_bring_entries_and_end_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--timeout", "2"], Input::Text(""));
    let port = server.addr.port();
    // An empty message that is not the last: cut at once.
    let (_config, mut link) = secure_link(port);
    frame::send(&mut link, MANIFEST, 0, false, &[]).unwrap();
    link.flush().unwrap();
    let mut rest = Vec::new();
    let _ = link.read_to_end(&mut rest);
    let log = server.line();
    assert!(
        log.ends_with("batch out of order: expected a manifest message with entries"),
        "{log}"
    );
    // One entry per message, each in time, never the last: cut once the whole manifest's
    // time is up.
    let (_config, mut link) = secure_link(port);
    let started = Instant::now();
    let ended = Deadline::after(Duration::from_secs(8));
    let mut sent = 0;
    while ended.time_left().is_ok() {
        let body = entry_bytes(1, 0, format!("f{sent}").as_bytes());
        if frame::send(&mut link, MANIFEST, 0, false, &body).is_err() || link.flush().is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(250));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "still open after {took:?}");
    let log = server.line();
    assert!(
        log.ends_with("timed out after 2 s waiting for a request"),
        "{log}"
    );
}

// Before: a symlink at .fup-partial/<key> was followed and its target emptied;
// a .fup-partial of someone else's received a client's bytes.
#[test]
fn partials_are_reached_only_through_the_servers_own_directory() {
    let (src, dir, victim) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    fs::write(victim.path().join("precious"), b"mine").unwrap();
    let file = src.path().join("f.bin");
    fs::write(&file, pattern(10_000)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let client = install();
    let key = fup::server::partial::Key::new(
        &client.id.parse().unwrap(),
        [(
            ["f.bin"],
            Kind::File {
                size: 10_000,
                executable: false,
            },
        )],
    );
    let partials = dir.path().join(".fup-partial");
    fs::create_dir(&partials).unwrap();
    fs::set_permissions(&partials, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(victim.path(), partials.join(key.hex())).unwrap();
    // Denied (no operator), then accepted: the victim is never touched.
    for (extra, code) in [(&[][..], 1), (&["--yes"][..], 0)] {
        let server = client_server(&client, dir.path(), extra);
        let out = client.client(server.addr.port(), &[file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out).1);
        assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 1);
        assert_eq!(fs::read(victim.path().join("precious")).unwrap(), b"mine");
    }
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), pattern(10_000));
    // A directory of partials open to others, or another user's: refused at start, and a
    // cut upload leaves nothing in it.
    fs::remove_file(partials.join(key.hex())).unwrap();
    let mut cases = vec![(
        "may be used by others (mode 777): run chmod 700 on it",
        0o777,
        None,
    )];
    if rustix::process::geteuid().is_root() {
        cases.push((
            "belongs to user 65534, not to this server's user 0",
            0o700,
            Some(65534),
        ));
    }
    for (says, mode, owner) in cases {
        fs::set_permissions(&partials, fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&partials, Some(uid), None).unwrap();
        }
        let server = client_server(&client, dir.path(), &["--yes"]);
        let warning = server.err_line();
        assert!(
            warning.starts_with("fup-server: warning: cut secure uploads will not resume")
                && warning.ends_with(says),
            "{warning}"
        );
        let mut link = secure_link_as(&client, server.addr.port());
        frame::write_manifest(&mut link, &[file_entry("cut.bin", 1000)]).unwrap();
        link.flush().unwrap();
        assert_eq!(verdict(&mut link), None);
        send_part_and_vanish(link, 500);
        let log = server.line();
        assert!(
            log.starts_with("failed batch") || log.starts_with("failed \"cut.bin\""),
            "{log}"
        );
        assert_eq!(
            fs::read_dir(&partials).unwrap().count(),
            0,
            "nothing written in it"
        );
        std::os::unix::fs::chown(&partials, Some(0), None).ok();
    }
}

/// Sends the first `bytes` of the batch's first file, then vanishes (no end, no digest).
fn send_part_and_vanish(mut link: fup::secure::dial::Link, bytes: u32) {
    let head = Frame {
        id: 0,
        kind: DATA,
        len: bytes,
        last: false,
        seq: 0,
    };
    link.write_all(&head.encode()).unwrap();
    link.write_all(&vec![7; bytes as usize]).unwrap();
    link.flush().unwrap();
}

/// `fup-server` as `install`, on 127.0.0.1, with `extra`, its operator's input closed.
fn client_server(install: &Install, dir: &Path, extra: &[&str]) -> Running {
    install.server(dir, extra, Input::Text(""))
}

// Before: a cut batch reserved its whole declared size: one client made every
// other secure batch fail for "not enough free space".
#[test]
fn a_cut_batch_reserves_at_most_the_partial_maximum() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--max-partial", "100M"],
        Input::Text(""),
    );
    let port = server.addr.port();
    let free = fup::sys::free_space(dir.path()).expect("free space");
    assert!(
        free > 200 << 20,
        "this test needs 200 MiB free, {free} bytes here"
    );
    // A batch declaring all but 1 MiB of the free space, cut after 4 KiB.
    let (_config, mut link) = secure_link(port);
    frame::write_manifest(&mut link, &[file_entry("huge.bin", free - (1 << 20))]).unwrap();
    link.flush().unwrap();
    assert_eq!(verdict(&mut link), None);
    send_part_and_vanish(link, 4096);
    let log = server.line();
    assert!(log.contains("to resume"), "{log}");
    // Good uploads go on being stored.
    for n in 0..3 {
        let file = src.path().join(format!("good{n}.bin"));
        fs::write(&file, pattern(1 << 20)).unwrap();
        let out = fup_client(&server.port(), &[file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        assert!(
            server
                .line()
                .starts_with(&format!("stored \"good{n}.bin\""))
        );
    }
}

// Before: 70 idle connections from one address shut every other client out.
#[test]
fn one_address_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--hello-timeout", "30", "--timeout", "30"],
        Input::Text(""),
    );
    let idle: Vec<TcpStream> = (0..70).map(|_| connect(server.addr)).collect();
    for _ in 0..62 {
        let line = server.line();
        assert!(
            line.ends_with(
                "closed at once: its address already holds 8 connections (--max-per-address)"
            ),
            "{line}"
        );
    }
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", server.addr);
    other
        .write_all(&upload_bytes("other.txt", b"from .2", 1024))
        .unwrap();
    let mut answer = [0; 21 + 21];
    other.read_exact(&mut answer).unwrap();
    assert_eq!(answer[20], 0, "accepted");
    assert_eq!(answer[41], 1, "stored");
    let log = server.line();
    assert!(
        log.starts_with("stored \"other.txt\"") && log.contains("from 127.0.0.2:"),
        "{log}"
    );
    drop(idle);
}

// Before: questions waited in arrival order without limit.
#[test]
fn questions_are_asked_in_turn_across_addresses_and_bounded_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let addr = server.addr;
    // Six from one address: four wait, two are denied at once.
    let ask = move |from: &'static str, name: String| {
        thread::spawn(move || {
            let mut stream = connect_from(from, addr);
            stream.write_all(&request(2, &name)).unwrap();
            let mut response = [0; 21];
            stream.read_exact(&mut response).unwrap();
            response[20]
        })
    };
    let first = ask("127.0.0.1", "a0.txt".into());
    server.err_line_containing("wants to send \"a0.txt\"");
    let too_many = ": 4 questions from this address already wait for the operator (--max-questions-per-address)";
    // Then five more from each address. Of 127.0.0.1's, three can wait (a0, on screen,
    // counts) and two are denied at once; of 127.0.0.2's, four wait and one is denied. Each
    // denial says that every slot of its address was taken, so all those questions queue.
    let mut asked: Vec<_> = (1..6)
        .map(|i| ask("127.0.0.1", format!("a{i}.txt")))
        .collect();
    for _ in 0..2 {
        let log = server.line();
        assert!(
            log.contains("from 127.0.0.1:") && log.ends_with(too_many),
            "{log}"
        );
    }
    asked.extend((1..6).map(|i| ask("127.0.0.2", format!("b{i}.txt"))));
    let log = server.line();
    assert!(
        log.contains("from 127.0.0.2:") && log.ends_with(too_many),
        "{log}"
    );
    // Arrival order would ask all of 127.0.0.1's first; turns alternate instead.
    server.answer("n");
    assert_eq!(first.join().unwrap(), 1);
    assert!(server.line().starts_with("denied \"a0.txt\""));
    let mut order = String::new();
    for _ in 0..7 {
        let question = server.err_line_containing("wants to send");
        order.push(match question.starts_with("127.0.0.2:") {
            true => 'b',
            false => 'a',
        });
        server.answer("n");
        assert!(server.line().starts_with("denied"));
    }
    assert_eq!(order, "bababab");
    for asked in asked {
        assert_eq!(asked.join().unwrap(), 1);
    }
}

// Before: a stranger held a slot for --timeout before saying anything.
#[test]
fn a_silent_connection_is_cut_after_the_hello_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &[
            "--yes",
            "--timeout",
            "30",
            "--hello-timeout",
            "1",
            "--no-web",
        ],
        Input::Text(""),
    );
    let started = Instant::now();
    let mut silent = connect(server.addr);
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = server.line();
    assert!(
        log.ends_with(
            "connection failed before a request: timed out after 1 s waiting for a request"
        ),
        "{log}"
    );
    // A probe, then nothing of the handshake: the same.
    let mut probing = connect(server.addr);
    probing.write_all(&fup::secure::probe::PROBE).unwrap();
    let mut answer = [0; 16];
    probing.read_exact(&mut answer).unwrap();
    assert!(read_until_closed(&mut probing).is_empty());
    let log = server.line();
    assert!(log.contains("secure handshake failed"), "{log}");
}

// Before: one identity, any number of questions waiting.
#[test]
fn one_client_identity_has_a_bounded_number_of_questions_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &[
            "--max-questions-per-client",
            "2",
            "--max-questions-per-address",
            "10",
            "--prompt-timeout",
            "2",
        ],
        Input::Pipe,
    );
    let client = install();
    let asks: Vec<_> = (0..3)
        .map(|n| {
            let mut link = secure_link_as(&client, server.addr.port());
            frame::write_manifest(&mut link, &[file_entry(&format!("f{n}"), 1)]).unwrap();
            link.flush().unwrap();
            thread::spawn(move || verdict(&mut link).expect("denied"))
        })
        .collect();
    let whys: Vec<String> = asks.into_iter().map(|t| t.join().unwrap()).collect();
    let over =
        "2 questions from this client already wait for the operator (--max-questions-per-client)";
    assert_eq!(
        whys.iter().filter(|why| *why == over).count(),
        1,
        "{whys:?}"
    );
    assert_eq!(
        whys.iter()
            .filter(|why| why.starts_with("no answer within 2 s"))
            .count(),
        2,
        "{whys:?}"
    );
}

// Before: one identity, any number of connections.
#[test]
fn one_client_identity_holds_a_bounded_number_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--max-per-client", "2", "--max-per-address", "20"],
        Input::Text(""),
    );
    let client = install();
    let held: Vec<_> = (0..2)
        .map(|_| secure_link_as(&client, server.addr.port()))
        .collect();
    let mut third = secure_link_as(&client, server.addr.port());
    third.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let _ = third.read_to_end(&mut rest);
    let log = server.line();
    assert!(
        log.ends_with("this client already holds 2 connections (--max-per-client)"),
        "{log}"
    );
    // Another identity is served.
    let (_config, mut other) = secure_link(server.addr.port());
    frame::write_manifest(&mut other, &[dir_entry("d")]).unwrap();
    other.flush().unwrap();
    assert_eq!(verdict(&mut other), None);
    drop(held);
}

/// A fake fup server on 127.0.0.1 for one connection: answers the probe, does the
/// handshake as a key of its own, reads the manifest, and answers with `verdict`.
fn fake_secure_server(verdict_body: Vec<u8>) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let keys_dir = tempfile::tempdir().unwrap();
        let keys = fup::secure::Keys::load_or_create(keys_dir.path()).unwrap();
        let config = fup::secure::tls::server_config(&keys).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut probe = [0; 16];
        stream.read_exact(&mut probe).unwrap();
        stream.write_all(&fup::secure::probe::PROBE).unwrap();
        let mut tls =
            fup::secure::stream::accept(stream, config, Deadline::after(TIMEOUT)).unwrap();
        loop {
            let head = Frame::read_from(&mut tls).unwrap().unwrap();
            frame::read_body(&mut tls, head.len, 1 << 26).unwrap();
            if head.last {
                break;
            }
        }
        frame::send(&mut tls, frame::VERDICT, 0, true, &verdict_body).unwrap();
        tls.flush().unwrap();
        let _ = tls.read_to_end(&mut Vec::new());
    });
    (port, handle)
}

// Before: a server's reason with escape sequences set the window title and
// printed a fake "stored" line; a 100 KB reason was printed whole.
#[test]
fn a_servers_words_reach_the_clients_terminal_escaped_and_cut() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"hello").unwrap();
    let hostile = format!(
        "\x1b]0;pwned\x07\r\x1b[32msent \"f.txt\": stored, secure, verified\x1b[0m\n\u{202e}{}",
        "A".repeat(100_000)
    );
    for json in [false, true] {
        let mut body = vec![1];
        body.extend_from_slice(hostile.as_bytes());
        let (port, fake) = fake_secure_server(body);
        let client = install();
        let mut args = vec![file.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let out = client.client(port, &args);
        fake.join().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let (stdout, stderr) = text(&out);
        let said = if json { &stdout } else { &stderr };
        let line = said.lines().last().unwrap_or_default();
        assert!(
            !line
                .chars()
                .any(|c| (c.is_control() && c != '\t') || fup::text::is_invisible(c)),
            "raw bytes in {line:?}"
        );
        assert!(line.len() < 600, "{} bytes printed", line.len());
        assert!(
            line.contains("denied by server") || line.contains("\"denied\""),
            "{line}"
        );
        assert!(line.contains("AAAA…"), "{line}");
    }
}

// Before: the cause printed twice ("received fatal alert: HandshakeFailure: received
// fatal alert: HandshakeFailure").
#[test]
fn a_failed_handshake_says_why_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut probe = [0; 16];
        stream.read_exact(&mut probe).unwrap();
        stream.write_all(&fup::secure::probe::PROBE).unwrap();
        // Not TLS.
        stream.write_all(&[0x15; 64]).unwrap();
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"hello").unwrap();
    let out = install().client(port, &["--secure", file.to_str().unwrap()]);
    fake.join().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("secure handshake with 127.0.0.1:"),
        "{stderr}"
    );
    // Each cause in the chain once: the last one is not a repeat of the one before.
    let chain: Vec<&str> = stderr.trim_end().split(": ").collect();
    let cause = chain[chain.len() - 1];
    assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
}

// Before: an append to a file without a final newline corrupted it.
#[test]
fn known_hosts_without_a_final_newline_stay_readable() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let client = install();
    let other = install();
    fs::write(client.known_hosts(), format!("192.0.2.1:5425 {}", other.id)).unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"hello").unwrap();
    for _ in 0..2 {
        let out = client.client(server.addr.port(), &[file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        server.line();
    }
    let known = fs::read_to_string(client.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 2, "{known}");
    // Others may not rewrite whom the client trusts.
    fs::set_permissions(client.known_hosts(), fs::Permissions::from_mode(0o666)).unwrap();
    let out = client.client(server.addr.port(), &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("may be changed by others (mode 666): run chmod 600 on it"),
        "{}",
        text(&out).1
    );
}

// Before: trusted_clients was never read again: revoking a client needed a
// restart; a world-writable one was trusted as is.
#[test]
fn trusted_clients_are_read_again_when_they_change_and_must_be_the_owners() {
    let (src, dir, config) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let list = config.path().join("trusted_clients");
    fs::write(&list, "# nobody yet\n").unwrap();
    let list_arg = list.to_str().unwrap().to_string();
    // No operator: only trust accepts.
    let server = Running::fup_server(
        dir.path(),
        &["--trusted-clients", &list_arg],
        Input::Text(""),
    );
    let client = install();
    let file = src.path().join("f.txt");
    fs::write(&file, b"hello").unwrap();
    let send = || client.client(server.addr.port(), &[file.to_str().unwrap()]);
    assert_eq!(send().status.code(), Some(1));
    assert!(server.line().starts_with("denied"));
    fs::write(&list, format!("{} laptop\n", client.id)).unwrap();
    assert_eq!(send().status.code(), Some(0));
    assert!(
        server
            .line()
            .contains("(accepted: trusted client \"laptop\")")
    );
    fs::write(&list, "# revoked\n").unwrap();
    assert_eq!(send().status.code(), Some(1));
    assert!(server.line().starts_with("denied"));
    drop(server);
    // One that others may change is refused, with how to mend it.
    fs::set_permissions(&list, fs::Permissions::from_mode(0o646)).unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_fup-server"),
        &[
            "--port",
            "0",
            "--trusted-clients",
            &list_arg,
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .ends_with("may be changed by others (mode 646): run chmod 600 on it\n"),
        "{}",
        text(&out).1
    );
}

// Before: a tree file swapped for a symlink while the operator decided was
// followed: a 0600 file of the uploader's was sent instead.
#[test]
fn the_client_sends_only_the_files_it_walked() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tree = src.path().join("t");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a.txt"), b"public").unwrap();
    let secret = src.path().join("secret");
    fs::write(&secret, b"SECRET").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    pin_shared(&server.port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fup-client"));
    with_config(&mut cmd)
        .args(["--port", &server.port(), "127.0.0.1"])
        .arg(&tree)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let client = cmd.spawn().unwrap();
    server.err_line_containing("wants to send");
    // While the operator decides, the file becomes a symlink to another of the same size.
    fs::remove_file(tree.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, tree.join("a.txt")).unwrap();
    server.answer("y");
    let out = client.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is no longer the file that was read"),
        "{stderr}"
    );
    server.line();
    let published = dir.path().join("t/a.txt");
    assert!(
        fs::read(&published).map_or(true, |bytes| bytes != b"SECRET"),
        "the secret was sent"
    );
}

// Before: Instant::now() + timeout panicked every secure session's thread.
#[test]
fn a_huge_timeout_is_no_limit_not_a_panic() {
    let (src, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--timeout", "10000000000000000000"],
        Input::Text(""),
    );
    let tree = src.path().join("t");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), b"a").unwrap();
    let out = fup_client(&server.port(), &[tree.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(server.line().starts_with("stored batch"));
}
