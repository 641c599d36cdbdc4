//! `echo-server`: echo every byte back, to check that a FUP port is reachable.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Echo every byte back to each client until it closes, one thread per connection.
#[derive(Parser)]
#[command(version, after_help = "Example:\n  echo-server 127.0.0.1 --port 6000")]
struct Args {
    /// Address to listen on
    #[arg(default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// TCP port to listen on (0 picks a free port)
    #[arg(long, default_value_t = fup::DEFAULT_PORT)]
    port: u16,
}

/// A client that goes quiet this long is dropped, so idle peers cannot pin threads forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind((args.bind, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    println!(
        "listening on {}",
        listener
            .local_addr()
            .context("cannot read the bound address")?
    );
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(err) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "echo-server: cannot accept a connection: {err}"
                );
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let spawned = thread::Builder::new().spawn(move || {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "unknown peer".into(), |p| p.to_string());
            let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
            let line = match fup::echo::serve(&stream) {
                Ok(n) => format!("{peer}: echoed {n} bytes"),
                Err(err) => format!("{peer}: echo ended: {err}"),
            };
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        });
        if let Err(err) = spawned {
            let _ = writeln!(
                std::io::stderr(),
                "echo-server: cannot start a thread: {err}"
            );
        }
    }
    Ok(())
}
