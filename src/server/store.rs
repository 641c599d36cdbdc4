//! Where uploads land: a temp file in the upload directory that is published under a free
//! name only once it is complete, so nothing is ever overwritten and no partial file is left.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tempfile::NamedTempFile;

use super::names::{MAX_RENAMES, candidate_name};
use crate::sys::{self, Dir, EntryKind};

/// Prefix of the temp files uploads are received into. Names starting with `.` are refused,
/// so no upload can collide with one of these.
pub const TEMP_PREFIX: &str = ".fup-";
/// Suffix of those temp files.
pub const TEMP_SUFFIX: &str = ".part";

/// The upload directory, and the temp files of the uploads in flight there.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Store {
    /// Opens `dir`, creating it (and its parents) if missing, and checks that files can be
    /// created in it now rather than at the first upload.
    ///
    /// # Errors
    ///
    /// If the path is a file, or the directory cannot be created or written to; each with a
    /// message that says which.
    pub fn open(dir: &Path) -> io::Result<Store> {
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "it is a file, not a directory",
                ));
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir)?,
            Err(err) => return Err(err),
        }
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|err| io::Error::new(err.kind(), format!("it is not writable: {err}")))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            in_flight: Arc::default(),
        })
    }

    /// The directory files are stored in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Free space in the directory for an unprivileged writer, if the file system says.
    pub fn free_space(&self) -> Option<u64> {
        sys::free_space(&self.dir)
    }

    /// Removes the temp files and trees that a killed server left behind. A live upload holds
    /// an exclusive lock on its temp file (or tree), so those of another server still running
    /// on the same directory are left alone. Returns how many were removed.
    ///
    /// # Errors
    ///
    /// If the directory cannot be listed.
    pub fn sweep_stale(&self) -> io::Result<usize> {
        let mut removed = 0;
        let here = Dir::open(&self.dir)?;
        for name in here.names()? {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let free = match here.stat(name).map(|stat| stat.kind) {
                // A tree's directory is locked while it is received (on Windows, open: it
                // cannot be removed then). Removal never follows a link inside.
                Ok(EntryKind::Dir) if name.ends_with(super::tree::TREE_SUFFIX) => {
                    here.open_dir(name).and_then(|dir| dir.try_lock()).is_ok()
                }
                // Only plain files: never a link, never a FIFO (opening refuses either).
                Ok(EntryKind::File(_)) if name.ends_with(TEMP_SUFFIX) => here
                    .open_file(name, sys::Open::Read, 0)
                    .is_ok_and(|file| file.try_lock().is_ok()),
                _ => false,
            };
            if free && super::handle::remove_all_at(&here, name).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The name a file called `name` would be stored under now: `name` itself, or the first
    /// free [`candidate_name`]. Another upload may take it first; [`Incoming::publish`] picks
    /// again then.
    pub fn free_name(&self, name: &str) -> String {
        (0..MAX_RENAMES)
            .map(|n| candidate_name(name, n))
            .find(|candidate| {
                matches!(fs::symlink_metadata(self.dir.join(candidate)), Err(e) if e.kind() == io::ErrorKind::NotFound)
            })
            .unwrap_or_else(|| name.to_string())
    }

    /// Starts receiving a file: creates a new, exclusive, locked temp file inside the directory.
    ///
    /// # Errors
    ///
    /// If the temp file cannot be created or locked.
    pub fn incoming(&self) -> io::Result<Incoming> {
        // Published files get the usual mode of a new file (umask applies), not 0600.
        let temp = sys::usual_mode(&mut tempfile::Builder::new(), 0o666)
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(&self.dir)?;
        self.track(temp)
    }

    /// An upload's temp file, locked (which tells `sweep_stale` of any server that it is
    /// alive) and in the in-flight set.
    fn track(&self, temp: NamedTempFile) -> io::Result<Incoming> {
        temp.as_file().try_lock().map_err(io::Error::from)?;
        let path = temp.path().to_path_buf();
        lock(&self.in_flight).insert(path.clone());
        Ok(Incoming {
            temp,
            _registered: Registered {
                path,
                in_flight: Arc::clone(&self.in_flight),
            },
        })
    }

    /// Takes over a complete file received elsewhere in the upload directory's file system
    /// (a resumable partial's data file): moves `from` in the directory `from_dir` to a new
    /// temp name here, never replacing anything, so that it is published like any other
    /// upload. `file` is it, open.
    ///
    /// # Errors
    ///
    /// If it cannot be moved or locked.
    pub fn adopt(&self, file: File, from_dir: &Dir, from: &str) -> io::Result<Incoming> {
        let mut file = Some(file);
        let here = Dir::open(&self.dir)?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .make_in(&self.dir, |path| {
                let name = path.file_name().unwrap_or_default();
                from_dir.rename_noreplace(from, &here, name)?;
                file.take().ok_or_else(|| io::Error::other("moved twice"))
            })?;
        self.track(temp)
    }

    /// Makes everything written in the upload directory's file system durable, in one flush
    /// (`syncfs`): for many files received at once, instead of one flush each.
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn flush_all(&self) -> io::Result<()> {
        Dir::open(&self.dir)?.sync_fs()
    }

    /// Makes the upload directory's entries durable (after files were published into it).
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn flush_dir(&self) -> io::Result<()> {
        sys::sync_dir(&self.dir)
    }

    /// Removes the temp files of every upload in flight, for a server that is about to exit on
    /// a signal (destructors do not run then). Returns how many were removed.
    pub fn remove_in_flight(&self) -> usize {
        lock(&self.in_flight)
            .drain()
            .filter(|path| fs::remove_file(path).is_ok())
            .count()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The set stays consistent even if a holder panicked: every operation is one call.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps a temp file's path in the in-flight set for as long as the upload lives.
#[derive(Debug)]
struct Registered {
    path: PathBuf,
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.path);
    }
}

/// A file being received. Dropping it without [`publish`](Incoming::publish) removes it.
#[derive(Debug)]
pub struct Incoming {
    temp: NamedTempFile,
    _registered: Registered,
}

impl Incoming {
    /// The file to write the data into.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Makes the complete file durable and visible under `name`, or under the first free
    /// [`candidate_name`] if `name` is taken by anything at all (a file, a directory, a FIFO,
    /// a symlink, dangling or not). Never replaces, opens or follows an existing entry. The
    /// data and the directory entry are both flushed to disk before this returns.
    ///
    /// # Errors
    ///
    /// If flushing or renaming fails, or no free name is found within [`MAX_RENAMES`] tries;
    /// the temp file is removed then.
    pub fn publish(self, name: &str) -> io::Result<PathBuf> {
        self.temp.as_file().sync_all()?;
        let path = self.publish_flushed(name)?;
        // Make the new directory entry itself durable.
        sys::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(path)
    }

    /// Moves the complete file to `path` in `tree` (a tree received file by file), where
    /// nothing may be yet; it is published with the tree.
    ///
    /// # Errors
    ///
    /// If it cannot be moved; it is removed then.
    pub fn move_into(self, tree: &super::tree::IncomingTree, path: &str) -> io::Result<()> {
        let Incoming { temp, _registered } = self;
        let here = temp
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = temp
            .path()
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| io::Error::other("a temp file without a name"))?
            .to_string();
        tree.adopt(path, &Dir::open(&here)?, &name)?;
        // Moved: nothing is left under the temp name to remove.
        let _ = temp.into_temp_path().keep();
        Ok(())
    }

    /// Like [`Incoming::publish`] for a file already made durable with others
    /// ([`Store::flush_all`]); the directory is flushed by the caller, once for all
    /// ([`Store::flush_dir`]).
    ///
    /// # Errors
    ///
    /// As [`Incoming::publish`].
    pub fn publish_flushed(self, name: &str) -> io::Result<PathBuf> {
        let Incoming { temp, _registered } = self;
        let dir = temp
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut temp = temp;
        for n in 0..MAX_RENAMES {
            let path = dir.join(candidate_name(name, n));
            match temp.persist_noclobber(&path) {
                Ok(_) => return Ok(path),
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => temp = e.file,
                Err(e) => return Err(e.error),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free name after {MAX_RENAMES} tries"),
        ))
    }
}

#[cfg(all(test, unix))]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn publish_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("a.txt"), b"old").unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", dir.path().join("a (1).txt")).unwrap();
        let mut incoming = store.incoming().unwrap();
        incoming.file().write_all(b"new").unwrap();
        let path = incoming.publish("a.txt").unwrap();
        assert_eq!(path, dir.path().join("a (2).txt"));
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"old");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // 0666 less the umask, never the temp file's 0600.
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o666 & 0o044 & !umask(), "mode {mode:o}");
        assert!(
            fs::symlink_metadata(dir.path().join("a (1).txt"))
                .unwrap()
                .is_symlink()
        );
    }

    /// This process's umask, as /proc says it.
    pub(crate) fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
            .unwrap_or(0o022)
    }

    #[test]
    fn sweep_removes_only_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.incoming().unwrap();
        fs::write(dir.path().join(".fup-dead1.part"), b"stale").unwrap();
        fs::write(dir.path().join("keep.part"), b"user file").unwrap();
        fs::write(dir.path().join(".fup-not-ours"), b"no suffix").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join(".fup-link.part")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join(".fup-fifo.part"))
            .status()
            .unwrap();
        assert!(made.success());
        // A second server on the same directory must not take the live file.
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(other.sweep_stale().unwrap(), 1);
        assert!(!dir.path().join(".fup-dead1.part").exists());
        assert!(live.temp.path().exists());
        for kept in [
            "keep.part",
            ".fup-not-ours",
            ".fup-link.part",
            ".fup-fifo.part",
        ] {
            assert!(
                fs::symlink_metadata(dir.path().join(kept)).is_ok(),
                "{kept}"
            );
        }
    }

    #[test]
    fn in_flight_files_are_tracked_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.incoming().unwrap();
        let b = store.incoming().unwrap();
        let b_path = b.temp.path().to_path_buf();
        b.publish("b").unwrap();
        assert!(!b_path.exists());
        let a_path = a.temp.path().to_path_buf();
        assert_eq!(store.remove_in_flight(), 1);
        assert!(!a_path.exists());
        drop(a);
        assert_eq!(store.remove_in_flight(), 0);
    }

    #[test]
    fn free_name_previews_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.free_name("a.txt"), "a.txt");
        fs::create_dir(dir.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("a (1).txt")).unwrap();
        assert_eq!(store.free_name("a.txt"), "a (2).txt");
    }

    #[test]
    fn open_says_what_is_wrong_with_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).unwrap_err();
        assert_eq!(err.to_string(), "it is a file, not a directory");
        let err = Store::open(&file.join("below")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        // /proc is not writable, even for root.
        let err = Store::open(Path::new("/proc/self")).unwrap_err();
        assert!(err.to_string().starts_with("it is not writable: "), "{err}");
        // The check leaves nothing behind.
        Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_incoming_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("new/sub")).unwrap();
        let mut incoming = store.incoming().unwrap();
        incoming.file().write_all(b"partial").unwrap();
        drop(incoming);
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
