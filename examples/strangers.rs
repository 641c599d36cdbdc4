//! What strangers can do to a fup server, for `scripts/strangers.sh` to measure: each
//! connection from its own loopback address (127.0.0.2 and up) and with a key made for it,
//! as anyone who can reach the port could.
//!
//! ```text
//! cargo run --release --example strangers -- manifests 127.0.0.1:PORT 64
//! cargo run --release --example strangers -- soak 127.0.0.1:PORT 60 DIR
//! ```
//!
//! `manifests ADDR N`: N connections at once, each sending the largest manifest the limits
//! allow (1,000,000 files of 64-byte names, 64 MiB), then waiting for the verdict; prints how
//! each ended. `soak ADDR SECONDS DIR`: for SECONDS, four clients start batches of one large
//! file (up to an eighth of DIR's free space), send a little of it and vanish, over and over,
//! while one good client uploads 1 MiB files one after another; prints how many of each.
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fup::batch::frame::{self, DATA, Frame, MANIFEST, VERDICT};
use fup::batch::{Entry, Kind};
use fup::net::{Conn, Deadline};
use fup::secure::{Keys, probe, stream, tls};

/// How long anything may take.
const WAIT: Duration = Duration::from_secs(300);

/// A secure connection as a stranger: from `from`, with a key of its own, trusting whatever
/// server answers.
fn stranger(from: [u8; 4], to: SocketAddr) -> anyhow::Result<(tempfile::TempDir, impl Conn)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&to.into())?;
    let mut sock: TcpStream = socket.into();
    sock.set_nodelay(true)?;
    sock.write_all(&probe::PROBE)?;
    let mut answer = [0; 16];
    sock.read_exact(&mut answer)?;
    ensure!(
        probe::answered(&answer).is_some(),
        "not a secure fup server"
    );
    let dir = tempfile::tempdir()?;
    let keys = Keys::load_or_create(dir.path())?;
    let (config, _) = tls::client_config(&keys, None)?;
    let tls = stream::connect(sock, config, Deadline::after(WAIT))?;
    Ok((dir, tls))
}

/// Reads the verdict: `None` accepted, else why not.
fn verdict(link: &mut impl Read) -> anyhow::Result<Option<String>> {
    let head = Frame::read_from(link)?.context("closed before a verdict")?;
    ensure!(head.kind == VERDICT, "not a verdict: {:#x}", head.kind);
    let body = frame::read_body(link, head.len, 1 << 20)?;
    Ok(match frame::Verdict::decode(&body)? {
        frame::Verdict::Accepted(..) => None,
        frame::Verdict::Denied(_, why) => Some(fup::text::from_peer(&why)),
    })
}

/// The largest manifest: 1,000,000 files of 64-byte names, written 1 MiB at a time, until
/// the server answers (it may refuse before the end).
fn largest_manifest(link: &mut impl Conn, who: usize) -> std::io::Result<()> {
    const ENTRIES: usize = 1_000_000;
    let mut body = Vec::with_capacity(frame::MAX_MANIFEST_CHUNK);
    for i in 0..ENTRIES {
        let name = format!("{who:0>6}-{i:0>57}");
        // An empty file, its time not known (0x80); its name's length fits in one byte.
        let mut entry = vec![1 | 0x80, 0, name.len() as u8];
        entry.extend_from_slice(name.as_bytes());
        if body.len() + entry.len() > frame::MAX_MANIFEST_CHUNK {
            frame::send(link, MANIFEST, 0, false, &body)?;
            link.flush()?;
            body.clear();
            if link.has_input() {
                return Ok(());
            }
        }
        body.extend_from_slice(&entry);
    }
    frame::send(link, MANIFEST, 0, true, &body)?;
    link.flush()
}

fn manifests(to: SocketAddr, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let runs: Vec<_> = (0..count)
        .map(|n| {
            thread::spawn(move || -> anyhow::Result<String> {
                let from = [127, 0, 1 + (n / 250) as u8, 2 + (n % 250) as u8];
                let (_dir, mut link) = stranger(from, to)?;
                // Written whole (a refusal's answer waits while the server reads and drops
                // the rest), then the verdict read.
                let _ = largest_manifest(&mut link, n);
                Ok(match verdict(&mut link) {
                    Ok(None) => "accepted".into(),
                    Ok(Some(why)) => format!("denied: {}", fup::text::from_peer(&why)),
                    // The server answered and closed while the rest was on its way.
                    Err(err) if err.to_string().contains("Broken pipe") => {
                        "cut while sending (the server answered and closed)".into()
                    }
                    Err(err) => format!("failed: {err}"),
                })
            })
        })
        .collect();
    let mut ends: Vec<String> = Vec::new();
    for run in runs {
        ends.push(match run.join() {
            Ok(Ok(end)) => end,
            Ok(Err(err)) => format!("failed: {err:#}"),
            Err(_) => "failed: panicked".into(),
        });
    }
    ends.sort();
    let mut counted: Vec<(String, usize)> = Vec::new();
    for end in ends {
        match counted.last_mut() {
            Some((last, n)) if *last == end => *n += 1,
            _ => counted.push((end, 1)),
        }
    }
    for (end, n) in counted {
        println!("{n:>4} × {end}");
    }
    println!("in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A well-spread number from `seed` (SplitMix64).
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn soak(to: SocketAddr, seconds: u64, dir: &Path) -> anyhow::Result<()> {
    let free = fup::sys::free_space(dir).context("free space unknown")?;
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let killers: Vec<_> = (0..4u8)
        .map(|k| {
            let (stop, cut) = (Arc::clone(&stop), Arc::clone(&cut));
            thread::spawn(move || {
                let mut n: u64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    // Sizes spread over up to an eighth of the free space; bytes sent up to 4 MiB.
                    let size = (1 << 20) + splitmix(n << 8 | u64::from(k)) % (free / 8);
                    let sent = splitmix(n << 8 | u64::from(k) | 1 << 63) % (4 << 20);
                    let cut_one = || -> anyhow::Result<()> {
                        let from = [127, 0, 2, 2 + k];
                        let (_dir, mut link) = stranger(from, to)?;
                        let entry = Entry {
                            path: vec![format!("cut-{k}-{n}.bin")],
                            kind: Kind::File {
                                size,
                                executable: false,
                            },
                            modified: None,
                        };
                        frame::write_manifest(&mut link, &[entry])?;
                        link.flush()?;
                        if verdict(&mut link)?.is_some() {
                            bail!("denied");
                        }
                        let chunk = vec![0x5a; sent as usize];
                        let head = Frame {
                            id: 0,
                            kind: DATA,
                            len: sent as u32,
                            last: false,
                            seq: 0,
                        };
                        link.write_all(&head.encode())?;
                        link.write_all(&chunk)?;
                        link.flush()?;
                        // Vanishes: no end of the file, no digest.
                        Ok(())
                    };
                    if cut_one().is_ok() {
                        cut.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let client = std::env::var("FUP_CLIENT").unwrap_or_else(|_| "target/release/fup-client".into());
    let src = tempfile::tempdir()?;
    let file = src.path().join("good.bin");
    std::fs::write(&file, vec![0x42; 1 << 20])?;
    let (mut stored, mut denied, mut failed) = (0u64, 0u64, 0u64);
    let mut reasons: Vec<String> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let out = std::process::Command::new(&client)
            .args(["--port", &to.port().to_string(), &to.ip().to_string()])
            .arg(&file)
            .output()
            .with_context(|| format!("cannot run {client}"))?;
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => stored += 1,
            Some(1) if said.contains("denied") => {
                denied += 1;
                if reasons.len() < 3 && !reasons.contains(&said) {
                    reasons.push(said);
                }
            }
            _ => {
                failed += 1;
                if reasons.len() < 3 {
                    reasons.push(said);
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for killer in killers {
        let _ = killer.join();
    }
    println!(
        "good uploads: {stored} stored, {denied} denied, {failed} failed, in {seconds} s, while {} batches were cut",
        cut.load(Ordering::SeqCst)
    );
    for reason in reasons {
        println!("  e.g. {}", reason.trim_end());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["manifests", to, count] => manifests(to.parse()?, count.parse()?),
        ["soak", to, seconds, dir] => soak(to.parse()?, seconds.parse()?, Path::new(dir)),
        _ => bail!("usage: strangers manifests ADDR N | strangers soak ADDR SECONDS DIR"),
    }
}
