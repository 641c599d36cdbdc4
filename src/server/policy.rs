//! The acceptance policy: the rules that decide an upload without asking the operator
//! (`--require-secure`, `--max-size`, free space, trusted clients, `--accept-from`, `--yes`), and the typed reasons for every
//! decision not taken by the operator's own answer. Pure: no sockets, no files, no clock.
//!
//! A new policy rule goes here: a field on [`Policy`], a step in [`Policy::decide`], a
//! [`Reason`] that says it, and a row in the table test.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use super::trust::Client;
use crate::batch::frame::Code;
use crate::text;
use crate::wire::Verdict;

/// Why an upload was accepted or denied, when it was not the operator's own answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `--yes`: every upload is accepted.
    Yes,
    /// `--accept-from`: the client is in this trusted range.
    AcceptFrom(Cidr),
    /// A secure client in the trusted clients' file, under this label if any.
    TrustedClient(Option<String>),
    /// `--require-secure`, and the upload is plain.
    PlainRefused,
    /// `--max-size`: the file is larger than this many bytes.
    MaxSize(u64),
    /// The file is larger than the free space, this many bytes.
    NoSpace(u64),
    /// The server is shutting down.
    ShuttingDown,
    /// The client hung up while its question waited for its turn.
    HungUpWaiting,
    /// The client hung up while its question was on screen.
    Withdrawn,
    /// The operator's standard input is closed: no answer will ever come.
    NoInput,
    /// The operator did not answer within this time.
    PromptTimeout(Duration),
    /// No answer within this time while the server ran in the background of its terminal.
    InBackground(Duration),
    /// The operator's answers were neither yes nor no, too many times.
    NoValidAnswer,
    /// The server has no operator to ask, and no rule decided.
    NoOperator,
    /// So many questions from this address already wait for the operator (the limit per
    /// address).
    TooManyQuestions(usize),
    /// So many questions from this secure client (its identity) already wait for the
    /// operator (the limit per client).
    TooManyClientQuestions(usize),
    /// The manifests of batches in flight hold all the memory they may (this many bytes).
    ManifestMemory(u64),
    /// The client speaks an older version of secure mode than this server (this one).
    OldClient(u16),
    /// So many browser uploads are open already (the limit, in all or from one address).
    BrowsersBusy(usize),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Yes => f.write_str("--yes"),
            Reason::AcceptFrom(range) => write!(f, "--accept-from {range}"),
            Reason::TrustedClient(None) => f.write_str("trusted client"),
            Reason::TrustedClient(Some(label)) => {
                write!(f, "trusted client \"{}\"", text::escape(label))
            }
            Reason::PlainRefused => f.write_str("plain upload refused (--require-secure)"),
            Reason::MaxSize(max) => write!(f, "larger than --max-size {}", text::bytes(*max)),
            Reason::NoSpace(free) => {
                write!(f, "not enough free space ({} free)", text::bytes(*free))
            }
            Reason::ShuttingDown => f.write_str("server is shutting down"),
            Reason::HungUpWaiting => f.write_str("client hung up while waiting"),
            Reason::Withdrawn => f.write_str("client hung up; question withdrawn"),
            Reason::NoInput => f.write_str("no answer: standard input is closed"),
            Reason::PromptTimeout(limit) => {
                write!(f, "no answer within {} s", limit.as_secs_f64())
            }
            Reason::InBackground(limit) => write!(
                f,
                "no answer within {} s: fup-server runs in the background (fg brings it back)",
                limit.as_secs_f64()
            ),
            Reason::NoValidAnswer => f.write_str("no valid answer"),
            Reason::NoOperator => f.write_str("no operator to ask"),
            Reason::TooManyQuestions(max) => write!(
                f,
                "{max} questions from this address already wait for the operator (--max-questions-per-address)"
            ),
            Reason::TooManyClientQuestions(max) => write!(
                f,
                "{max} questions from this client already wait for the operator (--max-questions-per-client)"
            ),
            Reason::ManifestMemory(limit) => write!(
                f,
                "the server is busy: the lists of batches in flight hold all of the {} they may (--manifest-memory); try again later",
                text::bytes(*limit)
            ),
            Reason::BrowsersBusy(max) => write!(
                f,
                "the server is busy: {max} browser uploads are open already; try again later"
            ),
            Reason::OldClient(version) => write!(
                f,
                "the client speaks secure mode {version}, this server {}: fup-client 2.0 or later is needed",
                crate::secure::probe::VERSION
            ),
        }
    }
}

impl Reason {
    /// What the remote sender is told: the same, without the operator's hints (how to
    /// start the server, `fg`), which are for the server's own screen.
    pub fn for_sender(&self) -> String {
        match self {
            Reason::NoInput => "no answer: no one is at the server's terminal".to_string(),
            Reason::InBackground(limit) | Reason::PromptTimeout(limit) => {
                format!("no answer within {} s", limit.as_secs_f64())
            }
            other => other.to_string(),
        }
    }

    /// Its code on the wire (secure mode).
    pub fn code(&self) -> Code {
        match self {
            Reason::MaxSize(_) => Code::TooLarge,
            Reason::NoSpace(_) => Code::NoSpace,
            Reason::ShuttingDown => Code::ShuttingDown,
            Reason::TooManyQuestions(_)
            | Reason::TooManyClientQuestions(_)
            | Reason::ManifestMemory(_)
            | Reason::BrowsersBusy(_) => Code::Busy,
            Reason::OldClient(_) => Code::Refused,
            Reason::Yes
            | Reason::AcceptFrom(_)
            | Reason::TrustedClient(_)
            | Reason::PlainRefused
            | Reason::HungUpWaiting
            | Reason::Withdrawn
            | Reason::NoInput
            | Reason::PromptTimeout(_)
            | Reason::InBackground(_)
            | Reason::NoValidAnswer
            | Reason::NoOperator => Code::Denied,
        }
    }
}

/// A verdict, and why when it was not the operator's own answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Accepted or denied.
    pub verdict: Verdict,
    /// Why, for a decision taken without the operator; `None` when the operator answered.
    pub reason: Option<Reason>,
    /// The operator answered "always": accept, and trust this (secure) client from now on.
    pub always: bool,
}

impl Decision {
    /// Accepted without asking, for `reason`.
    pub fn accept(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Accepted,
            reason: Some(reason),
            always: false,
        }
    }

    /// Denied without asking (or without an answer), for `reason`.
    pub fn deny(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Denied,
            reason: Some(reason),
            always: false,
        }
    }
}

impl From<Verdict> for Decision {
    /// The operator's own answer.
    fn from(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            reason: None,
            always: false,
        }
    }
}

impl Decision {
    /// The operator's answer "always": accepted, and the client trusted from now on.
    pub fn always() -> Decision {
        Decision {
            always: true,
            ..Verdict::Accepted.into()
        }
    }
}

/// The rules a server applies before asking anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Deny files larger than this (`--max-size`).
    pub max_size: Option<u64>,
    /// Accept clients in these ranges (`--accept-from`); sizes are still checked.
    pub accept_from: Vec<Cidr>,
    /// Accept everything that passes the size checks (`--yes`).
    pub accept_all: bool,
    /// Deny every plain upload (`--require-secure`).
    pub require_secure: bool,
}

impl Policy {
    /// A policy that accepts every upload the size checks let through (`--yes`).
    pub fn accept_all() -> Policy {
        Policy {
            accept_all: true,
            ..Policy::default()
        }
    }

    /// A warning when these rules accept uploads without asking from anyone who can reach
    /// every interface (`bind` unspecified): `--yes`, or an `--accept-from` range with public
    /// addresses in it.
    pub fn open_door(&self, bind: std::net::SocketAddr) -> Option<String> {
        if !bind.ip().is_unspecified() {
            return None;
        }
        let everyone = format!("on all interfaces (port {}); consider --bind", bind.port());
        if self.accept_all {
            return Some(format!(
                "--yes accepts every upload from anyone who can reach this machine {everyone}"
            ));
        }
        // Public examples of each family (RFC 5737/3849 ranges would be "documentation").
        let public: [IpAddr; 2] = [
            [8, 8, 8, 8].into(),
            [0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888].into(),
        ];
        let wide = self
            .accept_from
            .iter()
            .find(|range| public.iter().any(|ip| range.contains(*ip)))?;
        Some(format!(
            "--accept-from {wide} accepts uploads without asking from public addresses {everyone}"
        ))
    }

    /// Decides an upload of `size` bytes from `client` at `peer` with `free` bytes free, if a
    /// rule applies; `None` means the operator must be asked. A plain upload to a server that
    /// requires secure mode is denied first; size rules come next, so even a trusted client
    /// cannot fill the disk or pass `--max-size`; then a trusted key, then a trusted range.
    pub fn decide(
        &self,
        peer: IpAddr,
        client: &Client,
        size: u64,
        free: Option<u64>,
    ) -> Option<Decision> {
        self.decide_batch(peer, client, size, size, free)
    }

    /// Whether a file of `size` bytes is refused whatever else is decided (`--max-size`):
    /// inside a batch, such a file alone is refused, and the rest goes on.
    pub fn refuses_file(&self, size: u64) -> Option<Reason> {
        self.max_size.filter(|&max| size > max).map(Reason::MaxSize)
    }

    /// Like [`Policy::decide`] for a batch whose largest file has `largest` bytes (checked
    /// against `--max-size`) and all files `total` (checked against the free space).
    pub fn decide_batch(
        &self,
        peer: IpAddr,
        client: &Client,
        largest: u64,
        total: u64,
        free: Option<u64>,
    ) -> Option<Decision> {
        if self.require_secure && !client.is_secure() {
            return Some(Decision::deny(Reason::PlainRefused));
        }
        if let Some(max) = self.max_size.filter(|&max| largest > max) {
            return Some(Decision::deny(Reason::MaxSize(max)));
        }
        if let Some(free) = free.filter(|&free| total > free) {
            return Some(Decision::deny(Reason::NoSpace(free)));
        }
        if let Client::Secure {
            trusted: Some(label),
            ..
        } = client
        {
            return Some(Decision::accept(Reason::TrustedClient(label.clone())));
        }
        if let Some(range) = self.accept_from.iter().find(|range| range.contains(peer)) {
            return Some(Decision::accept(Reason::AcceptFrom(*range)));
        }
        self.accept_all.then(|| Decision::accept(Reason::Yes))
    }
}

/// An IP address range such as `10.0.0.0/8`, `192.168.1.7` (one host) or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. IPv4 peers seen on an IPv6 socket (`::ffff:a.b.c.d`) count
    /// as the IPv4 address they are.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `ADDR/PREFIX` or a bare `ADDR` (a single host).
    ///
    /// ```
    /// use fup::server::policy::Cidr;
    ///
    /// let lan: Cidr = "192.168.0.0/16".parse()?;
    /// assert!(lan.contains("192.168.4.2".parse().unwrap()));
    /// assert!(!lan.contains("10.0.0.1".parse().unwrap()));
    /// # Ok::<(), String>(())
    /// ```
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length of 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_doors_are_warned_about() {
        let warn = |policy: Policy, bind: &str| policy.open_door(bind.parse().unwrap());
        let yes = Policy::accept_all();
        assert!(
            warn(yes.clone(), "0.0.0.0:5425")
                .unwrap()
                .starts_with("--yes accepts every upload")
        );
        assert!(warn(yes.clone(), "127.0.0.1:5425").is_none());
        assert!(warn(yes.clone(), "[::1]:5425").is_none());
        assert!(warn(yes, "[::]:5425").is_some());
        let from = |ranges: &[&str]| Policy {
            accept_from: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            ..Policy::default()
        };
        assert!(
            warn(from(&["0.0.0.0/0"]), "0.0.0.0:1")
                .unwrap()
                .starts_with("--accept-from 0.0.0.0/0 accepts")
        );
        assert!(warn(from(&["2000::/3"]), "0.0.0.0:1").is_some());
        assert!(warn(from(&["192.168.0.0/16", "10.0.0.0/8"]), "0.0.0.0:1").is_none());
        assert!(warn(Policy::default(), "0.0.0.0:1").is_none());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_ranges() {
        let cases = [
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("10.0.0.0/8", "::1", false),
        ];
        for (range, addr, inside) in cases {
            let cidr: Cidr = range.parse().unwrap();
            assert_eq!(cidr.contains(ip(addr)), inside, "{range} {addr}");
        }
        for bad in ["", "x", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.1.0.0/16".parse::<Cidr>().unwrap().to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn rules_decide_in_order() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        let none = Policy::default();
        let strict = Policy {
            max_size: Some(100),
            accept_from: vec![lan],
            ..Policy::default()
        };
        let yes = Policy {
            max_size: Some(100),
            ..Policy::accept_all()
        };
        let both = Policy {
            accept_all: true,
            ..strict.clone()
        };
        let accept = |reason| Some(Decision::accept(reason));
        let deny = |reason| Some(Decision::deny(reason));
        let trusted = accept(Reason::AcceptFrom(lan));
        // (what, policy, peer, size, free space, decision)
        #[rustfmt::skip]
        let cases = [
            ("nothing applies: ask", &none, "192.0.2.1", 5, Some(10), None),
            ("unknown free space: ask", &none, "192.0.2.1", 5, None, None),
            ("over --max-size", &strict, "192.0.2.1", 101, None, deny(Reason::MaxSize(100))),
            ("at --max-size: ask", &strict, "192.0.2.1", 100, None, None),
            ("trusted but too large", &strict, "10.1.2.3", 101, None, deny(Reason::MaxSize(100))),
            ("more than free", &strict, "10.1.2.3", 50, Some(49), deny(Reason::NoSpace(49))),
            ("exactly free", &strict, "10.1.2.3", 49, Some(49), trusted.clone()),
            ("trusted", &strict, "10.1.2.3", 5, None, trusted.clone()),
            ("trusted, mapped v4", &strict, "::ffff:10.0.0.1", 5, None, trusted.clone()),
            ("untrusted: ask", &strict, "11.0.0.1", 5, None, None),
            ("--yes", &yes, "192.0.2.1", 5, Some(10), accept(Reason::Yes)),
            ("--yes but too large", &yes, "192.0.2.1", 101, None, deny(Reason::MaxSize(100))),
            ("--yes but no space", &yes, "192.0.2.1", 11, Some(10), deny(Reason::NoSpace(10))),
            ("--yes and trusted: the range says", &both, "10.0.0.1", 5, None, trusted.clone()),
            ("--yes and untrusted", &both, "11.0.0.1", 5, None, accept(Reason::Yes)),
        ];
        for (what, policy, peer, size, free, expected) in cases {
            let plain = policy.decide(ip(peer), &Client::Plain, size, free);
            assert_eq!(plain, expected, "{what}");
            // An untrusted secure client is decided like a plain one.
            let id = crate::secure::Identity::of_public_key(b"k");
            let secure = Client::Secure { id, trusted: None };
            assert_eq!(
                policy.decide(ip(peer), &secure, size, free),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn trusted_keys_and_require_secure() {
        let id = crate::secure::Identity::of_public_key(b"k");
        let laptop = Client::Secure {
            id,
            trusted: Some(Some("laptop".into())),
        };
        let untrusted = Client::Secure { id, trusted: None };
        let policy = Policy {
            max_size: Some(100),
            require_secure: true,
            accept_from: vec!["10.0.0.0/8".parse().unwrap()],
            ..Policy::default()
        };
        let peer = ip("10.0.0.1");
        #[rustfmt::skip]
        let cases = [
            ("plain refused, even from a trusted range", &Client::Plain, 5, Some(Decision::deny(Reason::PlainRefused))),
            ("trusted key", &laptop, 5, Some(Decision::accept(Reason::TrustedClient(Some("laptop".into()))))),
            ("trusted key, too large", &laptop, 101, Some(Decision::deny(Reason::MaxSize(100)))),
            ("untrusted key: the range decides", &untrusted, 5, Some(Decision::accept(Reason::AcceptFrom("10.0.0.0/8".parse().unwrap())))),
        ];
        for (what, client, size, expected) in cases {
            assert_eq!(policy.decide(peer, client, size, None), expected, "{what}");
        }
        assert_eq!(
            Reason::TrustedClient(Some("a\nb".into())).to_string(),
            "trusted client \"a\\nb\""
        );
    }

    #[test]
    fn reasons_read_as_log_text() {
        let cases = [
            (Reason::Yes, "--yes"),
            (
                Reason::AcceptFrom("127.0.0.0/8".parse().unwrap()),
                "--accept-from 127.0.0.0/8",
            ),
            (Reason::MaxSize(2), "larger than --max-size 2 B"),
            (
                Reason::NoSpace(2048),
                "not enough free space (2.0 KiB free)",
            ),
            (Reason::ShuttingDown, "server is shutting down"),
            (Reason::HungUpWaiting, "client hung up while waiting"),
            (Reason::Withdrawn, "client hung up; question withdrawn"),
            (
                Reason::PromptTimeout(Duration::from_millis(50)),
                "no answer within 0.05 s",
            ),
            (
                Reason::PromptTimeout(Duration::from_secs(120)),
                "no answer within 120 s",
            ),
            (Reason::NoValidAnswer, "no valid answer"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
        assert!(
            Reason::NoInput
                .to_string()
                .contains("standard input is closed")
        );
    }
}
