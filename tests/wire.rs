//! Raw bytes against the real server: the captured exchange, and every kind of bad input,
//! after which the server must still serve everyone else.

use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::util::*;

/// The server answers the captured client bytes with exactly the captured server bytes.
#[test]
fn captured_exchange_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let mut stream = connect(server.addr);
    stream.write_all(GOLDEN_REQUEST).unwrap();
    let mut response = [0; 21];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(response, GOLDEN_RESPONSE);
    stream.write_all(GOLDEN_DATA).unwrap();
    assert_eq!(read_until_closed(&mut stream), GOLDEN_RESULT);
    assert_eq!(fs::read(dir.path().join("hello.txt")).unwrap(), b"hi\n");
}

/// Python's client sends no data message for an empty file and waits for the result.
#[test]
fn empty_upload_without_data_message_completes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let mut stream = connect(server.addr);
    stream.write_all(&request(0, "empty")).unwrap();
    let mut replies = [0; 42];
    stream.read_exact(&mut replies).unwrap();
    assert_eq!(&replies[..21], GOLDEN_RESPONSE);
    assert_eq!(&replies[21..], GOLDEN_RESULT);
    drop(stream);
    assert!(server.line().starts_with("stored \"empty\" 0 B (0 bytes)"));
    assert_eq!(fs::read(dir.path().join("empty")).unwrap(), b"");
}

/// Each script is sent on its own connection; the server must close it with one log line,
/// store nothing, and then still take a good upload.
#[test]
fn bad_input_closes_the_connection_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let req = request(4, "f.bin");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown type first",
            header(1, 9, 0, 0, 1, 0),
            "unknown message type 0x9",
        ),
        (
            "data first",
            data(1, 0, true, b"abcd"),
            "expected a request message, got data",
        ),
        (
            "request body claims 4 GiB",
            header(1, 1, u32::MAX, 0, 1, 0),
            "request body of 4294967295 bytes exceeds the limit of 4104",
        ),
        (
            "request body too short",
            header(1, 1, 4, 0, 1, 0),
            "request body must be 8 bytes, got 4",
        ),
        (
            "bad last flag",
            [header(1, 1, 9, 0, 7, 0), vec![0; 9]].concat(),
            "invalid last byte 0x7",
        ),
        (
            "truncated header",
            req[..9].to_vec(),
            "connection closed in the middle of a message",
        ),
        (
            "truncated request",
            req[..20].to_vec(),
            "connection closed in the middle of a message",
        ),
        (
            "data claims 4 GiB",
            [req.clone(), header(1, 3, u32::MAX, 0, 1, 0)].concat(),
            "data message of 4294967295 bytes exceeds the limit of 16777216",
        ),
        (
            "more than announced",
            [req.clone(), data(1, 0, true, b"abcdef")].concat(),
            "data beyond the announced size",
        ),
        (
            "last too early",
            [req.clone(), data(1, 0, true, b"ab")].concat(),
            "announced 4 bytes but the last data message came after 2",
        ),
        (
            "seq out of order",
            [req.clone(), data(1, 1, true, b"abcd")].concat(),
            "expected seq 0, got 1",
        ),
        (
            "msgid changes",
            [
                req.clone(),
                data(1, 0, false, b"ab"),
                data(2, 1, true, b"cd"),
            ]
            .concat(),
            "expected message id 1, got 2",
        ),
        (
            "unknown type mid upload",
            [req.clone(), header(1, 77, 0, 0, 1, 0)].concat(),
            "unknown message type 0x4d",
        ),
        (
            "request mid upload",
            [req.clone(), req.clone()].concat(),
            "expected a data message, got request",
        ),
        (
            "truncated data",
            [req.clone(), data(1, 0, true, b"abcd")[..18].to_vec()].concat(),
            "connection closed in the middle of a message",
        ),
        (
            "closed before data",
            req.clone(),
            "connection closed by peer while waiting for a data message",
        ),
    ];
    for (what, script, reason) in &cases {
        let mut stream = connect(server.addr);
        stream.write_all(script).unwrap();
        // The server may already have closed on a bad header: that is the point.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let replies = read_until_closed(&mut stream);
        let log = server.line();
        assert!(log.contains(reason), "{what}: {log}");
        assert!(
            log.starts_with("failed \"f.bin\"")
                || log.contains("connection failed before a request"),
            "{what}: {log}"
        );
        if script.starts_with(&req) {
            // Accepted, then failed: the client is told so.
            let mut expected = GOLDEN_RESPONSE.to_vec();
            expected.extend_from_slice(&[
                1, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0,
            ]);
            assert_eq!(replies, expected, "{what}");
        } else {
            assert!(replies.is_empty(), "{what}: {replies:?}");
        }
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{what}: something was stored"
        );
    }
    // Still serving.
    let mut stream = connect(server.addr);
    stream
        .write_all(&[request(4, "f.bin"), data(1, 0, true, b"good")].concat())
        .unwrap();
    assert_eq!(&read_until_closed(&mut stream)[21..], GOLDEN_RESULT);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"good");
}

/// A 4 GiB claim is refused from the header alone, without waiting for or allocating the body.
#[test]
fn huge_request_claim_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let mut stream = connect(server.addr);
    // The stream stays open: only the header's claim can make the server close it.
    stream.write_all(&header(1, 1, u32::MAX, 0, 1, 0)).unwrap();
    assert!(read_until_closed(&mut stream).is_empty());
    assert!(server.line().contains("exceeds the limit"));
}

/// Names that could hide, or that leave nothing to store under, are denied without asking
/// anyone. (Paths are stored under their last part: see hostile.rs.)
#[test]
fn unsafe_names_are_denied_without_a_prompt() {
    let dir = tempfile::tempdir().unwrap();
    // No --yes and no answer ever typed: a prompt would block, so a prompt fails the test.
    let server = Running::fup_server(dir.path(), &[], Input::Pipe);
    for name in ["../", "sub/..", ".hidden", "a\nb", "..", ""] {
        let mut stream = connect(server.addr);
        stream.write_all(&request(2, name)).unwrap();
        let mut response = [0; 21];
        stream.read_exact(&mut response).unwrap();
        assert_eq!(response[20], 1, "{name:?} must be denied");
        let log = server.line();
        assert!(log.starts_with("refused \""), "{log}");
        assert!(!log.contains('\n'));
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

/// One question at a time: a second request waits until the first is answered.
#[test]
fn questions_are_asked_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    a.write_all(&request(0, "a")).unwrap();
    b.write_all(&request(0, "b")).unwrap();
    server.answer("y");
    // Exactly one of them gets its response now: find which, within the deadline.
    let mut conns = [a, b];
    for conn in &conns {
        conn.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
    }
    let deadline = Instant::now() + TIMEOUT;
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "no response to the answered question"
        );
        if let Some(i) = (0..2).find(|&i| conns[i].peek(&mut [0; 1]).is_ok()) {
            break i;
        }
    };
    let mut response = [0; 21];
    conns[first].set_read_timeout(Some(TIMEOUT)).unwrap();
    conns[first].read_exact(&mut response).unwrap();
    assert_eq!(response[20], 0, "accepted");
    // The other is still waiting for its turn: no answer has been typed for it.
    let second = &mut conns[1 - first];
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = second.read(&mut response).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    server.answer("n");
    second.read_exact(&mut response).unwrap();
    assert_eq!(response[20], 1, "denied");
    drop(conns);
    assert!(server.is_alive());
}
