//! Just enough HTTP/1.1 for the upload page, over any [`Conn`]: a request's head read whole
//! within a deadline and parsed by `httparse` under named limits (its size, its headers'
//! count), the few headers the page needs read strictly, and responses with a known length.
//! Nothing here follows a path: requests are matched against a handful of routes.

use std::io::{self, Read, Write};

use crate::net::{Conn, Deadline};

/// Most bytes of a request's head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// Most characters of a user agent kept for the operator's question and the log.
pub const MAX_AGENT: usize = 200;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection failed or closed in the middle of a request.
    #[error("connection failed in an HTTP request: {0}")]
    Io(#[source] io::Error),
    /// The head did not arrive whole in time.
    #[error("the HTTP request's head did not arrive within {:.1} s", .0.as_secs_f64())]
    TimedOut(std::time::Duration),
    /// The head is longer than [`MAX_HEAD`].
    #[error("HTTP request head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// More headers than [`MAX_HEADERS`].
    #[error("more than {MAX_HEADERS} HTTP headers")]
    TooManyHeaders,
    /// Not HTTP/1.x as `httparse` reads it.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// A TLS handshake, and the page has no certificate for HTTPS.
    #[error("an HTTPS request, and the page has no certificate (plain http only)")]
    NoHttps,
}

impl HttpError {
    /// The status a client is answered with, when one is worth sending.
    pub fn status(&self) -> Option<Status> {
        match self {
            HttpError::Io(_) | HttpError::TimedOut(_) | HttpError::NoHttps => None,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => Some(Status::HeadTooLarge),
            HttpError::Malformed(_) => Some(Status::BadRequest),
        }
    }
}

/// The methods the page uses; the rest are answered 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// Anything else.
    Other,
}

/// A request's head, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its method.
    pub method: Method,
    /// Its path, without the query.
    pub path: String,
    /// Its query, after `?`, if any.
    pub query: Option<String>,
    /// `Content-Length`, if sent (one value, digits only).
    pub length: Option<u64>,
    /// Whether a `Transfer-Encoding` was sent (not taken: bodies have a length).
    pub chunked: bool,
    /// Whether the connection ends after this request (`Connection: close`, HTTP/1.0).
    pub close: bool,
    /// Whether the client waits for `100 Continue` before its body.
    pub expect_continue: bool,
    /// The `User-Agent`, cut to [`MAX_AGENT`] characters (escaped where it is shown).
    pub agent: String,
    /// The `Content-Length` headers disagreed, or one was not a number.
    pub bad_length: bool,
    /// `Host`, if sent.
    pub host: Option<String>,
    /// `Origin`, if sent (browsers send it with every POST and PUT).
    pub origin: Option<String>,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
}

impl Head {
    /// Whether the request is one this server's own page could have made: its `Host` is an
    /// address, `localhost`, a `.local` or a one-label name (a DNS name of someone else's
    /// that resolves here, as in a rebinding attack, is not), and its `Origin`, if any, is
    /// that same host (another site's page cannot make a browser post here).
    ///
    /// # Errors
    ///
    /// [`Status::Misdirected`] for another name, [`Status::Forbidden`] for another origin.
    pub fn is_ours(&self) -> Result<(), Status> {
        let Some(host) = &self.host else {
            // HTTP/1.0 without a Host: no browser's.
            return Ok(());
        };
        if !host_is_ours(host) {
            return Err(Status::Misdirected);
        }
        match self.origin.as_deref() {
            None => Ok(()),
            Some(origin) => {
                let same = origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
                if same { Ok(()) } else { Err(Status::Forbidden) }
            }
        }
    }
}

/// Whether `host` (a `Host` header: a name or address, and maybe a port) names this server
/// the way its page is reached: an IP address, `localhost`, a `.local` name or a name of one
/// label.
///
/// # Example
///
/// ```
/// use fup::server::web::http::host_is_ours;
///
/// assert!(host_is_ours("192.168.1.7:5425") && host_is_ours("[fd00::7]:5425"));
/// assert!(host_is_ours("laptop.local:5425") && host_is_ours("laptop") && host_is_ours("localhost"));
/// assert!(!host_is_ours("files.example.com:5425") && !host_is_ours("evil.com"));
/// assert!(!host_is_ours("[::1]:x") && !host_is_ours("a:b:c") && !host_is_ours(""));
/// ```
pub fn host_is_ours(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6.split_once(']').is_some_and(|(addr, port)| {
                addr.parse::<std::net::Ipv6Addr>().is_ok() && is_port(port)
            });
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let lower = name.to_ascii_lowercase();
    !lower.is_empty()
        && (lower.parse::<std::net::Ipv4Addr>().is_ok()
            || lower == "localhost"
            || lower.ends_with(".local")
            || !lower.contains('.'))
}

/// `""` or `:` and digits.
fn is_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => {
            !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// A connection's bytes read ahead of what was parsed: a head's end may bring the start of
/// its body.
#[derive(Debug)]
pub struct Buffered {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buffered {
    /// A buffer of [`MAX_HEAD`] bytes starting with `first` (what was read to tell the
    /// protocol apart).
    pub fn new(first: &[u8]) -> Buffered {
        let mut buf = vec![0; MAX_HEAD].into_boxed_slice();
        buf[..first.len()].copy_from_slice(first);
        Buffered {
            buf,
            start: 0,
            end: first.len(),
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `max` waiting bytes.
    pub fn take(&mut self, max: usize) -> &[u8] {
        let n = self.len().min(max);
        let taken = &self.buf[self.start..self.start + n];
        self.start += n;
        taken
    }

    /// Reads the next request's head from what waits and from `conn`, whole within `limit`
    /// of its first byte (which is waited for until `idle` when nothing waits: a quiet
    /// keep-alive connection just ends).
    /// `Ok(None)`: the peer closed (or stayed quiet for `idle`) between requests.
    ///
    /// # Errors
    ///
    /// An [`HttpError`]; the connection cannot be used after one.
    pub fn read_head<C: Conn + ?Sized>(
        &mut self,
        conn: &mut C,
        idle: Deadline,
        limit: std::time::Duration,
    ) -> Result<Option<Head>, HttpError> {
        // What is left moves to the front: a head may take the whole buffer.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == 0 {
            match idle.reader(conn).read(&mut self.buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.end = n,
                Err(err) if is_quiet_end(&err) => return Ok(None),
                Err(err) => return Err(HttpError::Io(err)),
            }
        }
        // The head's time runs from its first byte.
        let deadline = Deadline::after(limit);
        loop {
            if let Some((head, len)) = parse(&self.buf[..self.end])? {
                self.start = len;
                return Ok(Some(head));
            }
            if self.end == self.buf.len() {
                return Err(HttpError::HeadTooLarge);
            }
            match deadline.reader(conn).read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => self.end += n,
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return Err(HttpError::TimedOut(deadline.limit()));
                }
                Err(err) => return Err(HttpError::Io(err)),
            }
        }
    }

    /// Reads a body of exactly `len` bytes (a length the caller bounded) into memory, by
    /// `deadline`.
    ///
    /// # Errors
    ///
    /// If the peer closes first, or the deadline passes.
    pub fn read_body<C: Conn + ?Sized>(
        &mut self,
        conn: &mut C,
        len: usize,
        deadline: Deadline,
    ) -> io::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(self.take(len));
        let mut rest = vec![0; len - body.len()];
        deadline.reader(conn).read_exact(&mut rest)?;
        body.extend_from_slice(&rest);
        Ok(body)
    }
}

/// Whether a read error between requests is just a peer going quiet or away.
fn is_quiet_end(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Parses a head from `bytes` if it is all there: the head and its length.
fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(err) => return Err(HttpError::Malformed(err.to_string())),
    };
    let method = match request.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    let target = request.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let mut head = Head {
        method,
        path: path.to_string(),
        query,
        length: None,
        chunked: false,
        close: request.version != Some(1),
        expect_continue: false,
        agent: String::new(),
        bad_length: false,
        host: None,
        origin: None,
        content_type: None,
    };
    for header in request.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            match parse_length(value) {
                Some(n) if head.length.is_none_or(|old| old == n) => head.length = Some(n),
                _ => head.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let tokens = value.split(',').map(str::trim);
            for token in tokens {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && request.version == Some(0) {
                    head.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("host") {
            head.host = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("user-agent") {
            head.agent = crate::text::cut(value, MAX_AGENT).into_owned();
        }
    }
    Ok(Some((head, len)))
}

/// A `Content-Length`: digits only (no sign, no spaces inside), at most 19 of them.
fn parse_length(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The statuses the page's server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: malformed, or a body that does not match what was offered.
    BadRequest,
    /// 403: not this browser's upload, or denied.
    Forbidden,
    /// 404: nothing but the page is served.
    NotFound,
    /// 405: a method the route does not take.
    MethodNotAllowed,
    /// 409: the file is being received on another connection, or was already.
    Conflict,
    /// 411: a body without a `Content-Length`.
    LengthRequired,
    /// 415: an offer that is not JSON.
    UnsupportedType,
    /// 421: a `Host` that is not how this server's page is reached.
    Misdirected,
    /// 413: a body over its limit.
    TooLarge,
    /// 431: a head over its limits.
    HeadTooLarge,
    /// 500: the server could not store what it received.
    ServerError,
    /// 503: too many uploads at once.
    Busy,
}

impl Status {
    /// The code and its reason phrase.
    pub fn line(self) -> (u16, &'static str) {
        match self {
            Status::Ok => (200, "OK"),
            Status::BadRequest => (400, "Bad Request"),
            Status::Forbidden => (403, "Forbidden"),
            Status::NotFound => (404, "Not Found"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::Conflict => (409, "Conflict"),
            Status::LengthRequired => (411, "Length Required"),
            Status::UnsupportedType => (415, "Unsupported Media Type"),
            Status::Misdirected => (421, "Misdirected Request"),
            Status::TooLarge => (413, "Content Too Large"),
            Status::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Status::ServerError => (500, "Internal Server Error"),
            Status::Busy => (503, "Service Unavailable"),
        }
    }
}

/// A response with a body of known length.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: Status,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Vec<u8>,
    /// Whether the connection ends after it.
    pub close: bool,
}

impl Response {
    /// A JSON response.
    pub fn json(status: Status, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            close: false,
        }
    }

    /// A JSON error: `{"error": why}`.
    pub fn error(status: Status, why: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": why }))
    }

    /// Ends the connection after it.
    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Writes it (without its body for a `HEAD`), with headers that keep the page to itself:
    /// no sniffing, no framing, no referrer, no caching, scripts and styles only its own.
    ///
    /// # Errors
    ///
    /// If the connection fails.
    pub fn write_to<C: Write + ?Sized>(&self, conn: &mut C, head_only: bool) -> io::Result<()> {
        let (code, phrase) = self.status.line();
        let connection = if self.close { "close" } else { "keep-alive" };
        let mut out = format!(
            "HTTP/1.1 {code} {phrase}\r\n\
             Content-Type: {}\r\n\
             Content-Length: {}\r\n\
             Connection: {connection}\r\n\
             Cache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Referrer-Policy: no-referrer\r\n\
             X-Frame-Options: DENY\r\n\
             Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
             style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
             frame-ancestors 'none'; form-action 'none'; base-uri 'none'\r\n\
             \r\n",
            self.content_type,
            self.body.len(),
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        conn.write_all(&out)?;
        conn.flush()
    }
}

/// Tells a client that waits for it (`Expect: 100-continue`) to send its body.
///
/// # Errors
///
/// If the connection fails.
pub fn send_continue<C: Write + ?Sized>(conn: &mut C) -> io::Result<()> {
    conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<(Head, usize)>, HttpError> {
        parse(text.as_bytes())
    }

    #[test]
    fn a_request_is_read_with_the_headers_that_matter() {
        let (h, len) = head(
            "PUT /file/ab/1?from=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\
             User-Agent: Test\u{202e}x\r\n\r\nbody",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.method, Method::Put);
        assert_eq!(h.path, "/file/ab/1");
        assert_eq!(h.query.as_deref(), Some("from=5"));
        assert_eq!(h.length, Some(12));
        assert!(!h.close && !h.chunked && !h.bad_length);
        assert_eq!(h.agent, "Test\u{202e}x");
        assert_eq!(len, "PUT /file/ab/1?from=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nUser-Agent: Test\u{202e}x\r\n\r\n".len());
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().0.close);
    }

    #[test]
    fn lengths_are_strict() {
        for bad in ["-1", "+5", "1 2", "0x10", "", "99999999999999999999"] {
            let text = format!("POST /offer HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(head(&text).unwrap().unwrap().0.bad_length, "{bad}");
        }
        let two = "POST /offer HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(head(two).unwrap().unwrap().0.bad_length);
        let same = "POST /offer HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(head(same).unwrap().unwrap().0.length, Some(5));
    }

    #[test]
    fn too_many_headers_and_garbage_are_refused() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            text.push_str(&format!("X-{i}: y\r\n"));
        }
        text.push_str("\r\n");
        assert!(matches!(head(&text), Err(HttpError::TooManyHeaders)));
        assert!(matches!(
            head("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
    }
}
