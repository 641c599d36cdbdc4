//! Every platform difference and every `unsafe` line of the crate, behind small functions with
//! one contract each: Linux's fast paths (splice, sendfile, openat2, renameat2, syncfs,
//! mallopt), the rest of unix (`unix`), and Windows (`windows`). The rest of the crate is
//! written once, against what is here.
//!
//! [`Dir`] is a directory opened once and worked beneath by name, never through a symlink
//! (or, on Windows, a junction or any other reparse point): the server's store, partials and
//! trees are built on it.

use std::io;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
mod unix_dir;
#[cfg(unix)]
pub use unix::*;
#[cfg(unix)]
pub use unix_dir::Dir;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// A socket, borrowed: a descriptor on unix, a `SOCKET` on Windows.
#[cfg(unix)]
pub type Sock<'a> = std::os::fd::BorrowedFd<'a>;
/// A socket, borrowed: a descriptor on unix, a `SOCKET` on Windows.
#[cfg(windows)]
pub type Sock<'a> = std::os::windows::io::BorrowedSocket<'a>;

/// What can lend its socket: std's sockets on every platform.
pub trait AsSock {
    /// The socket, borrowed.
    fn as_sock(&self) -> Sock<'_>;
}

#[cfg(unix)]
impl<T: std::os::fd::AsFd> AsSock for T {
    fn as_sock(&self) -> Sock<'_> {
        self.as_fd()
    }
}

#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket> AsSock for T {
    fn as_sock(&self) -> Sock<'_> {
        self.as_socket()
    }
}

/// What a peek at a socket's receive queue found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peeked {
    /// Data is waiting to be read.
    Data,
    /// The peer's end of stream, or an error such as a reset: it is gone.
    Closed,
    /// Nothing yet (or the wait ran out).
    Nothing,
}

impl Peeked {
    /// What a peek's result says: a byte, the end of the stream, nothing yet (no data within
    /// the wait), or an error (the peer is gone).
    fn of(peeked: io::Result<usize>) -> Peeked {
        match peeked {
            Ok(0) => Peeked::Closed,
            Ok(_) => Peeked::Data,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Peeked::Nothing
            }
            Err(_) => Peeked::Closed,
        }
    }
}

/// The directory at `path` (components joined by `/`, each a plain name) beneath `dir`,
/// opened one component at a time, none through a symlink.
fn open_each(dir: &Dir, path: &str) -> io::Result<Dir> {
    let mut dir = dir.try_clone()?;
    for name in path.split('/') {
        if name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a name"));
        }
        dir = dir.open_dir(name)?;
    }
    Ok(dir)
}

/// What an entry beneath a [`Dir`] is, never following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A plain file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link (on Windows, any reparse point: a junction too).
    Link,
    /// A FIFO, a socket, a device.
    Other,
}

/// An entry beneath a [`Dir`], as [`Dir::stat`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: EntryKind,
    /// Its last modification, in seconds since the Unix epoch.
    pub modified: i64,
}

/// How [`Dir::open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// For reading; it must be there.
    Read,
    /// For writing; it must be there.
    Write,
    /// For reading and writing; it must be there.
    ReadWrite,
    /// For writing, made if missing, kept as it is otherwise.
    WriteOrCreate,
    /// For writing, made if missing, emptied otherwise.
    Truncate,
    /// For reading and writing, made if missing, emptied otherwise.
    ReadWriteTruncate,
    /// For writing, made new: an existing entry of any kind is an error.
    CreateNew,
}

/// Whether `err` says that a name is already taken (what a no-replace rename or a new
/// directory meets).
pub fn is_taken(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AlreadyExists
}
