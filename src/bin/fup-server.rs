//! `fup-server`: receive files over FUP, asking the operator before accepting each one.
#![deny(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fup::ResponseByte;
use fup::net::discover::Announcer;
use fup::secure::pair::Pairing;
use fup::secure::web_cert::WebCert;
use fup::secure::{Identity, files, keys, tls};
use fup::server::policy::Cidr;
use fup::server::web::Web;
use fup::server::{
    Budget, DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, End, Event, Partials, Policy, SHUTDOWN_GRACE,
    SecureMode, Server, Store, TrustedClients, budget,
};
use fup::term::args::{Seconds, at_least_one, response_byte, seconds, size, size_or_zero};
use fup::term::{DEFAULT_PROMPT_TIMEOUT, Screen, TerminalApprover, signals, status_line};

/// Receive files over FUP (File Upload Protocol), asking at the terminal before accepting each.
///
/// Prints `listening on ADDR:PORT` once ready, then `identity: ID` (this installation's, for
/// clients to compare), bound to every interface `reachable at` the addresses clients can use,
/// then one line per connection. Secure mode (TLS 1.3, both sides identified by key) is
/// offered to fup clients on the same port, and a fup client's files and folders come as one
/// batch with one question; plain clients (the Python and C# programs, `fup-client --plain`)
/// are served as before. Any browser can send files too, from a page on the same port (over
/// http:// and https://, whose certificate's fingerprint is printed; `web:` lines say where,
/// with a QR code on a terminal), with the same questions and policies; --no-web turns it
/// off. Answers are read from standard input, one line per question:
/// `y`/`yes` accepts, `n`/`no` or Enter denies, `a`/`always` accepts a secure client and
/// trusts it from then on, anything else asks again (3 times, then denies). Once standard
/// input is closed, what would need a question is denied without one (said once; the log has
/// a line per decision). Decisions taken without asking (--yes, trusted clients,
/// --accept-from, --require-secure, --max-size, too little free space, a timeout) are logged
/// with their reason; --max-size refuses each file over it alone, and the rest of a batch goes
/// on. Unsafe names (paths, control characters, a dot file at the top…) are refused without
/// asking. Files are never overwritten: a name that exists is stored as `name (1).ext`.
/// Modification times are kept. Ctrl-C (or SIGTERM) removes partial plain uploads and exits
/// with 128 + the signal's number (130, 143).
#[derive(Parser)]
#[command(
    name = "fup-server",
    version,
    after_help = "Examples:\n  fup-server ./uploads\n  fup-server --accept-from 192.168.1.0/24 --max-size 10GiB ./uploads\n  fup-server --yes --port 6000 --bind 127.0.0.1 /tmp/inbox"
)]
struct Args {
    /// Directory to store accepted files in (created if missing)
    #[arg(env = "FUP_DIR")]
    dir: PathBuf,
    /// TCP port to listen on (0 picks a free port)
    #[arg(short, long, env = "FUP_PORT", default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on (default: all IPv4 interfaces)
    #[arg(short, long, env = "FUP_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Accept every upload without asking
    #[arg(short, long)]
    yes: bool,
    /// Time a client has to send each message whole after its first (see --hello-timeout),
    /// and a batch's whole list of entries; seconds, or with a unit: 90s, 2m, 500ms
    #[arg(short, long, value_name = "DURATION", env = "FUP_TIMEOUT", default_value_t = Seconds(DEFAULT_TIMEOUT), value_parser = seconds)]
    timeout: Seconds,
    /// Time the operator has to answer a question before the upload is denied
    #[arg(long, value_name = "DURATION", env = "FUP_PROMPT_TIMEOUT", default_value_t = Seconds(DEFAULT_PROMPT_TIMEOUT), value_parser = seconds)]
    prompt_timeout: Seconds,
    /// Accept uploads from these address ranges without asking (e.g. 10.0.0.0/8,192.168.1.7)
    #[arg(short, long, value_name = "CIDR,...", env = "FUP_ACCEPT_FROM", value_delimiter = ',', value_parser = str::parse::<Cidr>)]
    accept_from: Vec<Cidr>,
    /// Deny, without asking, files larger than this (e.g. 500M, 10GiB; K/M/G/T are powers of 1024)
    #[arg(short, long, value_name = "SIZE", env = "FUP_MAX_SIZE", value_parser = size)]
    max_size: Option<u64>,
    /// Print each stored file's digest: for secure uploads the BLAKE3 that was checked end to
    /// end, in b3sum format; for plain ones the SHA-256, in sha256sum format (costs the
    /// zero-copy path: see the README)
    #[arg(long)]
    checksum: bool,
    /// Print only failed connections and errors, not stored or denied uploads
    #[arg(short, long)]
    quiet: bool,
    /// Print one JSON object per line on stdout instead of text: `{"listening": ADDR}` once
    /// ready (with `identity`, `reachable`, `web` and `web_fingerprint`), then one per
    /// connection or browser upload (time, connection, peer, verdict, name, size, received,
    /// stored, seconds, rate, reason, sha256, error: those that apply)
    #[arg(long)]
    json: bool,
    /// The response byte that means "accepted" to this server's clients: 0 for the Python
    /// programs, fup and the C# book's own FileSender; 1 for the C# copies that use it (their
    /// requests look the same, so say which). A denial gets the other byte
    #[arg(long, value_name = "0|1", env = "FUP_ACCEPT_BYTE", default_value_t = ResponseByte::DEFAULT_ACCEPT, value_parser = response_byte)]
    accept_byte: ResponseByte,
    /// Connections served at once; more are closed as they arrive
    #[arg(long, value_name = "N", env = "FUP_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u16).range(1..))]
    max_connections: u16,
    /// Connections one address (an IPv6 /64) may hold at once; more from it are closed as
    /// they arrive
    #[arg(long, value_name = "N", env = "FUP_MAX_PER_ADDRESS", default_value_t = budget::DEFAULT_PER_ADDRESS, value_parser = at_least_one)]
    max_per_address: usize,
    /// Connections one secure client (one identity) may hold at once; more are closed after
    /// the handshake
    #[arg(long, value_name = "N", env = "FUP_MAX_PER_CLIENT", default_value_t = budget::DEFAULT_PER_CLIENT, value_parser = at_least_one)]
    max_per_client: usize,
    /// Questions from one address that may wait for the operator at once; more are denied
    /// at once (questions are asked in turn across addresses)
    #[arg(long, value_name = "N", env = "FUP_MAX_QUESTIONS_PER_ADDRESS", default_value_t = budget::DEFAULT_QUESTIONS_PER_ADDRESS, value_parser = at_least_one)]
    max_questions_per_address: usize,
    /// Questions from one secure client (one identity) that may wait for the operator at
    /// once; more are denied at once
    #[arg(long, value_name = "N", env = "FUP_MAX_QUESTIONS_PER_CLIENT", default_value_t = budget::DEFAULT_QUESTIONS_PER_CLIENT, value_parser = at_least_one)]
    max_questions_per_client: usize,
    /// Memory the lists of entries of all batches in flight may take together; a batch
    /// whose list would go past it is denied, to try again later (e.g. 64M, 1G)
    #[arg(long, value_name = "SIZE", env = "FUP_MANIFEST_MEMORY", default_value = "128M", value_parser = size)]
    manifest_memory: u64,
    /// Time a new connection has to send its first message and, in secure mode, to end the
    /// TLS handshake (at most --timeout)
    #[arg(long, value_name = "DURATION", env = "FUP_HELLO_TIMEOUT", default_value_t = Seconds(budget::DEFAULT_HELLO_TIMEOUT), value_parser = seconds)]
    hello_timeout: Seconds,
    /// Refuse plain uploads (they are unencrypted, and their address proves nothing): only
    /// fup clients in secure mode may upload
    #[arg(long)]
    require_secure: bool,
    /// How long what a cut secure upload received is kept for the same client to resume it
    /// (running the same command again); e.g. 24h, 7d
    #[arg(long, value_name = "DURATION", env = "FUP_KEEP_PARTIAL", default_value = "24h", value_parser = seconds)]
    keep_partial: Seconds,
    /// Most bytes cut uploads may keep together for resuming (the oldest go first); 0 keeps
    /// nothing, as plain uploads never do
    #[arg(long, value_name = "SIZE", env = "FUP_MAX_PARTIAL", default_value = "16G", value_parser = size_or_zero)]
    max_partial: u64,
    /// Secure clients accepted without asking: one identity per line, an optional label after
    /// it, `#` comments (default: trusted_clients in the configuration directory). Answering
    /// `a` (always) at the prompt adds the client to it
    #[arg(long, value_name = "FILE", env = "FUP_TRUSTED_CLIENTS")]
    trusted_clients: Option<PathBuf>,
    /// Print a pairing code (`code: N-word-word-word`) for a client's first contact:
    /// `fup-client --code CODE --server HOST FILES` proves it both ways, pins this server and
    /// is trusted here from then on. A code works once (a wrong one spends it too)
    #[arg(long)]
    pair: bool,
    /// How long a pairing code is good for
    #[arg(long, value_name = "DURATION", env = "FUP_PAIR_TIMEOUT", default_value = "10m", value_parser = seconds)]
    pair_timeout: Seconds,
    /// Do not announce this server on the LAN (mDNS/DNS-SD `_fup._tcp`: its name, port,
    /// identity and open pairing code's number, for `fup-client --find` and `--code`). A
    /// server bound to a loopback address is never announced
    #[arg(long)]
    no_announce: bool,
    /// Do not serve the upload page (browsers, over http:// and https://, on the same port)
    #[arg(long)]
    no_web: bool,
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
    fup::sys::few_heap_arenas();
    // --completions and --man are answered before the usual parsing: see Args.
    fup::term::generate::handle::<Args>(true);
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fup-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open(&args.dir)
        .with_context(|| format!("cannot use upload directory {}", args.dir.display()))?;
    let swept = store
        .sweep_stale()
        .context("cannot list the upload directory")?;
    if swept > 0 {
        eprintln!("fup-server: removed {swept} partial upload(s) left by an earlier run");
    }
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = fup::net::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    // The port it got (with --port 0, the system picks one).
    let bound = listener.local_addr().unwrap_or(addr);
    let warning = policy(&args).open_door(bound);
    if let Some(warning) = warning {
        eprintln!("fup-server: warning: {warning}");
    }
    // Started in the background (`fup-server DIR &`), it must not be stopped by its terminal:
    // it keeps serving, and questions wait for `fg` or their timeout.
    if io::stdin().is_terminal() || io::stderr().is_terminal() {
        fup::sys::ignore_terminal_stops();
    }
    // On a terminal, log lines, live status lines and questions share the screen in order.
    let screen =
        (io::stdout().is_terminal() && io::stderr().is_terminal()).then(|| Arc::new(Screen::new()));
    let (secure, identity) = secure_mode(&args)?;
    let mut server = server(&args, store, screen.clone())?.with_secure(secure);
    if !args.no_web {
        server = server.with_web(web_page());
    }
    // Pairing is always possible; a code is opened only when the operator asks (--pair).
    let pairing = Arc::new(Pairing::new(args.pair_timeout.into()));
    let code = args.pair.then(|| pairing.open());
    server = server.with_pairing(pairing);
    if args.max_partial > 0 {
        match Partials::in_dir(&args.dir, args.keep_partial.into(), args.max_partial) {
            Ok(partials) => {
                let swept = partials
                    .sweep()
                    .context("cannot list the partial uploads")?;
                if swept.removed > 0 {
                    eprintln!("fup-server: {swept}");
                }
                server = server.with_partials(partials);
            }
            // Serving without resume beats not serving: cut uploads then keep nothing.
            Err(err) => eprintln!("fup-server: warning: {NO_RESUME}: {err}"),
        }
    }
    let server = Arc::new(server);
    let on_signal = Arc::clone(&server);
    signals::exit_on_signals(move |signal| {
        let removed = on_signal.shutdown(SHUTDOWN_GRACE);
        // Not eprintln!: with the terminal gone it would panic here, and the server would
        // never exit.
        let _ = writeln!(
            io::stderr(),
            "\nfup-server: {}; denied waiting requests, removed {removed} partial upload(s)",
            signals::describe(signal)
        );
    })
    .context("cannot handle signals")?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let log = Log {
        // Unattended logs get timestamps; a terminal shows the time itself.
        stamp: !io::stdout().is_terminal(),
        screen,
        quiet: args.quiet,
        json: args.json,
    };
    // Bound to every interface, the address says nothing a client could use: these do.
    let reachable = fup::net::reachable_at(bound);
    let pages: Vec<String> = match server.web() {
        None => Vec::new(),
        Some(_) if bound.ip().is_unspecified() => reachable
            .iter()
            .map(|addr| format!("http://{addr}/"))
            .collect(),
        Some(_) => vec![format!("http://{bound}/")],
    };
    let fingerprint = server.web().and_then(|web| web.fingerprint());
    let ready = match args.json {
        true => serde_json::json!({
            "listening": bound.to_string(),
            "identity": identity.to_string(),
            "reachable": reachable.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "web": pages,
            "web_fingerprint": fingerprint,
            "code": code.as_ref().map(ToString::to_string),
        })
        .to_string(),
        false => {
            let mut lines = vec![
                format!("listening on {bound}"),
                format!("identity: {identity}"),
            ];
            if bound.ip().is_unspecified() {
                let list: Vec<String> = reachable.iter().map(ToString::to_string).collect();
                lines.push(format!("reachable at {}", list.join(", ")));
            }
            if let Some(code) = &code {
                lines.push(format!(
                    "code: {code} (for one client's first contact: fup-client --code {code} \
                     --server ADDRESS FILES; works once, for {})",
                    humantime::format_duration(args.pair_timeout.into())
                ));
            }
            lines.extend(pages.iter().map(|page| format!("web: {page}")));
            if let Some(fingerprint) = fingerprint {
                lines.push(format!(
                    "web certificate (https:// on the same port): SHA-256 {fingerprint}"
                ));
            }
            // A phone scans the first address rather than typing it.
            if let Some(code) = pages
                .first()
                .filter(|_| io::stdout().is_terminal())
                .and_then(|page| fup::term::qr::code(page))
            {
                lines.push(code);
            }
            lines.join("\n")
        }
    };
    // On the LAN for fup-client --find and --code; the open code's number kept current.
    let _announcer = (!args.no_announce && !bound.ip().is_loopback())
        .then(|| announce(bound.port(), &identity, server.pairing().cloned()))
        .flatten();
    // One write, and not println!: a reader that closes stdout after the first line (or at
    // any time) must not make the server panic; its log lines are dropped the same way.
    let _ = io::stdout()
        .lock()
        .write_all(format!("{ready}\n").as_bytes());
    server
        .serve(listener, move |event| log.report(event))
        .context("cannot accept connections")
}

/// What a directory of partials that is not the server's own means.
const NO_RESUME: &str = "cut secure uploads will not resume (nothing is kept)";

/// Where and how the server's events are shown.
struct Log {
    /// The terminal's live screen, when stdout and stderr are one.
    screen: Option<Arc<Screen>>,
    /// `-q`: only failures.
    quiet: bool,
    /// `--json`: one object per line.
    json: bool,
    /// RFC 3339 timestamps at the start of each text line.
    stamp: bool,
}

/// Now, as RFC 3339 in UTC to the second: `2026-11-26T10:05:42Z`.
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Secure mode as the arguments and the configuration directory set it up: the
/// installation's key (made on first use) and the trusted clients.
fn secure_mode(args: &Args) -> anyhow::Result<(SecureMode, Identity)> {
    let var = |name: &str| std::env::var(name).ok();
    let keys = keys::installation(var).context("cannot set up secure mode")?;
    let config = tls::server_config(&keys)?;
    let file = match &args.trusted_clients {
        Some(file) => file.clone(),
        // installation() found the directory already.
        None => files::config_dir(var)
            .unwrap_or_default()
            .join(files::TRUSTED_CLIENTS),
    };
    let trusted = TrustedClients::load(&file).context("cannot read the trusted clients")?;
    let identity = keys.identity();
    Ok((
        SecureMode {
            config,
            trusted,
            identity,
        },
        identity,
    ))
}

/// Announces the server on the LAN, the open pairing code's number with it (checked every
/// second); a warning and no announcement when mDNS cannot start.
fn announce(
    port: u16,
    identity: &Identity,
    pairing: Option<Arc<Pairing>>,
) -> Option<Arc<Announcer>> {
    let name = fup::sys::host_name().unwrap_or_else(|| "fup-server".to_string());
    let number = pairing.as_ref().and_then(|p| p.number());
    match Announcer::start(&name, port, identity, number) {
        Ok(announcer) => {
            let announcer = Arc::new(announcer);
            if let Some(pairing) = pairing {
                let watched = Arc::clone(&announcer);
                let _ = std::thread::Builder::new()
                    .name("fup-announce".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                            let _ = watched.set_pair(pairing.number());
                        }
                    });
            }
            Some(announcer)
        }
        Err(err) => {
            eprintln!(
                "fup-server: warning: not announced on the LAN (fup-client --find will not see it): {err}"
            );
            None
        }
    }
}

/// The upload page: over HTTPS too with the certificate kept in the configuration directory
/// (made on first use); over plain HTTP only, with a warning, when it cannot be.
fn web_page() -> Web {
    let var = |name: &str| std::env::var(name).ok();
    let made = files::config_dir(var)
        .ok_or_else(|| "no configuration directory".to_string())
        .and_then(|dir| WebCert::load_or_create(&dir).map_err(|err| err.to_string()))
        .and_then(|cert| Web::with_https(&cert).map_err(|err| err.to_string()));
    match made {
        Ok(web) => web,
        Err(err) => {
            eprintln!("fup-server: warning: the page is served over plain http only: {err}");
            Web::new()
        }
    }
}

/// The rules the arguments set, that decide without asking.
fn policy(args: &Args) -> Policy {
    Policy {
        max_size: args.max_size,
        accept_from: args.accept_from.clone(),
        accept_all: args.yes,
        require_secure: args.require_secure,
    }
}

/// The server the arguments describe: its policy, and the operator at this terminal unless
/// `--yes` leaves nothing to ask.
fn server(args: &Args, store: Store, screen: Option<Arc<Screen>>) -> anyhow::Result<Server> {
    let policy = policy(args);
    let budget = Budget {
        manifests: Arc::new(budget::MemoryBudget::new(args.manifest_memory)),
        clients: budget::PerKey::new(args.max_per_client),
        questions: budget::PerKey::new(args.max_questions_per_address),
        client_questions: budget::PerKey::new(args.max_questions_per_client),
        hello_timeout: args.hello_timeout.into(),
    };
    let mut server = Server::new(store, policy)
        .with_timeout(args.timeout.into())
        .with_max_connections(args.max_connections.into())
        .with_max_per_address(args.max_per_address)
        .with_budget(budget)
        .with_checksum(args.checksum)
        .with_accept_byte(args.accept_byte);
    if !args.yes {
        // Questions go to stderr so that stdout stays one line per event, for scripts.
        let stdin = io::BufReader::new(io::stdin());
        let approver = TerminalApprover::new(stdin, io::stderr(), Some(args.prompt_timeout.into()))
            .context("cannot read answers from standard input")?
            .with_foreground(|| fup::sys::stdin_in_foreground().unwrap_or(true));
        server = match screen {
            Some(screen) => server.with_operator(approver.with_screen(screen)),
            None => server.with_operator(approver),
        };
    }
    Ok(server)
}

/// Prints one event: connection summaries on stdout (above what is live when both are one
/// terminal, with a status line per upload in flight), server troubles on stderr.
impl Log {
    /// Prints one event: connection summaries on stdout (above what is live when both are one
    /// terminal, with a status line per upload in flight), server troubles on stderr.
    fn report(&self, event: Event) {
        let screen = self.screen.as_deref();
        let line = match event {
            Event::Progress(progress) => {
                if let Some(screen) = screen.filter(|_| !self.quiet) {
                    let line = status_line(&progress);
                    screen.set_status(&mut io::stderr().lock(), progress.connection, Some(line));
                }
                return;
            }
            Event::Finished(summary) | Event::Upload(summary) => {
                if let Some(screen) = screen {
                    screen.set_status(&mut io::stderr().lock(), summary.connection, None);
                }
                // A browser's connection: its uploads had their own lines. One that sent
                // nothing (a browser's spare) is no event for people; --json still says so.
                let quiet_end = match summary.end {
                    End::Web(_) => true,
                    End::Idle(_) => !self.json,
                    _ => false,
                };
                if quiet_end || self.quiet && !summary.is_failed() {
                    return;
                }
                if self.json {
                    let mut object = summary.to_json();
                    object["time"] = now().into();
                    object.to_string()
                } else {
                    let line = self.stamped(&summary.to_string());
                    // The digest line stays in sha256sum's format, for `sha256sum -c`.
                    match summary.checksum_line() {
                        Some(checksum) => format!("{line}\n{checksum}"),
                        None => line,
                    }
                }
            }
            Event::PartialsRefused(err) => {
                let _ = writeln!(io::stderr(), "fup-server: warning: {NO_RESUME}: {err}");
                return;
            }
            Event::TrustedClientsUnreadable(err) => {
                let _ = writeln!(
                    io::stderr(),
                    "fup-server: warning: no client is trusted from the trusted clients until this is mended: {err}"
                );
                return;
            }
            Event::Listen(event) if event.is_error() => {
                let _ = writeln!(io::stderr(), "fup-server: {event}");
                return;
            }
            Event::Listen(event) if self.json => serde_json::json!({
                "time": now(),
                "verdict": "closed",
                "error": event.to_string(),
            })
            .to_string(),
            Event::Listen(event) => self.stamped(&event.to_string()),
            Event::Swept(swept) if self.json => serde_json::json!({
                "time": now(),
                "swept": swept.removed,
                "bytes": swept.bytes,
            })
            .to_string(),
            Event::Swept(swept) => self.stamped(&swept.to_string()),
            Event::Paired(paired) if self.json => serde_json::json!({
                "time": now(),
                "paired": paired.id.to_string(),
                "peer": paired.peer.to_string(),
                "label": fup::text::defuse(&paired.label),
                "trusted_clients": paired.file.as_ref().ok().map(|f| f.to_string_lossy()),
            })
            .to_string(),
            Event::Paired(paired) => self.stamped(&paired.to_string()),
        };
        let mut out = io::stdout().lock();
        match screen {
            Some(screen) => screen.log(&mut out, &line),
            // A closed stdout must not take a connection thread down with it.
            None => drop(writeln!(out, "{line}")),
        }
    }

    /// `line`, after a timestamp when stdout is not a terminal.
    fn stamped(&self, line: &str) -> String {
        match self.stamp {
            true => format!("{} {line}", now()),
            false => line.to_string(),
        }
    }
}
