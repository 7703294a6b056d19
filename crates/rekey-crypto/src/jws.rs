//! Checking a workload's JWT: the algorithm against the ones its auth role pins, the key by its
//! `kid` in the issuer's key set (JWK), the signature with `aws-lc-rs`. Only asymmetric
//! algorithms exist here (RS256, ES256, EdDSA): `none` and every HMAC algorithm are not
//! algorithms this module knows, so a token that names one is refused before any key is looked
//! at (no "HS256 signed with the public key" confusion is possible).

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::jwt::UnverifiedJwt;

/// A JWS algorithm Rekey accepts from a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl JwsAlg {
    /// Every algorithm, as JOSE names them.
    pub const ALL: [JwsAlg; 3] = [JwsAlg::Rs256, JwsAlg::Es256, JwsAlg::EdDsa];

    /// The JOSE name (`RS256`, `ES256`, `EdDSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Rs256 => "RS256",
            JwsAlg::Es256 => "ES256",
            JwsAlg::EdDsa => "EdDSA",
        }
    }

    /// From the JOSE name; `None` for anything else (`none`, `HS256`, `PS256`, …).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A public key of an issuer's key set (RFC 7517), as far as checking a signature needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicJwk {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Its id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm it is for, if the set says.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`, if the set says.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// EC and OKP: the curve (`P-256`, `Ed25519`).
    #[serde(default)]
    pub crv: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC x coordinate; OKP public key.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWK set (`{"keys": [...]}`).
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    /// Its keys. Keys of a type this module does not know are kept and never match.
    pub keys: Vec<PublicJwk>,
}

impl PublicJwk {
    /// Whether this key can check `alg`: the right type and curve, not marked for encryption,
    /// and not marked for another algorithm.
    pub fn fits(&self, alg: JwsAlg) -> bool {
        let kind = match alg {
            JwsAlg::Rs256 => self.kty == "RSA",
            JwsAlg::Es256 => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
            JwsAlg::EdDsa => self.kty == "OKP" && self.crv.as_deref() == Some("Ed25519"),
        };
        kind && self.use_.as_deref().is_none_or(|u| u == "sig") && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field.as_deref()?).ok()
}

impl UnverifiedJwt {
    /// The algorithm the header names, if it is one of [`JwsAlg`].
    pub fn alg(&self) -> Option<JwsAlg> {
        self.header.get("alg").and_then(|a| a.as_str()).and_then(JwsAlg::parse)
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(|k| k.as_str())
    }

    /// Checks the signature with `key` under `alg` (which must be what the header names and
    /// what the key is for). False on any mismatch or malformed key.
    pub fn verify_with(&self, alg: JwsAlg, key: &PublicJwk) -> bool {
        if self.alg() != Some(alg) || !key.fits(alg) {
            return false;
        }
        let message = self.signing_input().as_bytes();
        let signature = self.signature();
        match alg {
            JwsAlg::Rs256 => {
                let (Some(n), Some(e)) = (b64(&key.n), b64(&key.e)) else { return false };
                RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok()
            }
            JwsAlg::Es256 => {
                let (Some(x), Some(y)) = (b64(&key.x), b64(&key.y)) else { return false };
                if x.len() != 32 || y.len() != 32 {
                    return false;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point).verify(message, signature).is_ok()
            }
            JwsAlg::EdDsa => {
                let Some(x) = b64(&key.x) else { return false };
                UnparsedPublicKey::new(&signature::ED25519, &x).verify(message, signature).is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    use super::*;

    fn jwt(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> UnverifiedJwt {
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
        let c = URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#);
        let input = format!("{h}.{c}");
        let s = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
        UnverifiedJwt::parse(&format!("{input}.{s}")).unwrap()
    }

    fn jwk(json: serde_json::Value) -> PublicJwk {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn es256_and_eddsa_check_and_refuse_what_they_should() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let ec_jwk = jwk(serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}));
        let token = jwt("ES256", |m| ec.sign(&rng, m).unwrap().as_ref().to_vec());
        assert_eq!(token.alg(), Some(JwsAlg::Es256));
        assert!(token.verify_with(JwsAlg::Es256, &ec_jwk));
        // The header's algorithm must be the one asked for.
        assert!(!token.verify_with(JwsAlg::EdDsa, &ec_jwk));

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let ed_jwk = jwk(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())}),
        );
        let token = jwt("EdDSA", |m| ed.sign(m).as_ref().to_vec());
        assert!(token.verify_with(JwsAlg::EdDsa, &ed_jwk));
        assert!(!token.verify_with(JwsAlg::EdDsa, &ec_jwk), "a key of another type never checks");
        let other = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let other_jwk = jwk(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(other.public_key().as_ref())}),
        );
        assert!(!token.verify_with(JwsAlg::EdDsa, &other_jwk), "another key of the same type does not check");
        // A key marked for another algorithm or for encryption is not used.
        let mut marked = ed_jwk.clone();
        marked.alg = Some("ES256".into());
        assert!(!token.verify_with(JwsAlg::EdDsa, &marked));
        let mut enc = ed_jwk;
        enc.use_ = Some("enc".into());
        assert!(!token.verify_with(JwsAlg::EdDsa, &enc));
    }

    #[test]
    fn none_and_hmac_are_not_algorithms() {
        for name in ["none", "HS256", "HS384", "PS256", "RS512", "es256", ""] {
            assert_eq!(JwsAlg::parse(name), None, "{name}");
        }
        let token = jwt("HS256", |_| vec![1; 32]);
        assert_eq!(token.alg(), None);
        let rsa = jwk(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}));
        assert!(!token.verify_with(JwsAlg::Rs256, &rsa));
    }
}
