//! Unix: thin, safe wrappers over the system calls that std does not offer (hang-up peeks,
//! pipes, splice, sendfile, statvfs, signals), and what std offers only on unix (modes,
//! inodes), each audited here.
//!
//! Each wrapper takes borrowed descriptors (so none can be used after it is closed), retries
//! `EINTR`, and returns the raw `io::Error` otherwise: what an error *means* (a timeout, a file
//! system that cannot splice) is decided by the callers, in safe code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
#[cfg(target_os = "linux")]
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Peeked;

/// Runs a system call until it is not interrupted; a negative return is the thread's `errno`.
fn retry(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Peeks at one byte without consuming it: at once, or (`wait`) blocking for as long as the
/// socket's receive timeout allows.
pub fn peek(sock: BorrowedFd<'_>, wait: bool) -> Peeked {
    let mut byte = 0u8;
    let flags = libc::MSG_PEEK | if wait { 0 } else { libc::MSG_DONTWAIT };
    let n = retry(|| {
        // SAFETY: `sock` is an open descriptor for the duration of the borrow, and the buffer
        // is one byte that we own.
        unsafe {
            libc::recv(
                sock.as_raw_fd(),
                (&raw mut byte).cast::<libc::c_void>(),
                1,
                flags,
            )
        }
    });
    Peeked::of(n)
}

/// Free space for an unprivileged writer on the file system holding `path`, if it says.
pub fn free_space(path: &Path) -> Option<u64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a struct for statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // The field types are narrower than u64 on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(size))
}

/// Makes writes past a file-size limit fail with `EFBIG` (a failed upload) instead of
/// `SIGXFSZ` killing the whole server.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to "ignore" installs no handler, and is
    // async-signal-safe and thread-safe.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

/// Keeps freed heap memory in the process instead of returning it to the system at once.
///
/// TLS allocates and frees a buffer for every 16 KiB record; glibc gives the top of the heap
/// back to the kernel whenever more than 128 KiB is free there, so every record touched fresh
/// pages, each a page fault (costly here: this VM's balloon reclaims returned pages). Measured
/// on a secure 1 GiB upload: the client's system time 0.94 s → 0.55 s. What is kept is bounded
/// by the peak in use (a few MiB), and large buffers still come from `mmap`.
pub fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// Keeps the heap in two arenas, for a server that serves many connections at once.
///
/// glibc gives each thread that meets contention an arena of its own, up to eight per core,
/// and each keeps up to the trim threshold (64 MiB, see [`keep_freed_memory`]) of freed
/// memory: 64 strangers' manifests, each refused once it had grown to a few MiB, left the
/// server at 365 MiB of RSS with 128 MiB live at most. Two arenas bound what is kept to two
/// thresholds; measured the same: 207 MiB, and secure uploads as fast.
pub fn few_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Whether this process is in the foreground of the terminal `tty` (its process group is the
/// terminal's foreground group); `None` when `tty` is not a terminal.
fn is_foreground(tty: BorrowedFd<'_>) -> Option<bool> {
    // SAFETY: tcgetpgrp reads a borrowed descriptor; getpgrp cannot fail.
    let (foreground, own) = unsafe { (libc::tcgetpgrp(tty.as_raw_fd()), libc::getpgrp()) };
    (foreground >= 0).then_some(foreground == own)
}

/// Keeps a server started in the background (`fup-server DIR &`) from being stopped by the
/// terminal: a background read from it then fails with `EIO` instead of stopping the whole
/// process with SIGTTIN, and a write goes through instead of SIGTTOU stopping it.
pub fn ignore_terminal_stops() {
    // SAFETY: as in `ignore_file_size_signal`: dispositions set to "ignore", no handler.
    unsafe {
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
    }
}

/// Bytes written to the TCP socket `sock` that the peer has not acknowledged yet (Linux's
/// `SIOCOUTQ`): what was written minus this is what reached the other end. `None` where the
/// system does not tell.
#[cfg(target_os = "linux")]
pub fn unacknowledged(sock: BorrowedFd<'_>) -> Option<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on a socket) writes one int through the pointer, which
    // points at a live local of that type; the descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| u64::try_from(queued).unwrap_or(0))
}

/// Where the system does not tell, nothing is known.
#[cfg(not(target_os = "linux"))]
pub fn unacknowledged(_sock: BorrowedFd<'_>) -> Option<u64> {
    None
}

/// A pipe that spliced data passes through; it holds page references, not copies.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Pipe {
    /// The end data is spliced out of.
    pub read: OwnedFd,
    /// The end data is spliced into.
    pub write: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// A new close-on-exec pipe, asked to hold `capacity` bytes (the kernel may give less: a
    /// smaller pipe only means more system calls).
    pub fn new(capacity: usize) -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let capacity = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ on a pipe we own; failure leaves the default size.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, capacity) };
        Ok(Pipe { read, write })
    }
}

/// `splice(2)`: moves up to `len` bytes from `from` to `to` (one of them a pipe) at their
/// current positions, without copying them through user space.
#[cfg(target_os = "linux")]
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    retry(|| {
        // SAFETY: borrowed open descriptors and null offsets (use and move the positions).
        unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        }
    })
}

/// `send(2)` of `buf` on a socket, without `SIGPIPE`; with `more`, tells TCP that more data
/// follows at once (`MSG_MORE`), so a header and its body share segments.
#[cfg(target_os = "linux")]
pub fn send(sock: BorrowedFd<'_>, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: a borrowed open socket and a buffer of `buf.len()` bytes.
    retry(|| unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// `sendfile(2)`: sends up to `len` bytes of `file` from `*offset` to `sock`, advancing
/// `*offset` by what was sent and leaving the file's own position alone.
#[cfg(target_os = "linux")]
pub fn sendfile(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: borrowed open descriptors and an offset we own, which the kernel advances.
    let n = retry(|| unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, len) })?;
    *offset += n as u64;
    Ok(n)
}

/// Flushes the file or directory `fd` through the drive's own cache where the system offers
/// it (`F_FULLFSYNC` on macOS), else with `fsync`.
#[cfg(not(target_os = "linux"))]
pub fn full_fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: `fd` is open for the duration of the borrow; F_FULLFSYNC takes no argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_FULLFSYNC) } == 0 {
            return Ok(());
        }
    }
    Ok(rustix::fs::fsync(fd)?)
}

/// A file as the file system knows it, whatever its path: its device and inode.
pub fn file_key(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// When a file's metadata last changed (its inode: a rename over it, a new mode), in
/// nanoseconds; `None` where the system does not say.
pub fn changed_nanos(meta: &std::fs::Metadata) -> Option<i128> {
    use std::os::unix::fs::MetadataExt;
    Some(i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()))
}

/// A file's permission bits, where the system has them.
pub fn mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

/// Whether a file's mode lets someone run it.
pub fn is_executable(meta: &std::fs::Metadata) -> bool {
    mode(meta).is_some_and(|mode| mode & 0o111 != 0)
}

/// What a file that is neither a plain file, a directory nor a symlink is.
pub fn special_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    }
}

/// `options` make a file readable and writable by its owner only (`mode` 0600).
pub fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

/// Makes the directory `dir` and its parents; the last one usable by its owner only (0700).
///
/// # Errors
///
/// If it cannot be made.
pub fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens the file at `path` for reading without blocking on a FIFO: only a plain file is
/// read on.
///
/// # Errors
///
/// If it cannot be opened.
pub fn open_to_read(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.is_file() {
        // Reads of a plain file never block anyway; the flag goes all the same.
        let flags = rustix::fs::fcntl_getfl(&file)? - rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&file, flags)?;
    }
    Ok(file)
}

/// Reads into `buf` from `file` at `offset`, without moving its position.
///
/// # Errors
///
/// If the read fails.
pub fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    file.read_at(buf, offset)
}

/// Adds the execute bits where the read bits are, as a new program's mode would have them
/// (the umask already took its share of the read bits).
///
/// # Errors
///
/// If the mode cannot be read or set.
pub fn make_executable(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    file.set_permissions(std::fs::Permissions::from_mode(
        mode | ((mode & 0o444) >> 2),
    ))
}

/// Whether the process is in its terminal's foreground, looking at standard error (`None`:
/// not a terminal).
pub fn stderr_in_foreground() -> Option<bool> {
    use std::os::fd::AsFd;
    is_foreground(io::stderr().as_fd())
}

/// Whether the process is in its terminal's foreground, looking at standard input (`None`:
/// not a terminal).
pub fn stdin_in_foreground() -> Option<bool> {
    use std::os::fd::AsFd;
    is_foreground(io::stdin().as_fd())
}

/// Where a file system cannot be flushed all at once, flushes `file` now; on unix nothing
/// (one [`super::Dir::sync_fs`] later covers every file written).
///
/// # Errors
///
/// None on unix.
pub fn flush_one(_file: &std::fs::File) -> io::Result<()> {
    Ok(())
}

/// Makes the directory `dir`'s own entries durable (a new name in it).
///
/// # Errors
///
/// If it cannot be opened or flushed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether a failed read of the terminal means the process is in the background (`EIO`, with
/// SIGTTIN ignored): it should wait to be brought to the foreground.
pub fn is_background_read(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EIO)
}

/// `builder` makes its files and directories with `mode` (the umask applies), as a new
/// entry would get: tempfile's own default is private (0600, 0700).
pub fn usual_mode<'x, 'a, 'b>(
    builder: &'x mut tempfile::Builder<'a, 'b>,
    mode: u32,
) -> &'x mut tempfile::Builder<'a, 'b> {
    use std::os::unix::fs::PermissionsExt;
    builder.permissions(std::fs::Permissions::from_mode(mode))
}

/// Lets the console show the escape sequences of bars and status lines: nothing to do on
/// unix.
pub fn enable_escapes() {}

/// This computer's name (`uname -n`), if it has one.
pub fn host_name() -> Option<String> {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn peeks_tell_data_from_a_hang_up_without_consuming() {
        use std::time::{Duration, Instant};
        let (mut a, mut b) = UnixStream::pair().unwrap();
        assert_eq!(peek(a.as_fd(), false), Peeked::Nothing);
        a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let started = Instant::now();
        assert_eq!(peek(a.as_fd(), true), Peeked::Nothing, "open and silent");
        assert!(started.elapsed() >= Duration::from_millis(25));
        b.write_all(b"x").unwrap();
        assert_eq!(
            peek(a.as_fd(), false),
            Peeked::Data,
            "pending data is not a hang-up"
        );
        b.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(
            peek(a.as_fd(), true),
            Peeked::Data,
            "the byte is still there"
        );
        let mut one = [0; 1];
        a.read_exact(&mut one).unwrap();
        assert_eq!(peek(a.as_fd(), false), Peeked::Closed);
        drop(b);
        assert_eq!(peek(a.as_fd(), true), Peeked::Closed);
    }

    #[test]
    fn a_pipe_is_no_terminal() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(is_foreground(a.as_fd()), None);
    }

    #[test]
    fn free_space_of_a_directory_and_of_nothing() {
        assert!(free_space(Path::new("/")).is_some());
        assert_eq!(free_space(Path::new("/no/such/dir")), None);
        assert_eq!(free_space(Path::new("nul\0byte")), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn splice_through_a_pipe_and_sendfile_from_an_offset() {
        let pipe = Pipe::new(1 << 20).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"spliced").unwrap();
        assert_eq!(splice(a.as_fd(), pipe.write.as_fd(), 7).unwrap(), 7);
        let mut out = [0; 7];
        std::fs::File::from(pipe.read.try_clone().unwrap())
            .read_exact(&mut out)
            .unwrap();
        assert_eq!(&out, b"spliced");

        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let mut offset = 4;
        let n = sendfile(b.as_fd(), file.as_fd(), &mut offset, 3).unwrap();
        assert_eq!((n, offset), (3, 7));
        assert_eq!(send(b.as_fd(), b"!", false).unwrap(), 1);
        let mut got = [0; 4];
        (&a).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"456!");
    }
}
