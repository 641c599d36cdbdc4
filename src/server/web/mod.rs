//! The upload page on fup's own port, for any device with a browser: told apart from FUP by
//! a connection's first bytes ([`kind_of`]), served over plain HTTP or HTTPS ([`Web`]), and
//! held to what fup-client is held to: one question for the whole selection through the same
//! policy and operator, the same name rule, the same store (nothing partial ever visible,
//! both names kept on a clash), the same partials for a cut file, and limits on everything a
//! stranger sends before the operator decides.
//!
//! The page ([`PAGE`]) speaks four requests: `GET /` (the page), `POST /offer` (the
//! selection's names and sizes, answered once decided, with a token and, for each file,
//! where to resume), `PUT /file/TOKEN/INDEX?from=N` (one file's bytes from `N` on, the raw
//! body, its length exact), `GET /file/TOKEN/INDEX` (how much a cut try of it left, to
//! send the rest) and nothing else.

pub mod http;
pub mod offer;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use self::http::{Buffered, Head, Method, Response, Status};
use self::offer::Offers;
use super::session::Session;
use super::summary::End;
use super::trust::Client;
use crate::error::{Error, Result};
use crate::net::{Conn, Deadline, Prefixed};
use crate::secure::stream::accept_browser;
use crate::secure::web_cert::WebCert;

/// The page: one self-contained HTML file (its script and style inside, nothing fetched from
/// anywhere else).
pub const PAGE: &str = include_str!("page.html");

/// How long a browser's connection may stay quiet between its requests.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// What a connection's first bytes say it is, besides FUP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An HTTP request line: a browser.
    Http,
    /// A TLS ClientHello: a browser over HTTPS (fup's own TLS starts after its probe).
    Https,
}

/// What `first` (a connection's first 16 bytes) is, if not FUP. No FUP message can look like
/// either: an HTTP request line puts text where a FUP header's type is (1 to 4, then three
/// zero bytes), and a ClientHello puts 1 in that type's second byte.
///
/// # Example
///
/// ```
/// use fup::server::web::{Kind, kind_of};
///
/// assert_eq!(kind_of(b"GET / HTTP/1.1\r\n"), Some(Kind::Http));
/// assert_eq!(kind_of(&[0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3, 0, 0, 0, 0, 0]), Some(Kind::Https));
/// assert_eq!(kind_of(&fup::secure::probe::PROBE), None);
/// ```
pub fn kind_of(first: &[u8]) -> Option<Kind> {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PUT ",
        b"OPTIONS ",
        b"DELETE ",
        b"PATCH ",
        b"TRACE ",
        b"CONNECT ",
    ];
    if METHODS.iter().any(|method| first.starts_with(method)) {
        return Some(Kind::Http);
    }
    // A TLS handshake record (22), version 3.x, whose first message is a ClientHello (1).
    match first {
        [0x16, 0x03, _, _, _, 0x01, ..] => Some(Kind::Https),
        _ => None,
    }
}

/// The upload page: served on plain HTTP, and on HTTPS when it has a certificate.
#[derive(Debug, Default)]
pub struct Web {
    tls: Option<Arc<ServerConfig>>,
    fingerprint: Option<String>,
    offers: Offers,
}

impl Web {
    /// The page over plain HTTP only (a ClientHello is closed at once).
    pub fn new() -> Web {
        Web::default()
    }

    /// The page over plain HTTP and over HTTPS with `cert`.
    ///
    /// # Errors
    ///
    /// If rustls refuses the certificate.
    pub fn with_https(cert: &WebCert) -> std::result::Result<Web, crate::secure::tls::ConfigError> {
        Ok(Web {
            tls: Some(cert.server_config()?),
            fingerprint: Some(cert.fingerprint()),
            offers: Offers::default(),
        })
    }

    /// The HTTPS certificate's fingerprint, when the page has HTTPS.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Accepted offers kept now (for tests and status).
    pub fn open_offers(&self) -> usize {
        self.offers.len()
    }

    /// The page as served: with its certificate's fingerprint over HTTPS.
    fn page(&self, https: bool) -> Vec<u8> {
        let fingerprint = match (https, &self.fingerprint) {
            (true, Some(fingerprint)) => fingerprint.as_str(),
            _ => "",
        };
        PAGE.replace("{{FINGERPRINT}}", fingerprint).into_bytes()
    }
}

impl Session<'_> {
    /// Serves a browser whose connection began with `first` (already read), over HTTP or
    /// HTTPS, until it closes, goes quiet, or breaks a rule.
    pub(super) fn web<S: Conn>(
        &mut self,
        web: &Web,
        stream: &mut S,
        first: &[u8],
        kind: Kind,
        hello: Deadline,
    ) -> Result<End> {
        self.summary.client = Client::Browser {
            https: kind == Kind::Https,
            agent: String::new(),
        };
        match kind {
            Kind::Http => self.web_requests(web, stream, first, false, hello),
            Kind::Https => {
                let Some(config) = web.tls.clone() else {
                    return Err(http::HttpError::NoHttps.into());
                };
                let mut tls = accept_browser(Prefixed::new(first, &mut *stream), config, hello)
                    .map_err(Error::Handshake)?;
                let end = self.web_requests(web, &mut tls, &[], true, hello);
                tls.close();
                end
            }
        }
    }

    /// The requests of one connection, one after the other (keep-alive).
    fn web_requests<C: Conn>(
        &mut self,
        web: &Web,
        conn: &mut C,
        first: &[u8],
        https: bool,
        hello: Deadline,
    ) -> Result<End> {
        let mut buf = Buffered::new(first);
        let mut served = 0;
        // The first request's head by the first deadline; the next ones' within the hello
        // time of their first byte, after at most a keep-alive's quiet.
        let mut idle = hello;
        let mut limit = hello.time_left().unwrap_or_default();
        loop {
            let head = match buf.read_head(conn, idle, limit) {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(End::Web(served)),
                Err(err) => {
                    if let Some(status) = err.status() {
                        let answer = Response::error(status, &err.to_string()).closing();
                        if answer.write_to(conn, false).is_ok() {
                            self.linger(conn);
                        }
                    }
                    return Err(err.into());
                }
            };
            served += 1;
            self.summary.client = Client::Browser {
                https,
                agent: head.agent.clone(),
            };
            let (response, consumed) = self.web_route(web, conn, &mut buf, &head, https);
            let close = head.close || response.close || !consumed;
            let response = if close { response.closing() } else { response };
            response.write_to(conn, head.method == Method::Head)?;
            if close {
                // A body left unread is drained (bounded) so that the answer is read
                // before the connection goes.
                if consumed {
                    let _ = conn.shutdown_write();
                } else {
                    self.linger(conn);
                }
                return Ok(End::Web(served));
            }
            idle = Deadline::after(KEEP_ALIVE.min(self.server.timeout));
            limit = self.server.budget.hello_timeout.min(self.server.timeout);
        }
    }

    /// Answers one request; says too whether its body was read whole (the connection can
    /// go on only then).
    fn web_route<C: Conn>(
        &mut self,
        web: &Web,
        conn: &mut C,
        buf: &mut Buffered,
        head: &Head,
        https: bool,
    ) -> (Response, bool) {
        let no_body = head.length.unwrap_or(0) == 0 && !head.chunked;
        if head.bad_length {
            return (
                Response::error(
                    Status::BadRequest,
                    "a Content-Length that is not one number",
                ),
                false,
            );
        }
        if head.chunked {
            return (
                Response::error(Status::LengthRequired, "send a Content-Length, not chunks"),
                false,
            );
        }
        if let Err(status) = head.is_ours() {
            let why = match status {
                Status::Misdirected => {
                    "this page answers to its address, localhost or a .local name, not to another site's name"
                }
                _ => "a request from another site's page",
            };
            return (Response::error(status, why), no_body);
        }
        match (head.method, head.path.as_str()) {
            (Method::Get | Method::Head, "/") => (
                Response {
                    status: Status::Ok,
                    content_type: "text/html; charset=utf-8",
                    body: web.page(https),
                    close: false,
                },
                no_body,
            ),
            (Method::Post, "/offer") => self.web_offer(web, conn, buf, head, https),
            (Method::Get | Method::Head, path) if path.starts_with("/file/") => {
                (self.web_file_status(web, &path["/file/".len()..]), no_body)
            }
            (Method::Put, path) if path.starts_with("/file/") => {
                self.web_file(web, conn, buf, head, &path["/file/".len()..])
            }
            (_, "/" | "/offer") => (
                Response::error(Status::MethodNotAllowed, "not a method this page takes"),
                no_body,
            ),
            _ => (
                Response::error(Status::NotFound, "nothing here but the page"),
                no_body,
            ),
        }
    }
}
