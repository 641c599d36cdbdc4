//! `fup-client`: upload files to a FUP server and report its verdict on each.
#![deny(unsafe_code)]

use std::fs::File;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fup::ResponseByte;
use fup::client::{
    DEFAULT_ANSWER_TIMEOUT, DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT, Delivery, MAX_UNWRAPPED_CHUNKS,
    Options, Sent, auto_chunk_size, connect, upload_file,
};
use fup::term::args::{
    Address, Seconds, address, chunk_size, parse_with_address, response_byte, seconds,
};
use fup::text;
use indicatif::{ProgressBar, ProgressStyle};

/// Upload files to a FUP (File Upload Protocol) server, one connection per file, in order.
///
/// On a terminal each file gets a progress bar (bytes, rate, time left, and "stalled" when
/// nothing moved for 5 s); otherwise one line per file. Stored files are reported on stdout,
/// denials and failures on stderr.
///
/// Exit status: 0 when every file was stored, 1 when any was denied or failed, 2 for usage
/// errors, 128 + the signal's number when interrupted (130 for Ctrl-C, 143 for SIGTERM; the
/// server discards the partial file).
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  fup-client 192.0.2.7 report.pdf photos/*.jpg\n  fup-client --port 6000 -q backup.host db.dump"
)]
struct Args {
    /// Server: host name or IP address, with :PORT if you like (IPv6 as ::1 or [::1]:PORT)
    #[arg(value_parser = address)]
    host: Address,
    /// Files to upload
    #[arg(required = true)]
    files: Vec<PathBuf>,
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
    /// Compute the SHA-256 of each file while sending it and print it in sha256sum format
    /// (costs the zero-copy path: see the README)
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
    let args: Args = parse_with_address(|a: &mut Args| (&mut a.host, &mut a.port));
    // The connection closes with the process, and the server then removes the partial file.
    let _ = fup::term::signals::exit_on_signals(|_| {});
    let bars = !args.quiet && io::stderr().is_terminal();
    let (mut stored, mut denied, mut failed) = (0, 0, 0);
    for path in &args.files {
        match send(&args, path, bars) {
            Ok(Delivery::Stored) => stored += 1,
            Ok(Delivery::Denied) => denied += 1,
            Ok(Delivery::Failed) => failed += 1,
            Err(err) => {
                eprintln!("fup-client: {}: {err:#}", shown(path));
                failed += 1;
            }
        }
    }
    if args.files.len() > 1 && !args.quiet {
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

/// A file to upload: open, not a directory, with a UTF-8 name.
struct Upload<'a> {
    file: File,
    name: &'a str,
    size: u64,
}

fn open(path: &Path) -> anyhow::Result<Upload<'_>> {
    let file = File::open(path).context("cannot open file")?;
    let meta = file.metadata().context("cannot read file metadata")?;
    if meta.is_dir() {
        bail!("is a directory, not a file");
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        bail!("has no file name that is valid UTF-8");
    };
    Ok(Upload {
        file,
        name,
        size: meta.len(),
    })
}

/// Uploads one file and reports it.
fn send(args: &Args, path: &Path, bars: bool) -> anyhow::Result<Delivery> {
    let Upload { file, name, size } = open(path)?;
    let addr = &args.host;
    let timeout = args.timeout.into();
    let stream = connect(&args.host.host, args.port, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    let options = Options {
        chunk_size: args
            .chunk_size
            .unwrap_or_else(|| auto_chunk_size(size, DEFAULT_CHUNK_SIZE)),
        timeout,
        answer_timeout: args.answer_timeout.into(),
        checksum: args.checksum,
        accept_byte: args.accept_byte,
    };
    let shown_name = text::escape(name);
    let bar = bars.then(|| progress_bar(&shown_name, size));
    // Timed from acceptance, so the operator's think time does not count against the rate.
    let accepted: Mutex<Option<Instant>> = Mutex::new(None);
    let last_progress = Mutex::new(Instant::now());
    let done = AtomicBool::new(false);
    let sent = thread::scope(|scope| {
        if let Some(bar) = &bar {
            scope.spawn(|| watch(bar, &accepted, &last_progress, &done));
        }
        let progress = |sent| {
            let now = Instant::now();
            lock(&accepted).get_or_insert(now);
            *lock(&last_progress) = now;
            if let Some(bar) = &bar {
                bar.set_position(sent);
            }
        };
        let sent = upload_file(&stream, &file, name, size, &options, progress);
        done.store(true, Ordering::SeqCst);
        sent
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let sent = sent.with_context(|| format!("upload to {addr} failed"))?;
    let elapsed = lock(&accepted).map(|at| at.elapsed()).unwrap_or_default();
    present(&sent, &shown_name, size, elapsed, path, args.quiet);
    Ok(sent.delivery)
}

/// Reports one upload: stored on stdout (with its digest, when computed), the rest on stderr.
fn present(sent: &Sent, name: &str, size: u64, elapsed: Duration, path: &Path, quiet: bool) {
    let human = text::bytes(size);
    match sent.delivery {
        Delivery::Stored if !quiet => println!(
            "sent \"{name}\" {human} in {:.2} s ({}): stored",
            elapsed.as_secs_f64(),
            text::rate(size, elapsed)
        ),
        Delivery::Stored => {}
        Delivery::Denied => eprintln!("fup-client: \"{name}\" {human}: denied by server"),
        Delivery::Failed => {
            eprintln!(
                "fup-client: \"{name}\" {human}: server reported that storing the file failed"
            )
        }
    }
    if let (Delivery::Stored, Some(sha256)) = (sent.delivery, sent.sha256) {
        // sha256sum's format, so `sha256sum -c` can check the local file.
        println!("{}  {}", text::hex(&sha256), shown(path));
    }
}

fn progress_bar(name: &str, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("\"{name}\""));
    bar.set_message("waiting for the server to accept");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Keeps the bar's message true: waiting for the answer, stalled, or nothing.
fn watch(
    bar: &ProgressBar,
    accepted: &Mutex<Option<Instant>>,
    last: &Mutex<Instant>,
    done: &AtomicBool,
) {
    while !done.load(Ordering::SeqCst) {
        let message = match *lock(accepted) {
            None => "waiting for the server to accept",
            Some(_) if lock(last).elapsed() >= STALLED_AFTER => "stalled",
            Some(_) => "",
        };
        bar.set_message(message);
        thread::sleep(Duration::from_millis(250));
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
