//! Partial uploads kept for resuming (#13, secure mode only): what a cut batch left, in a
//! hidden directory inside the upload directory, never under a final name.
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::batch::frame::ItemDone;
use crate::batch::{Entry, Kind};
use crate::secure::Identity;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key([u8; 16]);

impl Key {
    /// The key of `client`'s batch of `entries`: every name, kind and size counts.
    pub fn new(client: &Identity, entries: &[Entry]) -> Key {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"fup partial key 1\0");
        hasher.update(client.as_bytes());
        for entry in entries {
            let (kind, size) = match entry.kind {
                Kind::Dir => (0u8, 0),
                Kind::File { size, executable } => (1 + u8::from(executable), size),
            };
            hasher.update(&[kind]);
            hasher.update(&size.to_le_bytes());
            hasher.update(&(entry.path.len() as u64).to_le_bytes());
            for part in &entry.path {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
        }
        let mut key = [0; 16];
        key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Key(key)
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
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
}

impl State {
    fn to_json(&self) -> Value {
        let done: Vec<Value> = self
            .done
            .iter()
            .map(|item| json!([item.index, item.name]))
            .collect();
        json!({
            "format": FORMAT,
            "client": self.client,
            "next": self.next,
            "held": self.held,
            "digest": self.digest.map(|d| hex(&d)),
            "done": done,
            "total": self.total,
        })
    }

    fn from_json(value: &Value) -> Option<State> {
        if value.get("format")?.as_u64()? != FORMAT {
            return None;
        }
        let digest = match value.get("digest")? {
            Value::Null => None,
            other => Some(unhex(other.as_str()?)?),
        };
        let done = value
            .get("done")?
            .as_array()?
            .iter()
            .map(|item| {
                Some(ItemDone {
                    index: u32::try_from(item.get(0)?.as_u64()?).ok()?,
                    stored: true,
                    name: item.get(1)?.as_str()?.to_string(),
                })
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
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Where partials are kept, for how long, and how many bytes at most.
#[derive(Clone, Debug)]
pub struct Partials {
    root: PathBuf,
    keep: Duration,
    max_bytes: u64,
}

/// What [`Partials::open`] found.
#[derive(Debug)]
pub enum Opened {
    /// The partial, locked for this session: fresh, or what an earlier try left.
    Partial(Partial),
    /// Another session holds it (the same batch from the same client, still running, or a
    /// connection not yet seen to be dead): this try starts without it.
    InUse,
}

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Partials removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes: u64,
}

/// A partial in the directory, as a sweep sees it.
struct Listed {
    dir: PathBuf,
    lock: Option<File>,
    modified: SystemTime,
    bytes: u64,
    total: u64,
}

impl Partials {
    /// Partials of the upload directory `dir`, kept `keep` after their last byte, at most
    /// `max_bytes` together.
    pub fn new(dir: &Path, keep: Duration, max_bytes: u64) -> Partials {
        Partials {
            root: dir.join(PARTIAL_DIR),
            keep,
            max_bytes,
        }
    }

    /// Where they are kept.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long they are kept.
    pub fn keep(&self) -> Duration {
        self.keep
    }

    /// Most bytes they may hold together.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Opens the partial of `key` for `client`, locked, making it if there is none. One that
    /// belongs to another client, cannot be read or has expired is emptied first.
    ///
    /// # Errors
    ///
    /// If the directory or its files cannot be made or read.
    pub fn open(&self, key: Key, client: &Identity) -> io::Result<Opened> {
        let dir = self.root.join(key.hex());
        // The directory of partials goes with the last one: made again if it just went.
        let mut tries = 0;
        loop {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&self.root)?;
            // Never through a symlink planted in the upload directory.
            if !fs::symlink_metadata(&self.root)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a directory", self.root.display()),
                ));
            }
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(err) => return Err(err),
            }
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(LOCK))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Opened::InUse),
            Err(fs::TryLockError::Error(err)) => return Err(err),
        }
        let mut partial = Partial {
            dir,
            _lock: lock,
            state: State::default(),
        };
        let client = client.to_string();
        match partial.read_state()? {
            Some((state, _))
                if state.client == client
                    && last_activity(&partial.dir).elapsed().unwrap_or_default() <= self.keep =>
            {
                partial.state = state;
            }
            Some(_) => partial.clear()?,
            // A new partial, or an unreadable one: nothing in it can be used.
            None => partial.clear()?,
        }
        partial.state.client = client;
        Ok(Opened::Partial(partial))
    }

    fn list(&self) -> io::Result<Vec<Listed>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            let lock = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dir.join(LOCK))
                .ok()
                .filter(|lock| lock.try_lock().is_ok());
            let modified = last_activity(&dir);
            let total = read_state_file(&dir)
                .ok()
                .flatten()
                .map_or(0, |(state, _)| state.total);
            listed.push(Listed {
                bytes: du(&dir),
                dir,
                lock,
                modified,
                total,
            });
        }
        Ok(listed)
    }

    /// Removes the partials that expired, and the ones no session can read; those in use
    /// are left alone.
    ///
    /// # Errors
    ///
    /// If the directory cannot be listed.
    pub fn sweep(&self) -> io::Result<Swept> {
        let mut swept = Swept::default();
        for listed in self.list()? {
            if listed.lock.is_none() {
                continue;
            }
            if listed.modified.elapsed().unwrap_or_default() > self.keep
                && fs::remove_dir_all(&listed.dir).is_ok()
            {
                swept.removed += 1;
                swept.bytes += listed.bytes;
            }
        }
        Ok(swept)
    }

    /// Removes the oldest partials not in use until all of them hold at most the maximum.
    /// Returns what was removed.
    ///
    /// # Errors
    ///
    /// If the directory cannot be listed.
    pub fn enforce_max(&self) -> io::Result<Swept> {
        let mut listed = self.list()?;
        let mut total: u64 = listed.iter().map(|l| l.bytes).sum();
        listed.sort_by_key(|l| l.modified);
        let mut swept = Swept::default();
        for old in listed {
            if total <= self.max_bytes {
                break;
            }
            if old.lock.is_some() && fs::remove_dir_all(&old.dir).is_ok() {
                total -= old.bytes;
                swept.removed += 1;
                swept.bytes += old.bytes;
            }
        }
        Ok(swept)
    }

    /// Bytes the partials other than `except` still miss: promised space that the free-space
    /// check keeps for them.
    pub fn reserved(&self, except: &Partial) -> u64 {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter(|listed| listed.dir != except.dir)
            .map(|listed| listed.total.saturating_sub(listed.bytes))
            .sum()
    }
}

/// When a partial last changed: its state or its data file, whichever is newer (a server
/// killed mid-file saved its state at the file's start).
fn last_activity(dir: &Path) -> SystemTime {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != LOCK)
        .filter_map(|entry| entry.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Bytes in the files under `dir` (never following a link), bounded in depth.
fn du(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: usize) -> u64 {
        if depth > crate::batch::Limits::DEFAULT.max_depth + 2 {
            return 0;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), depth + 1),
                Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 0)
}

fn read_state_file(dir: &Path) -> io::Result<Option<(State, SystemTime)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(STATE))
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let modified = file.metadata()?.modified()?;
    let mut text = Vec::new();
    file.take(MAX_STATE).read_to_end(&mut text)?;
    Ok(serde_json::from_slice::<Value>(&text)
        .ok()
        .as_ref()
        .and_then(State::from_json)
        .map(|state| (state, modified)))
}

/// One cut batch's partial, locked by the session using it. Dropped, it stays on disk for a
/// later try; [`Partial::remove`] ends it.
#[derive(Debug)]
pub struct Partial {
    dir: PathBuf,
    _lock: File,
    /// What it records.
    pub state: State,
}

impl Partial {
    fn read_state(&self) -> io::Result<Option<(State, SystemTime)>> {
        read_state_file(&self.dir)
    }

    /// Empties it: a fresh start for the batch.
    ///
    /// # Errors
    ///
    /// If something in it cannot be removed.
    pub fn clear(&mut self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name() == LOCK {
                continue;
            }
            match entry.file_type()?.is_dir() {
                true => fs::remove_dir_all(entry.path())?,
                false => fs::remove_file(entry.path())?,
            }
        }
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
        let temp = self.dir.join("state.new");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(self.state.to_json().to_string().as_bytes())?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&temp, self.dir.join(STATE))?;
        if durable {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether it was just made: nothing of it saved yet.
    pub fn is_new(&self) -> bool {
        !self.dir.join(STATE).exists()
    }

    /// Where entry `index`'s bytes are received.
    pub fn data_path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("{DATA_PREFIX}{index}"))
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
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.data_path(index))
    }

    /// Entry `index`'s data file as an earlier try left it, if there is one, for reading and
    /// appending (other data files go).
    ///
    /// # Errors
    ///
    /// If it cannot be opened.
    pub fn open_data(&self, index: u32) -> io::Result<Option<File>> {
        self.remove_data_except(Some(index))?;
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.data_path(index))
        {
            Ok(file) if file.metadata()?.is_file() => Ok(Some(file)),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn remove_data_except(&self, keep: Option<u32>) -> io::Result<()> {
        let keep = keep.map(|index| format!("{DATA_PREFIX}{index}"));
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(DATA_PREFIX) && Some(name) != keep.as_deref() {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Where the tree being received is built.
    pub fn tree_path(&self) -> PathBuf {
        self.dir.join(TREE)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes it holds on disk.
    pub fn bytes(&self) -> u64 {
        du(&self.dir)
    }

    /// Ends it: the batch is done (or can never resume), nothing of it is kept.
    ///
    /// # Errors
    ///
    /// If it cannot be removed.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_dir_all(&self.dir)?;
        // The last one takes the directory of partials with it (it fails while others live).
        if let Some(root) = self.dir.parent() {
            let _ = fs::remove_dir(root);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity::of_public_key(&[n])
    }

    fn file(name: &str, size: u64) -> Entry {
        Entry {
            path: vec![name.to_string()],
            kind: Kind::File {
                size,
                executable: false,
            },
        }
    }

    fn open(partials: &Partials, key: Key, client: &Identity) -> Partial {
        match partials.open(key, client).unwrap() {
            Opened::Partial(partial) => partial,
            Opened::InUse => panic!("in use"),
        }
    }

    #[test]
    fn the_key_binds_client_names_and_sizes() {
        let batch = [file("a", 1), file("b", 2)];
        let key = Key::new(&id(1), &batch);
        assert_eq!(key, Key::new(&id(1), &batch));
        assert_ne!(key, Key::new(&id(2), &batch));
        assert_ne!(key, Key::new(&id(1), &[file("a", 1), file("b", 3)]));
        assert_ne!(key, Key::new(&id(1), &[file("a", 1), file("c", 2)]));
        assert_ne!(key, Key::new(&id(1), &[file("ab", 1), file("", 2)]));
    }

    #[test]
    fn state_survives_a_reopen_and_binds_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let key = Key::new(&id(1), &[file("a", 10)]);
        let mut partial = open(&partials, key, &id(1));
        assert_eq!(partial.state.next, 0);
        // In use while held.
        assert!(matches!(partials.open(key, &id(1)).unwrap(), Opened::InUse));
        let mut data = partial.create_data(0, false).unwrap();
        data.write_all(b"hello").unwrap();
        partial.state.held = Some(5);
        partial.state.digest = Some(*blake3::hash(b"hello").as_bytes());
        partial.state.done = vec![ItemDone {
            index: 3,
            stored: true,
            name: "x (1)".into(),
        }];
        partial.state.total = 10;
        partial.save(true).unwrap();
        let saved = partial.state.clone();
        drop(partial);
        let again = open(&partials, key, &id(1));
        assert_eq!(again.state, saved);
        assert_eq!(
            fs::read(again.data_path(0)).unwrap(),
            b"hello",
            "the data stays"
        );
        drop(again);
        // The state file says another client: emptied, whatever the key.
        let other = open(&partials, key, &id(2));
        assert_eq!(other.state.next, 0);
        assert_eq!(other.state.held, None);
        assert!(!other.data_path(0).exists());
    }

    #[test]
    fn expired_partials_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path(), Duration::ZERO, DEFAULT_MAX_BYTES);
        let old = open(&partials, Key::new(&id(1), &[file("a", 1)]), &id(1));
        old.save(false).unwrap();
        let old_dir = old.dir().to_path_buf();
        drop(old);
        let live = open(&partials, Key::new(&id(1), &[file("b", 1)]), &id(1));
        live.save(false).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let swept = partials.sweep().unwrap();
        assert_eq!(swept.removed, 1);
        assert!(!old_dir.exists());
        assert!(live.dir().exists(), "in use: never swept");
    }

    #[test]
    fn the_oldest_go_first_past_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path(), DEFAULT_KEEP, 2500);
        let mut dirs = Vec::new();
        for n in 0..3u8 {
            let partial = open(&partials, Key::new(&id(n), &[file("a", 100)]), &id(n));
            let mut data = partial.create_data(0, false).unwrap();
            data.write_all(&[n; 1000]).unwrap();
            partial.save(false).unwrap();
            dirs.push(partial.dir().to_path_buf());
            // Distinct modification times, oldest first.
            std::thread::sleep(Duration::from_millis(20));
        }
        let swept = partials.enforce_max().unwrap();
        // About 1,100 bytes each (data and state): the oldest goes, two fit.
        assert_eq!(swept.removed, 1);
        assert!(!dirs[0].exists());
        assert!(dirs[1].exists() && dirs[2].exists());
    }

    #[test]
    fn the_others_missing_bytes_are_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let mut other = open(&partials, Key::new(&id(1), &[file("a", 10_000)]), &id(1));
        other.state.total = 10_000;
        let mut data = other.create_data(0, false).unwrap();
        data.write_all(&[0; 4000]).unwrap();
        other.save(false).unwrap();
        let state_len = fs::metadata(other.dir().join(STATE)).unwrap().len();
        drop(other);
        let this = open(&partials, Key::new(&id(1), &[file("b", 5)]), &id(1));
        // What the other still misses: its total less what it holds (data and state).
        assert_eq!(partials.reserved(&this), 10_000 - 4000 - state_len);
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(PARTIAL_DIR)).unwrap();
        let partials = Partials::new(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        assert!(
            partials
                .open(Key::new(&id(1), &[file("a", 1)]), &id(1))
                .is_err()
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_broken_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let partials = Partials::new(dir.path(), DEFAULT_KEEP, DEFAULT_MAX_BYTES);
        let key = Key::new(&id(1), &[file("a", 1)]);
        let partial = open(&partials, key, &id(1));
        partial.create_data(0, false).unwrap();
        fs::write(
            partial.dir().join(STATE),
            b"{\"format\": 1, \"next\": \"x\"}",
        )
        .unwrap();
        drop(partial);
        let again = open(&partials, key, &id(1));
        assert_eq!(again.state.next, 0);
        assert!(!again.data_path(0).exists());
    }
}
