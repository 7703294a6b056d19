//! Compact JWS with RS256: signing the JWTs a connector presents (OAuth 2.0 `private_key_jwt`
//! client assertions, Microsoft Graph proofs of possession) with a credential's private key, and
//! checking a provider's signature on the access tokens it issues against its published RSA keys.
//!
//! RSA comes from `aws-lc-rs`; this module only assembles `header.claims.signature`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::CryptoError;

/// A private key that signs JWTs. Holds the key only as long as the signer lives.
pub struct JwtSigner {
    key: RsaKeyPair,
}

impl JwtSigner {
    /// Reads an RSA private key in PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(key_pem: &[u8]) -> Result<Self, CryptoError> {
        let bad = || CryptoError::Certificate("the private key is not an RSA key in PEM".into());
        let text = std::str::from_utf8(key_pem).map_err(|_| bad())?;
        let (label, der) = pem_block(text).ok_or_else(bad)?;
        let key = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            _ => return Err(bad()),
        }
        .map_err(|_| bad())?;
        Ok(Self { key })
    }

    /// `base64url(header).base64url(claims).base64url(RS256 signature)`. The header gets
    /// `"alg":"RS256"` and `"typ":"JWT"` added to the members given.
    pub fn sign(
        &self,
        mut header: serde_json::Map<String, serde_json::Value>,
        claims: &serde_json::Value,
    ) -> Result<String, CryptoError> {
        header.insert("alg".into(), "RS256".into());
        header.insert("typ".into(), "JWT".into());
        let encode =
            |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON values serialize"));
        let mut out = format!("{}.{}", encode(&serde_json::Value::Object(header)), encode(claims));
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), out.as_bytes(), &mut sig)
            .map_err(|_| CryptoError::Certificate("RS256 signing failed".into()))?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }
}

/// The first PEM block of `text`: its label and DER bytes (zeroized on drop).
fn pem_block(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: Zeroizing<String> =
        Zeroizing::new(rest[body_start..body_end].chars().filter(|c| !c.is_whitespace()).collect());
    let der = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).ok()?;
    Some((label, Zeroizing::new(der)))
}

/// A JWT split into its parts, signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedJwt {
    /// The header, decoded.
    pub header: serde_json::Value,
    /// The claims, decoded (not to be trusted before the signature is checked).
    pub claims: serde_json::Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl UnverifiedJwt {
    /// The three parts of a compact JWT; `None` if it is not one.
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self { header, claims, signing_input: format!("{h}.{c}"), signature })
    }

    /// `header.claims`, the bytes the signature covers.
    pub(crate) fn signing_input(&self) -> &str {
        &self.signing_input
    }

    /// The signature's bytes.
    pub(crate) fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Checks an RS256 signature against an RSA public key given as a JWK's `n` and `e`
    /// (base64url). False for any other algorithm.
    pub fn verify_rs256(&self, n_b64: &str, e_b64: &str) -> bool {
        if self.header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
            return false;
        }
        let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n_b64), URL_SAFE_NO_PAD.decode(e_b64)) else {
            return false;
        };
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_an_issued_key() {
        let issued = crate::cert::issue("acme", "ews", 3600).unwrap();
        let signer = JwtSigner::from_pem(issued.key_pem.as_bytes()).unwrap();
        let mut header = serde_json::Map::new();
        header.insert("x5t".into(), issued.info.x5t().into());
        let token = signer.sign(header, &serde_json::json!({"iss": "a", "aud": "b"})).unwrap();
        let jwt = UnverifiedJwt::parse(&token).unwrap();
        assert_eq!(jwt.header["x5t"], issued.info.x5t());
        assert_eq!(jwt.header["alg"], "RS256");
        assert_eq!(jwt.claims["aud"], "b");
        // The public key, as a JWK's n and e, from the certificate.
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.info.pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let x509_parser::public_key::PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
            panic!("not RSA")
        };
        let n = URL_SAFE_NO_PAD.encode(rsa.modulus.iter().skip_while(|b| **b == 0).copied().collect::<Vec<_>>());
        let e = URL_SAFE_NO_PAD.encode(rsa.exponent);
        assert!(jwt.verify_rs256(&n, &e));
        // A changed claim breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iss":"a","aud":"c"}"#);
        parts[1] = &forged;
        assert!(!UnverifiedJwt::parse(&parts.join(".")).unwrap().verify_rs256(&n, &e));
    }

    #[test]
    fn refuses_what_is_not_an_rsa_key() {
        assert!(JwtSigner::from_pem(b"not a key").is_err());
        assert!(JwtSigner::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        assert!(UnverifiedJwt::parse("a.b").is_none());
    }
}
