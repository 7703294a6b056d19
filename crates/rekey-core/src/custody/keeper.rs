//! The keeper: holds the seal and, while it is unsealed, the [`Vault`].
//!
//! A server starts with a keeper. A dev or PKCS#11 seal unseals itself at start, so the vault
//! opens at once. A Shamir seal starts sealed: `init` (once) makes the root keyring and its
//! shares, and `unseal` takes shares one at a time until the threshold is met, then opens the
//! vault. `seal` closes the vault and wipes key material from memory.
//!
//! While sealed there is no audit key, so nothing can be chained into the audit log: share
//! submissions are counted in memory (with their source addresses) and recorded in one
//! `sys.unseal` event as soon as the vault opens. A refused share is logged (never its value).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use rekey_crypto::seal::shamir::{check_issued, check_share};
use rekey_crypto::token::IssuedToken;
use rekey_crypto::{Seal, SealedKeyring, ShamirSeal, Share, ShareError};
use rekey_store::{SealKeyringRow, Store};
use rekey_types::{AuditAction, AuditOutcome, RequestId, Timestamp};
use zeroize::Zeroizing;

use crate::kernel::record;
use crate::kernel::writer::WriterStats;
use crate::views::SealStatus;
use crate::{Caller, CoreError, Vault, VaultOptions};

#[derive(Default)]
struct Progress {
    shares: Vec<Share>,
    sources: Vec<String>,
    /// Where the resets since the last unseal came from (the vault cannot audit while sealed:
    /// the unseal's own audit event reports them).
    resets: Vec<String>,
}

/// Holds the seal and, while unsealed, the vault: the one object a server keeps, across seals and unseals.
pub struct Keeper {
    store: Arc<dyn Store>,
    seal: Arc<dyn Seal>,
    vault: RwLock<Option<Arc<Vault>>>,
    progress: Mutex<Progress>,
    stats: Arc<WriterStats>,
    connector_stats: Arc<crate::connectors::ConnectorStats>,
    options: VaultOptions,
    /// Serializes init, unseal and seal.
    transition: tokio::sync::Mutex<()>,
}

/// What `rekey init` prints once.
pub struct InitOutcome {
    /// The shares, each shown once.
    pub shares: Vec<Zeroizing<String>>,
    /// Shares needed to unseal.
    pub threshold: u8,
}

/// What an unseal share did.
pub struct UnsealOutcome {
    /// Whether the vault is still sealed.
    pub sealed: bool,
    /// Shares given so far toward the threshold.
    pub progress: u8,
    /// Shares needed.
    pub threshold: u8,
    /// The root operator token, when this unseal opened a vault for the first time.
    pub root_token: Option<IssuedToken>,
}

pub(crate) fn keyring_of(row: &SealKeyringRow) -> Result<SealedKeyring, CoreError> {
    let set_id: [u8; 8] = row
        .set_id
        .as_slice()
        .try_into()
        .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("seal_keyring.set_id".into())))?;
    let commitments = match &row.commitments {
        Some(bytes) => Some(
            rekey_crypto::ShareCommitment::decode(bytes)
                .ok_or_else(|| CoreError::Store(rekey_store::StoreError::Corrupt("seal_keyring.commitments".into())))?,
        ),
        None => None,
    };
    Ok(SealedKeyring { set_id, shares: row.shares, threshold: row.threshold, blob: row.blob.clone(), commitments })
}

pub(crate) fn keyring_row(slot: &str, sealed: &SealedKeyring) -> SealKeyringRow {
    SealKeyringRow {
        slot: slot.to_owned(),
        set_id: sealed.set_id.to_vec(),
        shares: sealed.shares,
        threshold: sealed.threshold,
        blob: sealed.blob.clone(),
        commitments: sealed.commitments.as_deref().map(rekey_crypto::ShareCommitment::encode),
        created_at: Timestamp::now(),
    }
}

/// The seal's state as `status` shows it. `shamir` adds what only a Shamir seal has.
pub fn seal_status(seal: &dyn Seal, shamir: Option<(bool, u8, u8, u8)>) -> SealStatus {
    let (initialized, progress, threshold, shares) = match shamir {
        Some((init, p, t, n)) => (Some(init), Some(p), Some(t), Some(n)),
        None => (None, None, None, None),
    };
    SealStatus {
        kind: seal.kind().to_string(),
        sealed: !seal.is_unsealed(),
        initialized,
        unseal_progress: progress,
        threshold,
        shares,
        root_key_version: seal.root_version(),
        root_key_versions: seal.root_versions(),
        warning: (seal.kind() == rekey_types::SealKind::Dev)
            .then(|| "dev seal: the root key is a file beside the data; never use it in production".to_owned()),
    }
}

impl Keeper {
    /// Opens the vault at once if the seal is already unsealed (dev, PKCS#11).
    pub async fn start(
        store: Arc<dyn Store>,
        seal: Arc<dyn Seal>,
        options: VaultOptions,
    ) -> Result<(Self, Option<IssuedToken>), CoreError> {
        let stats = options.writer_stats.clone().unwrap_or_default();
        let connector_stats = options.connector_stats.clone().unwrap_or_default();
        let keeper = Self {
            store,
            seal,
            vault: RwLock::new(None),
            progress: Mutex::new(Progress::default()),
            stats,
            connector_stats,
            options,
            transition: tokio::sync::Mutex::new(()),
        };
        let root = if keeper.seal.is_unsealed() { keeper.open_vault().await? } else { None };
        Ok((keeper, root))
    }

    async fn open_vault(&self) -> Result<Option<IssuedToken>, CoreError> {
        let options = VaultOptions {
            writer_stats: Some(self.stats.clone()),
            connector_stats: Some(self.connector_stats.clone()),
            ..self.options.clone()
        };
        let (vault, root) = Vault::open(self.store.clone(), self.seal.clone(), options).await?;
        let vault = Arc::new(vault);
        vault.clone().start_jobs();
        vault.clone().start_scheduler();
        vault.clone().start_campaigns();
        vault.clone().start_failure_audit();
        vault.clone().start_checkpoints();
        vault.clone().start_siem();
        vault.clone().start_detector();
        vault.start_binding();
        *self.vault.write().expect("vault lock is never poisoned") = Some(vault);
        Ok(root)
    }

    /// The open vault, or `Sealed`.
    pub fn vault(&self) -> Result<Arc<Vault>, CoreError> {
        self.vault.read().expect("vault lock is never poisoned").clone().ok_or(CoreError::Sealed)
    }

    /// The seal's kind.
    pub fn seal_kind(&self) -> rekey_types::SealKind {
        self.seal.kind()
    }

    /// The store's backend: `sqlite` or `postgres`.
    pub fn store_backend(&self) -> &'static str {
        self.store.backend().as_str()
    }

    /// The store's reveal cache (SQLite); `None` without one.
    pub fn reveal_cache(&self) -> Option<rekey_store::RevealCacheStats> {
        self.store.reveal_cache()
    }

    /// Audit events not yet in the store's deferred audit index (SQLite); `None` without one.
    pub async fn audit_index_lag(&self) -> Result<Option<i64>, CoreError> {
        Ok(self.store.audit_index_lag().await?)
    }

    /// The audit writer's counters (for metrics; they survive seals).
    pub fn writer_stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// The connectors' counters (for metrics).
    pub fn connector_stats(&self) -> &Arc<crate::connectors::ConnectorStats> {
        &self.connector_stats
    }

    /// Whether this server can serve requests now: `Err` with the reason (sealed, the store
    /// not answering, writes refused after an audit rollback) when it cannot. Reads one row.
    pub async fn readiness(&self) -> Result<(), String> {
        let vault = self.vault().map_err(|_| "sealed".to_owned())?;
        self.store.audit_head().await.map_err(|_| "the store does not answer".to_owned())?;
        match vault.log_guard().reason() {
            Some(_) => Err("writes are refused: the audit log is behind a signed checkpoint (see sys status)".into()),
            None => Ok(()),
        }
    }

    /// Whether the vault is sealed.
    pub fn is_sealed(&self) -> bool {
        self.vault.read().expect("vault lock is never poisoned").is_none()
    }

    /// The seal's state, which anyone may read (`sys status` while sealed).
    pub async fn seal_status(&self) -> Result<SealStatus, CoreError> {
        let shamir = match self.seal.as_shamir() {
            Some(_) => {
                let stored = self.store.seal_keyring("active").await?;
                let given = self.progress.lock().expect("lock is never poisoned").shares.len() as u8;
                Some(match stored {
                    Some(row) => (true, given, row.threshold, row.shares),
                    None => (false, 0, 0, 0),
                })
            }
            None => None,
        };
        Ok(seal_status(self.seal.as_ref(), shamir))
    }

    fn shamir(&self) -> Result<&ShamirSeal, CoreError> {
        self.seal.as_shamir().ok_or_else(|| {
            CoreError::Conflict(format!("the {} seal has no shares: it unseals at start", self.seal.kind()))
        })
    }

    /// `rekey init`: makes the root keyring and splits its unseal key. Only once per store.
    pub async fn init(&self, shares: u8, threshold: u8) -> Result<InitOutcome, CoreError> {
        let _t = self.transition.lock().await;
        self.shamir()?;
        if self.store.seal_keyring("active").await?.is_some() {
            return Err(CoreError::Conflict("the vault is already initialized".into()));
        }
        let split = ShamirSeal::initialize(shares, threshold).map_err(CoreError::from_seal)?;
        if !self.store.put_seal_keyring(&keyring_row("active", &split.sealed)).await? {
            return Err(CoreError::Conflict("the vault is already initialized".into()));
        }
        tracing::info!(shares, threshold, "initialized the Shamir seal; the shares were handed to the caller");
        Ok(InitOutcome { shares: split.shares, threshold })
    }

    /// The stored keyring of the current split.
    async fn active_keyring(&self) -> Result<SealedKeyring, CoreError> {
        let stored = self
            .store
            .seal_keyring("active")
            .await?
            .ok_or_else(|| CoreError::Conflict("the vault is not initialized: run rekey init first".into()))?;
        keyring_of(&stored)
    }

    /// Takes one share. At the threshold, rebuilds the unseal key and opens the vault.
    pub async fn unseal(&self, share_text: &str, source: IpAddr) -> Result<UnsealOutcome, CoreError> {
        let _t = self.transition.lock().await;
        let shamir = self.shamir()?;
        let sealed = self.active_keyring().await?;
        if !self.is_sealed() {
            return Ok(UnsealOutcome { sealed: false, progress: 0, threshold: sealed.threshold, root_token: None });
        }
        let refused = |e: ShareError| {
            tracing::warn!(source = %source, reason = %e, "refused an unseal share");
            CoreError::InvalidShare(e)
        };
        let share = Share::parse(share_text).map_err(refused)?;
        let ready = {
            let mut progress = self.progress.lock().expect("lock is never poisoned");
            check_share(&sealed, &progress.shares, &share).map_err(refused)?;
            progress.shares.push(share);
            progress.sources.push(source.to_string());
            progress.shares.len() >= sealed.threshold as usize
        };
        if !ready {
            let given = self.progress.lock().expect("lock is never poisoned").shares.len() as u8;
            return Ok(UnsealOutcome { sealed: true, progress: given, threshold: sealed.threshold, root_token: None });
        }
        let Progress { shares, sources, resets } =
            std::mem::take(&mut *self.progress.lock().expect("lock is never poisoned"));
        if let Err(e) = shamir.unseal(&sealed, &shares) {
            tracing::warn!(error = %e, "the shares did not open the keyring; progress was reset");
            return Err(CoreError::from_seal(e));
        }
        let root = match self.open_vault().await {
            Ok(root) => root,
            Err(e) => {
                self.seal.seal();
                return Err(e);
            }
        };
        let vault = self.vault()?;
        let event = record(
            "unseal-shares",
            &sources.join(","),
            &RequestId::generate(),
            AuditAction::SysUnseal,
            "seal",
            AuditOutcome::Success,
            &format!(
                "{} shares of a {}-of-{} split{}{}",
                shares.len(),
                sealed.threshold,
                sealed.shares,
                if sealed.commitments.is_none() {
                    "; the split has no share commitments: a root rotation makes one that has"
                } else {
                    ""
                },
                if resets.is_empty() {
                    String::new()
                } else {
                    format!("; progress was reset {} times while sealed, from {}", resets.len(), resets.join(","))
                }
            ),
        );
        vault.audit_event(event).await?;
        Ok(UnsealOutcome { sealed: false, progress: 0, threshold: sealed.threshold, root_token: root })
    }

    /// Forgets the shares given so far. Only a share holder may: `share_text` must be a share
    /// of the current split (checked against its commitment; it does not count toward the
    /// threshold). Logged now, and reported in the audit event of the next unseal.
    pub async fn unseal_reset(&self, share_text: &str, source: IpAddr) -> Result<u8, CoreError> {
        let _t = self.transition.lock().await;
        self.shamir()?;
        let sealed = self.active_keyring().await?;
        let refused = |e: ShareError| {
            tracing::warn!(source = %source, reason = %e, "refused an unseal reset");
            CoreError::InvalidShare(e)
        };
        let share = Share::parse(share_text).map_err(refused)?;
        check_issued(&sealed, &share).map_err(refused)?;
        let mut progress = self.progress.lock().expect("lock is never poisoned");
        let forgotten = progress.shares.len();
        let mut resets = std::mem::take(&mut progress.resets);
        resets.push(source.to_string());
        *progress = Progress { resets, ..Progress::default() };
        tracing::warn!(source = %source, forgotten, "unseal progress reset by a share holder");
        Ok(sealed.threshold)
    }

    /// `rekey seal`: audited, then the vault closes and every key in memory is dropped.
    pub async fn seal(&self, caller: &Caller) -> Result<(), CoreError> {
        let _t = self.transition.lock().await;
        let vault = self.vault()?;
        if let Err(e) = vault.authorize(caller, crate::kernel::policy::Action::ManageKeys, "seal") {
            return vault.finish(caller, AuditAction::SysSeal, "seal", Err(e)).await;
        }
        let event = vault.event(caller, AuditAction::SysSeal, "seal", AuditOutcome::Success, "");
        vault.audit_event(event).await?;
        vault.close();
        vault.jobs_wake().notify_waiters();
        self.vault.write().expect("vault lock is never poisoned").take();
        vault.keks().clear();
        self.seal.seal();
        tracing::warn!("sealed: key material was dropped from memory");
        Ok(())
    }
}
