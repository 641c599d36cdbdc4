//! Windows: the same functions as on unix, over Win32 and std. Sockets are peeked with
//! `socket2`, free space comes from `GetDiskFreeSpaceExW`, the console is switched to
//! virtual-terminal mode for bars and status lines, and [`Dir`] is a `cap-std` directory:
//! everything beneath it is reached by name and never through a symlink, a junction or any
//! other reparse point. What has no meaning here (modes, signals of job control, heap tuning)
//! does nothing, and says so.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::{FileExt, MetadataExt};
use std::path::Path;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};

use super::{EntryKind, Open, Peeked, Sock, Stat};

/// Peeks at one byte without consuming it: at once, or (`wait`) blocking for as long as the
/// socket's receive timeout allows.
pub fn peek(sock: Sock<'_>, wait: bool) -> Peeked {
    let sock = socket2::SockRef::from(&sock);
    let mut byte = [MaybeUninit::<u8>::uninit()];
    if !wait && sock.set_nonblocking(true).is_err() {
        return Peeked::Nothing;
    }
    let n = sock.peek(&mut byte);
    if !wait {
        let _ = sock.set_nonblocking(false);
    }
    Peeked::of(n)
}

/// Bytes an unprivileged writer may still write in the file system of `path`.
pub fn free_space(path: &Path) -> Option<u64> {
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut available = 0u64;
    // SAFETY: `wide` is a NUL-terminated UTF-16 string we own; the out pointer is to a local
    // u64, and the two others may be null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            wide.as_ptr(),
            &raw mut available,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(available)
}

/// Nothing to do: Windows has no SIGXFSZ.
pub fn ignore_file_size_signal() {}

/// Nothing to do: the tuning is glibc's.
pub fn keep_freed_memory() {}

/// Nothing to do: the tuning is glibc's.
pub fn few_heap_arenas() {}

/// Nothing to do: Windows has no job-control signals.
pub fn ignore_terminal_stops() {}

/// Bytes sent but not yet acknowledged: Windows does not say.
pub fn unacknowledged(_sock: Sock<'_>) -> Option<u64> {
    None
}

/// A file as the file system knows it, whatever its path: its creation time and size
/// (std does not give the file index on stable Rust).
pub fn file_key(meta: &Metadata) -> (u64, u64) {
    (meta.creation_time(), meta.file_size())
}

/// When a file's metadata last changed: Windows' std does not say.
pub fn changed_nanos(_meta: &Metadata) -> Option<i128> {
    None
}

/// A file's permission bits: Windows has access lists instead.
pub fn mode(_meta: &Metadata) -> Option<u32> {
    None
}

/// Whether a file is a program: Windows says by its name, not by a bit.
pub fn is_executable(_meta: &Metadata) -> bool {
    false
}

/// What a file that is neither a plain file, a directory nor a symlink is.
pub fn special_kind(_kind: std::fs::FileType) -> &'static str {
    "a special file"
}

/// `options` for a private file: on Windows the configuration directory is in the user's
/// profile, whose access list already lets that user (and administrators) in, no one else.
pub fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// Makes the directory `dir` and its parents (private as the user's profile it is in).
///
/// # Errors
///
/// If it cannot be made.
pub fn make_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Opens the file at `path` for reading.
///
/// # Errors
///
/// If it cannot be opened.
pub fn open_to_read(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Reads into `buf` from `file` at `offset`.
///
/// # Errors
///
/// If the read fails.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

/// Nothing to do: Windows has no execute bit.
///
/// # Errors
///
/// None.
pub fn make_executable(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Whether the process is in its console's foreground: always, on Windows.
pub fn stderr_in_foreground() -> Option<bool> {
    None
}

/// Whether the process is in its console's foreground: always, on Windows.
pub fn stdin_in_foreground() -> Option<bool> {
    None
}

/// Whether a failed read of the console means the process is in the background: never, on
/// Windows.
pub fn is_background_read(_err: &io::Error) -> bool {
    false
}

/// Where a file system cannot be flushed all at once (here), flushes `file` now.
///
/// # Errors
///
/// If the flush fails.
pub fn flush_one(file: &File) -> io::Result<()> {
    file.sync_all()
}

/// Makes a directory's own entries durable: NTFS journals them, and a directory cannot be
/// flushed by a program that is not an administrator.
///
/// # Errors
///
/// None.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Lets the console show the escape sequences of bars and status lines: virtual-terminal
/// processing on standard output and standard error (Windows 10 and later; elsewhere the
/// console is left as it is).
pub fn enable_escapes() {
    use windows_sys::Win32::System::Console::{
        ENABLE_VIRTUAL_TERMINAL_PROCESSING, GetConsoleMode, GetStdHandle, STD_ERROR_HANDLE,
        STD_OUTPUT_HANDLE, SetConsoleMode,
    };
    for which in [STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: GetStdHandle takes a constant and returns a handle owned by the process (or
        // null/invalid); the console calls only read and set that handle's mode, through a
        // pointer to a local.
        unsafe {
            let handle = GetStdHandle(which);
            let mut mode = 0;
            if GetConsoleMode(handle, &raw mut mode) != 0 {
                SetConsoleMode(handle, mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING);
            }
        }
    }
}

/// `builder` as it is: entries inherit their directory's access list on Windows.
pub fn usual_mode<'x, 'a, 'b>(
    builder: &'x mut tempfile::Builder<'a, 'b>,
    _mode: u32,
) -> &'x mut tempfile::Builder<'a, 'b> {
    builder
}

/// A directory opened once; everything beneath it is reached by name, never through a
/// symlink, a junction or another reparse point.
#[derive(Debug)]
pub struct Dir(cap_std::fs::Dir);

/// A name as `cap-std` takes it.
fn arg(name: &(impl AsRef<Path> + ?Sized)) -> &Path {
    name.as_ref()
}

/// A time in nanoseconds since the Unix epoch, as `cap-std` takes it.
fn system_time(nanos: i64) -> cap_std::time::SystemTime {
    let epoch = std::time::UNIX_EPOCH;
    let at = match u64::try_from(nanos) {
        Ok(n) => epoch + std::time::Duration::from_nanos(n),
        Err(_) => epoch - std::time::Duration::from_nanos(nanos.unsigned_abs()),
    };
    cap_std::time::SystemTime::from_std(at)
}

impl Dir {
    /// Opens the directory `path` itself, not through a reparse point at its last component.
    ///
    /// # Errors
    ///
    /// If it is missing, a reparse point or not a directory.
    pub fn open(path: &Path) -> io::Result<Dir> {
        if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link or junction, not a directory",
            ));
        }
        Ok(Dir(cap_std::fs::Dir::open_ambient_dir(
            path,
            cap_std::ambient_authority(),
        )?))
    }

    /// Opens the directory `name` beneath it, never through a reparse point.
    ///
    /// # Errors
    ///
    /// If it is missing, a reparse point or not a directory.
    pub fn open_dir(&self, name: &(impl AsRef<Path> + ?Sized)) -> io::Result<Dir> {
        Ok(Dir(self.0.open_dir_nofollow(arg(name))?))
    }

    /// Opens the directory at `path` (components joined by `/`) beneath it: no reparse point
    /// anywhere on the way, never above it.
    ///
    /// # Errors
    ///
    /// If a component is missing, a reparse point, not a directory or not a plain name.
    pub fn open_beneath(&self, path: &str) -> io::Result<Dir> {
        super::open_each(self, path)
    }

    /// Makes the directory `name` beneath it (`mode` has no meaning here).
    ///
    /// # Errors
    ///
    /// If it cannot be made; [`super::is_taken`] if something of that name is there.
    pub fn make_dir(&self, name: &(impl AsRef<Path> + ?Sized), _mode: u32) -> io::Result<()> {
        self.0.create_dir(arg(name))
    }

    /// Opens the plain file `name` beneath it as `how` says, never through a reparse point.
    ///
    /// # Errors
    ///
    /// If it cannot be opened, or is not a plain file.
    pub fn open_file(
        &self,
        name: &(impl AsRef<Path> + ?Sized),
        how: Open,
        _mode: u32,
    ) -> io::Result<File> {
        let mut options = cap_std::fs::OpenOptions::new();
        match how {
            Open::Read => options.read(true),
            Open::Write => options.write(true),
            Open::ReadWrite => options.read(true).write(true),
            Open::WriteOrCreate => options.write(true).create(true),
            Open::Truncate => options.write(true).create(true).truncate(true),
            Open::ReadWriteTruncate => options.read(true).write(true).create(true).truncate(true),
            Open::CreateNew => options.write(true).create_new(true),
        };
        options.follow(FollowSymlinks::No);
        let file = self.0.open_with(arg(name), &options)?.into_std();
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain file", arg(name).display()),
            ));
        }
        Ok(file)
    }

    /// Removes the entry `name` beneath it: a file or a reparse point (itself), or (`dir`) an
    /// empty directory.
    ///
    /// # Errors
    ///
    /// If it cannot be removed ([`io::ErrorKind::NotFound`] if it is not there).
    pub fn remove(&self, name: &(impl AsRef<Path> + ?Sized), dir: bool) -> io::Result<()> {
        if dir {
            self.0.remove_dir(arg(name))
        } else {
            self.0.remove_file_or_symlink(arg(name))
        }
    }

    /// The names in it.
    ///
    /// # Errors
    ///
    /// If it cannot be read.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        self.0
            .entries()?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    /// What `name` beneath it is, not following a reparse point.
    ///
    /// # Errors
    ///
    /// If it is not there or cannot be looked at.
    pub fn stat(&self, name: &(impl AsRef<Path> + ?Sized)) -> io::Result<Stat> {
        let meta = self.0.symlink_metadata(arg(name))?;
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Link
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File(meta.len())
        } else {
            EntryKind::Other
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Stat { kind, modified })
    }

    /// Whether only this user may use it: on Windows, what the access list of the upload
    /// directory's parent gives it; not checked here.
    ///
    /// # Errors
    ///
    /// None.
    pub fn check_private(&self) -> Result<(), String> {
        Ok(())
    }

    /// Moves `from` beneath it to `to` beneath `to_dir` (on the same volume), never replacing
    /// anything: `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` on the two directories'
    /// own paths.
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
        use windows_sys::Win32::Storage::FileSystem::MoveFileExW;
        // Neither name may lead anywhere but into its directory.
        for name in [arg(from), arg(to)] {
            if name.components().count() != 1 {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a name"));
            }
        }
        if self.0.symlink_metadata(arg(from))?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a reparse point is not moved",
            ));
        }
        let wide = |p: &Path| -> Vec<u16> { p.as_os_str().encode_wide().chain([0]).collect() };
        let (source, target) = (
            wide(&self.path()?.join(arg(from))),
            wide(&to_dir.path()?.join(arg(to))),
        );
        // SAFETY: both are NUL-terminated UTF-16 strings we own, alive across the call.
        if unsafe { MoveFileExW(source.as_ptr(), target.as_ptr(), 0) } != 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // ERROR_ALREADY_EXISTS (183), or ERROR_FILE_EXISTS (80) for some file systems.
        Err(match err.raw_os_error() {
            Some(80 | 183) => io::Error::new(io::ErrorKind::AlreadyExists, err),
            _ => err,
        })
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
        self.0.rename(arg(from), &to_dir.0, arg(to))
    }

    /// Sets the modification time of `name` beneath it (never through a reparse point) to
    /// `nanos` since the Unix epoch.
    ///
    /// # Errors
    ///
    /// If the time cannot be set.
    pub fn set_modified(&self, name: &(impl AsRef<Path> + ?Sized), nanos: i64) -> io::Result<()> {
        let at = cap_fs_ext::SystemTimeSpec::Absolute(system_time(nanos));
        self.0.set_symlink_times(arg(name), None, Some(at))
    }

    /// Makes its own entries durable: NTFS journals them.
    ///
    /// # Errors
    ///
    /// None.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    /// Makes what was written beneath it durable: on Windows each file was flushed as it was
    /// finished ([`flush_one`]), so nothing is left to do.
    ///
    /// # Errors
    ///
    /// None.
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(())
    }

    /// An exclusive lock on it, while it is open: on Windows an open directory cannot be
    /// removed, which is what the lock protects against on unix.
    ///
    /// # Errors
    ///
    /// None.
    pub fn try_lock(&self) -> io::Result<()> {
        Ok(())
    }

    /// A second handle to the same directory.
    ///
    /// # Errors
    ///
    /// If the system has no handle left.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir(self.0.try_clone()?))
    }

    /// The directory's own path, as the system says for its handle now (after any rename).
    fn path(&self) -> io::Result<std::path::PathBuf> {
        use std::os::windows::io::AsHandle;
        use windows_sys::Win32::Storage::FileSystem::{
            FILE_NAME_NORMALIZED, GetFinalPathNameByHandleW,
        };
        let handle = self.0.as_handle();
        let mut buf = vec![0u16; 1024];
        loop {
            // SAFETY: the handle is open for the duration of the borrow; the buffer is ours,
            // its length passed with it.
            let n = unsafe {
                GetFinalPathNameByHandleW(
                    std::os::windows::io::AsRawHandle::as_raw_handle(&handle),
                    buf.as_mut_ptr(),
                    u32::try_from(buf.len()).unwrap_or(u32::MAX),
                    FILE_NAME_NORMALIZED,
                )
            } as usize;
            if n == 0 {
                return Err(io::Error::last_os_error());
            }
            if n < buf.len() {
                use std::os::windows::ffi::OsStringExt;
                return Ok(OsString::from_wide(&buf[..n]).into());
            }
            buf.resize(n + 1, 0);
        }
    }
}

/// This computer's name (`COMPUTERNAME`), if it has one.
pub fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .ok()
        .filter(|name| !name.is_empty())
}
