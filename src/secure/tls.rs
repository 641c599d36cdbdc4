//! TLS 1.3 between fup programs, both ways authenticated by keys rather than by certificate
//! authorities: each side shows a self-signed certificate for its key, rustls checks that the
//! peer holds the key behind it (the handshake signature), and each side learns the other's
//! [`Identity`] from it. What to trust is then a matter of pinning: a client pinned to an
//! identity fails the handshake against any other, before it sends a byte of data.
//!
//! Not yet used by the programs (#11): the probe that offers secure mode and the session over
//! a TLS stream come next.

use std::fmt;
use std::sync::Arc;

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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the handshake's signatures with the peer's key, as any TLS does, but takes any
/// certificate (self-signed, any name, any dates): trust comes from the identity, after.
#[derive(Debug)]
struct KeyHolder {
    provider: Arc<CryptoProvider>,
    /// The only identity a client accepts, when it has one pinned.
    pinned: Option<Identity>,
}

impl KeyHolder {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        let id = identity_of(cert)?;
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
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ConfigError)?
        .with_client_cert_verifier(clients)
        .with_single_cert(vec![keys.cert_der()], keys.key_der())
        .map_err(ConfigError)?;
    Ok(Arc::new(config))
}

/// A client's configuration: TLS 1.3 only, its own certificate for the server, and the
/// server's identity checked against `pinned` when there is one (the handshake fails
/// otherwise); without, any server identity is let through for the caller to decide on.
///
/// # Errors
///
/// If rustls refuses the key or the settings.
pub fn client_config(
    keys: &Keys,
    pinned: Option<Identity>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = provider();
    let servers = Arc::new(KeyHolder {
        provider: Arc::clone(&provider),
        pinned,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ConfigError)?
        .dangerous()
        .with_custom_certificate_verifier(servers)
        .with_client_auth_cert(vec![keys.cert_der()], keys.key_der())
        .map_err(ConfigError)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, ServerConnection, StreamOwned};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn keys() -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        (dir, keys)
    }

    /// What a test server saw: the client's identity and the bytes it sent.
    type Seen = Result<(Option<Identity>, Vec<u8>), Error>;

    /// A server on one end of a socket pair: reads five bytes, answers, reports what it saw.
    fn serve(config: Arc<ServerConfig>, sock: UnixStream) -> std::thread::JoinHandle<Seen> {
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
        sock: UnixStream,
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
            let (a, b) = UnixStream::pair().unwrap();
            let server = serve(server_config(&server_keys).unwrap(), a);
            let (seen_server, reply, suite) =
                client(client_config(&client_keys, pinned).unwrap(), b).unwrap();
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
        let (a, b) = UnixStream::pair().unwrap();
        let server = serve(server_config(&impostor).unwrap(), a);
        let err = client(
            client_config(&client_keys, Some(pinned.identity())).unwrap(),
            b,
        )
        .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        // The impostor's handshake fails: it never read a byte of application data.
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn a_client_without_a_certificate_is_refused() {
        let (_sd, server_keys) = keys();
        let (a, b) = UnixStream::pair().unwrap();
        let server = serve(server_config(&server_keys).unwrap(), a);
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(KeyHolder {
                provider: provider(),
                pinned: None,
            }))
            .with_no_client_auth();
        assert!(client(Arc::new(anonymous), b).is_err());
        assert!(server.join().unwrap().is_err());
    }
}
