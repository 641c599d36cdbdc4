//! Micro-benchmarks that print figures: header and message encode/decode, and whole uploads
//! in one process over loopback, zero-copy (`upload_file`) against buffered (`upload`).
//!
//! ```text
//! cargo run --release --example throughput [MiB]     # upload size, default 256
//! ```
#![deny(unsafe_code)]

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fup::client::{Delivery, Options, upload, upload_file};
use fup::server::{Event, Policy, Server, Store};
use fup::{Body, FileRequest, HEADER_LEN, Header, Message, Outcome};

fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(256), |a| a.parse())
        .context("size in MiB")?;
    codec();
    uploads(mib)
}

/// Times `f` over `n` calls and prints nanoseconds per call.
fn per_op(what: &str, n: u32, mut f: impl FnMut()) {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{what:<40} {ns:>8.1} ns/op");
}

fn codec() {
    let header = Message::single(1, Body::Data { len: 1 << 20 }).header();
    let bytes = header.encode();
    per_op("header encode", 10_000_000, || {
        black_box(black_box(&header).encode());
    });
    per_op("header decode", 10_000_000, || {
        black_box(Header::decode(black_box(&bytes)).unwrap());
    });
    let request = Message::single(
        1,
        Body::Request(FileRequest::new(1 << 30, "사진 2026-11-24.jpg")),
    );
    let mut buf = Vec::with_capacity(512);
    per_op("request write_to (Vec)", 5_000_000, || {
        buf.clear();
        black_box(&request).write_to(&mut buf).unwrap();
    });
    let encoded = buf.clone();
    per_op("request read_from (slice)", 5_000_000, || {
        black_box(Message::read_from(black_box(&encoded[..])).unwrap());
    });
    let result = Message::single(
        1,
        Body::Result {
            request_id: 1,
            outcome: Outcome::Success,
        },
    );
    let mut small = Vec::with_capacity(HEADER_LEN + 5);
    result.write_to(&mut small).unwrap();
    per_op("result read_from (slice)", 5_000_000, || {
        black_box(Message::read_from(black_box(&small[..])).unwrap());
    });
}

fn uploads(mib: u64) -> anyhow::Result<()> {
    // tmpfs when there is one, so the disk does not set the pace.
    let work = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
    let size = mib << 20;
    let path = work.path().join("payload.bin");
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 13 % 251) as u8).collect();
    let mut file = File::create(&path)?;
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    drop(file);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let inbox = work.path().join("inbox");
    let server = Arc::new(Server::new(Store::open(&inbox)?, Policy::accept_all()));
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        server.serve(listener, move |event| {
            if let Event::Finished(summary) = event {
                let _ = done_tx.send(summary.is_stored());
            }
        })
    });
    let options = Options::default();
    for round in 1..=3 {
        for zero_copy in [true, false] {
            let stream = TcpStream::connect(addr)?;
            let file = File::open(&path)?;
            let started = Instant::now();
            let sent = if zero_copy {
                upload_file(&stream, &file, "payload.bin", size, &options, |_| {})?
            } else {
                // Any reader: read through the buffer.
                upload(&stream, &file, "payload.bin", size, &options, |_| {})?
            };
            let secs = started.elapsed().as_secs_f64();
            ensure!(sent.delivery == Delivery::Stored, "upload not stored");
            ensure!(
                done_rx.recv_timeout(Duration::from_secs(30))?,
                "server did not store it"
            );
            std::fs::remove_file(inbox.join("payload.bin"))?;
            let how = if zero_copy {
                "upload_file (sendfile)"
            } else {
                "upload (buffered)"
            };
            println!(
                "round {round}: {mib} MiB {how:<24} {:>8.0} MiB/s",
                mib as f64 / secs
            );
        }
    }
    Ok(())
}
