//! The first pieces of secure mode between fup programs (#11, not yet wired to a transport):
//! identities as people compare and paste them, and the files that pin them.
//!
//! Secure mode will run TLS 1.3 with mutual, pinned identities on the same port as the plain
//! protocol; what it proves rests on these: an [`Identity`] is the hash of a public key, a
//! server trusts the clients in `trusted_clients`, a client pins servers in `known_hosts`.

pub mod files;
pub mod id;
pub mod keys;
pub mod tls;

pub use id::{IdError, Identity};
pub use keys::{KeyError, Keys};
