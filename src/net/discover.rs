//! fup servers on the LAN, announced and found with mDNS / DNS-SD (`_fup._tcp.local.`, the
//! `mdns-sd` crate, which runs its own thread): a server's name, port and identity, and the
//! number of the pairing code it has open, in its TXT record. What an announcement says is
//! a hint from anyone on the LAN: a pinned server's identity is checked as always, and a
//! pairing proves the server by its code, whatever the announcement claimed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::secure::Identity;

/// The service type fup servers announce.
pub const SERVICE: &str = "_fup._tcp.local.";
/// Most servers one search keeps (a LAN full of announcements costs no more).
pub const MAX_FOUND: usize = 64;

/// Why announcing or searching failed.
pub type Error = mdns_sd::Error;

/// A server's announcement, while it lives (unannounced when dropped).
pub struct Announcer {
    daemon: ServiceDaemon,
    name: String,
    host: String,
    port: u16,
    id: String,
    pair: Mutex<Option<u16>>,
    fullname: Mutex<String>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Announcer {
    /// Announces a server called `name` (this computer's name) on `port` with identity `id`,
    /// and the number of its open pairing code if any, on every interface but loopback.
    ///
    /// # Errors
    ///
    /// If mDNS cannot be started (no multicast socket).
    pub fn start(
        name: &str,
        port: u16,
        id: &Identity,
        pair: Option<u16>,
    ) -> Result<Announcer, Error> {
        let daemon = ServiceDaemon::new()?;
        let host = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>();
        let announcer = Announcer {
            daemon,
            name: name.to_string(),
            host: format!("{host}.local."),
            port,
            id: id.to_string(),
            pair: Mutex::new(pair),
            fullname: Mutex::new(String::new()),
        };
        announcer.register(pair)?;
        Ok(announcer)
    }

    fn register(&self, pair: Option<u16>) -> Result<(), Error> {
        let mut properties = HashMap::from([
            ("id".to_string(), self.id.clone()),
            ("v".to_string(), crate::secure::probe::VERSION.to_string()),
        ]);
        if let Some(pair) = pair {
            properties.insert("pair".to_string(), pair.to_string());
        }
        let info = ServiceInfo::new(SERVICE, &self.name, &self.host, "", self.port, properties)?
            .enable_addr_auto();
        *self.fullname.lock().unwrap_or_else(PoisonError::into_inner) =
            info.get_fullname().to_string();
        self.daemon.register(info)
    }

    /// Says a new pairing number (or none), if it changed.
    ///
    /// # Errors
    ///
    /// If the announcement cannot be made again.
    pub fn set_pair(&self, pair: Option<u16>) -> Result<(), Error> {
        let mut current = self.pair.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == pair {
            return Ok(());
        }
        *current = pair;
        self.register(pair)
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let fullname = self
            .fullname
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Ok(done) = self.daemon.unregister(&fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

/// A server heard on the LAN. Everything in it came from whoever answered: shown escaped,
/// trusted for nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The name it announced.
    pub name: String,
    /// Its addresses (IPv4 first).
    pub addrs: Vec<IpAddr>,
    /// Its port.
    pub port: u16,
    /// The identity it claims, if it gave one that reads as one.
    pub id: Option<Identity>,
    /// The number of the pairing code it has open, if any.
    pub pair: Option<u16>,
}

/// Listens for fup servers for `wait` (or until `enough` says a server found is the one
/// sought), and returns those heard, at most [`MAX_FOUND`], in the order heard.
///
/// # Errors
///
/// If mDNS cannot be started.
pub fn find(wait: Duration, enough: impl Fn(&Found) -> bool) -> Result<Vec<Found>, Error> {
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE)?;
    let until = Instant::now() + wait;
    let mut found: Vec<Found> = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        let ServiceEvent::ServiceResolved(service) = event else {
            continue;
        };
        let mut addrs: Vec<IpAddr> = service
            .get_addresses()
            .iter()
            .map(|addr| addr.to_ip_addr())
            // Link-local IPv6 needs a scope to be reached: not something to print or dial.
            .filter(|addr| match addr {
                IpAddr::V4(v4) => !v4.is_loopback(),
                IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
            })
            .collect();
        addrs.sort_by_key(|addr| (addr.is_ipv6(), *addr));
        let name = service
            .get_fullname()
            .strip_suffix(&format!(".{SERVICE}"))
            .unwrap_or(service.get_fullname())
            .to_string();
        let server = Found {
            name: crate::text::cut(&name, 64).into_owned(),
            addrs,
            port: service.get_port(),
            id: service
                .get_property_val_str("id")
                .and_then(|id| id.parse().ok()),
            pair: service
                .get_property_val_str("pair")
                .and_then(|n| n.parse().ok()),
        };
        let done = !server.addrs.is_empty() && enough(&server);
        match found.iter().position(|known| known.name == server.name) {
            Some(at) => found[at] = server,
            None if found.len() < MAX_FOUND => found.push(server),
            None => {}
        }
        if done {
            break;
        }
    }
    let _ = daemon.stop_browse(SERVICE);
    let _ = daemon.shutdown();
    Ok(found)
}
