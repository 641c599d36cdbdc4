//! The certificate browsers see on the page's HTTPS: an ECDSA P-256 key (browsers take no
//! Ed25519 certificates) kept beside `identity.key` as `web.key` (PKCS#8 PEM, mode 0600),
//! and a self-signed certificate for it kept as `web.crt`, so that its fingerprint stays the
//! same from one start to the next and a person can compare it with what the browser shows.
//!
//! No browser trusts it: the first visit warns. What the fingerprint proves is that the page
//! came from the server whose log shows the same one (see the README).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::files::create_private;
use super::keys::{KeyError, key_pair};

/// The browser key's file name in the configuration directory.
pub const WEB_KEY_FILE: &str = "web.key";
/// The browser certificate's file name in the configuration directory.
pub const WEB_CERT_FILE: &str = "web.crt";

/// How long a certificate is valid: under the 825 days Apple's systems take at most.
const VALID_DAYS: i64 = 800;
/// A certificate older than this is made again at start (same key), before it runs out.
const RENEW_AFTER: Duration = Duration::from_secs(770 * 24 * 60 * 60);

/// The browser certificate and its key.
pub struct WebCert {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// Whether it was made at this start (first use, or renewed).
    pub made: bool,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("WebCert")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl WebCert {
    /// Loads the key and certificate in `dir`, or makes them on first use (the certificate
    /// again, for the same key, when it is near its end).
    ///
    /// # Errors
    ///
    /// If a file cannot be made or read, the key may be read by others, or a file holds no
    /// usable key or certificate.
    pub fn load_or_create(dir: &Path) -> Result<WebCert, KeyError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| KeyError::Io { path, error }
        };
        crate::sys::make_private_dir(dir).map_err(io_error(dir))?;
        let key_path = dir.join(WEB_KEY_FILE);
        let bad = |path: &Path, problem: String| KeyError::Bad {
            path: path.to_path_buf(),
            problem,
        };
        let pair = key_pair(&key_path, &PKCS_ECDSA_P256_SHA256, "ECDSA P-256")?;
        let key = PrivatePkcs8KeyDer::from(pair.serialize_der()).into();
        let cert_path = dir.join(WEB_CERT_FILE);
        if let Some(cert) = current_cert(&cert_path) {
            return Ok(WebCert {
                cert,
                key,
                made: false,
            });
        }
        let cert = make_cert(&pair).map_err(|e| bad(&cert_path, e.to_string()))?;
        write_replacing(&cert_path, cert.pem().as_bytes()).map_err(io_error(&cert_path))?;
        Ok(WebCert {
            cert: cert.der().clone(),
            key,
            made: true,
        })
    }

    /// The certificate's SHA-256 fingerprint as browsers show it: 32 bytes in upper-case hex,
    /// separated by colons.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// A TLS configuration for browsers: TLS 1.3, this certificate, no client certificate,
    /// HTTP/1.1.
    ///
    /// # Errors
    ///
    /// If rustls refuses the key or the settings.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, super::tls::ConfigError> {
        super::tls::browser_config(self.cert.clone(), self.key.clone_key())
    }
}

/// The SHA-256 of a certificate, as browsers show it (`AB:CD:…`).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The certificate at `path`, if it is there, readable and young enough to be kept.
fn current_cert(path: &Path) -> Option<CertificateDer<'static>> {
    let age = fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())?;
    if age > RENEW_AFTER {
        return None;
    }
    CertificateDer::from_pem_file(path).ok()
}

/// A self-signed certificate for `pair`, valid from a day ago for [`VALID_DAYS`], for a TLS
/// server named `localhost` (browsers warn for any name: no one vouches for it).
fn make_cert(pair: &KeyPair) -> Result<rcgen::Certificate, rcgen::Error> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "fup-server");
    params.distinguished_name = name;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
    params.self_signed(pair)
}

/// Writes `contents` to `path` whole: into a new file beside it, then moved over it.
fn write_replacing(path: &Path, contents: &[u8]) -> io::Result<()> {
    // One of its own per process: two servers starting at once each write theirs whole.
    let mut temp = PathBuf::from(path);
    temp.set_extension(format!("crt.{}.new", std::process::id()));
    let _ = fs::remove_file(&temp);
    create_private(&temp, contents)?;
    fs::rename(&temp, path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_then_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let first = WebCert::load_or_create(dir.path()).unwrap();
        assert!(first.made);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(WEB_KEY_FILE)), 0o600);
        let again = WebCert::load_or_create(dir.path()).unwrap();
        assert!(!again.made);
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        assert!(!format!("{again:?}").contains("PRIVATE"));
        again.server_config().unwrap();
        // A broken certificate is made again, for the same key.
        fs::write(dir.path().join(WEB_CERT_FILE), "junk").unwrap();
        let renewed = WebCert::load_or_create(dir.path()).unwrap();
        assert!(renewed.made);
        assert_ne!(renewed.fingerprint(), first.fingerprint());
        // An exposed key is refused.
        fs::set_permissions(
            dir.path().join(WEB_KEY_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            WebCert::load_or_create(dir.path()),
            Err(KeyError::Exposed(_))
        ));
    }
}
