//! `fup-client`: upload files to a FUP server and report its verdict on each.

use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fup::client::{DEFAULT_CHUNK_SIZE, Delivery, Options, auto_chunk_size, upload_file};
use fup::display;
use fup::message::MAX_DATA_LEN;

/// Upload files to a FUP (File Upload Protocol) server, one connection per file, in order.
///
/// Exit status: 0 when every file was stored, 1 when any was denied or failed, 2 for usage
/// errors.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  fup-client 192.0.2.7 report.pdf photos/*.jpg"
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (mut stored, mut denied, mut failed) = (0, 0, 0);
    for path in &args.files {
        match send(&args, path) {
            Ok(Delivery::Stored) => stored += 1,
            Ok(Delivery::Denied) => denied += 1,
            Ok(Delivery::Failed) => failed += 1,
            Err(err) => {
                eprintln!("fup-client: {}: {err:#}", shown(path));
                failed += 1;
            }
        }
    }
    if args.files.len() > 1 {
        println!("{stored} stored, {denied} denied, {failed} failed");
    }
    if stored == args.files.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn send(args: &Args, path: &Path) -> anyhow::Result<Delivery> {
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
    // Timed from acceptance, so the operator's think time does not count against the rate.
    let mut accepted = None;
    let delivery = upload_file(&stream, &file, name, size, &options, |_| {
        accepted.get_or_insert_with(Instant::now);
    })
    .with_context(|| format!("upload to {addr} failed"))?;
    let elapsed = accepted.map(|at| at.elapsed()).unwrap_or_default();
    let name = display::escape(name);
    match delivery {
        Delivery::Stored => println!(
            "sent \"{name}\" {} in {:.2} s ({}): stored",
            display::bytes(size),
            elapsed.as_secs_f64(),
            display::rate(size, elapsed)
        ),
        Delivery::Denied => eprintln!("fup-client: \"{name}\": denied by server"),
        Delivery::Failed => {
            eprintln!("fup-client: \"{name}\": server reported that storing the file failed")
        }
    }
    Ok(delivery)
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
