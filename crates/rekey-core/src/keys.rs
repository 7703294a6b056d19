//! The unwrapped-KEK cache. A KEK is unwrapped by the seal once and kept (zeroized on eviction),
//! so a reveal costs one AES-GCM unwrap of the DEK and one decryption, not a trip to the seal.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rekey_crypto::{Kek, KeyContext, Seal};
use rekey_store::Store;
use rekey_types::TenantId;

use crate::CoreError;

/// Most KEKs kept unwrapped; past this the cache is emptied and refills on demand.
const MAX_CACHED: usize = 200_000;

#[derive(Default)]
pub(crate) struct KekCache {
    keys: RwLock<HashMap<(TenantId, u32), Arc<Kek>>>,
}

impl KekCache {
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        seal: &dyn Seal,
        tenant: TenantId,
        version: u32,
    ) -> Result<Arc<Kek>, CoreError> {
        if let Some(k) = self.keys.read().expect("KEK cache lock is never poisoned").get(&(tenant, version)) {
            return Ok(k.clone());
        }
        let row = store
            .kek(tenant, version)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("key version {tenant}/{version}")))?;
        let kek =
            seal.unwrap_kek(KeyContext::TenantKek { tenant, version }, &row.wrapped).map_err(CoreError::Decrypt)?;
        let kek = Arc::new(kek);
        self.insert(tenant, version, kek.clone());
        Ok(kek)
    }

    pub(crate) fn insert(&self, tenant: TenantId, version: u32, kek: Arc<Kek>) {
        let mut keys = self.keys.write().expect("KEK cache lock is never poisoned");
        if keys.len() >= MAX_CACHED {
            keys.clear();
        }
        keys.insert((tenant, version), kek);
    }
}
