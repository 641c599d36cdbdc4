//! Whole trees beneath a directory opened once ([`Dir`]): made if missing, removed, emptied
//! and measured by name relative to its handle, never following a symlink, so that nothing
//! swapped in under a path later (a symlink planted by someone who can write to the upload
//! directory) is ever followed. Names given here are single components the server made
//! itself.

use std::ffi::OsStr;
use std::io;

use crate::sys::{Dir, EntryKind};

/// Deepest a removal or a measure goes (a tree of the deepest batch, and a partial's levels).
const MAX_DEPTH: usize = crate::batch::Limits::DEFAULT.max_depth + 4;

/// Makes the directory `name` beneath `at` with `mode` (the umask applies), if it is not there.
///
/// # Errors
///
/// If it cannot be made (an existing entry of any kind is fine: opening it says what it is).
pub fn make_dir_at(at: &Dir, name: &str, mode: u32) -> io::Result<()> {
    match at.make_dir(name, mode) {
        Err(err) if !crate::sys::is_taken(&err) => Err(err),
        _ => Ok(()),
    }
}

/// Removes `name` beneath `at` and, for a directory, everything in it, never following a
/// symlink (one is removed itself). Missing is fine.
///
/// # Errors
///
/// If something cannot be removed.
pub fn remove_all_at(at: &Dir, name: &str) -> io::Result<()> {
    remove_at(at, OsStr::new(name), 0)
}

fn remove_at(at: &Dir, name: &OsStr, depth: usize) -> io::Result<()> {
    let dir = match at.stat(name).map(|stat| stat.kind) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
        Ok(EntryKind::Dir) => match at.open_dir(name) {
            Ok(dir) => dir,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Swapped for something else since: the entry itself goes.
            Err(_) => return missing_is_fine(at.remove(name, false)),
        },
        // A file, a symlink, a FIFO: the entry itself goes.
        Ok(_) => return missing_is_fine(at.remove(name, false)),
    };
    if depth > MAX_DEPTH {
        return Err(io::Error::other("a directory nested too deep to remove"));
    }
    for child in dir.names()? {
        remove_at(&dir, &child, depth + 1)?;
    }
    drop(dir);
    missing_is_fine(at.remove(name, true))
}

fn missing_is_fine(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes what is in the directory `at`, but the names `keep`.
///
/// # Errors
///
/// If something cannot be removed.
pub fn empty_dir(at: &Dir, keep: &[&str]) -> io::Result<()> {
    for child in at.names()? {
        if !keep.iter().any(|k| OsStr::new(k) == child) {
            remove_at(at, &child, 1)?;
        }
    }
    Ok(())
}

/// Bytes in the plain files beneath `name` in `at` (or of `name` itself), never following a
/// symlink; and the latest modification among them, in seconds since the epoch.
pub fn measure_at(at: &Dir, name: &OsStr) -> (u64, i64) {
    measure(at, name, 0).unwrap_or((0, 0))
}

fn measure(at: &Dir, name: &OsStr, depth: usize) -> io::Result<(u64, i64)> {
    let stat = at.stat(name)?;
    match stat.kind {
        EntryKind::File(size) => Ok((size, stat.modified)),
        EntryKind::Dir if depth <= MAX_DEPTH => {
            let dir = at.open_dir(name)?;
            let mut total = (0u64, stat.modified);
            for child in dir.names()? {
                if let Ok((bytes, modified)) = measure(&dir, &child, depth + 1) {
                    total = (total.0 + bytes, total.1.max(modified));
                }
            }
            Ok(total)
        }
        _ => Ok((0, stat.modified)),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::sys::Open;
    use std::fs;

    #[test]
    fn removal_never_follows_a_symlink() {
        let (dir, victim) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(victim.path().join("precious"), b"x").unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::write(top.join("a/b/f"), b"12345").unwrap();
        std::os::unix::fs::symlink(victim.path(), top.join("a/link")).unwrap();
        let at = Dir::open(dir.path()).unwrap();
        assert_eq!(measure_at(&at, OsStr::new("top")).0, 5);
        remove_all_at(&at, "top").unwrap();
        assert!(!top.exists());
        assert!(victim.path().join("precious").exists());
        // The link itself, planted where a directory was expected, goes; not its target.
        std::os::unix::fs::symlink(victim.path(), dir.path().join("top")).unwrap();
        remove_all_at(&at, "top").unwrap();
        assert!(victim.path().join("precious").exists());
        assert!(fs::symlink_metadata(dir.path().join("top")).is_err());
        remove_all_at(&at, "missing").unwrap();
    }

    #[test]
    fn files_and_directories_open_only_as_themselves() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("dirlink")).unwrap();
        let at = Dir::open(dir.path()).unwrap();
        assert!(at.open_file("f", Open::Read, 0).is_ok());
        assert!(at.open_file("link", Open::Read, 0).is_err());
        assert!(at.open_dir("dirlink").is_err());
        assert!(Dir::open(&dir.path().join("dirlink")).is_err());
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        // Refused at once, never blocking for a writer.
        assert!(at.open_file("fifo", Open::Read, 0).is_err());
        make_dir_at(&at, "d", 0o700).unwrap();
        make_dir_at(&at, "d", 0o700).unwrap();
        fs::write(dir.path().join("d/x"), b"").unwrap();
        empty_dir(&at.open_dir("d").unwrap(), &[]).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("d")).unwrap().count(), 0);
    }
}
