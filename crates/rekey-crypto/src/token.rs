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

const PREFIX: &str = "rk_";

/// A token as shown to its owner, once. Zeroized on drop; no `Debug`.
pub struct IssuedToken {
    pub id: TokenId,
    pub hash: [u8; 32],
    text: Zeroizing<String>,
}

impl IssuedToken {
    pub fn expose(&self) -> &str {
        &self.text
    }
}

pub fn issue() -> Result<IssuedToken, CryptoError> {
    let id = TokenId::generate();
    let secret = random_32()?;
    let secret_hex = Zeroizing::new(hex::encode(secret.as_ref()));
    let hash = hash_secret(secret_hex.as_bytes());
    let text = Zeroizing::new(format!("{PREFIX}{}_{}", id.as_uuid().simple(), secret_hex.as_str()));
    Ok(IssuedToken { id, hash, text })
}

fn hash_secret(secret: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(b"rekey-token-v1").chain_update(secret).finalize().into()
}

/// A token presented by a client, split into id and the hash of its secret.
pub struct PresentedToken {
    pub id: TokenId,
    hash: [u8; 32],
}

impl PresentedToken {
    /// Parses `rk_<32 hex>_<64 hex>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = uuid::Uuid::try_parse(id).ok()?;
        Some(Self { id: TokenId::from_uuid(id), hash: hash_secret(secret.to_ascii_lowercase().as_bytes()) })
    }

    /// Constant-time comparison against the stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        stored_hash.len() == 32 && bool::from(self.hash.ct_eq(stored_hash))
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
