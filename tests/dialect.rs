//! The other dialect: the C# FileSender / FileReceiver programs, as PROTOCOL.md describes
//! their wire behaviour, spoken here byte by byte against the real fup binaries.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Instant;

use crate::util::*;

/// What the C# FileSender sends: request msgid 0 with the name as given (a typed path, maybe
/// CP949), then, if the response byte is not `denied_byte`, the file in 4096-byte chunks with
/// msgid 1, frag 1 iff the file is at least 4096 bytes, seq wrapping, and no data message at
/// all for an empty file. Returns the response and the result as received.
fn csharp_upload(
    addr: SocketAddr,
    name: &[u8],
    file: &[u8],
    chunk: usize,
    denied_byte: u8,
) -> (Vec<u8>, Vec<u8>) {
    let mut stream = connect(addr);
    let mut request = header(0, 1, 8 + name.len() as u32, 0, 1, 0);
    request.extend_from_slice(&(file.len() as u64).to_le_bytes());
    request.extend_from_slice(name);
    stream.write_all(&request).unwrap();
    let mut response = vec![0; 21];
    stream.read_exact(&mut response).unwrap();
    if response[20] == denied_byte {
        return (response, read_until_closed(&mut stream));
    }
    let frag = u8::from(file.len() >= 4096);
    let chunks: Vec<&[u8]> = file.chunks(chunk).collect();
    let mut out = Vec::with_capacity(file.len() + 16 * chunks.len());
    for (i, part) in chunks.iter().enumerate() {
        let last = u8::from(i + 1 == chunks.len());
        out.extend(header(1, 3, part.len() as u32, frag, last, i as u16));
        out.extend_from_slice(part);
    }
    stream.write_all(&out).unwrap();
    (response, read_until_closed(&mut stream))
}

/// The result a fup server sends: header msgid 1, body echoing `id`, 1 for success.
fn result(id: u32, success: bool) -> Vec<u8> {
    let mut r = header(1, 4, 5, 0, 1, 0);
    r.extend_from_slice(&id.to_le_bytes());
    r.push(u8::from(success));
    r
}

/// The response a fup server sends to a C# request (msgid 0): header msgid 0, body echoing 0.
fn response(byte: u8) -> Vec<u8> {
    let mut r = header(0, 2, 5, 0, 1, 0);
    r.extend_from_slice(&0u32.to_le_bytes());
    r.push(byte);
    r
}

#[test]
fn csharp_sender_stores_every_size_and_name_in_fup_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let korean = "사진 1.jpg";
    let cases: Vec<(Vec<u8>, &str, usize)> = vec![
        (b"f0.bin".to_vec(), "f0.bin", 0),
        (b"f1.bin".to_vec(), "f1.bin", 1),
        (b"f4095.bin".to_vec(), "f4095.bin", 4095),
        (b"f4096.bin".to_vec(), "f4096.bin", 4096),
        (b"f4097.bin".to_vec(), "f4097.bin", 4097),
        (b"f10000000.bin".to_vec(), "f10000000.bin", 10_000_000),
        (b"with space.txt".to_vec(), "with space.txt", 4097),
        ("한글 이름.bin".as_bytes().to_vec(), "한글 이름.bin", 1),
        (b"sub/typed.bin".to_vec(), "typed.bin", 5000),
        (b"/home/u/abs.bin".to_vec(), "abs.bin", 2),
        (br"C:\Users\u\win.bin".to_vec(), "win.bin", 4096),
        // 사진 1.jpg from Korean Windows (.NET Framework): CP949.
        (b"\xbb\xe7\xc1\xf8 1.jpg".to_vec(), korean, 3),
        // A typed path, in CP949: C:\사진\한글 이름.bin.
        (
            b"C:\\\xbb\xe7\xc1\xf8\\\xc7\xd1\xb1\xdb \xc0\xcc\xb8\xa7.bin".to_vec(),
            "한글 이름 (1).bin",
            7,
        ),
    ];
    for (name, stored, size) in &cases {
        let file = pattern(*size);
        let (response_bytes, result_bytes) = csharp_upload(server.addr, name, &file, 4096, 1);
        assert_eq!(response_bytes, response(0), "{stored}");
        // The result echoes the data messages' msgid, 1; the request's, 0, when none came.
        assert_eq!(result_bytes, result(u32::from(*size > 0), true), "{stored}");
        assert!(
            fs::read(dir.path().join(stored)).unwrap() == file,
            "{stored}"
        );
        let log = server.line();
        assert!(log.starts_with("stored \""), "{log}");
    }
    let korean_log = {
        let (_, _) = csharp_upload(server.addr, b"\xbb\xe7\xc1\xf8 1.jpg", b"x", 4096, 1);
        server.line()
    };
    assert!(
        korean_log.starts_with("stored \"사진 1.jpg\" (decoded from CP949) as \"사진 1 (1).jpg\""),
        "{korean_log}"
    );
}

#[test]
fn csharp_sender_with_a_wrapped_seq() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    // Past 65,536 messages seq wraps to 0, as the C# client sends it (in 16-byte chunks here,
    // so that the test stays small; the C# client wraps at 256 MiB of 4096-byte chunks).
    let file = pattern(16 * 65_540);
    let (response_bytes, result_bytes) = csharp_upload(server.addr, b"wrap.bin", &file, 16, 1);
    assert_eq!(response_bytes, response(0));
    assert_eq!(result_bytes, result(1, true));
    assert!(fs::read(dir.path().join("wrap.bin")).unwrap() == file);
}

#[test]
fn csharp_copies_that_use_1_for_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &["--accept-byte", "1"], Input::Pipe);
    let file = pattern(5000);
    let asking = {
        let addr = server.addr;
        let file = file.clone();
        thread::spawn(move || csharp_upload(addr, b"yes.bin", &file, 4096, 0))
    };
    server.err_line_containing("accept? [y/N]");
    server.answer("y");
    let (response_bytes, result_bytes) = asking.join().unwrap();
    assert_eq!(response_bytes, response(1), "accepted is 1 here");
    assert_eq!(result_bytes, result(1, true));
    assert!(server.line().starts_with("stored \"yes.bin\""));
    let asking = {
        let addr = server.addr;
        thread::spawn(move || csharp_upload(addr, b"no.bin", b"x", 4096, 0))
    };
    server.err_line_containing("accept? [y/N]");
    server.answer("n");
    let (response_bytes, after) = asking.join().unwrap();
    assert_eq!(response_bytes, response(0), "denied is 0 here");
    assert!(after.is_empty(), "closed at once");
    assert!(server.line().starts_with("denied \"no.bin\""));
    assert_eq!(fs::read(dir.path().join("yes.bin")).unwrap(), file);
    assert!(!dir.path().join("no.bin").exists());
}

/// A C#-style FileReceiver for `answers.len()` connections, in order: header msgids from one
/// counter for the whole process, the response echoing the request's msgid, `accept_byte` for
/// yes; on no it closes at once, on yes it keeps the connection, reads data until `last` and
/// sends the result. Returns what it stored, by name.
fn csharp_server(
    accept_byte: u8,
    answers: Vec<bool>,
) -> (SocketAddr, thread::JoinHandle<HashMap<String, Vec<u8>>>) {
    let mut answers: std::collections::VecDeque<bool> = answers.into();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let counter = Arc::new(AtomicU32::new(0));
        let mut stored = HashMap::new();
        while let Some(yes) = answers.pop_front() {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut head = [0; 16];
            stream.read_exact(&mut head).unwrap();
            let request_id = u32::from_le_bytes(head[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
            let mut body = vec![0; len];
            stream.read_exact(&mut body).unwrap();
            if head[4..8] != [1, 0, 0, 0] {
                // Not a request (fup's secure-mode probe): closed, as the Python server does.
                answers.push_front(yes);
                continue;
            }
            let size = u64::from_le_bytes(body[..8].try_into().unwrap());
            let name = String::from_utf8(body[8..].to_vec()).unwrap();
            let mut reply = header(counter.fetch_add(1, Ordering::SeqCst), 2, 5, 0, 1, 0);
            reply.extend_from_slice(&request_id.to_le_bytes());
            reply.push(if yes { accept_byte } else { 1 - accept_byte });
            stream.write_all(&reply).unwrap();
            if !yes {
                continue; // Dropped: closed at once.
            }
            let mut data = Vec::new();
            let deadline = Instant::now() + TIMEOUT;
            let data_id = loop {
                assert!(Instant::now() < deadline, "data never ended");
                stream.read_exact(&mut head).unwrap();
                let data_id = u32::from_le_bytes(head[0..4].try_into().unwrap());
                let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
                let start = data.len();
                data.resize(start + len, 0);
                stream.read_exact(&mut data[start..]).unwrap();
                if head[13] == 1 {
                    break data_id;
                }
            };
            let mut result = header(counter.fetch_add(1, Ordering::SeqCst), 4, 5, 0, 1, 0);
            result.extend_from_slice(&data_id.to_le_bytes());
            result.push(u8::from(data.len() as u64 == size));
            stream.write_all(&result).unwrap();
            stored.insert(name, data);
        }
        stored
    });
    (addr, handle)
}

#[test]
fn fup_client_uploads_to_csharp_servers_of_both_conventions() {
    let src = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = [("a.bin", 0), ("b.bin", 5000), ("c.bin", 1 << 20)]
        .into_iter()
        .map(|(name, len)| {
            let path = src.path().join(name);
            fs::write(&path, pattern(len)).unwrap();
            (path.to_str().unwrap().to_string(), pattern(len))
        })
        .collect();
    for accept_byte in [0, 1] {
        for forced in [false, true] {
            // a: yes, b: no, c: yes.
            let (addr, fake) = csharp_server(accept_byte, vec![true, false, true]);
            let port = addr.port().to_string();
            let byte = accept_byte.to_string();
            let mut args: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
            if forced {
                args.extend(["--accept-byte", &byte]);
            }
            // Probes first (the server closes on it), then goes on in plain, saying so once.
            let out = fup_client_fresh(&port, &args);
            let (stdout, stderr) = text(&out);
            let what = format!("accept byte {accept_byte}, forced: {forced}");
            assert_eq!(out.status.code(), Some(1), "{what}: {stdout}{stderr}");
            assert_eq!(
                stderr,
                format!(
                    "fup-client: note: 127.0.0.1:{port} does not offer secure mode; sending in \
                     plain (unencrypted, unauthenticated; --secure refuses this)\n\
                     fup-client: \"b.bin\" 4.9 KiB: denied by server, plain\n"
                ),
                "{what}"
            );
            assert!(stdout.contains("sent \"a.bin\" 0 B in"), "{what}: {stdout}");
            assert!(
                stdout.contains("sent \"c.bin\" 1.0 MiB in"),
                "{what}: {stdout}"
            );
            assert!(stdout.ends_with("2 stored, 1 denied\n"), "{what}: {stdout}");
            let stored = fake.join().unwrap();
            assert_eq!(stored.len(), 2, "{what}");
            assert_eq!(stored["a.bin"], files[0].1, "{what}");
            assert!(stored["c.bin"] == files[2].1, "{what}");
        }
    }
}

#[test]
fn a_client_in_the_middle_of_a_large_message_still_reads_the_failure_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let mut stream = connect(server.addr);
    stream.write_all(&request(64 << 20, "big.bin")).unwrap();
    let mut response_bytes = [0; 21];
    stream.read_exact(&mut response_bytes).unwrap();
    assert_eq!(response_bytes[20], 0);
    // A data message whose header the server refuses (seq 5, not 0) and whose 16 MiB body the
    // client is still writing when the server gives up: far more than the sockets' buffers.
    // Like the Python and C# clients, this one writes everything first and reads after. Were
    // the server to close with the body unread, the kernel would reset the connection: the
    // write fails (and those clients die on it before reading), and on some systems the reset
    // also drops the result from the client's receive queue.
    let mut message = header(1, 3, 16 << 20, 1, 0, 5);
    message.extend(vec![0x5a; 16 << 20]);
    let wrote = stream.write_all(&message);
    let _ = stream.shutdown(Shutdown::Write);
    let replies = read_until_closed(&mut stream);
    assert_eq!(replies, result(1, false), "the failure result arrived");
    assert!(wrote.is_ok(), "the server read the message out: {wrote:?}");
    let log = server.line();
    assert!(
        log.starts_with("failed \"big.bin\"") && log.ends_with("expected seq 0, got 5"),
        "{log}"
    );
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn empty_data_messages_that_bring_no_progress_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let mut stream = connect(server.addr);
    stream.write_all(&request(10, "stuck.bin")).unwrap();
    let mut response_bytes = [0; 21];
    stream.read_exact(&mut response_bytes).unwrap();
    // What the C# client sends past 2 GiB: empty data messages, none of them the last. The
    // server gives up after 16; the client here stops after 1000 (ours would never send one).
    let started = Instant::now();
    let empties: Vec<u8> = (0..1000u16)
        .flat_map(|seq| header(1, 3, 0, 1, 0, seq))
        .collect();
    let _ = stream.write_all(&empties);
    let _ = stream.shutdown(Shutdown::Write);
    assert_eq!(read_until_closed(&mut stream), result(1, false));
    let log = server.line();
    assert!(
        log.ends_with("17 empty data messages in a row, none of them the last"),
        "{log}"
    );
    eprintln!(
        "no-progress upload cut off in {:.3} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn fup_client_hears_a_failure_in_the_middle_of_a_long_upload() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A 64 KiB file-size limit: the server fails the upload at its first write past it.
    let server = Running::limited_fup_server(dir.path(), "--yes", Input::Text(""));
    // 100 MiB in 64 KiB messages: more than the server reads out after giving up.
    let path = src.path().join("long.bin");
    fs::File::create(&path).unwrap().set_len(100 << 20).unwrap();
    let out = fup_client(
        &server.port(),
        &["--chunk-size", "65536", path.to_str().unwrap()],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        // In secure mode the server says why.
        "fup-client: \"long.bin\" 100.0 MiB: server reported that storing the file failed: \
         File too large (os error 27), secure\n"
    );
    let log = server.line();
    assert!(
        log.starts_with("failed \"long.bin\" after 65536 of 104857600 bytes")
            && log.ends_with("File too large (os error 27)"),
        "{log}"
    );
}
