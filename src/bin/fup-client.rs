//! `fup-client`: upload files and folders to a FUP server and report what became of each.
#![deny(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use fup::ResponseByte;
use fup::batch::Totals;
use fup::client::command::{
    self, Digest, Event, FileResult, PairPlan, Plan, Report, Spooled, Verdict,
};
use fup::client::{DEFAULT_ANSWER_TIMEOUT, DEFAULT_TIMEOUT};
use fup::net::discover;
use fup::secure::dial::{FirstContact, Mode, Note};
use fup::secure::files::{self, HostPort};
use fup::secure::pair::Code;
use fup::secure::{Identity, keys};
use fup::term::args::{
    Address, Seconds, address, chunk_size, parse_with_address, response_byte, seconds,
};
use fup::term::bar::{self, Caption};
use fup::term::results::{self, BatchFigures, Stream};
use fup::text;
use indicatif::ProgressBar;

/// Upload files and folders to a FUP (File Upload Protocol) server.
///
/// Secure by default with fup servers: the client offers secure mode (TLS 1.3, both sides
/// identified by key) and uses it when the server answers; the server's identity is pinned
/// on first contact (asked on a terminal, recorded otherwise) in known_hosts, and a pinned
/// server that shows another identity, or stops offering secure mode, is refused before
/// anything is sent. Everything on the command line then goes as one batch over one
/// connection, with one question to the server's operator. A server that does not offer
/// secure mode (the Python and C# programs, fup 1.0) gets the plain protocol, one connection
/// per file (-j at once), with one note on stderr.
///
/// Folders keep their structure, their dot files and every modification time; symlinks
/// inside them are never followed. The server's policy may refuse some files (each says
/// why) and the rest goes on. What cannot be sent is said before connecting. Every file gets
/// one result as it ends: a line on stdout when stored, on stderr otherwise (or one JSON
/// object with --json); on a terminal a progress bar fitted to its width (what reached the
/// server, the rate, the time left, "waiting for the server to accept", "stalled" when
/// nothing moved for 5 s); a total line after several.
///
/// Exit status: 0 when every file was stored, 1 when any was denied or failed, 2 for usage
/// errors, 128 + the signal's number when interrupted (130 for Ctrl-C, 143 for SIGTERM; a
/// plain server discards the partial file, a fup server keeps it hidden and the same command
/// resumes it).
///
/// Secure uploads are checked end to end (BLAKE3) before the server publishes them; one cut
/// off resumes when the same command runs again, or by itself with --retry.
#[derive(Parser)]
#[command(
    name = "fup-client",
    version,
    after_help = "Examples:\n  fup-client 192.0.2.7 report.pdf photos/*.jpg\n  fup-client --port 6000 -q backup.host db.dump"
)]
struct Args {
    /// Server: host name or IP address, with :PORT if you like (IPv6 as ::1 or [::1]:PORT);
    /// with --code, the first file (the server is --server's, or found on the LAN)
    #[arg(value_name = "HOST", required_unless_present = "find")]
    target: Option<String>,
    /// Files to upload; `-` is standard input (with --name), read to its end into an unlinked
    /// temporary file first, since the protocol sends the size before the data
    #[arg(required_unless_present_any = ["code", "find"])]
    files: Vec<PathBuf>,
    /// List the fup servers announced on the LAN (heard within 2 s): name, address, port,
    /// identity, whether it is pinned here, and an open pairing code's number; then exit
    #[arg(long, conflicts_with_all = ["code", "server"])]
    find: bool,
    /// The server, read from the arguments.
    #[arg(skip)]
    host: Address,
    /// The pairing code the server's operator got from `fup-server --pair` (N-word-word-word):
    /// proves this first contact both ways (pins the server; the server trusts this client
    /// from then on). Works once; then the files go
    #[arg(long, value_name = "CODE", conflicts_with_all = ["plain", "pin"], value_parser = str::parse::<Code>)]
    code: Option<Code>,
    /// With --code: the server's address (HOST or HOST:PORT); without it, the server is the one
    /// on the LAN whose announcement carries the code's number
    #[arg(long, value_name = "HOST[:PORT]", requires = "code", value_parser = address)]
    server: Option<Address>,
    /// With --code: what the server calls this client in its trusted clients (default: this
    /// computer's name)
    #[arg(long, value_name = "LABEL", requires = "code")]
    label: Option<String>,
    /// The name to upload standard input (`-`) under
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Server TCP port
    #[arg(short, long, env = "FUP_PORT", default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    #[arg(long, value_name = "SIZE", env = "FUP_CHUNK_SIZE", help = fup::term::args::chunk_size_help(), value_parser = chunk_size)]
    chunk_size: Option<u32>,
    /// Time allowed to connect, for each write, and for the server's result; seconds, or with
    /// a unit: 90s, 2m, 500ms
    #[arg(short, long, value_name = "DURATION", env = "FUP_TIMEOUT", default_value_t = Seconds(DEFAULT_TIMEOUT), value_parser = seconds)]
    timeout: Seconds,
    /// Time allowed for the server's operator to answer the request
    #[arg(long, value_name = "DURATION", env = "FUP_ANSWER_TIMEOUT", default_value_t = Seconds(DEFAULT_ANSWER_TIMEOUT), value_parser = seconds)]
    answer_timeout: Seconds,
    /// Print each stored file's digest: in secure mode the BLAKE3 that was checked end to end,
    /// in b3sum format; to a plain server the SHA-256, in sha256sum format (costs the
    /// zero-copy path: see the README)
    #[arg(long)]
    checksum: bool,
    /// The response byte that means "accepted" for this server: 0 (Python, fup, the C# book's
    /// FileReceiver) or 1 (the C# copies that use it) [default: told from whether the server
    /// closes at once, as every known server does when it denies]
    #[arg(long, value_name = "0|1", env = "FUP_ACCEPT_BYTE", value_parser = response_byte)]
    accept_byte: Option<ResponseByte>,
    /// Print only denials and errors: no progress bars, no lines for stored files
    #[arg(short, long)]
    quiet: bool,
    /// Print one JSON object per file on stdout instead of text, as each file ends (every
    /// argument and every file inside a folder, skipped ones too), each with every key of the
    /// README's schema (null where it does not apply): file, name, verdict (stored, denied,
    /// failed, skipped, error), code, reason, stored, stored_as, size, seconds, rate, blake3,
    /// sha256, resumed, secure
    #[arg(long)]
    json: bool,
    /// Require secure mode: a server that does not offer it is an error, and nothing is sent
    #[arg(long, conflicts_with = "plain")]
    secure: bool,
    /// Never offer secure mode: the plain protocol's bytes exactly, unencrypted and
    /// unauthenticated (for servers that mishandle the offer)
    #[arg(long)]
    plain: bool,
    /// Require the server to show this identity (what `fup-server --show-identity` prints
    /// there), whatever known_hosts says; implies secure mode
    #[arg(long, value_name = "ID", conflicts_with = "plain", value_parser = str::parse::<Identity>)]
    pin: Option<Identity>,
    /// Send up to N files at once, each over its own connection, to a server that takes
    /// files one by one (a plain one: the Python server serves one connection at a time, so
    /// the default is 1). A fup server gets the whole command as one batch instead
    #[arg(short = 'j', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// When a secure upload's connection breaks, or the server cannot be reached (it may be
    /// restarting), connect again and resume, up to N times (waiting 1 s, 2 s, 4 s, … 30 s
    /// between tries); the exit status is the last try's. Without it, running the same
    /// command again resumes
    #[arg(long, value_name = "N", env = "FUP_RETRY", default_value_t = 0)]
    retry: u32,
    /// Print this installation's identity (the hash of its public key, made on first use in
    /// $FUP_CONFIG_DIR, else $XDG_CONFIG_HOME/fup, else ~/.config/fup) and exit
    #[arg(long)]
    show_identity: bool,
    #[command(flatten)]
    about: fup::term::generate::About,
}

fn main() -> ExitCode {
    fup::sys::keep_freed_memory();
    fup::sys::enable_escapes();
    // --completions and --man are answered before the usual parsing: see Args.
    fup::term::generate::handle::<Args>(true);
    let args: Args = parse_with_address(|a: &mut Args| {
        a.resolve_target();
        (&mut a.host, &mut a.port)
    });
    let stdin_files = args.files.iter().filter(|p| is_stdin(p)).count();
    if stdin_files > 1 || (stdin_files == 1) != args.name.is_some() {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "standard input (-) is uploaded once, and needs --name NAME; --name is only for -",
            )
            .exit();
    }
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fup-client: {err:#}");
            ExitCode::from(1)
        }
    }
}

impl Args {
    /// The server and the files, from the arguments: with --code, every argument is a file
    /// and the server is --server's; else the first is the server.
    fn resolve_target(&mut self) {
        use clap::CommandFactory;
        let target = self.target.clone().unwrap_or_default();
        if self.find {
            return;
        }
        if self.code.is_some() {
            self.files.insert(0, PathBuf::from(target));
            self.host = self.server.clone().unwrap_or_default();
            return;
        }
        self.host = address(&target).unwrap_or_else(|why| {
            Args::command()
                .error(clap::error::ErrorKind::ValueValidation, why)
                .exit()
        });
    }
}

/// `--find`: the servers heard on the LAN, a line each, their words escaped.
fn find(args: &Args) -> anyhow::Result<ExitCode> {
    let found = discover::find(Duration::from_secs(2), |_| false)
        .context("cannot listen for servers on the LAN (mDNS)")?;
    let known_hosts = files::config_dir(|name| std::env::var(name).ok())
        .unwrap_or_default()
        .join(files::KNOWN_HOSTS);
    if args.json {
        for server in &found {
            println!("{}", found_json(server, &known_hosts));
        }
    } else if found.is_empty() {
        eprintln!("fup-client: no fup server answered on the LAN within 2 s");
    } else {
        for server in &found {
            println!("{}", found_line(server, &known_hosts));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `server` is pinned here at one of its addresses, with the identity it claims.
fn pinned(server: &discover::Found, known_hosts: &Path) -> bool {
    server.addrs.iter().any(|addr| {
        let host = HostPort {
            host: addr.to_string(),
            port: server.port,
        };
        matches!(files::known_host(known_hosts, &host), Ok(Some(known)) if Some(known.id) == server.id)
    })
}

fn found_line(server: &discover::Found, known_hosts: &Path) -> String {
    let addr = server
        .addrs
        .first()
        .map(|addr| {
            HostPort {
                host: addr.to_string(),
                port: server.port,
            }
            .to_string()
        })
        .unwrap_or_else(|| format!("?:{}", server.port));
    let id = server
        .id
        .map_or("(no identity)".to_string(), |id| id.to_string());
    let pinned = match pinned(server, known_hosts) {
        true => "pinned",
        false => "not pinned",
    };
    let pairing = server
        .pair
        .map(|n| format!(", pairing code {n}-…"))
        .unwrap_or_default();
    format!(
        "\"{}\"  {addr}  {id}  ({pinned}{pairing})",
        fup::text::from_peer(&server.name)
    )
}

fn found_json(server: &discover::Found, known_hosts: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": fup::text::defuse(&server.name),
        "addresses": server.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "port": server.port,
        "identity": server.id.map(|id| id.to_string()),
        "pinned": pinned(server, known_hosts),
        "pairing": server.pair,
    })
}

/// With --code and no --server: the server on the LAN whose announcement carries the code's
/// number (a hint: the pairing proves it).
fn find_pairing(code: &Code, port: &mut u16) -> anyhow::Result<Address> {
    let number = code.number();
    let found = discover::find(Duration::from_secs(5), |server| server.pair == Some(number))
        .context("cannot look for the server on the LAN (mDNS); give --server HOST")?;
    let server = found
        .iter()
        .find(|server| server.pair == Some(number) && !server.addrs.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no fup server on the LAN has pairing code {number}-… open (heard {} server(s) in 5 s); give --server HOST",
                found.len()
            )
        })?;
    *port = server.port;
    Ok(Address {
        host: server.addrs[0].to_string(),
        port: Some(server.port),
    })
}

fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    if args.find {
        return find(&args);
    }
    if let (Some(code), true) = (&args.code, args.host.host.is_empty()) {
        args.host = find_pairing(code, &mut args.port)?;
    }
    let presenter = Arc::new(Presenter::new(&args));
    // On a signal: what the server keeps, then 128 + its number.
    let on_signal = Arc::clone(&presenter);
    let _ = fup::term::signals::exit_on_signals(move |signal| on_signal.interrupted(signal));
    let keys = match args.plain {
        true => None,
        false => Some(
            keys::installation(|name| std::env::var(name).ok())
                .context("cannot set up secure mode (--plain sends unencrypted)")?,
        ),
    };
    let stdin = match &args.name {
        Some(name) => {
            let mut file =
                tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
            io::copy(&mut io::stdin().lock(), file.as_file_mut())
                .context("cannot read standard input")?;
            Some(Spooled {
                name: name.clone(),
                file,
            })
        }
        None => None,
    };
    let plan = Plan {
        host: HostPort {
            host: args.host.host.clone(),
            port: args.port,
        },
        mode: match (
            args.plain,
            args.secure || args.pin.is_some() || args.code.is_some(),
        ) {
            (true, _) => Mode::Plain,
            (false, true) => Mode::Secure,
            (false, false) => Mode::Auto,
        },
        pin: args.pin,
        known_hosts: files::config_dir(|name| std::env::var(name).ok())
            .unwrap_or_default()
            .join(files::KNOWN_HOSTS),
        paths: args.files.clone(),
        stdin,
        chunk_size: args.chunk_size,
        timeout: args.timeout.into(),
        answer_timeout: args.answer_timeout.into(),
        checksum: args.checksum,
        accept_byte: args.accept_byte,
        parallel: args.parallel.into(),
        retry: args.retry,
        pair: args.code.clone().map(|code| PairPlan {
            code,
            label: args
                .label
                .clone()
                .or_else(fup::sys::host_name)
                .unwrap_or_else(|| "fup-client".to_string()),
        }),
    };
    let paired = args.code.is_some();
    let first_contact = |host: &HostPort, id: &Identity| match io::stdin().is_terminal()
        && io::stderr().is_terminal()
        && args.name.is_none()
    {
        // The code proves it: nothing to ask, nothing recorded before the proof.
        _ if paired => FirstContact::Deferred,
        false => FirstContact::Recorded,
        true => {
            presenter.hold();
            let trusted = fup::term::prompt::ask_trust(
                &host.to_string(),
                id,
                &mut io::stdin().lock(),
                &mut io::stderr(),
            );
            presenter.asked.store(true, Ordering::SeqCst);
            match trusted {
                true => FirstContact::Answered,
                false => FirstContact::Refused,
            }
        }
    };
    let report = command::run(&plan, keys.as_ref(), first_contact, &|event| {
        presenter.show(event)
    });
    presenter.finish(&report);
    Ok(match report.all_stored() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// What the last bytes looked like, for the bar's message and for a signal's words.
#[derive(Default)]
struct Live {
    /// The bar, on a terminal, while something is being sent.
    bar: Option<ProgressBar>,
    /// What it shows besides the figures.
    caption: Arc<Mutex<Caption>>,
    /// What is being sent: its name, its bytes.
    label: String,
    total: u64,
    /// At the server so far.
    done: u64,
    /// Whether it goes in secure mode (a cut one is kept for a resume).
    secure: Option<bool>,
    /// When the server accepted (none: waiting for it).
    accepted: Option<Instant>,
    /// When bytes last moved.
    moved_at: Option<Instant>,
}

/// Shows the command's events: a bar on a terminal, a line (or a JSON object) per file.
struct Presenter {
    json: bool,
    quiet: bool,
    checksum: bool,
    bars: bool,
    /// Whether several files are sent (a total line follows) or only one.
    many: bool,
    /// The server named on the command line, for notes.
    host: Address,
    live: Mutex<Live>,
    /// Whether the first-contact question was asked (the note says "now pinned").
    asked: AtomicBool,
    /// How the batch went, when there was one.
    batch: Mutex<Option<BatchFigures>>,
}

impl Presenter {
    fn new(args: &Args) -> Presenter {
        let many = args.files.len() > 1 || args.files.iter().any(|p| !is_stdin(p) && p.is_dir());
        Presenter {
            json: args.json,
            quiet: args.quiet,
            checksum: args.checksum,
            bars: !args.quiet && !args.json && io::stderr().is_terminal(),
            many,
            host: args.host.clone(),
            live: Mutex::new(Live::default()),
            asked: AtomicBool::new(false),
            batch: Mutex::new(None),
        }
    }

    /// Prints `line` on stderr (or stdout), above the bar when there is one.
    fn say(&self, line: &str, to_stdout: bool) {
        let live = lock(&self.live);
        let print = || match to_stdout {
            true => drop(writeln!(io::stdout().lock(), "{line}")),
            false => drop(writeln!(io::stderr().lock(), "{line}")),
        };
        match &live.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Hides the bar while the terminal is someone else's (a question).
    fn hold(&self) {
        if let Some(bar) = lock(&self.live).bar.take() {
            bar.finish_and_clear();
        }
    }

    fn show(&self, event: Event) {
        match event {
            Event::File(result) => self.file(&result),
            Event::Together {
                verdict,
                reason,
                totals,
                files,
                ..
            } => self.together(verdict, &reason, totals.as_ref(), &files),
            Event::Note(note) => self.note(note),
            Event::Starting {
                label,
                bytes,
                files,
                secure,
            } => {
                let mut live = lock(&self.live);
                live.secure = Some(secure);
                live.label = label;
                live.total = bytes;
                live.done = 0;
                live.accepted = None;
                // What it shows is set before its first draw.
                self.redraw(&live);
                if self.bars && live.bar.is_none() && files > 0 {
                    live.bar = Some(bar::progress_bar(&live.caption, bytes));
                }
            }
            Event::Waiting => {
                let mut live = lock(&self.live);
                live.accepted = None;
                if self.bars && live.bar.is_none() {
                    live.bar = Some(bar::progress_bar(&live.caption, live.total));
                }
                self.redraw(&live);
            }
            Event::Accepted { already } => {
                let mut live = lock(&self.live);
                let now = Instant::now();
                live.accepted = Some(now);
                live.moved_at = Some(now);
                live.done = already;
                if let Some(bar) = &live.bar {
                    // What a cut try left counts as done, not as this try's speed: the
                    // estimate starts over from there.
                    bar.set_position(already);
                    bar.reset_eta();
                }
                self.redraw(&live);
            }
            Event::Resumed { resumed, total } => {
                if !self.quiet && !self.json {
                    self.say(
                        &format!("fup-client: {}", results::resumed_line(&resumed, total)),
                        false,
                    );
                }
            }
            Event::Progress { bytes, .. } => {
                let mut live = lock(&self.live);
                if bytes > live.done {
                    live.moved_at = Some(Instant::now());
                }
                live.done = bytes;
                lock(&live.caption).moved_at = live.moved_at;
                if let Some(bar) = &live.bar {
                    bar.set_position(bytes);
                }
            }
            Event::Retrying {
                why,
                wait,
                attempt,
                of,
            } => {
                let line = format!(
                    "fup-client: {}; trying again in {} s ({attempt} of {of})",
                    text::from_peer(&why),
                    wait.as_secs()
                );
                self.say(&line, false);
                let mut live = lock(&self.live);
                live.accepted = None;
                self.redraw(&live);
            }
            Event::BatchEnd {
                totals,
                elapsed,
                moved,
                resumed,
            } => {
                *lock(&self.batch) = Some(BatchFigures {
                    totals,
                    elapsed,
                    moved,
                    resumed,
                });
            }
        }
    }

    /// Tells the bar what it shows besides the figures.
    fn redraw(&self, live: &Live) {
        *lock(&live.caption) = Caption {
            name: live.label.clone(),
            waiting: live.accepted.is_none(),
            moved_at: live.moved_at,
        };
        let Some(bar) = &live.bar else { return };
        bar.set_length(live.total);
        bar.set_position(live.done);
    }

    fn note(&self, note: Note) {
        lock(&self.live).secure = Some(!matches!(note, Note::Plain));
        let asked = self.asked.load(Ordering::SeqCst);
        self.say(
            &results::note_line(&note, &self.host.to_string(), asked),
            false,
        );
    }

    fn file(&self, result: &FileResult) {
        if result.verdict != Verdict::Skipped {
            lock(&self.live).secure = Some(result.secure);
        }
        if self.json {
            self.say(&results::json(result).to_string(), true);
            return;
        }
        if let Some((line, stream)) = results::file_line(result, self.quiet, self.many) {
            self.say(&line, stream == Stream::Out);
        }
        if let (true, Some(digest)) = (self.checksum, result.digest) {
            let hex = match digest {
                Digest::Blake3(d) | Digest::Sha256(d) => text::hex(&d),
            };
            // sha256sum's and b3sum's format, so `-c` can check the local file.
            self.say(&format!("{hex}  {}", results::shown(&result.file)), true);
        }
    }

    /// One cause for many files: said once (each file in JSON).
    fn together(
        &self,
        verdict: Verdict,
        reason: &str,
        totals: Option<&Totals>,
        files: &[FileResult],
    ) {
        if let Some(first) = files.first() {
            lock(&self.live).secure = Some(first.secure);
        }
        match self.json {
            true => files
                .iter()
                .for_each(|r| self.say(&results::json(r).to_string(), true)),
            false => self.say(
                &results::together_line(verdict, reason, totals, files),
                false,
            ),
        }
    }

    /// After everything: the bar goes, and with several files a total line.
    fn finish(&self, report: &Report) {
        if let Some(bar) = lock(&self.live).bar.take() {
            bar.finish_and_clear();
        }
        if self.quiet || self.json {
            return;
        }
        let files = report.stored + report.denied + report.failed + report.errors;
        if files <= 1 && report.skipped == 0 && !self.many {
            return;
        }
        let line = results::totals_line(report, lock(&self.batch).as_ref());
        let _ = writeln!(io::stdout().lock(), "{line}");
    }

    /// On a signal: what the server keeps of what was cut, then the program ends.
    fn interrupted(&self, signal: i32) {
        let live = lock(&self.live);
        if let Some(bar) = &live.bar {
            bar.finish_and_clear();
        }
        let kept =
            results::interrupted_words(live.secure, live.accepted.is_some(), live.done, live.total);
        let _ = writeln!(
            io::stderr(),
            "\nfup-client: {}{kept}",
            fup::term::signals::describe(signal)
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
