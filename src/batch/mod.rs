//! Batches: the files and directories of one command as a list of entries with relative
//! paths, read from the file system by the client ([`walk`]), and checked entry by entry as
//! the server reads them, before anything is created ([`Manifest`], [`check`]).
//!
//! An entry's path is a list of components, each a name that passes the server's name rule
//! ([`check_name`](crate::server::names::check_name)); directories come before what is in
//! them, so that a tree can be created top down. Only a file's executable bit travels.

pub mod check;
pub mod frame;
pub mod manifest;
pub mod walk;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use check::{BatchProblem, Totals, check};
pub use manifest::{EntryRef, Manifest};
pub use walk::{Skipped, Walked, walk};

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (created even when empty).
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Its size, as the client saw it when the batch was made.
        size: u64,
        /// Whether any of its execute bits is set (the only part of a mode that travels).
        executable: bool,
    },
}

/// When an entry was last changed: nanoseconds since the Unix epoch (negative before it),
/// which spans the years 1678 to 2262.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mtime(pub i64);

impl Mtime {
    /// The time `at`, if it is within the span.
    pub fn from_system_time(at: SystemTime) -> Option<Mtime> {
        let nanos = match at.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).ok()?,
            Err(before) => i64::try_from(before.duration().as_nanos())
                .ok()?
                .checked_neg()?,
        };
        // i64::MIN says "not known" on the wire.
        (nanos != i64::MIN).then_some(Mtime(nanos))
    }

    /// The time it stands for.
    pub fn to_system_time(self) -> SystemTime {
        let span = Duration::from_nanos(self.0.unsigned_abs());
        match self.0 >= 0 {
            true => UNIX_EPOCH + span,
            false => UNIX_EPOCH - span,
        }
    }

    /// On the wire: the nanoseconds, or `i64::MIN` when not known.
    pub fn to_wire(mtime: Option<Mtime>) -> i64 {
        mtime.map_or(i64::MIN, |m| m.0)
    }

    /// From the wire.
    pub fn from_wire(nanos: i64) -> Option<Mtime> {
        (nanos != i64::MIN).then_some(Mtime(nanos))
    }
}

/// One file or directory of a batch, at a path relative to where the batch lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path's components, from the batch's top (never empty).
    pub path: Vec<String>,
    /// What it is.
    pub kind: Kind,
    /// When it was last changed, when known: set on what the server stores.
    pub modified: Option<Mtime>,
}

impl Entry {
    /// An entry at `path` (its components joined by `/`) of `kind`, its time not known.
    pub fn new(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind,
            modified: None,
        }
    }

    /// The path joined with `/`, for messages.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// How deep it is: 1 for an entry at the top.
    pub fn depth(&self) -> usize {
        self.path.len()
    }

    /// A file's size, 0 for a directory.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File { size, .. } => size,
            Kind::Dir => 0,
        }
    }
}

/// How large a batch may be: checked by the client while it walks (so that it stops early)
/// and by the server before it creates anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most components in a path.
    pub max_depth: usize,
    /// Most entries, files and directories together.
    pub max_entries: usize,
    /// Most bytes in all files together.
    pub max_total: u64,
}

impl Limits {
    /// The limits unless told otherwise: 64 levels (deeper than any tree people send; the
    /// deepest in a Linux kernel checkout is 11), 1,000,000 entries, and no limit on bytes
    /// but the free space (which the server's policy checks).
    pub const DEFAULT: Limits = Limits {
        max_depth: 64,
        max_entries: 1_000_000,
        max_total: u64::MAX,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = crate::text::escape(&self.display_path());
        match self.kind {
            Kind::Dir => write!(f, "{path}/"),
            Kind::File { size, .. } => write!(f, "{path} ({})", crate::text::bytes(size)),
        }
    }
}
