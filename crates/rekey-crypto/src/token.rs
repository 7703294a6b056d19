//! API tokens: `rk_<id>_<secret>`.
//!
//! The id is public (it names the token in lists and audit events); the 256-bit secret is shown
//! once and stored only as SHA-256. A fast hash is right here: the secret is uniformly random, so
//! there is nothing for a slow password hash to protect. Comparison is constant-time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use rekey_types::TokenId;

use crate::keys::random_32;
use crate::CryptoError;

/// A bearer secret as Rekey hands them out: `<prefix><id as 32 hex><separator><64 hex>`. The id is
/// public; the 256-bit secret is shown once and kept only as SHA-256 under a domain label of its
/// own, so that a token's hash can never stand for a link's. Shared by API tokens and reset links.
pub(crate) struct BearerFormat {
    pub prefix: &'static str,
    pub separator: char,
    pub domain: &'static [u8],
}

impl BearerFormat {
    /// The text and the hash of a fresh secret for `id`.
    pub(crate) fn issue(&self, id: &uuid::Uuid) -> Result<(Zeroizing<String>, [u8; 32]), CryptoError> {
        let secret = random_32()?;
        let secret_hex = Zeroizing::new(hex::encode(secret.as_ref()));
        let hash = self.hash(secret_hex.as_bytes());
        let text = Zeroizing::new(format!("{}{}{}{}", self.prefix, id.simple(), self.separator, secret_hex.as_str()));
        Ok((text, hash))
    }

    /// The id and the hash of the secret of a presented text; `None` unless it has the exact shape.
    pub(crate) fn parse(&self, text: &str) -> Option<(uuid::Uuid, [u8; 32])> {
        let rest = text.strip_prefix(self.prefix)?;
        let (id, secret) = rest.split_once(self.separator)?;
        if id.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = uuid::Uuid::try_parse(id).ok()?;
        Some((id, self.hash(secret.to_ascii_lowercase().as_bytes())))
    }

    fn hash(&self, secret: &[u8]) -> [u8; 32] {
        Sha256::new().chain_update(self.domain).chain_update(secret).finalize().into()
    }
}

/// Constant-time comparison of a presented secret's hash with the stored one.
pub(crate) fn hash_matches(presented: &[u8; 32], stored: &[u8]) -> bool {
    stored.len() == 32 && bool::from(presented.ct_eq(stored))
}

const TOKEN: BearerFormat = BearerFormat { prefix: "rk_", separator: '_', domain: b"rekey-token-v1" };

/// A token as shown to its owner, once. Zeroized on drop; no `Debug`.
pub struct IssuedToken {
    /// The token's id (stored).
    pub id: TokenId,
    /// The hash of its secret (stored; the secret is not).
    pub hash: [u8; 32],
    text: Zeroizing<String>,
}

impl IssuedToken {
    /// `rk_<id>_<secret>`, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// A fresh token: a new id and a random secret.
pub fn issue() -> Result<IssuedToken, CryptoError> {
    let id = TokenId::generate();
    let (text, hash) = TOKEN.issue(id.as_uuid())?;
    Ok(IssuedToken { id, hash, text })
}

/// A token presented by a client, split into id and the hash of its secret.
pub struct PresentedToken {
    /// The id it names.
    pub id: TokenId,
    hash: [u8; 32],
}

impl PresentedToken {
    /// Parses `rk_<32 hex>_<64 hex>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, hash) = TOKEN.parse(text)?;
        Some(Self { id: TokenId::from_uuid(id), hash })
    }

    /// Constant-time comparison against the stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        hash_matches(&self.hash, stored_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_match() {
        let t = issue().unwrap();
        let p = PresentedToken::parse(t.expose()).unwrap();
        assert_eq!(p.id, t.id);
        assert!(p.matches(&t.hash));
        let other = issue().unwrap();
        assert!(!p.matches(&other.hash));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = issue().unwrap();
        let text = t.expose().to_owned();
        for bad in [
            "",
            "rk_",
            &text[..text.len() - 1],
            &text.replace("rk_", "xx_"),
            &format!("{text}0"),
            "rk_00000000000000000000000000000000_zz",
        ] {
            assert!(PresentedToken::parse(bad).is_none(), "{bad:?}");
        }
        // Right shape, wrong secret.
        let mut forged = text.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(!PresentedToken::parse(&forged).unwrap().matches(&t.hash));
    }
}
