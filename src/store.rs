//! Where uploads land: the file-name check, and a temp file that is published under a free
//! name only once it is complete, so nothing is ever overwritten and no partial file is left.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tempfile::NamedTempFile;

use crate::display::is_invisible;
use crate::message::MAX_NAME_LEN;

/// Prefix of the temp files uploads are received into. Names starting with `.` are refused,
/// so no upload can collide with one of these.
pub const TEMP_PREFIX: &str = ".fup-";
/// Suffix of those temp files.
pub const TEMP_SUFFIX: &str = ".part";
/// How many `stem (n).ext` names are tried before giving up on a crowded directory.
pub const MAX_RENAMES: u32 = 10_000;

/// Why a file name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`.
    DotOrDotDot,
    /// The name is not valid UTF-8.
    NotUtf8,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
    /// The name contains `/` or `\`, so it is not a single path component.
    Separator,
    /// The name contains a NUL byte.
    Nul,
    /// The name starts with `.` (a hidden file).
    Hidden,
    /// The name contains a control character (C0, DEL or C1).
    Control,
    /// The name contains an invisible or bidi formatting character.
    Invisible,
    /// The name contains `:` (a Windows drive or stream name).
    Colon,
    /// The name is a Windows device name such as `CON` or `nul.txt`.
    Device,
    /// The name ends in a dot or a space.
    TrailingDotOrSpace,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "name is empty",
            NameProblem::DotOrDotDot => "name is . or ..",
            NameProblem::NotUtf8 => "name is not valid UTF-8",
            NameProblem::TooLong => "name is longer than 255 bytes",
            NameProblem::Separator => "name contains a path separator",
            NameProblem::Nul => "name contains a NUL byte",
            NameProblem::Hidden => "name starts with a dot",
            NameProblem::Control => "name contains a control character",
            NameProblem::Invisible => "name contains an invisible or bidi formatting character",
            NameProblem::Colon => "name contains a colon",
            NameProblem::Device => "name is a Windows device name",
            NameProblem::TrailingDotOrSpace => "name ends in a dot or a space",
        })
    }
}

/// Checks that `raw` is a safe name for a new file: one plain path component that means the
/// same on every common file system and prints harmlessly. Returns it as `&str`.
///
/// Odd but harmless names such as `-rf`, `$(x)`, names with spaces or in Hangul are accepted
/// and must be stored under exactly those bytes.
///
/// # Errors
///
/// The first [`NameProblem`] found.
///
/// # Example
///
/// ```
/// use fup::store::{check_name, NameProblem};
///
/// assert_eq!(check_name("사진 1.jpg".as_bytes()), Ok("사진 1.jpg"));
/// assert_eq!(check_name(b"../etc/passwd"), Err(NameProblem::Separator));
/// ```
pub fn check_name(raw: &[u8]) -> Result<&str, NameProblem> {
    if raw.is_empty() {
        return Err(NameProblem::Empty);
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong);
    }
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let name = std::str::from_utf8(raw).map_err(|_| NameProblem::NotUtf8)?;
    if name == "." || name == ".." {
        return Err(NameProblem::DotOrDotDot);
    }
    if name.contains(['/', '\\']) {
        return Err(NameProblem::Separator);
    }
    if name.starts_with('.') {
        return Err(NameProblem::Hidden);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::Control);
    }
    if name.chars().any(is_invisible) {
        return Err(NameProblem::Invisible);
    }
    if name.contains(':') {
        return Err(NameProblem::Colon);
    }
    if name.ends_with(['.', ' ']) {
        return Err(NameProblem::TrailingDotOrSpace);
    }
    if is_device_name(name) {
        return Err(NameProblem::Device);
    }
    Ok(name)
}

/// Windows reserves these names with any extension (`nul.txt`), in any case, and ignores
/// trailing spaces before the extension (`CON .txt`).
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let number = upper
                .strip_prefix("COM")
                .or_else(|| upper.strip_prefix("LPT"));
            matches!(
                number,
                Some("0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³")
            )
        }
    }
}

/// The `n`-th name tried for `name`: the name itself, then `stem (n).ext`, with the stem cut
/// short if needed so the result still fits in [`MAX_NAME_LEN`] bytes.
///
/// ```
/// use fup::store::candidate_name;
///
/// assert_eq!(candidate_name("a.txt", 0), "a.txt");
/// assert_eq!(candidate_name("a.txt", 2), "a (2).txt");
/// assert_eq!(candidate_name("README", 1), "README (1)");
/// ```
pub fn candidate_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let number = format!(" ({n})");
    let (stem, ext) = match name.rfind('.') {
        // Keep the extension only if a useful part of the stem still fits beside it.
        Some(dot) if dot > 0 && name.len() - dot + number.len() < MAX_NAME_LEN / 2 => {
            name.split_at(dot)
        }
        _ => (name, ""),
    };
    let mut keep = MAX_NAME_LEN
        .saturating_sub(number.len() + ext.len())
        .min(stem.len());
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{number}{ext}", &stem[..keep])
}

/// The upload directory, and the temp files of the uploads in flight there.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Store {
    /// Opens `dir`, creating it (and its parents) if missing.
    ///
    /// # Errors
    ///
    /// If the directory cannot be created, or the path exists and is not a directory.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        if !fs::metadata(dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
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
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
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

    /// Removes the temp files that a killed server left behind. A live upload holds an
    /// exclusive lock on its temp file, so files of another server still running on the same
    /// directory are left alone. Returns how many were removed.
    ///
    /// # Errors
    ///
    /// If the directory cannot be listed.
    pub fn sweep_stale(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
                continue;
            }
            // Only plain files: never follow a link, never open (and block on) a FIFO.
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let opened = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(entry.path());
            if opened.is_ok_and(|file| file.try_lock().is_ok())
                && fs::remove_file(entry.path()).is_ok()
            {
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
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            // Published files get the usual mode of a new file (umask applies), not 0600.
            .permissions(fs::Permissions::from_mode(0o666))
            .tempfile_in(&self.dir)?;
        // The lock tells `sweep_stale` of any server that this file is alive.
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
        let Incoming { temp, _registered } = self;
        temp.as_file().sync_all()?;
        let dir = temp
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut temp = temp;
        for n in 0..MAX_RENAMES {
            let path = dir.join(candidate_name(name, n));
            match temp.persist_noclobber(&path) {
                Ok(_) => {
                    // Make the new directory entry itself durable.
                    File::open(&dir)?.sync_all()?;
                    return Ok(path);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn accepts_odd_but_harmless_names() {
        let long = "가".repeat(85); // 255 bytes
        for name in [
            "a",
            "-rf",
            "$(x)",
            "a b c.txt",
            "사진 1.jpg",
            "*?<>|\"",
            "a..b",
            long.as_str(),
            "COM10",
            "console.log",
            "nul_not",
        ] {
            assert_eq!(check_name(name.as_bytes()), Ok(name), "{name:?}");
        }
    }

    #[test]
    fn refuses_dangerous_names() {
        use NameProblem::*;
        let cases: &[(&[u8], NameProblem)] = &[
            (b"", Empty),
            (b".", DotOrDotDot),
            (b"..", DotOrDotDot),
            (b"../x", Separator),
            (b"/etc/passwd", Separator),
            (b"a\\b", Separator),
            (b"a\0b", Nul),
            (b"\xff\xfe", NotUtf8),
            (&[b'a'; 256], TooLong),
            (b".bashrc", Hidden),
            (b".fup-x.part", Hidden),
            (b"a\nb", Control),
            (b"\x1b[2J", Control),
            (b"a\x7f", Control),
            ("a\u{9b}b".as_bytes(), Control),
            ("evil\u{202e}txt.exe".as_bytes(), Invisible),
            ("a\u{200b}".as_bytes(), Invisible),
            ("\u{feff}a".as_bytes(), Invisible),
            ("a\u{2028}b".as_bytes(), Invisible),
            (b"CON", Device),
            (b"nul.txt", Device),
            (b"Com1.tar.gz", Device),
            (b"lpt9", Device),
            (b"CON .txt", Device),
            (b"C:x", Colon),
            (b"a:b", Colon),
            (b"trailing.", TrailingDotOrSpace),
            (b"trailing ", TrailingDotOrSpace),
        ];
        for (raw, problem) in cases {
            assert_eq!(
                check_name(raw),
                Err(*problem),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    proptest::proptest! {
        /// Whatever is accepted is one plain, printable path component, and so is every name
        /// it may be renamed to.
        #[test]
        fn accepted_names_are_single_printable_components(name in "\\PC{0,90}|[a-zA-Z0-9. :\\\\/_-]{0,260}") {
            if let Ok(ok) = check_name(name.as_bytes()) {
                proptest::prop_assert_eq!(ok, name.as_str());
                let parts: Vec<_> = Path::new(ok).components().collect();
                proptest::prop_assert_eq!(parts, vec![std::path::Component::Normal(ok.as_ref())]);
                proptest::prop_assert!(!ok.chars().any(|c| c.is_control() || is_invisible(c)));
                proptest::prop_assert!(ok.len() <= MAX_NAME_LEN && !ok.starts_with('.'));
                for n in [1, 2, 99, MAX_RENAMES - 1] {
                    let renamed = candidate_name(ok, n);
                    proptest::prop_assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()), "{}", n);
                }
            }
        }

        #[test]
        fn any_bytes_are_checked_without_panicking(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = check_name(&raw);
        }
    }

    #[test]
    fn long_extensions_still_leave_room_for_the_number() {
        let name = format!("a.{}", "e".repeat(253));
        let renamed = candidate_name(&name, 10_000);
        assert!(renamed.len() <= MAX_NAME_LEN, "{}", renamed.len());
        assert!(
            renamed.starts_with("a.eee") && renamed.ends_with(" (10000)"),
            "{renamed}"
        );
        assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()));
    }

    #[test]
    fn candidate_names_fit() {
        assert_eq!(candidate_name("archive.tar.gz", 1), "archive.tar (1).gz");
        let long = format!("{}.txt", "가".repeat(83)); // 253 bytes
        let renamed = candidate_name(&long, 12);
        assert!(renamed.len() <= MAX_NAME_LEN, "{}", renamed.len());
        assert!(renamed.ends_with(" (12).txt"));
        assert_eq!(check_name(renamed.as_bytes()), Ok(renamed.as_str()));
    }

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

    fn umask() -> u32 {
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
        let fifo = std::ffi::CString::new(
            dir.path()
                .join(".fup-fifo.part")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
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
    fn dropped_incoming_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("new/sub")).unwrap();
        let mut incoming = store.incoming().unwrap();
        incoming.file().write_all(b"partial").unwrap();
        drop(incoming);
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
