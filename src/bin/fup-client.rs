//! `fup-client`: upload files to a FUP server and report its verdict on each.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fup::client::{
    DEFAULT_CHUNK_SIZE, Delivery, Options, Sha256Reader, auto_chunk_size, upload, upload_file,
};
use fup::display;
use fup::message::MAX_DATA_LEN;
use indicatif::{ProgressBar, ProgressStyle};

/// Upload files to a FUP (File Upload Protocol) server, one connection per file, in order.
///
/// On a terminal each file gets a progress bar (bytes, rate, time left, and "stalled" when
/// nothing moved for 5 s); otherwise one line per file. Stored files are reported on stdout,
/// denials and failures on stderr.
///
/// Exit status: 0 when every file was stored, 1 when any was denied or failed, 2 for usage
/// errors, 130 when interrupted (Ctrl-C; the server discards the partial file).
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  fup-client 192.0.2.7 report.pdf photos/*.jpg\n  fup-client --port 6000 -q backup.host db.dump"
)]
struct Args {
    /// Server host name or IP address
    host: String,
    /// Files to upload
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Server TCP port
    #[arg(long, default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    /// Bytes per data message, used exactly; seq wraps past 65,536 messages, which only fup
    /// servers accept [default: 1048576, grown for files over 64 GiB so that the original
    /// Python server can take them]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DATA_LEN)))]
    chunk_size: Option<u32>,
    /// Seconds allowed to connect, for each write, and for the server's result
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = fup::cli::seconds)]
    timeout: Duration,
    /// Seconds allowed for the server's operator to answer the request
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = fup::cli::seconds)]
    answer_timeout: Duration,
    /// Compute the SHA-256 of each file while sending it and print it in sha256sum format
    /// (costs the zero-copy path: see the README)
    #[arg(long)]
    checksum: bool,
    /// Print only denials and errors: no progress bars, no lines for stored files
    #[arg(short, long)]
    quiet: bool,
}

/// No bytes for this long while sending, and the bar says "stalled".
const STALLED_AFTER: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    // The connection closes with the process, and the server then removes the partial file.
    let _ = ctrlc::set_handler(|| std::process::exit(130));
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
        let mut total = format!("{stored} stored");
        for (count, what) in [(denied, "denied"), (failed, "failed")] {
            if count > 0 {
                total.push_str(&format!(", {count} {what}"));
            }
        }
        println!("{total}");
    }
    if stored == args.files.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn send(args: &Args, path: &Path, bars: bool) -> anyhow::Result<Delivery> {
    let file = File::open(path).context("cannot open file")?;
    let meta = file.metadata().context("cannot read file metadata")?;
    if meta.is_dir() {
        bail!("is a directory, not a file");
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        bail!("has no file name that is valid UTF-8");
    };
    let size = meta.len();
    let addr = format!("{}:{}", args.host, args.port);
    let stream = connect(&args.host, args.port, args.timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_write_timeout(Some(args.timeout)))
        .context("cannot set up the connection")?;
    let options = Options {
        chunk_size: args
            .chunk_size
            .unwrap_or_else(|| auto_chunk_size(size, DEFAULT_CHUNK_SIZE)),
        timeout: args.timeout,
        answer_timeout: args.answer_timeout,
    };
    let shown_name = display::escape(name);
    let bar = bars.then(|| progress_bar(&shown_name, size));
    // Timed from acceptance, so the operator's think time does not count against the rate.
    let accepted: Mutex<Option<Instant>> = Mutex::new(None);
    let last_progress = Mutex::new(Instant::now());
    let done = AtomicBool::new(false);
    let delivery = thread::scope(|scope| {
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
        let sent = if args.checksum {
            // Hashing needs the bytes in memory: the buffered path, hashing as it reads.
            let mut reader = Sha256Reader::new(&file);
            upload(&stream, &mut reader, name, size, &options, progress)
                .map(|d| (d, Some(reader.sha256())))
        } else {
            upload_file(&stream, &file, name, size, &options, progress).map(|d| (d, None))
        };
        done.store(true, Ordering::SeqCst);
        sent
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (delivery, sha256) = delivery.with_context(|| format!("upload to {addr} failed"))?;
    let elapsed = lock(&accepted).map(|at| at.elapsed()).unwrap_or_default();
    let human = display::bytes(size);
    match delivery {
        Delivery::Stored if !args.quiet => println!(
            "sent \"{shown_name}\" {human} in {:.2} s ({}): stored",
            elapsed.as_secs_f64(),
            display::rate(size, elapsed)
        ),
        Delivery::Stored => {}
        Delivery::Denied => eprintln!("fup-client: \"{shown_name}\" {human}: denied by server"),
        Delivery::Failed => {
            eprintln!(
                "fup-client: \"{shown_name}\" {human}: server reported that storing the file failed"
            )
        }
    }
    if let (Delivery::Stored, Some(sha256)) = (delivery, sha256) {
        // sha256sum's format, so `sha256sum -c` can check the local file.
        println!("{}  {}", display::hex(&sha256), shown(path));
    }
    Ok(delivery)
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

/// Connects to the first address of `host` that answers within `timeout`.
fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address found");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn shown(path: &Path) -> String {
    display::escape(&path.to_string_lossy())
}
