//! A directory tree being received: built inside a hidden temp directory in the upload
//! directory (or in a resumable partial's), every directory made and every file opened beneath
//! it through directory handles that follow no symlink and cannot leave it, then flushed in
//! one go and published whole by one no-replace rename of its top directory, never half.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::names::MAX_RENAMES;
use super::store::{Store, TEMP_PREFIX};
use crate::batch::Mtime;
use crate::sys::{Dir, Open};

/// Suffix of the temp directories trees are received into (see [`TEMP_PREFIX`]).
pub const TREE_SUFFIX: &str = ".tree";

/// A tree being received. Dropping it without [`publish`](IncomingTree::publish) removes
/// everything made so far.
#[derive(Debug)]
pub struct IncomingTree {
    /// The temp directory, removed with everything in it when dropped; `None` for a
    /// resumable partial's tree, which stays for the next try.
    temp: Option<TempDir>,
    /// Where it is (for messages and tests).
    path: PathBuf,
    /// Its name in the directory it is in.
    name: OsString,
    /// The directory it is in, opened: the upload directory, or a partial's.
    parent: Dir,
    /// It, opened: everything is made beneath this handle. Locked, so that a server sweeping
    /// stale temp directories leaves it alone.
    root: Dir,
    /// The upload directory, opened.
    upload: Dir,
    /// Its path.
    upload_dir: PathBuf,
}

impl Store {
    /// Starts receiving a tree: a new hidden temp directory in the upload directory (the
    /// usual mode of a new directory: the umask applies), locked while it lives.
    ///
    /// # Errors
    ///
    /// If it cannot be made, opened or locked.
    pub fn incoming_tree(&self) -> io::Result<IncomingTree> {
        let temp = crate::sys::usual_mode(&mut tempfile::Builder::new(), 0o777)
            .prefix(TEMP_PREFIX)
            .suffix(TREE_SUFFIX)
            .tempdir_in(self.dir())?;
        let upload = Dir::open(self.dir())?;
        let name = temp.path().file_name().unwrap_or_default().to_os_string();
        let root = upload.open_dir(&name)?;
        root.try_lock()?;
        Ok(IncomingTree {
            path: temp.path().to_path_buf(),
            name,
            temp: Some(temp),
            parent: upload.try_clone()?,
            root,
            upload,
            upload_dir: self.dir().to_path_buf(),
        })
    }

    /// A tree received into `name` beneath `parent`, a resumable partial's directory in the
    /// same file system: made new when `fresh` (anything there before goes), else as an
    /// earlier try left it. Dropped, it stays; publishing moves it into the upload directory.
    /// Nothing in the way is followed: a symlink in its place is refused, or removed itself.
    ///
    /// # Errors
    ///
    /// If it cannot be made or opened, or (not `fresh`) is not there.
    pub fn resumable_tree(
        &self,
        parent: &Dir,
        name: &str,
        fresh: bool,
    ) -> io::Result<IncomingTree> {
        if fresh {
            super::handle::remove_all_at(parent, name)?;
            parent.make_dir(name, 0o777)?;
        }
        let root = parent.open_dir(name)?;
        Ok(IncomingTree {
            temp: None,
            path: PathBuf::from(name),
            name: name.into(),
            parent: parent.try_clone()?,
            root,
            upload: Dir::open(self.dir())?,
            upload_dir: self.dir().to_path_buf(),
        })
    }
}

impl IncomingTree {
    /// Where it is being built.
    pub fn temp_path(&self) -> &Path {
        &self.path
    }

    /// The directory that holds `path`'s last component, opened beneath the root. `path`'s
    /// components passed the name rule (no `..`, no separator), and none of them may be a
    /// symlink: [`Dir::open_beneath`] refuses to follow one, or to leave the root. Returns it
    /// (`None` for the root itself) and the last component.
    fn parent<'p>(&self, path: &'p str) -> io::Result<(Option<Dir>, &'p str)> {
        if path.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty path"));
        }
        match path.rsplit_once('/') {
            None => Ok((None, path)),
            Some((dirs, name)) => Ok((Some(self.root.open_beneath(dirs)?), name)),
        }
    }

    /// Makes the directory `path` (its parent made before): the usual mode of a new
    /// directory, no setuid, setgid or sticky bit.
    ///
    /// # Errors
    ///
    /// If it exists, its parent does not (or is not a directory), or a symlink is in the way.
    pub fn mkdir(&self, path: &str) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        parent.as_ref().unwrap_or(&self.root).make_dir(name, 0o777)
    }

    /// Creates the file `path` (new: never an existing one, never through a symlink) for
    /// writing, with the usual mode of a new file, or of a new program when `executable`.
    ///
    /// # Errors
    ///
    /// If it exists, its directory does not, or a symlink is in the way.
    pub fn create(&self, path: &str, executable: bool) -> io::Result<File> {
        let (parent, name) = self.parent(path)?;
        let mode = if executable { 0o777 } else { 0o666 };
        parent
            .as_ref()
            .unwrap_or(&self.root)
            .open_file(name, Open::CreateNew, mode)
    }

    /// Removes the file or the (empty) directory `path`, if it is there, through no symlink:
    /// what a killed server wrote after its last checkpoint, before a resume.
    ///
    /// # Errors
    ///
    /// If it is there and cannot be removed (a directory that is not empty).
    pub fn remove(&self, path: &str, dir: bool) -> io::Result<()> {
        let (parent, name) = match self.parent(path) {
            Ok(parent) => parent,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        match parent.as_ref().unwrap_or(&self.root).remove(name, dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Makes what is in the tree so far durable (one flush of its file system).
    ///
    /// # Errors
    ///
    /// If the flush fails.
    pub fn flush(&self) -> io::Result<()> {
        self.root.sync_fs()
    }

    /// Moves the complete file `from` in the directory `from_dir` (in the same file
    /// system) to `path` in the tree, where nothing may be yet, through no symlink.
    ///
    /// # Errors
    ///
    /// If something is there, its directory is not, or a symlink is in the way.
    pub fn adopt(&self, path: &str, from_dir: &Dir, from: &str) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        from_dir.rename_noreplace(from, parent.as_ref().unwrap_or(&self.root), name)
    }

    /// Makes everything received durable with one flush of the file system (not one per
    /// file), then publishes the tree as `top` in the upload directory, or as `top (1)`, …
    /// if that is taken by anything at all, with a rename that never replaces; and flushes
    /// the upload directory's new entry.
    ///
    /// # Errors
    ///
    /// If flushing or renaming fails, or no free name is found within [`MAX_RENAMES`] tries;
    /// everything is removed then.
    pub fn publish(self, top: &str, times: &[(String, Mtime)]) -> io::Result<PathBuf> {
        // Each directory's own time, deepest last made first (making an entry in a directory
        // changes its time); the top's once it has its name (`""` stands for it).
        for (inside, at) in times.iter().rev().filter(|(inside, _)| !inside.is_empty()) {
            let (parent, name) = self.parent(inside)?;
            parent
                .as_ref()
                .unwrap_or(&self.root)
                .set_modified(name, at.0)?;
        }
        self.root.sync_fs()?;
        let dir = self.upload_dir.clone();
        let IncomingTree {
            temp,
            name: temp_name,
            parent,
            root,
            upload,
            ..
        } = self;
        // Its lock keeps sweeping servers away until it is published; but Windows cannot
        // move a directory that is open (nor sweep one), so there the handle goes first.
        #[cfg(windows)]
        drop(root);
        #[cfg(not(windows))]
        let _locked = root;
        for n in 0..MAX_RENAMES {
            let name = match n {
                0 => top.to_string(),
                n => format!("{top} ({n})"),
            };
            match parent.rename_noreplace(&temp_name, &upload, name.as_str()) {
                Ok(()) => {
                    if let Some((_, at)) = times.iter().find(|(inside, _)| inside.is_empty()) {
                        upload.set_modified(name.as_str(), at.0)?;
                    }
                    upload.sync()?;
                    // Published: nothing to remove any more.
                    let _ = temp.map(TempDir::keep);
                    return Ok(dir.join(name));
                }
                Err(err) if crate::sys::is_taken(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free name after {MAX_RENAMES} tries"),
        ))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    use crate::server::store::tests::umask;

    #[test]
    fn a_tree_is_published_whole_under_a_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir(dir.path().join("photos")).unwrap();
        let tree = store.incoming_tree().unwrap();
        tree.mkdir("2026").unwrap();
        tree.mkdir("2026/empty").unwrap();
        tree.create("2026/a.jpg", false)
            .unwrap()
            .write_all(b"jpeg")
            .unwrap();
        tree.create("run.sh", true).unwrap();
        // Nothing is visible under a real name until it is published.
        let names = |d: &Path| {
            let mut n: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };
        let temp = tree.temp_path().to_path_buf();
        assert!(names(dir.path()).iter().any(|n| n.ends_with(TREE_SUFFIX)));
        let published = tree.publish("photos", &[]).unwrap();
        assert_eq!(published, dir.path().join("photos (1)"));
        assert!(!temp.exists());
        assert_eq!(names(dir.path()), ["photos", "photos (1)"]);
        assert_eq!(fs::read(published.join("2026/a.jpg")).unwrap(), b"jpeg");
        assert!(published.join("2026/empty").is_dir());
        let mask = umask();
        assert_eq!(mode(&published), 0o777 & !mask);
        assert_eq!(mode(&published.join("2026")), 0o777 & !mask);
        assert_eq!(mode(&published.join("2026/a.jpg")), 0o666 & !mask);
        assert_eq!(mode(&published.join("run.sh")), 0o777 & !mask);
    }

    #[test]
    fn nothing_is_made_through_a_symlink_or_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = store.incoming_tree().unwrap();
        tree.mkdir("a").unwrap();
        // Someone plants links inside the tree while it is being built.
        std::os::unix::fs::symlink(outside.path(), tree.temp_path().join("evil")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), tree.temp_path().join("a/f")).unwrap();
        assert!(tree.create("evil/x", false).is_err());
        assert!(tree.mkdir("evil/d").is_err());
        assert!(tree.create("a/f", false).is_err(), "never through a link");
        // Paths that the batch check refuses are refused here too.
        assert!(tree.create("../x", false).is_err());
        assert!(tree.create("", false).is_err());
        // A file where a directory is wanted, and an existing name.
        tree.create("file", false).unwrap();
        assert!(tree.create("file/x", false).is_err());
        assert!(tree.mkdir("a").is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // Dropped unpublished: nothing left at all.
        drop(tree);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sweep_removes_stale_trees_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.incoming_tree().unwrap();
        live.mkdir("kept").unwrap();
        let stale = dir.path().join(".fup-dead.tree");
        fs::create_dir_all(stale.join("sub")).unwrap();
        fs::write(stale.join("sub/f"), b"x").unwrap();
        fs::create_dir(dir.path().join("user.tree")).unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().sweep_stale().unwrap(), 1);
        assert!(!stale.exists());
        assert!(live.temp_path().join("kept").is_dir());
        assert!(dir.path().join("user.tree").is_dir());
    }
}
