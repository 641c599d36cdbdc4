//! What an unknown peer may cost the server before anyone decided about it: every limit in
//! one place, with its name, its default and its option. [`Budget`] holds them, and the
//! counters that enforce them: memory for manifests in flight ([`MemoryBudget`]), connections
//! per secure client ([`PerKey`]), and questions waiting per address and per secure client;
//! [`FairQueue`] asks the operator in turn across addresses. Connections per address are counted by the accept
//! loop ([`serve_each`](crate::net::serve_each)), before a thread is spent.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::secure::Identity;

/// Bytes all manifests in flight may hold together, unless told (`--manifest-memory`): one
/// manifest of the largest size the limits allow fits (about 110 MiB for 1,000,000 entries
/// in 64 MiB), and any number of peers together cannot take more.
pub const DEFAULT_MANIFEST_MEMORY: u64 = 128 * 1024 * 1024;
/// Connections one address may hold at once, unless told (`--max-per-address`): an eighth of
/// the default [`--max-connections`](crate::net::listen::DEFAULT_MAX_CONNECTIONS).
pub const DEFAULT_PER_ADDRESS: usize = 8;
/// Connections one secure client (one identity) may hold at once, unless told
/// (`--max-per-client`).
pub const DEFAULT_PER_CLIENT: usize = 8;
/// Questions from one address that may wait for the operator at once, unless told
/// (`--max-questions-per-address`); more are denied at once.
pub const DEFAULT_QUESTIONS_PER_ADDRESS: usize = 4;
/// Questions from one secure client (one identity) that may wait for the operator at once,
/// unless told (`--max-questions-per-client`); more are denied at once.
pub const DEFAULT_QUESTIONS_PER_CLIENT: usize = 4;
/// Time from a connection's start to its first message (the request, or the secure-mode
/// probe) and, in secure mode, to the end of the TLS handshake, unless told
/// (`--hello-timeout`): seconds, not `--timeout`, since a stranger holds a slot meanwhile.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What unknown peers may cost: the limits, and the counters that hold them.
#[derive(Debug)]
pub struct Budget {
    /// Memory for the manifests of batches in flight.
    pub manifests: Arc<MemoryBudget>,
    /// Connections per secure client.
    pub clients: PerKey<Identity>,
    /// Questions waiting for the operator, per address.
    pub questions: PerKey<IpAddr>,
    /// Questions waiting for the operator, per secure client.
    pub client_questions: PerKey<Identity>,
    /// Time to the first message and through the handshake.
    pub hello_timeout: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            manifests: Arc::new(MemoryBudget::new(DEFAULT_MANIFEST_MEMORY)),
            clients: PerKey::new(DEFAULT_PER_CLIENT),
            questions: PerKey::new(DEFAULT_QUESTIONS_PER_ADDRESS),
            client_questions: PerKey::new(DEFAULT_QUESTIONS_PER_CLIENT),
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        }
    }
}

pub use crate::net::listen::address_key;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation on the counters is one step: a holder that panicked left them whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes shared by many holders, never more than a limit in all.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Its limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// A holder of nothing yet.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(self),
            held: 0,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// What one holder has of a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    held: u64,
}

impl Charge {
    /// Holds at least `bytes` in all, taking what is missing from the budget.
    ///
    /// # Errors
    ///
    /// [`OverBudget`] when the budget has not that much left; what was held stays held.
    pub fn at_least(&mut self, bytes: u64) -> Result<(), OverBudget> {
        if bytes <= self.held {
            return Ok(());
        }
        match self.budget.take(bytes - self.held) {
            true => {
                self.held = bytes;
                Ok(())
            }
            false => Err(OverBudget {
                wanted: bytes,
                used: self.budget.used(),
                limit: self.budget.limit,
            }),
        }
    }

    /// Holds exactly `bytes` (at most what it held): gives the rest back.
    pub fn settle(&mut self, bytes: u64) {
        if bytes < self.held {
            self.budget.give(self.held - bytes);
            self.held = bytes;
        }
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

/// A [`MemoryBudget`] had not enough left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} would be held, and {} of {} are in use", crate::text::bytes(*.wanted), crate::text::bytes(*.used), crate::text::bytes(*.limit))]
pub struct OverBudget {
    /// What this holder would have held.
    pub wanted: u64,
    /// What all holders held.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// At most so many holders at once per key (an address, an identity).
#[derive(Debug)]
pub struct PerKey<K> {
    max: usize,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> PerKey<K> {
    /// At most `max` per key.
    pub fn new(max: usize) -> PerKey<K> {
        PerKey {
            max,
            counts: Arc::default(),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// One more holder for `key`, if it has fewer than the limit; its place is given back
    /// when the [`Held`] is dropped.
    pub fn take(&self, key: &K) -> Option<Held<K>> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Held {
            key: key.clone(),
            counts: Arc::clone(&self.counts),
        })
    }

    /// Holders of `key` now.
    pub fn count(&self, key: &K) -> usize {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }
}

/// One place taken in a [`PerKey`].
#[derive(Debug)]
pub struct Held<K: Eq + Hash> {
    key: K,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Whose turn it is, among tickets waiting under keys (addresses): the next one is the
/// oldest ticket of the key served least recently, so that a key with many tickets waiting
/// takes turns with the others instead of going first with all of them.
#[derive(Debug)]
pub struct FairQueue<K> {
    next_ticket: u64,
    /// Tickets waiting, in arrival order, with their keys.
    waiting: VecDeque<(u64, K)>,
    /// When each key last had a turn (a count of turns given), for keys with tickets waiting.
    served: HashMap<K, u64>,
    turns: u64,
    /// The ticket whose turn it is, until it is done.
    current: Option<u64>,
}

impl<K> Default for FairQueue<K> {
    fn default() -> FairQueue<K> {
        FairQueue {
            next_ticket: 0,
            waiting: VecDeque::new(),
            served: HashMap::new(),
            turns: 0,
            current: None,
        }
    }
}

impl<K: Eq + Hash + Clone> FairQueue<K> {
    /// Queues a ticket under `key`; returns it.
    pub fn join(&mut self, key: K) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back((ticket, key));
        ticket
    }

    /// Takes `ticket` out of the queue (it is done, or gave up).
    pub fn leave(&mut self, ticket: u64) {
        self.waiting.retain(|(t, _)| *t != ticket);
        if self.current == Some(ticket) {
            self.current = None;
        }
        // A key that left keeps its place in the rotation while that place still counts: a
        // key served after some key still waiting must not jump ahead of it by leaving and
        // coming back. Older places are forgotten (coming back, such a key ranks first, as
        // it would anyway).
        let keys: Vec<&K> = self.waiting.iter().map(|(_, key)| key).collect();
        let floor = keys
            .iter()
            .filter_map(|key| self.served.get(*key))
            .min()
            .copied()
            .unwrap_or(u64::MAX);
        self.served
            .retain(|key, turn| *turn > floor || keys.contains(&key));
    }

    /// Whether it is `ticket`'s turn now: no turn is under way, and it is the oldest ticket
    /// of the key served least recently. It keeps the turn until it leaves.
    pub fn is_turn(&mut self, ticket: u64) -> bool {
        if let Some(current) = self.current {
            return current == ticket;
        }
        let next = self
            .waiting
            .iter()
            .enumerate()
            .min_by_key(|(arrived, (_, key))| (self.served.get(key).copied(), *arrived))
            .map(|(_, (t, key))| (*t, key.clone()));
        match next {
            Some((t, key)) if t == ticket => {
                self.turns += 1;
                self.served.insert(key, self.turns);
                self.current = Some(ticket);
                true
            }
            _ => false,
        }
    }

    /// Tickets waiting behind the one whose turn it is.
    pub fn behind(&self) -> usize {
        self.waiting.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_budget_is_never_exceeded_and_is_given_back() {
        let budget = Arc::new(MemoryBudget::new(100));
        let mut a = budget.charge();
        let mut b = budget.charge();
        a.at_least(60).unwrap();
        a.at_least(30).unwrap();
        assert_eq!(a.held(), 60);
        let err = b.at_least(50).unwrap_err();
        assert_eq!(
            err,
            OverBudget {
                wanted: 50,
                used: 60,
                limit: 100
            }
        );
        b.at_least(40).unwrap();
        a.settle(20);
        assert_eq!(budget.used(), 60);
        b.at_least(80).unwrap();
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn per_key_places_are_counted_and_given_back() {
        let per = PerKey::new(2);
        let (a, b) = ("a".to_string(), "b".to_string());
        let one = per.take(&a).unwrap();
        let two = per.take(&a).unwrap();
        assert!(per.take(&a).is_none());
        let other = per.take(&b).unwrap();
        drop(one);
        assert_eq!(per.count(&a), 1);
        let _three = per.take(&a).unwrap();
        drop((two, other));
        assert_eq!(per.count(&b), 0);
    }

    #[test]
    fn addresses_count_by_host() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn turns_alternate_across_keys() {
        let mut queue = FairQueue::default();
        // Twelve from one address, then two from another, then one from a third.
        let many: Vec<u64> = (0..12).map(|_| queue.join("a")).collect();
        let b: Vec<u64> = (0..2).map(|_| queue.join("b")).collect();
        let c = queue.join("c");
        let mut order = Vec::new();
        for _ in 0..15 {
            let all: Vec<u64> = queue.waiting.iter().map(|(t, _)| *t).collect();
            let turn = all.into_iter().find(|&t| queue.is_turn(t)).unwrap();
            // Only one turn at a time.
            assert!(!queue.is_turn(turn + 100));
            order.push(turn);
            queue.leave(turn);
        }
        assert_eq!(&order[..5], &[many[0], b[0], c, many[1], b[1]]);
        assert_eq!(order.len(), 15);
        assert_eq!(queue.behind(), 0);
    }

    #[test]
    fn leaving_and_coming_back_does_not_jump_the_queue() {
        let mut queue = FairQueue::default();
        let b = (queue.join("b"), queue.join("b"));
        let c = (queue.join("c"), queue.join("c"));
        let next = |queue: &mut FairQueue<&str>| {
            let all: Vec<u64> = queue.waiting.iter().map(|(t, _)| *t).collect();
            all.into_iter().find(|&t| queue.is_turn(t)).unwrap()
        };
        assert_eq!(next(&mut queue), b.0);
        queue.leave(b.0);
        // "a" comes, is served, leaves, and comes back at once, again and again.
        let a = queue.join("a");
        assert_eq!(next(&mut queue), c.0);
        queue.leave(c.0);
        assert_eq!(next(&mut queue), a);
        queue.leave(a);
        let again = queue.join("a");
        // b and c were served before a: they go first.
        assert_eq!(next(&mut queue), b.1);
        queue.leave(b.1);
        assert_eq!(next(&mut queue), c.1);
        queue.leave(c.1);
        assert_eq!(next(&mut queue), again);
    }
}
