//! Secure mode between fup programs: TLS 1.3 with mutual, pinned identities, on the same
//! port as the plain protocol, offered by a [`probe`] that plain servers drop harmlessly.
//!
//! What it proves rests on these: an [`Identity`] is the hash of a public key ([`keys`]), a
//! server trusts the clients in `trusted_clients`, a client pins servers in `known_hosts`
//! ([`files`]); [`tls`] makes the configurations that check them, [`stream`] runs the
//! exchange over TLS, and [`dial`] is the client's way in: probe, handshake, pin, or plain.

pub mod dial;
pub mod files;
pub mod id;
pub mod keys;
pub mod pair;
pub mod probe;
pub mod stream;
pub mod tls;
pub mod web_cert;

pub use id::{IdError, Identity};
pub use keys::{KeyError, Keys};
