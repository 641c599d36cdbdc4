//! An installation's own identity: an Ed25519 key pair kept in the configuration directory,
//! made on first use, and a self-signed certificate for it.
//!
//! Only the private key is stored (`identity.key`, PKCS#8 PEM, mode 0600). The certificate is
//! made from it at each start: the identity is the hash of the public key, not of a
//! certificate, so a certificate can be renewed at will without anyone's pin changing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair, PKCS_ED25519, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::files::{check_private, create_private};
use super::id::Identity;

/// The private key's file name in the configuration directory.
pub const KEY_FILE: &str = "identity.key";

/// Why the installation's identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No configuration directory can be known (no `$FUP_CONFIG_DIR`, `$XDG_CONFIG_HOME` or
    /// `$HOME`).
    #[error("no configuration directory: set FUP_CONFIG_DIR")]
    NoConfigDir,
    /// A file or directory could not be used. (The system's words are part of the message,
    /// not a separate cause, so that a chain of causes does not say them twice.)
    #[error("{}: {error}", .path.display())]
    Io {
        /// Which.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The key file may be read by others (the message says how to mend it).
    #[error(transparent)]
    Exposed(io::Error),
    /// The key file holds no usable Ed25519 key.
    #[error("{}: not a usable key ({problem})", .path.display())]
    Bad {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The installation's key pair, its certificate, and its identity.
pub struct Keys {
    pair: KeyPair,
    cert: CertificateDer<'static>,
    cert_pem: String,
    identity: Identity,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Keys")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the key in `dir`, or makes one (and the directory, mode 0700) on first use.
    ///
    /// # Errors
    ///
    /// If the directory or key cannot be made or read, the key file may be read by others,
    /// or it does not hold an Ed25519 key.
    pub fn load_or_create(dir: &Path) -> Result<Keys, KeyError> {
        crate::sys::make_private_dir(dir).map_err(|error| KeyError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        let path = dir.join(KEY_FILE);
        let bad = |problem: String| KeyError::Bad {
            path: path.clone(),
            problem,
        };
        let pair = key_pair(&path, &PKCS_ED25519, "Ed25519")?;
        let cert = CertificateParams::new(vec!["fup".to_string()])
            .and_then(|params| params.self_signed(&pair))
            .map_err(|e| bad(e.to_string()))?;
        let identity = Identity::of_public_key(&pair.subject_public_key_info());
        Ok(Keys {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            pair,
            identity,
        })
    }

    /// The identity: the hash of the public key.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The self-signed certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The self-signed certificate, DER, for the TLS configuration.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The private key, PKCS#8 DER, for the TLS configuration.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.pair.serialize_der()).into()
    }
}

/// The key pair in the private file `path` (PKCS#8 PEM, mode 0600), made with `alg` on
/// first use; if another program of this installation makes it first, that one is used.
///
/// # Errors
///
/// If the file cannot be made or read, may be read by others, or holds no key of `alg`
/// (named `alg_name` in the message).
pub(super) fn key_pair(
    path: &Path,
    alg: &'static rcgen::SignatureAlgorithm,
    alg_name: &str,
) -> Result<KeyPair, KeyError> {
    let io_error = |error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    };
    let bad = |problem: String| KeyError::Bad {
        path: path.to_path_buf(),
        problem,
    };
    // Twice at most: made by us, or read after another program made it.
    for _ in 0..2 {
        let pair = match fs::read_to_string(path) {
            Ok(pem) => {
                check_private(path).map_err(KeyError::Exposed)?;
                KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let pair = KeyPair::generate_for(alg).map_err(|e| bad(e.to_string()))?;
                match create_private(path, pair.serialize_pem().as_bytes()) {
                    Ok(()) => pair,
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(err) => return Err(io_error(err)),
                }
            }
            Err(err) => return Err(io_error(err)),
        };
        if pair.algorithm() != alg {
            return Err(bad(format!("the key is not {alg_name}")));
        }
        return Ok(pair);
    }
    Err(io_error(io::ErrorKind::AlreadyExists.into()))
}

/// The installation's keys, in the configuration directory that `var` (the environment)
/// names; see [`config_dir`](super::files::config_dir).
///
/// # Errors
///
/// As [`Keys::load_or_create`], and [`KeyError::NoConfigDir`].
pub fn installation(var: impl Fn(&str) -> Option<String>) -> Result<Keys, KeyError> {
    let dir = super::files::config_dir(var).ok_or(KeyError::NoConfigDir)?;
    Keys::load_or_create(&dir)
}

/// A fresh installation's keys, in a directory that lives as long as the first value.
#[cfg(test)]
pub(crate) fn test_keys() -> (tempfile::TempDir, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::load_or_create(dir.path()).unwrap();
    (dir, keys)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_on_first_use_then_the_same() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("config/fup");
        let first = Keys::load_or_create(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let again = Keys::load_or_create(&dir).unwrap();
        assert_eq!(first.identity(), again.identity());
        assert!(again.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(again.key_pem().contains("PRIVATE KEY"));
        assert!(
            !format!("{again:?}").contains("PRIVATE"),
            "Debug never shows the key"
        );
        // Another installation, another identity.
        let other = Keys::load_or_create(&root.path().join("other")).unwrap();
        assert_ne!(other.identity(), first.identity());
    }

    #[test]
    fn an_exposed_or_broken_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Keys::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Exposed(_)), "{err}");
        assert!(err.to_string().contains("run chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Keys::load_or_create(dir.path()).unwrap().identity(),
            keys.identity()
        );
        fs::write(&path, "not a key").unwrap();
        let err = Keys::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a usable key"), "{err}");
    }

    #[test]
    fn the_installation_needs_a_directory() {
        let err = installation(|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no configuration directory: set FUP_CONFIG_DIR"
        );
    }
}
