//! The audit chain's MAC.
//!
//! Each event's MAC is HMAC-SHA256 over the previous event's MAC and the event's canonical bytes,
//! keyed by a system key that the seal wraps. Someone with write access to the database but not
//! the root key can therefore neither forge an event nor re-chain the log after editing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::SystemKey;
use crate::CryptoError;

/// The MAC of the (empty) event before the first one.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The audit chain key. Zeroized on drop; no `Debug`.
pub struct AuditKey(SystemKey);

impl AuditKey {
    /// The name the key is stored under.
    pub const PURPOSE: &'static str = "audit-chain";

    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        SystemKey::generate().map(Self)
    }

    /// The key as unwrapped from the store.
    pub fn from_system_key(key: SystemKey) -> Self {
        Self(key)
    }

    /// The key, to be wrapped for the store.
    pub fn as_system_key(&self) -> &SystemKey {
        &self.0
    }

    /// `HMAC(key, prev || record)`.
    pub fn chain(&self, prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.bytes()).expect("HMAC takes any key length");
        mac.update(prev);
        mac.update(record);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a stored MAC.
    pub fn verify(&self, prev: &[u8; 32], record: &[u8], stored: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.chain(prev, record);
        stored.len() == 32 && bool::from(expected.ct_eq(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_key_prev_and_record() {
        let k = AuditKey::generate().unwrap();
        let m1 = k.chain(&GENESIS, b"a");
        assert!(k.verify(&GENESIS, b"a", &m1));
        assert!(!k.verify(&GENESIS, b"b", &m1));
        assert!(!k.verify(&m1, b"a", &m1));
        let other = AuditKey::generate().unwrap();
        assert!(!other.verify(&GENESIS, b"a", &m1));
        assert!(!k.verify(&GENESIS, b"a", &m1[..31]));
    }

    /// RFC 4231 test case 2: the HMAC-SHA256 underneath is the real one.
    #[test]
    fn hmac_sha256_known_answer() {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
