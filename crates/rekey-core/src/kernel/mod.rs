//! The kernel: the one [`Vault`] every use case works through, and the state only the kernel
//! touches.
//!
//! - `audit`: the only way to the audit log and the store's writes (record, finish, commit);
//! - `auth` and [`policy`]: who is calling, and every permission, decided in `policy` only;
//! - `keys` and `target`: tenant KEKs, and a version opened only with the fields it was stored
//!   for (where a secret may go);
//! - `integrity`: the MACs of token rows and the fingerprints of secrets;
//! - `writer`: the group-commit audit writer.
//!
//! The fields of [`Vault`] are private to this module. The domain modules around it
//! (credentials, custody, connectors, breach response) reach the state through the methods
//! below, each naming what it gives; none of them depends on another's internals, and nothing
//! in the kernel depends on them.

mod audit;
pub(crate) mod auth;
pub(crate) mod hints;
pub(crate) mod integrity;
pub(crate) mod issuer_keys;
pub(crate) mod keys;
pub(crate) mod locks;
pub mod policy;
pub(crate) mod tap;
pub(crate) mod target;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rekey_crypto::{AuditKey, IntegrityKey, KeyContext, Seal, SigningKey, SystemKey};
use rekey_store::{Store, StoreError, SystemKeyRow};

pub(crate) use audit::{record, Actor};
pub use auth::TOKEN_CACHE_TTL;

use crate::options::VaultOptions;
use crate::outbound::HostLimiter;
use crate::stats::ConnectorStats;
use crate::CoreError;
use hints::PutHints;
use keys::KekCache;
use locks::CredentialLocks;
use writer::Writer;

/// An open vault: the store, the seal and the keys it unwrapped, the audit writer, and the
/// server's shared runtime state.
pub struct Vault {
    store: Arc<dyn Store>,
    seal: Arc<dyn Seal>,
    keks: KekCache,
    writer: Writer,
    audit_key: Arc<AuditKey>,
    /// Authenticates token rows and fingerprints secrets (see `integrity`).
    integrity: Arc<IntegrityKey>,
    credential_locks: CredentialLocks,
    put_hints: PutHints,
    tokens: auth::TokenCache,
    /// Issuers' keys for workload logins, by where they come from.
    issuer_keys: issuer_keys::KeyCache,
    options: VaultOptions,
    /// Set when the vault is sealed: background jobs stop at their next step.
    closed: AtomicBool,
    /// Wakes the job runner when a job is created.
    jobs_wake: Arc<tokio::sync::Notify>,
    hosts: HostLimiter,
    connector_stats: Arc<ConnectorStats>,
    /// Wakes the campaign workers when a campaign starts.
    campaigns_wake: Arc<tokio::sync::Notify>,
    alerts_wake: Arc<tokio::sync::Notify>,
    decoys_planted: std::sync::atomic::AtomicU64,
    feeds_read: std::sync::atomic::AtomicU64,
    /// Signs the audit log's checkpoints.
    checkpoint_key: Arc<SigningKey>,
    /// The checkpoint key's public half under the log's origin.
    log_key: rekey_tlog::VerifierKey,
    /// Set (with the reason) while the log is known to be shorter than, or inconsistent with, a
    /// signed checkpoint: writes other than the audit log's own are refused.
    rollback: RollbackGuard,
    /// The size each witness last cosigned, as this server knows it; held while a checkpoint
    /// is signed and sent, so that checkpoints are made one at a time.
    witness_sizes: tokio::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// The log's key: the checkpoint key's public half under the configured origin, or under
/// `rekey/audit/<16 hex digits of SHA-256(public key)>`.
fn log_key(origin: Option<&str>, public: [u8; 32]) -> Result<rekey_tlog::VerifierKey, CoreError> {
    use sha2::{Digest, Sha256};
    let origin = match origin {
        Some(o) => o.to_owned(),
        None => format!("rekey/audit/{}", &hex::encode(Sha256::digest(public))[..16]),
    };
    rekey_tlog::VerifierKey::new(&origin, public).map_err(|e| CoreError::BadRequest(format!("audit.origin: {e}")))
}

/// Whether writes are refused because the log was rolled back (see [`Vault::refuse_writes`]).
#[derive(Default)]
pub(crate) struct RollbackGuard {
    set: AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl RollbackGuard {
    /// The reason writes are refused, if they are.
    pub(crate) fn reason(&self) -> Option<String> {
        if !self.set.load(Ordering::Acquire) {
            return None;
        }
        self.reason.lock().expect("never poisoned").clone()
    }

    pub(crate) fn set(&self, reason: String) {
        *self.reason.lock().expect("never poisoned") = Some(reason);
        self.set.store(true, Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        self.set.store(false, Ordering::Release);
        *self.reason.lock().expect("never poisoned") = None;
    }
}

/// The system keys a vault opened with, and whether the audit chain key was made just now (the
/// caller then records that, once the vault is open).
pub(crate) struct Assembled {
    pub vault: Vault,
    pub created_audit_key: bool,
}

impl Vault {
    /// Loads (or on first start creates) the audit chain key and the integrity key, and starts
    /// the audit writer. The caller has checked that the seal holds the store's root keys.
    pub(crate) async fn assemble(
        store: Arc<dyn Store>,
        seal: Arc<dyn Seal>,
        options: VaultOptions,
    ) -> Result<Assembled, CoreError> {
        let (audit_key, created_audit_key) =
            load_or_create_system_key(store.as_ref(), seal.as_ref(), AuditKey::PURPOSE).await?;
        let audit_key = Arc::new(AuditKey::from_system_key(audit_key));
        let (integrity, _) = load_or_create_system_key(store.as_ref(), seal.as_ref(), IntegrityKey::PURPOSE).await?;
        let integrity = Arc::new(IntegrityKey::from_system_key(integrity));
        let (seed, _) =
            load_or_create_system_key(store.as_ref(), seal.as_ref(), SigningKey::CHECKPOINT_PURPOSE).await?;
        let checkpoint_key = Arc::new(SigningKey::from_system_key(&seed).map_err(CoreError::Crypto)?);
        let log_key = log_key(options.checkpoints.origin.as_deref(), checkpoint_key.public())?;
        let head = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
        let writer = Writer::spawn(store.clone(), audit_key.clone(), head, options.writer_stats.clone())
            .map_err(|e| CoreError::Store(StoreError::Backend(Box::new(e))))?;
        let vault = Self {
            store,
            seal,
            keks: KekCache::default(),
            writer,
            audit_key,
            integrity,
            credential_locks: Default::default(),
            put_hints: Default::default(),
            tokens: Default::default(),
            issuer_keys: Default::default(),
            closed: Default::default(),
            jobs_wake: Default::default(),
            campaigns_wake: Default::default(),
            alerts_wake: Default::default(),
            decoys_planted: Default::default(),
            feeds_read: Default::default(),
            hosts: Default::default(),
            checkpoint_key,
            log_key,
            rollback: Default::default(),
            witness_sizes: Default::default(),
            connector_stats: options.connector_stats.clone().unwrap_or_default(),
            options,
        };
        Ok(Assembled { vault, created_audit_key })
    }

    /// The store, for reads. Writes go through the audit methods (`commit`, `submit`), never
    /// straight to the store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The seal (to wrap and unwrap tenant keys).
    pub fn seal(&self) -> &Arc<dyn Seal> {
        &self.seal
    }

    pub(crate) fn keks(&self) -> &KekCache {
        &self.keks
    }

    pub(crate) fn integrity(&self) -> &IntegrityKey {
        &self.integrity
    }

    pub(crate) fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    pub(crate) fn writer_stats(&self) -> &writer::WriterStats {
        self.writer.stats()
    }

    pub(crate) fn issuer_keys(&self) -> &issuer_keys::KeyCache {
        &self.issuer_keys
    }

    pub(crate) fn options(&self) -> &VaultOptions {
        &self.options
    }

    pub(crate) fn credential_locks(&self) -> &CredentialLocks {
        &self.credential_locks
    }

    pub(crate) fn put_hints(&self) -> &PutHints {
        &self.put_hints
    }

    pub(crate) fn hosts(&self) -> &HostLimiter {
        &self.hosts
    }

    pub(crate) fn connector_stats(&self) -> &Arc<ConnectorStats> {
        &self.connector_stats
    }

    pub(crate) fn checkpoint_key(&self) -> &SigningKey {
        &self.checkpoint_key
    }

    /// The checkpoint key's public half, named by the log's origin.
    pub fn log_key(&self) -> &rekey_tlog::VerifierKey {
        &self.log_key
    }

    pub(crate) fn witness_sizes(&self) -> &tokio::sync::Mutex<std::collections::HashMap<String, u64>> {
        &self.witness_sizes
    }

    pub(crate) fn log_guard(&self) -> &RollbackGuard {
        &self.rollback
    }

    pub(crate) fn jobs_wake(&self) -> &Arc<tokio::sync::Notify> {
        &self.jobs_wake
    }

    /// The events this server committed lately, for the followers of the log.
    pub(crate) fn tap(&self) -> &Arc<tap::Tap> {
        self.writer.tap()
    }

    /// Decoy plants this server made (the detector reads the registry again when it moves).
    pub(crate) fn decoys_planted(&self) -> &std::sync::atomic::AtomicU64 {
        &self.decoys_planted
    }

    /// Feed reads of this server that changed what a feed lists (the detector reads the
    /// listings again when it moves).
    pub(crate) fn feeds_read(&self) -> &std::sync::atomic::AtomicU64 {
        &self.feeds_read
    }

    /// Woken when an alert is stored, for its notice.
    pub(crate) fn alerts_wake(&self) -> &Arc<tokio::sync::Notify> {
        &self.alerts_wake
    }

    pub(crate) fn campaigns_wake(&self) -> &Arc<tokio::sync::Notify> {
        &self.campaigns_wake
    }

    /// Whether the vault was sealed: background work stops at its next step.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the vault sealed (see [`Vault::is_closed`]).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Runs `pass` now and then every `every` (sooner when `wake` is notified) on a task of
    /// its own, while the vault is open: the task holds only a weak reference between passes,
    /// and stops once the vault is sealed or dropped. A failed pass is logged as `what` and the
    /// next one runs as planned.
    pub(crate) fn repeat<F, Fut>(
        self: Arc<Self>,
        every: std::time::Duration,
        wake: Option<Arc<tokio::sync::Notify>>,
        what: &'static str,
        pass: F,
    ) where
        F: Fn(Arc<Vault>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), CoreError>> + Send,
    {
        let vault = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = vault.upgrade() else { return };
                if this.is_closed() {
                    return;
                }
                if let Err(e) = pass(this).await {
                    tracing::error!(error = %e, "{what} failed");
                }
                match &wake {
                    Some(wake) => drop(tokio::time::timeout(every, wake.notified()).await),
                    None => tokio::time::sleep(every).await,
                }
            }
        });
    }
}

/// A system key (the audit chain key, the integrity key) lives in the store wrapped by the seal.
/// On first start it is created; if another server sharing the database stored one first, that
/// one is used. `true` when this call created it, so that the caller can audit that once the key
/// is settled (the event is then chained with the key that stays).
pub(crate) async fn load_or_create_system_key(
    store: &dyn Store,
    seal: &dyn Seal,
    purpose: &'static str,
) -> Result<(SystemKey, bool), CoreError> {
    if store.system_key(purpose).await?.is_none() {
        let key = SystemKey::generate().map_err(CoreError::Crypto)?;
        let ctx = KeyContext::System { purpose, version: 1 };
        let wrapped = seal.wrap_system_key(ctx, &key).map_err(CoreError::Crypto)?;
        if store.insert_system_key(&SystemKeyRow { purpose: purpose.into(), version: 1, wrapped }).await? {
            return Ok((key, true));
        }
    }
    let row = store
        .system_key(purpose)
        .await?
        .ok_or_else(|| CoreError::Store(StoreError::Corrupt(format!("system key {purpose} vanished"))))?;
    let ctx = KeyContext::System { purpose, version: row.version };
    let key = seal.unwrap_system_key(ctx, &row.wrapped).map_err(CoreError::Decrypt)?;
    Ok((key, false))
}
