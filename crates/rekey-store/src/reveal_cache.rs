//! Reveal rows (wrapped data key and ciphertext, never a secret in clear) kept in memory for
//! a SQLite store, so that a reveal of a credential read before costs no B-tree walk.
//!
//! Sound because this process is the only writer of its SQLite file (see `crate::sqlite`): after
//! each commit the writer says what it may have changed ([`Changes`]), and the cache drops
//! exactly that. A put of a new version drops that credential's row; a write this module does
//! not know to be narrow (a freeze, a rewrap, a tenant shredded, any write outside the audit
//! writer's groups) drops every row. A commit becomes visible before the cache hears of it, but
//! it is acknowledged to nobody until after (its sync comes later still), so no caller can see a
//! write acknowledged and then get the row from before it.
//!
//! A row read from the database races with the writer: it may have been read just before a
//! commit that changed it and be offered to the cache just after. So every read takes the
//! cache's epoch first, and [`RevealCache::put`] keeps the row only if no write that may have
//! changed it has been announced since that epoch.
//!
//! Bounded by weight (an estimate of each entry's bytes, see [`weight`]); quick_cache's
//! S3-FIFO policy chooses what to evict.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use rekey_types::TenantId;

use crate::{RevealCacheStats, RevealRow, WriteOp, WriteRequest};

/// Default budget: about 600,000 rows of the usual size.
pub(crate) const DEFAULT_BYTES: u64 = 256 * 1024 * 1024;

/// Narrow invalidations remembered for [`RevealCache::put`]'s check. A read older than the
/// oldest of them is not kept (it is treated as if everything changed since).
const RECENT: usize = 4096;

/// What a committed write may have changed, for the cache.
#[derive(Debug, Default)]
pub(crate) enum Changes {
    /// Nothing a reveal reads (audit events only, tokens, jobs, campaigns' bookkeeping).
    #[default]
    Nothing,
    /// These credentials' rows, by tenant and name.
    Credentials(Vec<(TenantId, String)>),
    /// Possibly any row.
    Everything,
}

impl Changes {
    /// What a group of the audit writer's requests may change.
    pub(crate) fn of(requests: &[WriteRequest]) -> Changes {
        Self::of_ops(requests.iter().filter_map(|r| r.op.as_ref()))
    }

    /// What operations committed together may change. A freeze lifted by a put of the same
    /// credential in the same commit changes only that credential's row, which the put drops.
    fn of_ops<'a>(ops: impl Iterator<Item = &'a WriteOp> + Clone) -> Changes {
        let puts: Vec<_> = ops
            .clone()
            .filter_map(|op| match op {
                WriteOp::PutVersion { credential, .. } => Some(credential.id),
                _ => None,
            })
            .collect();
        ops.fold(Changes::Nothing, |all, op| {
            all.and(match op {
                WriteOp::LiftFreeze { credential, .. } if puts.contains(credential) => Changes::Nothing,
                op => Self::of_op(op),
            })
        })
    }

    /// What one operation may change. Only what is known to leave every reveal row alone is
    /// `Nothing`, and only a put of a version is narrow; anything else, including what is added
    /// later, empties the cache.
    fn of_op(op: &WriteOp) -> Changes {
        match op {
            WriteOp::PutVersion { credential, .. } => {
                Changes::Credentials(vec![(credential.tenant_id, credential.name.clone())])
            }
            WriteOp::All(ops) => Self::of_ops(ops.iter()),
            WriteOp::ItemsRotated { .. }
            | WriteOp::CreateTenant { .. }
            | WriteOp::CreateToken(_)
            | WriteOp::RevokeToken { .. }
            | WriteOp::RenewToken { .. }
            | WriteOp::PutAuthRole(_)
            | WriteOp::DeleteAuthRole { .. }
            | WriteOp::SealTokens(_)
            | WriteOp::CreateKek(_)
            | WriteOp::InsertRootKey(_)
            | WriteOp::CreateJob(_)
            | WriteOp::FinishJob { .. }
            | WriteOp::CommitKeyring { .. }
            | WriteOp::ReplaceKeyring(_)
            | WriteOp::InsertCertificate(_)
            | WriteOp::RevokeCertificate { .. }
            | WriteOp::InsertRotation(_)
            | WriteOp::SetRotation { .. }
            | WriteOp::RecordHealth(_)
            | WriteOp::SetReminded { .. }
            | WriteOp::QueueNotices(_)
            | WriteOp::SetNotice(_)
            | WriteOp::InsertLink(_)
            | WriteOp::UseLink { .. }
            | WriteOp::RevokeLink { .. } => Changes::Nothing,
            _ => Changes::Everything,
        }
    }

    /// Both `self` and `other`.
    pub(crate) fn and(self, other: Changes) -> Changes {
        match (self, other) {
            (Changes::Everything, _) | (_, Changes::Everything) => Changes::Everything,
            (Changes::Nothing, c) | (c, Changes::Nothing) => c,
            (Changes::Credentials(mut a), Changes::Credentials(b)) => {
                a.extend(b);
                Changes::Credentials(a)
            }
        }
    }
}

/// A row as kept: the target fields as their JSON text (a map of strings costs several times
/// its text in memory), the two blobs in one allocation.
struct Cached {
    frozen_by: Option<Box<str>>,
    tenant_id: TenantId,
    credential_id: rekey_types::CredentialId,
    kind: rekey_types::CredentialKind,
    version: u32,
    created_at: rekey_types::Timestamp,
    kek_version: u32,
    /// The wrapped data key, then the ciphertext.
    blobs: Box<[u8]>,
    dek_len: usize,
    fields: Option<Box<str>>,
}

impl Cached {
    fn of(row: &RevealRow) -> Option<Self> {
        let fields = match &row.fields {
            Some(f) => Some(serde_json::to_string(f).ok()?.into_boxed_str()),
            None => None,
        };
        let mut blobs = Vec::with_capacity(row.wrapped_dek.len() + row.ciphertext.len());
        blobs.extend_from_slice(&row.wrapped_dek);
        blobs.extend_from_slice(&row.ciphertext);
        Some(Self {
            frozen_by: row.frozen_by.as_deref().map(Into::into),
            tenant_id: row.tenant_id,
            credential_id: row.credential_id,
            kind: row.kind,
            version: row.version,
            created_at: row.created_at,
            kek_version: row.kek_version,
            blobs: blobs.into_boxed_slice(),
            dek_len: row.wrapped_dek.len(),
            fields,
        })
    }

    fn row(&self) -> Option<RevealRow> {
        let fields = match &self.fields {
            Some(f) => Some(serde_json::from_str(f).ok()?),
            None => None,
        };
        let (dek, ciphertext) = self.blobs.split_at(self.dek_len);
        Some(RevealRow {
            frozen_by: self.frozen_by.as_deref().map(Into::into),
            tenant_id: self.tenant_id,
            credential_id: self.credential_id,
            kind: self.kind,
            version: self.version,
            created_at: self.created_at,
            kek_version: self.kek_version,
            wrapped_dek: dek.to_vec(),
            ciphertext: ciphertext.to_vec(),
            fields,
        })
    }
}

/// `(tenant name, credential name)`.
#[derive(PartialEq, Eq)]
struct Key(Box<str>, Box<str>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef(&self.0, &self.1).hash(state);
    }
}

/// A [`Key`] borrowed, to look one up without allocating.
struct KeyRef<'a>(&'a str, &'a str);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl quick_cache::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}

/// An estimate of the bytes an entry holds: its heap allocations plus the fixed parts (the
/// entry, the table's slot, allocator headers).
fn weight(key: &Key, value: &Cached) -> u64 {
    const FIXED: usize = 192;
    (FIXED
        + key.0.len()
        + key.1.len()
        + value.blobs.len()
        + value.fields.as_deref().map_or(0, str::len)
        + value.frozen_by.as_deref().map_or(0, str::len)) as u64
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Key, Cached> for Weigh {
    fn weight(&self, key: &Key, value: &Cached) -> u64 {
        weight(key, value)
    }
}

struct Inner {
    rows: quick_cache::unsync::Cache<Key, Cached, Weigh>,
    /// Advanced by every announced write that may have changed a row.
    epoch: u64,
    /// Rows read before this epoch are not kept: a write since may have changed any row.
    floor: u64,
    /// The latest narrow invalidations, oldest first, with the epoch each was announced at.
    recent: VecDeque<(u64, TenantId, Box<str>)>,
    /// The names of the tenants whose rows are kept (a write names a tenant by id).
    tenants: HashMap<TenantId, Box<str>>,
    hits: u64,
    misses: u64,
}

/// See the module's documentation.
pub(crate) struct RevealCache {
    inner: Mutex<Inner>,
}

impl RevealCache {
    pub(crate) fn new(bytes: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rows: quick_cache::unsync::Cache::with_weighter(Self::items(bytes), bytes.max(1), Weigh),
                epoch: 0,
                floor: 0,
                recent: VecDeque::with_capacity(RECENT),
                tenants: HashMap::new(),
                hits: 0,
                misses: 0,
            }),
        }
    }

    /// The number of rows to size the table for, from a budget in bytes.
    fn items(bytes: u64) -> usize {
        usize::try_from(bytes / 512).unwrap_or(usize::MAX).max(16)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("reveal cache lock is never poisoned: nothing in it panics")
    }

    /// Sets the budget in bytes (0 keeps nothing); rows over it are evicted.
    pub(crate) fn set_budget(&self, bytes: u64) {
        let mut inner = self.lock();
        if bytes == 0 {
            inner.rows.clear();
            inner.tenants.clear();
        }
        inner.rows.set_capacity(bytes);
    }

    /// The epoch to read a row under: take it before reading the row.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The row of `tenant`'s credential `name`, if one is kept.
    pub(crate) fn get(&self, tenant: &str, name: &str) -> Option<RevealRow> {
        let mut inner = self.lock();
        let row = inner.rows.get(&KeyRef(tenant, name)).and_then(Cached::row);
        match row {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        row
    }

    /// Keeps `row`, read from the database after [`RevealCache::epoch`] returned `seen`, unless
    /// a write announced since may have changed it.
    pub(crate) fn put(&self, tenant: &str, name: &str, seen: u64, row: &RevealRow) {
        let mut inner = self.lock();
        if seen < inner.floor || inner.rows.capacity() == 0 {
            return;
        }
        let changed_since = inner.recent.iter().rev().take_while(|(at, _, _)| *at > seen);
        if changed_since.into_iter().any(|(_, t, n)| *t == row.tenant_id && **n == *name) {
            return;
        }
        let Some(cached) = Cached::of(row) else { return };
        inner.tenants.entry(row.tenant_id).or_insert_with(|| tenant.into());
        inner.rows.insert(Key(tenant.into(), name.into()), cached);
    }

    /// Hears of a committed write, before it is acknowledged to anyone.
    pub(crate) fn changed(&self, changes: Changes) {
        let mut inner = self.lock();
        match changes {
            Changes::Nothing => {}
            Changes::Everything => {
                inner.epoch += 1;
                inner.floor = inner.epoch;
                inner.rows.clear();
                inner.tenants.clear();
                inner.recent.clear();
            }
            Changes::Credentials(list) => {
                inner.epoch += 1;
                let epoch = inner.epoch;
                for (tenant, name) in list {
                    if let Some(tenant_name) = inner.tenants.get(&tenant).cloned() {
                        inner.rows.remove(&KeyRef(&tenant_name, &name));
                    }
                    if inner.recent.len() == RECENT {
                        // A read older than what is forgotten here is no longer kept.
                        if let Some((at, _, _)) = inner.recent.pop_front() {
                            inner.floor = inner.floor.max(at);
                        }
                    }
                    inner.recent.push_back((epoch, tenant, name.into()));
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> RevealCacheStats {
        let inner = self.lock();
        RevealCacheStats {
            rows: inner.rows.len() as u64,
            bytes: inner.rows.weight(),
            budget: inner.rows.capacity(),
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rekey_types::{CredentialId, CredentialKind};

    use super::*;

    fn row(tenant: TenantId, version: u32) -> RevealRow {
        RevealRow {
            frozen_by: None,
            tenant_id: tenant,
            credential_id: CredentialId::generate(),
            kind: CredentialKind::Ldap,
            version,
            created_at: rekey_types::Timestamp::now(),
            kek_version: 1,
            wrapped_dek: vec![1; 60],
            ciphertext: vec![2; 100],
            fields: Some(BTreeMap::from([("url".into(), "ldap://x".into())])),
        }
    }

    fn put_op(tenant: TenantId, name: &str) -> (rekey_types::CredentialId, WriteOp) {
        let id = CredentialId::generate();
        let at = rekey_types::Timestamp::now();
        let credential = crate::CredentialRow {
            id,
            tenant_id: tenant,
            name: name.into(),
            kind: CredentialKind::Generic,
            fields: BTreeMap::new(),
            labels: BTreeMap::new(),
            current_version: 1,
            latest_version: 1,
            frozen_by: None,
            created_at: at,
            updated_at: at,
        };
        let version = crate::VersionRow {
            credential_id: id,
            version: 1,
            stage: rekey_types::Stage::Current,
            kek_version: 1,
            wrapped_dek: vec![],
            ciphertext: vec![],
            created_by: "t".into(),
            created_at: at,
            binding: None,
            fingerprint: None,
            fields: None,
        };
        (id, WriteOp::PutVersion { credential, version, create: false })
    }

    #[test]
    fn a_put_with_what_follows_it_is_narrow_and_a_lone_freeze_lift_is_not() {
        let t = TenantId::generate();
        let (id, put) = put_op(t, "a");
        let (_, other) = put_op(t, "b");
        let lift = |credential| WriteOp::LiftFreeze { credential, fresh: None };
        let rotated = WriteOp::ItemsRotated {
            credential: id,
            version: 1,
            fingerprint: vec![],
            by: "t".into(),
            at: rekey_types::Timestamp::now(),
        };
        let narrow = Changes::of_op(&WriteOp::All(vec![put, rotated, lift(id)]));
        assert!(matches!(&narrow, Changes::Credentials(c) if c == &[(t, "a".to_string())]), "{narrow:?}");
        let broad = Changes::of_op(&WriteOp::All(vec![other, lift(id)]));
        assert!(matches!(broad, Changes::Everything), "a lift of another credential: {broad:?}");
        assert!(matches!(Changes::of_op(&lift(id)), Changes::Everything));
    }

    #[test]
    fn a_kept_row_comes_back_whole() {
        let cache = RevealCache::new(DEFAULT_BYTES);
        let t = TenantId::generate();
        let r = row(t, 3);
        cache.put("acme", "a", cache.epoch(), &r);
        let got = cache.get("acme", "a").unwrap();
        assert_eq!((got.version, got.credential_id, got.fields), (3, r.credential_id, r.fields));
        assert_eq!((got.wrapped_dek, got.ciphertext), (r.wrapped_dek, r.ciphertext));
        assert!(cache.get("acme", "b").is_none() && cache.get("acm", "ea").is_none());
    }

    #[test]
    fn a_put_version_drops_only_that_credential() {
        let cache = RevealCache::new(DEFAULT_BYTES);
        let t = TenantId::generate();
        cache.put("acme", "a", cache.epoch(), &row(t, 1));
        cache.put("acme", "b", cache.epoch(), &row(t, 1));
        cache.changed(Changes::Credentials(vec![(t, "a".into())]));
        assert!(cache.get("acme", "a").is_none());
        assert!(cache.get("acme", "b").is_some());
        cache.changed(Changes::Nothing);
        assert!(cache.get("acme", "b").is_some());
        cache.changed(Changes::Everything);
        assert!(cache.get("acme", "b").is_none());
    }

    #[test]
    fn a_row_read_before_a_write_that_changed_it_is_not_kept() {
        let cache = RevealCache::new(DEFAULT_BYTES);
        let t = TenantId::generate();
        let seen = cache.epoch();
        cache.changed(Changes::Credentials(vec![(t, "a".into())]));
        cache.put("acme", "a", seen, &row(t, 1));
        assert!(cache.get("acme", "a").is_none(), "read before the write: stale");
        cache.put("acme", "b", seen, &row(t, 1));
        assert!(cache.get("acme", "b").is_some(), "another credential is kept");
        let seen = cache.epoch();
        cache.put("acme", "a", seen, &row(t, 2));
        assert_eq!(cache.get("acme", "a").unwrap().version, 2, "read after the write: kept");
        let seen = cache.epoch();
        cache.changed(Changes::Everything);
        cache.put("acme", "c", seen, &row(t, 1));
        assert!(cache.get("acme", "c").is_none(), "read before a broad write: stale");
    }

    #[test]
    fn a_read_older_than_what_is_remembered_is_not_kept() {
        let cache = RevealCache::new(DEFAULT_BYTES);
        let t = TenantId::generate();
        let seen = cache.epoch();
        for i in 0..=RECENT {
            cache.changed(Changes::Credentials(vec![(t, format!("other-{i}"))]));
        }
        cache.put("acme", "a", seen, &row(t, 1));
        assert!(cache.get("acme", "a").is_none());
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let cache = RevealCache::new(64 * 1024);
        let t = TenantId::generate();
        for i in 0..10_000 {
            cache.put("acme", &format!("c{i}"), cache.epoch(), &row(t, 1));
        }
        let s = cache.stats();
        assert!(s.bytes <= 64 * 1024 && s.rows > 64 && s.rows < 1000, "{s:?}");
        cache.set_budget(0);
        cache.put("acme", "z", cache.epoch(), &row(t, 1));
        assert_eq!((cache.stats().rows, cache.stats().bytes), (0, 0));
    }
}
