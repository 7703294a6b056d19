//! Self-service reset links, the CSRF tokens of their forms, and webhook signatures.
//!
//! A link is `<link id>.<secret>` (32 + 64 hex digits), in the same bearer format as API tokens
//! ([`crate::token`]): the id names it in lists and audit events; the 256-bit secret is stored
//! only as SHA-256 (under a domain label of its own) and compared in constant time.
//!
//! A form's CSRF token is HMAC-SHA256 over the link id and a random nonce that also travels in a
//! `SameSite=Strict` cookie; the server checks that the cookie's nonce and the form's token
//! belong together, so a page on another origin can neither read nor forge the pair.
//!
//! A webhook body is signed as `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use rekey_types::LinkId;

use crate::keys::{random_32, SystemKey};
use crate::token::{hash_matches, BearerFormat};
use crate::CryptoError;

const LINK: BearerFormat = BearerFormat { prefix: "", separator: '.', domain: b"rekey-link-v1" };

/// A link as sent to a tenant, once. Zeroized on drop; no `Debug`.
pub struct IssuedLink {
    /// The link's id (stored).
    pub id: LinkId,
    /// The hash of its secret (stored; the secret is not).
    pub hash: [u8; 32],
    text: Zeroizing<String>,
}

impl IssuedLink {
    /// `<id>.<secret>`, the last part of the link's URL.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// A fresh reset link: a new id and a random secret.
pub fn issue_link() -> Result<IssuedLink, CryptoError> {
    let id = LinkId::generate();
    let (text, hash) = LINK.issue(id.as_uuid())?;
    Ok(IssuedLink { id, hash, text })
}

/// A link presented by a browser, split into id and the hash of its secret.
pub struct PresentedLink {
    /// The id it names.
    pub id: LinkId,
    hash: [u8; 32],
}

impl PresentedLink {
    /// Parses `<32 hex>.<64 hex>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, hash) = LINK.parse(text)?;
        Some(Self { id: LinkId::from_uuid(id), hash })
    }

    /// Constant-time comparison against the stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        hash_matches(&self.hash, stored_hash)
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The key of CSRF tokens; one per server process (a form outlives no restart). No `Debug`.
pub struct CsrfKey(SystemKey);

impl CsrfKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        SystemKey::generate().map(Self)
    }

    /// A fresh nonce (for the cookie) and its token (for the form).
    pub fn issue(&self, link: LinkId) -> Result<(String, String), CryptoError> {
        let nonce = hex::encode(random_32()?.as_ref());
        let token = self.token(link, &nonce);
        Ok((nonce, token))
    }

    fn token(&self, link: LinkId, nonce: &str) -> String {
        hex::encode(hmac(self.0.bytes(), &[b"rekey-csrf-v1", link.as_bytes(), nonce.as_bytes()]))
    }

    /// Whether a form's token belongs to the cookie's nonce and the link (constant time).
    pub fn check(&self, link: LinkId, nonce: &str, token: &str) -> bool {
        if nonce.len() != 64 || token.len() != 64 {
            return false;
        }
        let expected = self.token(link, nonce);
        bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The `Rekey-Signature` header of a webhook body sent at `timestamp` (Unix seconds).
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mac = hmac(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_links_parse_and_match_only_themselves() {
        let l = issue_link().unwrap();
        let p = PresentedLink::parse(l.expose()).unwrap();
        assert_eq!(p.id, l.id);
        assert!(p.matches(&l.hash));
        assert!(!p.matches(&issue_link().unwrap().hash));
        let mut forged = l.expose().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(!PresentedLink::parse(&forged).unwrap().matches(&l.hash));
        assert!(PresentedLink::parse("abc.def").is_none());
        assert!(PresentedLink::parse(&format!("{}.{}", "0".repeat(32), "z".repeat(64))).is_none());
    }

    #[test]
    fn csrf_tokens_bind_nonce_link_and_key() {
        let key = CsrfKey::generate().unwrap();
        let link = LinkId::generate();
        let (nonce, token) = key.issue(link).unwrap();
        assert!(key.check(link, &nonce, &token));
        assert!(!key.check(LinkId::generate(), &nonce, &token));
        let (other_nonce, _) = key.issue(link).unwrap();
        assert!(!key.check(link, &other_nonce, &token));
        assert!(!CsrfKey::generate().unwrap().check(link, &nonce, &token));
        assert!(!key.check(link, "", ""));
    }

    #[test]
    fn webhook_signature_matches_a_known_vector() {
        // HMAC-SHA256(key = "secret", "1700000000.{}"), computed independently with openssl.
        let sig = webhook_signature(b"secret", 1_700_000_000, b"{}");
        assert_eq!(sig, "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
        assert_ne!(sig, webhook_signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(sig, webhook_signature(b"other", 1_700_000_000, b"{}"));
    }
}
