//! Fuzzes a whole server session over an in-memory stream: whatever a client sends, the
//! session ends without panicking, leaves no temp file, and stores only complete files.
#![no_main]

use std::fs;
use std::sync::OnceLock;

use fup::server::{Ask, Policy, Server, Store};
use fup::testing::Duplex;
use fup::{Body, Message, Verdict};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    // tmpfs when there is one: the target writes a file per accepted run.
    DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    // The first byte is the operator: odd accepts, even denies.
    let Some((&operator, client)) = data.split_first() else { return };
    let approve = move |_: &Ask<'_>| if operator % 2 == 1 { Verdict::Accepted } else { Verdict::Denied };
    let server = Server::new(Store::open(dir.path()).unwrap(), Policy::default()).with_operator(approve);
    let mut duplex = Duplex::new(&[client]);
    let summary = server.session("127.0.0.1:1".parse().unwrap()).run(&mut duplex);

    // Whatever the server wrote is well-formed protocol.
    let mut replies = &duplex.output[..];
    while let Some(msg) = Message::read_from(&mut replies).expect("server output decodes") {
        assert!(matches!(msg.body, Body::Response { .. } | Body::Result { .. }));
    }
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap()).collect();
    for entry in &entries {
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with(".fup-"), "temp file left behind: {name}");
    }
    if summary.is_stored() {
        let size = summary.request.as_ref().unwrap().size;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].metadata().unwrap().len(), size);
    } else {
        assert!(entries.is_empty(), "{summary}");
    }
    for entry in entries {
        fs::remove_file(entry.path()).unwrap();
    }
});
