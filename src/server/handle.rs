//! Work beneath a directory opened once: make, open, measure, list and remove entries by name
//! relative to its handle, never following a symlink, so that nothing swapped in under a path
//! later (a symlink planted by someone who can write to the upload directory) is ever
//! followed. Names given here are single components the server made itself.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// Deepest a removal or a measure goes (a tree of the deepest batch, and a partial's levels).
const MAX_DEPTH: usize = crate::batch::Limits::DEFAULT.max_depth + 4;

/// Flags for a directory opened beneath a handle: never through a symlink.
fn dir_flags() -> OFlags {
    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// Opens the directory `path` itself, not through a symlink at its last component.
///
/// # Errors
///
/// If it is missing, a symlink or not a directory.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, dir_flags(), Mode::empty())?)
}

/// Opens the directory `name` beneath `at`, never through a symlink.
///
/// # Errors
///
/// If it is missing, a symlink or not a directory.
pub fn open_dir_at(at: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(at, name, dir_flags(), Mode::empty())?)
}

/// Makes the directory `name` beneath `at` with `mode` (the umask applies), if it is not there.
///
/// # Errors
///
/// If it cannot be made (an existing entry of any kind is fine: opening it says what it is).
pub fn make_dir_at(at: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Opens the file `name` beneath `at` with `flags` (and `mode` if it is created), never
/// through a symlink, never blocking on a FIFO.
///
/// # Errors
///
/// If it cannot be opened, or is not a plain file.
pub fn open_file_at(at: BorrowedFd<'_>, name: &str, flags: OFlags, mode: u32) -> io::Result<File> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(at, name, flags, Mode::from_raw_mode(mode))?;
    if rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is not a plain file"),
        ));
    }
    // Reads and writes of a plain file never block anyway; clear the flag all the same.
    let flags = rustix::fs::fcntl_getfl(&fd)? - OFlags::NONBLOCK;
    rustix::fs::fcntl_setfl(&fd, flags)?;
    Ok(File::from(fd))
}

/// Removes `name` beneath `at` and, for a directory, everything in it, never following a
/// symlink (one is removed itself). Missing is fine.
///
/// # Errors
///
/// If something cannot be removed.
pub fn remove_all_at(at: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    remove_at(at, OsStr::new(name), 0)
}

fn remove_at(at: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    let dir = match rustix::fs::openat(at, name, dir_flags(), Mode::empty()) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        // A file, a symlink, a FIFO: the entry itself goes.
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return match rustix::fs::unlinkat(at, name, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(err) => Err(err.into()),
            };
        }
        Err(err) => return Err(err.into()),
    };
    if depth > MAX_DEPTH {
        return Err(io::Error::other("a directory nested too deep to remove"));
    }
    for child in names(dir.as_fd())? {
        remove_at(dir.as_fd(), &child, depth + 1)?;
    }
    match rustix::fs::unlinkat(at, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Removes what is in the directory `at`, but the names `keep`.
///
/// # Errors
///
/// If something cannot be removed.
pub fn empty_dir(at: BorrowedFd<'_>, keep: &[&str]) -> io::Result<()> {
    for child in names(at)? {
        if !keep.iter().any(|k| OsStr::new(k) == child) {
            remove_at(at, &child, 1)?;
        }
    }
    Ok(())
}

/// The names in the directory `at` (not `.` and `..`).
///
/// # Errors
///
/// If it cannot be read.
pub fn names(at: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(at)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Bytes in the plain files beneath `name` in `at` (or of `name` itself), never following a
/// symlink; and the latest modification among them, in seconds since the epoch.
pub fn measure_at(at: BorrowedFd<'_>, name: &OsStr) -> (u64, i64) {
    measure(at, name, 0).unwrap_or((0, 0))
}

fn measure(at: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<(u64, i64)> {
    let stat = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok((stat.st_size as u64, stat.st_mtime)),
        FileType::Directory if depth <= MAX_DEPTH => {
            let dir = rustix::fs::openat(at, name, dir_flags(), Mode::empty())?;
            let mut total = (0u64, stat.st_mtime);
            for child in names(dir.as_fd())? {
                if let Ok((bytes, modified)) = measure(dir.as_fd(), &child, depth + 1) {
                    total = (total.0 + bytes, total.1.max(modified));
                }
            }
            Ok(total)
        }
        _ => Ok((0, stat.st_mtime)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn removal_never_follows_a_symlink() {
        let (dir, victim) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(victim.path().join("precious"), b"x").unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::write(top.join("a/b/f"), b"12345").unwrap();
        std::os::unix::fs::symlink(victim.path(), top.join("a/link")).unwrap();
        let at = open_dir(dir.path()).unwrap();
        assert_eq!(measure_at(at.as_fd(), OsStr::new("top")).0, 5);
        remove_all_at(at.as_fd(), "top").unwrap();
        assert!(!top.exists());
        assert!(victim.path().join("precious").exists());
        // The link itself, planted where a directory was expected, goes; not its target.
        std::os::unix::fs::symlink(victim.path(), dir.path().join("top")).unwrap();
        remove_all_at(at.as_fd(), "top").unwrap();
        assert!(victim.path().join("precious").exists());
        assert!(fs::symlink_metadata(dir.path().join("top")).is_err());
        remove_all_at(at.as_fd(), "missing").unwrap();
    }

    #[test]
    fn files_and_directories_open_only_as_themselves() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("dirlink")).unwrap();
        let at = open_dir(dir.path()).unwrap();
        assert!(open_file_at(at.as_fd(), "f", OFlags::RDONLY, 0).is_ok());
        assert!(open_file_at(at.as_fd(), "link", OFlags::RDONLY, 0).is_err());
        assert!(open_dir_at(at.as_fd(), "dirlink").is_err());
        assert!(open_dir(&dir.path().join("dirlink")).is_err());
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        // Refused at once, never blocking for a writer.
        assert!(open_file_at(at.as_fd(), "fifo", OFlags::RDONLY, 0).is_err());
        make_dir_at(at.as_fd(), "d", 0o700).unwrap();
        make_dir_at(at.as_fd(), "d", 0o700).unwrap();
        fs::write(dir.path().join("d/x"), b"").unwrap();
        empty_dir(open_dir_at(at.as_fd(), "d").unwrap().as_fd(), &[]).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("d")).unwrap().count(), 0);
    }
}
