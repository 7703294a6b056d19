//! A root keyring held in memory: the root key versions of a seal whose keys are not in an HSM
//! (the dev seal's file, or the keyring that Shamir shares unlock).
//!
//! Every version stays until it is destroyed, so blobs wrapped under an older root version open
//! while a root rotation moves them to the newest one. New wraps always use the newest version.

use std::collections::BTreeMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::KeyContext;
use crate::envelope::{open_blob, seal_blob, to_key, Header, Purpose};
use crate::keys::random_32;
use crate::CryptoError;

/// The id in the header of blobs wrapped by a root key: a hash of the key, so a blob names the
/// exact key that opens it without revealing anything about it.
pub(crate) fn root_key_id(key: &[u8; 32]) -> [u8; 16] {
    let digest = Sha256::new().chain_update(b"rekey-root-key-id").chain_update(key).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Root key versions and their bytes. No `Debug`, no `Clone`: the bytes never leave this crate.
#[derive(Default)]
pub struct RootKeyring {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

const KEYRING_MAGIC: &[u8; 4] = b"RKR1";

impl RootKeyring {
    /// The newest version, which new wraps use.
    pub fn active(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }

    /// The versions held.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Adds a fresh random key as the next version and returns that version.
    pub fn add_new(&mut self) -> Result<u32, CryptoError> {
        let version = self.active().unwrap_or(0) + 1;
        self.keys.insert(version, random_32()?);
        Ok(version)
    }

    pub(crate) fn insert(&mut self, version: u32, key: Zeroizing<[u8; 32]>) {
        self.keys.insert(version, key);
    }

    pub(crate) fn get(&self, version: u32) -> Option<&[u8; 32]> {
        self.keys.get(&version).map(|k| &**k)
    }

    /// Forgets a version (its key is zeroized); whether it was held.
    pub fn remove(&mut self, version: u32) -> bool {
        self.keys.remove(&version).is_some()
    }

    /// A copy holding the same keys (for building the next keyring of a Shamir rotation).
    pub fn duplicate(&self) -> Self {
        Self { keys: self.keys.iter().map(|(v, k)| (*v, Zeroizing::new(**k))).collect() }
    }

    /// `"RKR1" | count (u32 BE) | (version (u32 BE) | key (32))*`, in a zeroizing buffer.
    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(8 + self.keys.len() * 36));
        out.extend_from_slice(KEYRING_MAGIC);
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for (version, key) in &self.keys {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(key.as_ref());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = || CryptoError::Malformed("root keyring");
        if bytes.len() < 8 || &bytes[..4] != KEYRING_MAGIC {
            return Err(bad());
        }
        let count = u32::from_be_bytes(bytes[4..8].try_into().map_err(|_| bad())?) as usize;
        let body = &bytes[8..];
        if body.len() != count * 36 {
            return Err(bad());
        }
        let mut ring = Self::default();
        for entry in body.chunks_exact(36) {
            let version = u32::from_be_bytes(entry[..4].try_into().map_err(|_| bad())?);
            ring.insert(version, to_key(Zeroizing::new(entry[4..].to_vec()))?);
        }
        Ok(ring)
    }
}

/// A seal whose root keyring is in this process's memory; the dev and Shamir seals are built
/// on it. Empty means sealed.
#[derive(Default)]
pub(crate) struct MemorySeal {
    ring: RwLock<Option<RootKeyring>>,
}

impl MemorySeal {
    pub(crate) fn install(&self, ring: RootKeyring) {
        *self.ring.write().expect("keyring lock is never poisoned") = Some(ring);
    }

    /// Drops the keyring; its bytes are zeroized as it goes.
    pub(crate) fn wipe(&self) {
        self.ring.write().expect("keyring lock is never poisoned").take();
    }

    pub(crate) fn is_unsealed(&self) -> bool {
        self.ring.read().expect("keyring lock is never poisoned").is_some()
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&RootKeyring) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        match &*self.ring.read().expect("keyring lock is never poisoned") {
            Some(ring) => f(ring),
            None => Err(CryptoError::Sealed),
        }
    }

    pub(crate) fn with_mut<T>(
        &self,
        f: impl FnOnce(&mut RootKeyring) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        match &mut *self.ring.write().expect("keyring lock is never poisoned") {
            Some(ring) => f(ring),
            None => Err(CryptoError::Sealed),
        }
    }

    pub(crate) fn active(&self) -> Option<u32> {
        self.with(|r| Ok(r.active())).ok().flatten()
    }

    pub(crate) fn versions(&self) -> Vec<u32> {
        self.with(|r| Ok(r.versions())).unwrap_or_default()
    }

    pub(crate) fn wrap(&self, purpose: Purpose, ctx: KeyContext<'_>, key: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        self.with(|ring| {
            let version = ring.active().ok_or(CryptoError::Sealed)?;
            let root = ring.get(version).ok_or(CryptoError::Sealed)?;
            let header = Header { purpose, key_id: root_key_id(root), key_version: version };
            seal_blob(root, header, &ctx.bytes(), key)
        })
    }

    pub(crate) fn unwrap(
        &self,
        purpose: Purpose,
        ctx: KeyContext<'_>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let version = Header::parse(wrapped)?.key_version;
        self.with(|ring| {
            let root = ring.get(version).ok_or(CryptoError::RootVersionMissing(version))?;
            let header = Header { purpose, key_id: root_key_id(root), key_version: version };
            to_key(open_blob(root, header, &ctx.bytes(), wrapped)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_bytes_round_trip_and_reject_damage() {
        let mut ring = RootKeyring::default();
        assert_eq!(ring.add_new().unwrap(), 1);
        assert_eq!(ring.add_new().unwrap(), 2);
        let bytes = ring.to_bytes();
        let back = RootKeyring::from_bytes(&bytes).unwrap();
        assert_eq!(back.versions(), vec![1, 2]);
        assert_eq!(back.get(2), ring.get(2));
        assert!(RootKeyring::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(RootKeyring::from_bytes(b"RKR2\0\0\0\0").is_err());
    }

    #[test]
    fn unwraps_under_older_versions_and_wraps_under_the_newest() {
        let seal = MemorySeal::default();
        let mut ring = RootKeyring::default();
        ring.add_new().unwrap();
        seal.install(ring);
        let ctx = KeyContext::System { purpose: "t", version: 1 };
        let key = [7u8; 32];
        let old = seal.wrap(Purpose::WrappedSystemKey, ctx, &key).unwrap();
        seal.with_mut(|r| r.add_new()).unwrap();
        let new = seal.wrap(Purpose::WrappedSystemKey, ctx, &key).unwrap();
        assert_eq!(Header::parse(&old).unwrap().key_version, 1);
        assert_eq!(Header::parse(&new).unwrap().key_version, 2);
        assert_eq!(*seal.unwrap(Purpose::WrappedSystemKey, ctx, &old).unwrap(), key);
        seal.with_mut(|r| Ok(r.remove(1))).unwrap();
        assert!(matches!(seal.unwrap(Purpose::WrappedSystemKey, ctx, &old), Err(CryptoError::RootVersionMissing(1))));
        seal.wipe();
        assert!(matches!(seal.unwrap(Purpose::WrappedSystemKey, ctx, &new), Err(CryptoError::Sealed)));
    }
}
