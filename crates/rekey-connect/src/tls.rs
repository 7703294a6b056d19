//! rustls client configurations for the connectors.
//!
//! A credential trusts exactly one thing: its pinned CA (`ca_pem`, one or more PEM certificates)
//! if it has one, else the Mozilla root set from `webpki-roots`. `danger_accept_invalid_certs=true`
//! turns certificate checks off altogether; the field is stored with the credential and shown by
//! `cred show`, so nobody sets it without it being seen. Configurations are cached by their trust
//! settings, which also lets TLS sessions resume between checks of the same target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rekey_types::Fields;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{accepts_invalid_certs, Failure};

/// At most this many distinct configurations are kept (one per pinned CA, in practice).
const CACHE_LIMIT: usize = 1024;

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())).clone()
}

/// The client configuration for a target without a credential's settings (a webhook): the
/// Mozilla roots, certificates checked.
pub(crate) fn public_config() -> Result<Arc<ClientConfig>, Failure> {
    client_config(&Fields::default())
}

/// The client configuration that trusts `ca_pem` (PEM certificates) if given, else the Mozilla
/// roots; certificates checked (the SIEM's syslog receiver).
pub(crate) fn config_with_ca(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, Failure> {
    build(ca_pem, false).map(Arc::new)
}

/// The client configuration for a credential's fields.
pub(crate) fn client_config(fields: &Fields) -> Result<Arc<ClientConfig>, Failure> {
    type Cache = Mutex<HashMap<(Option<String>, bool), Arc<ClientConfig>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (fields.get("ca_pem").map(str::to_owned), accepts_invalid_certs(fields));
    let cache = CACHE.get_or_init(Default::default);
    if let Some(config) = cache.lock().expect("tls cache").get(&key) {
        return Ok(config.clone());
    }
    let config = Arc::new(build(key.0.as_deref(), key.1)?);
    let mut cache = cache.lock().expect("tls cache");
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, config.clone());
    Ok(config)
}

fn build(ca_pem: Option<&str>, accept_invalid: bool) -> Result<ClientConfig, Failure> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Config(format!("TLS setup: {e}")))?;
    let config = if accept_invalid {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots(ca_pem)?).with_no_client_auth()
    };
    Ok(config)
}

/// The trust anchors: the pinned CA certificates, or the Mozilla roots.
pub(crate) fn roots(ca_pem: Option<&str>) -> Result<RootCertStore, Failure> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in pinned(pem)? {
                roots.add(cert).map_err(|e| Failure::Config(format!("ca_pem: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// The certificates of a `ca_pem` field.
pub(crate) fn pinned(pem: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::Config(format!("ca_pem is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Failure::Config("ca_pem holds no certificate".into()));
    }
    Ok(certs)
}

/// The server name to check the certificate against: a DNS name or an IP address.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Failure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|_| Failure::Config(format!("{host:?} is not a valid TLS server name")))
}

/// Accepts any certificate (signatures in the handshake are still checked). Used only when the
/// credential says `danger_accept_invalid_certs=true`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
