//! The upload page on fup-server's port: HTTP and HTTPS against the real binary, with a Rust
//! HTTP client (ureq) as a browser would speak, and raw bytes where a browser would not.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::util::{
    Input, Running, TIMEOUT, entries, fup_client, pattern, read_until_closed, upload_bytes,
};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A browser-like client: statuses are answers, not errors; the self-signed certificate is
/// taken (the HTTPS test checks its fingerprint on its own).
fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(true)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

/// A page's view of one server.
struct Page {
    agent: ureq::Agent,
    base: String,
}

impl Page {
    fn http(server: &Running) -> Page {
        Page {
            agent: agent(),
            base: format!("http://{}", server.addr),
        }
    }

    fn https(server: &Running) -> Page {
        Page {
            agent: agent(),
            base: format!("https://{}", server.addr),
        }
    }

    /// `POST /offer` of `files` (path, size) with `key`: the status and the answer.
    fn offer_as(&self, key: &str, files: &[(&str, u64)]) -> (u16, Value) {
        let files: Vec<Value> = files
            .iter()
            .map(|(name, size)| json!({"name": name, "size": size, "modified": 1_700_000_000_000_i64}))
            .collect();
        let body = json!({"key": key, "files": files}).to_string();
        let mut response = self
            .agent
            .post(format!("{}/offer", self.base))
            .content_type("application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    fn offer(&self, files: &[(&str, u64)]) -> Value {
        let (status, answer) = self.offer_as(KEY, files);
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// `PUT /file/TOKEN/INDEX?from=FROM` with `body`: the status and the answer.
    fn put(&self, token: &str, index: usize, from: u64, body: &[u8]) -> (u16, Value) {
        let mut response = self
            .agent
            .put(format!("{}/file/{token}/{index}?from={from}", self.base))
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, kind, response.body_mut().read_to_string().unwrap())
    }
}

fn token_of(answer: &Value) -> String {
    answer["token"].as_str().expect("a token").to_string()
}

/// A raw request's answer: its status line and the rest, up to the close (bounded).
fn raw(server: &Running, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // A server that closed early may reset the rest: what it said before is what counts.
    let _ = stream.write_all(request);
    String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned()
}

/// What a listing of `dir` shows people: not the server's hidden directories.
fn visible(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = entries(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn status_of(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

#[test]
fn the_page_and_uploads_of_0_1_and_5_mib_bytes_and_a_hangul_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let page = Page::http(&server);
    let (status, kind, body) = page.get("/");
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"));
    assert!(body.contains(r#"<input type="file" id="files" name="files" multiple>"#));
    assert!(
        !body.contains("<script src")
            && !body.contains("http://")
            && !body.contains("https://fonts")
    );
    // Nothing but the page: no listing, no files, no way out.
    for path in [
        "/index.html",
        "/..",
        "/../../etc/passwd",
        "/file",
        "/offer/x",
        "/%2e%2e/",
    ] {
        assert_eq!(page.get(path).0, 404, "{path}");
    }
    let big = pattern(5 << 20);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", vec![42]),
        ("big.bin", big),
        ("사진 1.jpg", pattern(1000)),
    ];
    let offered: Vec<(&str, u64)> = files.iter().map(|(n, b)| (*n, b.len() as u64)).collect();
    let answer = page.offer(&offered);
    assert_eq!(answer["verdict"], "accepted", "{answer}");
    let token = token_of(&answer);
    for (index, (name, bytes)) in files.iter().enumerate() {
        assert_eq!(answer["files"][index]["from"], 0);
        let (status, stored) = page.put(&token, index, 0, bytes);
        assert_eq!(status, 200, "{stored}");
        assert_eq!(stored, json!({"verdict": "stored", "stored": name}));
        assert!(
            std::fs::read(dir.path().join(name)).unwrap() == *bytes,
            "{name}"
        );
        let line = server.line();
        assert!(line.starts_with(&format!("stored \"{name}\" ")), "{line}");
        assert!(line.contains("browser over http \"ureq/"), "{line}");
        assert!(line.ends_with("(accepted: --yes)"), "{line}");
    }
    // The modification time the page sent is kept.
    let modified = std::fs::metadata(dir.path().join("one.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_700_000_000
    );
    // Done: nothing more is taken for it.
    assert_eq!(page.put(&token, 0, 0, b"").0, 409);
    let mut names = entries(dir.path());
    names.sort();
    assert_eq!(names, ["big.bin", "empty.bin", "one.bin", "사진 1.jpg"]);
}

#[test]
fn the_operator_is_asked_once_and_a_denial_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::fup_server(dir.path(), &[], Input::Pipe);
    let page = Page::http(&server);
    let addr = server.addr;
    let asking = std::thread::spawn({
        move || {
            // A user agent that would reorder the operator's line if printed raw.
            let body = json!({"key": KEY, "files": [
                {"name": "a.txt", "size": 3}, {"name": "photos/b.jpg", "size": 5}]});
            let body = body.to_string();
            let request = format!(
                "POST /offer HTTP/1.1\r\nHost: x\r\nUser-Agent: Evil\u{202e}txt.exe\r\n\
                 Content-Type: application/json\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let answer = String::from_utf8(read_until_closed(&mut stream)).unwrap();
            let (_, json) = answer.split_once("\r\n\r\n").unwrap();
            serde_json::from_str::<Value>(json).unwrap()
        }
    });
    let question = server.err_line_containing("wants to send");
    assert!(question.contains("2 files, 1 folder, 8 B"), "{question}");
    assert!(question.contains("\"a.txt\", \"photos\""), "{question}");
    let how = server.err_line_containing("browser");
    assert!(
        how.contains("a browser over plain http: unencrypted"),
        "{how}"
    );
    let agent_line = server.err_line_containing("Evil");
    assert!(agent_line.contains(r"Evil\u{202e}txt.exe"), "{agent_line}");
    server.answer("n");
    let answer = asking.join().unwrap();
    assert_eq!(answer["verdict"], "denied", "{answer}");
    assert_eq!(answer["files"][0]["verdict"], "denied");
    assert_eq!(
        answer["files"][1]["reason"],
        "denied by the server's operator"
    );
    assert!(answer.get("token").is_none());
    let line = server.line();
    assert!(
        line.starts_with("denied batch of 2 files, 1 folder, 8 B"),
        "{line}"
    );
    assert!(
        line.contains(r#"browser over http "Evil\u{202e}txt.exe""#),
        "{line}"
    );
    assert!(entries(dir.path()).is_empty());
    // A single file reads as one; yes stores it.
    let asking = std::thread::spawn({
        let base = page.base.clone();
        move || {
            Page {
                agent: agent(),
                base,
            }
            .offer(&[("c.txt", 2)])
        }
    });
    let question = server.err_line_containing("wants to send");
    assert!(
        question.contains("wants to send \"c.txt\" (2 B, 2 bytes)"),
        "{question}"
    );
    server.answer("y");
    let answer = asking.join().unwrap();
    assert_eq!(page.put(&token_of(&answer), 0, 0, b"ok").0, 200);
    assert_eq!(std::fs::read(dir.path().join("c.txt")).unwrap(), b"ok");
}

#[test]
fn policies_apply_to_browsers_file_by_file_and_require_secure_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--max-size", "10"], Input::Text(""));
    let page = Page::http(&server);
    let answer = page.offer(&[("small", 10), ("large", 11), (".hidden", 1), ("a:b", 1)]);
    assert_eq!(answer["verdict"], "accepted");
    assert_eq!(answer["files"][0]["verdict"], "accepted");
    assert_eq!(answer["files"][1]["reason"], "larger than --max-size 10 B");
    assert_eq!(answer["files"][2]["reason"], "name starts with a dot");
    assert_eq!(answer["files"][3]["verdict"], "denied");
    // A refused file's bytes are refused too.
    assert_eq!(page.put(&token_of(&answer), 1, 0, &[0; 11]).0, 403);
    drop(server);

    let server = Running::fup_server(dir.path(), &["--yes", "--require-secure"], Input::Text(""));
    let answer = Page::http(&server).offer(&[("x", 1)]);
    assert_eq!(answer["verdict"], "denied");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .starts_with("plain http is refused here (--require-secure)"),
        "{answer}"
    );
    let line = server.line();
    assert!(
        line.contains("plain upload refused (--require-secure)"),
        "{line}"
    );
    let secure = Page::https(&server);
    let answer = secure.offer(&[("x", 1)]);
    assert_eq!(answer["verdict"], "accepted", "{answer}");
    assert_eq!(secure.put(&token_of(&answer), 0, 0, b"!").0, 200);
    assert!(server.line().contains("browser over https"));
}

#[test]
fn a_length_that_lies_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--max-partial", "0"],
        Input::Text(""),
    );
    let page = Page::http(&server);
    let answer = page.offer(&[("a.bin", 100)]);
    let token = token_of(&answer);
    // More or less than the file: refused before a byte is read.
    for len in [99, 101] {
        let (status, why) = page.put(&token, 0, 0, &vec![1; len]);
        assert_eq!(status, 400, "{why}");
        assert!(
            why["error"]
                .as_str()
                .unwrap()
                .contains("a Content-Length of"),
            "{why}"
        );
    }
    // A length that promises what never comes: cut at the close, nothing stored.
    let head = format!(
        "PUT /file/{token}/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}",
        "x".repeat(60)
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    read_until_closed(&mut stream);
    let line = server.line();
    assert!(line.starts_with("failed \"a.bin\""), "{line}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    // The file can still come whole.
    assert_eq!(page.put(&token, 0, 0, &[7; 100]).0, 200);
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), [7; 100]);
}

#[test]
fn hostile_requests_are_bounded_and_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--hello-timeout", "1"],
        Input::Text(""),
    );
    // A head over 16 KiB, or with 65 headers.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(17 * 1024));
    assert_eq!(
        status_of(&raw(&server, long.as_bytes())),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..65 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        status_of(&raw(&server, many.as_bytes())),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Chunks, two lengths, a sign: refused, and the connection ends.
    let chunked =
        "POST /offer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server, chunked.as_bytes())),
        "HTTP/1.1 411 Length Required"
    );
    let twice = "POST /offer HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
    assert_eq!(
        status_of(&raw(&server, twice.as_bytes())),
        "HTTP/1.1 400 Bad Request"
    );
    let garbage = "GET / HTTP/1.1\r\nno colon here\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server, garbage.as_bytes())),
        "HTTP/1.1 400 Bad Request"
    );
    // An offer over its limit is refused from its length alone.
    let huge = "POST /offer HTTP/1.1\r\nContent-Type: application/json\r\n\
                Content-Length: 2000000\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server, huge.as_bytes())),
        "HTTP/1.1 413 Content Too Large"
    );
    // Another site: its name resolving here (DNS rebinding), its page posting here, or a
    // form that is not JSON.
    let rebound = "GET / HTTP/1.1\r\nHost: files.example.com:5425\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server, rebound.as_bytes())),
        "HTTP/1.1 421 Misdirected Request"
    );
    let offer = r#"{"key":"0123456789abcdef0123456789abcdef","files":[{"name":"x","size":1}]}"#;
    let cross = format!(
        "POST /offer HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{offer}",
        server.addr,
        offer.len()
    );
    assert_eq!(
        status_of(&raw(&server, cross.as_bytes())),
        "HTTP/1.1 403 Forbidden"
    );
    let form = format!(
        "POST /offer HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{offer}",
        server.addr,
        offer.len()
    );
    assert_eq!(
        status_of(&raw(&server, form.as_bytes())),
        "HTTP/1.1 415 Unsupported Media Type"
    );
    let same = format!(
        "POST /offer HTTP/1.1\r\nHost: {0}\r\nOrigin: http://{0}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {1}\r\n\r\n{offer}",
        server.addr,
        offer.len()
    );
    assert_eq!(status_of(&raw(&server, same.as_bytes())), "HTTP/1.1 200 OK");
    let methods = "DELETE / HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server, methods.as_bytes())),
        "HTTP/1.1 405 Method Not Allowed"
    );
    // A head that never ends is cut at the hello time.
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nX: ").unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(read_until_closed(&mut stream).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Names that are paths out, or not names: refused one by one, the rest goes on.
    let page = Page::http(&server);
    let answer = page.offer(&[
        ("../up.txt", 1),
        ("/etc/passwd", 1),
        ("a\u{1b}[2J", 1),
        ("d/../../x", 1),
        ("CON", 1),
        ("ok.txt", 1),
    ]);
    let verdicts: Vec<&str> = (0..6)
        .map(|i| answer["files"][i]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["denied", "denied", "denied", "denied", "denied", "accepted"]
    );
    // A token that is not one, an index past the end, a second try of a stored file.
    let token = token_of(&answer);
    assert_eq!(
        page.put("00000000000000000000000000000000", 0, 0, b"x").0,
        404
    );
    assert_eq!(page.put(&token, 99, 0, b"x").0, 404);
    assert_eq!(page.put(&token, 5, 0, b"x").0, 200);
    assert_eq!(entries(dir.path()), ["ok.txt"]);
    // Offers kept at once from one address are bounded.
    let mut busy = None;
    for _ in 0..9 {
        let answer = page.offer(&[("later.txt", 1)]);
        if answer["verdict"] == "denied" {
            busy = Some(answer["reason"].as_str().unwrap().to_string());
            break;
        }
    }
    let busy = busy.expect("the ninth open offer is refused");
    assert!(
        busy.contains("8 browser uploads are open already"),
        "{busy}"
    );
    // The log escapes what the peer sent.
    let mut log = Vec::new();
    while let Some(line) = server.try_line(Duration::from_millis(300)) {
        log.push(line);
    }
    assert!(log.iter().all(|line| !line.contains('\u{1b}')), "{log:?}");
}

/// A verifier that takes any certificate and keeps it, to compare its fingerprint with the
/// one the server printed.
#[derive(Debug)]
struct Keep(
    Arc<Mutex<Option<Vec<u8>>>>,
    Arc<rustls::crypto::CryptoProvider>,
);

impl rustls::client::danger::ServerCertVerifier for Keep {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.1.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

#[test]
fn https_on_the_same_port_shows_the_certificate_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fup-server"));
    cmd.env("FUP_CONFIG_DIR", config.path())
        .args(["--port", "0", "--bind", "127.0.0.1", "--yes"])
        .arg(dir.path());
    let server = Running::command(&mut cmd, Input::Text(""));
    // The lines after `identity:` come with the next line read: a first upload's.
    let page = Page::https(&server);
    let (status, _, body) = page.get("/");
    assert_eq!(status, 200);
    let answer = page.offer(&[("secret.txt", 6)]);
    assert_eq!(page.put(&token_of(&answer), 0, 0, b"secret").0, 200);
    let line = server.line();
    assert!(line.contains("browser over https \"ureq/"), "{line}");
    let web = server.web();
    assert_eq!(web[0], format!("web: http://{}/", server.addr));
    let printed = web[1]
        .strip_prefix("web certificate (https:// on the same port): SHA-256 ")
        .expect("the certificate's line")
        .to_string();
    // The page shows it, and it is the certificate's.
    assert!(body.contains(&printed), "the page names the fingerprint");
    let seen = Arc::new(Mutex::new(None));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Keep(Arc::clone(&seen), provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(tls), name).unwrap();
    let mut sock = TcpStream::connect(server.addr).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let _ = stream.read_to_end(&mut head);
    assert!(
        head.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let der = seen.lock().unwrap().clone().expect("a certificate");
    let fingerprint: Vec<String> = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(fingerprint.join(":"), printed);
    // Kept beside the identity: the same at the next start.
    assert!(config.path().join("web.key").exists() && config.path().join("web.crt").exists());
}

#[test]
fn a_cut_file_resumes_from_what_the_server_holds_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let page = Page::http(&server);
    let file = pattern(1 << 20);
    let answer = page.offer(&[("movie.bin", file.len() as u64)]);
    let token = token_of(&answer);
    let cut = 300_000;
    let head = format!(
        "PUT /file/{token}/0?from=0 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        file.len()
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&file[..cut]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    read_until_closed(&mut stream);
    let line = server.line();
    assert!(
        line.starts_with("failed \"movie.bin\" after 300000 of 1048576 bytes"),
        "{line}"
    );
    assert!(line.contains("to resume"), "{line}");
    assert!(visible(dir.path()).is_empty());
    // The same file chosen again from the same browser: the server says how much it holds
    // and what it hashes to; the page compares, and sends the rest.
    let again = page.offer(&[("movie.bin", file.len() as u64)]);
    assert_eq!(again["files"][0]["from"], cut);
    let ours: Vec<String> = Sha256::digest(&file[..cut])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(again["files"][0]["sha256"], ours.concat());
    // Another page (another key) does not see it.
    let (_, other) = page.offer_as(
        "ffffffffffffffffffffffffffffffff",
        &[("movie.bin", file.len() as u64)],
    );
    assert_eq!(other["files"][0]["from"], 0);
    let (status, stored) = page.put(&token_of(&again), 0, cut as u64, &file[cut..]);
    assert_eq!(status, 200, "{stored}");
    assert!(std::fs::read(dir.path().join("movie.bin")).unwrap() == file);
    let line = server.line();
    assert!(line.contains(", resumed at "), "{line}");
    // Resuming from more than the server holds is refused; from 0 always works.
    let third = page.offer(&[("movie.bin", file.len() as u64)]);
    assert_eq!(third["files"][0]["from"], 0);
    let (status, _) = page.put(&token_of(&third), 0, 10, &file[10..]);
    assert_eq!(status, 409);
    assert_eq!(page.put(&token_of(&third), 0, 0, &file).0, 200);
    assert!(std::fs::read(dir.path().join("movie (1).bin")).unwrap() == file);
}

#[test]
fn a_folder_is_published_whole_once_its_last_file_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let page = Page::http(&server);
    let answer = page.offer(&[
        ("album/a.jpg", 3),
        ("album/2024/b.jpg", 4),
        ("album/.info", 1),
    ]);
    let token = token_of(&answer);
    assert_eq!(page.put(&token, 0, 0, b"aaa").1["verdict"], "received");
    assert_eq!(page.put(&token, 2, 0, b"i").1["verdict"], "received");
    // Nothing visible before the folder is whole.
    assert!(visible(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    assert_eq!(
        page.put(&token, 1, 0, b"bbbb").1,
        json!({"verdict": "stored", "folder": "album"})
    );
    let album = dir.path().join("album");
    assert_eq!(std::fs::read(album.join("a.jpg")).unwrap(), b"aaa");
    assert_eq!(std::fs::read(album.join("2024/b.jpg")).unwrap(), b"bbbb");
    assert_eq!(std::fs::read(album.join(".info")).unwrap(), b"i");
    let line = server.line();
    assert!(
        line.starts_with("stored batch of 3 files, 2 folders, 8 B"),
        "{line}"
    );
    // The same folder again is kept beside it.
    let answer = page.offer(&[("album/a.jpg", 1)]);
    assert_eq!(
        page.put(&token_of(&answer), 0, 0, b"x").1["folder"],
        "album (1)"
    );
}

#[test]
fn fup_clients_and_the_plain_protocol_still_share_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("via-fup.bin");
    std::fs::write(&file, pattern(70_000)).unwrap();
    let secure = fup_client(&server.port(), &[file.to_str().unwrap()]);
    assert!(secure.status.success(), "{secure:?}");
    let plain_file = src.path().join("via-plain.bin");
    std::fs::write(&plain_file, pattern(5000)).unwrap();
    let plain = fup_client(&server.port(), &["--plain", plain_file.to_str().unwrap()]);
    assert!(plain.status.success(), "{plain:?}");
    // The Python client's bytes, as it sends them.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(&upload_bytes("python.bin", &pattern(3000), 1024))
        .unwrap();
    let answer = read_until_closed(&mut stream);
    assert_eq!(&answer[answer.len() - 1..], &[1]);
    // And a browser between them.
    let page = Page::http(&server);
    let offer = page.offer(&[("browser.bin", 2)]);
    assert_eq!(page.put(&token_of(&offer), 0, 0, b"hi").0, 200);
    let mut names = entries(dir.path());
    names.sort();
    assert_eq!(
        names,
        ["browser.bin", "python.bin", "via-fup.bin", "via-plain.bin"]
    );
    assert!(std::fs::read(dir.path().join("python.bin")).unwrap() == pattern(3000));
}

#[test]
fn no_web_turns_the_page_off_and_json_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes", "--no-web"], Input::Text(""));
    // Not FUP, and no page: closed without an HTTP answer.
    let answer = raw(&server, b"GET / HTTP/1.1\r\n\r\n");
    assert!(answer.is_empty(), "{answer}");
    let line = server.line();
    assert!(line.contains("unknown message type"), "{line}");
    // Every line before that one was read: none was about a page.
    assert!(server.web_seen().is_empty(), "{:?}", server.web_seen());
    drop(server);
    let server = Running::fup_server(dir.path(), &["--yes", "--json"], Input::Text(""));
    let ready: Value = serde_json::from_str(&server.ready).unwrap();
    assert_eq!(ready["web"], json!([format!("http://{}/", server.addr)]));
    assert_eq!(ready["web_fingerprint"].as_str().unwrap().len(), 95);
    let page = Page::http(&server);
    let offer = page.offer(&[("j.txt", 1)]);
    assert_eq!(page.put(&token_of(&offer), 0, 0, b"j").0, 200);
    let object: Value = serde_json::from_str(&server.line()).unwrap();
    assert_eq!(object["verdict"], "stored");
    assert_eq!(object["name"], "j.txt");
    assert_eq!(object["browser"]["https"], false);
    assert!(
        object["browser"]["agent"]
            .as_str()
            .unwrap()
            .starts_with("ureq/")
    );
}

#[test]
fn offers_count_against_the_memory_of_lists_in_flight_and_quiet_connections_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(
        dir.path(),
        &["--yes", "--manifest-memory", "4K", "--timeout", "1"],
        Input::Text(""),
    );
    let page = Page::http(&server);
    // A small offer fits; one whose JSON could take more than the budget is turned away.
    assert_eq!(page.offer(&[("a", 1)])["verdict"], "accepted");
    let names: Vec<String> = (0..40).map(|i| format!("file-number-{i}.txt")).collect();
    let many: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let (status, answer) = page.offer_as(KEY, &many);
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--manifest-memory"),
        "{answer}"
    );
    // A connection that stays quiet after its request is closed after the timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(!answer.ends_with(b"</html>\n"), "HEAD has no body");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_browsers_spare_connection_is_closed_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for json in [false, true] {
        let mut args = vec!["--yes", "--hello-timeout", "1"];
        if json {
            args.push("--json");
        }
        let server = Running::fup_server(dir.path(), &args, Input::Text(""));
        // Browsers open a connection ahead of need: it is closed after the hello time.
        let started = Instant::now();
        let mut spare = TcpStream::connect(server.addr).unwrap();
        spare.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert!(read_until_closed(&mut spare).is_empty());
        assert!(started.elapsed() < Duration::from_secs(10));
        let page = Page::http(&server);
        let offer = page.offer(&[("after.txt", 1)]);
        assert_eq!(page.put(&token_of(&offer), 0, 0, b"!").0, 200);
        let line = server.line();
        match json {
            // Not a line for people: the next one is the upload's.
            false => assert!(line.starts_with("stored \"after.txt\""), "{line}"),
            // One object per connection still.
            true => {
                let idle: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(idle["verdict"], "idle", "{line}");
            }
        }
    }
}

/// A raw request from `from` (a loopback address of the test's choosing) to `server`.
fn raw_from(from: &str, server: &Running, request: &str) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = stream.write_all(request.as_bytes());
    String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned()
}

#[test]
fn a_page_asks_how_much_was_kept_and_only_its_address_may_send() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::fup_server(dir.path(), &["--yes"], Input::Text(""));
    let page = Page::http(&server);
    let file = pattern(200_000);
    let offer = page.offer(&[("flaky.bin", file.len() as u64)]);
    let token = token_of(&offer);
    // Another address (another device on the network) can neither ask nor send.
    for request in [
        format!("GET /file/{token}/0 HTTP/1.1\r\nConnection: close\r\n\r\n"),
        format!(
            "PUT /file/{token}/0 HTTP/1.1\r\nConnection: close\r\nContent-Length: 200000\r\n\r\n"
        ),
    ] {
        let answer = raw_from("127.0.0.2", &server, &request);
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden"), "{answer}");
    }
    let (_, state, _) = page.get(&format!("/file/{token}/0"));
    assert!(state.starts_with("application/json"));
    let status = |page: &Page| -> Value {
        let (code, _, body) = page.get(&format!("/file/{token}/0"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(status(&page), json!({"state": "waiting", "from": 0}));
    // Cut after 70,000 bytes: the same offer says so, and takes the rest.
    let head = format!(
        "PUT /file/{token}/0 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        file.len()
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&file[..70_000]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    read_until_closed(&mut stream);
    assert!(server.line().contains("kept"));
    assert_eq!(status(&page), json!({"state": "waiting", "from": 70_000}));
    assert_eq!(page.put(&token, 0, 70_000, &file[70_000..]).0, 200);
    assert!(std::fs::read(dir.path().join("flaky.bin")).unwrap() == file);
    // Stored: a page whose answer was lost can still learn it.
    assert_eq!(
        status(&page),
        json!({"state": "stored", "stored": "flaky.bin"})
    );
}
