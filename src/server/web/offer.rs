//! What a page offers (its files, read from JSON and checked one by one), and the offers the
//! operator accepted, kept between the page's requests: bounded in all and per address,
//! dropped when idle, each file's state from waiting to stored.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::batch::Totals;
use crate::server::budget::address_key;
use crate::server::names::{check_name, check_name_in_folder};
use crate::server::partial::Key;
use crate::server::policy::Reason;
use crate::server::store::Incoming;

/// Most bytes of an offer's JSON.
pub const MAX_OFFER_BODY: usize = 1024 * 1024;
/// Most files one offer names.
pub const MAX_OFFER_FILES: usize = 10_000;
/// Most bytes of one path in an offer (a file in folders picked whole).
pub const MAX_PATH: usize = 4096;
/// Most components of one path.
pub const MAX_DEPTH: usize = 64;
/// Accepted offers kept at once, in all.
pub const MAX_OFFERS: usize = 64;
/// Accepted offers kept at once for one address (an IPv6 /64).
pub const MAX_OFFERS_PER_ADDRESS: usize = 8;
/// How long an accepted offer waits for its next file before it is dropped (with what its
/// folders received; cut files stay as partials).
pub const OFFER_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long an offer whose every file is stored (or refused) is still known, for a page
/// whose last answer was lost to ask what became of its files. At most [`MAX_OFFERS`] of
/// them are kept (the oldest go first); they count against no limit.
pub const FINISHED_KEEP: Duration = Duration::from_secs(10 * 60);

/// Why an offer's JSON was refused whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not JSON, or not the shape the page sends.
    #[error("not an offer: {0}")]
    Shape(&'static str),
    /// More files than [`MAX_OFFER_FILES`].
    #[error("more than {MAX_OFFER_FILES} files in one selection")]
    TooManyFiles,
    /// No files.
    #[error("no files offered")]
    Empty,
}

/// One file a page offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedFile {
    /// Its path in the selection: a name, or `folder/…/name` for a folder picked whole.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in milliseconds since the Unix epoch, if the browser said.
    pub modified: Option<i64>,
    /// Why it is refused before anyone is asked (its name), if it is.
    pub refused: Option<String>,
}

impl OfferedFile {
    /// Its top item: the name itself, or the folder it is in.
    pub fn top(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }

    /// Whether it is inside a folder.
    pub fn in_folder(&self) -> bool {
        self.path.contains('/')
    }

    /// The key of its partial, for the page whose key is `page`.
    pub fn key(&self, page: &[u8; 16]) -> Key {
        Key::of_browser_file(page, &self.path, self.size, self.modified)
    }

    /// Its name (the last component).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// A page's offer: its random key and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    /// The page's random key, kept in the browser: it names the page's partials.
    pub key: [u8; 16],
    /// The files, in the page's order; each checked.
    pub files: Vec<OfferedFile>,
}

impl Offered {
    /// Reads `{"key": HEX32, "files": [{"name", "size", "modified"?}, …]}` and checks every
    /// file's path as it comes: a name refused, a path too long or too deep, the same path
    /// twice, a file where another is a folder: that file is refused, the rest go on.
    ///
    /// # Errors
    ///
    /// If the JSON is not an offer, names no file or too many.
    pub fn parse(body: &[u8]) -> Result<Offered, OfferError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|_| OfferError::Shape("not JSON"))?;
        let key = value
            .get("key")
            .and_then(Value::as_str)
            .and_then(crate::text::unhex::<16>)
            .ok_or(OfferError::Shape("no key of 32 hex digits"))?;
        let list = value
            .get("files")
            .and_then(Value::as_array)
            .ok_or(OfferError::Shape("no list of files"))?;
        if list.len() > MAX_OFFER_FILES {
            return Err(OfferError::TooManyFiles);
        }
        if list.is_empty() {
            return Err(OfferError::Empty);
        }
        let mut seen = Paths::default();
        let mut files = Vec::with_capacity(list.len());
        for item in list {
            let path = item
                .get("name")
                .and_then(Value::as_str)
                .ok_or(OfferError::Shape("a file without a name"))?;
            let size = item
                .get("size")
                .and_then(Value::as_u64)
                .ok_or(OfferError::Shape("a file without a size"))?;
            let modified = item.get("modified").and_then(Value::as_i64);
            let refused = check_path(path).err().or_else(|| seen.add(path).err());
            files.push(OfferedFile {
                path: path.to_string(),
                size,
                modified,
                refused,
            });
        }
        Ok(Offered { key, files })
    }

    /// What the files not refused hold, as a batch's totals (folders counted from paths).
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let mut dirs = HashSet::new();
        let mut tops = HashSet::new();
        for file in self.files.iter().filter(|file| file.refused.is_none()) {
            totals.files += 1;
            totals.bytes = totals.bytes.saturating_add(file.size);
            let mut at = 0;
            while let Some(slash) = file.path[at..].find('/') {
                dirs.insert(&file.path[..at + slash]);
                at += slash + 1;
            }
            // Two top files of one name are two items (both are kept).
            if tops.insert(file.top()) || !file.in_folder() {
                totals.tops += 1;
                if totals.first_tops.len() < crate::batch::check::SHOWN_TOPS {
                    totals.first_tops.push(file.top().to_string());
                }
            }
        }
        totals.dirs = dirs.len();
        totals
    }
}

/// Checks one path of an offer: a name, or `folder/…/name`, each component by the server's
/// name rule (the top one by the rule of the upload directory's top, where hidden names are
/// refused), within [`MAX_PATH`] bytes and [`MAX_DEPTH`] components.
///
/// # Errors
///
/// Why it is refused, for the page and the log.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH {
        return Err(format!("path longer than {MAX_PATH} bytes"));
    }
    let mut parts = path.split('/');
    let top = parts.next().unwrap_or_default();
    check_name(top.as_bytes()).map_err(|problem| problem.to_string())?;
    for (depth, part) in parts.enumerate() {
        if depth + 2 > MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} folders deep"));
        }
        check_name_in_folder(part.as_bytes()).map_err(|problem| problem.to_string())?;
    }
    Ok(())
}

/// The paths inside folders an offer named so far, and their folders: a path twice, or a
/// file where a folder is, is refused.
#[derive(Debug, Default)]
struct Paths {
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl Paths {
    fn add(&mut self, path: &str) -> Result<(), String> {
        // Top files of one name are both kept ("a (1).txt"); only folders' insides clash.
        if !path.contains('/') {
            return match self.dirs.contains(path) {
                true => Err("a folder of this name is in the selection".into()),
                false => Ok(()),
            };
        }
        if self.files.contains(path) || self.dirs.contains(path) {
            return Err("the same path twice in the selection".into());
        }
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let dir = &path[..at + slash];
            if self.files.contains(dir) {
                return Err(format!("\"{}\" is a file", crate::text::escape(dir)));
            }
            at += slash + 1;
        }
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            self.dirs.insert(path[..at + slash].to_string());
            at += slash + 1;
        }
        self.files.insert(path.to_string());
        Ok(())
    }
}

/// Where a file received whole waits for the rest of its folder.
#[derive(Debug)]
pub enum Held {
    /// In its partial (the server keeps partials): a later page can still use it.
    Partial(Key),
    /// In a temp file of the upload directory, removed if the offer is dropped.
    Temp(Incoming),
}

/// One offered file's state.
#[derive(Debug)]
pub enum ItemState {
    /// Refused (by its name, a policy, or the operator): never received.
    Refused,
    /// Accepted, waiting for its bytes.
    Waiting,
    /// Being received on a connection.
    Receiving,
    /// Received whole, waiting for the rest of its folder.
    Received(Held),
    /// Stored (alone, or with its folder), under this name.
    Stored(String),
}

/// An offer the operator (or a rule) accepted: what the page may now send.
#[derive(Debug)]
pub struct Offer {
    /// The address it came from (an IPv6 /64): only it may send the files.
    pub owner: IpAddr,
    /// The page's key.
    pub page: [u8; 16],
    /// The files, in the page's order.
    pub files: Vec<OfferedFile>,
    /// Each one's state.
    pub states: Vec<ItemState>,
    /// Why it was accepted without asking, if it was.
    pub reason: Option<Reason>,
    /// When a file of each folder started, for the folder's log line.
    pub folder_started: HashMap<String, Instant>,
    /// Its last request.
    pub touched: Instant,
    /// When its last file was stored (or refused), if that is done.
    pub finished: Option<Instant>,
}

impl Offer {
    /// Whether it is idle past [`OFFER_IDLE`] with nothing being received, or finished
    /// past [`FINISHED_KEEP`].
    fn expired(&self, now: Instant) -> bool {
        if let Some(finished) = self.finished {
            return now.duration_since(finished) > FINISHED_KEEP;
        }
        now.duration_since(self.touched) > OFFER_IDLE
            && !self
                .states
                .iter()
                .any(|state| matches!(state, ItemState::Receiving))
    }

    /// Whether every file is stored or refused.
    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|state| matches!(state, ItemState::Refused | ItemState::Stored(_)))
    }

    /// The indexes of the files of folder `top` that were accepted.
    pub fn folder_files(&self, top: &str) -> Vec<usize> {
        (0..self.files.len())
            .filter(|&i| {
                self.files[i].in_folder()
                    && self.files[i].top() == top
                    && !matches!(self.states[i], ItemState::Refused)
            })
            .collect()
    }
}

/// A shared, locked offer.
pub type Shared = Arc<Mutex<Offer>>;

/// The accepted offers, by token.
#[derive(Debug, Default)]
pub struct Offers {
    map: Mutex<HashMap<[u8; 16], Shared>>,
}

/// Locks `mutex`, whatever a panicking holder left (each change is one step).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Offers {
    /// Drops what expired; says whether one more open offer from `owner` (an address key)
    /// fits in `map`.
    fn make_room(map: &mut HashMap<[u8; 16], Shared>, owner: IpAddr) -> Result<(), Reason> {
        let now = Instant::now();
        map.retain(|_, offer| !lock(offer).expired(now));
        // Finished ones: at most MAX_OFFERS, the oldest go first.
        let mut finished: Vec<(Instant, [u8; 16])> = map
            .iter()
            .filter_map(|(token, offer)| lock(offer).finished.map(|at| (at, *token)))
            .collect();
        if finished.len() > MAX_OFFERS {
            finished.sort();
            for (_, token) in &finished[..finished.len() - MAX_OFFERS] {
                map.remove(token);
            }
        }
        let open: Vec<IpAddr> = map
            .values()
            .filter_map(|offer| {
                let offer = lock(offer);
                offer.finished.is_none().then_some(offer.owner)
            })
            .collect();
        if open.len() >= MAX_OFFERS {
            return Err(Reason::BrowsersBusy(MAX_OFFERS));
        }
        if open.iter().filter(|&&o| o == owner).count() >= MAX_OFFERS_PER_ADDRESS {
            return Err(Reason::BrowsersBusy(MAX_OFFERS_PER_ADDRESS));
        }
        Ok(())
    }

    /// Drops the offers idle too long; says whether one more from `peer` would fit.
    ///
    /// # Errors
    ///
    /// The reason it would not.
    pub fn room_for(&self, peer: IpAddr) -> Result<(), Reason> {
        Offers::make_room(&mut lock(&self.map), address_key(peer))
    }

    /// Keeps `offer` under a new random token, if there is room; returns the token.
    ///
    /// # Errors
    ///
    /// The reason there is no room.
    pub fn insert(&self, offer: Offer) -> Result<[u8; 16], Reason> {
        let mut map = lock(&self.map);
        Offers::make_room(&mut map, offer.owner)?;
        let mut token = [0; 16];
        // The system's random numbers: std's own hash maps need them too.
        getrandom::fill(&mut token).expect("the system's random numbers are unavailable");
        map.insert(token, Arc::new(Mutex::new(offer)));
        Ok(token)
    }

    /// The offer of `token`, if it is kept.
    pub fn get(&self, token: &[u8; 16]) -> Option<Shared> {
        lock(&self.map).get(token).cloned()
    }

    /// How many are kept, open or finished.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(files: &str) -> Result<Offered, OfferError> {
        Offered::parse(
            format!(r#"{{"key":"00112233445566778899aabbccddeeff","files":[{files}]}}"#).as_bytes(),
        )
    }

    #[test]
    fn each_file_is_checked_on_its_own() {
        let offered = offer(
            r#"{"name":"a.txt","size":3,"modified":1700000000000},
               {"name":"../x","size":1},
               {"name":".env","size":1},
               {"name":"photos/.hidden","size":2},
               {"name":"photos/a/b.jpg","size":5},
               {"name":"photos/a","size":1},
               {"name":"photos/a/b.jpg","size":5},
               {"name":"a.txt","size":4},
               {"name":"사진.jpg","size":0}"#,
        )
        .unwrap();
        let refused: Vec<bool> = offered.files.iter().map(|f| f.refused.is_some()).collect();
        assert_eq!(
            refused,
            [false, true, true, false, false, true, true, false, false]
        );
        assert_eq!(offered.files[0].modified, Some(1_700_000_000_000));
        let totals = offered.totals();
        assert_eq!(totals.files, 5);
        assert_eq!(totals.bytes, 3 + 2 + 5 + 4);
        assert_eq!(totals.dirs, 2);
        assert_eq!(totals.tops, 4);
        assert_eq!(totals.first_tops, ["a.txt", "photos", "a.txt", "사진.jpg"]);
    }

    #[test]
    fn shapes_and_limits() {
        assert_eq!(offer(""), Err(OfferError::Empty));
        assert!(matches!(
            Offered::parse(b"{\"files\":[]}"),
            Err(OfferError::Shape(_))
        ));
        assert!(matches!(Offered::parse(b"\xff"), Err(OfferError::Shape(_))));
        assert!(matches!(
            offer(r#"{"name":"a","size":-1}"#),
            Err(OfferError::Shape(_))
        ));
        let many = vec![r#"{"name":"a","size":1}"#; MAX_OFFER_FILES + 1].join(",");
        assert_eq!(offer(&many), Err(OfferError::TooManyFiles));
        let deep = format!("d/{}f", "d/".repeat(MAX_DEPTH));
        assert!(check_path(&deep).is_err());
        assert!(check_path(&"x".repeat(MAX_PATH + 1)).is_err());
        assert!(check_path("d/e/f").is_ok());
        assert!(check_path("d//f").is_err());
        assert!(check_path("d/../f").is_err());
    }

    #[test]
    fn offers_are_bounded_per_address_and_in_all() {
        let offers = Offers::default();
        let make = |ip: &str| Offer {
            owner: address_key(ip.parse().unwrap()),
            page: [0; 16],
            files: Vec::new(),
            states: Vec::new(),
            reason: None,
            folder_started: HashMap::new(),
            touched: Instant::now(),
            finished: None,
        };
        for _ in 0..MAX_OFFERS_PER_ADDRESS {
            offers.insert(make("10.0.0.1")).unwrap();
        }
        assert_eq!(
            offers.insert(make("10.0.0.1")),
            Err(Reason::BrowsersBusy(MAX_OFFERS_PER_ADDRESS))
        );
        for i in 0..MAX_OFFERS - MAX_OFFERS_PER_ADDRESS {
            offers.insert(make(&format!("10.0.1.{i}"))).unwrap();
        }
        assert_eq!(
            offers.insert(make("10.0.2.1")),
            Err(Reason::BrowsersBusy(MAX_OFFERS))
        );
        assert_eq!(offers.len(), MAX_OFFERS);
        // Finished ones take no room, and only so many are kept.
        for offer in lock(&offers.map).values() {
            lock(offer).finished = Some(Instant::now());
        }
        for i in 0..MAX_OFFERS {
            let token = offers.insert(make(&format!("10.0.3.{i}"))).unwrap();
            lock(&offers.get(&token).unwrap()).finished = Some(Instant::now());
        }
        offers.room_for("10.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(offers.len(), MAX_OFFERS);
        for offer in lock(&offers.map).values() {
            lock(offer).finished = None;
        }
        // Idle offers go when room is needed; one whose file is being received stays.
        let long_ago = Instant::now().checked_sub(OFFER_IDLE + Duration::from_secs(1));
        let Some(long_ago) = long_ago else { return };
        for offer in lock(&offers.map).values() {
            lock(offer).touched = long_ago;
        }
        let busy = lock(&offers.map).values().next().cloned().unwrap();
        lock(&busy).states.push(ItemState::Receiving);
        offers.room_for("10.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(offers.len(), 1);
    }
}
