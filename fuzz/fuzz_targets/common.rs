//! What the targets that store files share: their upload directory, and the check after
//! each run that nothing was left behind but partials under the server's own directory.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

/// The upload directory, on tmpfs when there is one (accepted runs write files).
pub fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap())
}

/// Everything under `path`, relative.
fn entries(path: &Path, out: &mut Vec<String>, prefix: &str) {
    for entry in fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        out.push(name.clone());
        if entry.file_type().unwrap().is_dir() {
            entries(&entry.path(), out, &format!("{name}/"));
        }
    }
}

/// Checks that no temp file or tree is left in `path` (partials may stay), then empties it
/// for the next run.
pub fn check_and_clear(path: &Path) {
    let mut all = Vec::new();
    entries(path, &mut all, "");
    for name in &all {
        assert!(!name.starts_with(".fup-") || name.starts_with(".fup-partial"), "left behind: {name}");
    }
    for entry in fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        match entry.file_type().unwrap().is_dir() {
            true => fs::remove_dir_all(entry.path()).unwrap(),
            false => fs::remove_file(entry.path()).unwrap(),
        }
    }
}
