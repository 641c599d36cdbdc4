//! Fuzzes what a browser (or anyone posing as one) sends to the upload page, over an
//! in-memory stream: request heads, offers, file bodies. The session ends without panicking,
//! everything it writes is whole HTTP responses with the length they announce, the memory
//! budget for offers is given back, and nothing is left in the upload directory but what
//! was stored whole (or partials under the server's own directory).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use fup::server::budget::{Budget, MemoryBudget};
use fup::server::web::Web;
use fup::server::{Ask, Partials, Policy, Server, Store};
use fup::testing::Duplex;
use fup::Verdict;
use libfuzzer_sys::fuzz_target;

mod common;

use common::{check_and_clear, dir};

/// Reads the responses in `out`: each a status line, headers, and the body its length says.
fn check_responses(mut out: &[u8]) {
    while !out.is_empty() {
        if let Some(rest) = out.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n") {
            out = rest;
            continue;
        }
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head");
        let head = std::str::from_utf8(&out[..end]).expect("a text head");
        assert!(head.starts_with("HTTP/1.1 "), "{head}");
        let len: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .expect("a length")
            .parse()
            .unwrap();
        out = &out[end + 4..];
        // A HEAD's answer has no body (its length is a GET's): the next answer follows, or
        // nothing. Bodies are JSON or the page, never a status line.
        if out.is_empty() || out.starts_with(b"HTTP/1.1 ") {
            continue;
        }
        assert!(out.len() >= len, "a short body: {head}");
        out = &out[len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
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
    let server = Server::new(Store::open(dir.path()).unwrap(), policy)
        .with_operator(approve)
        .with_budget(budget)
        .with_partials(partials)
        .with_timeout(Duration::from_millis(50))
        .with_web(Web::new());
    let mut duplex = Duplex::new(&[client]);
    let _summary = server.session("127.0.0.1:1".parse().unwrap()).run(&mut duplex);
    assert_eq!(server.budget().manifests.used(), 0, "the offers' memory is given back");
    if fup::server::web::kind_of(client) == Some(fup::server::web::Kind::Http) {
        check_responses(&duplex.output);
    }
    check_and_clear(dir.path());
});
