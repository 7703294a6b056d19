//! Opening a vault: the seal must hold every root key the store uses; on first start the audit
//! chain key's creation is recorded and a root operator token is made, shown once. And the
//! status a caller sees of it.

use std::sync::Arc;

use rekey_crypto::token::IssuedToken;
use rekey_crypto::Seal;
use rekey_store::{Store, TokenRow, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, KeyState, RequestId, Role, Timestamp};

use crate::kernel::policy::Action;
use crate::kernel::{record, Assembled};
use crate::views::{CountsView, StatusView};
use crate::{Caller, CoreError, Vault, VaultOptions};

/// The principal name recorded for work the server does on its own.
const SYSTEM: &str = "system";

impl Vault {
    /// Opens the vault: loads (or on first start creates) the audit chain key, starts the writer,
    /// and on first start creates a root operator token, returned so the caller can show it once.
    pub async fn open(
        store: Arc<dyn Store>,
        seal: Arc<dyn Seal>,
        options: VaultOptions,
    ) -> Result<(Self, Option<IssuedToken>), CoreError> {
        if !seal.is_unsealed() {
            return Err(CoreError::Sealed);
        }
        let registered = store.root_keys().await?;
        if seal.root_versions().is_empty() {
            // A seal with no root key yet (an HSM token before first use). Only a store that
            // has never held a key may get a fresh one; anything else means the wrong seal.
            if !registered.is_empty() || store.counts().await?.tenants > 0 {
                return Err(CoreError::Seal(rekey_crypto::CryptoError::Seal(
                    "the seal holds no root key, but this database has keys wrapped by one: is this the right seal?"
                        .into(),
                )));
            }
            seal.add_root_version().map_err(CoreError::from_seal)?;
            tracing::info!(kind = %seal.kind(), "created root key version 1 in the seal");
        }
        let held = seal.root_versions();
        for r in registered.iter().filter(|r| r.state != KeyState::Destroyed) {
            if !held.contains(&r.version) {
                return Err(CoreError::Seal(rekey_crypto::CryptoError::Seal(format!(
                    "the seal does not hold root@{}, which this database uses: is this the right seal \
                     (key file, HSM token and key label)?",
                    r.version
                ))));
            }
        }
        let Assembled { vault, created_audit_key: created } = Vault::assemble(store, seal, options).await?;
        if created {
            let event = record(
                SYSTEM,
                "",
                &RequestId::generate(),
                AuditAction::SysInit,
                "audit-chain-key",
                AuditOutcome::Success,
                "created the audit chain key",
            );
            vault.audit_event(event).await?;
        }
        vault.register_root_versions(&registered).await?;
        vault.seal_legacy_tokens().await?;
        let root = vault.create_root_token_if_none().await?;
        vault.check_rollback().await?;
        Ok((vault, root))
    }

    async fn create_root_token_if_none(&self) -> Result<Option<IssuedToken>, CoreError> {
        if !self.store().list_tokens().await?.is_empty() {
            return Ok(None);
        }
        let issued = rekey_crypto::token::issue().map_err(CoreError::Crypto)?;
        let row = TokenRow {
            id: issued.id,
            hash: issued.hash.to_vec(),
            role: Role::Operator,
            tenant_id: None,
            tenant_name: None,
            bound: vec![],
            cidrs: vec![],
            description: "root token, created at first start".into(),
            created_by: SYSTEM.into(),
            created_at: Timestamp::now(),
            expires_at: None,
            max_expires_at: None,
            revoked_at: None,
            mac: None,
        };
        let row = TokenRow { mac: Some(crate::kernel::integrity::token_mac(self.integrity(), &row)), ..row };
        let audit = record(
            SYSTEM,
            "",
            &RequestId::generate(),
            AuditAction::TokenCreate,
            &format!("token:{}", issued.id),
            AuditOutcome::Success,
            "role=operator; root token",
        );
        self.submit(WriteRequest { op: Some(WriteOp::CreateToken(row)), audit }).await?;
        Ok(Some(issued))
    }

    /// `sys status`: the seal, the store and counts.
    pub async fn status(&self, caller: &Caller) -> Result<StatusView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadStatus, "status")?;
            let counts = self.store().counts().await?;
            let shamir = match self.seal().as_shamir() {
                Some(_) => self.store().seal_keyring("active").await?.map(|k| (true, 0, k.threshold, k.shares)),
                None => None,
            };
            Ok(StatusView {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                seal: crate::custody::keeper::seal_status(self.seal().as_ref(), shamir),
                store: self.store().backend().as_str().to_owned(),
                counts: Some(CountsView {
                    tenants: counts.tenants,
                    credentials: counts.credentials,
                    versions: counts.versions,
                    active_tokens: counts.tokens,
                }),
                audit_head_seq: Some(counts.audit_events),
                integrity_failures: Some(
                    self.writer_stats().integrity_failures.load(std::sync::atomic::Ordering::Relaxed),
                ),
                audit_rollback: self.log_guard().reason(),
            })
        }
        .await;
        self.finish(caller, AuditAction::SysStatus, "", result).await
    }
}
