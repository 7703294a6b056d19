//! Signed checkpoints of the audit log (docs/audit.md, "Checkpoints"): a C2SP checkpoint
//! (origin, size, root) in a signed note, signed with the checkpoint key (an Ed25519 system key
//! the seal wraps), made every `checkpoint_every` and on demand, stored, written to the
//! append-only directories and sent to the witnesses (`witness`).
//!
//! A checkpoint is never signed over a log that is shorter than, or inconsistent with, the last
//! one signed; and when the server opens, its log is checked against the last checkpoint in the
//! store and in each directory (`rollback`). Either finding refuses every write but the audit
//! log's own until an operator accepts the log as it is (`accept_audit_log`, recorded).
//!
//! Must never: sign a checkpoint inconsistent with an earlier one, except the one right after
//! an operator's recorded acceptance.

mod rollback;
mod witness;

use std::convert::Infallible;

use rekey_store::{with_tree_nodes, CheckpointRow, NewCheckpoint};
use rekey_tlog::tenants::{extension_line, map_leaf, memory_source, TenantLog};
use rekey_tlog::tree::root;
use rekey_tlog::{note, Checkpoint, Hash, VerifierKey};
use rekey_types::{AuditAction, AuditOutcome, Timestamp};
use serde::{Deserialize, Serialize};

use crate::kernel::policy::Action;
use crate::kernel::record;
use crate::{Caller, CoreError, Vault};

/// The longest reason an acceptance may give, in characters.
const MAX_REASON: usize = 500;

/// The principal name of the server's own work.
const SYSTEM: &str = "system";

/// A witness's cosignature, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CosignatureView {
    /// The witness's key name.
    pub witness: String,
    /// When the witness cosigned, as it states (seconds since the Unix epoch).
    pub time: u64,
}

/// A signed checkpoint of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointView {
    /// The log's key, as verifiers hold it: `<origin>+<key id>+<base64(0x01 ‖ public key)>`.
    pub key: String,
    /// Events the checkpoint covers: `1..=size`.
    pub size: u64,
    /// The tree head, hex.
    pub root: String,
    /// The signed note, with the witnesses' cosignature lines after the log's signature.
    pub note: String,
    /// When it was signed.
    #[schema(value_type = String, format = DateTime)]
    pub signed_at: Timestamp,
    /// Set when it was signed right after an operator accepted a rolled-back log: the reason.
    pub accepted: Option<String>,
    /// The witnesses that cosigned it.
    pub cosignatures: Vec<CosignatureView>,
    /// Why writes are refused now, if they are (the log was found rolled back).
    pub rollback: Option<String>,
}

/// What `audit accept` needs.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptLog {
    /// Why the log as it is now is accepted (recorded in the audit event and in the next
    /// checkpoint's row).
    #[schema(schema_with = reason_schema)]
    pub reason: String,
}

fn reason_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    rekey_types::schema::line("Why the log as it is now is accepted.", MAX_REASON)
}

/// The checkpoint extension line of the map of `logs` (sorted by name).
pub(crate) fn map_line(logs: &[TenantLog]) -> String {
    let leaves: Vec<Hash> = logs.iter().map(map_leaf).collect();
    let head = sure(root(leaves.len() as u64, memory_source(&leaves)));
    extension_line(leaves.len() as u64, &head)
}

/// The value of a read that cannot fail (the source holds every node it was asked for).
fn sure<T>(r: Result<T, Infallible>) -> T {
    r.unwrap_or_else(|e| match e {})
}

/// Why a stored or written checkpoint is not one this server signed, or does not match its row.
fn opened(row: &NewCheckpoint, public: [u8; 32]) -> Result<(), String> {
    let (text, _) = note::parse(&row.note).map_err(|e| e.to_string())?;
    let origin = text.split('\n').next().unwrap_or_default();
    let key = VerifierKey::new(origin, public).map_err(|e| e.to_string())?;
    let (text, _) = note::open(&row.note, &key).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
    if checkpoint.size != row.size || checkpoint.root != row.root {
        return Err("its row states another size or root than its note".into());
    }
    Ok(())
}

impl Vault {
    /// Whether the log's first `size` events still hash to `root`: `Err` with the finding when
    /// the log is shorter or its prefix differs.
    pub(crate) async fn prefix_matches(&self, size: u64, expected: &Hash) -> Result<Result<(), String>, CoreError> {
        let head = self.store().tree_head().await?;
        if head.size < size {
            return Ok(Err(format!("the log holds {} events, a signed checkpoint states {size}", head.size)));
        }
        let actual = sure(with_tree_nodes(self.store().as_ref(), |src| root(size, src)).await?);
        if &actual != expected {
            return Ok(Err(format!("the first {size} events do not hash to the root of the signed checkpoint")));
        }
        Ok(Ok(()))
    }

    /// Signs a checkpoint of the log as it is now, unless the last one already states it; then
    /// writes it to the directories and sends it to the witnesses. `accepted` is the reason of
    /// an operator's acceptance: only then is a log that does not extend the last checkpoint
    /// signed. Answers the last checkpoint.
    /// Also answers the tenants' logs the checkpoint's map was made of (when the last
    /// checkpoint is the one signed now, or states the size they reach).
    pub(crate) async fn checkpoint_now(
        &self,
        accepted: Option<String>,
    ) -> Result<(Option<CheckpointRow>, Vec<TenantLog>), CoreError> {
        let mut sizes = self.witness_sizes().lock().await;
        let latest = self.store().latest_checkpoint().await?;
        if accepted.is_none() {
            if let Some(reason) = self.log_guard().reason() {
                return Err(CoreError::AuditRollback(reason));
            }
            if let Some(last) = &latest {
                let finding = match opened(&last.checkpoint, self.log_key().public) {
                    Err(why) => Err(format!("the last stored checkpoint does not verify: {why}")),
                    Ok(()) => self.prefix_matches(last.checkpoint.size, &last.checkpoint.root).await?,
                };
                if let Err(finding) = finding {
                    self.found_rollback(finding.clone()).await;
                    return Err(CoreError::AuditRollback(finding));
                }
            }
        }
        // The tenants' own logs, advanced to the head, and the map of them the checkpoint
        // commits to; the checkpoint states the size the logs reach.
        let head = self.store().tree_head().await?;
        self.store().advance_tenant_logs(i64::try_from(head.size).unwrap_or(i64::MAX)).await?;
        let (upto, logs) = self.store().tenant_logs().await?;
        let size = u64::try_from(upto)
            .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("tenant_log_state".into())))?;
        let root = if size == head.size {
            head.root
        } else {
            sure(with_tree_nodes(self.store().as_ref(), |src| root(size, src)).await?)
        };
        let fresh = accepted.is_some() || latest.as_ref().is_none_or(|l| l.checkpoint.size != size);
        let row = if fresh {
            let text =
                Checkpoint { origin: self.log_key().name.clone(), size, root, extensions: vec![map_line(&logs)] }
                    .text();
            let key = self.checkpoint_key();
            let note = note::sign(&text, self.log_key(), |m| key.sign(m))
                .map_err(|e| CoreError::Store(rekey_store::StoreError::Corrupt(e.to_string())))?;
            let new = NewCheckpoint { size, root, note, signed_at: Timestamp::now(), accepted };
            let id = self.store().insert_checkpoint(&new).await?;
            self.writer_stats().checkpoint_size.store(size, std::sync::atomic::Ordering::Relaxed);
            self.write_to_dirs(&new).await;
            CheckpointRow { id, checkpoint: new, cosignatures: vec![] }
        } else {
            latest.expect("not fresh only when there is a latest")
        };
        self.send_to_witnesses(&row, &mut sizes).await?;
        let latest = self.store().latest_checkpoint().await?;
        Ok((latest, logs))
    }

    /// Refuses writes from now on, and records why (the event is one of those still written).
    pub(crate) async fn found_rollback(&self, finding: String) {
        tracing::error!(finding = %finding, "the audit log was rolled back or rewritten; refusing writes until an operator runs `rekey audit accept`");
        self.log_guard().set(finding.clone());
        self.writer_stats().rollback.store(1, std::sync::atomic::Ordering::Relaxed);
        let event = record(
            SYSTEM,
            "",
            &rekey_types::RequestId::generate(),
            AuditAction::AuditRollback,
            "audit log",
            AuditOutcome::Error,
            &finding,
        );
        if let Err(e) = self.audit_event(event).await {
            tracing::error!(error = %e, "could not record the rollback finding");
        }
    }

    /// Signs checkpoints every `checkpoint_every` (and once `checkpoint_events` were added), while
    /// the vault is open.
    pub(crate) fn start_checkpoints(self: std::sync::Arc<Self>) {
        let options = self.options().checkpoints.clone();
        let tick = match (options.every, options.events) {
            (_, Some(_)) => std::time::Duration::from_secs(1),
            (Some(every), None) => every,
            (None, None) => return,
        };
        let last_signed = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        self.repeat(tick, None, "signing an audit checkpoint", move |vault| {
            let last_signed = last_signed.clone();
            let options = options.clone();
            async move {
                if vault.log_guard().reason().is_some() {
                    return Ok(());
                }
                let due_by_time =
                    options.every.is_some_and(|e| last_signed.lock().expect("never poisoned").elapsed() >= e);
                let due_by_events = match options.events {
                    Some(n) => {
                        let head = vault.store().tree_head().await?.size;
                        let last = vault.store().latest_checkpoint().await?.map_or(0, |l| l.checkpoint.size);
                        head.saturating_sub(last) >= n
                    }
                    None => false,
                };
                if due_by_time || due_by_events {
                    *last_signed.lock().expect("never poisoned") = std::time::Instant::now();
                    vault.checkpoint_now(None).await?;
                }
                Ok(())
            }
        });
    }

    /// `audit checkpoint`: the last signed checkpoint with its cosignatures; with `now`, one is
    /// signed of the log as it is first (one is signed too if there is none yet).
    pub async fn audit_checkpoint(&self, caller: &Caller, now: bool) -> Result<CheckpointView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let mut latest = self.store().latest_checkpoint().await?;
            if now || latest.is_none() {
                latest = self.checkpoint_now(None).await?.0;
            }
            let row = latest.ok_or_else(|| CoreError::NotFound("a signed checkpoint".into()))?;
            Ok(self.checkpoint_view(row))
        }
        .await;
        self.finish_with(caller, AuditAction::AuditCheckpoint, "audit log", result, |v| format!("size={}", v.size))
            .await
    }

    /// `audit accept`: an operator accepts the log as it is after a rollback was found; the
    /// decision is recorded with its reason, writes are allowed again, and a checkpoint of the
    /// log as it is now is signed (marked with the reason).
    pub async fn accept_audit_log(&self, caller: &Caller, input: AcceptLog) -> Result<CheckpointView, CoreError> {
        let prepared = async {
            self.authorize(caller, Action::AcceptAuditLog, "audit log")?;
            let reason = rekey_types::text::line("the reason", &input.reason, MAX_REASON)
                .map_err(|e| CoreError::BadRequest(e.to_string()))?
                .to_owned();
            let finding = self.log_guard().reason().ok_or_else(|| {
                CoreError::Conflict("the audit log is not refused: there is nothing to accept".into())
            })?;
            Ok((reason, finding))
        }
        .await;
        let (reason, finding) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::AuditAccept, "audit log", Err(e)).await,
        };
        let detail = format!("reason={reason}; finding={finding}");
        self.audit_event(self.event(caller, AuditAction::AuditAccept, "audit log", AuditOutcome::Success, &detail))
            .await?;
        self.log_guard().clear();
        self.writer_stats().rollback.store(0, std::sync::atomic::Ordering::Relaxed);
        let row = self
            .checkpoint_now(Some(reason))
            .await?
            .0
            .ok_or_else(|| CoreError::NotFound("a signed checkpoint".into()))?;
        Ok(self.checkpoint_view(row))
    }

    fn checkpoint_view(&self, row: CheckpointRow) -> CheckpointView {
        let mut note = row.checkpoint.note.clone();
        for c in &row.cosignatures {
            note.push_str(&c.line);
        }
        CheckpointView {
            key: self.log_key().to_string(),
            size: row.checkpoint.size,
            root: hex::encode(row.checkpoint.root),
            note,
            signed_at: row.checkpoint.signed_at,
            accepted: row.checkpoint.accepted,
            cosignatures: row
                .cosignatures
                .into_iter()
                .map(|c| CosignatureView { witness: c.witness, time: c.time })
                .collect(),
            rollback: self.log_guard().reason(),
        }
    }
}

/// `audit evidence`: a tenant's events of a period with their inclusion proofs, the checkpoint
/// they are proven against, and the proof that they are all of the tenant's events since then.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvidenceView {
    /// The checkpoint, signed now.
    pub checkpoint: CheckpointView,
    /// The tenant's events at or after `since` that the checkpoint covers, oldest first, and
    /// the one before them (if any): it shows where the period starts.
    pub events: Vec<crate::evidence::ProvenEvent>,
    /// The proof that `events` are every event about the tenant from the first listed to the
    /// checkpoint; absent when `truncated`.
    pub complete: Option<crate::evidence::TenantLogProof>,
    /// Whether more events matched than an answer holds ([`MAX_EVIDENCE`]): the list is the
    /// earliest of them and proves no completeness; ask again with a later `since`.
    pub truncated: bool,
}

/// The most events one evidence answer holds.
pub const MAX_EVIDENCE: u32 = 10_000;

impl Vault {
    /// `audit evidence --tenant T --since S`: signs a checkpoint of the log as it is, then
    /// answers the tenant's events recorded since `since` (and the one before), each with its
    /// inclusion proof against that checkpoint, and the tenant map's proof that they are all.
    pub async fn audit_evidence(
        &self,
        caller: &Caller,
        tenant: &rekey_types::TenantName,
        since: Timestamp,
    ) -> Result<EvidenceView, CoreError> {
        let resource = format!("tenant:{tenant}");
        let result = async {
            self.authorize(caller, Action::ReadAudit, "audit log")?;
            let (row, logs) = self.checkpoint_now(None).await?;
            let row = row.ok_or_else(|| CoreError::NotFound("a signed checkpoint".into()))?;
            let size = row.checkpoint.size;
            let through = i64::try_from(size).unwrap_or(i64::MAX);
            // The tenant's own log up to the checkpoint; the period starts at its first event
            // recorded at or after `since`, and the list one event before that.
            let leaves = self.store().tenant_leaves(tenant.as_str(), through).await?;
            let first = leaves.iter().position(|(_, time, _)| *time >= since).unwrap_or(leaves.len());
            let start = first.saturating_sub(1);
            let after = leaves.get(start).map_or(through, |(seq, _, _)| seq - 1);
            let mut stored = self.store().audit_of_tenant(tenant.as_str(), after, through, MAX_EVIDENCE + 1).await?;
            let truncated = stored.len() > MAX_EVIDENCE as usize;
            stored.truncate(MAX_EVIDENCE as usize);
            let indexes: Vec<u64> = stored.iter().map(|e| (e.record.seq - 1) as u64).collect();
            let proofs = with_tree_nodes(self.store().as_ref(), |src| {
                indexes
                    .iter()
                    .map(|&i| rekey_tlog::tree::inclusion_proof(i, size, &mut *src))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
            .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("an inclusion proof".into())))?;
            let events: Vec<_> = stored
                .into_iter()
                .zip(proofs)
                .map(|(e, proof)| crate::evidence::ProvenEvent {
                    event: crate::audit::view(e),
                    proof: proof.iter().map(hex::encode).collect(),
                })
                .collect();
            let complete = if truncated {
                None
            } else {
                let leaves: Vec<Hash> = leaves.iter().map(|(_, _, leaf)| *leaf).collect();
                crate::evidence::tenant_log_proof(tenant.as_str(), &leaves, start, &logs, &row.checkpoint.note)
            };
            Ok(EvidenceView { checkpoint: self.checkpoint_view(row), events, complete, truncated })
        }
        .await;
        self.finish_with(caller, AuditAction::AuditProve, &resource, result, |v| format!("events={}", v.events.len()))
            .await
    }
}
