//! `fup-client`: upload files to a FUP server and report its verdict on each.
#![deny(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fup::ResponseByte;
use fup::client::batch::{BatchEvent, BatchOutcome, Resumed, send_batch};
use fup::client::{
    DEFAULT_ANSWER_TIMEOUT, DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT, Delivery, MAX_UNWRAPPED_CHUNKS,
    Options, Sent, auto_chunk_size, upload_file,
};
use fup::secure::dial::{DialError, Dialer, Link, Mode, Note};
use fup::secure::files::{self, HostPort};
use fup::secure::{Identity, keys};
use fup::term::args::{
    Address, Seconds, address, chunk_size, parse_with_address, response_byte, seconds,
};
use fup::text;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Upload files to a FUP (File Upload Protocol) server, one connection per file, in order.
///
/// Secure by default with fup servers: the client offers secure mode (TLS 1.3, both sides
/// identified by key) and uses it when the server answers; the server's identity is pinned
/// on first contact (asked on a terminal, recorded otherwise) in known_hosts, and a pinned
/// server that shows another identity, or stops offering secure mode, is refused before
/// anything is sent. A server that does not offer it (the Python and C# programs, older fup)
/// gets the plain protocol, with one note on stderr.
///
/// On a terminal each file gets a progress bar (bytes, rate, time left, and "stalled" when
/// nothing moved for 5 s); otherwise one line per file. Stored files are reported on stdout,
/// denials and failures on stderr.
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
    /// Server: host name or IP address, with :PORT if you like (IPv6 as ::1 or [::1]:PORT)
    #[arg(value_parser = address)]
    host: Address,
    /// Files to upload; `-` is standard input (with --name), read to its end into an unlinked
    /// temporary file first, since the protocol sends the size before the data
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The name to upload standard input (`-`) under
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Server TCP port
    #[arg(short, long, env = "FUP_PORT", default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    #[arg(long, value_name = "SIZE", env = "FUP_CHUNK_SIZE", help = chunk_size_help(), value_parser = chunk_size)]
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
    /// Print one JSON object per file on stdout instead of text: file, name, size, verdict
    /// (stored, denied, failed, error), seconds, rate, sha256 and error, those that apply
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
    /// When a secure upload's connection breaks, connect again and resume, up to N times
    /// (waiting 1 s, 2 s, 4 s, … 30 s between tries); the exit status is the last try's.
    /// Without it, running the same command again resumes
    #[arg(long, value_name = "N", env = "FUP_RETRY", default_value_t = 0)]
    retry: u32,
    /// Print this installation's identity (the hash of its public key, made on first use in
    /// $FUP_CONFIG_DIR, else $XDG_CONFIG_HOME/fup, else ~/.config/fup) and exit
    #[arg(long)]
    show_identity: bool,
    #[command(flatten)]
    about: fup::term::generate::About,
}

/// `--chunk-size`'s help, with the figures taken from the library so it cannot drift.
fn chunk_size_help() -> String {
    let grown_past_gib = (u64::from(DEFAULT_CHUNK_SIZE) * MAX_UNWRAPPED_CHUNKS) >> 30;
    format!(
        "Bytes per data message (e.g. 64K, 1M), used exactly; seq wraps past {} messages, \
         which only fup servers accept [default: {DEFAULT_CHUNK_SIZE}, grown for files over \
         {grown_past_gib} GiB so that the original Python server can take them]",
        thousands(MAX_UNWRAPPED_CHUNKS)
    )
}

/// `65536` as `65,536`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// No bytes for this long while sending, and the bar says "stalled".
const STALLED_AFTER: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    fup::net::sys::keep_freed_memory();
    // --completions and --man are answered before the usual parsing: see Args.
    fup::term::generate::handle::<Args>(true);
    let args: Args = parse_with_address(|a: &mut Args| (&mut a.host, &mut a.port));
    // The connection closes with the process; the server then removes the partial file of a
    // plain upload, and keeps a secure one's for a resume.
    let _ = fup::term::signals::exit_on_signals(|_| {});
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
    let bars = !args.quiet && !args.json && io::stderr().is_terminal();
    let (mut stored, mut denied, mut failed) = (0, 0, 0);
    let keys = match args.plain {
        true => None,
        false => match keys::installation(|name| std::env::var(name).ok()) {
            Ok(keys) => Some(keys),
            Err(err) => {
                eprintln!(
                    "fup-client: cannot set up secure mode: {err} (--plain sends unencrypted)"
                );
                return ExitCode::from(1);
            }
        },
    };
    let asked = Cell::new(false);
    let mut dialer = match dialer(&args, keys.as_ref(), &asked) {
        Ok(dialer) => dialer,
        Err(err) => {
            eprintln!("fup-client: {err:#}");
            return ExitCode::from(1);
        }
    };
    // With a server that offers secure mode, the whole command is one batch. What
    // cannot be read is said first, without connecting, and is not part of it.
    let mut first = None;
    let (files, missing) = readable(&args.files);
    let say_missing = |failed: &mut usize| {
        for (path, err) in &missing {
            *failed += 1;
            let err = anyhow::anyhow!("cannot open file: {err}");
            match args.json {
                true => println!("{}", json(path, &Err(err))),
                false => eprintln!("fup-client: {}: {err}", shown(path)),
            }
        }
    };
    if files.is_empty() {
        say_missing(&mut failed);
        if args.files.len() > 1 && !args.quiet && !args.json {
            println!("{}", totals(stored, denied, failed));
        }
        return ExitCode::from(1);
    }
    if !args.plain {
        match dialer.dial() {
            Ok((link, note)) => {
                tell(&args.host, note, asked.get());
                if link.server_id().is_some() {
                    say_missing(&mut failed);
                    return batch_main(&args, &files, failed, (link, &mut dialer), bars);
                }
                first = Some(link);
            }
            Err(err) => {
                let err = match err {
                    err @ DialError::Io(_) => {
                        anyhow::Error::from(err).context(format!("cannot connect to {}", args.host))
                    }
                    err => err.into(),
                };
                say_missing(&mut failed);
                eprintln!("fup-client: {err:#}");
                if args.files.len() > 1 && !args.quiet && !args.json {
                    println!("{}", totals(stored, denied, failed + files.len()));
                }
                return ExitCode::from(1);
            }
        }
    }
    // Several at once (-j), each over a connection of its own, reported as each ends.
    let plain = first.as_ref().is_none_or(|link| link.server_id().is_none());
    if args.parallel > 1 && plain && args.files.len() > 1 {
        let counts = parallel(&args, first);
        (stored, denied, failed) = (counts.0, counts.1, counts.2);
        if !args.quiet && !args.json {
            println!("{}", totals(stored, denied, failed));
        }
        return match stored == args.files.len() {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        };
    }
    // One by one, in the order given (what cannot be read is said in its place).
    for path in &args.files {
        let done = send(&args, &mut dialer, &mut first, &asked, path, bars);
        match &done {
            Ok(done) if done.sent.delivery == Delivery::Stored => stored += 1,
            Ok(done) if done.sent.delivery == Delivery::Denied => denied += 1,
            _ => failed += 1,
        }
        match args.json {
            true => println!("{}", json(path, &done)),
            false => present(path, &done, args.quiet),
        }
        // A server that is not who it must be gets none of the other files either.
        if let Err(err) = &done
            && err
                .downcast_ref::<DialError>()
                .is_some_and(|err| !matches!(err, DialError::Io(_)))
        {
            break;
        }
    }
    if args.files.len() > 1 && !args.quiet && !args.json {
        println!("{}", totals(stored, denied, failed));
    }
    if stored == args.files.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `3 stored, 1 denied, 2 failed`, leaving out what did not happen.
fn totals(stored: usize, denied: usize, failed: usize) -> String {
    let mut total = format!("{stored} stored");
    for (count, what) in [(denied, "denied"), (failed, "failed")] {
        if count > 0 {
            total.push_str(&format!(", {count} {what}"));
        }
    }
    total
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A file to upload: open, not a directory, with a UTF-8 name.
struct Upload {
    file: File,
    name: String,
    size: u64,
}

/// Opens `path`, or for `-` spools standard input into an unlinked temporary file, since the
/// request must say the size before any data.
fn open(path: &Path, name: Option<&str>) -> anyhow::Result<Upload> {
    if is_stdin(path) {
        let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
        let size =
            io::copy(&mut io::stdin().lock(), &mut file).context("cannot read standard input")?;
        let name = name.unwrap_or_default().to_string();
        return Ok(Upload { file, name, size });
    }
    let file = File::open(path).context("cannot open file")?;
    let meta = file.metadata().context("cannot read file metadata")?;
    if meta.is_dir() {
        // Until servers take trees, send one as an archive on standard input.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "folder".into());
        bail!(
            "is a directory (send a folder as an archive: tar c {dir} | fup-client HOST - \
             --name {name}.tar)",
            dir = text::escape(&path.to_string_lossy()),
        );
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        bail!("has no file name that is valid UTF-8");
    };
    Ok(Upload {
        file,
        name: name.to_string(),
        size: meta.len(),
    })
}

/// The dialer for this command's server: the mode the flags ask for, the client's keys,
/// known_hosts in the configuration directory, and on first contact the question (on a
/// terminal) or ssh's accept-new (without one). `asked` tells whether the question was put.
fn dialer<'a>(
    args: &Args,
    keys: Option<&'a keys::Keys>,
    asked: &'a Cell<bool>,
) -> anyhow::Result<Dialer<'a>> {
    let mode = match (args.plain, args.secure || args.pin.is_some()) {
        (true, _) => Mode::Plain,
        (false, true) => Mode::Secure,
        (false, false) => Mode::Auto,
    };
    let known_hosts = files::config_dir(|name| std::env::var(name).ok())
        .unwrap_or_default()
        .join(files::KNOWN_HOSTS);
    let host = HostPort {
        host: args.host.host.clone(),
        port: args.port,
    };
    let dialer = Dialer::new(
        host,
        mode,
        keys,
        known_hosts,
        args.pin,
        args.timeout.into(),
        move |host, id| {
            let terminal = io::stdin().is_terminal() && io::stderr().is_terminal();
            asked.set(terminal);
            !terminal || ask_trust(host, id)
        },
    )?;
    Ok(dialer)
}

/// Asks at the terminal whether to trust `host`'s identity `id`, met for the first time.
fn ask_trust(host: &HostPort, id: &Identity) -> bool {
    eprintln!(
        "fup-client: first contact with {host}, which shows the identity\n  {id}\n\
         Compare it with the `identity:` line fup-server prints when it starts (or with\n\
         `fup-server --show-identity` on that machine) before you say yes."
    );
    eprint!("trust {id}? [y/N] ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    if io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Whether a batch that failed with `err` may go on over a new connection: the connection
/// broke or went quiet, rather than the server or a file saying no.
fn retryable(err: &fup::Error) -> bool {
    err.is_hang_up() || matches!(err, fup::Error::Io(_) | fup::Error::TimedOut { .. })
}

/// The pause before try `n` (from 1): 1 s, 2 s, 4 s, … at most 30 s.
fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(5)).min(30))
}

/// `: why` after "storing it failed", when the server said why.
fn because(why: Option<&str>) -> String {
    why.map(|why| format!(": {}", text::escape(why)))
        .unwrap_or_default()
}

/// What the client says when a batch resumes a cut try.
fn resumed_line(resumed: &Resumed, total: u64) -> String {
    let mut line = format!(
        "resuming at {} ({} already there",
        text::percent(resumed.bytes, total),
        text::bytes(resumed.bytes)
    );
    if resumed.files > 0 {
        let s = if resumed.files == 1 { "" } else { "s" };
        line.push_str(&format!(", {} file{s} stored before", resumed.files));
    }
    line.push(')');
    if let Some(differed) = resumed.differed {
        line.push_str(&format!(
            "; the {} the server kept of the next file differ from this copy: it starts over",
            text::bytes(differed)
        ));
    }
    line
}

/// What became of one file that was sent.
struct Done {
    sent: Sent,
    /// Whether it went in secure mode.
    secure: bool,
    /// Whether the server checked it end to end (BLAKE3).
    verified: bool,
    /// Bytes the server had from cut tries, not sent again.
    resumed: u64,
    /// Why the server could not store it, when it said (secure mode).
    why: Option<String>,
    name: String,
    size: u64,
    /// From the server's acceptance to its result: the transfer alone.
    elapsed: Duration,
}

/// The paths given, split into those that can be read and those that cannot (with why);
/// `-` is standard input, read later.
fn readable(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, io::Error)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for path in paths {
        match is_stdin(path) {
            true => good.push(path.clone()),
            false => match std::fs::metadata(path) {
                Ok(_) => good.push(path.clone()),
                Err(err) => bad.push((path.clone(), err)),
            },
        }
    }
    (good, bad)
}

/// The whole command as one batch over a secure link: files and trees, one decision,
/// one connection; one line per top item, then the totals (`failed` already, those that
/// could not be read).
fn batch_main(
    args: &Args,
    files: &[PathBuf],
    failed: usize,
    (mut link, dialer): (Link, &mut Dialer<'_>),
    bars: bool,
) -> ExitCode {
    let (found, _stdin) = match batch_entries(args, files) {
        Ok(found) => found,
        Err(err) => {
            eprintln!("fup-client: {err:#}");
            return ExitCode::from(1);
        }
    };
    let entries: Vec<fup::batch::Entry> = found.found.iter().map(|f| f.entry.clone()).collect();
    let totals = match fup::batch::check(&entries, &fup::batch::Limits::DEFAULT) {
        Ok(totals) => totals,
        Err(err) => {
            eprintln!("fup-client: nothing to send: {err}");
            return ExitCode::from(1);
        }
    };
    let options = Options {
        chunk_size: args.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
        timeout: args.timeout.into(),
        answer_timeout: args.answer_timeout.into(),
        checksum: false,
        accept_byte: Some(ResponseByte::DEFAULT_ACCEPT),
    };
    let what = match &entries[..] {
        [one] => text::escape(&one.path[0]),
        _ => format!("{totals}"),
    };
    let bar = bars.then(|| progress_bar(&what, totals.bytes));
    let started = Instant::now();
    let accepted: Mutex<Option<Instant>> = Mutex::new(None);
    let mut tries = 0;
    // What the server had from earlier tries, and each file's BLAKE3 (for --checksum).
    let mut resumed_bytes = 0;
    let mut digests = std::collections::HashMap::new();
    let outcome = loop {
        let on_event = |event: BatchEvent| match event {
            BatchEvent::Resumed(resumed) => {
                resumed_bytes = resumed.bytes;
                let line = resumed_line(&resumed, totals.bytes);
                match &bar {
                    Some(bar) => bar.suspend(|| eprintln!("fup-client: {line}")),
                    None if !args.quiet => eprintln!("fup-client: {line}"),
                    None => {}
                }
            }
            BatchEvent::Sent { index, blake3 } => {
                digests.insert(index as usize, blake3);
            }
        };
        let outcome = send_batch(
            &mut link,
            &found.found,
            &options,
            on_event,
            |sent, files| {
                let mut at = lock(&accepted);
                if at.is_none() {
                    *at = Some(Instant::now());
                    if let Some(bar) = &bar {
                        bar.reset();
                        bar.set_message("");
                        // What a cut try left counts as done, not as this try's speed:
                        // recorded (a tick, which the steady ticker would otherwise take
                        // later), then the estimate starts over from there.
                        bar.disable_steady_tick();
                        bar.set_position(sent);
                        bar.tick();
                        bar.reset_eta();
                        bar.enable_steady_tick(Duration::from_millis(200));
                    }
                }
                if let Some(bar) = &bar {
                    bar.set_position(sent);
                    if totals.files > 1 {
                        bar.set_message(format!("{files}/{} files", totals.files));
                    }
                }
            },
        );
        // A connection that failed on the way: again after a pause, resuming. What is
        // not the network's doing (an identity that changed, a server no longer secure)
        // ends the tries with its own error.
        match outcome {
            Err(err) if tries < args.retry && retryable(&err) => {
                let mut why = anyhow::Error::from(err).context("connection lost");
                let redialed = loop {
                    tries += 1;
                    let wait = backoff(tries);
                    let line = format!(
                        "{why:#}; trying again in {} s ({tries} of {})",
                        wait.as_secs(),
                        args.retry
                    );
                    match &bar {
                        Some(bar) => bar.suspend(|| eprintln!("fup-client: {line}")),
                        None => eprintln!("fup-client: {line}"),
                    }
                    std::thread::sleep(wait);
                    match dialer.dial() {
                        Ok((link, _)) if link.server_id().is_some() => break Ok(link),
                        Ok(_) => {
                            break Err(anyhow::anyhow!(
                                "{} no longer offers secure mode: not resuming in plain",
                                args.host
                            ));
                        }
                        Err(err @ DialError::Io(_)) if tries < args.retry => {
                            why = anyhow::Error::from(err).context("cannot connect");
                        }
                        Err(err @ DialError::Io(_)) => {
                            break Err(anyhow::Error::from(err).context("cannot connect"));
                        }
                        Err(err) => break Err(anyhow::Error::from(err)),
                    }
                };
                match redialed {
                    Ok(new) => link = new,
                    Err(err) => break Err(err),
                }
                *lock(&accepted) = None;
            }
            outcome => break outcome.map_err(anyhow::Error::from),
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let elapsed = lock(&accepted).map_or(started.elapsed(), |at| at.elapsed());

    let tops: Vec<&fup::batch::walk::Found> = found
        .found
        .iter()
        .filter(|f| f.entry.depth() == 1)
        .collect();
    let items = match outcome {
        Ok(BatchOutcome::Done(items)) => items,
        Ok(BatchOutcome::Denied(why)) if tops.len() == 1 && found.found.len() == 1 => {
            let shown = match why.is_empty() {
                true => String::new(),
                false => format!(" ({})", text::escape(&why)),
            };
            let size = text::bytes(totals.bytes);
            let name = text::escape(&tops[0].entry.path[0]);
            match args.json {
                true => {
                    let mut object = serde_json::json!({"file": tops[0].source.to_string_lossy(), "name": tops[0].entry.path[0], "size": totals.bytes, "verdict": "denied", "secure": true});
                    if !why.is_empty() {
                        object["error"] = why.into();
                    }
                    println!("{object}");
                }
                false => {
                    eprintln!("fup-client: \"{name}\" {size}: denied by server{shown}, secure")
                }
            }
            return ExitCode::from(1);
        }
        Ok(BatchOutcome::Denied(why)) => {
            let shown = if why.is_empty() {
                String::new()
            } else {
                format!(": {}", text::escape(&why))
            };
            match args.json {
                true => println!(
                    "{}",
                    serde_json::json!({"batch": true, "verdict": "denied", "secure": true, "error": why})
                ),
                false => eprintln!("fup-client: batch of {totals} denied by server{shown}, secure"),
            }
            return ExitCode::from(1);
        }
        Err(err) => {
            let err = err.context(format!("batch upload to {} failed", args.host));
            match args.json {
                true => println!(
                    "{}",
                    serde_json::json!({"batch": true, "verdict": "error", "secure": true, "error": format!("{err:#}")})
                ),
                false => eprintln!("fup-client: {err:#}"),
            }
            return ExitCode::from(1);
        }
    };
    let stored = items.iter().filter(|item| item.stored).count();
    // --checksum: each stored file's BLAKE3 in b3sum's format, so `b3sum -c` can check the
    // local files (standard input shows as `-`).
    let b3sums = || {
        if !args.checksum || args.json {
            return;
        }
        for (index, file) in found.found.iter().enumerate() {
            let top = found
                .found
                .iter()
                .position(|f| f.entry.depth() == 1 && f.entry.path[0] == file.entry.path[0]);
            let stored = top.is_some_and(|top| {
                items
                    .iter()
                    .any(|item| item.index as usize == top && item.stored)
            });
            if let (true, Some(digest)) = (stored, digests.get(&index)) {
                let path = match files.iter().any(|p| is_stdin(p)) && found.found.len() == 1 {
                    true => "-".to_string(),
                    false => shown(&file.source),
                };
                println!("{}  {path}", text::hex(digest));
            }
        }
    };
    // One file alone reads as the single upload it is.
    if let ([top], [item]) = (&tops[..], &items[..])
        && let fup::batch::Kind::File { size, .. } = top.entry.kind
    {
        let done = Ok(Done {
            sent: Sent {
                delivery: match item.stored {
                    true => Delivery::Stored,
                    false => Delivery::Failed,
                },
                sha256: None,
            },
            secure: true,
            verified: item.stored && fup::batch::frame::verifying(),
            resumed: resumed_bytes,
            why: item.why().map(str::to_string),
            name: top.entry.path[0].clone(),
            size,
            elapsed,
        });
        let path = files
            .iter()
            .find(|p| !is_stdin(p))
            .map_or(Path::new("-"), |p| p);
        match args.json {
            true => {
                let mut object = json(path, &done);
                if let (true, true, Some(digest)) = (args.checksum, item.stored, digests.get(&0)) {
                    object["blake3"] = text::hex(digest).into();
                }
                println!("{object}");
            }
            false => present(path, &done, args.quiet),
        }
        b3sums();
        if failed > 0 && !args.quiet && !args.json {
            let (s, f) = (usize::from(item.stored), failed + usize::from(!item.stored));
            println!("{}", self::totals(s, 0, f));
        }
        return match item.stored && failed == 0 {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        };
    }
    let how = match fup::batch::frame::verifying() {
        true => "secure, verified",
        false => "secure",
    };
    // Off a terminal, and in JSON, one line per file; on one, one per top item.
    let per_file = args.json || !io::stdout().is_terminal();
    let outcome_of = |entry: &fup::batch::Entry| {
        let top = found
            .found
            .iter()
            .position(|f| f.entry.path.len() == 1 && f.entry.path[0] == entry.path[0])?;
        items.iter().find(|item| item.index as usize == top)
    };
    let (mut files_stored, mut files_failed) = (0, 0);
    for file in found
        .found
        .iter()
        .filter(|f| matches!(f.entry.kind, fup::batch::Kind::File { .. }))
    {
        match outcome_of(&file.entry) {
            Some(item) if item.stored => files_stored += 1,
            _ => files_failed += 1,
        }
    }
    for file in found.found.iter().filter(|_| per_file) {
        let fup::batch::Kind::File { size, .. } = file.entry.kind else {
            continue;
        };
        let path = file.entry.path.join("/");
        let item = outcome_of(&file.entry);
        let stored_as = item.filter(|item| item.stored).map(|item| {
            let mut parts = file.entry.path.clone();
            parts[0] = item.name.clone();
            parts.join("/")
        });
        if args.json {
            let mut object = serde_json::json!({"file": file.source.to_string_lossy(), "name": path, "size": size, "verdict": if stored_as.is_some() { "stored" } else { "failed" }, "stored_as": stored_as, "secure": true, "batch": true});
            if let (None, Some(why)) = (&stored_as, item.and_then(fup::batch::frame::ItemDone::why))
            {
                object["error"] = why.into();
            }
            let index = found.found.iter().position(|f| std::ptr::eq(f, file));
            if let (true, Some(_), Some(digest)) = (
                args.checksum,
                &stored_as,
                index.and_then(|i| digests.get(&i)),
            ) {
                object["blake3"] = text::hex(digest).into();
            }
            println!("{object}");
            continue;
        }
        match stored_as {
            Some(_) if args.quiet => {}
            Some(to) => {
                let renamed = match to == path {
                    true => String::new(),
                    false => format!(" as \"{}\"", text::escape(&to)),
                };
                println!(
                    "sent \"{}\" {}: stored{renamed}, {how}",
                    text::escape(&path),
                    text::bytes(size)
                );
            }
            None => eprintln!(
                "fup-client: \"{}\" {}: server reported that storing it failed{}, secure",
                text::escape(&path),
                text::bytes(size),
                because(item.and_then(fup::batch::frame::ItemDone::why))
            ),
        }
    }
    for top in tops.iter().filter(|_| !per_file) {
        let index = found
            .found
            .iter()
            .position(|f| std::ptr::eq(f, *top))
            .unwrap_or(0);
        let item = items.iter().find(|item| item.index as usize == index);
        let name = &top.entry.path[0];
        let shown = match top.entry.kind {
            fup::batch::Kind::Dir => format!("{}/", text::escape(name)),
            fup::batch::Kind::File { .. } => text::escape(name),
        };
        match (item, args.json) {
            (Some(item), true) => println!(
                "{}",
                serde_json::json!({"file": top.source.to_string_lossy(), "name": name, "verdict": if item.stored { "stored" } else { "failed" }, "stored_as": item.name, "secure": true, "batch": true})
            ),
            (Some(item), false) if item.stored && !args.quiet => {
                let renamed = match item.name == *name {
                    true => String::new(),
                    false => format!(" as \"{}\"", text::escape(&item.name)),
                };
                let size = match top.entry.kind {
                    fup::batch::Kind::File { size, .. } => text::bytes(size),
                    fup::batch::Kind::Dir => {
                        let inside: Vec<fup::batch::Entry> = found
                            .found
                            .iter()
                            .filter(|f| f.entry.path[0] == *name)
                            .map(|f| f.entry.clone())
                            .collect();
                        fup::batch::check(&inside, &fup::batch::Limits::DEFAULT)
                            .map(|t| format!("({t})"))
                            .unwrap_or_default()
                    }
                };
                println!("sent \"{shown}\" {size}: stored{renamed}, {how}");
            }
            (Some(item), false) if !item.stored => {
                eprintln!(
                    "fup-client: \"{shown}\": server reported that storing it failed{}, secure",
                    because(item.why())
                );
            }
            (None, false) => eprintln!("fup-client: \"{shown}\": the server did not say"),
            _ => {}
        }
    }
    b3sums();
    if !args.quiet && !args.json {
        let mut line = format!("{files_stored} stored");
        for (count, what) in [
            (files_failed + failed, "failed"),
            (found.skipped.len(), "skipped"),
        ] {
            if count > 0 {
                line.push_str(&format!(", {count} {what}"));
            }
        }
        let resumed = match resumed_bytes {
            0 => String::new(),
            bytes => format!(", resumed at {}", text::percent(bytes, totals.bytes)),
        };
        println!(
            "batch of {totals} in {:.2} s ({}{resumed}): {line}",
            elapsed.as_secs_f64(),
            text::rate(totals.bytes - resumed_bytes.min(totals.bytes), elapsed),
        );
    }
    match stored == tops.len() && failed == 0 {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

/// The command line's files and trees as a batch, with warnings for what is skipped; `-`
/// (standard input, with --name) is spooled to a temporary file kept alive by the second
/// value.
fn batch_entries(
    args: &Args,
    files: &[PathBuf],
) -> anyhow::Result<(fup::batch::walk::Walked, Option<tempfile::NamedTempFile>)> {
    let paths: Vec<PathBuf> = files.iter().filter(|p| !is_stdin(p)).cloned().collect();
    let mut walked = fup::batch::walk(&paths, &fup::batch::Limits::DEFAULT)?;
    for skipped in &walked.skipped {
        eprintln!("fup-client: warning: {skipped}");
    }
    let mut spooled = None;
    if let Some(name) = args
        .name
        .as_deref()
        .filter(|_| args.files.iter().any(|p| is_stdin(p)))
    {
        let mut temp = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
        let size = io::copy(&mut io::stdin().lock(), temp.as_file_mut())
            .context("cannot read standard input")?;
        walked.found.push(fup::batch::walk::Found {
            entry: fup::batch::Entry {
                path: vec![name.to_string()],
                kind: fup::batch::Kind::File {
                    size,
                    executable: false,
                },
            },
            source: temp.path().to_path_buf(),
            file: temp
                .as_file()
                .metadata()
                .ok()
                .map(|meta| fup::batch::walk::FileId::of(&meta)),
        });
        spooled = Some(temp);
    }
    Ok((walked, spooled))
}

/// Sends the files `-j N` at a time to a plain server, each over a connection of its own
/// (`first` for the first); one line per file as it ends, no bars (several would fight over
/// the terminal). Returns (stored, denied, failed).
fn parallel(args: &Args, first: Option<Link>) -> (usize, usize, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let first = Mutex::new(first);
    let counts = Mutex::new((0, 0, 0));
    let workers = usize::from(args.parallel).min(args.files.len());
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(path) = args.files.get(i) else { break };
                    let done = open(path, args.name.as_deref()).and_then(|upload| {
                        let link = match lock(&first).take() {
                            Some(link) => link,
                            None => Link::Plain(
                                fup::net::connect(
                                    (args.host.host.as_str(), args.port),
                                    args.timeout.into(),
                                )
                                .with_context(|| format!("cannot connect to {}", args.host))?,
                            ),
                        };
                        send_with(args, link, upload, false)
                    });
                    let mut counts = lock(&counts);
                    match &done {
                        Ok(done) if done.sent.delivery == Delivery::Stored => counts.0 += 1,
                        Ok(done) if done.sent.delivery == Delivery::Denied => counts.1 += 1,
                        _ => counts.2 += 1,
                    }
                    match args.json {
                        true => println!("{}", json(path, &done)),
                        false => present(path, &done, args.quiet),
                    }
                }
            });
        }
    });
    counts
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Says what the dialer did that the user should hear of, on stderr.
fn tell(addr: &Address, note: Option<Note>, asked: bool) {
    match note {
        Some(Note::Plain) => eprintln!(
            "fup-client: note: {addr} does not offer secure mode; sending in plain \
             (unencrypted, unauthenticated; --secure refuses this)"
        ),
        Some(Note::Pinned { id, file }) if asked => {
            eprintln!(
                "fup-client: {addr}'s identity {id} is now pinned in {}",
                file.display()
            );
        }
        Some(Note::Pinned { id, file }) => eprintln!(
            "fup-client: first contact with {addr}: pinned its identity {id} in {} \
             (no terminal to ask)",
            file.display()
        ),
        None => {}
    }
}

/// Uploads one file.
fn send(
    args: &Args,
    dialer: &mut Dialer<'_>,
    opened: &mut Option<Link>,
    asked: &Cell<bool>,
    path: &Path,
    bars: bool,
) -> anyhow::Result<Done> {
    let upload = open(path, args.name.as_deref())?;
    let addr = &args.host;
    let link = match opened.take() {
        Some(link) => link,
        None => match dialer.dial() {
            Ok((link, note)) => {
                tell(addr, note, asked.get());
                link
            }
            Err(err @ DialError::Io(_)) => {
                return Err(err).with_context(|| format!("cannot connect to {addr}"));
            }
            Err(err) => return Err(err.into()),
        },
    };
    send_with(args, link, upload, bars)
}

/// Uploads one opened file over `link`.
fn send_with(args: &Args, mut link: Link, upload: Upload, bars: bool) -> anyhow::Result<Done> {
    let Upload { file, name, size } = upload;
    let addr = &args.host;
    let timeout = args.timeout.into();
    let secure = link.server_id().is_some();
    let options = Options {
        chunk_size: args
            .chunk_size
            .unwrap_or_else(|| auto_chunk_size(size, DEFAULT_CHUNK_SIZE)),
        timeout,
        answer_timeout: args.answer_timeout.into(),
        checksum: args.checksum,
        // Inside secure mode only fup servers speak, in the default convention.
        accept_byte: match secure {
            true => Some(ResponseByte::DEFAULT_ACCEPT),
            false => args.accept_byte,
        },
    };
    let bar = bars.then(|| progress_bar(&text::escape(&name), size));
    // Timed from acceptance, so the operator's think time counts neither in the bar's rate
    // and time left nor in the final figure.
    let accepted: Mutex<Option<Instant>> = Mutex::new(None);
    let last_progress = Mutex::new(Instant::now());
    let (sent, finished) = thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        if let Some(bar) = &bar {
            let (accepted, last) = (&accepted, &last_progress);
            scope.spawn(move || watch(bar, accepted, last, &done_rx));
        }
        let progress = |sent| {
            let now = Instant::now();
            let mut at = lock(&accepted);
            if at.is_none() {
                *at = Some(now);
                if let Some(bar) = &bar {
                    // The wait for the answer is not part of the transfer's rate or ETA.
                    bar.reset();
                }
            }
            drop(at);
            *lock(&last_progress) = now;
            if let Some(bar) = &bar {
                bar.set_position(sent);
            }
        };
        let sent = upload_file(&mut link, &file, &name, size, &options, progress);
        // Before the watcher is told: nothing after the result counts.
        let finished = Instant::now();
        drop(done_tx);
        (sent, finished)
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let sent = sent.with_context(|| format!("upload to {addr} failed"))?;
    let elapsed = lock(&accepted).map_or(Duration::ZERO, |at| finished - at);
    Ok(Done {
        sent,
        secure,
        verified: false,
        resumed: 0,
        why: None,
        name,
        size,
        elapsed,
    })
}

/// Reports one upload as text: stored on stdout (with its digest, when computed), the rest on
/// stderr.
fn present(path: &Path, done: &anyhow::Result<Done>, quiet: bool) {
    let done = match done {
        Ok(done) => done,
        Err(err) => return eprintln!("fup-client: {}: {err:#}", shown(path)),
    };
    let name = text::escape(&done.name);
    let human = text::bytes(done.size);
    let how = match (done.secure, done.verified) {
        (true, true) => "secure, verified",
        (true, false) => "secure",
        (false, _) => "plain",
    };
    let resumed = match done.resumed {
        0 => String::new(),
        bytes => format!(", resumed at {}", text::percent(bytes, done.size)),
    };
    match done.sent.delivery {
        Delivery::Stored if !quiet => println!(
            "sent \"{name}\" {human} in {:.2} s ({}): stored, {how}{resumed}",
            done.elapsed.as_secs_f64(),
            text::rate(done.size - done.resumed.min(done.size), done.elapsed)
        ),
        Delivery::Stored => {}
        Delivery::Denied => eprintln!("fup-client: \"{name}\" {human}: denied by server, {how}"),
        Delivery::Failed => {
            eprintln!(
                "fup-client: \"{name}\" {human}: server reported that storing the file failed{}, {how}",
                because(done.why.as_deref())
            )
        }
    }
    if let (Delivery::Stored, Some(sha256)) = (done.sent.delivery, done.sent.sha256) {
        // sha256sum's format, so `sha256sum -c` can check the local file.
        println!("{}  {}", text::hex(&sha256), shown(path));
    }
}

/// Reports one upload as a JSON object: file, name, size, verdict (stored, denied, failed or
/// error), seconds and rate of the transfer, sha256 when computed, error.
fn json(path: &Path, done: &anyhow::Result<Done>) -> serde_json::Value {
    use serde_json::json;
    let mut object = json!({ "file": path.to_string_lossy() });
    match done {
        Err(err) => {
            object["verdict"] = json!("error");
            object["error"] = json!(format!("{err:#}"));
        }
        Ok(done) => {
            object["name"] = json!(done.name);
            object["size"] = json!(done.size);
            object["secure"] = json!(done.secure);
            if done.verified {
                object["verified"] = json!(true);
            }
            object["verdict"] = json!(match done.sent.delivery {
                Delivery::Stored => "stored",
                Delivery::Denied => "denied",
                Delivery::Failed => "failed",
            });
            if done.sent.delivery != Delivery::Denied {
                let secs = done.elapsed.as_secs_f64();
                object["seconds"] = json!(secs);
                if secs > 0.0 {
                    let moved = done.size - done.resumed.min(done.size);
                    object["rate"] = json!((moved as f64 / secs).round());
                }
                if done.resumed > 0 {
                    object["resumed"] = json!(done.resumed);
                }
            }
            if let (Delivery::Stored, Some(sha256)) = (done.sent.delivery, done.sent.sha256) {
                object["sha256"] = json!(text::hex(&sha256));
            }
            if done.sent.delivery == Delivery::Failed {
                object["error"] = json!(format!(
                    "server reported that storing the file failed{}",
                    because(done.why.as_deref())
                ));
            }
        }
    }
    object
}

/// The bar, with its figures written as the summary lines write them (one size format).
fn progress_bar(name: &str, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {sent}/{total} {speed} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("sent", |s: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = w.write_str(&text::bytes(s.pos()));
            })
            .with_key("total", |s: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = w.write_str(&text::bytes(s.len().unwrap_or(0)));
            })
            .with_key("speed", |s: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}/s", text::bytes(s.per_sec() as u64));
            })
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("\"{name}\""));
    bar.set_message("waiting for the server to accept");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Keeps the bar's message true (waiting for the answer, stalled, or nothing) until the
/// upload is over, which `done` says at once (its sender is dropped).
fn watch(
    bar: &ProgressBar,
    accepted: &Mutex<Option<Instant>>,
    last: &Mutex<Instant>,
    done: &mpsc::Receiver<()>,
) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(Duration::from_millis(250)) {
        let message = match *lock(accepted) {
            None => "waiting for the server to accept",
            Some(_) if lock(last).elapsed() >= STALLED_AFTER => "stalled",
            Some(_) => "",
        };
        bar.set_message(message);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shown(path: &Path) -> String {
    text::escape(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_totals_read_as_before() {
        assert_eq!(thousands(65_536), "65,536");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let help = chunk_size_help();
        assert!(
            help.contains("past 65,536 messages")
                && help.contains("[default: 1048576, grown for files over 64 GiB so"),
            "{help}"
        );
        assert_eq!(totals(2, 0, 0), "2 stored");
        assert_eq!(totals(1, 2, 3), "1 stored, 2 denied, 3 failed");
        assert_eq!(totals(0, 0, 1), "0 stored, 1 failed");
    }
}
