//! Who a client is, as far as its connection proves it ([`Client`]), and the server's side
//! of secure mode ([`SecureMode`]): its TLS configuration, the clients it trusts, and whether
//! plain uploads are refused.

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
}

impl Client {
    /// Whether the connection is secure.
    pub fn is_secure(&self) -> bool {
        matches!(self, Client::Secure { .. })
    }

    /// The client's identity, on a secure connection.
    pub fn id(&self) -> Option<Identity> {
        match self {
            Client::Plain => None,
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
    /// `plain`, or `secure, client ID "label"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Plain => f.write_str("plain"),
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

/// The clients a server accepts without asking: a `trusted_clients` file, read at start and
/// added to when the operator answers `a` (always).
#[derive(Debug)]
pub struct TrustedClients {
    file: PathBuf,
    list: Mutex<Vec<Trusted>>,
}

impl TrustedClients {
    /// Reads `file` (a missing file trusts no one).
    ///
    /// # Errors
    ///
    /// If it cannot be read, or a line is not an identity (with its line number).
    pub fn load(file: &Path) -> Result<TrustedClients, FileError> {
        Ok(TrustedClients {
            list: Mutex::new(read_trusted(file)?),
            file: file.to_path_buf(),
        })
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// How `id` is trusted: `Some(label)` if it is, `None` if not.
    pub fn find(&self, id: &Identity) -> Option<Option<String>> {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter()
            .find(|trusted| trusted.id == *id)
            .map(|trusted| trusted.label.clone())
    }

    /// Trusts `id` from now on, in the file too.
    ///
    /// # Errors
    ///
    /// If the file cannot be written (the client is then not trusted).
    pub fn add(&self, id: &Identity) -> io::Result<()> {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.iter().any(|trusted| trusted.id == *id) {
            return Ok(());
        }
        add_trusted(&self.file, id, None)?;
        list.push(Trusted {
            id: *id,
            label: None,
        });
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
}
