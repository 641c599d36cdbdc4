//! The client's side of a batch: the files and trees named on the command line, read from the
//! file system into [`Entry`]s, with their modification times. Inside a tree nothing is
//! followed: symlinks, FIFOs, sockets and devices are skipped, each with a reason, as are
//! names the server would refuse (hidden names travel inside folders); empty directories are
//! kept; entries come in name order, each directory before its contents. A path given that
//! cannot be sent is said, and the rest goes on.

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use super::{Entry, Kind, Limits, Mtime};
use crate::server::names::{NameProblem, check_name, check_name_in_folder};

/// An entry found, and where its bytes are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The entry as it travels.
    pub entry: Entry,
    /// Where it is on this machine.
    pub source: PathBuf,
    /// Which file it was, for a file: only that one is ever sent.
    pub file: Option<FileId>,
}

/// A file as the file system knows it, whatever its path: its device and inode (on Windows,
/// its creation time), and its size then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    key: (u64, u64),
    size: u64,
}

impl FileId {
    /// The file `meta` describes.
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            key: crate::sys::file_key(meta),
            size: meta.len(),
        }
    }
}

impl Found {
    /// Opens the file the walk found, and only it: what is at its path now must be that very
    /// file (the same device, inode and size: not a file swapped in, nor one a symlink put in
    /// its place points to) and a plain file (never blocking on a FIFO).
    ///
    /// # Errors
    ///
    /// If it cannot be opened, or is not the file the walk found.
    pub fn open(&self) -> io::Result<File> {
        let file = crate::sys::open_to_read(&self.source)?;
        let meta = file.metadata()?;
        if !meta.is_file() || self.file.is_some_and(|id| id != FileId::of(&meta)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not the file that was walked",
            ));
        }
        Ok(file)
    }
}

/// Why something inside a tree is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link: never followed, never sent.
    Symlink,
    /// Not a file or directory: a FIFO, a socket or a device.
    Special(&'static str),
    /// A name the server refuses.
    Name(NameProblem),
    /// A directory that cannot be listed, or an entry whose type cannot be read.
    Unreadable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Symlink => f.write_str("a symbolic link (never followed)"),
            SkipReason::Special(what) => write!(f, "{what}, not a file or directory"),
            SkipReason::Name(problem) => write!(f, "the server refuses its name: {problem}"),
            SkipReason::Unreadable(err) => write!(f, "cannot be read: {err}"),
        }
    }
}

/// Something inside a tree that is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is.
    pub source: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = crate::text::escape(&self.source.to_string_lossy());
        write!(f, "skipped {path}: {}", self.reason)
    }
}

/// What the command line comes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// What is sent, in order.
    pub found: Vec<Found>,
    /// What is not, inside the trees, with why.
    pub skipped: Vec<Skipped>,
    /// Paths given that cannot be sent, with why (missing, special, badly named…), in the
    /// order given.
    pub unusable: Vec<Unusable>,
}

/// A path given on the command line that cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable {
    /// The path as given.
    pub path: PathBuf,
    /// Why not: the path cannot be read, or the server would refuse its name.
    pub why: Unsendable,
}

/// Why a path given cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsendable {
    /// It cannot be read (missing, no permission…).
    #[error("cannot open file: {0}")]
    Unreadable(String),
    /// A FIFO, a socket or a device.
    #[error("is {0}, not a file or directory")]
    Special(&'static str),
    /// It has no name to send it under (`/`), or one that is not UTF-8.
    #[error("has no name to send it under")]
    NoName,
    /// The server would refuse its name.
    #[error("its name: {0}")]
    Name(NameProblem),
}

/// Why the command line cannot be sent as a batch at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A limit is passed.
    #[error("{0}")]
    Limit(String),
}

/// Reads `paths` (files and directories, as given on the command line) into a batch within
/// `limits`. A path given is followed if it is a symlink (it was named); nothing inside a
/// tree is. A path given that cannot be sent is [`Unusable`]; problems inside a tree are
/// [`Skipped`]; two paths of one name are both sent (the server keeps both).
///
/// # Errors
///
/// A limit passed: the batch would be refused whole.
pub fn walk(paths: &[PathBuf], limits: &Limits) -> Result<Walked, WalkError> {
    let mut walker = Walker {
        limits,
        walked: Walked::default(),
        total: 0,
    };
    for path in paths {
        let (name, kind, meta) = match usable(path) {
            Ok(usable) => usable,
            Err(why) => {
                walker.walked.unusable.push(Unusable {
                    path: path.clone(),
                    why,
                });
                continue;
            }
        };
        walker.add(vec![name.clone()], kind, path, &meta)?;
        if kind == Kind::Dir {
            walker.tree(path, &mut vec![name])?;
        }
    }
    Ok(walker.walked)
}

/// A path given, if it can be sent: its name, what it is, its metadata.
pub fn usable(path: &Path) -> Result<(String, Kind, Metadata), Unsendable> {
    let meta = fs::metadata(path).map_err(|err| Unsendable::Unreadable(err.to_string()))?;
    let name = top_name(path).ok_or(Unsendable::NoName)?;
    check_name(name.as_bytes()).map_err(Unsendable::Name)?;
    let kind = kind_of(&meta).map_err(Unsendable::Special)?;
    Ok((name, kind, meta))
}

/// The last component of a path as given (`photos/` is `photos`), if it is UTF-8.
fn top_name(path: &Path) -> Option<String> {
    let name = match path.file_name() {
        Some(name) => name.to_os_string(),
        // `.`, `..` or `/`: the directory's own name.
        None => fs::canonicalize(path).ok()?.file_name()?.to_os_string(),
    };
    name.into_string().ok()
}

/// A file or a directory, or what else it is.
fn kind_of(meta: &Metadata) -> Result<Kind, &'static str> {
    let kind = meta.file_type();
    if kind.is_dir() {
        Ok(Kind::Dir)
    } else if kind.is_file() {
        Ok(Kind::File {
            size: meta.len(),
            executable: crate::sys::is_executable(meta),
        })
    } else if kind.is_symlink() {
        Err("a symbolic link")
    } else {
        Err(crate::sys::special_kind(kind))
    }
}

struct Walker<'l> {
    limits: &'l Limits,
    walked: Walked,
    total: u64,
}

impl Walker<'_> {
    fn add(
        &mut self,
        path: Vec<String>,
        kind: Kind,
        source: &Path,
        meta: &Metadata,
    ) -> Result<(), WalkError> {
        let limits = self.limits;
        if self.walked.found.len() >= limits.max_entries {
            return Err(WalkError::Limit(format!(
                "more than {} files and directories",
                limits.max_entries
            )));
        }
        if path.len() > limits.max_depth {
            return Err(WalkError::Limit(format!(
                "{} is more than {} levels deep",
                source.display(),
                limits.max_depth
            )));
        }
        if let Kind::File { size, .. } = kind {
            self.total = self.total.saturating_add(size);
            if self.total > limits.max_total {
                return Err(WalkError::Limit(format!(
                    "more than {} in all",
                    crate::text::bytes(limits.max_total)
                )));
            }
        }
        self.walked.found.push(Found {
            entry: Entry {
                path,
                kind,
                modified: meta.modified().ok().and_then(Mtime::from_system_time),
            },
            source: source.to_path_buf(),
            file: matches!(kind, Kind::File { .. }).then(|| FileId::of(meta)),
        });
        Ok(())
    }

    fn skip(&mut self, source: PathBuf, reason: SkipReason) {
        self.walked.skipped.push(Skipped { source, reason });
    }

    /// Adds what is inside `dir` (already added at `path`), in name order, depth first.
    fn tree(&mut self, dir: &Path, path: &mut Vec<String>) -> Result<(), WalkError> {
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(err) => {
                self.skip(dir.to_path_buf(), SkipReason::Unreadable(err.to_string()));
                return Ok(());
            }
        };
        let mut children: Vec<(String, PathBuf)> = Vec::new();
        for child in listing {
            let child = match child {
                Ok(child) => child,
                Err(err) => {
                    self.skip(dir.to_path_buf(), SkipReason::Unreadable(err.to_string()));
                    continue;
                }
            };
            let source = child.path();
            match child.file_name().into_string() {
                Ok(name) => children.push((name, source)),
                Err(_) => self.skip(source, SkipReason::Name(NameProblem::NotUtf8)),
            }
        }
        children.sort();
        for (name, source) in children {
            if let Err(problem) = check_name_in_folder(name.as_bytes()) {
                self.skip(source, SkipReason::Name(problem));
                continue;
            }
            // Never followed: the link itself is looked at.
            let meta = match fs::symlink_metadata(&source).map_err(|e| e.to_string()) {
                Ok(meta) => meta,
                Err(err) => {
                    self.skip(source, SkipReason::Unreadable(err));
                    continue;
                }
            };
            let kind = kind_of(&meta);
            let kind = match kind {
                Ok(kind) => kind,
                Err("a symbolic link") => {
                    self.skip(source, SkipReason::Symlink);
                    continue;
                }
                Err(what) => {
                    self.skip(source, SkipReason::Special(what));
                    continue;
                }
            };
            path.push(name);
            self.add(path.clone(), kind, &source, &meta)?;
            if kind == Kind::Dir {
                self.tree(&source, path)?;
            }
            path.pop();
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::process::Command;

    fn paths(walked: &Walked) -> Vec<String> {
        walked.found.iter().map(|f| f.entry.to_string()).collect()
    }

    #[test]
    fn a_tree_in_order_with_empty_directories_and_only_the_exec_bit() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("photos");
        fs::create_dir_all(top.join("2026/empty")).unwrap();
        fs::create_dir_all(top.join("사진 모음")).unwrap();
        fs::write(top.join("b.jpg"), b"bb").unwrap();
        fs::write(top.join("a.jpg"), b"a").unwrap();
        fs::write(top.join("2026/run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(top.join("2026/run.sh"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::write(top.join("사진 모음/with space.png"), b"png").unwrap();
        let single = root.path().join("notes.txt");
        fs::write(&single, b"notes").unwrap();
        let walked = walk(&[top.clone(), single], &Limits::DEFAULT).unwrap();
        assert_eq!(
            paths(&walked),
            [
                "photos/",
                "photos/2026/",
                "photos/2026/empty/",
                "photos/2026/run.sh (10 B)",
                "photos/a.jpg (1 B)",
                "photos/b.jpg (2 B)",
                "photos/사진 모음/",
                "photos/사진 모음/with space.png (3 B)",
                "notes.txt (5 B)",
            ]
        );
        let run = &walked.found[3];
        assert_eq!(
            run.entry.kind,
            Kind::File {
                size: 10,
                executable: true
            }
        );
        assert_eq!(run.source, top.join("2026/run.sh"));
        assert!(walked.skipped.is_empty());
        assert!(run.open().is_ok());
    }

    // Before: a file swapped for a symlink after the walk was followed and sent.
    #[test]
    fn only_the_file_that_was_walked_is_opened() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("t");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("a"), b"a").unwrap();
        fs::write(root.path().join("secret"), b"s").unwrap();
        let walked = walk(std::slice::from_ref(&top), &Limits::DEFAULT).unwrap();
        let a = &walked.found[1];
        assert!(a.open().is_ok());
        // Swapped for a symlink to another file, then for another file, then for a FIFO.
        fs::remove_file(top.join("a")).unwrap();
        symlink(root.path().join("secret"), top.join("a")).unwrap();
        assert!(a.open().is_err());
        fs::remove_file(top.join("a")).unwrap();
        fs::write(top.join("a"), b"other").unwrap();
        assert!(a.open().is_err());
        fs::remove_file(top.join("a")).unwrap();
        assert!(
            Command::new("mkfifo")
                .arg(top.join("a"))
                .status()
                .unwrap()
                .success()
        );
        assert!(
            a.open().is_err(),
            "refused at once, never waiting for a writer"
        );
    }

    #[test]
    fn links_specials_and_refused_names_are_skipped_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("t");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("ok.txt"), b"ok").unwrap();
        fs::write(top.join(".hidden"), b"h").unwrap();
        fs::write(top.join("bad\u{202e}name"), b"b").unwrap();
        symlink("/etc/passwd", top.join("link")).unwrap();
        symlink(root.path(), top.join("loop")).unwrap();
        assert!(
            Command::new("mkfifo")
                .arg(top.join("fifo"))
                .status()
                .unwrap()
                .success()
        );
        let walked = walk(std::slice::from_ref(&top), &Limits::DEFAULT).unwrap();
        // Hidden names travel inside folders.
        assert_eq!(paths(&walked), ["t/", "t/.hidden (1 B)", "t/ok.txt (2 B)"]);
        let skipped: Vec<String> = walked.skipped.iter().map(ToString::to_string).collect();
        let t = top.display();
        assert_eq!(
            skipped,
            [
                format!(
                    "skipped {t}/bad\\u{{202e}}name: the server refuses its name: name contains an invisible or bidi formatting character"
                ),
                format!("skipped {t}/fifo: a FIFO, not a file or directory"),
                format!("skipped {t}/link: a symbolic link (never followed)"),
                format!("skipped {t}/loop: a symbolic link (never followed)"),
            ]
        );
    }

    #[test]
    fn arguments_that_cannot_be_sent_are_said_and_the_rest_goes_on() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        fs::create_dir_all(a.join("x")).unwrap();
        fs::create_dir_all(b.join("x")).unwrap();
        fs::write(root.path().join(".env"), b"").unwrap();
        // Two of one name: both go (the server keeps both).
        let given = [
            a.join("x"),
            root.path().join("missing"),
            b.join("x"),
            root.path().join(".env"),
        ];
        let walked = walk(&given, &Limits::DEFAULT).unwrap();
        assert_eq!(paths(&walked), ["x/", "x/"]);
        let unusable: Vec<String> = walked
            .unusable
            .iter()
            .map(|u| {
                format!(
                    "{}: {}",
                    u.path.file_name().unwrap().to_string_lossy(),
                    u.why
                )
            })
            .collect();
        assert_eq!(unusable.len(), 2);
        assert!(
            unusable[0].starts_with("missing: cannot open file: No such file"),
            "{unusable:?}"
        );
        assert_eq!(unusable[1], ".env: its name: name starts with a dot");
        // Given on the command line, a symlink is followed: it was named.
        symlink(&a, root.path().join("via")).unwrap();
        let walked = walk(&[root.path().join("via")], &Limits::DEFAULT).unwrap();
        assert_eq!(paths(&walked), ["via/", "via/x/"]);
        // Limits stop the walk early.
        let deep = root.path().join("d");
        fs::create_dir_all(deep.join("1/2/3")).unwrap();
        let tight = Limits {
            max_depth: 3,
            ..Limits::DEFAULT
        };
        let err = walk(std::slice::from_ref(&deep), &tight).unwrap_err();
        assert!(
            err.to_string().ends_with("is more than 3 levels deep"),
            "{err}"
        );
        let few = Limits {
            max_entries: 2,
            ..Limits::DEFAULT
        };
        let err = walk(std::slice::from_ref(&deep), &few).unwrap_err();
        assert_eq!(err.to_string(), "more than 2 files and directories");
        fs::write(deep.join("1/f"), vec![0; 100]).unwrap();
        let small = Limits {
            max_total: 99,
            ..Limits::DEFAULT
        };
        let err = walk(std::slice::from_ref(&deep), &small).unwrap_err();
        assert_eq!(err.to_string(), "more than 99 B in all");
    }
}
