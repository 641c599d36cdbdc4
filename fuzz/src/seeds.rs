//! Writes the `secure` target's seeds (`seeds/secure/`) with the library's own encoders, so
//! they follow the batch frames' format: what a client sends for a small tree, accepted or
//! denied, cut in its data, refused in part by a size policy, in two manifest messages, and
//! with a path that is all slashes. Run from `fuzz/`: `cargo run --bin seeds`.

use std::fs;
use std::path::Path;

use fup::batch::frame::{self, ResumePoint, Verdict};
use fup::batch::walk::walk;
use fup::batch::{Kind, Limits};
use fup::client::Options;
use fup::client::batch::send_batch;
use fup::testing::Duplex;

fn main() {
    let out = Path::new("seeds/secure");
    fs::create_dir_all(out).unwrap();
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("d");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("x"), b"abc").unwrap();
    fs::write(tree.join(".env"), b"KEY=1").unwrap();
    fs::write(src.path().join("f"), b"").unwrap();
    // Fixed times, so that the seeds are the same bytes on every run.
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for path in [tree.join("x"), tree.join(".env"), src.path().join("f"), tree.clone()] {
        fs::File::open(&path).unwrap().set_modified(when).unwrap();
    }
    let walked = walk(&[tree, src.path().join("f")], &Limits::DEFAULT).unwrap();
    // The client's bytes when the server accepts the whole batch.
    let accepted = Verdict::Accepted(ResumePoint::default(), Vec::new()).encode();
    let mut reply = Vec::new();
    frame::send(&mut reply, frame::VERDICT, 0, true, &accepted).unwrap();
    let mut duplex = Duplex::new(&[&reply]);
    let options = Options {
        chunk_size: 2,
        ..Options::default()
    };
    // It ends waiting for the server's DONE, which the script does not hold.
    let _ = send_batch(&mut duplex, &walked.found, &options, |_| {}, |_, _| {});
    let client = duplex.output;
    // The first byte is the operator: bit 0 accepts, bit 1 sets --max-size 2.
    let seed = |name: &str, operator: u8, bytes: &[u8]| {
        fs::write(out.join(name), [&[operator][..], bytes].concat()).unwrap();
    };
    seed("accept", 1, &client);
    seed("deny", 0, &client);
    seed("refuse-some", 3, &client);
    seed("cut", 1, &client[..client.len() * 2 / 3]);

    // The same entries in two manifest messages.
    let entries: Vec<_> = walked.found.iter().map(|f| f.entry.clone()).collect();
    let mut first = Vec::new();
    frame::write_manifest(&mut first, &entries[..1]).unwrap();
    let mut rest = Vec::new();
    frame::write_manifest(&mut rest, &entries[1..]).unwrap();
    // The first message without its "last" flag: byte 13 of the header.
    first[13] = 0;
    let manifest_len = {
        let mut whole = Vec::new();
        frame::write_manifest(&mut whole, &entries).unwrap();
        whole.len()
    };
    seed(
        "two-manifests",
        1,
        &[&first[..], &rest, &client[manifest_len..]].concat(),
    );

    // A path of slashes only, as long as a path may be.
    let mut bad = entries[0].clone();
    bad.path = vec![String::new(); frame::MAX_PATH / 2];
    bad.kind = Kind::Dir;
    let mut manifest = Vec::new();
    frame::write_manifest(&mut manifest, &[bad]).unwrap();
    seed("bad-path", 1, &manifest);
    println!("seeds written in {}", out.display());
}
