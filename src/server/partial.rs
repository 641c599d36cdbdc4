//! Partial uploads kept for resuming (secure mode only): what a cut batch left, in a hidden
//! directory inside the upload directory, never under a final name.
//!
//! ```text
//! DIR/.fup-partial/            0700
//!   <key>/                     one cut batch: key = BLAKE3(client identity, manifest)
//!     lock                     flock()ed while a session uses it (sweeps leave it alone)
//!     state                    JSON: client, next entry, bytes held of it and their digest,
//!                              top items already published, the batch's size
//!     data-<index>             the bytes of entry <index> received so far
//!     tree/                    the tree being received, when the cut fell inside one
//! ```
//!
//! The key binds a partial to the client's identity and to the batch's names and sizes: a
//! different client, or a different batch, never sees it. What it holds is trusted only after
//! the client proved that its own copy starts with the same bytes (the digest of the prefix),
//! and again at the end (the whole file's digest): a partial is a hint that saves bytes, never
//! a source of truth. Partials expire ([`Partials::sweep`]) and are bounded in total size
//! ([`Partials::enforce_max`]).
//!
//! The directory of partials is opened once, when the server starts, and only if it is what
//! the server made: a directory (not a symlink), the server user's own, closed to group and
//! others. Everything beneath it is made, opened and removed relative to that handle, never
//! following a symlink ([`handle`](super::handle)). What each partial holds and still misses
//! is kept in memory, so that the free-space check of every batch costs no walk of the disk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::handle;
use super::store::Store;
use super::tree::IncomingTree;
use crate::batch::Kind;
use crate::batch::frame::ItemDone;
use crate::secure::Identity;
use crate::sys::{Dir, EntryKind, Open};

/// The directory partials live in, inside the upload directory. Hidden: uploads never get a
/// name starting with `.`, so none can collide with it.
pub const PARTIAL_DIR: &str = ".fup-partial";
/// How long a partial is kept after its last byte arrived, unless told (`--keep-partial`).
pub const DEFAULT_KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// Most bytes all partials together may hold, unless told (`--max-partial`).
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;

const LOCK: &str = "lock";
const STATE: &str = "state";
const TREE: &str = "tree";
const DATA_PREFIX: &str = "data-";
/// Most bytes of a state file (its list of published items is at most the batch's tops).
const MAX_STATE: u64 = 64 * 1024 * 1024;
/// The state's format, written in it.
const FORMAT: u64 = 1;

/// Which cut batch a partial belongs to: its client and its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key([u8; 16]);

impl Key {
    /// The key of `client`'s batch of `entries` (each a path's components and its kind):
    /// every name, kind and size counts.
    pub fn new<'a, C>(client: &Identity, entries: impl IntoIterator<Item = (C, Kind)>) -> Key
    where
        C: IntoIterator<Item = &'a str>,
    {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"fup partial key 1\0");
        hasher.update(client.as_bytes());
        for (components, kind) in entries {
            let (kind, size) = match kind {
                Kind::Dir => (0u8, 0),
                Kind::File { size, executable } => (1 + u8::from(executable), size),
            };
            hasher.update(&[kind]);
            hasher.update(&size.to_le_bytes());
            let components: Vec<&str> = components.into_iter().collect();
            hasher.update(&(components.len() as u64).to_le_bytes());
            for part in components {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
        }
        let mut key = [0; 16];
        key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Key(key)
    }

    /// The key of a batch as the server received it.
    pub fn of_manifest(client: &Identity, manifest: &crate::batch::Manifest) -> Key {
        Key::new(
            client,
            manifest
                .iter()
                .map(|entry| (entry.components(), entry.kind)),
        )
    }

    /// The key of one file a browser page offered: the page's own random key (kept in the
    /// browser), the file's path in the selection, its size and its modification time.
    pub fn of_browser_file(page: &[u8; 16], path: &str, size: u64, modified: Option<i64>) -> Key {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"fup browser partial key 1\0");
        hasher.update(page);
        hasher.update(&size.to_le_bytes());
        hasher.update(&modified.unwrap_or(i64::MIN).to_le_bytes());
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Key(key)
    }

    /// The key a partial's directory is named by, if `name` is one.
    fn from_hex(name: &str) -> Option<Key> {
        crate::text::unhex(name).map(Key)
    }

    /// Its name in the directory of partials: 32 hex digits.
    pub fn hex(&self) -> String {
        crate::text::hex(&self.0)
    }
}

/// What a partial records besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The client it belongs to, as text.
    pub client: String,
    /// The first entry not yet kept: those before it are published, or in the kept tree.
    pub next: u32,
    /// Bytes of entry `next` held in its data file, when the cut was clean (after a killed
    /// server: `None`, and the data file's length says).
    pub held: Option<u64>,
    /// The BLAKE3 of those bytes, when the cut was clean.
    pub digest: Option<[u8; 32]>,
    /// The top items published by earlier tries, for the batch's final account.
    pub done: Vec<ItemDone>,
    /// Bytes of all the batch's files, for the free-space reservation.
    pub total: u64,
    /// Bytes of the batch there at the last cut (files before `next`, and `held`): what the
    /// batch still misses is `total` less this.
    pub kept: u64,
}

impl State {
    fn to_json(&self) -> Value {
        // Only what was stored: a refused file's place in the account comes again.
        let done: Vec<Value> = self
            .done
            .iter()
            .filter(|item| item.is_stored())
            .map(|item| json!([item.index, item.name]))
            .collect();
        json!({
            "format": FORMAT,
            "client": self.client,
            "next": self.next,
            "held": self.held,
            "digest": self.digest.map(|d| crate::text::hex(&d)),
            "done": done,
            "total": self.total,
            "kept": self.kept,
        })
    }

    fn from_json(value: &Value) -> Option<State> {
        if value.get("format")?.as_u64()? != FORMAT {
            return None;
        }
        let digest = match value.get("digest")? {
            Value::Null => None,
            other => Some(crate::text::unhex(other.as_str()?)?),
        };
        let done = value
            .get("done")?
            .as_array()?
            .iter()
            .map(|item| {
                Some(ItemDone::stored(
                    u32::try_from(item.get(0)?.as_u64()?).ok()?,
                    item.get(1)?.as_str()?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(State {
            client: value.get("client")?.as_str()?.to_string(),
            next: u32::try_from(value.get("next")?.as_u64()?).ok()?,
            held: match value.get("held")? {
                Value::Null => None,
                other => Some(other.as_u64()?),
            },
            digest,
            done,
            total: value.get("total")?.as_u64()?,
            // Not in the states of fup 1.x before the reservations were kept in memory.
            kept: value.get("kept").and_then(Value::as_u64).unwrap_or(0),
        })
    }
}

/// Why partials cannot be kept: the directory for them is not one the server can trust.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", crate::text::visible(&.path.to_string_lossy()))]
pub struct PartialsError {
    /// The directory of partials.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

/// What the server knows of one partial without looking at the disk.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Bytes of the whole batch.
    total: u64,
    /// Bytes of it that were there at the last cut.
    kept: u64,
    /// Bytes the partial takes on disk.
    bytes: u64,
    /// When it last changed.
    modified: SystemTime,
    /// Whether a session of this server holds it.
    in_use: bool,
}

impl Slot {
    /// What it still misses, kept free for it: nothing when it holds nothing.
    fn needs(&self) -> u64 {
        match self.kept {
            0 => 0,
            kept => self.total.saturating_sub(kept),
        }
    }
}

/// Every partial, by key.
type Ledger = HashMap<Key, Slot>;

/// Where partials are kept, for how long, and how many bytes at most.
#[derive(Clone, Debug)]
pub struct Partials {
    /// The upload directory, opened.
    upload: Arc<Dir>,
    /// The directory of partials, opened once it is there and passed the checks.
    root: Arc<Mutex<Option<Arc<Dir>>>>,
    path: PathBuf,
    keep: Duration,
    max_bytes: u64,
    ledger: Arc<Mutex<Ledger>>,
    /// Whether a directory of partials that is not the server's was already reported.
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// What [`Partials::open`] found.
#[derive(Debug)]
pub enum Opened {
    /// The partial, locked for this session: fresh, or what an earlier try left.
    Partial(Box<Partial>),
    /// Another session holds it (the same batch from the same client, still running, or a
    /// connection not yet seen to be dead): this try starts without it.
    InUse,
    /// There is none, and none was to be made.
    Absent,
}

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Partials removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes: u64,
}

impl std::fmt::Display for Swept {
    /// `removed 2 expired partial uploads (1.5 GiB)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.removed == 1 { "" } else { "s" };
        write!(
            f,
            "removed {} expired partial upload{s} ({})",
            self.removed,
            crate::text::bytes(self.bytes)
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change of the ledger is one step: a holder that panicked left it whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn seconds(at: i64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(at.max(0).unsigned_abs()))
        .unwrap_or(UNIX_EPOCH)
}

/// Opens the directory of partials beneath `upload` (making it first, 0700, when `make`),
/// and checks that it is the server's own: a directory, not a symlink, owned by this user,
/// closed to group and others. `Ok(None)`: it is not there.
fn open_root(upload: &Dir, make: bool) -> Result<Option<Dir>, String> {
    if make {
        handle::make_dir_at(upload, PARTIAL_DIR, 0o700)
            .map_err(|err| format!("cannot be made: {err}"))?;
    }
    let root = match upload.open_dir(PARTIAL_DIR) {
        Ok(root) => root,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(match upload.stat(PARTIAL_DIR).map(|stat| stat.kind) {
                Ok(EntryKind::Link) => "is a symbolic link, not the server's directory".into(),
                Ok(EntryKind::Dir) | Err(_) => err.to_string(),
                Ok(EntryKind::File(_) | EntryKind::Other) => "is not a directory".into(),
            });
        }
    };
    root.check_private()?;
    Ok(Some(root))
}

impl Partials {
    /// The partials of the upload directory `dir`, kept `keep` after their last byte, at most
    /// `max_bytes` together. The directory for them is made (0700) when the first is, and
    /// kept; if it is there already, it is opened and checked now, and what each partial in
    /// it holds is read.
    ///
    /// # Errors
    ///
    /// If it is a symlink or not a directory, belongs to another user, is open to group or
    /// others, or cannot be read: resume is then off, and the message says why.
    pub fn in_dir(dir: &Path, keep: Duration, max_bytes: u64) -> Result<Partials, PartialsError> {
        let path = dir.join(PARTIAL_DIR);
        let fail = |why: String| PartialsError {
            path: path.clone(),
            why,
        };
        let upload = Dir::open(dir).map_err(|err| fail(err.to_string()))?;
        let root = open_root(&upload, false).map_err(fail)?;
        let partials = Partials {
            upload: Arc::new(upload),
            root: Arc::new(Mutex::new(root.map(Arc::new))),
            path: path.clone(),
            keep,
            max_bytes,
            ledger: Arc::default(),
            refused: Arc::default(),
        };
        if let Some(root) = partials.root() {
            let names = root.names().map_err(|err| fail(err.to_string()))?;
            let mut ledger = Ledger::new();
            for name in names {
                let Some(key) = name.to_str().and_then(Key::from_hex) else {
                    continue;
                };
                ledger.insert(key, look(&root, key));
            }
            *lock(&partials.ledger) = ledger;
        }
        Ok(partials)
    }

    /// The directory of partials, if it is there.
    fn root(&self) -> Option<Arc<Dir>> {
        lock(&self.root).clone()
    }

    /// The directory of partials, made if it is not there yet.
    fn made_root(&self) -> io::Result<Arc<Dir>> {
        let mut root = lock(&self.root);
        if let Some(root) = &*root {
            return Ok(Arc::clone(root));
        }
        match open_root(&self.upload, true) {
            Ok(Some(opened)) => Ok(Arc::clone(root.insert(Arc::new(opened)))),
            Ok(None) => Err(io::ErrorKind::NotFound.into()),
            Err(why) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                PartialsError {
                    path: self.path.clone(),
                    why,
                }
                .to_string(),
            )),
        }
    }

    /// Why the directory of partials is not the server's own, the first time it is found so
    /// since the server started: to be said once.
    pub fn refusal_once(&self) -> Option<PartialsError> {
        if lock(&self.root).is_some() {
            return None;
        }
        let why = open_root(&self.upload, false).err()?;
        (!self.refused.swap(true, std::sync::atomic::Ordering::SeqCst)).then(|| PartialsError {
            path: self.path.clone(),
            why,
        })
    }

    /// Where they are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long they are kept.
    pub fn keep(&self) -> Duration {
        self.keep
    }

    /// Most bytes they may hold together.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Opens the partial of `key` for `client` (a secure client's identity, or a browser
    /// page's key, as text), locked: the one an earlier try left, or (with `make`) a new
    /// one, made with the directory of partials if need be. One that belongs to another
    /// client, cannot be read or has expired is emptied first.
    ///
    /// # Errors
    ///
    /// If its directory or files cannot be made or read, or something that is not the
    /// server's own (a symlink, another user's directory of partials) is in their place.
    pub fn open(&self, key: Key, client: &str, make: bool) -> io::Result<Opened> {
        let name = key.hex();
        let root = match (self.root(), make) {
            (Some(root), _) => root,
            (None, true) => self.made_root()?,
            (None, false) => return Ok(Opened::Absent),
        };
        if make {
            handle::make_dir_at(&root, &name, 0o700)?;
        }
        let dir = match root.open_dir(&name) {
            Ok(dir) => dir,
            Err(err) if err.kind() == io::ErrorKind::NotFound && !make => {
                return Ok(Opened::Absent);
            }
            Err(err) => return Err(err),
        };
        let lock_file = dir.open_file(LOCK, Open::WriteOrCreate, 0o600)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Opened::InUse),
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        let slot = match lock(&self.ledger).get(&key) {
            Some(slot) => *slot,
            None => look(&root, key),
        };
        let mut partial = Partial {
            key,
            dir,
            _lock: lock_file,
            root,
            partials: self.clone(),
            state: State::default(),
        };
        let client = client.to_string();
        let fresh = slot.modified.elapsed().unwrap_or_default() <= self.keep;
        match read_state(&partial.dir)? {
            Some(state) if state.client == client && fresh => partial.state = state,
            // Another client's, expired, new, or unreadable: nothing in it can be used.
            _ => partial.clear()?,
        }
        partial.state.client = client;
        let in_ledger = Slot {
            total: partial.state.total,
            kept: partial.state.kept,
            in_use: true,
            ..slot
        };
        lock(&self.ledger).insert(key, in_ledger);
        Ok(Opened::Partial(Box::new(partial)))
    }

    /// Removes partial `key` if no session holds it and `remove(slot)` says so; returns the
    /// bytes it held.
    fn remove_if(&self, key: Key, remove: impl Fn(&Slot) -> bool) -> Option<u64> {
        let name = key.hex();
        let root = self.root()?;
        let slot = *lock(&self.ledger).get(&key)?;
        if slot.in_use || !remove(&slot) {
            return None;
        }
        // A server of another process may hold it: its lock says.
        let dir = root.open_dir(&name).ok();
        let free = dir
            .as_ref()
            .and_then(|dir| dir.open_file(LOCK, Open::Write, 0).ok())
            .is_none_or(|lock| lock.try_lock().is_ok());
        // Windows cannot remove what is open: the handles go first.
        drop(dir);
        if !free || handle::remove_all_at(&root, &name).is_err() {
            return None;
        }
        lock(&self.ledger).remove(&key);
        Some(slot.bytes)
    }

    /// Removes the partials that expired; those in use are left alone.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a sweep that reads the disk.
    pub fn sweep(&self) -> io::Result<Swept> {
        let keys: Vec<Key> = lock(&self.ledger).keys().copied().collect();
        let mut swept = Swept::default();
        for key in keys {
            let expired = |slot: &Slot| slot.modified.elapsed().unwrap_or_default() > self.keep;
            if let Some(bytes) = self.remove_if(key, expired) {
                swept.removed += 1;
                swept.bytes += bytes;
            }
        }
        Ok(swept)
    }

    /// Removes the oldest partials not in use until all of them hold at most the maximum.
    /// Returns what was removed.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a sweep that reads the disk.
    pub fn enforce_max(&self) -> io::Result<Swept> {
        let (mut total, oldest) = {
            let ledger = lock(&self.ledger);
            let total: u64 = ledger.values().map(|slot| slot.bytes).sum();
            let mut oldest: Vec<(SystemTime, Key)> = ledger
                .iter()
                .filter(|(_, slot)| !slot.in_use)
                .map(|(key, slot)| (slot.modified, *key))
                .collect();
            oldest.sort();
            (total, oldest)
        };
        let mut swept = Swept::default();
        for (_, key) in oldest {
            if total <= self.max_bytes {
                break;
            }
            if let Some(bytes) = self.remove_if(key, |_| true) {
                total -= bytes.min(total);
                swept.removed += 1;
                swept.bytes += bytes;
            }
        }
        Ok(swept)
    }

    /// Bytes the partials other than `except`'s still miss, kept free for them: each at most
    /// what it misses, nothing for one that holds nothing, and at most `--max-partial` in
    /// all. Read from memory: no walk of the disk, no lock taken.
    pub fn reserved(&self, except: &Key) -> u64 {
        let ledger = lock(&self.ledger);
        let needs: u64 = ledger
            .iter()
            .filter(|(key, _)| *key != except)
            .map(|(_, slot)| slot.needs())
            .fold(0, u64::saturating_add);
        needs.min(self.max_bytes)
    }
}

fn read_state(dir: &Dir) -> io::Result<Option<State>> {
    let file = match dir.open_file(STATE, Open::Read, 0) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Not a plain file: not the server's.
        Err(_) => return Ok(None),
    };
    let mut text = Vec::new();
    file.take(MAX_STATE).read_to_end(&mut text)?;
    Ok(serde_json::from_slice::<Value>(&text)
        .ok()
        .as_ref()
        .and_then(State::from_json))
}

/// What partial `key` holds, as the disk says.
fn look(root: &Dir, key: Key) -> Slot {
    let name = key.hex();
    let (bytes, modified) = handle::measure_at(root, OsStr::new(&name));
    let state = root
        .open_dir(&name)
        .ok()
        .and_then(|dir| read_state(&dir).ok().flatten());
    Slot {
        total: state.as_ref().map_or(0, |state| state.total),
        kept: state.as_ref().map_or(0, |state| state.kept),
        bytes,
        modified: seconds(modified),
        in_use: false,
    }
}

/// One cut batch's partial, locked by the session using it. Dropped, it stays on disk for a
/// later try; [`Partial::remove`] ends it.
#[derive(Debug)]
pub struct Partial {
    key: Key,
    /// Its directory, opened beneath the directory of partials.
    dir: Dir,
    _lock: File,
    /// The directory of partials.
    root: Arc<Dir>,
    partials: Partials,
    /// What it records.
    pub state: State,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(slot) = lock(&self.partials.ledger).get_mut(&self.key) {
            slot.in_use = false;
        }
    }
}

impl Partial {
    /// Its directory.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Empties it: a fresh start for the batch.
    ///
    /// # Errors
    ///
    /// If something in it cannot be removed.
    pub fn clear(&mut self) -> io::Result<()> {
        handle::empty_dir(self.dir(), &[LOCK])?;
        let client = std::mem::take(&mut self.state.client);
        self.state = State {
            client,
            ..State::default()
        };
        Ok(())
    }

    /// Writes its state (replacing the old one whole); with `durable`, flushed to disk.
    ///
    /// # Errors
    ///
    /// If it cannot be written.
    pub fn save(&self, durable: bool) -> io::Result<()> {
        let temp = "state.new";
        let mut file = self.dir.open_file(temp, Open::Truncate, 0o600)?;
        file.write_all(self.state.to_json().to_string().as_bytes())?;
        if durable {
            file.sync_all()?;
        }
        self.dir.rename(temp, &self.dir, STATE)?;
        if durable {
            self.dir.sync()?;
        }
        // What it takes on disk is measured when it is let go (see `bytes`), not at every
        // checkpoint: a walk of a large tree each time would cost more than the checkpoint.
        if let Some(slot) = lock(&self.partials.ledger).get_mut(&self.key) {
            slot.total = self.state.total;
            slot.kept = self.state.kept;
            slot.modified = SystemTime::now();
        }
        Ok(())
    }

    /// The name of entry `index`'s data file, in [`Partial::dir`].
    pub fn data_name(index: u32) -> String {
        format!("{DATA_PREFIX}{index}")
    }

    /// Starts entry `index`'s data file afresh (any other data file goes): the usual mode of
    /// a new file, or of a new program when `executable`.
    ///
    /// # Errors
    ///
    /// If it cannot be made.
    pub fn create_data(&self, index: u32, executable: bool) -> io::Result<File> {
        self.remove_data_except(None)?;
        let mode = if executable { 0o777 } else { 0o666 };
        self.dir
            .open_file(&Partial::data_name(index), Open::ReadWriteTruncate, mode)
    }

    /// Entry `index`'s data file as an earlier try left it, if there is one, for reading and
    /// appending (other data files go). Anything but a plain file in its place goes too.
    ///
    /// # Errors
    ///
    /// If it cannot be opened or removed.
    pub fn open_data(&self, index: u32) -> io::Result<Option<File>> {
        self.remove_data_except(Some(index))?;
        let name = Partial::data_name(index);
        match self.dir.open_file(&name, Open::ReadWrite, 0) {
            Ok(file) => Ok(Some(file)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => {
                handle::remove_all_at(self.dir(), &name)?;
                Ok(None)
            }
        }
    }

    fn remove_data_except(&self, keep: Option<u32>) -> io::Result<()> {
        let keep = keep.map(Partial::data_name);
        for name in self.dir.names()? {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(DATA_PREFIX) && Some(name) != keep.as_deref() {
                handle::remove_all_at(self.dir(), name)?;
            }
        }
        Ok(())
    }

    /// The tree being received, built in it: made new when `fresh` (anything there before
    /// goes), else as an earlier try left it. Dropped, it stays; publishing moves it into
    /// `store`'s directory.
    ///
    /// # Errors
    ///
    /// If it cannot be made or opened, or (not `fresh`) is not there.
    pub fn tree(&self, store: &Store, fresh: bool) -> io::Result<IncomingTree> {
        store.resumable_tree(self.dir(), TREE, fresh)
    }

    /// Whether it holds a tree being received.
    pub fn has_tree(&self) -> bool {
        self.dir.open_dir(TREE).is_ok()
    }

    /// Removes the tree being received, if any.
    ///
    /// # Errors
    ///
    /// If it cannot be removed.
    pub fn remove_tree(&self) -> io::Result<()> {
        handle::remove_all_at(self.dir(), TREE)
    }

    /// Makes what it holds durable (one flush of its file system).
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn flush(&self) -> io::Result<()> {
        self.dir.sync_fs()
    }

    /// Bytes it holds on disk, measured now (a walk of what is in it), and so recorded for
    /// the bound on all partials.
    pub fn bytes(&self) -> u64 {
        let name = self.key.hex();
        let bytes = handle::measure_at(&self.root, OsStr::new(&name)).0;
        if let Some(slot) = lock(&self.partials.ledger).get_mut(&self.key) {
            slot.bytes = bytes;
        }
        bytes
    }

    /// Ends it: the batch is done (or can never resume), nothing of it is kept.
    ///
    /// # Errors
    ///
    /// If it cannot be removed.
    pub fn remove(self) -> io::Result<()> {
        let (key, root, partials) = (self.key, Arc::clone(&self.root), self.partials.clone());
        // Removed while its lock is held: no other session can take it meanwhile. Windows
        // cannot remove a file or directory that is open, so there everything but the lock
        // goes first, then the handles, then the rest.
        #[cfg(windows)]
        {
            handle::empty_dir(&self.dir, &[LOCK])?;
            drop(self);
        }
        handle::remove_all_at(&root, &key.hex())?;
        lock(&partials.ledger).remove(&key);
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn id(n: u8) -> Identity {
        Identity::of_public_key(&[n])
    }

    /// The key of a batch of top files, by name and size.
    fn key(client: &Identity, files: &[(&str, u64)]) -> Key {
        let file = |size| Kind::File {
            size,
            executable: false,
        };
        Key::new(
            client,
            files.iter().map(|(name, size)| ([*name], file(*size))),
        )
    }

    fn open(partials: &Partials, key: Key, client: &Identity) -> Partial {
        match partials.open(key, &client.to_string(), true).unwrap() {
            Opened::Partial(partial) => *partial,
            other => panic!("{other:?}"),
        }
    }

    fn partials(dir: &Path, keep: Duration, max: u64) -> Partials {
        Partials::in_dir(dir, keep, max).unwrap()
    }

    fn path(partials: &Partials, key: Key) -> PathBuf {
        partials.path().join(key.hex())
    }

    #[test]
    fn the_key_binds_client_names_and_sizes() {
        let k = key(&id(1), &[("a", 1), ("b", 2)]);
        assert_eq!(k, key(&id(1), &[("a", 1), ("b", 2)]));
        assert_ne!(k, key(&id(2), &[("a", 1), ("b", 2)]));
        assert_ne!(k, key(&id(1), &[("a", 1), ("b", 3)]));
        assert_ne!(k, key(&id(1), &[("a", 1), ("c", 2)]));
        assert_ne!(k, key(&id(1), &[("ab", 1), ("", 2)]));
        assert_eq!(Key::from_hex(&k.hex()), Some(k));
        assert_eq!(Key::from_hex("not a key"), None);
    }

    #[test]
    fn state_survives_a_reopen_and_binds_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let partials = partials(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let key = key(&id(1), &[("a", 10)]);
        let mut partial = open(&partials, key, &id(1));
        assert_eq!(partial.state.next, 0);
        // In use while held.
        assert!(matches!(
            partials.open(key, &id(1).to_string(), false).unwrap(),
            Opened::InUse
        ));
        let mut data = partial.create_data(0, false).unwrap();
        data.write_all(b"hello").unwrap();
        partial.state.held = Some(5);
        partial.state.digest = Some(*blake3::hash(b"hello").as_bytes());
        partial.state.done = vec![ItemDone::stored(3, "x (1)")];
        partial.state.total = 10;
        partial.state.kept = 5;
        partial.save(true).unwrap();
        let saved = partial.state.clone();
        drop(partial);
        let again = open(&partials, key, &id(1));
        assert_eq!(again.state, saved);
        let data = path(&partials, key).join(Partial::data_name(0));
        assert_eq!(fs::read(&data).unwrap(), b"hello", "the data stays");
        drop(again);
        // The state file says another client: emptied, whatever the key.
        let other = open(&partials, key, &id(2));
        assert_eq!(other.state.next, 0);
        assert_eq!(other.state.held, None);
        assert!(!data.exists());
    }

    #[test]
    fn expired_partials_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let partials = partials(dir.path(), Duration::ZERO, DEFAULT_MAX_BYTES);
        let (a, b) = (key(&id(1), &[("a", 1)]), key(&id(1), &[("b", 1)]));
        let old = open(&partials, a, &id(1));
        old.save(false).unwrap();
        drop(old);
        let live = open(&partials, b, &id(1));
        live.save(false).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let swept = partials.sweep().unwrap();
        assert_eq!(swept.removed, 1);
        assert!(!path(&partials, a).exists());
        assert!(path(&partials, b).exists(), "in use: never swept");
        // The directory of partials stays, for the next ones.
        drop(live);
        partials.sweep().unwrap();
        assert!(partials.path().is_dir());
    }

    #[test]
    fn the_oldest_go_first_past_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let partials = partials(dir.path(), DEFAULT_KEEP, 2500);
        let mut keys = Vec::new();
        for n in 0..3u8 {
            let key = key(&id(n), &[("a", 100)]);
            let partial = open(&partials, key, &id(n));
            let mut data = partial.create_data(0, false).unwrap();
            data.write_all(&[n; 1000]).unwrap();
            partial.save(false).unwrap();
            // As a session does when it lets a partial go.
            partial.bytes();
            keys.push(key);
            // Distinct modification times, oldest first.
            std::thread::sleep(Duration::from_millis(20));
        }
        let swept = partials.enforce_max().unwrap();
        // About 1,100 bytes each (data and state): the oldest goes, two fit.
        assert_eq!(swept.removed, 1);
        assert!(!path(&partials, keys[0]).exists());
        assert!(path(&partials, keys[1]).exists() && path(&partials, keys[2]).exists());
    }

    #[test]
    fn reservations_are_what_the_others_miss_within_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let partials = partials(dir.path(), DEFAULT_KEEP, 1_000_000);
        let save = |n: u8, total, kept| {
            let mut partial = open(&partials, key(&id(n), &[("a", total)]), &id(n));
            partial.state.total = total;
            partial.state.kept = kept;
            partial.save(false).unwrap();
        };
        save(1, 10_000, 4000);
        // One that holds nothing reserves nothing.
        save(2, 500_000, 0);
        let this = open(&partials, key(&id(3), &[("b", 5)]), &id(3));
        assert_eq!(partials.reserved(&this.key), 6000);
        // Never more than --max-partial in all.
        save(4, u64::MAX, 1);
        assert_eq!(partials.reserved(&this.key), 1_000_000);
        // Read back from the disk by the next server, the same.
        drop(this);
        let next = Partials::in_dir(dir.path(), DEFAULT_KEEP, 1_000_000).unwrap();
        let this = open(&next, key(&id(3), &[("b", 5)]), &id(3));
        assert_eq!(next.reserved(&this.key), 1_000_000);
    }

    #[test]
    fn a_directory_not_the_servers_own_is_refused() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = dir.path().join(PARTIAL_DIR);
        std::os::unix::fs::symlink(elsewhere.path(), &root).unwrap();
        let err = Partials::in_dir(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a symbolic link, not the server's directory")
        );
        fs::remove_file(&root).unwrap();
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Partials::in_dir(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("may be used by others (mode 777): run chmod 700 on it"),
            "{err}"
        );
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        Partials::in_dir(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_in_place_of_a_partial_is_never_followed() {
        let (dir, victim) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(victim.path().join("precious"), b"x").unwrap();
        let partials = partials(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let key = key(&id(1), &[("a", 1)]);
        // Nothing is made before it is needed.
        assert!(matches!(
            partials.open(key, &id(1).to_string(), false).unwrap(),
            Opened::Absent
        ));
        assert!(!partials.path().exists());
        drop(open(&partials, key, &id(1)));
        assert!(partials.path().is_dir());
        fs::remove_dir_all(path(&partials, key)).unwrap();
        std::os::unix::fs::symlink(victim.path(), path(&partials, key)).unwrap();
        assert!(partials.open(key, &id(1).to_string(), false).is_err());
        assert!(partials.open(key, &id(1).to_string(), true).is_err());
        assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 1);
        // Links planted inside a partial are removed as links, never followed.
        fs::remove_file(path(&partials, key)).unwrap();
        let mut partial = open(&partials, key, &id(1));
        std::os::unix::fs::symlink(victim.path(), path(&partials, key).join("tree")).unwrap();
        std::os::unix::fs::symlink(
            victim.path().join("precious"),
            path(&partials, key).join("data-0"),
        )
        .unwrap();
        assert!(partial.open_data(0).unwrap().is_none());
        partial.clear().unwrap();
        assert_eq!(fs::read(victim.path().join("precious")).unwrap(), b"x");
        assert_eq!(
            fs::read_dir(path(&partials, key)).unwrap().count(),
            1,
            "the lock"
        );
    }

    #[test]
    fn a_broken_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let partials = partials(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let key = key(&id(1), &[("a", 1)]);
        let partial = open(&partials, key, &id(1));
        partial.create_data(0, false).unwrap();
        fs::write(
            path(&partials, key).join(STATE),
            b"{\"format\": 1, \"next\": \"x\"}",
        )
        .unwrap();
        drop(partial);
        let again = open(&partials, key, &id(1));
        assert_eq!(again.state.next, 0);
        assert!(!path(&partials, key).join(Partial::data_name(0)).exists());
    }
}
