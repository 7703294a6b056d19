//! Key custody use cases: the key inventory, rotation, compromise, destruction, crypto-shredding
//! and the root key's versions.
//!
//! Rotations run as jobs (see `jobs`): the request records the job and returns at once; the
//! server moves the wrapped keys in batches, each committed with its audit event, and a job
//! interrupted by a crash resumes at the next start because its remaining work is read from the
//! data itself (whatever is not yet under the target key).

mod jobs;
pub mod keeper;
mod open;
mod root;

use std::collections::{BTreeMap, HashMap};

use rekey_store::{KeyJobRow, WriteOp};
use rekey_types::{AuditAction, JobId, JobState, KeyRef, KeyState, TenantName, TenantState, Timestamp};

use crate::kernel::policy::Action;
use crate::views::*;
use crate::{Caller, CoreError, Vault};

/// What a rotation covers.
#[derive(Debug, Clone)]
pub enum RotateScope {
    /// One tenant's key: its data keys are rewrapped under a new version.
    Tenant(TenantName),
    /// Every tenant's key.
    All,
    /// The root key: every tenant key is rewrapped under a new root version.
    Root,
}

impl Vault {
    /// `key list`: root and tenant key versions, with what each wraps.
    pub async fn key_list(&self, caller: &Caller, tenant: Option<TenantName>) -> Result<KeyListView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadKeys, "keys")?;
            let tenant_row = match &tenant {
                Some(t) => Some(self.tenant(t).await?),
                None => None,
            };
            let tenant_id = tenant_row.as_ref().map(|t| t.id);
            let keks = self.store().keks(tenant_id).await?;
            let counts: HashMap<(rekey_types::TenantId, u32), i64> = self
                .store()
                .dek_counts(tenant_id)
                .await?
                .into_iter()
                .map(|c| ((c.tenant_id, c.kek_version), c.count))
                .collect();
            let tenants: HashMap<rekey_types::TenantId, rekey_store::TenantRow> = match tenant_row {
                Some(t) => [(t.id, t)].into(),
                None => self.all_tenants().await?.into_iter().map(|t| (t.id, t)).collect(),
            };
            let mut per_root: BTreeMap<u32, i64> = BTreeMap::new();
            let mut by_tenant: BTreeMap<String, TenantKeysView> = BTreeMap::new();
            for k in keks {
                let Some(t) = tenants.get(&k.tenant_id) else { continue };
                if k.state != KeyState::Destroyed {
                    *per_root.entry(k.root_version).or_default() += 1;
                }
                let entry = by_tenant.entry(t.name.clone()).or_insert_with(|| TenantKeysView {
                    tenant: t.name.clone(),
                    region: t.region.clone(),
                    state: t.state,
                    versions: vec![],
                });
                entry.versions.push(KekView {
                    key: format!("{}@{}", t.name, k.version),
                    version: k.version,
                    state: k.state,
                    root_version: k.root_version,
                    deks: counts.get(&(k.tenant_id, k.version)).copied().unwrap_or(0),
                    created_at: k.created_at,
                });
            }
            let root = self
                .store()
                .root_keys()
                .await?
                .into_iter()
                .map(|r| RootKeyView {
                    key: format!("root@{}", r.version),
                    version: r.version,
                    state: r.state,
                    keks: per_root.get(&r.version).copied().unwrap_or(0),
                    created_at: r.created_at,
                })
                .collect();
            Ok(KeyListView { root, tenants: by_tenant.into_values().collect() })
        }
        .await;
        self.finish(caller, AuditAction::KeyList, tenant.as_ref().map_or("", |t| t.as_str()), result).await
    }

    pub(crate) async fn all_tenants(&self) -> Result<Vec<rekey_store::TenantRow>, CoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let filter = rekey_store::TenantFilter { region: None, after: after.clone(), limit: 10_000 };
            let page = self.store().list_tenants(&filter).await?;
            let done = page.len() < 10_000;
            after = page.last().map(|t| t.name.clone());
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    fn new_job(
        &self,
        caller: &Caller,
        scope: &str,
        tenant: Option<rekey_types::TenantId>,
        reason: &str,
        total: i64,
    ) -> KeyJobRow {
        KeyJobRow {
            id: JobId::generate(),
            scope: scope.into(),
            tenant_id: tenant,
            reason: reason.into(),
            state: JobState::Running,
            total,
            done: 0,
            created_by: caller.principal.audit_name(),
            created_at: Timestamp::now(),
            finished_at: None,
            error: None,
        }
    }

    /// Starts a rotation: a new KEK version for one tenant or all, with every DEK rewrapped
    /// under it; or (dev and PKCS#11 seals) a new root key version with every KEK rewrapped.
    /// A Shamir root rotation goes through [`Vault::prepare_root_split`] instead.
    pub async fn rotate(&self, caller: &Caller, scope: RotateScope) -> Result<JobView, CoreError> {
        let resource = match &scope {
            RotateScope::Tenant(t) => format!("tenant:{t}"),
            RotateScope::All => "tenants:all".into(),
            RotateScope::Root => "root".into(),
        };
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            match &scope {
                RotateScope::Tenant(t) => {
                    let tenant = self.tenant(t).await?;
                    if tenant.state == TenantState::Shredded {
                        return Err(CoreError::KeyDestroyed(format!("tenant {t} was shredded")));
                    }
                    let total = self.store().count_versions(Some(tenant.id)).await?;
                    Ok((self.new_job(caller, "tenant", Some(tenant.id), "rotate", total), Some(t.to_string())))
                }
                RotateScope::All => {
                    let total = self.store().count_versions(None).await?;
                    Ok((self.new_job(caller, "all", None, "rotate", total), None))
                }
                RotateScope::Root => {
                    if self.seal().as_shamir().is_some() {
                        return Err(CoreError::Conflict(
                            "a Shamir root rotation makes new shares: use the two-step root rotation (rekey key rotate --root)".into(),
                        ));
                    }
                    let total = self.store().keks(None).await?.len() as i64;
                    Ok((self.new_job(caller, "root", None, "rotate", total), None))
                }
            }
        }
        .await;
        let (job, tenant) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::KeyRotate, &resource, Err(e)).await,
        };
        let view = JobView::new(job.clone(), tenant);
        let detail = format!("job {}", job.id);
        let is_root = job.scope == "root";
        self.commit(caller, AuditAction::KeyRotate, &resource, WriteOp::CreateJob(job), &detail).await?;
        if is_root {
            self.add_root_version(caller).await?;
        }
        self.jobs_wake().notify_one();
        Ok(view)
    }

    /// Marks a key version compromised and rotates off it. A compromised version never serves
    /// a reveal again; the rotation is the only thing that still unwraps under it.
    pub async fn compromise(&self, caller: &Caller, key: &KeyRef) -> Result<JobView, CoreError> {
        let resource = key.to_string();
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            match key {
                KeyRef::Tenant(t, v) => {
                    let tenant = self.tenant(t).await?;
                    let kek = self.store().kek(tenant.id, *v).await?.ok_or_else(|| CoreError::NotFound(format!("key version {key}")))?;
                    if kek.state == KeyState::Destroyed {
                        return Err(CoreError::KeyDestroyed(format!("key version {key} was already destroyed")));
                    }
                    let total = self.store().count_versions(Some(tenant.id)).await?;
                    let job = self.new_job(caller, "tenant", Some(tenant.id), "compromise", total);
                    let at = Timestamp::now();
                    let op = WriteOp::All(vec![
                        WriteOp::SetKekState { tenant: tenant.id, version: *v, state: KeyState::Compromised, at },
                        WriteOp::CreateJob(job.clone()),
                    ]);
                    Ok((op, job, Some(t.to_string()), Some((tenant.id, *v))))
                }
                KeyRef::Root(v) => {
                    let rows = self.store().root_keys().await?;
                    let row = rows.iter().find(|r| r.version == *v).ok_or_else(|| CoreError::NotFound(format!("key version {key}")))?;
                    if row.state == KeyState::Destroyed {
                        return Err(CoreError::KeyDestroyed(format!("key version {key} was already destroyed")));
                    }
                    if self.seal().as_shamir().is_some() && row.state == KeyState::Active {
                        return Err(CoreError::Conflict(format!(
                            "{key} is the active root key of a Shamir seal: run the root rotation first (rekey key rotate --root, which makes new shares), then mark {key} compromised"
                        )));
                    }
                    let total = self.store().keks(None).await?.len() as i64;
                    let job = self.new_job(caller, "root", None, "compromise", total);
                    let op = WriteOp::All(vec![
                        WriteOp::SetRootKeyState { version: *v, state: KeyState::Compromised, at: Timestamp::now() },
                        WriteOp::CreateJob(job.clone()),
                    ]);
                    Ok((op, job, None, None))
                }
            }
        }
        .await;
        let (op, job, tenant, kek) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::KeyCompromise, &resource, Err(e)).await,
        };
        let detail = format!("marked compromised; rotation job {}", job.id);
        self.commit(caller, AuditAction::KeyCompromise, &resource, op, &detail).await?;
        match kek {
            Some((t, v)) => self.keks().forget(t, v),
            None => {
                self.keks().forget_roots();
                // A compromised active root is replaced (dev and PKCS#11; Shamir was refused above).
                if self.store().root_keys().await?.iter().all(|r| r.state != KeyState::Active) {
                    self.add_root_version(caller).await?;
                }
            }
        }
        self.jobs_wake().notify_one();
        Ok(JobView::new(job, tenant))
    }

    /// What a key version wraps: what destroying it would make unrecoverable.
    pub async fn wrapped_by(&self, caller: &Caller, key: &KeyRef) -> Result<WrappedByView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadKeys, "keys")?;
            match key {
                KeyRef::Tenant(t, v) => {
                    let tenant = self.tenant(t).await?;
                    let total = self.deks_under(tenant.id, *v).await?;
                    let items = self
                        .store()
                        .wrapped_by(tenant.id, *v, 1000)
                        .await?
                        .into_iter()
                        .map(|w| {
                            format!(
                                "{}/{} v{}{}",
                                w.tenant,
                                w.credential,
                                w.version,
                                if w.deleted { " (deleted)" } else { "" }
                            )
                        })
                        .collect();
                    Ok(WrappedByView { key: key.to_string(), total, items })
                }
                KeyRef::Root(v) => {
                    let names: HashMap<_, _> = self.all_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
                    let under: Vec<String> = self
                        .store()
                        .keks(None)
                        .await?
                        .into_iter()
                        .filter(|k| k.root_version == *v && k.state != KeyState::Destroyed)
                        .map(|k| format!("{}@{}", names.get(&k.tenant_id).map_or("?", String::as_str), k.version))
                        .collect();
                    Ok(WrappedByView {
                        key: key.to_string(),
                        total: under.len() as i64,
                        items: under.into_iter().take(1000).collect(),
                    })
                }
            }
        }
        .await;
        self.finish(caller, AuditAction::KeyShow, &key.to_string(), result).await
    }

    async fn deks_under(&self, tenant: rekey_types::TenantId, version: u32) -> Result<i64, CoreError> {
        Ok(self
            .store()
            .dek_counts(Some(tenant))
            .await?
            .into_iter()
            .find(|c| c.kek_version == version)
            .map_or(0, |c| c.count))
    }

    /// Destroys a key version. Refused for the active version, and (without `force`) for one
    /// that still wraps data.
    pub async fn destroy(&self, caller: &Caller, key: &KeyRef, force: bool) -> Result<DestroyedView, CoreError> {
        let resource = key.to_string();
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            let in_use = |n: i64, what: &str| {
                CoreError::KeyInUse(format!(
                    "{key} still wraps {n} {what}; they would become unrecoverable. `rekey key show {key}` lists them; add --force to destroy it anyway"
                ))
            };
            match key {
                KeyRef::Tenant(t, v) => {
                    let tenant = self.tenant(t).await?;
                    let kek = self.store().kek(tenant.id, *v).await?.ok_or_else(|| CoreError::NotFound(format!("key version {key}")))?;
                    if kek.state == KeyState::Destroyed {
                        return Err(CoreError::KeyDestroyed(format!("key version {key} was already destroyed")));
                    }
                    if kek.state == KeyState::Active {
                        return Err(CoreError::Conflict(format!(
                            "{key} is the tenant's active key: rotate first (rekey key rotate --tenant {t}), or shred the tenant"
                        )));
                    }
                    let n = self.deks_under(tenant.id, *v).await?;
                    if n > 0 && !force {
                        return Err(in_use(n, "credential versions"));
                    }
                    let op = WriteOp::SetKekState { tenant: tenant.id, version: *v, state: KeyState::Destroyed, at: Timestamp::now() };
                    Ok((op, n, Some((tenant.id, *v)), None))
                }
                KeyRef::Root(v) => {
                    let rows = self.store().root_keys().await?;
                    let row = rows.iter().find(|r| r.version == *v).ok_or_else(|| CoreError::NotFound(format!("key version {key}")))?;
                    if row.state == KeyState::Destroyed {
                        return Err(CoreError::KeyDestroyed(format!("key version {key} was already destroyed")));
                    }
                    if row.state == KeyState::Active {
                        return Err(CoreError::Conflict(format!("{key} is the active root key: rotate the root first")));
                    }
                    let audit_key = self.store().system_key(rekey_crypto::AuditKey::PURPOSE).await?;
                    if audit_key.is_some_and(|k| rekey_crypto::kek_version_of(&k.wrapped).ok() == Some(*v)) {
                        return Err(CoreError::Conflict(format!(
                            "the server's own keys (the audit chain key) are still wrapped under {key}: let the root rotation finish first"
                        )));
                    }
                    let keks = self.store().keks(None).await?;
                    let n = keks.iter().filter(|k| k.root_version == *v && k.state != KeyState::Destroyed).count() as i64;
                    if n > 0 && !force {
                        return Err(in_use(n, "tenant key versions"));
                    }
                    let op = WriteOp::SetRootKeyState { version: *v, state: KeyState::Destroyed, at: Timestamp::now() };
                    Ok((op, n, None, Some(*v)))
                }
            }
        }
        .await;
        let (op, n, kek, root) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::KeyDestroy, &resource, Err(e)).await,
        };
        self.commit(caller, AuditAction::KeyDestroy, &resource, op, &format!("unrecoverable={n}")).await?;
        if let Some((t, v)) = kek {
            self.keks().forget(t, v);
        }
        if let Some(v) = root {
            // The store says destroyed first, so a crash here is finished at the next start.
            self.destroy_in_seal(v).await?;
            self.keks().clear();
        }
        Ok(DestroyedView { key: resource, unrecoverable: n })
    }

    /// Destroys every KEK version of a tenant: its credentials become unrecoverable; the
    /// tenant's rows and its audit history stay.
    pub async fn shred_tenant(&self, caller: &Caller, name: &TenantName) -> Result<ShreddedView, CoreError> {
        let resource = format!("tenant:{name}");
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            let tenant = self.tenant(name).await?;
            if tenant.state == TenantState::Shredded {
                return Err(CoreError::KeyDestroyed(format!("tenant {name} was already shredded")));
            }
            let keys =
                self.store().keks(Some(tenant.id)).await?.iter().filter(|k| k.state != KeyState::Destroyed).count();
            let n = self.store().count_versions(Some(tenant.id)).await?;
            Ok((tenant.id, keys, n))
        }
        .await;
        let (id, keys, n) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::TenantShred, &resource, Err(e)).await,
        };
        let op = WriteOp::ShredTenant { tenant: id, at: Timestamp::now() };
        self.commit(
            caller,
            AuditAction::TenantShred,
            &resource,
            op,
            &format!("keys_destroyed={keys}; unrecoverable={n}"),
        )
        .await?;
        self.keks().forget_tenant(id);
        Ok(ShreddedView { tenant: name.to_string(), keys_destroyed: keys, versions_unrecoverable: n })
    }

    /// `key jobs`: key jobs, newest first.
    pub async fn jobs(&self, caller: &Caller) -> Result<Vec<JobView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadKeys, "keys")?;
            let rows = self.store().jobs(false, 200).await?;
            let mut out = Vec::with_capacity(rows.len());
            for j in rows {
                let tenant = self.tenant_name_of(j.tenant_id).await?;
                out.push(JobView::new(j, tenant));
            }
            Ok(out)
        }
        .await;
        self.finish(caller, AuditAction::KeyJobs, "", result).await
    }

    /// `key job`: one key job and its progress.
    pub async fn job(&self, caller: &Caller, id: JobId) -> Result<JobView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadKeys, "keys")?;
            let j = self.store().job(id).await?.ok_or_else(|| CoreError::NotFound(format!("job {id}")))?;
            let tenant = self.tenant_name_of(j.tenant_id).await?;
            Ok(JobView::new(j, tenant))
        }
        .await;
        // Polled by progress bars: recorded like any read.
        self.finish(caller, AuditAction::KeyJob, &id.to_string(), result).await
    }

    async fn tenant_name_of(&self, id: Option<rekey_types::TenantId>) -> Result<Option<String>, CoreError> {
        Ok(match id {
            Some(id) => self.store().tenant_by_id(id).await?.map(|t| t.name),
            None => None,
        })
    }
}
