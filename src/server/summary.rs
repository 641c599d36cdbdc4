//! What happened on one connection ([`Summary`], ending in an [`End`]), and its log line: the
//! one place that says how a stored, refused, denied or failed upload reads in the log.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::names::{NameProblem, RequestName};
use super::policy::Reason;
use super::trust::Client;
use crate::batch::{BatchProblem, Totals};
use crate::error::Error;
use crate::text;
use crate::wire::FileRequest;

/// How one connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed the connection without sending a request.
    NoRequest,
    /// The name was refused without asking the operator.
    Refused(NameProblem),
    /// The operator (or policy) denied the request.
    Denied,
    /// The client hung up while its request waited for the operator.
    Abandoned,
    /// The file was stored whole under this path.
    Stored(PathBuf),
    /// A batch was stored whole: its top items, under these names.
    Batch(Vec<String>),
    /// A batch was refused whole before anything was created.
    BatchRefused(BatchProblem),
    /// A batch was turned away before its manifest was read whole, for a reason of the
    /// server's (in [`Summary::reason`]): busy, or a client too old.
    TurnedAway,
    /// The exchange failed; nothing was stored.
    Failed(Error),
    /// A browser's connection to the upload page ended after this many requests; each
    /// upload on it was reported on its own.
    Web(u32),
    /// With the page on: the peer sent nothing at all within the hello time (browsers open
    /// a connection ahead of need and may never use it), and it was closed.
    Idle(std::time::Duration),
}

/// What happened on one connection, for the server's log.
#[derive(Debug)]
pub struct Summary {
    /// The connection's number, counted from 1 by the accept loop (0 for a bare session).
    pub connection: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the client is: plain, or secure with its identity.
    pub client: Client,
    /// The request, once one arrived.
    pub request: Option<FileRequest>,
    /// The request's name, once it was read and passed the checks.
    pub name: Option<RequestName>,
    /// File bytes received.
    pub received: u64,
    /// Time from the connection's start to its end, operator's think time included.
    pub elapsed: Duration,
    /// Time spent receiving data, from acceptance to the end.
    pub transfer: Duration,
    /// Why the request was accepted or denied, when no operator answered it.
    pub reason: Option<Reason>,
    /// The SHA-256 of the stored file, computed while receiving, when the server checksums.
    pub sha256: Option<[u8; 32]>,
    /// The operator answered "always": the trusted clients' file the client was added to,
    /// or why it could not be.
    pub trusted_now: Option<Result<PathBuf, String>>,
    /// Whether every file received was checked end to end (BLAKE3, secure mode).
    pub verified: bool,
    /// Bytes an earlier, cut try of this batch had left and the client proved: this
    /// try resumed after them.
    pub resumed: Option<u64>,
    /// Bytes kept for a later try, when this one was cut.
    pub kept: Option<u64>,
    /// With `--checksum` in secure mode: each stored file's BLAKE3, by where it was stored.
    pub blake3: Vec<(PathBuf, [u8; 32])>,
    /// For a batch: what it holds, once its manifest passed the checks.
    pub batch: Option<Totals>,
    /// For a batch that failed midway: the top items published before (they stay).
    pub batch_stored: Vec<String>,
    /// For a batch: how many of its files the policy refused one by one, and why.
    pub refused: Option<(usize, String)>,
    /// How it ended.
    pub end: End,
}

impl Summary {
    /// A summary of connection `connection` from `peer` that has not got anywhere yet.
    pub fn new(peer: SocketAddr, connection: u64) -> Summary {
        Summary {
            connection,
            peer,
            client: Client::Plain,
            request: None,
            name: None,
            received: 0,
            elapsed: Duration::ZERO,
            transfer: Duration::ZERO,
            reason: None,
            sha256: None,
            trusted_now: None,
            verified: false,
            resumed: None,
            kept: None,
            blake3: Vec::new(),
            batch: None,
            batch_stored: Vec::new(),
            refused: None,
            end: End::NoRequest,
        }
    }

    /// Whether the upload was stored.
    pub fn is_stored(&self) -> bool {
        matches!(self.end, End::Stored(_) | End::Batch(_))
    }

    /// Whether the connection failed (rather than ending in a verdict).
    pub fn is_failed(&self) -> bool {
        matches!(self.end, End::Failed(_))
    }

    /// What the connection came to, in one word: `stored`, `refused`, `denied`, `dropped`,
    /// `failed`, `no request`, `page` (a browser's, its uploads reported on their own) or
    /// `idle` (nothing sent).
    pub fn verdict(&self) -> &'static str {
        match self.end {
            End::Stored(_) | End::Batch(_) => "stored",
            End::Refused(_) | End::BatchRefused(_) => "refused",
            End::Denied | End::TurnedAway => "denied",
            End::Abandoned => "dropped",
            End::Failed(_) => "failed",
            End::NoRequest => "no request",
            End::Web(_) => "page",
            End::Idle(_) => "idle",
        }
    }

    /// The summary as one JSON object (`fup-server --json`): `connection`, `peer`, `verdict`,
    /// and as far as they are known `name` (as sent, decoded; `cp949` when it was), `size`,
    /// `received`, `stored` (the path), `seconds` and `rate` (bytes per second) of the
    /// transfer, `reason`, `sha256`, `error`; for a batch `batch` (files, folders, bytes) and
    /// `refused` (files, reason) when its policy refused some; for a browser's upload
    /// `browser` (https, and its user agent, defused).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut object = json!({
            "connection": self.connection,
            "peer": self.peer.to_string(),
            "secure": self.client.is_secure(),
            "verdict": self.verdict(),
        });
        let mut set = |key: &str, value: serde_json::Value| {
            object[key] = value;
        };
        if let Some(req) = &self.request {
            match &self.name {
                Some(name) => {
                    set("name", json!(text::defuse(&name.sent)));
                    if name.cp949 {
                        set("cp949", json!(true));
                    }
                }
                None => set("name", json!(text::from_peer_bytes(&req.name))),
            }
            set("size", json!(req.size));
            set("received", json!(self.received));
        }
        match &self.end {
            End::Stored(path) => {
                set("stored", json!(path.to_string_lossy()));
                let secs = self.transfer.as_secs_f64();
                set("seconds", json!(secs));
                if secs > 0.0 {
                    set("rate", json!((self.received as f64 / secs).round()));
                }
            }
            End::Refused(problem) => set("error", json!(problem.to_string())),
            End::Failed(err) => set("error", json!(err.to_string())),
            _ => {}
        }
        if let Some(reason) = &self.reason {
            set("reason", json!(reason.to_string()));
        }
        if let Some(sha256) = self.sha256.filter(|_| self.is_stored()) {
            set("sha256", json!(text::hex(&sha256)));
        }
        if let Some(totals) = &self.batch {
            set(
                "batch",
                json!({"files": totals.files, "folders": totals.dirs, "bytes": totals.bytes}),
            );
            set("received", json!(self.received));
        }
        if let Some((count, why)) = &self.refused {
            set("refused", json!({"files": count, "reason": why}));
        }
        match &self.end {
            End::Batch(names) => set("stored", json!(names)),
            End::BatchRefused(problem) => set("error", json!(problem.to_string())),
            End::Failed(_) if !self.batch_stored.is_empty() => {
                set("stored", json!(self.batch_stored));
            }
            _ => {}
        }
        if let Some(id) = self.client.id() {
            set("client_id", json!(id.to_string()));
            set("verified", json!(self.verified));
        }
        match (&self.end, &self.blake3[..]) {
            (_, []) => {}
            (End::Stored(_), [(_, digest)]) => set("blake3", json!(text::hex(digest))),
            _ => {
                let digests: serde_json::Map<String, serde_json::Value> = self
                    .blake3
                    .iter()
                    .map(|(path, digest)| {
                        (
                            path.to_string_lossy().into_owned(),
                            json!(text::hex(digest)),
                        )
                    })
                    .collect();
                set("blake3", serde_json::Value::Object(digests));
            }
        }
        if let Some(resumed) = self.resumed {
            set("resumed", json!(resumed));
        }
        if let Some(kept) = self.kept {
            set("kept", json!(kept));
        }
        if let Some(label) = self.client.label() {
            set("client_label", json!(label));
        }
        if let Client::Browser { https, agent } = &self.client {
            set(
                "browser",
                json!({"https": https, "agent": text::defuse(agent)}),
            );
        }
        match &self.trusted_now {
            Some(Ok(file)) => set("trusted_now", json!(file.to_string_lossy())),
            Some(Err(err)) => set("trust_error", json!(err)),
            None => {}
        }
        object
    }

    /// The stored file's digest in `sha256sum`'s format (`HEX  PATH`), so that
    /// `sha256sum -c` can check it; for stored uploads that were hashed.
    pub fn checksum_line(&self) -> Option<String> {
        if self.is_stored() && !self.blake3.is_empty() {
            // b3sum's format is sha256sum's.
            let lines: Vec<String> = self
                .blake3
                .iter()
                .map(|(path, digest)| {
                    format!(
                        "{}  {}",
                        text::hex(digest),
                        text::visible(&path.to_string_lossy())
                    )
                })
                .collect();
            return Some(lines.join("\n"));
        }
        match (&self.end, self.sha256) {
            (End::Stored(path), Some(sha256)) => Some(format!(
                "{}  {}",
                text::hex(&sha256),
                text::visible(&path.to_string_lossy())
            )),
            _ => None,
        }
    }
}

impl Summary {
    /// `ADDR, plain` or `ADDR, secure, client ID "label"`, and `, verified` when every file
    /// was checked end to end.
    fn who(&self) -> String {
        let verified = if self.verified { ", verified" } else { "" };
        let resumed = match (self.resumed, self.size()) {
            (Some(resumed), Some(size)) => {
                format!(", resumed at {}", text::percent(resumed, size))
            }
            _ => String::new(),
        };
        format!("{}, {}{verified}{resumed}", self.peer, self.client)
    }

    /// Bytes announced: the request's, or the batch's.
    fn size(&self) -> Option<u64> {
        self.batch
            .as_ref()
            .map(|totals| totals.bytes)
            .or(self.request.as_ref().map(|req| req.size))
    }

    /// `; kept 512 MiB (50%) to resume` after a cut that left a partial.
    fn kept(&self) -> String {
        match (self.kept, self.size()) {
            (Some(kept), Some(size)) => format!(
                "; kept {} ({}) to resume",
                text::bytes(kept),
                text::percent(kept, size)
            ),
            _ => String::new(),
        }
    }

    /// The log line of a batch, if this was one.
    fn batch_line(&self) -> Option<String> {
        let peer = self.who();
        let names = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("\"{}\"", text::escape(n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let End::BatchRefused(problem) = &self.end {
            return Some(format!("refused batch from {peer}: {problem}"));
        }
        if let (End::TurnedAway, Some(reason)) = (&self.end, &self.reason) {
            return Some(format!("denied batch from {peer}: {reason}"));
        }
        let totals = self.batch.as_ref()?;
        let what = format!("batch of {totals} ({} bytes)", totals.bytes);
        let reason = |f: &str| match &self.reason {
            Some(reason) => format!(" ({f}{reason})"),
            None => String::new(),
        };
        // Files the policy refused one by one: the rest went on.
        let (part, refused) = match &self.refused {
            Some((count, why)) => (
                format!("{} of a ", totals.files.saturating_sub(*count)),
                format!(" ({count} refused: {why})"),
            ),
            None => (String::new(), String::new()),
        };
        Some(match &self.end {
            End::Batch(stored) => format!(
                "stored {part}{what} as {}{refused} in {:.2} s ({}) from {peer}{}",
                names(stored),
                self.transfer.as_secs_f64(),
                text::rate(self.received, self.transfer),
                reason("accepted: "),
            ),
            End::Denied => match &self.reason {
                Some(why) => format!("denied {what} from {peer}: {why}{refused}"),
                None => format!("denied {what} from {peer}{refused}"),
            },
            End::Abandoned => {
                format!("dropped {what} from {peer}: client hung up while waiting")
            }
            End::Failed(err) => {
                let kept = match self.batch_stored.is_empty() {
                    true => "nothing kept".to_string(),
                    false => format!("kept {}", names(&self.batch_stored)),
                };
                format!(
                    "failed {what} after {} bytes in {:.2} s from {peer}: {err}; {kept}{}",
                    self.received,
                    self.transfer.as_secs_f64(),
                    self.kept(),
                )
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Summary {
    /// One log line, with the name escaped: `stored "a.txt" 3 B (3 bytes) in 0.00 s (…/s) from …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.batch_line() {
            return f.write_str(&line);
        }
        let Some(req) = &self.request else {
            return match &self.end {
                End::Failed(err) if matches!(self.client, Client::Browser { .. }) => {
                    write!(f, "{}, {}: {err}", self.peer, self.client)
                }
                End::Failed(err) => write!(
                    f,
                    "{}: connection failed before a request: {err}",
                    self.peer
                ),
                End::Idle(limit) => write!(
                    f,
                    "{}: sent nothing within {} s; closed",
                    self.peer,
                    limit.as_secs_f64()
                ),
                End::Web(requests) => {
                    write!(f, "{}, {}: {requests} request(s)", self.peer, self.client)
                }
                _ => write!(f, "{}: connection closed without a request", self.peer),
            };
        };
        // The name as sent: decoded when it passed the checks, its raw bytes escaped if not.
        let (name, sent) = match &self.name {
            Some(name) if name.cp949 => (
                format!("{}\" (decoded from CP949)", text::from_peer(&name.sent)),
                name.sent.as_str(),
            ),
            Some(name) => (
                format!("{}\"", text::from_peer(&name.sent)),
                name.sent.as_str(),
            ),
            None => (format!("{}\"", text::from_peer_bytes(&req.name)), ""),
        };
        let name = format!("\"{name}");
        let size = format!("{} ({} bytes)", text::bytes(req.size), req.size);
        let peer = self.who();
        match &self.end {
            End::Stored(path) => {
                let stored_as = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                write!(f, "stored {name}")?;
                if stored_as != sent {
                    write!(f, " as \"{}\"", text::escape(&stored_as))?;
                }
                write!(
                    f,
                    " {size} in {:.2} s ({}) from {peer}",
                    self.transfer.as_secs_f64(),
                    text::rate(self.received, self.transfer),
                )?;
                match (&self.reason, &self.trusted_now) {
                    (Some(reason), _) => write!(f, " (accepted: {reason})"),
                    (None, Some(Ok(file))) => write!(
                        f,
                        " (accepted always: client added to {})",
                        text::escape(&file.to_string_lossy())
                    ),
                    (None, Some(Err(err))) => {
                        write!(
                            f,
                            " (accepted; could not add the client to the trusted: {err})"
                        )
                    }
                    (None, None) => Ok(()),
                }
            }
            End::Refused(problem) => write!(f, "refused {name} {size} from {peer}: {problem}"),
            End::Denied | End::TurnedAway => {
                write!(f, "denied {name} {size} from {peer}")?;
                match &self.reason {
                    Some(reason) => write!(f, ": {reason}"),
                    None => Ok(()),
                }
            }
            End::Abandoned => write!(
                f,
                "dropped {name} {size} from {peer}: client hung up while waiting"
            ),
            End::Failed(err) => write!(
                f,
                "failed {name} after {} of {} bytes in {:.2} s from {peer}: {err}{}",
                self.received,
                req.size,
                self.transfer.as_secs_f64(),
                self.kept(),
            ),
            End::NoRequest => write!(f, "{}: connection closed without a request", self.peer),
            End::Web(requests) => write!(f, "{}: {requests} page request(s)", self.peer),
            End::Idle(_) => Ok(()),
            End::Batch(_) | End::BatchRefused(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(end: End) -> Summary {
        let mut summary = Summary::new("127.0.0.1:4000".parse().unwrap(), 3);
        summary.request = Some(FileRequest {
            size: 2048,
            name: b"a\x1b.txt".to_vec(),
        });
        summary.received = 1024;
        summary.transfer = Duration::from_secs(2);
        summary.end = end;
        summary
    }

    #[test]
    fn every_end_has_its_line() {
        let from = "from 127.0.0.1:4000, plain";
        let cases = [
            (
                summary(End::Stored("/in/a (1).txt".into())),
                format!(
                    "stored \"a\\u{{1b}}.txt\" as \"a (1).txt\" 2.0 KiB (2048 bytes) in 2.00 s (512 B/s) {from}"
                ),
            ),
            (
                summary(End::Refused(NameProblem::Control)),
                format!(
                    "refused \"a\\u{{1b}}.txt\" 2.0 KiB (2048 bytes) {from}: name contains a control character"
                ),
            ),
            (
                summary(End::Denied),
                format!("denied \"a\\u{{1b}}.txt\" 2.0 KiB (2048 bytes) {from}"),
            ),
            (
                summary(End::Abandoned),
                format!(
                    "dropped \"a\\u{{1b}}.txt\" 2.0 KiB (2048 bytes) {from}: client hung up while waiting"
                ),
            ),
            (
                summary(End::Failed(Error::Truncated)),
                format!(
                    "failed \"a\\u{{1b}}.txt\" after 1024 of 2048 bytes in 2.00 s {from}: connection closed in the middle of a message"
                ),
            ),
        ];
        for (summary, line) in cases {
            assert_eq!(summary.to_string(), line);
        }
        let mut denied = summary(End::Denied);
        denied.reason = Some(Reason::MaxSize(1024));
        assert!(
            denied
                .to_string()
                .ends_with(": larger than --max-size 1.0 KiB"),
            "{denied}"
        );
        let mut none = Summary::new("127.0.0.1:4000".parse().unwrap(), 0);
        assert_eq!(
            none.to_string(),
            "127.0.0.1:4000: connection closed without a request"
        );
        none.end = End::Failed(Error::Truncated);
        assert_eq!(
            none.to_string(),
            "127.0.0.1:4000: connection failed before a request: connection closed in the middle of a message"
        );
    }

    #[test]
    fn names_show_as_sent_and_as_stored() {
        let mut path = summary(End::Stored("/in/f.bin".into()));
        path.request.as_mut().unwrap().name = br"C:\u\f.bin".to_vec();
        path.name = Some(RequestName {
            sent: r"C:\u\f.bin".into(),
            stored: "f.bin".into(),
            cp949: false,
        });
        assert!(
            path.to_string()
                .starts_with(r#"stored "C:\\u\\f.bin" as "f.bin" 2.0 KiB"#),
            "{path}"
        );
        let mut korean = summary(End::Stored("/in/사진 (1).jpg".into()));
        korean.request.as_mut().unwrap().name = b"\xbb\xe7\xc1\xf8.jpg".to_vec();
        korean.name = Some(RequestName {
            sent: "사진.jpg".into(),
            stored: "사진.jpg".into(),
            cp949: true,
        });
        assert!(
            korean
                .to_string()
                .starts_with(r#"stored "사진.jpg" (decoded from CP949) as "사진 (1).jpg" 2.0 KiB"#),
            "{korean}"
        );
        korean.end = End::Denied;
        assert!(
            korean
                .to_string()
                .starts_with(r#"denied "사진.jpg" (decoded from CP949) 2.0 KiB"#),
            "{korean}"
        );
    }

    #[test]
    fn json_objects_say_what_the_log_says() {
        let mut stored = summary(End::Stored("/in/a.txt".into()));
        stored.name = Some(RequestName {
            sent: "a.txt".into(),
            stored: "a.txt".into(),
            cp949: false,
        });
        stored.sha256 = Some([0xab; 32]);
        stored.reason = Some(Reason::Yes);
        assert_eq!(
            stored.to_json(),
            serde_json::json!({
                "connection": 3, "peer": "127.0.0.1:4000", "secure": false, "verdict": "stored",
                "name": "a.txt", "size": 2048, "received": 1024, "stored": "/in/a.txt",
                "seconds": 2.0, "rate": 512.0, "reason": "--yes", "sha256": "ab".repeat(32),
            })
        );
        let refused = summary(End::Refused(NameProblem::Control));
        assert_eq!(
            refused.to_json(),
            serde_json::json!({
                "connection": 3, "peer": "127.0.0.1:4000", "secure": false, "verdict": "refused",
                "name": "a\\u{1b}.txt", "size": 2048, "received": 1024,
                "error": "name contains a control character",
            })
        );
        let failed = summary(End::Failed(Error::Truncated));
        assert_eq!(
            failed.to_json()["error"],
            "connection closed in the middle of a message"
        );
        let none = Summary::new("127.0.0.1:4000".parse().unwrap(), 9);
        assert_eq!(
            none.to_json(),
            serde_json::json!({"connection": 9, "peer": "127.0.0.1:4000", "secure": false, "verdict": "no request"})
        );
    }

    #[test]
    fn secure_uploads_say_so_with_the_clients_identity() {
        let id = crate::secure::Identity::of_public_key(b"k");
        let mut stored = summary(End::Stored("/in/a.txt".into()));
        stored.client = Client::Secure {
            id,
            trusted: Some(Some("lab".into())),
        };
        stored.reason = Some(Reason::TrustedClient(Some("lab".into())));
        let line = stored.to_string();
        assert!(
            line.ends_with(&format!(
                "from 127.0.0.1:4000, secure, client {id} \"lab\" (accepted: trusted client \"lab\")"
            )),
            "{line}"
        );
        let json = stored.to_json();
        assert_eq!(json["secure"], true);
        assert_eq!(json["client_id"], id.to_string());
        assert_eq!(json["client_label"], "lab");
        // The operator answered "always".
        let mut always = summary(End::Stored("/in/a.txt".into()));
        always.client = Client::Secure { id, trusted: None };
        always.trusted_now = Some(Ok("/cfg/trusted_clients".into()));
        assert!(
            always
                .to_string()
                .ends_with("(accepted always: client added to /cfg/trusted_clients)"),
            "{always}"
        );
        assert_eq!(always.to_json()["trusted_now"], "/cfg/trusted_clients");
    }

    #[test]
    fn resumed_and_kept_uploads_say_so() {
        let mut stored = summary(End::Stored("/in/a.txt".into()));
        stored.resumed = Some(1024);
        assert!(
            stored
                .to_string()
                .ends_with("from 127.0.0.1:4000, plain, resumed at 50%"),
            "{stored}"
        );
        assert_eq!(stored.to_json()["resumed"], 1024);
        let mut failed = summary(End::Failed(Error::Closed(crate::wire::MsgType::Data)));
        failed.kept = Some(1536);
        assert!(
            failed
                .to_string()
                .ends_with("; kept 1.5 KiB (75%) to resume"),
            "{failed}"
        );
        assert_eq!(failed.to_json()["kept"], 1536);
        let mut blake3 = summary(End::Stored("/in/a.txt".into()));
        blake3.blake3 = vec![
            ("/in/a.txt".into(), [0xab; 32]),
            ("/in/d/b".into(), [1; 32]),
        ];
        assert_eq!(
            blake3.checksum_line().unwrap(),
            format!(
                "{}  /in/a.txt\n{}  /in/d/b",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
    }

    #[test]
    fn checksum_line_only_for_hashed_stored_files() {
        let mut stored = summary(End::Stored("/in/a.txt".into()));
        assert_eq!(stored.checksum_line(), None);
        stored.sha256 = Some([0xab; 32]);
        assert_eq!(
            stored.checksum_line().unwrap(),
            format!("{}  /in/a.txt", "ab".repeat(32))
        );
        let mut failed = summary(End::Failed(Error::Truncated));
        failed.sha256 = Some([0; 32]);
        assert_eq!(failed.checksum_line(), None);
    }
}
