//! The whole `fup-client` command as a library call: [`run`] takes a [`Plan`] (the command
//! line lowered: what, where, how), checks what it can before connecting, reaches the server
//! (the probe, a pinned identity, or plain), sends everything as one batch (secure) or file
//! by file (plain; `-j` at once), connects again after a cut (`--retry`, resuming), and tells
//! a sink every [`Event`] as it happens: one [`FileResult`] per file as it ends, and a
//! [`Report`] at the end.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::batch::{BatchEvent, BatchOutcome, Resumed, send_batch};
use super::{DEFAULT_CHUNK_SIZE, Delivery, Options, auto_chunk_size, upload_file};
use crate::batch::frame::{Code, ItemDone, Refused};
use crate::batch::walk::{
    FileId, Found, SkipReason, Unsendable, Unusable, WalkError, Walked, usable, walk,
};
use crate::batch::{Entry, Kind, Limits, Totals, check};
use crate::error::Error;
use crate::secure::dial::{DialError, Dialer, FirstContact, Link, Mode, Note};
use crate::secure::files::HostPort;
use crate::secure::{Identity, Keys, pair, probe};
use crate::text;
use crate::wire::ResponseByte;

/// Standard input, read to its end into a temporary file (the protocol says a size before
/// the data), and the name it goes under.
#[derive(Debug)]
pub struct Spooled {
    /// The name (`--name`).
    pub name: String,
    /// Where its bytes are.
    pub file: tempfile::NamedTempFile,
}

/// A first contact proven by a pairing code (see [`pair`](crate::secure::pair)).
#[derive(Clone, Debug)]
pub struct PairPlan {
    /// The code the server's operator gave.
    pub code: pair::Code,
    /// What this client is called in the server's trusted clients.
    pub label: String,
}

/// What one run of the command sends, where, and how.
#[derive(Debug)]
pub struct Plan {
    /// The server.
    pub host: HostPort,
    /// Secure, plain, or whichever the server offers.
    pub mode: Mode,
    /// The identity the server must show (`--pin`).
    pub pin: Option<Identity>,
    /// Where servers' identities are pinned.
    pub known_hosts: PathBuf,
    /// Files and folders, in order; `-` is standard input ([`Plan::stdin`]).
    pub paths: Vec<PathBuf>,
    /// Standard input, when `-` is among the paths.
    pub stdin: Option<Spooled>,
    /// Bytes per data message, when told (else the default, grown for huge plain files).
    pub chunk_size: Option<u32>,
    /// Time to connect, for each write, and for each result.
    pub timeout: Duration,
    /// Time for the server's operator to answer.
    pub answer_timeout: Duration,
    /// Hash plain uploads with SHA-256 (secure ones always have their BLAKE3).
    pub checksum: bool,
    /// A plain server's response convention, when told.
    pub accept_byte: Option<ResponseByte>,
    /// Plain files sent at once, each over a connection of its own.
    pub parallel: usize,
    /// Connections made again after a cut (secure, resuming), or while a server is down.
    pub retry: u32,
    /// A pairing code to prove the first contact with (the dialer then pins nothing before
    /// the proof, and the server trusts this client after it).
    pub pair: Option<PairPlan>,
}

/// How a file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The server stored it.
    Stored,
    /// The server (its operator or policy) did not take it.
    Denied,
    /// Taken, but not stored in the end (the server failed, or the connection did).
    Failed,
    /// Inside a folder and not sent: a symlink, a special file, a name the server refuses.
    Skipped,
    /// Not sent: it cannot be read, or cannot be sent to this server.
    Error,
}

impl Verdict {
    /// Its name for programs: `stored`, `denied`, `failed`, `skipped`, `error`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Stored => "stored",
            Verdict::Denied => "denied",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
            Verdict::Error => "error",
        }
    }
}

/// Why a file ended as it did, for programs (`code` in `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// What the server said: stored, denied, too large, no space…
    Server(Code),
    /// It cannot be read here.
    Unreadable,
    /// Not a file or a folder: a FIFO, a socket, a device.
    Special,
    /// A symbolic link inside a folder: never followed.
    Symlink,
    /// Its name cannot be sent, or the server's name rule would refuse it.
    Name,
    /// A folder, which a plain server cannot take.
    Directory,
    /// Past a limit on what one upload may hold.
    Limit,
    /// It changed while it was sent.
    Changed,
    /// The server could not be reached, or the connection was lost.
    Connection,
    /// The server's identity is not the one pinned, was not trusted, or cannot be checked.
    Identity,
    /// `--secure`, and the server offers plain mode only.
    NotSecure,
    /// The server speaks an older secure mode.
    OldServer,
    /// The server broke the protocol.
    Protocol,
}

impl Cause {
    /// Its name for programs: a [`Code`]'s name (`stored`, `too-large`…), or `unreadable`,
    /// `special`, `symlink`, `name`, `directory`, `limit`, `changed`, `connection`,
    /// `identity`, `not-secure`, `old-server`, `protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Server(code) => code.name(),
            Cause::Unreadable => "unreadable",
            Cause::Special => "special",
            Cause::Symlink => "symlink",
            Cause::Name => "name",
            Cause::Directory => "directory",
            Cause::Limit => "limit",
            Cause::Changed => "changed",
            Cause::Connection => "connection",
            Cause::Identity => "identity",
            Cause::NotSecure => "not-secure",
            Cause::OldServer => "old-server",
            Cause::Protocol => "protocol",
        }
    }
}

impl From<&Unsendable> for Cause {
    fn from(why: &Unsendable) -> Cause {
        match why {
            Unsendable::Unreadable(_) => Cause::Unreadable,
            Unsendable::Special(_) => Cause::Special,
            Unsendable::NoName | Unsendable::Name(_) => Cause::Name,
        }
    }
}

impl From<&SkipReason> for Cause {
    fn from(why: &SkipReason) -> Cause {
        match why {
            SkipReason::Symlink => Cause::Symlink,
            SkipReason::Special(_) => Cause::Special,
            SkipReason::Name(_) => Cause::Name,
            SkipReason::Unreadable(_) => Cause::Unreadable,
        }
    }
}

/// A file's digest, as it was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// The BLAKE3 secure mode checked end to end.
    Blake3([u8; 32]),
    /// The SHA-256 of what was sent to a plain server (`--checksum`).
    Sha256([u8; 32]),
}

/// What became of one file: every argument and every file inside a folder has one.
#[derive(Clone, Debug, PartialEq)]
pub struct FileResult {
    /// Where it is here: as given, or found inside a folder; `-` for standard input.
    pub file: PathBuf,
    /// What it is called at the server's end, before any renaming (`photos/a.jpg`).
    pub name: String,
    /// How it ended.
    pub verdict: Verdict,
    /// Why, for programs.
    pub code: Cause,
    /// Why, for people (the server's words defused), when there is more to say.
    pub reason: Option<String>,
    /// Where the server stored it (`photos (1)/a.jpg`), when it did.
    pub stored_as: Option<String>,
    /// Its size, when known.
    pub size: Option<u64>,
    /// Time its bytes took on the way (from the server's acceptance for a file alone).
    pub elapsed: Option<Duration>,
    /// Bytes of it that moved in this run (for the rate).
    pub moved: u64,
    /// What the server had of it from a try that was cut: not sent again.
    pub resumed: u64,
    /// Its digest, when stored and hashed (a BLAKE3 was checked end to end by the server).
    pub digest: Option<Digest>,
    /// Whether it went (or would have gone) in secure mode.
    pub secure: bool,
}

impl FileResult {
    /// A file not sent, for `code` and `reason`.
    fn unsent(
        file: &Path,
        name: &str,
        verdict: Verdict,
        code: Cause,
        reason: String,
    ) -> FileResult {
        FileResult {
            file: file.to_path_buf(),
            name: name.to_string(),
            verdict,
            code,
            reason: Some(reason),
            stored_as: None,
            size: None,
            elapsed: None,
            moved: 0,
            resumed: 0,
            digest: None,
            secure: false,
        }
    }
}

/// What happens, as it happens.
#[derive(Clone, Debug)]
pub enum Event {
    /// One file ended.
    File(FileResult),
    /// One cause ended these files at once (a batch denied whole, a connection lost): to be
    /// said once to people, with how many files it took.
    Together {
        /// How they ended.
        verdict: Verdict,
        /// Why, for programs.
        code: Cause,
        /// Why, for people.
        reason: String,
        /// What they hold, for a batch denied whole.
        totals: Option<Totals>,
        /// Each of them.
        files: Vec<FileResult>,
    },
    /// What the dialer did that the user should hear of.
    Note(Note),
    /// Sending starts: what to call it, how many bytes, how many files, and how.
    Starting {
        /// A name (one file's) or what a batch holds.
        label: String,
        /// Bytes in all.
        bytes: u64,
        /// Files in all.
        files: usize,
        /// Whether it goes in secure mode (a cut is kept for a resume).
        secure: bool,
    },
    /// Waiting for the server to accept (first, or again after a reconnection).
    Waiting,
    /// The server accepted; this much of it was there already (from a cut try).
    Accepted {
        /// Bytes there already.
        already: u64,
    },
    /// The server resumes a cut try.
    Resumed {
        /// How.
        resumed: Resumed,
        /// Bytes of the whole batch.
        total: u64,
    },
    /// At the server so far: bytes (from earlier tries too), and files whole.
    Progress {
        /// Bytes.
        bytes: u64,
        /// Files.
        files: usize,
    },
    /// The connection broke (or the server could not be reached): trying again after `wait`.
    Retrying {
        /// What happened.
        why: String,
        /// The pause before the next try.
        wait: Duration,
        /// Which try comes, from 1.
        attempt: u32,
        /// Of how many.
        of: u32,
    },
    /// A batch ended: what it held, the time from acceptance, the bytes that moved and those
    /// there before.
    BatchEnd {
        /// What it held.
        totals: Totals,
        /// From the server's acceptance.
        elapsed: Duration,
        /// Bytes moved in this run.
        moved: u64,
        /// Bytes there from cut tries.
        resumed: u64,
    },
}

/// How the command went, in counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files stored.
    pub stored: usize,
    /// Files denied.
    pub denied: usize,
    /// Files that failed.
    pub failed: usize,
    /// Files skipped inside folders.
    pub skipped: usize,
    /// Paths that could not be sent.
    pub errors: usize,
}

impl Report {
    /// Whether every file was stored (what was skipped inside folders aside).
    pub fn all_stored(&self) -> bool {
        self.denied + self.failed + self.errors == 0
    }

    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Stored => self.stored += 1,
            Verdict::Denied => self.denied += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::Error => self.errors += 1,
        }
    }
}

/// Hands events on, counting the files' verdicts.
struct Teller<'a> {
    sink: &'a (dyn Fn(Event) + Sync),
    report: Mutex<Report>,
}

impl Teller<'_> {
    fn tell(&self, event: Event) {
        match &event {
            Event::File(result) => lock(&self.report).count(result.verdict),
            Event::Together { files, .. } => {
                let mut report = lock(&self.report);
                files.iter().for_each(|f| report.count(f.verdict));
            }
            _ => {}
        }
        (self.sink)(event);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pause before try `n` (from 1): 1 s, 2 s, 4 s, … at most 30 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(5)).min(30))
}

/// Whether a batch that failed with `err` may go on over a new connection: the connection
/// broke or went quiet, rather than the server or a file saying no.
fn retryable(err: &Error) -> bool {
    err.is_hang_up() || matches!(err, Error::Io(_) | Error::TimedOut { .. })
}

/// Words for a connection that was lost, with what to do.
fn lost(err: &dyn std::fmt::Display, retry: u32) -> String {
    match retry {
        0 => format!(
            "connection lost: {err}; what reached the server is kept: run the same command again to resume (or add --retry N)"
        ),
        _ => format!("connection lost: {err}; no tries left (--retry {retry})"),
    }
}

/// Runs the command: `keys` for secure mode (none: plain only), `first_contact` to decide on
/// a server met for the first time, `sink` to hear every event (from several threads with
/// `-j`). Never fails as a whole: what goes wrong is said per file.
pub fn run(
    plan: &Plan,
    keys: Option<&Keys>,
    first_contact: impl FnMut(&HostPort, &Identity) -> FirstContact,
    sink: &(dyn Fn(Event) + Sync),
) -> Report {
    let teller = Teller {
        sink,
        report: Mutex::new(Report::default()),
    };
    let mut dialer = Dialer::new(
        plan.host.clone(),
        plan.mode,
        keys,
        plan.known_hosts.clone(),
        plan.pin,
        plan.timeout,
        first_contact,
    );
    // A secure connection takes round trips: the folders are walked meanwhile, once the
    // arguments themselves are known to hold something to send (so that no connection is
    // opened for nothing). What the walk has to say is told once the dialing is done, never
    // in the middle of a question the dialer may be asking.
    let overlap = dialer.is_ok() && plan.mode != Mode::Plain && worth_dialing(plan);
    let (prepared, early) = std::thread::scope(|scope| {
        let walking = scope.spawn(|| prepare(plan));
        let early = match &mut dialer {
            Ok(dialer) if overlap => Some(dial(dialer, plan, &teller)),
            _ => None,
        };
        let (prepared, events) = walking
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        for event in events {
            teller.tell(event);
        }
        (prepared, early)
    });
    let mut dialer = match dialer {
        Ok(dialer) => dialer,
        Err(err) => {
            fail_all(
                &teller,
                &prepared.found,
                Cause::Identity,
                err.to_string(),
                false,
            );
            return *lock(&teller.report);
        }
    };
    if prepared.found.is_empty() {
        return *lock(&teller.report);
    }
    // Arguments checked: now the server (if it is not reached already).
    let link = match early.unwrap_or_else(|| dial(&mut dialer, plan, &teller)) {
        Ok(link) => link,
        Err((cause, why)) => {
            fail_all(&teller, &prepared.found, cause, why, false);
            return *lock(&teller.report);
        }
    };
    let link = match (link, &plan.pair) {
        (Some(mut link), Some(pairing)) => {
            match pair_over(&mut link, pairing, keys, &mut dialer, plan) {
                Ok(note) => {
                    teller.tell(Event::Note(note));
                    Some(link)
                }
                Err(why) => {
                    fail_all(&teller, &prepared.found, Cause::Identity, why, true);
                    return *lock(&teller.report);
                }
            }
        }
        (link, _) => link,
    };
    match link.map(|link| (link.version(), link)) {
        Some((Some(version), _)) if version < probe::BATCHES => {
            let why = format!(
                "the server speaks an older secure mode ({version}, this client {}): update fup-server to 2.0 or later; nothing was sent",
                probe::VERSION
            );
            fail_all(&teller, &prepared.found, Cause::OldServer, why, true);
        }
        Some((Some(_), link)) => send_secure(plan, &prepared, link, &mut dialer, &teller),
        Some((None, link)) => send_plain(plan, &prepared, Some(link), &teller),
        None => send_plain(plan, &prepared, None, &teller),
    }
    *lock(&teller.report)
}

/// What the command line comes to, before connecting.
#[derive(Default)]
struct Prepared {
    /// Everything to send, in order: files and folders (with what is in them).
    found: Vec<Found>,
    /// For each entry of `found`: the path to name in results (`-` for standard input).
    shown: Vec<PathBuf>,
}

/// Whether a path the plan names can be sent at all, by the look of the path itself (what is
/// inside a folder is not read): a connection is then worth opening while the folders are
/// walked.
fn worth_dialing(plan: &Plan) -> bool {
    plan.paths.iter().any(|path| match path.as_os_str() == "-" {
        true => plan.stdin.is_some(),
        false => usable(path).is_ok(),
    })
}

/// Walks what the plan names (and spools nothing: standard input is spooled already); returns
/// what to send, and the events that say what cannot be sent and what is skipped inside
/// folders.
fn prepare(plan: &Plan) -> (Prepared, Vec<Event>) {
    let mut events = Vec::new();
    let mut tell = |event| events.push(event);
    let mut prepared = Prepared::default();
    for path in &plan.paths {
        if path.as_os_str() == "-" {
            let Some(stdin) = &plan.stdin else { continue };
            let size = stdin.file.as_file().metadata().map_or(0, |m| m.len());
            prepared.found.push(Found {
                entry: Entry {
                    path: vec![stdin.name.clone()],
                    kind: Kind::File {
                        size,
                        executable: false,
                    },
                    modified: None,
                },
                source: stdin.file.path().to_path_buf(),
                file: stdin
                    .file
                    .as_file()
                    .metadata()
                    .ok()
                    .map(|meta| FileId::of(&meta)),
            });
            prepared.shown.push(PathBuf::from("-"));
            continue;
        }
        // A plain server takes any name it likes: the name rule is fup-server's.
        let walked = match plan.mode {
            Mode::Plain => plain_walk(path),
            _ => walk(std::slice::from_ref(path), &Limits::DEFAULT),
        };
        let walked = match walked {
            Ok(walked) => walked,
            Err(err) => {
                let shown = path.to_string_lossy();
                tell(Event::File(FileResult::unsent(
                    path,
                    &shown,
                    Verdict::Error,
                    Cause::Limit,
                    err.to_string(),
                )));
                continue;
            }
        };
        let unsent = walked.unusable.into_iter().map(|u| {
            (
                u.path,
                Verdict::Error,
                Cause::from(&u.why),
                u.why.to_string(),
            )
        });
        let skipped = walked.skipped.into_iter().map(|s| {
            let cause = Cause::from(&s.reason);
            (s.source, Verdict::Skipped, cause, s.reason.to_string())
        });
        for (source, verdict, cause, why) in unsent.chain(skipped) {
            let name = name_at_server(path, &source);
            tell(Event::File(FileResult::unsent(
                &source, &name, verdict, cause, why,
            )));
        }
        for found in walked.found {
            // A folder for a plain server is said before anything is sent.
            if plan.mode == Mode::Plain && found.entry.kind == Kind::Dir {
                tell(Event::File(not_for_plain(&found)));
                continue;
            }
            prepared.shown.push(found.source.clone());
            prepared.found.push(found);
        }
    }
    (prepared, events)
}

/// What `source`, given as `given` or found inside it, would be called at the server's end:
/// the last part of `given`, then the path inside it (`album/2026/p.jpg`).
fn name_at_server(given: &Path, source: &Path) -> String {
    let top = given
        .file_name()
        .map_or_else(|| given.to_string_lossy(), |n| n.to_string_lossy());
    match source.strip_prefix(given) {
        Ok(inside) if !inside.as_os_str().is_empty() => {
            format!("{top}/{}", inside.to_string_lossy())
        }
        _ => top.into_owned(),
    }
}

/// A path for a plain server: a file (any UTF-8 name), or what it is not.
fn plain_walk(path: &Path) -> Result<Walked, WalkError> {
    let mut walked = Walked::default();
    let unusable = |why| Unusable {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::metadata(path) {
        Err(err) => walked
            .unusable
            .push(unusable(Unsendable::Unreadable(err.to_string()))),
        Ok(meta) => match path.file_name().and_then(|n| n.to_str()) {
            None => walked.unusable.push(unusable(Unsendable::NoName)),
            Some(name) => walked.found.push(Found {
                entry: Entry {
                    path: vec![name.to_string()],
                    kind: match meta.is_dir() {
                        true => Kind::Dir,
                        false => Kind::File {
                            size: meta.len(),
                            executable: false,
                        },
                    },
                    modified: None,
                },
                source: path.to_path_buf(),
                file: (!meta.is_dir()).then(|| FileId::of(&meta)),
            }),
        },
    }
    Ok(walked)
}

/// Says that `found`'s files all ended for one cause.
fn fail_all(teller: &Teller<'_>, found: &[Found], code: Cause, reason: String, secure: bool) {
    let files: Vec<FileResult> = found
        .iter()
        .filter(|f| matches!(f.entry.kind, Kind::File { .. }))
        .map(|f| FileResult {
            size: Some(f.entry.size()),
            secure,
            ..FileResult::unsent(
                &f.source,
                &f.entry.display_path(),
                Verdict::Error,
                code,
                reason.clone(),
            )
        })
        .collect();
    if files.is_empty() {
        return;
    }
    teller.tell(Event::Together {
        verdict: Verdict::Error,
        code,
        reason,
        totals: None,
        files,
    });
}

/// Proves a first contact on `link` with `pairing`'s code (both ways, bound to the TLS
/// session), then pins the server. Says, on failure, why; nothing was sent or pinned then.
fn pair_over(
    link: &mut Link,
    pairing: &PairPlan,
    keys: Option<&Keys>,
    dialer: &mut Dialer<'_>,
    plan: &Plan,
) -> Result<Note, String> {
    let failed = |why: String| {
        format!(
            "pairing with {} failed: {why}; nothing was sent or pinned",
            plan.host
        )
    };
    let Link::Secure(tls, version) = link else {
        return Err(failed(
            "it does not offer secure mode, which a pairing code needs".into(),
        ));
    };
    if *version < probe::PAIRING {
        return Err(failed(pair::PairError::TooOld(*version).to_string()));
    }
    let (Some(keys), Some(server)) = (keys, tls.peer()) else {
        return Err(failed("no identity on one side".into()));
    };
    let channel = tls
        .exporter(pair::EXPORTER_LABEL)
        .map_err(|err| failed(err.to_string()))?;
    let binding = pair::Binding {
        client: keys.identity(),
        server,
        channel,
    };
    let _ = crate::net::Conn::set_read_timeout(&**tls, Some(plan.timeout));
    pair::client(&mut **tls, &pairing.code, &pairing.label, &binding)
        .map_err(|err| failed(err.to_string()))?;
    let file = dialer
        .pin_proven(server)
        .map_err(|err| failed(err.to_string()))?;
    Ok(Note::Paired {
        id: server,
        file,
        label: pairing.label.clone(),
    })
}

/// Reaches the server, with `--retry` also while it is down (restarting); says what the
/// dialer did. On failure, says why (for every file).
fn dial(
    dialer: &mut Dialer<'_>,
    plan: &Plan,
    teller: &Teller<'_>,
) -> Result<Option<Link>, (Cause, String)> {
    let mut tries = 0;
    loop {
        // A plain server is not connected to again here: it may be sent nothing at all.
        match dialer.dial_lazily() {
            Ok((link, note)) => {
                if let Some(note) = note {
                    teller.tell(Event::Note(note));
                }
                return Ok(link);
            }
            Err(err @ DialError::Io(_)) if tries < plan.retry => {
                tries += 1;
                let wait = backoff(tries);
                teller.tell(Event::Retrying {
                    why: format!("cannot connect to {}: {err}", plan.host),
                    wait,
                    attempt: tries,
                    of: plan.retry,
                });
                std::thread::sleep(wait);
            }
            Err(err @ DialError::Io(_)) => {
                let hint = match plan.retry {
                    0 => " (is fup-server running there? --retry N waits for it)",
                    _ => "",
                };
                return Err((
                    Cause::Connection,
                    format!("cannot connect to {}: {err}{hint}", plan.host),
                ));
            }
            Err(err) => return Err((dial_cause(&err), anyhow_chain(&err))),
        }
    }
}

/// Why dialing failed, for programs.
fn dial_cause(err: &DialError) -> Cause {
    match err {
        DialError::Io(_) | DialError::Handshake { .. } => Cause::Connection,
        DialError::NotOffered(_) => Cause::NotSecure,
        DialError::KnownHosts(_)
        | DialError::PinnedNotOffered { .. }
        | DialError::IdentityChanged { .. }
        | DialError::NotTrusted { .. } => Cause::Identity,
    }
}

/// An error with its causes, each once: `a: b: c`.
fn anyhow_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Where each entry's file results go: the top items, and the files under each.
struct Layout {
    /// For each top item's entry index: its files' indices (a file alone: itself).
    files_of: HashMap<u32, Vec<u32>>,
}

impl Layout {
    fn of(found: &[Found]) -> Layout {
        let mut files_of: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut top = 0;
        for (index, f) in found.iter().enumerate() {
            let index = index as u32;
            if f.entry.depth() == 1 {
                top = index;
                files_of.entry(top).or_default();
            }
            if let Kind::File { .. } = f.entry.kind {
                files_of.entry(top).or_default().push(index);
            }
        }
        Layout { files_of }
    }
}

/// The state of a batch's per-file results across tries.
struct Accounting<'p> {
    prepared: &'p Prepared,
    layout: Layout,
    /// Files already told of.
    told: HashSet<u32>,
    /// Files the server's policy refused, and why.
    refused: HashMap<u32, (Code, String)>,
    /// Each file's BLAKE3, once sent whole.
    digests: HashMap<u32, [u8; 32]>,
    /// Each file's time on the way and bytes moved in this run.
    timing: HashMap<u32, (Duration, u64)>,
    /// What the server had of each file from cut tries.
    resumed: HashMap<u32, u64>,
}

impl Accounting<'_> {
    /// Results for the files under top item `item` (those not told of yet).
    fn item(&mut self, item: &ItemDone) -> Vec<FileResult> {
        let Some(files) = self.layout.files_of.get(&item.index).cloned() else {
            return Vec::new();
        };
        let mut results = Vec::new();
        for index in files {
            if !self.told.insert(index) {
                continue;
            }
            let found = &self.prepared.found[index as usize];
            let mut result = self.unsent(index, Verdict::Failed, Cause::Server(item.code), "");
            match self.refused.get(&index) {
                Some((code, why)) => {
                    result.verdict = Verdict::Denied;
                    result.code = Cause::Server(*code);
                    result.reason = Some(why.clone());
                }
                None if item.is_stored() => {
                    result.verdict = Verdict::Stored;
                    result.code = Cause::Server(Code::Stored);
                    result.reason = None;
                    let mut stored = vec![item.name.clone()];
                    stored.extend(found.entry.path[1..].iter().cloned());
                    result.stored_as = Some(stored.join("/"));
                    result.digest = self.digests.get(&index).map(|d| Digest::Blake3(*d));
                    let (elapsed, moved) = self.timing.get(&index).copied().unwrap_or_default();
                    result.elapsed = Some(elapsed);
                    result.moved = moved;
                    result.resumed = self.resumed.get(&index).copied().unwrap_or(0);
                }
                None => {
                    result.verdict = match item.code {
                        Code::Denied
                        | Code::TooLarge
                        | Code::NoSpace
                        | Code::Refused
                        | Code::Busy
                        | Code::ShuttingDown => Verdict::Denied,
                        _ => Verdict::Failed,
                    };
                    let why = item.why().map_or_else(
                        || format!("the server says {}", item.code.name()),
                        str::to_string,
                    );
                    result.reason = Some(why);
                }
            }
            results.push(result);
        }
        results
    }

    /// Results for the files refused by the server's policy (told at once).
    fn refused_now(&mut self) -> Vec<FileResult> {
        let mut indices: Vec<u32> = self.refused.keys().copied().collect();
        indices.sort_unstable();
        let mut results = Vec::new();
        for index in indices {
            if !self.told.insert(index) {
                continue;
            }
            let (code, why) = &self.refused[&index];
            results.push(self.unsent(index, Verdict::Denied, Cause::Server(*code), why));
        }
        results
    }

    /// Results for every file not told of yet, all ended for one cause.
    fn rest(&mut self, verdict: Verdict, code: Cause, why: &str) -> Vec<FileResult> {
        let mut results = Vec::new();
        for (index, found) in self.prepared.found.iter().enumerate() {
            let index = index as u32;
            if !matches!(found.entry.kind, Kind::File { .. }) || !self.told.insert(index) {
                continue;
            }
            results.push(self.unsent(index, verdict, code, why));
        }
        results
    }

    /// File `index`'s result, not stored, for `cause` and `why`.
    fn unsent(&self, index: u32, verdict: Verdict, cause: Cause, why: &str) -> FileResult {
        let found = &self.prepared.found[index as usize];
        FileResult {
            size: Some(found.entry.size()),
            secure: true,
            ..FileResult::unsent(
                &self.prepared.shown[index as usize],
                &found.entry.display_path(),
                verdict,
                cause,
                why.to_string(),
            )
        }
    }
}

/// A batch under way: its per-file accounting, and how far it got.
struct BatchRun<'p, 't> {
    account: Accounting<'p>,
    teller: &'t Teller<'t>,
    /// Bytes of the batch (those refused not counted: they still count in its totals).
    total: u64,
    /// When the server accepted this try.
    accepted: Option<Instant>,
    /// When the last file was sent whole.
    last_end: Option<Instant>,
    /// Bytes at the server when this try was accepted.
    at_start: u64,
    /// Bytes moved by this run, and by its tries before this one.
    moved: u64,
    moved_before: u64,
    /// Bytes the server had from cut tries.
    resumed: u64,
    /// Each file to send, in order, with the bytes of the batch at the server once it is
    /// there whole (refused ones left out): a file's time ends when its last byte arrives,
    /// not when it was written into a buffer.
    ends: Vec<(u64, u32)>,
    /// The first of `ends` not there yet.
    next_end: usize,
}

impl BatchRun<'_, '_> {
    fn event(&mut self, event: BatchEvent) {
        let teller = self.teller;
        match event {
            BatchEvent::Accepted(refused) => {
                for Refused { code, why, entries } in refused {
                    for index in entries {
                        self.account.refused.insert(index, (code, why.clone()));
                    }
                }
                for result in self.account.refused_now() {
                    teller.tell(Event::File(result));
                }
                let mut end = 0;
                self.ends = (0..self.account.prepared.found.len() as u32)
                    .filter_map(|index| {
                        let entry = &self.account.prepared.found[index as usize].entry;
                        let file = matches!(entry.kind, Kind::File { .. })
                            && !self.account.refused.contains_key(&index);
                        file.then(|| {
                            end += entry.size();
                            (end, index)
                        })
                    })
                    .collect();
                self.next_end = 0;
            }
            BatchEvent::Resumed(resumed) => {
                self.resumed = resumed.bytes;
                // What the server had of each file: those before the point whole, and the
                // start of the one there (unless it differed from this copy).
                let found = &self.account.prepared.found;
                for (index, f) in found.iter().enumerate().take(resumed.at.next as usize) {
                    if matches!(f.entry.kind, Kind::File { .. })
                        && !self.account.refused.contains_key(&(index as u32))
                    {
                        self.account.resumed.insert(index as u32, f.entry.size());
                    }
                }
                if resumed.at.held > 0 {
                    self.account
                        .resumed
                        .insert(resumed.at.next, resumed.at.held);
                }
                teller.tell(Event::Resumed {
                    resumed,
                    total: self.total,
                });
            }
            BatchEvent::Sent { index, blake3 } => {
                self.account.digests.insert(index, blake3);
            }
            BatchEvent::Item(item) => tell_item(teller, &item, self.account.item(&item)),
        }
    }

    fn progress(&mut self, bytes: u64, files: usize) {
        let now = Instant::now();
        if self.accepted.is_none() {
            self.accepted = Some(now);
            self.at_start = bytes;
            self.moved_before = self.moved;
            self.teller.tell(Event::Accepted { already: bytes });
        }
        self.moved = self.moved_before + bytes.saturating_sub(self.at_start);
        // Files whose last byte is there now: their time on the way ends. Several that end
        // together share the time since the last one ended, by their bytes.
        let mut ending = Vec::new();
        while let Some(&(end, index)) = self.ends.get(self.next_end) {
            if end > bytes {
                break;
            }
            let size = self.account.prepared.found[index as usize].entry.size();
            let had = self.account.resumed.get(&index).copied().unwrap_or(0);
            ending.push((index, size.saturating_sub(had)));
            self.next_end += 1;
        }
        if !ending.is_empty() {
            let span = now - self.last_end.or(self.accepted).unwrap_or(now);
            let moved: u64 = ending.iter().map(|(_, m)| m).sum();
            for &(index, m) in &ending {
                let share = match moved {
                    0 => span / ending.len() as u32,
                    _ => span.mul_f64(m as f64 / moved as f64),
                };
                self.account.timing.insert(index, (share, m));
            }
            self.last_end = Some(now);
        }
        self.teller.tell(Event::Progress { bytes, files });
    }
}

/// Tells what became of a top item's files: each on its own, but when the item failed
/// with several files, once for them all (a tree that could not be stored is one cause).
fn tell_item(teller: &Teller<'_>, item: &ItemDone, results: Vec<FileResult>) {
    let failed_whole = results.len() > 1
        && !item.is_stored()
        && results.iter().all(|r| r.verdict == Verdict::Failed);
    match failed_whole {
        true => {
            let why = results[0].reason.clone().unwrap_or_default();
            let why = format!("{}: {why}", text::from_peer(&item_name(&results[0].name)));
            tell_together(teller, Verdict::Failed, results[0].code, why, results);
        }
        false => results
            .into_iter()
            .for_each(|r| teller.tell(Event::File(r))),
    }
}

/// The top item a file's name at the server's end is in (`photos` for `photos/a.jpg`).
fn item_name(name: &str) -> String {
    name.split('/').next().unwrap_or(name).to_string()
}

/// Tells that `files` all ended for one cause (nothing when there are none; one file is told
/// on its own).
fn tell_together(
    teller: &Teller<'_>,
    verdict: Verdict,
    code: Cause,
    reason: String,
    mut files: Vec<FileResult>,
) {
    match files.len() {
        0 => {}
        1 => teller.tell(Event::File(files.remove(0))),
        _ => teller.tell(Event::Together {
            verdict,
            code,
            reason,
            totals: None,
            files,
        }),
    }
}

/// The whole command as one batch over a secure link, tried again after a cut.
fn send_secure(
    plan: &Plan,
    prepared: &Prepared,
    mut link: Link,
    dialer: &mut Dialer<'_>,
    teller: &Teller<'_>,
) {
    let entries: Vec<Entry> = prepared.found.iter().map(|f| f.entry.clone()).collect();
    let totals = match check(&entries, &Limits::DEFAULT) {
        Ok(totals) => totals,
        Err(problem) => {
            let why = format!("nothing was sent: {problem}");
            fail_all(teller, &prepared.found, Cause::Limit, why, true);
            return;
        }
    };
    let options = Options {
        chunk_size: plan.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
        timeout: plan.timeout,
        answer_timeout: plan.answer_timeout,
        checksum: false,
        accept_byte: Some(ResponseByte::DEFAULT_ACCEPT),
    };
    let label = match &entries[..] {
        [one] => one.path[0].clone(),
        _ => totals.to_string(),
    };
    teller.tell(Event::Starting {
        label,
        bytes: totals.bytes,
        files: totals.files,
        secure: true,
    });
    let account = Accounting {
        prepared,
        layout: Layout::of(&prepared.found),
        told: HashSet::new(),
        refused: HashMap::new(),
        digests: HashMap::new(),
        timing: HashMap::new(),
        resumed: HashMap::new(),
    };
    let mut tries = 0;
    let mut run = BatchRun {
        account,
        teller,
        total: totals.bytes,
        accepted: None,
        last_end: None,
        at_start: 0,
        moved: 0,
        moved_before: 0,
        resumed: 0,
        ends: Vec::new(),
        next_end: 0,
    };
    loop {
        teller.tell(Event::Waiting);
        run.last_end = None;
        // Both kinds of news change the one state, each told at once (never both at a time).
        let shared = std::cell::RefCell::new(&mut run);
        let outcome = send_batch(
            &mut link,
            &prepared.found,
            &options,
            |event| shared.borrow_mut().event(event),
            |bytes, files| shared.borrow_mut().progress(bytes, files),
        );
        let account = &mut run.account;
        match outcome {
            Ok(BatchOutcome::Denied(code, reason)) => {
                // An operator's own "no" comes without words.
                let files = account.rest(Verdict::Denied, Cause::Server(code), &reason);
                teller.tell(Event::Together {
                    verdict: Verdict::Denied,
                    code: Cause::Server(code),
                    reason,
                    totals: Some(totals.clone()),
                    files,
                });
                return;
            }
            Ok(BatchOutcome::Done(items)) => {
                for item in &items {
                    tell_item(teller, item, account.item(item));
                }
                // What the server's account does not name was not stored: it stopped the
                // batch, for the cause of its last failed item (said once for them all).
                let stopped = items.iter().rev().find(|item| !item.is_stored());
                let (code, why) = match stopped {
                    Some(item) => (
                        Cause::Server(item.code),
                        format!(
                            "not sent: the server stopped the batch ({})",
                            item.why().unwrap_or(item.code.name())
                        ),
                    ),
                    None => (
                        Cause::Server(Code::Unknown(0)),
                        "not stored: the server's account does not name it".to_string(),
                    ),
                };
                let files = account.rest(Verdict::Failed, code, &why);
                tell_together(teller, Verdict::Failed, code, why, files);
                teller.tell(Event::BatchEnd {
                    totals,
                    elapsed: run.accepted.map_or(Duration::ZERO, |at| at.elapsed()),
                    moved: run.moved,
                    resumed: run.resumed,
                });
                return;
            }
            Err(err) if tries < plan.retry && retryable(&err) => {
                let mut why = format!("connection lost: {err}");
                let redialed = loop {
                    tries += 1;
                    let wait = backoff(tries);
                    teller.tell(Event::Retrying {
                        why: why.clone(),
                        wait,
                        attempt: tries,
                        of: plan.retry,
                    });
                    std::thread::sleep(wait);
                    match dialer.dial() {
                        Ok((new, _)) if new.server_id().is_some() => break Ok(new),
                        Ok(_) => {
                            break Err(format!(
                                "{} no longer offers secure mode: not resuming in plain",
                                plan.host
                            ));
                        }
                        Err(err @ DialError::Io(_)) if tries < plan.retry => {
                            why = format!("cannot connect: {err}");
                        }
                        Err(err) => break Err(anyhow_chain(&err)),
                    }
                };
                match redialed {
                    Ok(new) => {
                        link = new;
                        // The operator is asked again: nothing moves meanwhile.
                        run.accepted = None;
                    }
                    Err(why) => {
                        let files = account.rest(Verdict::Failed, Cause::Connection, &why);
                        teller.tell(Event::Together {
                            verdict: Verdict::Failed,
                            code: Cause::Connection,
                            reason: why,
                            totals: None,
                            files,
                        });
                        return;
                    }
                }
            }
            Err(err) => {
                let (code, reason) = match &err {
                    Error::NotWalked(_) => (Cause::Changed, err.to_string()),
                    err if retryable(err) => (Cause::Connection, lost(err, plan.retry)),
                    err => (Cause::Protocol, err.to_string()),
                };
                let files = account.rest(Verdict::Failed, code, &reason);
                teller.tell(Event::Together {
                    verdict: Verdict::Failed,
                    code,
                    reason,
                    totals: None,
                    files,
                });
                return;
            }
        }
    }
}

/// A folder, which a plain server cannot take.
fn not_for_plain(found: &Found) -> FileResult {
    let dir = text::escape(&found.source.to_string_lossy());
    let name = &found.entry.path[0];
    FileResult::unsent(
        &found.source,
        name,
        Verdict::Error,
        Cause::Directory,
        format!(
            "is a directory (send a folder as an archive: tar c {dir} | fup-client HOST - --name {}.tar)",
            text::escape(name)
        ),
    )
}

/// A file for a plain server: open, its name and size.
struct Upload {
    file: File,
    name: String,
    size: u64,
}

/// Files one by one to a plain server (or up to `-j` at once), each over a connection of its
/// own (`first`, when the dialer opened one, for the first); a folder is said to need an
/// archive, and a server sent nothing gets no connection that carries nothing.
fn send_plain(plan: &Plan, prepared: &Prepared, first: Option<Link>, teller: &Teller<'_>) {
    let mut jobs: Vec<(usize, &Found)> = Vec::new();
    for (index, found) in prepared.found.iter().enumerate() {
        match found.entry.kind {
            Kind::Dir if found.entry.depth() == 1 => teller.tell(Event::File(not_for_plain(found))),
            Kind::File { .. } if found.entry.depth() == 1 => jobs.push((index, found)),
            _ => {}
        }
    }
    let first = Mutex::new(first);
    let next = AtomicUsize::new(0);
    let workers = plan.parallel.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::SeqCst);
                    let Some((index, found)) = jobs.get(at) else {
                        break;
                    };
                    // The first connection is the dialer's; the others are plain at once
                    // (the server turned out plain: no probe again).
                    let link = match lock(&first).take() {
                        Some(link) => Ok(link),
                        None => crate::net::connect(
                            (plan.host.host.as_str(), plan.host.port),
                            plan.timeout,
                        )
                        .map(Link::Plain)
                        .map_err(|err| format!("cannot connect to {}: {err}", plan.host)),
                    };
                    let shown = &prepared.shown[*index];
                    let result = match link {
                        Ok(link) => send_one(plan, found, shown, link, workers == 1, teller),
                        Err(why) => FileResult::unsent(
                            shown,
                            &found.entry.path[0],
                            Verdict::Error,
                            Cause::Connection,
                            why,
                        ),
                    };
                    teller.tell(Event::File(result));
                }
            });
        }
    });
}

/// One file to a plain server over `link`; with `live`, its progress told as it goes.
fn send_one(
    plan: &Plan,
    found: &Found,
    shown: &Path,
    mut link: Link,
    live: bool,
    teller: &Teller<'_>,
) -> FileResult {
    let name = found.entry.path[0].clone();
    let unsent = |code, why: String| FileResult::unsent(shown, &name, Verdict::Error, code, why);
    let upload = match found.open() {
        Ok(file) => {
            let size = file.metadata().map_or(0, |m| m.len());
            Upload {
                file,
                name: name.clone(),
                size,
            }
        }
        Err(err) => return unsent(Cause::Unreadable, format!("cannot open file: {err}")),
    };
    let options = Options {
        chunk_size: plan
            .chunk_size
            .unwrap_or_else(|| auto_chunk_size(upload.size, DEFAULT_CHUNK_SIZE)),
        timeout: plan.timeout,
        answer_timeout: plan.answer_timeout,
        checksum: plan.checksum,
        accept_byte: plan.accept_byte,
    };
    if live {
        teller.tell(Event::Starting {
            label: upload.name.clone(),
            bytes: upload.size,
            files: 1,
            secure: false,
        });
        teller.tell(Event::Waiting);
    }
    let accepted: Mutex<Option<Instant>> = Mutex::new(None);
    let sent = upload_file(
        &mut link,
        &upload.file,
        &upload.name,
        upload.size,
        &options,
        |bytes| {
            let mut at = lock(&accepted);
            if at.is_none() {
                *at = Some(Instant::now());
                if live {
                    teller.tell(Event::Accepted { already: 0 });
                }
            }
            if live {
                teller.tell(Event::Progress { bytes, files: 0 });
            }
        },
    );
    let elapsed = lock(&accepted).map(|at| at.elapsed());
    let mut result = FileResult {
        size: Some(upload.size),
        elapsed,
        moved: upload.size,
        ..unsent(Cause::Server(Code::Stored), String::new())
    };
    match sent {
        Ok(sent) => {
            result.verdict = match sent.delivery {
                Delivery::Stored => Verdict::Stored,
                Delivery::Denied => Verdict::Denied,
                Delivery::Failed => Verdict::Failed,
            };
            result.code = match sent.delivery {
                Delivery::Stored => Cause::Server(Code::Stored),
                Delivery::Denied => Cause::Server(Code::Denied),
                Delivery::Failed => Cause::Server(Code::ServerError),
            };
            result.reason = match sent.delivery {
                Delivery::Stored => None,
                Delivery::Denied => {
                    Some("denied by the server (a plain server says no more)".into())
                }
                Delivery::Failed => Some("the server reported that storing the file failed".into()),
            };
            if sent.delivery == Delivery::Stored {
                result.stored_as = None;
                result.digest = sent.sha256.map(Digest::Sha256);
            } else {
                result.moved = 0;
            }
        }
        Err(err) => {
            result.verdict = Verdict::Failed;
            result.code = Cause::Connection;
            result.moved = 0;
            result.reason = Some(match err {
                Error::FileChanged { .. } => err.to_string(),
                err if err.is_hang_up() => format!(
                    "upload to {} failed: {err}; run the same command again",
                    plan.host
                ),
                err => format!("upload to {} failed: {err}", plan.host),
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::keys::test_keys;
    use crate::secure::tls;
    use crate::server::{Partials, Policy, SecureMode, Server, Store, TrustedClients};
    use crate::wire::Verdict as Answer;
    use std::fs;
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};

    const WAIT: Duration = Duration::from_secs(10);

    /// Both ends of a test: the server's directory, the client's keys and files.
    struct Ends {
        upload: tempfile::TempDir,
        src: tempfile::TempDir,
        _keys: (tempfile::TempDir, tempfile::TempDir),
        server_keys: Keys,
        client_keys: Keys,
    }

    impl Ends {
        fn new() -> Ends {
            let ((sd, server_keys), (cd, client_keys)) = (test_keys(), test_keys());
            Ends {
                upload: tempfile::tempdir().unwrap(),
                src: tempfile::tempdir().unwrap(),
                _keys: (sd, cd),
                server_keys,
                client_keys,
            }
        }

        /// A file of `len` bytes under the client's directory.
        fn file(&self, name: &str, len: usize) -> PathBuf {
            let path = self.src.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(
                &path,
                (0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
            )
            .unwrap();
            path
        }

        /// A secure server for `policy` and `operator`, keeping partials.
        fn server(
            &self,
            policy: Policy,
            operator: fn(&crate::server::Ask<'_>) -> Answer,
        ) -> Server {
            let secure = SecureMode {
                config: tls::server_config(&self.server_keys).unwrap(),
                trusted: TrustedClients::load(&self.upload.path().join("none")).unwrap(),
                identity: self.server_keys.identity(),
            };
            let partials =
                Partials::in_dir(self.upload.path(), Duration::from_secs(3600), 1 << 30).unwrap();
            Server::new(Store::open(self.upload.path()).unwrap(), policy)
                .with_operator(operator)
                .with_timeout(WAIT)
                .with_secure(secure)
                .with_partials(partials)
        }

        /// The plan for `paths` to `port`, the server pinned.
        fn plan(&self, port: u16, paths: &[&Path]) -> Plan {
            Plan {
                host: HostPort {
                    host: "127.0.0.1".into(),
                    port,
                },
                mode: Mode::Auto,
                pin: Some(self.server_keys.identity()),
                known_hosts: self.src.path().join("known_hosts"),
                paths: paths.iter().map(|p| p.to_path_buf()).collect(),
                stdin: None,
                chunk_size: Some(64 * 1024),
                timeout: WAIT,
                answer_timeout: WAIT,
                checksum: false,
                accept_byte: None,
                parallel: 1,
                retry: 0,
                pair: None,
            }
        }

        /// Runs `plan` and returns its report and every event, in order.
        fn run(&self, plan: &Plan, keys: Option<&Keys>) -> (Report, Vec<Event>) {
            let events = Mutex::new(Vec::new());
            let report = run(plan, keys, |_, _| FirstContact::Refused, &|event| {
                lock(&events).push(event)
            });
            (report, events.into_inner().unwrap())
        }
    }

    /// Serves `connections` connections on 127.0.0.1, one after another, then ends.
    fn serve(server: Server, connections: usize) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Arc::new(server);
        let serving = thread::spawn(move || {
            for _ in 0..connections {
                let (stream, peer) = listener.accept().unwrap();
                crate::net::prepare(&stream, WAIT).unwrap();
                server.session(peer).run(&stream);
            }
        });
        (port, serving)
    }

    /// Every file's result told, in order: (name, verdict, cause).
    fn results(events: &[Event]) -> Vec<(String, Verdict, Cause)> {
        let mut out = Vec::new();
        for event in events {
            match event {
                Event::File(r) => out.push((r.name.clone(), r.verdict, r.code)),
                Event::Together { files, .. } => {
                    out.extend(files.iter().map(|r| (r.name.clone(), r.verdict, r.code)));
                }
                _ => {}
            }
        }
        out
    }

    fn stored() -> Cause {
        Cause::Server(Code::Stored)
    }

    #[test]
    #[cfg(unix)]
    fn mixed_outcomes_are_told_file_by_file_what_cannot_go_before_connecting() {
        let ends = Ends::new();
        let a = ends.file("a.txt", 10);
        let tree = ends.file("album/2026/p.jpg", 5000);
        ends.file("album/.gitignore", 3);
        std::os::unix::fs::symlink("/etc/passwd", ends.src.path().join("album/link")).unwrap();
        let dot = ends.file(".env", 1);
        let missing = ends.src.path().join("missing.bin");
        let (port, serving) = serve(ends.server(Policy::accept_all(), |_| Answer::Denied), 1);
        let album = tree.parent().unwrap().parent().unwrap();
        let plan = ends.plan(port, &[&a, &missing, album, &dot]);
        let (report, events) = ends.run(&plan, Some(&ends.client_keys));
        serving.join().unwrap();
        assert_eq!(
            results(&events),
            [
                ("missing.bin".into(), Verdict::Error, Cause::Unreadable),
                ("album/link".into(), Verdict::Skipped, Cause::Symlink),
                (".env".into(), Verdict::Error, Cause::Name),
                ("a.txt".into(), Verdict::Stored, stored()),
                ("album/.gitignore".into(), Verdict::Stored, stored()),
                ("album/2026/p.jpg".into(), Verdict::Stored, stored()),
            ],
            "{events:#?}"
        );
        assert_eq!(
            report,
            Report {
                stored: 3,
                skipped: 1,
                errors: 2,
                ..Report::default()
            }
        );
        assert_eq!(
            fs::read(ends.upload.path().join("album/.gitignore"))
                .unwrap()
                .len(),
            3
        );
        // What happened, in order: the arguments first, then the batch as it went.
        let shape: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::File(_) => "file",
                Event::Starting { .. } => "starting",
                Event::Waiting => "waiting",
                Event::Accepted { .. } => "accepted",
                Event::Progress { .. } => "progress",
                Event::BatchEnd { .. } => "end",
                _ => "other",
            })
            .collect();
        let first_batch = shape.iter().position(|&s| s == "starting").unwrap();
        assert_eq!(shape[..first_batch], ["file"; 3]);
        assert_eq!(
            shape[first_batch + 1..first_batch + 3],
            ["waiting", "accepted"]
        );
        assert_eq!(shape.last(), Some(&"end"));
    }

    #[test]
    fn a_denied_batch_is_one_event_for_all_its_files() {
        let ends = Ends::new();
        let (a, b) = (ends.file("a.txt", 10), ends.file("b.txt", 20));
        let (port, serving) = serve(ends.server(Policy::default(), |_| Answer::Denied), 1);
        let (report, events) = ends.run(&ends.plan(port, &[&a, &b]), Some(&ends.client_keys));
        serving.join().unwrap();
        let together: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Together { .. }))
            .collect();
        let [
            Event::Together {
                verdict,
                code,
                totals,
                files,
                ..
            },
        ] = together[..]
        else {
            panic!("{events:#?}")
        };
        assert_eq!(
            (*verdict, *code, totals.as_ref().map(|t| t.files)),
            (Verdict::Denied, Cause::Server(Code::Denied), Some(2))
        );
        assert_eq!(files.len(), 2);
        assert_eq!(report.denied, 2);
        assert!(!report.all_stored());
        assert_eq!(fs::read_dir(ends.upload.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_refusal_by_policy_takes_only_its_files() {
        let ends = Ends::new();
        let small = ends.file("small.bin", 100);
        let big = ends.file("big.bin", 5000);
        let inner = ends.file("tree/big.bin", 5000);
        ends.file("tree/ok.bin", 10);
        let policy = Policy {
            max_size: Some(1000),
            ..Policy::default()
        };
        let (port, serving) = serve(ends.server(policy, |_| Answer::Accepted), 1);
        let tree = inner.parent().unwrap();
        let (report, events) = ends.run(
            &ends.plan(port, &[&small, &big, tree]),
            Some(&ends.client_keys),
        );
        serving.join().unwrap();
        let too_large = Cause::Server(Code::TooLarge);
        assert_eq!(
            results(&events),
            [
                ("big.bin".into(), Verdict::Denied, too_large),
                ("tree/big.bin".into(), Verdict::Denied, too_large),
                ("small.bin".into(), Verdict::Stored, stored()),
                ("tree/ok.bin".into(), Verdict::Stored, stored()),
            ],
            "{events:#?}"
        );
        let refused = events.iter().find_map(|e| match e {
            Event::File(r) if r.verdict == Verdict::Denied => r.reason.clone(),
            _ => None,
        });
        assert_eq!(refused.as_deref(), Some("larger than --max-size 1000 B"));
        assert_eq!((report.stored, report.denied), (2, 2));
        assert!(!ends.upload.path().join("big.bin").exists());
        assert!(!ends.upload.path().join("tree/big.bin").exists());
        assert!(ends.upload.path().join("tree/ok.bin").exists());
    }

    /// A relay on 127.0.0.1 to `target`: its first connection is cut once `cut` bytes went
    /// up; the next ones go through whole. Serves `connections`, then ends.
    fn cutting_relay(target: u16, cut: u64, connections: usize) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = thread::spawn(move || {
            for n in 0..connections {
                let (mut client, _) = listener.accept().unwrap();
                let target: SocketAddr = ([127, 0, 0, 1], target).into();
                let mut server = TcpStream::connect(target).unwrap();
                let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                let back = thread::spawn(move || drop(std::io::copy(&mut from, &mut to)));
                let limit = if n == 0 { cut } else { u64::MAX };
                let mut up = 0;
                let mut buf = vec![0; 16 * 1024];
                client.set_read_timeout(Some(WAIT)).unwrap();
                while up < limit {
                    let Ok(got) = client.read(&mut buf) else {
                        break;
                    };
                    let take = got.min(usize::try_from(limit - up).unwrap_or(usize::MAX));
                    if got == 0 || server.write_all(&buf[..take]).is_err() {
                        break;
                    }
                    up += take as u64;
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                let _ = back.join();
            }
        });
        (port, relay)
    }

    #[test]
    fn a_cut_batch_is_tried_again_and_resumes() {
        let ends = Ends::new();
        let first = ends.file("first.bin", 200_000);
        let second = ends.file("second.bin", 600_000);
        let (port, serving) = serve(ends.server(Policy::accept_all(), |_| Answer::Denied), 2);
        // Cut inside the second file.
        let (relay, relaying) = cutting_relay(port, 500_000, 2);
        let mut plan = ends.plan(relay, &[&first, &second]);
        plan.retry = 2;
        let (report, events) = ends.run(&plan, Some(&ends.client_keys));
        serving.join().unwrap();
        relaying.join().unwrap();
        assert!(report.all_stored(), "{events:#?}");
        assert_eq!(report.stored, 2);
        let retried: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Retrying { .. }))
            .collect();
        assert!(
            matches!(
                retried[..],
                [Event::Retrying {
                    attempt: 1,
                    of: 2,
                    ..
                }]
            ),
            "{events:#?}"
        );
        let resumed = events.iter().find_map(|e| match e {
            Event::Resumed { resumed, .. } => Some(*resumed),
            _ => None,
        });
        let resumed = resumed.unwrap_or_else(|| panic!("{events:#?}"));
        assert!(
            resumed.files >= 1 && resumed.bytes >= 200_000,
            "{resumed:?}"
        );
        // Each file once, whole; the second tells how much of it the cut try left there.
        let files: Vec<&FileResult> = events
            .iter()
            .filter_map(|e| match e {
                Event::File(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), 2, "{events:#?}");
        assert_eq!(files[0].resumed, 200_000);
        assert!(
            files[1].resumed > 0 && files[1].resumed < 600_000,
            "{:?}",
            files[1]
        );
        assert_eq!(files[1].moved, 600_000 - files[1].resumed);
        for (file, len) in [("first.bin", 200_000), ("second.bin", 600_000)] {
            assert_eq!(fs::read(ends.upload.path().join(file)).unwrap().len(), len);
        }
    }

    #[test]
    fn a_plain_server_gets_files_one_by_one_and_no_folder() {
        let ends = Ends::new();
        let files: Vec<PathBuf> = (0..3)
            .map(|i| ends.file(&format!("f{i}.txt"), 100 * i))
            .collect();
        let dir = ends.src.path().join("folder");
        fs::create_dir_all(&dir).unwrap();
        let server = Server::new(
            Store::open(ends.upload.path()).unwrap(),
            Policy::accept_all(),
        )
        .with_timeout(WAIT);
        let (port, serving) = serve(server, 3);
        let mut paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        paths.insert(1, &dir);
        let mut plan = ends.plan(port, &paths);
        (plan.mode, plan.pin, plan.parallel, plan.checksum) = (Mode::Plain, None, 2, true);
        let (report, events) = ends.run(&plan, None);
        serving.join().unwrap();
        let mut told = results(&events);
        // A folder is said before connecting; then the files as each ends (2 at once).
        assert_eq!(
            told.remove(0),
            ("folder".into(), Verdict::Error, Cause::Directory)
        );
        told.sort_by(|a, b| a.0.cmp(&b.0));
        let plain_stored = Cause::Server(Code::Stored);
        assert_eq!(
            told,
            (0..3)
                .map(|i| (format!("f{i}.txt"), Verdict::Stored, plain_stored))
                .collect::<Vec<_>>()
        );
        assert_eq!((report.stored, report.errors), (3, 1));
        let digests = events
            .iter()
            .filter(|e| matches!(e, Event::File(r) if matches!(r.digest, Some(Digest::Sha256(_)))))
            .count();
        assert_eq!(digests, 3);
    }
}
