//! TLS 1.3 between fup programs, both ways authenticated by keys rather than by certificate
//! authorities: each side shows a self-signed certificate for its key, rustls checks that the
//! peer holds the key behind it (the handshake signature), and each side learns the other's
//! [`Identity`] from it. What to trust is then a matter of pinning: a client pinned to an
//! identity fails the handshake against any other, before it sends a byte of data.
//!
//! Session resumption is off both ways: every connection is a full handshake proving both
//! keys, and nothing (no session ticket) arrives unasked once the exchange has started.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};

use super::id::Identity;
use super::keys::Keys;

/// The name a client asks for in the handshake. Certificates are not checked against names
/// (identities are pinned instead), so it says nothing about the server.
pub const SERVER_NAME: &str = "fup";

/// The identity behind a certificate: the hash of its public key.
///
/// # Errors
///
/// If the certificate cannot be read.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, Error> {
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(Identity::of_public_key(
        cert.subject_public_key_info().as_ref(),
    ))
}

/// The identity a connection's peer proved in the handshake.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Identity> {
    identity_of(conn.peer_certificates()?.first()?).ok()
}

/// The hidden switch that forces one cipher suite (`aes128`, `aes256`, `chacha20`), for
/// `scripts/bench.sh` to measure each; anything else, or nothing, means the default order.
pub const SUITE_VAR: &str = "FUP_TLS_SUITE";

/// rustls' *ring* provider with the suites in the order that is fastest on this machine:
/// AES-GCM first where the CPU has AES instructions (AES-128 before AES-256, fewer rounds),
/// ChaCha20-Poly1305 first where it does not. The server follows the client's order.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256 as AES128, TLS13_AES_256_GCM_SHA384 as AES256,
        TLS13_CHACHA20_POLY1305_SHA256 as CHACHA20,
    };
    let suites = match std::env::var(SUITE_VAR).as_deref() {
        Ok("aes128") => vec![AES128],
        Ok("aes256") => vec![AES256],
        Ok("chacha20") => vec![CHACHA20],
        _ if aes_in_hardware() => vec![AES128, AES256, CHACHA20],
        _ => vec![CHACHA20, AES128, AES256],
    };
    Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::ring::default_provider()
    })
}

fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The identity a client's configuration last saw a server show, refused or not: what a
/// client reports when a pinned server shows another key.
#[derive(Clone, Debug, Default)]
pub struct SeenServer(Arc<Mutex<Option<Identity>>>);

impl SeenServer {
    /// The identity seen, if the handshake got as far as the server's certificate.
    pub fn get(&self) -> Option<Identity> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, id: Identity) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(id);
    }
}

/// Checks the handshake's signatures with the peer's key, as any TLS does, but takes any
/// certificate (self-signed, any name, any dates): trust comes from the identity, after.
#[derive(Debug)]
struct KeyHolder {
    provider: Arc<CryptoProvider>,
    /// The only identity a client accepts, when it has one pinned.
    pinned: Option<Identity>,
    /// Where a client notes the identity its server showed.
    seen: SeenServer,
}

impl KeyHolder {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        let id = identity_of(cert)?;
        self.seen.set(id);
        match self.pinned {
            Some(pinned) if pinned != id => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for KeyHolder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for KeyHolder {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub struct ConfigError(Error);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot set up TLS: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A server's configuration: TLS 1.3 only, its own certificate, and a certificate required
/// from every client (whose identity [`peer_identity`] then gives).
///
/// # Errors
///
/// If rustls refuses the key or the settings.
pub fn server_config(keys: &Keys) -> Result<Arc<ServerConfig>, ConfigError> {
    let provider = provider();
    let clients = Arc::new(KeyHolder {
        provider: Arc::clone(&provider),
        pinned: None,
        seen: SeenServer::default(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ConfigError)?
        .with_client_cert_verifier(clients)
        .with_single_cert(vec![keys.cert_der()], keys.key_der())
        .map_err(ConfigError)?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// A configuration for browsers on the page's HTTPS: TLS 1.3 only, `cert` (ECDSA: browsers
/// take no Ed25519 certificate), no client certificate asked for, HTTP/1.1.
///
/// # Errors
///
/// If rustls refuses the key or the settings.
pub fn browser_config(
    cert: CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ConfigError)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(ConfigError)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// A client's configuration: TLS 1.3 only, its own certificate for the server, and the
/// server's identity checked against `pinned` when there is one (the handshake fails
/// otherwise); without, any server identity is let through for the caller to decide on.
/// [`SeenServer`] tells, after the handshake, which identity the server showed.
///
/// # Errors
///
/// If rustls refuses the key or the settings.
pub fn client_config(
    keys: &Keys,
    pinned: Option<Identity>,
) -> Result<(Arc<ClientConfig>, SeenServer), ConfigError> {
    let provider = provider();
    let seen = SeenServer::default();
    let servers = Arc::new(KeyHolder {
        provider: Arc::clone(&provider),
        pinned,
        seen: seen.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ConfigError)?
        .dangerous()
        .with_custom_certificate_verifier(servers)
        .with_client_auth_cert(vec![keys.cert_der()], keys.key_der())
        .map_err(ConfigError)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, ServerConnection, StreamOwned};
    use std::io::{Read, Write};

    use crate::secure::keys::test_keys as keys;

    /// What a test server saw: the client's identity and the bytes it sent.
    type Seen = Result<(Option<Identity>, Vec<u8>), Error>;

    /// A server on one end of a socket pair: reads five bytes, answers, reports what it saw.
    fn serve(
        config: Arc<ServerConfig>,
        sock: std::net::TcpStream,
    ) -> std::thread::JoinHandle<Seen> {
        std::thread::spawn(move || {
            let mut tls = StreamOwned::new(ServerConnection::new(config)?, sock);
            let mut got = vec![0; 5];
            tls.read_exact(&mut got)
                .map_err(|e| Error::General(e.to_string()))?;
            tls.write_all(b"world")
                .map_err(|e| Error::General(e.to_string()))?;
            tls.flush().map_err(|e| Error::General(e.to_string()))?;
            Ok((peer_identity(&tls.conn), got))
        })
    }

    fn client(
        config: Arc<ClientConfig>,
        sock: std::net::TcpStream,
    ) -> std::io::Result<(Option<Identity>, Vec<u8>, String)> {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), sock);
        tls.write_all(b"hello")?;
        let mut got = vec![0; 5];
        tls.read_exact(&mut got)?;
        let suite = format!("{:?}", tls.conn.negotiated_cipher_suite().unwrap().suite());
        Ok((peer_identity(&tls.conn), got, suite))
    }

    #[test]
    fn mutual_tls13_and_each_side_learns_the_others_identity() {
        let (_sd, server_keys) = keys();
        let (_cd, client_keys) = keys();
        for pinned in [None, Some(server_keys.identity())] {
            let (a, b) = crate::testing::socket_pair();
            let server = serve(server_config(&server_keys).unwrap(), a);
            let (seen_server, reply, suite) =
                client(client_config(&client_keys, pinned).unwrap().0, b).unwrap();
            assert_eq!(seen_server, Some(server_keys.identity()));
            assert_eq!(reply, b"world");
            assert!(suite.starts_with("TLS13_"), "{suite}");
            let (seen_client, got) = server.join().unwrap().unwrap();
            assert_eq!(seen_client, Some(client_keys.identity()));
            assert_eq!(got, b"hello");
        }
    }

    #[test]
    fn a_pinned_client_refuses_another_server_before_sending_anything() {
        let (_sd, impostor) = keys();
        let (_cd, client_keys) = keys();
        let (_pd, pinned) = keys();
        let (a, b) = crate::testing::socket_pair();
        let server = serve(server_config(&impostor).unwrap(), a);
        let (config, seen) = client_config(&client_keys, Some(pinned.identity())).unwrap();
        let err = client(config, b).unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        assert_eq!(seen.get(), Some(impostor.identity()));
        // The impostor's handshake fails: it never read a byte of application data.
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn a_client_without_a_certificate_is_refused() {
        let (_sd, server_keys) = keys();
        let (a, b) = crate::testing::socket_pair();
        let server = serve(server_config(&server_keys).unwrap(), a);
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(KeyHolder {
                provider: provider(),
                pinned: None,
                seen: SeenServer::default(),
            }))
            .with_no_client_auth();
        assert!(client(Arc::new(anonymous), b).is_err());
        assert!(server.join().unwrap().is_err());
    }
}
