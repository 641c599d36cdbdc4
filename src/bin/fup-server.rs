//! `fup-server`: receive files over FUP, asking the operator before accepting each one.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fup::approve::{AcceptAll, TerminalApprover};
use fup::server::{Event, Server};
use fup::store::Store;

/// Receive files over FUP (File Upload Protocol), asking at the terminal before accepting each.
///
/// Prints `listening on ADDR:PORT` once ready, then one line per connection. Answers are read
/// from standard input, one line per question: `y` or `yes` accepts, anything else denies, and
/// once standard input is closed every upload is denied. Files are never overwritten: a name
/// that exists is stored as `name (1).ext`.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  fup-server ./uploads\n  fup-server --yes --port 6000 --bind 127.0.0.1 /tmp/inbox"
)]
struct Args {
    /// Directory to store accepted files in (created if missing)
    dir: PathBuf,
    /// TCP port to listen on (0 picks a free port)
    #[arg(long, default_value_t = fup::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on (default: all IPv4 interfaces)
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Accept every upload without asking
    #[arg(long)]
    yes: bool,
}

fn main() -> ExitCode {
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
    let listener = TcpListener::bind((args.bind, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let server = if args.yes {
        Server::new(store, AcceptAll)
    } else {
        // Questions go to stderr so that stdout stays one line per event, for scripts.
        Server::new(
            store,
            TerminalApprover::new(io::BufReader::new(io::stdin()), io::stderr()),
        )
    };
    println!(
        "listening on {}",
        listener
            .local_addr()
            .context("cannot read the bound address")?
    );
    Arc::new(server)
        .serve(listener, report)
        .context("cannot accept connections")
}

fn report(event: Event) {
    // A closed stdout or stderr must not take a connection thread down with it.
    let _ = match event {
        Event::Finished(summary) => writeln!(io::stdout().lock(), "{summary}"),
        Event::AcceptFailed(err) => writeln!(
            io::stderr(),
            "fup-server: cannot accept a connection: {err}"
        ),
        Event::SpawnFailed(peer, err) => {
            writeln!(
                io::stderr(),
                "fup-server: {peer}: closed, cannot start a thread: {err}"
            )
        }
    };
}
