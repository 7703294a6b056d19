//! Per-tenant certificates: an RSA-2048 key pair and a self-signed X.509 certificate for an
//! `entra-app` credential (the shape Azure AD / Entra ID takes for an application's certificate
//! credential and its `private_key_jwt` client assertions, which are RS256), and the facts the
//! inventory keeps about any certificate: thumbprints, subject, validity, and a hash of its public
//! key, so that no two tenants ever share a certificate or a key.
//!
//! Key generation and signing come from `rcgen` on `aws-lc-rs`; parsing from `x509-parser`.

use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize, SerialNumber, PKCS_RSA_SHA256};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;

/// What the inventory records about a certificate. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-1 of the DER: the thumbprint Azure shows, and (base64url) a JWT's `x5t`.
    pub sha1: [u8; 20],
    /// SHA-256 of the DER (the inventory's key).
    pub sha256: [u8; 32],
    /// SHA-256 of the SubjectPublicKeyInfo: the same key in two certificates has the same value.
    pub public_key_sha256: [u8; 32],
    /// The subject, as text.
    pub subject: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The certificate, PEM.
    pub pem: String,
}

impl CertInfo {
    /// The JWT header `x5t`: base64url (no padding) of the SHA-1 thumbprint.
    pub fn x5t(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sha1)
    }
}

/// A new certificate and its private key (PKCS#8 PEM, zeroized on drop).
pub struct IssuedCert {
    /// The certificate.
    pub info: CertInfo,
    /// Its private key.
    pub key_pem: Zeroizing<String>,
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> CryptoError + '_ {
    move |e| CryptoError::Certificate(format!("{what}: {e}"))
}

/// Generates an RSA-2048 key and a self-signed certificate valid from now for `lifetime_secs`,
/// with subject `CN=<common_name>, OU=<unit>, O=Rekey`.
pub fn issue(common_name: &str, unit: &str, lifetime_secs: u64) -> Result<IssuedCert, CryptoError> {
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(cert_err("key generation"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("parameters"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(DnType::OrganizationName, "Rekey");
    params.distinguished_name = dn;
    let now =
        time::OffsetDateTime::now_utc().replace_nanosecond(0).map_err(|_| CryptoError::Certificate("clock".into()))?;
    // A little slack for clocks of the relying party that run behind.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2));
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|_| CryptoError::Random)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key).map_err(cert_err("signing"))?;
    let info = inspect(&cert.pem())?;
    Ok(IssuedCert { info, key_pem: Zeroizing::new(key.serialize_pem()) })
}

/// Reads a PEM certificate. With `key_pem`, also checks that the private key belongs to it.
pub fn inspect_pair(cert_pem: &str, key_pem: &[u8]) -> Result<CertInfo, CryptoError> {
    let info = inspect(cert_pem)?;
    let key_text = Zeroizing::new(
        std::str::from_utf8(key_pem)
            .map_err(|_| CryptoError::Certificate("the private key is not PEM text".into()))?
            .to_owned(),
    );
    let key = KeyPair::from_pem(&key_text)
        .map_err(|_| CryptoError::Certificate("the private key is not a PKCS#8 RSA or EC key in PEM".into()))?;
    let spki: [u8; 32] = Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key)).into();
    if spki != info.public_key_sha256 {
        return Err(CryptoError::Certificate("the private key does not belong to the certificate".into()));
    }
    Ok(info)
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, CryptoError> {
    let bad = |why: &str| CryptoError::Certificate(why.to_owned());
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| bad("not a PEM certificate"))?;
    if pem.label != "CERTIFICATE" {
        return Err(bad("the PEM block is not a CERTIFICATE"));
    }
    let cert = pem.parse_x509().map_err(|_| bad("the certificate does not parse as X.509"))?;
    let validity = cert.validity();
    let der = &pem.contents;
    let block = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in block.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    Ok(CertInfo {
        sha1: Sha1::digest(der).into(),
        sha256: Sha256::digest(der).into(),
        public_key_sha256: Sha256::digest(cert.public_key().raw).into(),
        subject: cert.subject().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        pem: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_distinct_rsa_certificates_whose_keys_match() {
        let a = issue("acme", "ews", 90 * 86_400).unwrap();
        let b = issue("acme", "ews", 90 * 86_400).unwrap();
        assert_ne!(a.info.sha256, b.info.sha256);
        assert_ne!(a.info.public_key_sha256, b.info.public_key_sha256);
        assert!(a.info.subject.contains("CN=acme"), "{}", a.info.subject);
        assert!(a.key_pem.contains("BEGIN PRIVATE KEY"));
        let span = a.info.not_after - a.info.not_before;
        assert!((90 * 86_400..=90 * 86_400 + 600).contains(&span), "{span}");
        assert_eq!(inspect_pair(&a.info.pem, a.key_pem.as_bytes()).unwrap(), a.info);
        let err = inspect_pair(&a.info.pem, b.key_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert_eq!(a.info.x5t().len(), 27);
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        assert!(inspect("hello").is_err());
        assert!(inspect("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        let a = issue("t", "c", 86_400).unwrap();
        assert!(inspect_pair(&a.info.pem, b"not a key").is_err());
    }
}
