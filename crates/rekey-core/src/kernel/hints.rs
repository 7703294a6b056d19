//! What a `put` last saw of a credential, kept so that the next put of it need not read the
//! store first.
//!
//! A put reads three rows before it writes: the tenant (by name), the credential (by tenant and
//! name) and the tenant's active KEK version. Each of them is checked again by the write itself,
//! inside the writer's transaction: the new version is stored only if the KEK is still active,
//! and only over the credential's latest version, live, of the same kind. So a hint may be stale
//! without harm: the write fails with a conflict, the put forgets the hint and tries again with
//! fresh reads (as it does when two servers race for one version). A tenant's name and id never
//! change (tenants are shredded, not deleted, and a shredded tenant has no active KEK).
//!
//! Every write this server makes keeps the hints current ([`PutHints::before`] and
//! [`PutHints::after`] around each write): a new version of a credential (by any use case)
//! replaces its hint, a deletion or a key changing state removes one. So only a write made by
//! another server sharing the database costs a put its retry.
//!
//! Nothing here is secret: rows without payloads, and version numbers.

use std::collections::HashMap;
use std::sync::Mutex;

use rekey_store::{CredentialRow, KekRow, TenantRow, WriteOp};
use rekey_types::{CredentialId, TenantId};

/// Entries kept per table; the table is emptied when it is full (puts of the same credentials
/// refill it at once).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub(crate) struct PutHints {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<String, TenantRow>,
    keks: HashMap<TenantId, u32>,
    credentials: HashMap<(TenantId, String), CredentialRow>,
}

/// What a successful write changes in the hints.
pub(crate) enum Touch {
    Nothing,
    Wrote(Box<CredentialRow>),
    Deleted(CredentialId),
}

/// What the last put of a credential saw; `None` where nothing is known.
pub(crate) struct Hint {
    pub tenant: TenantRow,
    pub kek_version: Option<u32>,
    pub credential: Option<CredentialRow>,
}

fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

impl PutHints {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the hint table is never poisoned: no panics while held")
    }

    /// The hints for `tenant/name`, if the tenant is known.
    pub(crate) fn get(&self, tenant: &str, name: &str) -> Option<Hint> {
        let inner = self.inner();
        let row = inner.tenants.get(tenant)?.clone();
        let kek_version = inner.keks.get(&row.id).copied();
        let credential = inner.credentials.get(&(row.id, name.to_owned())).cloned();
        Some(Hint { tenant: row, kek_version, credential })
    }

    /// Remembers the tenant and the KEK version a put just wrote under (the credential row itself
    /// is remembered by [`PutHints::after`], as for every write).
    pub(crate) fn wrote_under(&self, tenant: &TenantRow, kek_version: u32) {
        let mut inner = self.inner();
        bounded(&mut inner.tenants, tenant.name.clone(), tenant.clone());
        bounded(&mut inner.keks, tenant.id, kek_version);
    }

    /// Called before a write is submitted: a tenant key changing state is forgotten at once
    /// (puts from now on read the active one); what to do once the write succeeds is returned.
    pub(crate) fn before(&self, op: &Option<WriteOp>) -> Touch {
        match op {
            Some(WriteOp::CreateKek(KekRow { tenant_id: tenant, .. }) | WriteOp::SetKekState { tenant, .. }) => {
                self.inner().keks.remove(tenant);
                Touch::Nothing
            }
            Some(WriteOp::PutVersion { credential, .. }) => Touch::Wrote(Box::new(credential.clone())),
            // A put with the operations that go with it (a certificate, campaign items).
            Some(WriteOp::All(ops)) => match ops.first() {
                Some(WriteOp::PutVersion { credential, .. }) => Touch::Wrote(Box::new(credential.clone())),
                _ => Touch::Nothing,
            },
            Some(WriteOp::DeleteCredential { id, .. }) => Touch::Deleted(*id),
            _ => Touch::Nothing,
        }
    }

    /// Called once a write succeeded, with what [`PutHints::before`] returned for it.
    pub(crate) fn after(&self, touch: Touch) {
        match touch {
            Touch::Nothing => {}
            Touch::Wrote(credential) => {
                let mut inner = self.inner();
                bounded(&mut inner.credentials, (credential.tenant_id, credential.name.clone()), *credential);
            }
            Touch::Deleted(id) => self.inner().credentials.retain(|_, c| c.id != id),
        }
    }

    /// Forgets everything about `tenant/name` (after a conflict, or a write that failed).
    pub(crate) fn forget(&self, tenant: &TenantRow, name: &str) {
        let mut inner = self.inner();
        inner.tenants.remove(&tenant.name);
        inner.keks.remove(&tenant.id);
        inner.credentials.remove(&(tenant.id, name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_types::{CredentialId, CredentialKind, Timestamp};

    fn tenant(name: &str) -> TenantRow {
        TenantRow {
            id: TenantId::generate(),
            name: name.into(),
            region: "uk".into(),
            contacts: vec![],
            state: rekey_types::TenantState::Active,
            created_at: Timestamp::now(),
        }
    }

    fn credential(tenant: &TenantRow, name: &str, version: u32) -> CredentialRow {
        CredentialRow {
            id: CredentialId::generate(),
            tenant_id: tenant.id,
            name: name.into(),
            kind: CredentialKind::Generic,
            fields: Default::default(),
            labels: Default::default(),
            current_version: version,
            latest_version: version,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            frozen_by: None,
        }
    }

    fn put(credential: CredentialRow) -> WriteOp {
        let version = rekey_store::VersionRow {
            credential_id: credential.id,
            version: credential.latest_version,
            stage: rekey_types::Stage::Current,
            kek_version: 1,
            wrapped_dek: vec![],
            ciphertext: vec![],
            created_by: "test".into(),
            created_at: Timestamp::now(),
            fields: Some(Default::default()),
            binding: None,
            fingerprint: None,
        };
        WriteOp::PutVersion { credential, version, create: false }
    }

    #[test]
    fn remembers_what_was_written_and_forgets_on_demand() {
        let hints = PutHints::default();
        assert!(hints.get("acme", "dir").is_none());
        let acme = tenant("acme");
        hints.wrote_under(&acme, 2);
        hints.after(hints.before(&Some(put(credential(&acme, "dir", 5)))));
        let hint = hints.get("acme", "dir").expect("known tenant");
        assert_eq!((hint.tenant.id, hint.kek_version), (acme.id, Some(2)));
        assert_eq!(hint.credential.map(|c| c.latest_version), Some(5));
        let other = hints.get("acme", "other").expect("known tenant");
        assert!(other.credential.is_none(), "only what was written");
        hints.forget(&acme, "dir");
        assert!(hints.get("acme", "dir").is_none());
    }

    #[test]
    fn stays_bounded() {
        let hints = PutHints::default();
        let acme = tenant("acme");
        for i in 0..(MAX_ENTRIES + 10) {
            hints.wrote_under(&acme, 1);
            hints.after(hints.before(&Some(put(credential(&acme, &format!("c{i}"), 1)))));
        }
        assert!(hints.inner().credentials.len() <= MAX_ENTRIES);
        assert!(hints.get("acme", &format!("c{}", MAX_ENTRIES + 9)).and_then(|h| h.credential).is_some());
    }
}
