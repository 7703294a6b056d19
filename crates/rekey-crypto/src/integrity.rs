//! The integrity key: authenticates the rows a database writer could otherwise forge (tokens),
//! and fingerprints secrets so that a reused one is recognised without decrypting history.
//!
//! One system key, wrapped by the seal like the audit chain key, from which two keys are
//! derived with HKDF-SHA256 (RFC 5869) under distinct labels: one for row MACs, one for secret
//! fingerprints. A fingerprint is HMAC-SHA256 over the credential id and the secret: never a
//! bare hash, so a copy of the database cannot be used to test guesses of a password.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::SystemKey;
use crate::CryptoError;

/// A keyed fingerprint of one secret of one credential.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Constant-time equality.
    pub fn same(&self, other: &[u8]) -> bool {
        other.len() == 32 && bool::from(self.0.ct_eq(other))
    }
}

/// The integrity key. Zeroized on drop; no `Debug`.
pub struct IntegrityKey {
    system: SystemKey,
    rows: Zeroizing<[u8; 32]>,
    fingerprints: Zeroizing<[u8; 32]>,
}

impl IntegrityKey {
    /// The name the key is stored under.
    pub const PURPOSE: &'static str = "integrity";

    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_system_key(SystemKey::generate()?))
    }

    /// The key as unwrapped from the store; derives the row and fingerprint keys.
    pub fn from_system_key(system: SystemKey) -> Self {
        let hk = Hkdf::<Sha256>::new(None, system.bytes());
        let mut rows = Zeroizing::new([0u8; 32]);
        let mut fingerprints = Zeroizing::new([0u8; 32]);
        hk.expand(b"rekey/row-mac/v1", rows.as_mut()).expect("32 bytes is a valid HKDF length");
        hk.expand(b"rekey/fingerprint/v1", fingerprints.as_mut()).expect("32 bytes is a valid HKDF length");
        Self { system, rows, fingerprints }
    }

    /// The key, to be wrapped for the store.
    pub fn as_system_key(&self) -> &SystemKey {
        &self.system
    }

    /// The MAC of a row's canonical bytes, under a label naming the table.
    pub fn row_mac(&self, table: &str, canonical: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.rows.as_ref()).expect("HMAC takes any key length");
        mac.update(&(table.len() as u64).to_be_bytes());
        mac.update(table.as_bytes());
        mac.update(canonical);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a stored row MAC.
    pub fn row_ok(&self, table: &str, canonical: &[u8], stored: &[u8]) -> bool {
        let expected = self.row_mac(table, canonical);
        stored.len() == 32 && bool::from(expected.ct_eq(stored))
    }

    /// The fingerprint of `secret` as a secret of credential `credential` (its 16 id bytes).
    pub fn fingerprint(&self, credential: &[u8; 16], secret: &[u8]) -> Fingerprint {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.fingerprints.as_ref()).expect("HMAC takes any key length");
        mac.update(credential);
        mac.update(secret);
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

/// Canonical bytes of a list of fields: each length-prefixed, so no two lists encode the same.
pub fn canonical(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_macs_depend_on_key_table_and_bytes() {
        let k = IntegrityKey::generate().unwrap();
        let m = k.row_mac("tokens", b"row");
        assert!(k.row_ok("tokens", b"row", &m));
        assert!(!k.row_ok("tokens", b"rov", &m));
        assert!(!k.row_ok("versions", b"row", &m));
        assert!(!k.row_ok("tokens", b"row", &m[..31]));
        assert!(!IntegrityKey::generate().unwrap().row_ok("tokens", b"row", &m));
    }

    #[test]
    fn fingerprints_are_keyed_and_per_credential() {
        let k = IntegrityKey::generate().unwrap();
        let a = k.fingerprint(&[1; 16], b"hunter2");
        assert!(a.same(&k.fingerprint(&[1; 16], b"hunter2").0));
        assert!(!a.same(&k.fingerprint(&[2; 16], b"hunter2").0));
        assert!(!a.same(&k.fingerprint(&[1; 16], b"hunter3").0));
        assert!(!a.same(&IntegrityKey::generate().unwrap().fingerprint(&[1; 16], b"hunter2").0));
        // The two derived keys differ: a row MAC never equals a fingerprint of the same bytes.
        assert_ne!(k.row_mac("", b""), k.fingerprint(&[0; 16], b"").0);
    }

    #[test]
    fn canonical_is_unambiguous() {
        assert_ne!(canonical(&[b"ab", b"c"]), canonical(&[b"a", b"bc"]));
    }
}
