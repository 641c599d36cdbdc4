//! Who a client is, as far as its connection proves it ([`Client`]), and the server's side
//! of secure mode ([`SecureMode`]): its TLS configuration and the clients it trusts.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ServerConfig;

use crate::secure::Identity;
use crate::secure::files::{FileError, Trusted, add_trusted, read_trusted};

/// Who the client is, as far as the connection proves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Client {
    /// The plain protocol: nothing is encrypted, and the address proves nothing (anyone on
    /// the path can use it).
    #[default]
    Plain,
    /// Secure mode: TLS 1.3, and the client proved it holds the key of `id`.
    Secure {
        /// The client's identity.
        id: Identity,
        /// Whether it is in the trusted clients' file, and under which label if any.
        trusted: Option<Option<String>>,
    },
    /// A browser on the upload page: over HTTPS (encrypted; nothing proves who it is) or
    /// plain HTTP (like [`Client::Plain`]).
    Browser {
        /// Whether the page was reached over HTTPS.
        https: bool,
        /// The user agent it named, cut; it came from the peer, so it is escaped wherever it
        /// is shown ([`text::from_peer`](crate::text::from_peer)).
        agent: String,
    },
}

impl Client {
    /// Whether the connection is encrypted: secure mode, or a browser over HTTPS.
    pub fn is_secure(&self) -> bool {
        matches!(
            self,
            Client::Secure { .. } | Client::Browser { https: true, .. }
        )
    }

    /// The client's identity, on a secure connection.
    pub fn id(&self) -> Option<Identity> {
        match self {
            Client::Plain | Client::Browser { .. } => None,
            Client::Secure { id, .. } => Some(*id),
        }
    }

    /// Its label in the trusted clients' file, if it is there under one.
    pub fn label(&self) -> Option<&str> {
        match self {
            Client::Secure {
                trusted: Some(Some(label)),
                ..
            } => Some(label),
            _ => None,
        }
    }
}

impl fmt::Display for Client {
    /// `plain`, `secure, client ID "label"`, or `browser over https "user agent"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Plain => f.write_str("plain"),
            Client::Browser { https, agent } => {
                let over = if *https { "https" } else { "http" };
                write!(f, "browser over {over}")?;
                match agent.is_empty() {
                    true => Ok(()),
                    false => write!(f, " \"{}\"", crate::text::from_peer(agent)),
                }
            }
            Client::Secure { id, .. } => {
                write!(f, "secure, client {id}")?;
                match self.label() {
                    Some(label) => write!(f, " \"{}\"", crate::text::escape(label)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The clients a server accepts without asking: a `trusted_clients` file, read at start,
/// read again whenever it changes (so that removing a line revokes a client at once), and
/// added to when the operator answers `a` (always).
#[derive(Debug)]
pub struct TrustedClients {
    file: PathBuf,
    read: Mutex<Read>,
}

/// The file as last read.
#[derive(Debug, Default)]
struct Read {
    list: Vec<Trusted>,
    /// What the file looked like then (`None`: missing).
    stamp: Option<Stamp>,
    /// Why it could not be read then (no one is trusted from it meanwhile).
    error: Option<FileError>,
}

/// Enough of a file's metadata to see that it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    key: (u64, u64),
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed: Option<i128>,
}

fn stamp(file: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(file).ok()?;
    Some(Stamp {
        key: crate::sys::file_key(&meta),
        len: meta.len(),
        modified: meta.modified().ok(),
        changed: crate::sys::changed_nanos(&meta),
    })
}

impl TrustedClients {
    /// Reads `file` (a missing file trusts no one).
    ///
    /// # Errors
    ///
    /// If it cannot be read, others may change it, or a line is not an identity (with its
    /// line number).
    pub fn load(file: &Path) -> Result<TrustedClients, FileError> {
        let stamp = stamp(file);
        Ok(TrustedClients {
            read: Mutex::new(Read {
                list: read_trusted(file)?,
                stamp,
                error: None,
            }),
            file: file.to_path_buf(),
        })
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Reads the file again if it changed since it was last read. Returns why it cannot be
    /// read, the first time it cannot: until it can, no one is trusted from it.
    pub fn refresh(&self) -> Option<FileError> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.file);
        // File times are coarse (a few ms): a file changed in the last seconds may have
        // changed again within the same tick, unseen; it is read again until it settles.
        let settled = now
            .and_then(|stamp| stamp.modified)
            .and_then(|at| at.elapsed().ok())
            .is_none_or(|age| age > std::time::Duration::from_secs(2));
        if now == read.stamp && settled {
            return None;
        }
        read.stamp = now;
        match read_trusted(&self.file) {
            Ok(list) => {
                read.list = list;
                read.error = None;
                None
            }
            Err(err) => {
                read.list.clear();
                let first = read.error.as_ref() != Some(&err);
                read.error = Some(err.clone());
                first.then_some(err)
            }
        }
    }

    /// How `id` is trusted: `Some(label)` if it is, `None` if not.
    pub fn find(&self, id: &Identity) -> Option<Option<String>> {
        let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.list
            .iter()
            .find(|trusted| trusted.id == *id)
            .map(|trusted| trusted.label.clone())
    }

    /// Trusts `id` from now on, in the file too.
    ///
    /// # Errors
    ///
    /// If the file cannot be written (the client is then not trusted).
    pub fn add(&self, id: &Identity, label: Option<&str>) -> io::Result<()> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        if read.list.iter().any(|trusted| trusted.id == *id) {
            return Ok(());
        }
        add_trusted(&self.file, id, label)?;
        read.list.push(Trusted {
            id: *id,
            label: label.map(str::to_string),
        });
        // What was added is known; a change by someone else after it is read next time.
        read.stamp = stamp(&self.file);
        Ok(())
    }
}

/// A server's secure mode: its TLS configuration (its key), and the clients it trusts.
#[derive(Debug)]
pub struct SecureMode {
    /// The TLS configuration every secure connection is accepted with.
    pub config: Arc<ServerConfig>,
    /// The clients accepted without asking.
    pub trusted: TrustedClients,
    /// The server's own identity (what its certificate shows), bound into pairings.
    pub identity: Identity,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn id(seed: u8) -> Identity {
        Identity::of_public_key(&[seed; 44])
    }

    // Before: revoking a client needed a restart.
    #[test]
    fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trusted_clients");
        fs::write(&file, format!("{} laptop\n", id(1))).unwrap();
        let trusted = TrustedClients::load(&file).unwrap();
        assert_eq!(trusted.refresh(), None);
        assert_eq!(trusted.find(&id(1)), Some(Some("laptop".into())));
        // Revoked by removing the line, granted by adding one: seen at once.
        fs::write(&file, format!("{}\n", id(2))).unwrap();
        assert_eq!(trusted.refresh(), None);
        assert_eq!(trusted.find(&id(1)), None);
        assert_eq!(trusted.find(&id(2)), Some(None));
        // A file that cannot be read trusts no one, and says so once.
        fs::write(&file, "not an identity\n").unwrap();
        assert!(trusted.refresh().is_some());
        assert_eq!(trusted.find(&id(2)), None);
        fs::write(&file, format!("{}\nnot an identity\n", id(2))).unwrap();
        assert!(trusted.refresh().is_some(), "another problem is said too");
        assert_eq!(trusted.refresh(), None, "but not twice");
        assert_eq!(trusted.find(&id(2)), None);
        fs::remove_file(&file).unwrap();
        assert_eq!(trusted.refresh(), None);
        trusted.add(&id(3), None).unwrap();
        assert_eq!(trusted.find(&id(3)), Some(None));
        assert_eq!(trusted.refresh(), None);
        assert_eq!(trusted.find(&id(3)), Some(None));
    }
}
