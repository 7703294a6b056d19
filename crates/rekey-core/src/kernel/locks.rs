//! Per-credential locks, so that concurrent puts of one credential on this server take turns
//! instead of racing for the same version number. (Across servers sharing PostgreSQL the store's
//! version check still decides, and the loser retries.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rekey_types::TenantId;
use tokio::sync::OwnedMutexGuard;

type Key = (TenantId, String);

#[derive(Default)]
pub(crate) struct CredentialLocks {
    locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one credential is being written; releases (and forgets an idle lock) on drop.
pub(crate) struct CredentialGuard<'a> {
    owner: &'a CredentialLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl CredentialLocks {
    pub(crate) async fn lock(&self, tenant: TenantId, name: &str) -> CredentialGuard<'_> {
        let key = (tenant, name.to_owned());
        let mutex =
            self.locks.lock().expect("credential lock table is never poisoned").entry(key.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        CredentialGuard { owner: self, key, guard: Some(guard) }
    }
}

impl Drop for CredentialGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().expect("credential lock table is never poisoned");
        if locks.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&self.key);
        }
    }
}
