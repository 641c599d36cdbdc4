//! The batch rule: what a batch must be for the server to take it, every entry checked, and
//! the whole batch with it, before anything is created. A batch with one bad entry is
//! refused whole. The rule itself is [`Manifest::push`], entry by entry.

use std::fmt;

use super::manifest::Manifest;
use super::{Entry, Limits};
use crate::server::names::NameProblem;

/// How many of a batch's top items [`Totals`] names.
pub const SHOWN_TOPS: usize = 5;

/// What a batch holds, once it passed the checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files.
    pub files: usize,
    /// Directories (the top ones included).
    pub dirs: usize,
    /// Bytes in all files.
    pub bytes: u64,
    /// Items at the top, where the batch lands.
    pub tops: usize,
    /// The first [`SHOWN_TOPS`] of their names, in order.
    pub first_tops: Vec<String>,
}

/// Why a batch is refused whole. Paths in it came from the peer: they are cut and escaped
/// ([`text::from_peer`](crate::text::from_peer)).
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
    /// A path longer than the limit.
    #[error("\"{path}\" is longer than {max} bytes")]
    PathTooLong {
        /// The entry's path, escaped.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A path whose length, told before it, is past the limit: refused unread.
    #[error("a path of {len} bytes is longer than {max} bytes")]
    PathLength {
        /// The length it was said to have.
        len: u64,
        /// The limit.
        max: usize,
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
    /// The list of entries itself is larger than the limit.
    #[error("a list of entries over {0} bytes")]
    ManifestTooLarge(u64),
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
    Ok(Manifest::of(entries, limits)?.totals().clone())
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
    use crate::batch::Kind;

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind: Kind::Dir,
            modified: None,
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.split('/').map(str::to_string).collect(),
            kind: Kind::File {
                size,
                executable: false,
            },
            modified: None,
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
                tops: 2,
                first_tops: vec!["photos".into(), "notes.txt".into()],
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
            modified: None,
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<Entry>, BatchProblem)> = vec![
            ("empty", vec![], BatchProblem::Empty),
            ("no path", vec![Entry { path: vec![], kind: Kind::Dir, modified: None }], BatchProblem::EmptyPath(0)),
            ("dot dot", vec![dir("a"), file("a/../../x", 1)], BatchProblem::Name { path: "a/../../x".into(), problem: NameProblem::DotOrDotDot }),
            ("absolute", vec![absolute], BatchProblem::Name { path: "/etc/passwd".into(), problem: NameProblem::Empty }),
            ("long", vec![file(&"a".repeat(300), 1)], BatchProblem::Name { path: "a".repeat(200) + "…", problem: NameProblem::TooLong }),
            ("a separator inside", vec![file("a\\b", 1)], BatchProblem::Name { path: "a\\\\b".into(), problem: NameProblem::Separator }),
            ("hidden at the top", vec![file(".ssh", 1)], BatchProblem::Name { path: ".ssh".into(), problem: NameProblem::Hidden }),
            ("dot dot inside", vec![dir("a"), file("a/..", 1)], BatchProblem::Name { path: "a/..".into(), problem: NameProblem::DotOrDotDot }),
            ("file and directory", vec![file("a", 1), file("a/b", 1)], BatchProblem::InsideFile("a/b".into())),
            ("a directory twice inside", vec![dir("a"), dir("a/b"), dir("a/b")], BatchProblem::Duplicate("a/b".into())),
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
    fn hidden_names_inside_and_two_tops_of_one_name_pass() {
        let batch = [
            dir("a"),
            file("a/.gitignore", 1),
            dir("a/.git"),
            file("a/.git/HEAD", 1),
            file("a", 2),
            dir("b"),
            file("b/x", 1),
            dir("b"),
            file("b/x", 1),
        ];
        let totals = check(&batch, &Limits::DEFAULT).unwrap();
        assert_eq!((totals.files, totals.dirs, totals.tops), (5, 4, 4));
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
