//! Fuzzes what a secure client sends after the TLS handshake (batches: manifests, proofs,
//! data, digests; or a single request), over an in-memory stream, with partials kept, a
//! small memory budget for manifests and (by the first byte) a size policy that refuses
//! files in the batch: the session ends without panicking, everything it
//! answers is well-formed frames, no temp file is left in the upload directory, and a
//! partial is kept only under the server's own directory of partials.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fup::batch::frame::{self, Frame};
use fup::secure::Identity;
use fup::server::budget::{Budget, MemoryBudget};
use fup::secure::pair::{self, Pairing};
use fup::server::{Ask, Partials, Policy, SecureMode, Server, Store, TrustedClients};
use fup::testing::Duplex;
use fup::Verdict;
use libfuzzer_sys::fuzz_target;

mod common;

use common::{check_and_clear, dir};

/// Secure mode with a key made once, and trusted clients in a file of its own (never written:
/// no pairing succeeds).
fn secure_mode() -> SecureMode {
    static KEYS: OnceLock<(tempfile::TempDir, fup::secure::Keys)> = OnceLock::new();
    let (keys_dir, keys) = KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keys = fup::secure::Keys::load_or_create(dir.path()).unwrap();
        (dir, keys)
    });
    SecureMode {
        config: fup::secure::tls::server_config(keys).unwrap(),
        trusted: TrustedClients::load(&keys_dir.path().join("trusted_clients")).unwrap(),
        identity: keys.identity(),
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    // The first byte is the operator: bit 0 accepts (else denies), bit 1 sets a size policy
    // that refuses files over 2 bytes.
    let Some((&operator, client)) = data.split_first() else { return };
    let approve =
        move |_: &Ask<'_>| if operator & 1 == 1 { Verdict::Accepted } else { Verdict::Denied };
    let policy = Policy {
        max_size: (operator & 2 == 2).then_some(2),
        ..Policy::default()
    };
    let budget = Budget {
        manifests: Arc::new(MemoryBudget::new(256 * 1024)),
        ..Budget::default()
    };
    let partials = Partials::in_dir(dir.path(), Duration::from_secs(3600), 1 << 20).unwrap();
    // A server that pairs, with a code open: a pairing offer is read and answered (no
    // fuzzer guesses the confirmation, so no one is ever trusted).
    let pairing = Arc::new(Pairing::new(Duration::from_secs(3600)));
    pairing.open();
    let server = Server::new(Store::open(dir.path()).unwrap(), policy)
        .with_operator(approve)
        .with_budget(budget)
        .with_partials(partials)
        .with_secure(secure_mode())
        .with_pairing(pairing);
    let mut duplex = Duplex::new(&[client]);
    let id = Identity::of_public_key(&[7; 32]);
    let _summary = server
        .session("127.0.0.1:1".parse().unwrap())
        .run_authenticated(&mut duplex, id, fup::secure::probe::VERSION);
    assert_eq!(server.budget().manifests.used(), 0, "the manifest's memory is given back");

    // Whatever the server wrote is well-formed frames (or plain responses and results).
    let mut replies = &duplex.output[..];
    while let Some(frame) = Frame::read_from(&mut replies).expect("server output decodes") {
        let body = frame::read_body(&mut replies, frame.len, 1 << 24).expect("a whole body");
        match frame.kind {
            frame::VERDICT => drop(frame::Verdict::decode(&body).expect("a verdict decodes")),
            frame::DONE => drop(frame::decode_done(&body).expect("a done message decodes")),
            frame::ITEM => assert_eq!(frame::decode_done(&body).expect("an item decodes").len(), 1),
            frame::RESUME_AT => assert_eq!(body.len(), 8),
            // A pairing's answers: 0 and what follows, or 1 and why.
            pair::PAIR_REPLY | pair::PAIRED => assert!(matches!(body.first(), Some(0 | 1))),
            2 | 4 => assert_eq!(body.len(), 5),
            other => panic!("unexpected frame type {other:#x}"),
        }
    }
    check_and_clear(dir.path());
});
