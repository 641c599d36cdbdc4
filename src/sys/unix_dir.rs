//! [`Dir`] on unix: a directory descriptor, and the `*at` calls beneath it with `O_NOFOLLOW`
//! (Linux: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` for a path of several
//! components, `renameat2` with `RENAME_NOREPLACE`, `syncfs`; macOS: `renameatx_np` with
//! `RENAME_EXCL`, `F_FULLFSYNC`).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::{EntryKind, Open, Stat};

/// A directory opened once; everything beneath it is reached by name, never through a
/// symlink.
#[derive(Debug)]
pub struct Dir(OwnedFd);

/// Flags for a directory opened beneath a handle: never through a symlink.
fn dir_flags() -> OFlags {
    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// Permission bits as the system's own type takes them (16 bits on macOS).
#[allow(clippy::unnecessary_cast)]
fn raw_mode(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode as rustix::fs::RawMode)
}

/// A name as the `*at` calls take it.
fn arg(name: &(impl AsRef<Path> + ?Sized)) -> &Path {
    name.as_ref()
}

impl Dir {
    /// Opens the directory `path` itself, not through a symlink at its last component.
    ///
    /// # Errors
    ///
    /// If it is missing, a symlink or not a directory.
    pub fn open(path: &Path) -> io::Result<Dir> {
        Ok(Dir(rustix::fs::open(path, dir_flags(), Mode::empty())?))
    }

    /// Opens the directory `name` beneath it, never through a symlink.
    ///
    /// # Errors
    ///
    /// If it is missing, a symlink or not a directory.
    pub fn open_dir(&self, name: &(impl AsRef<Path> + ?Sized)) -> io::Result<Dir> {
        Ok(Dir(rustix::fs::openat(
            &self.0,
            arg(name),
            dir_flags(),
            Mode::empty(),
        )?))
    }

    /// Opens the directory at `path` (components joined by `/`, each a plain name) beneath
    /// it: no symlink anywhere on the way, never above it.
    ///
    /// # Errors
    ///
    /// If a component is missing, a symlink, not a directory or not a plain name.
    pub fn open_beneath(&self, path: &str) -> io::Result<Dir> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::ResolveFlags;
            let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
            match rustix::fs::openat2(&self.0, path, dir_flags(), Mode::empty(), how) {
                Ok(fd) => return Ok(Dir(fd)),
                // Before Linux 5.6: the same rule one component at a time, below.
                Err(rustix::io::Errno::NOSYS) => {}
                Err(err) => return Err(err.into()),
            }
        }
        super::open_each(self, path)
    }

    /// Makes the directory `name` beneath it with `mode` (the umask applies).
    ///
    /// # Errors
    ///
    /// If it cannot be made; [`super::is_taken`] if something of that name is there.
    pub fn make_dir(&self, name: &(impl AsRef<Path> + ?Sized), mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(&self.0, arg(name), raw_mode(mode))?)
    }

    /// Opens the plain file `name` beneath it as `how` says (with `mode`, and the umask, if it
    /// is made), never through a symlink, never blocking on a FIFO.
    ///
    /// # Errors
    ///
    /// If it cannot be opened, or is not a plain file.
    pub fn open_file(
        &self,
        name: &(impl AsRef<Path> + ?Sized),
        how: Open,
        mode: u32,
    ) -> io::Result<File> {
        let flags = match how {
            Open::Read => OFlags::RDONLY,
            Open::Write => OFlags::WRONLY,
            Open::ReadWrite => OFlags::RDWR,
            Open::WriteOrCreate => OFlags::WRONLY | OFlags::CREATE,
            Open::Truncate => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            Open::ReadWriteTruncate => OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC,
            Open::CreateNew => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        };
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if how == Open::CreateNew {
            // Made here and now: a plain file, nothing to check (one call a file of a tree).
            return Ok(File::from(rustix::fs::openat(
                &self.0,
                arg(name),
                flags,
                raw_mode(mode),
            )?));
        }
        let flags = flags | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&self.0, arg(name), flags, raw_mode(mode))?;
        if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain file", arg(name).display()),
            ));
        }
        // Reads and writes of a plain file never block anyway; clear the flag all the same.
        let flags = rustix::fs::fcntl_getfl(&fd)? - OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&fd, flags)?;
        Ok(File::from(fd))
    }

    /// Removes the entry `name` beneath it: a file or a symlink (itself), or (`dir`) an empty
    /// directory.
    ///
    /// # Errors
    ///
    /// If it cannot be removed ([`io::ErrorKind::NotFound`] if it is not there).
    pub fn remove(&self, name: &(impl AsRef<Path> + ?Sized), dir: bool) -> io::Result<()> {
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rustix::fs::unlinkat(&self.0, arg(name), flags)?)
    }

    /// The names in it (not `.` and `..`).
    ///
    /// # Errors
    ///
    /// If it cannot be read.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.0)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    }

    /// What `name` beneath it is, not following a symlink.
    ///
    /// # Errors
    ///
    /// If it is not there or cannot be looked at.
    pub fn stat(&self, name: &(impl AsRef<Path> + ?Sized)) -> io::Result<Stat> {
        let stat = rustix::fs::statat(&self.0, arg(name), AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => EntryKind::File(stat.st_size as u64),
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Link,
            _ => EntryKind::Other,
        };
        #[allow(clippy::unnecessary_cast)]
        Ok(Stat {
            kind,
            modified: stat.st_mtime as i64,
        })
    }

    /// Whether only this process's user may use it: owned by that user, closed to group and
    /// others. Says why not.
    ///
    /// # Errors
    ///
    /// Why it is not, in words (with the `chmod` that mends it).
    pub fn check_private(&self) -> Result<(), String> {
        let stat = rustix::fs::fstat(&self.0).map_err(|err| err.to_string())?;
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me {
            return Err(format!(
                "belongs to user {}, not to this server's user {me}",
                stat.st_uid
            ));
        }
        let mode = stat.st_mode & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "may be used by others (mode {mode:03o}): run chmod 700 on it"
            ));
        }
        Ok(())
    }

    /// Moves `from` beneath it to `to` beneath `to_dir` (in the same file system), never
    /// replacing anything.
    ///
    /// # Errors
    ///
    /// If it cannot be moved; [`super::is_taken`] if `to` is there.
    pub fn rename_noreplace(
        &self,
        from: &(impl AsRef<Path> + ?Sized),
        to_dir: &Dir,
        to: &(impl AsRef<Path> + ?Sized),
    ) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(
            &self.0,
            arg(from),
            &to_dir.0,
            arg(to),
            RenameFlags::NOREPLACE,
        )?)
    }

    /// Moves `from` beneath it to `to` beneath `to_dir`, replacing a file there.
    ///
    /// # Errors
    ///
    /// If it cannot be moved.
    pub fn rename(
        &self,
        from: &(impl AsRef<Path> + ?Sized),
        to_dir: &Dir,
        to: &(impl AsRef<Path> + ?Sized),
    ) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.0,
            arg(from),
            &to_dir.0,
            arg(to),
        )?)
    }

    /// Sets the modification time of `name` beneath it (never through a symlink) to `nanos`
    /// since the Unix epoch, its access time to now.
    ///
    /// # Errors
    ///
    /// If the time cannot be set.
    pub fn set_modified(&self, name: &(impl AsRef<Path> + ?Sized), nanos: i64) -> io::Result<()> {
        use rustix::fs::{Timespec, Timestamps, UTIME_NOW};
        #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
        let when = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW.try_into().unwrap_or_default(),
            },
            last_modification: Timespec {
                tv_sec: nanos
                    .div_euclid(1_000_000_000)
                    .try_into()
                    .unwrap_or_default(),
                tv_nsec: nanos
                    .rem_euclid(1_000_000_000)
                    .try_into()
                    .unwrap_or_default(),
            },
        };
        Ok(rustix::fs::utimensat(
            &self.0,
            arg(name),
            &when,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Makes its own entries durable (a new name in it, a name gone).
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.0)?)
    }

    /// Makes everything written in its file system durable, in one flush: `syncfs` on Linux;
    /// elsewhere `sync` and then a full flush of the drive's cache through this directory
    /// (`F_FULLFSYNC` on macOS, where a plain `fsync` leaves data in the drive's cache).
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn sync_fs(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            Ok(rustix::fs::syncfs(&self.0)?)
        }
        #[cfg(not(target_os = "linux"))]
        {
            rustix::fs::sync();
            super::full_fsync(self.0.as_fd())
        }
    }

    /// Takes an exclusive lock on it, if no one holds one: held while it is open (a server
    /// sweeping stale temp directories leaves a locked one alone).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] if another holds it.
    pub fn try_lock(&self) -> io::Result<()> {
        // flock locks the open file description: the duplicate shares it with `self`.
        let file = File::from(self.0.try_clone()?);
        file.try_lock().map_err(io::Error::from)
    }

    /// A second handle to the same directory.
    ///
    /// # Errors
    ///
    /// If the system has no descriptor left.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir(self.0.try_clone()?))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}
