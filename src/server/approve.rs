//! The seam where an operator decides: [`Approve`], asked about each upload that no policy
//! rule decided, with everything worth knowing in an [`Ask`]. The terminal's implementation
//! lives in `term`; tests pass a closure.

use std::fmt;
use std::net::SocketAddr;

use super::names::RequestName;
use super::policy::Decision;
use super::store::Store;
use super::trust::Client;
use crate::batch::Totals;
use crate::wire::Verdict;

/// What the operator is asked about: one upload request whose name has already been read and
/// checked ([`read_request_name`](super::names::read_request_name)).
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the client is: plain, or secure with its identity (and label, if trusted).
    pub client: &'a Client,
    /// The file's name: as the client sent it, and the one component it is stored under.
    pub name: &'a RequestName,
    /// The file's size in bytes, as announced (for a batch: all its files together).
    pub size: u64,
    /// For a batch: what it holds; `name` is then its first top item.
    pub batch: Option<&'a Totals>,
    /// For a batch: how many of its files the policy refused already (they are not part of
    /// the question, nor of `size`), and why.
    pub refused: Option<(usize, &'a str)>,
    /// For a batch resumed after a cut: the bytes an earlier try left, of `size`.
    pub resuming: Option<u64>,
    /// Where it will be stored.
    pub store: &'a Store,
    /// Free space in the upload directory, if known.
    pub free: Option<u64>,
    /// Whether the client has hung up; an approver that waits should give up then.
    pub client_gone: &'a dyn Fn() -> bool,
}

impl fmt::Debug for Ask<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("peer", &self.peer)
            .field("client", &self.client)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("store", &self.store.dir())
            .field("free", &self.free)
            .finish_non_exhaustive()
    }
}

impl Ask<'_> {
    /// The name it would be stored under now: `name`, or `name (1).ext`… when `name` exists.
    /// Asked when the question is shown, not when the request arrived, since uploads that
    /// finish in between may take names.
    pub fn save_as(&self) -> String {
        self.store.free_name(&self.name.stored)
    }
}

/// Decides on upload requests. Called from many connection threads at once.
pub trait Approve: Send + Sync {
    /// Decides on one request; blocking here holds only that connection.
    fn approve(&self, ask: &Ask<'_>) -> Decision;

    /// The server is shutting down: questions waiting or on screen should be denied now.
    fn stop(&self) {}
}

impl<A: Approve + ?Sized> Approve for std::sync::Arc<A> {
    fn approve(&self, ask: &Ask<'_>) -> Decision {
        (**self).approve(ask)
    }

    fn stop(&self) {
        (**self).stop();
    }
}

/// A closure is an operator that always answers itself.
impl<F: Fn(&Ask<'_>) -> Verdict + Send + Sync> Approve for F {
    fn approve(&self, ask: &Ask<'_>) -> Decision {
        self(ask).into()
    }
}
