//! `echo-server`: echo every byte back, to check that a FUP port is reachable.
#![deny(unsafe_code)]

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fup::echo::IDLE_TIMEOUT;
use fup::net::{Accepted, DEFAULT_MAX_CONNECTIONS, serve_each};

/// Echo every byte back to each client until it closes, one thread per connection.
#[derive(Parser)]
#[command(
    name = "echo-server",
    version,
    after_help = "Example:\n  echo-server 127.0.0.1 --port 6000"
)]
struct Args {
    /// Address to listen on
    #[arg(default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// TCP port to listen on (0 picks a free port)
    #[arg(short, long, env = "FUP_PORT", default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    /// Connections served at once; more are closed as they arrive
    #[arg(long, value_name = "N", env = "FUP_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u16).range(1..))]
    max_connections: u16,
    #[command(flatten)]
    about: fup::term::generate::About,
}

fn main() -> ExitCode {
    // --completions and --man are answered before the usual parsing: see Args.
    fup::term::generate::handle::<Args>(false);
    let args = Args::parse();
    // 128 + the signal's number, as every fup program exits on a signal.
    let _ = fup::term::signals::exit_on_signals(|_| {});
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = fup::net::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    println!(
        "listening on {}",
        listener
            .local_addr()
            .context("cannot read the bound address")?
    );
    serve_each(
        &listener,
        "echo",
        // A connectivity check: no limit per address but the whole.
        fup::net::listen::Limits {
            max: args.max_connections.into(),
            per_address: args.max_connections.into(),
        },
        echo,
        |event| match event.is_error() {
            true => drop(writeln!(io::stderr(), "echo-server: {event}")),
            false => drop(writeln!(io::stdout().lock(), "{event}")),
        },
    )
    .context("cannot accept connections")
}

/// Serves one connection and prints its line.
fn echo(Accepted { stream, peer, .. }: Accepted) {
    // Idle peers cannot pin a thread forever.
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let line = match fup::echo::serve(&stream) {
        Ok(n) => format!("{peer}: echoed {n} bytes"),
        Err(err) => format!("{peer}: echo ended: {err}"),
    };
    let _ = writeln!(io::stdout().lock(), "{line}");
}
