//! Rows a database writer cannot forge, and the format migration to bound payloads.
//!
//! Token rows decide who gets what (role, tenant, bound credentials, CIDRs, expiry, revocation).
//! Each carries an HMAC under the integrity key, a system key wrapped by the seal like the audit
//! chain key: a row inserted or edited with SQL fails its check, and is refused everywhere,
//! counted (`rekey_integrity_failures`) and audited (`integrity.fail`). Where a secret goes is
//! held by the version's own payload (its target binding, see `target`), and the name-to-id
//! mapping of credentials likewise (the name is part of the binding).
//!
//! Rows stored before this release are sealed once, at the first unseal after the upgrade
//! (`integrity.seal`, with the count), and versions stored before target binding are bound to
//! the credential's fields as they stand, by a background migration that commits a batch at a
//! time with its audit event (`cred.bind`) and resumes after a crash from what is left unbound.
//!
//! Must never: accept a row whose MAC fails; log or audit a token secret or a payload.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rekey_crypto::integrity::canonical;
use rekey_crypto::{bind_legacy_payload, IntegrityKey, PayloadSlot};
use rekey_store::{TokenRow, VersionBinding, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, RequestId};

use crate::kernel::keys::KeyUse;
use crate::kernel::record;
use crate::{CoreError, Vault};

/// The table label of token row MACs.
const TOKENS: &str = "tokens";
/// The one-time step of binding the versions stored before target binding.
const VERSIONS: &str = "versions";
/// Versions bound per committed batch of the format migration. Each commit empties the page
/// cache of the connection that reads the next batch, so fewer, larger batches read less twice.
const BIND_BATCH: u32 = 10_000;

/// An audit event of the format migration (`cred.bind`), made by the system.
fn bind_event(detail: &str) -> rekey_types::AuditRecord {
    record("system", "", &RequestId::generate(), AuditAction::CredBind, "credentials", AuditOutcome::Success, detail)
}

/// The bytes of a token row that its MAC covers: everything that decides what it may do.
fn token_bytes(row: &TokenRow) -> Vec<u8> {
    let tenant = row.tenant_id.map(|t| t.to_string()).unwrap_or_default();
    let bound = serde_json::to_vec(&row.bound).expect("a list of strings serializes");
    let cidrs = serde_json::to_vec(&row.cidrs).expect("a list of strings serializes");
    let expires = row.expires_at.map_or(-1, |t| t.as_micros()).to_be_bytes();
    let revoked = row.revoked_at.map_or(-1, |t| t.as_micros()).to_be_bytes();
    let id = row.id.to_string();
    let mut parts: Vec<&[u8]> = vec![
        id.as_bytes(),
        &row.hash,
        row.role.as_str().as_bytes(),
        tenant.as_bytes(),
        &bound,
        &cidrs,
        &expires,
        &revoked,
    ];
    // A renewable token (from a workload login) covers its limit too; the rows of every other
    // token keep the MAC they were sealed with.
    let max = row.max_expires_at.map(|t| t.as_micros().to_be_bytes());
    if let Some(max) = &max {
        parts.push(max);
    }
    canonical(&parts)
}

/// The table label of auth role MACs.
const AUTH_ROLES: &str = "auth_roles";

/// The MAC an auth role row must carry: over its name and specification.
pub(crate) fn auth_role_mac(key: &IntegrityKey, name: &str, spec: &str) -> Vec<u8> {
    key.row_mac(AUTH_ROLES, &canonical(&[name.as_bytes(), spec.as_bytes()])).to_vec()
}

/// Whether an auth role row carries its MAC.
pub(crate) fn auth_role_ok(key: &IntegrityKey, row: &rekey_store::AuthRoleRow) -> bool {
    key.row_ok(AUTH_ROLES, &canonical(&[row.name.as_bytes(), row.spec.as_bytes()]), &row.mac)
}

/// The MAC a token row must carry.
pub(crate) fn token_mac(key: &IntegrityKey, row: &TokenRow) -> Vec<u8> {
    key.row_mac(TOKENS, &token_bytes(row)).to_vec()
}

/// Whether a token row carries its MAC.
pub(crate) fn token_ok(key: &IntegrityKey, row: &TokenRow) -> bool {
    row.mac.as_deref().is_some_and(|m| key.row_ok(TOKENS, &token_bytes(row), m))
}

impl Vault {
    /// Records a row that failed its integrity check: counted and audited, never believed.
    pub(crate) async fn integrity_failure(&self, what: &str, detail: &str) -> Result<(), CoreError> {
        self.writer.stats().integrity_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(what, "a row failed its integrity check and was refused");
        let event = record(
            "system",
            "",
            &RequestId::generate(),
            AuditAction::IntegrityFail,
            what,
            AuditOutcome::Denied,
            detail,
        );
        self.audit_event(event).await
    }

    /// Seals the token rows stored before rows were authenticated, once (the store's marker
    /// says whether that is still to do).
    pub(crate) async fn seal_legacy_tokens(&self) -> Result<(), CoreError> {
        if !self.store.integrity_pending("tokens").await? {
            return Ok(());
        }
        let macs: Vec<_> = self
            .store
            .list_tokens()
            .await?
            .into_iter()
            .filter(|t| t.mac.is_none())
            .map(|t| (t.id, token_mac(&self.integrity, &t)))
            .collect();
        let detail = format!("sealed {} token rows stored before rows were authenticated", macs.len());
        let audit = record(
            "system",
            "",
            &RequestId::generate(),
            AuditAction::IntegritySeal,
            "tokens",
            AuditOutcome::Success,
            &detail,
        );
        self.submit(WriteRequest { op: Some(WriteOp::SealTokens(macs)), audit }).await
    }

    /// Starts the format migration in the background if versions stored before target binding
    /// are left.
    pub(crate) fn start_binding(self: &Arc<Self>) {
        let vault = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(this) = vault.upgrade() else { return };
            match this.bind_legacy_versions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(versions = n, "bound legacy versions to their targets"),
                Err(e) => tracing::error!(error = %e, "the format migration stopped; it resumes at the next start"),
            }
        });
    }

    /// Moves every version stored before target binding to format 2, bound to its credential's
    /// current fields, with its fingerprint. Batches are committed one by one with an audit
    /// event; a crash loses at most the batch in flight, which the next start redoes (the rows
    /// still unbound are the work left). Three stages overlap: the next batch is read while
    /// one is encrypted (on two blocking threads) and the one before commits.
    pub async fn bind_legacy_versions(&self) -> Result<u64, CoreError> {
        let mut total = 0u64;
        if !self.store.integrity_pending(VERSIONS).await? {
            return Ok(0);
        }
        let (batches, mut ready) = tokio::sync::mpsc::channel(1);
        let store = self.store.clone();
        let reader = tokio::spawn(async move {
            let mut after: Option<(rekey_types::CredentialId, u32)> = None;
            loop {
                let rows = match store.legacy_versions(false, after, BIND_BATCH).await {
                    Ok(rows) => rows,
                    Err(e) => return Err(CoreError::from(e)),
                };
                let Some(last) = rows.last() else { return Ok(()) };
                after = Some((last.credential_id, last.version));
                if batches.send(rows).await.is_err() {
                    return Ok(());
                }
            }
        });
        let mut keks: HashMap<(rekey_types::TenantId, u32), Arc<rekey_crypto::Kek>> = HashMap::new();
        let mut in_flight: Option<tokio::task::JoinHandle<Result<(), CoreError>>> = None;
        // Whether every version read was bound: only then is the migration over.
        let mut complete = true;
        let outcome: Result<(), CoreError> = async {
            while let Some(rows) = ready.recv().await {
                if self.closed.load(Ordering::SeqCst) {
                    complete = false;
                    break;
                }
                let read = rows.len();
                for r in &rows {
                    if let std::collections::hash_map::Entry::Vacant(slot) = keks.entry((r.tenant_id, r.kek_version)) {
                        match self
                            .keks
                            .get(self.store.as_ref(), self.seal.as_ref(), r.tenant_id, r.kek_version, KeyUse::Rewrap)
                            .await
                        {
                            Ok(k) => {
                                slot.insert(k);
                            }
                            Err(e @ (CoreError::Sealed | CoreError::Store(_))) => return Err(e),
                            Err(e) => {
                                tracing::error!(version = r.kek_version, error = %e, "cannot bind legacy versions: no key")
                            }
                        }
                    }
                }
                let updates = self.bind_batch(rows, &keks).await?;
                complete &= updates.len() == read;
                if let Some(previous) = in_flight.take() {
                    previous.await.map_err(|_| CoreError::AuditUnavailable)??;
                }
                if updates.is_empty() {
                    continue;
                }
                total += updates.len() as u64;
                let audit = bind_event(&format!("bound {} versions to their targets (format 2)", updates.len()));
                let writer = self.writer.clone();
                in_flight = Some(tokio::spawn(async move {
                    match writer.submit(WriteRequest { op: Some(WriteOp::BindVersions(updates)), audit }).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err(CoreError::AuditUnavailable),
                    }
                }));
            }
            Ok(())
        }
        .await;
        // Stops the reader (it sees the channel closed) before anything else is returned.
        drop(ready);
        let read = reader.await.map_err(|_| CoreError::AuditUnavailable)?;
        if let Some(previous) = in_flight.take() {
            previous.await.map_err(|_| CoreError::AuditUnavailable)??;
        }
        outcome?;
        read?;
        if complete {
            let audit = bind_event(&format!("format migration complete ({total} versions bound in this pass)"));
            self.submit(WriteRequest { op: Some(WriteOp::VersionsBound), audit }).await?;
        }
        Ok(total)
    }

    /// The format 2 ciphertexts, bindings and fingerprints of a batch, computed on two blocking
    /// threads. A row that does not open (no key, tampered) is logged and left unbound.
    async fn bind_batch(
        &self,
        rows: Vec<rekey_store::LegacyVersion>,
        keks: &HashMap<(rekey_types::TenantId, u32), Arc<rekey_crypto::Kek>>,
    ) -> Result<Vec<VersionBinding>, CoreError> {
        let half = rows.len().div_ceil(2).max(1);
        let mut parts = Vec::new();
        let mut rows = rows;
        while !rows.is_empty() {
            let rest = rows.split_off(half.min(rows.len()));
            let chunk = std::mem::replace(&mut rows, rest);
            let keys: HashMap<_, _> = chunk
                .iter()
                .filter_map(|r| {
                    keks.get(&(r.tenant_id, r.kek_version)).map(|k| ((r.tenant_id, r.kek_version), k.clone()))
                })
                .collect();
            let integrity = self.integrity.clone();
            parts.push(tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(chunk.len());
                for r in chunk {
                    let Some(kek) = keys.get(&(r.tenant_id, r.kek_version)) else { continue };
                    let slot =
                        PayloadSlot { tenant: r.tenant_id, credential: r.credential_id, version: r.version, kind: r.kind };
                    let binding = crate::kernel::target::binding(&r.name, &r.fields);
                    match bind_legacy_payload(kek, r.kek_version, &slot, &binding, &r.wrapped_dek, &r.ciphertext) {
                        Ok((ciphertext, secret)) => out.push(VersionBinding {
                            credential_id: r.credential_id,
                            version: r.version,
                            ciphertext,
                            fingerprint: integrity.fingerprint(r.credential_id.as_bytes(), secret.expose()).0.to_vec(),
                            binding: binding.as_bytes().to_vec(),
                            fields: r.fields,
                        }),
                        Err(e) => {
                            tracing::error!(version = r.version, error = %e, "cannot bind a legacy version: it does not open")
                        }
                    }
                }
                out
            }));
        }
        let mut updates = Vec::new();
        for part in parts {
            updates.extend(part.await.map_err(|e| CoreError::Crypto(rekey_crypto::CryptoError::Seal(e.to_string())))?);
        }
        Ok(updates)
    }
}

#[cfg(feature = "legacy-format")]
impl Vault {
    /// Rewrites every version as releases before target binding stored it (format 1, no
    /// fields, binding or fingerprint), so that migration tests and benchmarks start from such a
    /// store. Returns how many versions it rewrote.
    pub async fn downgrade_to_legacy(&self) -> Result<u64, CoreError> {
        let mut after = None;
        let mut total = 0u64;
        loop {
            let rows = self.store.legacy_versions(true, after, BIND_BATCH).await?;
            let Some(last) = rows.last() else { return Ok(total) };
            after = Some((last.credential_id, last.version));
            let mut rewrites = Vec::with_capacity(rows.len());
            for r in rows {
                let kek = self
                    .keks
                    .get(self.store.as_ref(), self.seal.as_ref(), r.tenant_id, r.kek_version, KeyUse::Rewrap)
                    .await?;
                let slot =
                    PayloadSlot { tenant: r.tenant_id, credential: r.credential_id, version: r.version, kind: r.kind };
                let binding = crate::kernel::target::binding(&r.name, &r.fields);
                let secret =
                    rekey_crypto::open_payload(&kek, r.kek_version, &slot, &binding, &r.wrapped_dek, &r.ciphertext)
                        .map_err(CoreError::Decrypt)?;
                let sealed = rekey_crypto::seal_legacy_payload(&kek, r.kek_version, &slot, secret.expose())
                    .map_err(CoreError::Crypto)?;
                rewrites.push(rekey_store::LegacyRewrite {
                    credential_id: r.credential_id,
                    version: r.version,
                    wrapped_dek: sealed.wrapped_dek,
                    ciphertext: sealed.ciphertext,
                });
            }
            total += rewrites.len() as u64;
            let audit = record(
                "system",
                "",
                &RequestId::generate(),
                AuditAction::TestDowngrade,
                "credentials",
                AuditOutcome::Success,
                "",
            );
            self.submit(WriteRequest { op: Some(WriteOp::UnbindVersions(rewrites)), audit }).await?;
        }
    }
}
