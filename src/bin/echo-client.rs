//! `echo-client`: send a message to an echo server and time the echo, like ping.
#![deny(unsafe_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fup::echo::{DEFAULT_INTERVAL, ROUND_TIMEOUT, round_trip};
use fup::term::args::{Address, Seconds, address, parse_with_address, seconds_or_zero};
use fup::text;

/// Send a message to an echo server, check that exactly the same bytes come back, and print
/// the round-trip time. Each round uses its own connection. Exit status 1 if any round failed.
#[derive(Parser)]
#[command(
    name = "echo-client",
    version,
    after_help = "Prints one line per round, like ping, and with --count a summary.\n\nExample:\n  echo-client 127.0.0.1 hello --count 5 --interval 0.5"
)]
struct Args {
    /// Server: host name or IP address, with :PORT if you like (IPv6 as ::1 or [::1]:PORT)
    #[arg(value_parser = address)]
    host: Address,
    /// Message to send
    message: String,
    /// Server TCP port
    #[arg(short, long, env = "FUP_PORT", default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    /// Number of rounds
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Time to wait between rounds, as ping does; seconds, or with a unit: 500ms
    #[arg(short, long, value_name = "DURATION", default_value_t = Seconds(DEFAULT_INTERVAL), value_parser = seconds_or_zero)]
    interval: Seconds,
    #[command(flatten)]
    about: fup::term::generate::About,
}

fn main() -> ExitCode {
    // --completions and --man are answered before the usual parsing: see Args.
    fup::term::generate::handle::<Args>(false);
    let args: Args = parse_with_address(|a: &mut Args| (&mut a.host, &mut a.port));
    // 128 + the signal's number, as every fup program exits on a signal.
    let _ = fup::term::signals::exit_on_signals(|_| {});
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("echo-client: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs every round; returns whether all of them echoed exactly.
fn run(args: Args) -> anyhow::Result<bool> {
    let addr = (args.host.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "cannot resolve {}: the name does not resolve",
                args.host.host
            )
        })?
        .next()
        .with_context(|| format!("{} has no address", args.host.host))?;
    let message = args.message.as_bytes();
    let mut times = Vec::new();
    for i in 0..args.count {
        if i > 0 {
            std::thread::sleep(args.interval.into());
        }
        match round(addr, message) {
            Ok(Some(rtt)) => times.push(rtt),
            Ok(None) => {}
            Err(err) => eprintln!("echo-client: {addr}: {err:#}"),
        }
    }
    if args.count > 1 {
        println!("--- {addr} echo statistics ---");
        println!("{} sent, {} ok, {}", args.count, times.len(), stats(&times));
    }
    Ok(times.len() == args.count as usize)
}

/// One round: prints its line and returns the round-trip time if the echo was exact.
fn round(addr: SocketAddr, message: &[u8]) -> anyhow::Result<Option<Duration>> {
    let stream = fup::net::connect(addr, ROUND_TIMEOUT).context("cannot connect")?;
    stream
        .set_read_timeout(Some(ROUND_TIMEOUT))
        .context("cannot set up the connection")?;
    let round = round_trip(&stream, message).context("echo failed")?;
    let ms = round.rtt.as_secs_f64() * 1000.0;
    let echo = text::escape_bytes(&round.echo);
    if round.is_exact(message) {
        println!(
            "{} bytes from {addr}: time={ms:.2} ms echo=\"{echo}\"",
            round.echo.len()
        );
        return Ok(Some(round.rtt));
    }
    if round.echo.len() < round.sent && message.starts_with(&round.echo) {
        eprintln!(
            "short echo from {addr}: {} of {} bytes came back, time={ms:.2} ms echo=\"{echo}\"",
            round.echo.len(),
            round.sent
        );
    } else {
        eprintln!("wrong echo from {addr}: time={ms:.2} ms echo=\"{echo}\"");
    }
    Ok(None)
}

/// `min/avg/max/mdev = a/b/c/d ms`, as ping prints it.
fn stats(times: &[Duration]) -> String {
    if times.is_empty() {
        return "no round-trip times".to_string();
    }
    let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    let n = ms.len() as f64;
    let avg = ms.iter().sum::<f64>() / n;
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    let mdev = (ms.iter().map(|t| (t - avg).powi(2)).sum::<f64>() / n).sqrt();
    format!("time min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms")
}
