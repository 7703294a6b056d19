//! The unwrapped-KEK cache. A KEK is unwrapped by the seal once and kept (zeroized on eviction),
//! so a reveal costs one AES-GCM unwrap of the DEK and one decryption, not a trip to the seal.
//!
//! Each entry remembers the key's state and root version, and the store's key epoch read before
//! them (a counter a trigger moves on every change to a key row, see [`Store::key_epoch`]). An
//! entry is trusted while the epoch, read again at most every [`STATE_TTL`], has not moved since;
//! when it has, the entry's row is read again. So a key marked compromised or destroyed by
//! another server sharing the database (or by an edit of the database) stops serving here within
//! that time (at once when this server made the change), and while no key changes, a reveal reads
//! no key row, however many tenants are served.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rekey_crypto::{Kek, KeyContext, Seal};
use rekey_store::Store;
use rekey_types::{KeyState, TenantId};

use crate::CoreError;

/// Most KEKs kept unwrapped; past this the cache is emptied and refills on demand.
const MAX_CACHED: usize = 200_000;

/// How long a key's state is trusted before it is read from the store again.
pub(crate) const STATE_TTL: Duration = Duration::from_secs(1);

/// What the caller will do with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyUse {
    /// Decrypt for a caller, or encrypt new data: refused under a compromised key.
    Serve,
    /// Move wrapped DEKs off the key (an operator's rotation): allowed while compromised.
    Rewrap,
}

struct Entry {
    kek: Arc<Kek>,
    state: KeyState,
    root_version: u32,
    /// The key epoch read before the state was.
    epoch: u64,
}

#[derive(Default)]
pub(crate) struct KekCache {
    keys: RwLock<HashMap<(TenantId, u32), Entry>>,
    /// The store's key epoch as last read, and when.
    epoch: RwLock<Option<(u64, Instant)>>,
    /// Root key versions and their states, as last read from the store.
    roots: RwLock<(BTreeMap<u32, KeyState>, Option<Instant>)>,
}

/// Refuses a key in `state` for `use_`; `what` names it (only formatted when refusing).
fn refuse(state: KeyState, what: impl FnOnce() -> String, use_: KeyUse) -> Result<(), CoreError> {
    match state {
        KeyState::Destroyed => Err(CoreError::KeyDestroyed(format!(
            "key version {} was destroyed; what it wrapped is unrecoverable",
            what()
        ))),
        KeyState::Compromised if use_ == KeyUse::Serve => Err(CoreError::KeyCompromised(format!(
            "key version {} is marked compromised; this data is served again once a rotation has moved it off that key",
            what()
        ))),
        _ => Ok(()),
    }
}

impl KekCache {
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        seal: &dyn Seal,
        tenant: TenantId,
        version: u32,
        use_: KeyUse,
    ) -> Result<Arc<Kek>, CoreError> {
        let what = || format!("{tenant}@{version}");
        // The key as kept, if it was read under `epoch`.
        let kept = |epoch: Option<u64>| -> Result<Option<(Arc<Kek>, u32)>, CoreError> {
            let keys = self.keys.read().expect("KEK cache lock is never poisoned");
            match keys.get(&(tenant, version)).filter(|e| Some(e.epoch) == epoch) {
                Some(e) => {
                    refuse(e.state, what, use_)?;
                    Ok(Some((e.kek.clone(), e.root_version)))
                }
                None => Ok(None),
            }
        };
        if let Some((kek, root)) = kept(self.known_epoch())? {
            self.check_root(store, root, use_).await?;
            return Ok(kek);
        }
        // Not kept under the epoch last read, which may only be old: read it, and look again.
        let epoch = self.read_epoch(store).await?;
        if let Some((kek, root)) = kept(Some(epoch))? {
            self.check_root(store, root, use_).await?;
            return Ok(kek);
        }
        let row =
            store.kek(tenant, version).await?.ok_or_else(|| CoreError::NotFound(format!("key version {}", what())))?;
        refuse(row.state, what, use_)?;
        self.check_root(store, row.root_version, use_).await?;
        let reuse = {
            let keys = self.keys.read().expect("KEK cache lock is never poisoned");
            keys.get(&(tenant, version)).map(|e| e.kek.clone())
        };
        let kek = match reuse {
            Some(k) => k,
            None => Arc::new(
                seal.unwrap_kek(KeyContext::TenantKek { tenant, version }, &row.wrapped)
                    .map_err(CoreError::from_seal)?,
            ),
        };
        self.insert_at(epoch, tenant, version, kek.clone(), row.state, row.root_version);
        Ok(kek)
    }

    /// The key epoch last read, if read within [`STATE_TTL`].
    fn known_epoch(&self) -> Option<u64> {
        let epoch = self.epoch.read().expect("key epoch lock is never poisoned");
        epoch.filter(|(_, at)| at.elapsed() < STATE_TTL).map(|(n, _)| n)
    }

    async fn read_epoch(&self, store: &dyn Store) -> Result<u64, CoreError> {
        let n = store.key_epoch().await?;
        *self.epoch.write().expect("key epoch lock is never poisoned") = Some((n, Instant::now()));
        Ok(n)
    }

    async fn check_root(&self, store: &dyn Store, root: u32, use_: KeyUse) -> Result<(), CoreError> {
        let check = |map: &BTreeMap<u32, KeyState>| match map.get(&root) {
            Some(state) => refuse(*state, || format!("root@{root}"), use_),
            // Registered at start; a version the store does not know is one being added now.
            None => Ok(()),
        };
        {
            let roots = self.roots.read().expect("root state lock is never poisoned");
            if roots.1.is_some_and(|at| at.elapsed() < STATE_TTL) {
                return check(&roots.0);
            }
        }
        let map: BTreeMap<u32, KeyState> = store.root_keys().await?.into_iter().map(|r| (r.version, r.state)).collect();
        let result = check(&map);
        *self.roots.write().expect("root state lock is never poisoned") = (map, Some(Instant::now()));
        result
    }

    /// Keeps a key this server just made, in `state`.
    pub(crate) fn insert(&self, tenant: TenantId, version: u32, kek: Arc<Kek>, state: KeyState, root_version: u32) {
        // The epoch last read is no later than the state: at worst the row is read once more.
        let epoch = self.epoch.read().expect("key epoch lock is never poisoned").map_or(0, |(n, _)| n);
        self.insert_at(epoch, tenant, version, kek, state, root_version);
    }

    fn insert_at(&self, epoch: u64, tenant: TenantId, version: u32, kek: Arc<Kek>, state: KeyState, root_version: u32) {
        let mut keys = self.keys.write().expect("KEK cache lock is never poisoned");
        if keys.len() >= MAX_CACHED {
            keys.clear();
        }
        keys.insert((tenant, version), Entry { kek, state, root_version, epoch });
    }

    /// Forgets what is known about a key (after this server changed its state) or about all
    /// root versions, so the next use reads the store.
    pub(crate) fn forget(&self, tenant: TenantId, version: u32) {
        self.keys.write().expect("KEK cache lock is never poisoned").remove(&(tenant, version));
    }

    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        self.keys.write().expect("KEK cache lock is never poisoned").retain(|(t, _), _| *t != tenant);
    }

    pub(crate) fn forget_roots(&self) {
        self.roots.write().expect("root state lock is never poisoned").1 = None;
    }

    /// Drops every unwrapped key (zeroized as the last reference goes).
    pub(crate) fn clear(&self) {
        self.keys.write().expect("KEK cache lock is never poisoned").clear();
        self.forget_roots();
    }
}
