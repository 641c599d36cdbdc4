//! A batch's manifest as the server keeps it: every entry checked by the batch rule as it is
//! read (so a bad manifest is refused at its first bad entry), and stored compactly: the
//! paths' bytes in a few large blocks, 24 bytes per entry and an index of 5 to 10 bytes per
//! entry besides. What a peer can make the server hold is about what it sent, and
//! [`Manifest::heap_bytes`] and [`Manifest::growth_for`] say how much exactly, for a memory
//! budget to be asked before anything is allocated.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::check::{BatchProblem, SHOWN_TOPS, Totals};
use super::frame::{EntryCodec, MAX_MANIFEST, MAX_PATH, RawEntry};
use super::{Entry, Kind, Limits, Mtime};
use crate::server::names::{check_name, check_name_in_folder};
use crate::text;

/// What an index key's scope is for a top item's own name (inner paths are scoped by the
/// entry index of their top item, so that two top items of one name keep apart).
const TOP: u32 = u32::MAX;

/// The first block of path bytes; each next one is twice the last, up to [`MAX_BLOCK`].
const FIRST_BLOCK: usize = 4096;
/// The largest block of path bytes.
const MAX_BLOCK: usize = 4 * 1024 * 1024;
/// Bytes of one entry's record.
const REC: u64 = std::mem::size_of::<Rec>() as u64;

/// One entry: where its path is, how deep, what it is.
#[derive(Clone, Copy, Debug)]
struct Rec {
    /// Offset of its path among all blocks' bytes (block `b` starts at `bases[b]`).
    at: u32,
    /// Its path's length in bytes (at most [`MAX_PATH`]).
    len: u16,
    /// Its components (at most the limit's depth, itself at most 255).
    depth: u8,
    /// 0 directory, 1 file, 2 executable file.
    kind: u8,
    /// A file's size.
    size: u64,
    /// When it was last changed (`i64::MIN`: not known).
    mtime: i64,
}

/// An entry of a [`Manifest`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'m> {
    /// Its path, components joined by `/` (each one passed the name rule).
    pub path: &'m str,
    /// What it is.
    pub kind: Kind,
    /// When it was last changed, if the client knew.
    pub modified: Option<Mtime>,
    depth: usize,
}

impl<'m> EntryRef<'m> {
    /// How deep it is: 1 for an entry at the top.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Its first component: the top item it belongs to.
    pub fn top(&self) -> &'m str {
        self.path.split_once('/').map_or(self.path, |(top, _)| top)
    }

    /// Its path inside its top item (`a/b` for `top/a/b`); `None` for a top item.
    pub fn inside(&self) -> Option<&'m str> {
        self.path.split_once('/').map(|(_, inside)| inside)
    }

    /// Its components, from the top.
    pub fn components(&self) -> std::str::Split<'m, char> {
        self.path.split('/')
    }

    /// A file's size, 0 for a directory.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File { size, .. } => size,
            Kind::Dir => 0,
        }
    }
}

/// The entries of a batch, checked one by one as they arrive, and what they add up to.
#[derive(Debug)]
pub struct Manifest {
    limits: Limits,
    blocks: Vec<Vec<u8>>,
    bases: Vec<u32>,
    recs: Vec<Rec>,
    /// Every entry, by its scope (see [`TOP`]) and path: for duplicates, parents and runs.
    index: HashTable<u32>,
    /// The entries at the top, in order: where each tree begins.
    tops: Vec<u32>,
    hasher: std::hash::RandomState,
    totals: Totals,
    /// Bytes the entries took on the wire.
    wire: u64,
}

impl Manifest {
    /// An empty manifest, to be checked against `limits`.
    pub fn new(limits: Limits) -> Manifest {
        Manifest {
            limits,
            blocks: Vec::new(),
            bases: Vec::new(),
            recs: Vec::new(),
            index: HashTable::new(),
            tops: Vec::new(),
            hasher: std::hash::RandomState::new(),
            totals: Totals::default(),
            wire: 0,
        }
    }

    /// The manifest of `entries` (a client's own batch), checked whole.
    ///
    /// # Errors
    ///
    /// The first entry that breaks the batch rule, or an empty batch.
    pub fn of(entries: &[Entry], limits: &Limits) -> Result<Manifest, BatchProblem> {
        let mut manifest = Manifest::new(*limits);
        // Each entry's bytes as they will go, for the same bound on the whole as the server's.
        let mut codec = EntryCodec::default();
        let mut wire = Vec::new();
        for entry in entries {
            let path = entry.display_path();
            wire.clear();
            if codec.encode(entry, &mut wire).is_err() {
                return Err(BatchProblem::PathTooLong {
                    path: text::from_peer(&path),
                    max: MAX_PATH,
                });
            }
            manifest.push(RawEntry {
                kind: entry.kind,
                modified: entry.modified,
                path: path.as_bytes(),
                wire: wire.len(),
            })?;
        }
        manifest.finish()?;
        Ok(manifest)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// What the entries so far add up to.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Entry `index`.
    pub fn get(&self, index: usize) -> Option<EntryRef<'_>> {
        let rec = self.recs.get(index)?;
        Some(self.entry(rec))
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + ExactSizeIterator {
        self.recs.iter().map(|rec| self.entry(rec))
    }

    fn entry(&self, rec: &Rec) -> EntryRef<'_> {
        EntryRef {
            path: self.path_of(rec),
            kind: match rec.kind {
                0 => Kind::Dir,
                kind => Kind::File {
                    size: rec.size,
                    executable: kind == 2,
                },
            },
            modified: Mtime::from_wire(rec.mtime),
            depth: usize::from(rec.depth),
        }
    }

    fn path_of(&self, rec: &Rec) -> &str {
        let bytes = path_in(&self.blocks, &self.bases, rec);
        // Only text that passed `str::from_utf8` (in `check_name`, component by component,
        // and `/`) is ever stored.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Bytes it holds on the heap now.
    pub fn heap_bytes(&self) -> u64 {
        let blocks: usize = self.blocks.iter().map(Vec::capacity).sum();
        let tops: usize = self.totals.first_tops.iter().map(String::capacity).sum();
        (blocks + tops + self.index.allocation_size()) as u64
            + self.recs.capacity() as u64 * REC
            + self.tops.capacity() as u64 * 4
            + self.bases.capacity() as u64 * 4
            + self.blocks.capacity() as u64 * std::mem::size_of::<Vec<u8>>() as u64
    }

    /// At most how many bytes more the next [`push`](Manifest::push) of a path of `len`
    /// bytes allocates, for a moment (a vector that grows holds its old and new buffers
    /// while it moves).
    pub fn growth_for(&self, len: usize) -> u64 {
        let mut more = 0u64;
        if self.needs_block(len) {
            more += self.next_block(len) as u64;
            more += 16 * std::mem::size_of::<Vec<u8>>() as u64 + 64;
        }
        if self.recs.len() == self.recs.capacity() {
            more += self.next_recs() as u64 * REC;
        }
        if self.index.len() == self.index.capacity() {
            // Twice the buckets: 4 bytes and a control byte each, and a group's worth more.
            more += 2 * self.index.allocation_size() as u64 + 256;
        }
        if self.tops.len() == self.tops.capacity() {
            more += (self.tops.capacity() * 2).max(64) as u64 * 4;
        }
        more
    }

    fn needs_block(&self, len: usize) -> bool {
        self.blocks
            .last()
            .is_none_or(|block| block.capacity() - block.len() < len)
    }

    fn next_block(&self, len: usize) -> usize {
        let last = self.blocks.last().map_or(0, Vec::capacity);
        (last * 2).clamp(FIRST_BLOCK, MAX_BLOCK).max(len)
    }

    fn next_recs(&self) -> usize {
        (self.recs.capacity() * 2)
            .max(64)
            .min(self.limits.max_entries)
            .max(self.recs.len() + 1)
    }

    /// Checks one more entry and adds it: every component passes the name rule (hidden names
    /// are fine inside a folder, not at the top); the path is at most [`MAX_PATH`] bytes and
    /// the limits' depth; it is new within its tree (two top items may share a name: the
    /// server keeps both); its directory came before it, and it belongs to the latest top
    /// item; the count, the bytes and the manifest's own size stay within the limits.
    ///
    /// # Errors
    ///
    /// What is wrong with it; nothing is added then.
    pub fn push(&mut self, entry: RawEntry<'_>) -> Result<(), BatchProblem> {
        let RawEntry {
            kind,
            modified,
            path,
            wire,
        } = entry;
        let index = self.recs.len();
        let shown = || text::from_peer(&String::from_utf8_lossy(path));
        if index >= self.limits.max_entries {
            return Err(BatchProblem::TooMany(self.limits.max_entries));
        }
        let wire = self.wire + wire as u64;
        if wire > MAX_MANIFEST {
            return Err(BatchProblem::ManifestTooLarge(MAX_MANIFEST));
        }
        if path.is_empty() {
            return Err(BatchProblem::EmptyPath(index));
        }
        if path.len() > MAX_PATH {
            return Err(BatchProblem::PathTooLong {
                path: shown(),
                max: MAX_PATH,
            });
        }
        let max_depth = self.limits.max_depth.min(usize::from(u8::MAX));
        let mut depth = 0;
        for component in path.split(|&b| b == b'/') {
            depth += 1;
            if depth > max_depth {
                return Err(BatchProblem::TooDeep {
                    path: shown(),
                    max: self.limits.max_depth,
                });
            }
            let checked = match depth {
                1 => check_name(component),
                _ => check_name_in_folder(component),
            };
            checked.map_err(|problem| BatchProblem::Name {
                path: shown(),
                problem,
            })?;
        }
        // Every component is UTF-8, and so are the separators.
        let path = std::str::from_utf8(path).map_err(|_| BatchProblem::Name {
            path: shown(),
            problem: crate::server::names::NameProblem::NotUtf8,
        })?;
        let shown = || text::from_peer(path);
        let scope = match path.split_once('/') {
            // A top item: two may share a name.
            None => TOP,
            Some((top, inside)) => {
                let current = self
                    .tops
                    .last()
                    .filter(|&&at| self.path_of(&self.recs[at as usize]) == top)
                    .copied();
                let Some(current) = current else {
                    return Err(match self.find(TOP, top) {
                        Some(_) => BatchProblem::OutOfRun(shown()),
                        None => BatchProblem::NoParent(shown()),
                    });
                };
                let parent = match inside.rsplit_once('/') {
                    None => Some(self.recs[current as usize].kind),
                    Some((dirs, _)) => self.find(current, dirs).map(|rec| rec.kind),
                };
                match parent {
                    Some(0) => {}
                    Some(_) => return Err(BatchProblem::InsideFile(shown())),
                    None => return Err(BatchProblem::NoParent(shown())),
                }
                if self.find(current, inside).is_some() {
                    return Err(BatchProblem::Duplicate(shown()));
                }
                current
            }
        };
        let (code, size) = match kind {
            Kind::Dir => (0, 0),
            Kind::File { size, executable } => (1 + u8::from(executable), size),
        };
        let bytes = match kind {
            Kind::Dir => self.totals.bytes,
            Kind::File { size, .. } => self
                .totals
                .bytes
                .checked_add(size)
                .filter(|&total| total <= self.limits.max_total)
                .ok_or(BatchProblem::TooLarge(self.limits.max_total))?,
        };
        // Checked: now it is added.
        self.wire = wire;
        self.totals.bytes = bytes;
        match kind {
            Kind::Dir => self.totals.dirs += 1,
            Kind::File { .. } => self.totals.files += 1,
        }
        if depth == 1 {
            if self.tops.len() == self.tops.capacity() {
                self.tops.reserve_exact(self.tops.capacity().max(32));
            }
            self.tops.push(index as u32);
            self.totals.tops += 1;
            if self.totals.first_tops.len() < SHOWN_TOPS {
                self.totals.first_tops.push(path.to_string());
            }
        }
        let at = self.store(path.as_bytes());
        if self.recs.len() == self.recs.capacity() {
            let more = self.next_recs() - self.recs.len();
            self.recs.reserve_exact(more);
        }
        self.recs.push(Rec {
            at,
            len: path.len() as u16,
            depth: depth as u8,
            kind: code,
            size,
            mtime: Mtime::to_wire(modified),
        });
        let key = key_path(path, scope);
        let hash = self.hasher.hash_one((scope, key.as_bytes()));
        let (recs, blocks, bases, tops, hasher) = (
            &self.recs,
            &self.blocks,
            &self.bases,
            &self.tops,
            &self.hasher,
        );
        let rehash = |&i: &u32| {
            let rec = &recs[i as usize];
            let scope = scope_of(tops, i, rec);
            let path = path_in(blocks, bases, rec);
            hasher.hash_one((scope, key_bytes(path, scope)))
        };
        self.index.insert_unique(hash, index as u32, rehash);
        Ok(())
    }

    /// After the last entry: a batch must have one.
    ///
    /// # Errors
    ///
    /// [`BatchProblem::Empty`].
    pub fn finish(&self) -> Result<(), BatchProblem> {
        match self.recs.is_empty() {
            true => Err(BatchProblem::Empty),
            false => Ok(()),
        }
    }

    /// The entry at `path` within `scope`: a top item's name ([`TOP`]), or a path inside the
    /// tree whose top item is entry `scope`.
    fn find(&self, scope: u32, path: &str) -> Option<&Rec> {
        // Hashed as bytes everywhere: the index is rebuilt from the blocks' bytes.
        let hash = self.hasher.hash_one((scope, path.as_bytes()));
        let at = self.index.find(hash, |&i| {
            let rec = &self.recs[i as usize];
            scope_of(&self.tops, i, rec) == scope
                && key_bytes(path_in(&self.blocks, &self.bases, rec), scope) == path.as_bytes()
        })?;
        self.recs.get(*at as usize)
    }

    /// Copies `path` into the blocks; returns its offset.
    fn store(&mut self, path: &[u8]) -> u32 {
        if self.needs_block(path.len()) {
            let base = match (self.bases.last(), self.blocks.last()) {
                (Some(&base), Some(block)) => base + block.capacity() as u32,
                _ => 0,
            };
            let block = Vec::with_capacity(self.next_block(path.len()));
            self.bases.push(base);
            self.blocks.push(block);
        }
        let (Some(block), Some(&base)) = (self.blocks.last_mut(), self.bases.last()) else {
            unreachable!("a block was just made when there was none");
        };
        let at = base + block.len() as u32;
        block.extend_from_slice(path);
        at
    }
}

/// The scope entry `index` is kept under in the index: [`TOP`] for a top item, else its top
/// item's index (the last top item before it).
fn scope_of(tops: &[u32], index: u32, rec: &Rec) -> u32 {
    match rec.depth {
        1 => TOP,
        _ => tops[tops.partition_point(|&top| top < index) - 1],
    }
}

/// What of `path` is keyed within `scope`: all of a top item's name, the part inside for the
/// rest.
fn key_path(path: &str, scope: u32) -> &str {
    match scope {
        TOP => path,
        _ => path.split_once('/').map_or(path, |(_, inside)| inside),
    }
}

fn key_bytes(path: &[u8], scope: u32) -> &[u8] {
    match scope {
        TOP => path,
        _ => path
            .iter()
            .position(|&b| b == b'/')
            .map_or(path, |at| &path[at + 1..]),
    }
}

fn path_in<'b>(blocks: &'b [Vec<u8>], bases: &[u32], rec: &Rec) -> &'b [u8] {
    let block = bases.partition_point(|&base| base <= rec.at) - 1;
    let start = (rec.at - bases[block]) as usize;
    &blocks[block][start..start + usize::from(rec.len)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::names::NameProblem;

    fn push(m: &mut Manifest, path: &[u8], kind: Kind) -> Result<(), BatchProblem> {
        m.push(RawEntry {
            kind,
            modified: None,
            path,
            wire: TEST_HEAD + path.len(),
        })
    }

    /// What an entry's head is taken to cost in these tests.
    const TEST_HEAD: usize = 4;

    fn file(size: u64) -> Kind {
        Kind::File {
            size,
            executable: false,
        }
    }

    #[test]
    fn entries_read_back_as_pushed() {
        let mut m = Manifest::new(Limits::DEFAULT);
        push(&mut m, b"photos", Kind::Dir).unwrap();
        push(&mut m, b"photos/2026", Kind::Dir).unwrap();
        let exe = Kind::File {
            size: 7,
            executable: true,
        };
        push(&mut m, "photos/2026/사진.jpg".as_bytes(), exe).unwrap();
        push(&mut m, b"notes.txt", file(5)).unwrap();
        m.finish().unwrap();
        assert_eq!(m.len(), 4);
        let third = m.get(2).unwrap();
        assert_eq!(third.path, "photos/2026/사진.jpg");
        assert_eq!((third.kind, third.depth()), (exe, 3));
        assert_eq!(
            (third.top(), third.inside()),
            ("photos", Some("2026/사진.jpg"))
        );
        assert_eq!(m.get(3).unwrap().inside(), None);
        let totals = m.totals();
        assert_eq!(
            (totals.files, totals.dirs, totals.bytes, totals.tops),
            (2, 2, 12, 2)
        );
        assert_eq!(totals.first_tops, ["photos", "notes.txt"]);
        assert!(m.get(4).is_none());
    }

    #[test]
    fn many_entries_cross_blocks_and_are_found_exactly() {
        let mut m = Manifest::new(Limits::DEFAULT);
        push(&mut m, b"d", Kind::Dir).unwrap();
        let name = |i: usize| format!("d/{i:0>250}");
        for i in 0..20_000 {
            push(&mut m, name(i).as_bytes(), file(1)).unwrap();
        }
        assert!(m.blocks.len() > 3, "{} blocks", m.blocks.len());
        for i in (0..20_000).step_by(997) {
            assert_eq!(m.get(i + 1).unwrap().path, name(i));
        }
        let err = push(&mut m, name(12_345).as_bytes(), file(1)).unwrap_err();
        assert_eq!(err, BatchProblem::Duplicate(text::from_peer(&name(12_345))));
        // About what was sent: 252 bytes of path and 16 of record per entry, and the index.
        let wire = 20_000 * (TEST_HEAD as u64 + 252);
        assert!(m.heap_bytes() < wire * 2, "{} for {wire}", m.heap_bytes());
    }

    #[test]
    fn growth_is_known_before_it_happens() {
        let mut m = Manifest::new(Limits::DEFAULT);
        push(&mut m, b"d", Kind::Dir).unwrap();
        for i in 0..50_000 {
            let path = format!("d/{i}");
            let before = m.heap_bytes();
            let bound = before + m.growth_for(path.len());
            push(&mut m, path.as_bytes(), file(0)).unwrap();
            assert!(
                m.heap_bytes() <= bound,
                "entry {i}: {} > {bound}",
                m.heap_bytes()
            );
        }
    }

    #[test]
    fn the_first_bad_entry_is_refused_and_nothing_of_it_kept() {
        let limits = Limits {
            max_depth: 3,
            max_entries: 5,
            max_total: 100,
        };
        let mut m = Manifest::new(limits);
        push(&mut m, b"a", Kind::Dir).unwrap();
        let slashes = vec![b'/'; MAX_PATH];
        let long = vec![b'a'; MAX_PATH + 1];
        let cases: Vec<(&[u8], BatchProblem)> = vec![
            (
                &slashes,
                BatchProblem::Name {
                    path: "/".repeat(200) + "…",
                    problem: NameProblem::Empty,
                },
            ),
            (
                &long,
                BatchProblem::PathTooLong {
                    path: "a".repeat(200) + "…",
                    max: MAX_PATH,
                },
            ),
            (
                b"a/b/c/d",
                BatchProblem::TooDeep {
                    path: "a/b/c/d".into(),
                    max: 3,
                },
            ),
            (
                b"a/\xff",
                BatchProblem::Name {
                    path: "a/\u{fffd}".into(),
                    problem: NameProblem::NotUtf8,
                },
            ),
            (b"", BatchProblem::EmptyPath(1)),
            (b"b/c", BatchProblem::NoParent("b/c".into())),
        ];
        for (path, problem) in cases {
            assert_eq!(push(&mut m, path, Kind::Dir), Err(problem));
        }
        assert_eq!(m.len(), 1);
        assert_eq!(m.totals().dirs, 1);
    }

    #[test]
    fn a_manifest_larger_than_the_limit_is_refused() {
        let limits = Limits {
            max_entries: usize::MAX,
            ..Limits::DEFAULT
        };
        let mut m = Manifest::new(limits);
        let per = (TEST_HEAD + 250) as u64;
        let fit = MAX_MANIFEST / per;
        for i in 0..fit {
            push(&mut m, format!("{i:0>250}").as_bytes(), file(0)).unwrap();
        }
        let err = push(&mut m, format!("{:x>250}", 1).as_bytes(), file(0));
        assert_eq!(err, Err(BatchProblem::ManifestTooLarge(MAX_MANIFEST)));
    }
}
