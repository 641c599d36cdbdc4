//! Integration tests: the real binaries on 127.0.0.1 with `--port 0`, real bytes, exact results.
#![deny(unsafe_code)]

mod accounting;
mod batch;
mod cli;
mod conventions;
mod dialect;
mod hostile;
mod pair;
mod pty;
mod resume;
mod secure;
mod strangers;
mod terminal;
mod util;
mod web;
mod wire;
