//! The key job runner: rotations and rewraps that run inside the server.
//!
//! A job's remaining work is read from the data, never from a cursor: whatever is not yet under
//! the target key. So a job resumes after `kill -9` exactly where it stopped, and a batch that
//! is done twice changes nothing (each update applies only while the row is still under the key
//! it was read under). Each batch is one write with its audit event.
//!
//! With several servers on one PostgreSQL database, each server runs the jobs it finds running
//! at start and those it created; two servers working on one job is safe (the guarded updates
//! make the second one's work a no-op), only wasteful.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rekey_crypto::{kek_version_of, rewrap_dek, Kek, KeyContext, PayloadSlot};
use rekey_store::{DekUpdate, KekRow, KeyJobRow, RootRewrap, StoreError, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, CredentialId, JobState, KeyState, RequestId, TenantId, Timestamp};

use crate::kernel::keys::KeyUse;
use crate::kernel::record;
use crate::{CoreError, Vault};

/// Credential versions read and rewrapped per batch.
const DEK_BATCH: u32 = 2_000;
/// Tenants worked on at once by a rotation of all tenants; their batches share commits.
const TENANTS_AT_ONCE: usize = 64;
const ROOT_BATCH: u32 = 500;

impl Vault {
    /// Starts the background runner: first every job left running (by a crash or a restart),
    /// then each new one as it is created.
    pub(crate) fn start_jobs(self: Arc<Self>) {
        // The runner holds the vault only while it works, so a dropped or sealed vault ends it.
        let wake = self.jobs_wake().clone();
        self.repeat(Duration::from_secs(5), Some(wake), "reading key jobs", |this| async move {
            for job in this.store().jobs(true, 100).await? {
                if this.is_closed() {
                    break;
                }
                this.run_job(job).await;
            }
            Ok(())
        });
    }

    /// Waits until no job is running (for tests and benchmarks).
    pub async fn wait_for_jobs(&self) -> Result<(), CoreError> {
        loop {
            if self.store().jobs(true, 1).await?.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run_job(&self, job: KeyJobRow) {
        tracing::info!(job = %job.id, scope = %job.scope, reason = %job.reason, "running key job");
        let outcome = match job.scope.as_str() {
            "tenant" => match job.tenant_id {
                Some(t) => self.rewrap_tenant(&job, t).await,
                None => Err(CoreError::Store(StoreError::Corrupt("tenant job without a tenant".into()))),
            },
            "all" => self.rewrap_all(&job).await,
            "root" => self.rewrap_root(&job).await,
            other => Err(CoreError::Store(StoreError::Corrupt(format!("job scope {other}")))),
        };
        if self.is_closed() {
            // Sealed mid-way: the job stays running and resumes after the next unseal.
            return;
        }
        let (state, error) = match outcome {
            Ok(0) => (JobState::Done, None),
            Ok(n) => (
                JobState::Failed,
                Some(format!("{n} wrapped keys could not be opened (damaged); everything else was moved")),
            ),
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "key job failed");
                (JobState::Failed, Some(e.to_string()))
            }
        };
        let op = WriteOp::FinishJob { id: job.id, state, error: error.clone(), at: Timestamp::now() };
        let audit = self.job_event(
            &job,
            AuditAction::KeyJobFinish,
            &format!("job:{}", job.id),
            &error.unwrap_or_else(|| state.to_string()),
        );
        if let Err(e) = self.submit(WriteRequest { op: Some(op), audit }).await {
            tracing::error!(job = %job.id, error = %e, "cannot record the end of a key job");
        }
    }

    fn job_event(
        &self,
        job: &KeyJobRow,
        action: AuditAction,
        resource: &str,
        detail: &str,
    ) -> rekey_types::AuditRecord {
        record(&format!("job:{}", job.id), "", &RequestId::generate(), action, resource, AuditOutcome::Success, detail)
    }

    async fn rewrap_all(&self, job: &KeyJobRow) -> Result<u64, CoreError> {
        // Read every tenant's name and keys once, not once per tenant.
        let tenants = self.store().tenant_ids().await?;
        let mut keks: HashMap<TenantId, Vec<KekRow>> = HashMap::with_capacity(tenants.len());
        for k in self.store().keks(None).await? {
            keks.entry(k.tenant_id).or_default().push(k);
        }
        let names: HashMap<TenantId, String> = self.all_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
        let work: Vec<(TenantId, Vec<KekRow>, String)> = tenants
            .into_iter()
            .map(|t| {
                let name = names.get(&t).cloned().unwrap_or_else(|| t.to_string());
                (t, keks.remove(&t).unwrap_or_default(), name)
            })
            .collect();
        let results: Vec<Result<u64, CoreError>> = futures_util::stream::iter(work)
            .map(|(t, keks, name)| self.rewrap_tenant_with(job, t, keks, name))
            .buffer_unordered(TENANTS_AT_ONCE)
            .collect()
            .await;
        let mut failed = 0;
        for r in results {
            failed += r?;
        }
        Ok(failed)
    }

    /// The tenant's KEK version that this job moves everything to: the active one if it was made
    /// since the job started (by this job, before a restart), otherwise a new one made now.
    async fn job_target(
        &self,
        job: &KeyJobRow,
        tenant: TenantId,
        name: &str,
        keks: &[KekRow],
    ) -> Result<u32, CoreError> {
        if let Some(active) = keks.iter().filter(|k| k.state == KeyState::Active).max_by_key(|k| k.version) {
            if active.created_at >= job.created_at {
                return Ok(active.version);
            }
        }
        let version = keks.iter().map(|k| k.version).max().unwrap_or(0) + 1;
        let kek = Kek::generate().map_err(CoreError::Crypto)?;
        let wrapped =
            self.seal().wrap_kek(KeyContext::TenantKek { tenant, version }, &kek).map_err(CoreError::from_seal)?;
        let root_version = kek_version_of(&wrapped).map_err(CoreError::Crypto)?;
        let row = KekRow {
            tenant_id: tenant,
            version,
            state: KeyState::Active,
            wrapped,
            root_version,
            created_at: Timestamp::now(),
        };
        let audit = self.job_event(
            job,
            AuditAction::KeyCreate,
            &format!("{name}@{version}"),
            "new KEK version; older active versions retired",
        );
        match self.submit(WriteRequest { op: Some(WriteOp::CreateKek(row)), audit }).await {
            Ok(()) => {}
            // Another server working on the same job made it first.
            Err(CoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        for k in keks.iter().filter(|k| k.state == KeyState::Active) {
            self.keks().forget(tenant, k.version);
        }
        self.keks().insert(tenant, version, Arc::new(kek), KeyState::Active, root_version);
        Ok(version)
    }

    /// Moves every DEK of one tenant under the job's target KEK version. Returns how many could
    /// not be opened (damaged rows), which are left where they are.
    async fn rewrap_tenant(&self, job: &KeyJobRow, tenant: TenantId) -> Result<u64, CoreError> {
        let keks = self.store().keks(Some(tenant)).await?;
        let name = self.store().tenant_by_id(tenant).await?.map_or_else(|| tenant.to_string(), |t| t.name);
        self.rewrap_tenant_with(job, tenant, keks, name).await
    }

    /// [`Vault::rewrap_tenant`] with the tenant's keys and name already read.
    async fn rewrap_tenant_with(
        &self,
        job: &KeyJobRow,
        tenant: TenantId,
        keks: Vec<KekRow>,
        name: String,
    ) -> Result<u64, CoreError> {
        if keks.is_empty() || keks.iter().all(|k| k.state == KeyState::Destroyed) {
            return Ok(0);
        }
        let target = self.job_target(job, tenant, &name, &keks).await?;
        let new_kek =
            self.keks().get(self.store().as_ref(), self.seal().as_ref(), tenant, target, KeyUse::Rewrap).await?;
        // Older versions are unwrapped from the rows in hand (a compromised one included: moving
        // data off it is what a rotation is for), without filling the shared cache.
        let mut old: HashMap<u32, Arc<Kek>> = HashMap::new();
        for k in keks.iter().filter(|k| k.version != target && k.state != KeyState::Destroyed) {
            let ctx = KeyContext::TenantKek { tenant, version: k.version };
            match self.seal().unwrap_kek(ctx, &k.wrapped) {
                Ok(kek) => {
                    old.insert(k.version, Arc::new(kek));
                }
                Err(rekey_crypto::CryptoError::Sealed) => return Err(CoreError::Sealed),
                Err(e) => {
                    tracing::error!(tenant = %name, version = k.version, error = %e, "cannot unwrap a key version")
                }
            }
        }
        let mut damaged: HashSet<(CredentialId, u32)> = HashSet::new();
        loop {
            if self.is_closed() {
                return Ok(0);
            }
            let rows = self.store().deks_to_rewrap(tenant, target, DEK_BATCH).await?;
            let full = rows.len() as u32 == DEK_BATCH;
            let mut updates = Vec::with_capacity(rows.len());
            for r in rows {
                if damaged.contains(&(r.credential_id, r.version)) {
                    continue;
                }
                let kek = match old.get(&r.kek_version) {
                    Some(k) => k.clone(),
                    // A version made after the keys were read, or one that did not open above.
                    None => match self
                        .keks()
                        .get(self.store().as_ref(), self.seal().as_ref(), tenant, r.kek_version, KeyUse::Rewrap)
                        .await
                    {
                        Ok(k) => {
                            old.insert(r.kek_version, k.clone());
                            k
                        }
                        Err(e @ (CoreError::Sealed | CoreError::Store(_))) => return Err(e),
                        Err(e) => {
                            tracing::error!(tenant = %name, version = r.kek_version, error = %e, "cannot open a key version");
                            damaged.insert((r.credential_id, r.version));
                            continue;
                        }
                    },
                };
                let slot = PayloadSlot { tenant, credential: r.credential_id, version: r.version, kind: r.kind };
                match rewrap_dek((&kek, r.kek_version), (&new_kek, target), &slot, &r.wrapped_dek) {
                    Ok(wrapped_dek) => updates.push(DekUpdate {
                        credential_id: r.credential_id,
                        version: r.version,
                        from_kek: r.kek_version,
                        to_kek: target,
                        wrapped_dek,
                    }),
                    Err(e) => {
                        tracing::error!(tenant = %name, credential = %r.credential_id, version = r.version, error = %e, "cannot rewrap a DEK");
                        damaged.insert((r.credential_id, r.version));
                    }
                }
            }
            if updates.is_empty() {
                break;
            }
            let detail = format!("moved {} DEKs to {name}@{target}", updates.len());
            let audit = self.job_event(job, AuditAction::KeyRewrap, &format!("{name}@{target}"), &detail);
            self.submit(WriteRequest { op: Some(WriteOp::RewrapDeks { updates, job: Some(job.id) }), audit }).await?;
            // Nothing new is written under an older key once the target is active (a put checks
            // that its KEK is active when it commits), so a batch that was not full was the last.
            if !full {
                break;
            }
        }
        Ok(damaged.len() as u64)
    }

    /// Moves every tenant KEK and system key under the newest root key version.
    async fn rewrap_root(&self, job: &KeyJobRow) -> Result<u64, CoreError> {
        let target = self.seal().root_version().ok_or(CoreError::Sealed)?;
        let mut damaged: HashSet<(Option<TenantId>, String, u32)> = HashSet::new();
        loop {
            if self.is_closed() {
                return Ok(0);
            }
            let rows = self.store().root_wrapped(target, ROOT_BATCH).await?;
            let mut updates = Vec::with_capacity(rows.len());
            for r in rows {
                let id = (r.tenant_id, r.purpose.clone(), r.version);
                if damaged.contains(&id) {
                    continue;
                }
                let moved = match r.tenant_id {
                    Some(tenant) => {
                        let ctx = KeyContext::TenantKek { tenant, version: r.version };
                        self.seal().unwrap_kek(ctx, &r.wrapped).and_then(|k| self.seal().wrap_kek(ctx, &k))
                    }
                    None => {
                        let ctx = KeyContext::System { purpose: &r.purpose, version: r.version };
                        self.seal()
                            .unwrap_system_key(ctx, &r.wrapped)
                            .and_then(|k| self.seal().wrap_system_key(ctx, &k))
                    }
                };
                match moved {
                    Ok(wrapped) => {
                        let to_root = kek_version_of(&wrapped).map_err(CoreError::Crypto)?;
                        updates.push(RootRewrap { wrapped, to_root, ..r });
                    }
                    Err(rekey_crypto::CryptoError::Sealed) => return Err(CoreError::Sealed),
                    Err(e) => {
                        tracing::error!(version = r.version, error = %e, "cannot rewrap a key under the new root");
                        damaged.insert(id);
                    }
                }
            }
            if updates.is_empty() {
                break;
            }
            let detail = format!("moved {} keys to root@{target}", updates.len());
            let audit = self.job_event(job, AuditAction::KeyRewrap, &format!("root@{target}"), &detail);
            self.submit(WriteRequest { op: Some(WriteOp::RewrapRoot { updates, job: Some(job.id) }), audit }).await?;
        }
        self.keks().clear();
        Ok(damaged.len() as u64)
    }
}
