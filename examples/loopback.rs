//! A whole upload over loopback in one process: a server on 127.0.0.1 with a free port that
//! accepts everything, and a client sending it a generated 64 MiB file.
//!
//! ```text
//! cargo run --release --example loopback
//! ```
#![deny(unsafe_code)]

use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fup::client::{Delivery, Options, upload};
use fup::server::{Event, Policy, Server, Store};
use fup::text;

const SIZE: usize = 64 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("cannot create a scratch directory")?;
    let inbox = work.path().join("inbox");

    // The server: bind first (port 0 picks a free one), then serve from a thread.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = Arc::new(Server::new(Store::open(&inbox)?, Policy::accept_all()));
    let (log_tx, log_rx) = mpsc::channel();
    thread::spawn(move || {
        server.serve(listener, move |event| {
            if let Event::Finished(summary) = event {
                let _ = log_tx.send(summary.to_string());
            }
        })
    });
    println!(
        "server: listening on {addr}, storing into {}",
        inbox.display()
    );

    // A file to send: a pattern that is cheap to make and to check.
    let path = work.path().join("example.bin");
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    File::create(&path)?.write_all(&data)?;

    // The client: one connection, one file.
    let stream = TcpStream::connect(addr)?;
    let started = Instant::now();
    let delivery = upload(
        &stream,
        File::open(&path)?,
        "example.bin",
        SIZE as u64,
        &Options::default(),
        |_| {},
    )?
    .delivery;
    let elapsed = started.elapsed();
    println!(
        "client: sent \"example.bin\" {} in {:.2} s ({}): {delivery:?}",
        text::bytes(SIZE as u64),
        elapsed.as_secs_f64(),
        text::rate(SIZE as u64, elapsed)
    );
    println!("server: {}", log_rx.recv_timeout(Duration::from_secs(10))?);

    ensure!(delivery == Delivery::Stored, "the upload was not stored");
    ensure!(
        fs::read(inbox.join("example.bin"))? == data,
        "the stored file differs"
    );
    println!("ok: the stored file is byte-for-byte the one sent");
    Ok(())
}
