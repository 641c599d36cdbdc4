//! The server's side of a batch: every entry checked, and the whole batch with it, before
//! anything is created. A batch with one bad entry is refused whole.

use std::collections::HashMap;
use std::fmt;

use super::{Entry, Kind, Limits};
use crate::server::names::{NameProblem, check_name};

/// What a batch holds, once it passed [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files.
    pub files: usize,
    /// Directories (the top ones included).
    pub dirs: usize,
    /// Bytes in all files.
    pub bytes: u64,
    /// The names at the top, where the batch lands, in order.
    pub tops: Vec<String>,
}

/// Why a batch is refused whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchProblem {
    /// It has no entries.
    #[error("an empty batch")]
    Empty,
    /// An entry's path has no components.
    #[error("entry {0} has an empty path")]
    EmptyPath(usize),
    /// A component is not a name the server takes (`..`, a separator: an absolute path…).
    #[error("\"{path}\": {problem}")]
    Name {
        /// The entry's path, escaped.
        path: String,
        /// What is wrong with one of its components.
        problem: NameProblem,
    },
    /// Deeper than the limit.
    #[error("\"{path}\" is more than {max} levels deep")]
    TooDeep {
        /// The entry's path, escaped.
        path: String,
        /// The limit.
        max: usize,
    },
    /// More entries than the limit.
    #[error("more than {0} entries")]
    TooMany(usize),
    /// More bytes than the limit.
    #[error("more than {0} bytes in all")]
    TooLarge(u64),
    /// The same path twice.
    #[error("\"{0}\" comes twice")]
    Duplicate(String),
    /// A path whose directory did not come before it.
    #[error("\"{0}\" comes before its directory")]
    NoParent(String),
    /// A path inside something that is a file.
    #[error("\"{0}\" is inside a file")]
    InsideFile(String),
    /// A path inside a top item that is not the latest: each tree comes whole, in one run.
    #[error("\"{0}\" comes after another top item")]
    OutOfRun(String),
}

/// Checks a whole batch against `limits` before anything is created: every component of
/// every path passes the name rule (so no `..`, no absolute path, no separator), no path comes
/// twice, each directory comes before what is in it, nothing is inside a file, and the depth,
/// count and bytes are within the limits.
///
/// # Errors
///
/// The first [`BatchProblem`] met; the batch is then refused whole.
pub fn check(entries: &[Entry], limits: &Limits) -> Result<Totals, BatchProblem> {
    if entries.is_empty() {
        return Err(BatchProblem::Empty);
    }
    // Before the map of paths grows to the count a peer claims.
    if entries.len() > limits.max_entries {
        return Err(BatchProblem::TooMany(limits.max_entries));
    }
    let mut seen: HashMap<&[String], Kind> = HashMap::with_capacity(entries.len());
    let mut top: Option<&str> = None;
    let mut totals = Totals::default();
    for (index, entry) in entries.iter().enumerate() {
        let path = crate::text::escape(&entry.display_path());
        if entry.path.is_empty() {
            return Err(BatchProblem::EmptyPath(index));
        }
        for component in &entry.path {
            check_name(component.as_bytes()).map_err(|problem| BatchProblem::Name {
                path: path.clone(),
                problem,
            })?;
        }
        if entry.depth() > limits.max_depth {
            return Err(BatchProblem::TooDeep {
                path,
                max: limits.max_depth,
            });
        }
        let (parent, _) = entry.path.split_at(entry.path.len() - 1);
        if parent.is_empty() {
            top = Some(&entry.path[0]);
        } else if top != Some(entry.path[0].as_str()) && seen.contains_key(&entry.path[..1]) {
            return Err(BatchProblem::OutOfRun(path));
        }
        if !parent.is_empty() {
            match seen.get(parent) {
                Some(Kind::Dir) => {}
                Some(Kind::File { .. }) => return Err(BatchProblem::InsideFile(path)),
                None => return Err(BatchProblem::NoParent(path)),
            }
        }
        if seen.insert(&entry.path, entry.kind).is_some() {
            return Err(BatchProblem::Duplicate(path));
        }
        match entry.kind {
            Kind::Dir => totals.dirs += 1,
            Kind::File { size, .. } => {
                totals.files += 1;
                totals.bytes = totals
                    .bytes
                    .checked_add(size)
                    .filter(|&total| total <= limits.max_total)
                    .ok_or(BatchProblem::TooLarge(limits.max_total))?;
            }
        }
        if parent.is_empty() {
            totals.tops.push(entry.path[0].clone());
        }
    }
    Ok(totals)
}

impl fmt::Display for Totals {
    /// `3 files, 2 folders, 1.2 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {}, {}",
            plural(self.files, "file", "files"),
            plural(self.dirs, "folder", "folders"),
            crate::text::bytes(self.bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind: Kind::Dir,
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind: Kind::File {
                size,
                executable: false,
            },
        }
    }

    #[test]
    fn a_good_tree_adds_up() {
        let batch = [
            dir("photos"),
            dir("photos/2026"),
            file("photos/2026/a.jpg", 1000),
            dir("photos/empty"),
            file("notes.txt", 24),
        ];
        let totals = check(&batch, &Limits::DEFAULT).unwrap();
        assert_eq!(
            totals,
            Totals {
                files: 2,
                dirs: 3,
                bytes: 1024,
                tops: vec!["photos".into(), "notes.txt".into()],
            }
        );
        assert_eq!(totals.to_string(), "2 files, 3 folders, 1.0 KiB");
    }

    #[test]
    fn hostile_batches_are_refused_whole() {
        let limits = Limits {
            max_depth: 3,
            max_entries: 5,
            max_total: 100,
        };
        let absolute = Entry {
            path: vec![String::new(), "etc".into(), "passwd".into()],
            kind: Kind::File {
                size: 1,
                executable: false,
            },
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<Entry>, BatchProblem)> = vec![
            ("empty", vec![], BatchProblem::Empty),
            ("no path", vec![Entry { path: vec![], kind: Kind::Dir }], BatchProblem::EmptyPath(0)),
            ("dot dot", vec![dir("a"), file("a/../../x", 1)], BatchProblem::Name { path: "a/../../x".into(), problem: NameProblem::DotOrDotDot }),
            ("absolute", vec![absolute], BatchProblem::Name { path: "/etc/passwd".into(), problem: NameProblem::Empty }),
            ("a separator inside", vec![file("a\\b", 1)], BatchProblem::Name { path: "a\\\\b".into(), problem: NameProblem::Separator }),
            ("hidden", vec![dir("a"), file("a/.ssh", 1)], BatchProblem::Name { path: "a/.ssh".into(), problem: NameProblem::Hidden }),
            ("file and directory", vec![file("a", 1), file("a/b", 1)], BatchProblem::InsideFile("a/b".into())),
            ("directory then file", vec![dir("a"), file("a", 1)], BatchProblem::Duplicate("a".into())),
            ("duplicate", vec![dir("a"), file("a/b", 1), file("a/b", 1)], BatchProblem::Duplicate("a/b".into())),
            ("no parent", vec![file("a/b", 1)], BatchProblem::NoParent("a/b".into())),
            ("out of its run", vec![dir("a"), dir("b"), file("a/x", 1)], BatchProblem::OutOfRun("a/x".into())),
            ("too deep", vec![dir("a"), dir("a/b"), dir("a/b/c"), dir("a/b/c/d")], BatchProblem::TooDeep { path: "a/b/c/d".into(), max: 3 }),
            ("too many", (0..6).map(|i| file(&format!("f{i}"), 1)).collect(), BatchProblem::TooMany(5)),
            ("too large", vec![file("a", 60), file("b", 41)], BatchProblem::TooLarge(100)),
            ("a size that overflows", vec![file("a", u64::MAX), file("b", 1)], BatchProblem::TooLarge(100)),
        ];
        for (what, batch, problem) in cases {
            assert_eq!(check(&batch, &limits), Err(problem), "{what}");
        }
    }

    #[test]
    fn walked_trees_pass() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("src");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/c.rs"), b"fn main() {}").unwrap();
        let walked = super::super::walk(&[top], &Limits::DEFAULT).unwrap();
        let entries: Vec<Entry> = walked.found.into_iter().map(|f| f.entry).collect();
        let totals = check(&entries, &Limits::DEFAULT).unwrap();
        assert_eq!((totals.files, totals.dirs, totals.bytes), (1, 3, 12));
    }
}
