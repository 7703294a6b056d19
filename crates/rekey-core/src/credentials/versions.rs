//! Moving between versions: rollback, retarget (new target fields for the same secret, a new
//! version), promote a pending version; all under the credential's turn.

use std::collections::BTreeMap;

use rekey_store::{CredentialRow, VersionRow, WriteOp};
use rekey_types::{AuditAction, CredRef, Fields, Stage, TenantId, Timestamp};

use super::{describe_change, NextVersion};
use crate::kernel::keys::KeyUse;
use crate::kernel::policy::Action;
use crate::views::CredentialView;
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// Makes version `to` current again, as a new version (re-encrypted under a fresh DEK) with
    /// the target fields `to` was stored for. Refused on a frozen credential, for a retired
    /// version, and for a version that existed when an open incident covering the credential
    /// was opened: none of those may put a possibly stolen secret back in service.
    pub async fn rollback(&self, caller: &Caller, cref: &CredRef, to: u32) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        if let Err(e) = self.authorize(caller, Action::RollbackCredential(&cref.tenant), &format!("credential {cref}"))
        {
            return self.finish(caller, AuditAction::CredRollback, &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, AuditAction::CredRollback, &resource, Err(e)).await,
        };
        let prepared = async {
            let (tenant, credential) = self.load(cref).await?;
            if let Some(incident) = &credential.frozen_by {
                return Err(CoreError::Frozen(format!(
                    "credential {cref} is frozen by incident {incident}: no rollback until a new, verified secret is current"
                )));
            }
            if to == credential.current_version {
                return Err(CoreError::Conflict(format!("version {to} is already current")));
            }
            let old = self
                .store()
                .version(credential.id, Some(to))
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("version {to} of credential {cref}")))?;
            if old.stage == Stage::Retired || old.stage == Stage::Failed {
                return Err(CoreError::Conflict(format!(
                    "version {to} of credential {cref} is {}: it is never served again",
                    old.stage
                )));
            }
            for incident in self.store().open_incidents_covering(credential.id).await? {
                if old.created_at <= incident.created_at {
                    return Err(CoreError::Conflict(format!(
                        "version {to} of credential {cref} existed when incident {} ({}) was opened and may be stolen: \
                         it cannot be made current while the incident is open",
                        incident.id, incident.title
                    )));
                }
            }
            let fields = crate::kernel::target::bound_fields(&old)
                .ok_or_else(|| crate::kernel::target::not_migrated(&format!("version {to} of credential {cref}")))?;
            // The rolled-back secret goes back to the target it was stored for, and only there.
            self.may_write_fields(caller, cref, Some(&credential), fields)?;
            let fields = Fields::from_stored(fields.clone());
            let (op, updated) = self.reseal(caller, tenant.id, &credential, &old, fields).await?;
            Ok((tenant, op, updated))
        }
        .await;
        let (tenant, op, updated) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CredRollback, &resource, Err(e)).await,
        };
        let detail = format!("to={to}; new version={}", updated.current_version);
        self.commit(caller, AuditAction::CredRollback, &resource, op, &detail).await?;
        Ok(CredentialView::new(&tenant.name, &tenant.region, updated))
    }

    /// `rekey cred retarget`: sends the current secret to another target, as a new version
    /// with the changed fields and the same secret. An operator's act, audited with the old and
    /// the new target (`cred.retarget`).
    pub async fn retarget(
        &self,
        caller: &Caller,
        cref: &CredRef,
        set: BTreeMap<String, String>,
        unset: Vec<String>,
    ) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        if let Err(e) = self.authorize(caller, Action::RetargetCredential(&cref.tenant), &format!("credential {cref}"))
        {
            return self.finish(caller, AuditAction::CredRetarget, &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, AuditAction::CredRetarget, &resource, Err(e)).await,
        };
        let prepared = async {
            let (tenant, credential) = self.load(cref).await?;
            let current = self
                .store()
                .version(credential.id, Some(credential.current_version))
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("the current version of credential {cref}")))?;
            let before = crate::kernel::target::bound_fields(&current)
                .ok_or_else(|| crate::kernel::target::not_migrated(&format!("the current version of {cref}")))?
                .clone();
            let mut after = before.clone();
            for key in &unset {
                if after.remove(key).is_none() {
                    return Err(CoreError::Conflict(format!("field {key:?} is not set on {cref}")));
                }
            }
            after.extend(set);
            let fields = Fields::validate(credential.kind, after)?;
            if fields.as_map() == &before {
                return Err(CoreError::Conflict("nothing to change: the target is already that".into()));
            }
            let change = describe_change(&before, fields.as_map());
            let (op, updated) = self.reseal(caller, tenant.id, &credential, &current, fields).await?;
            Ok((tenant, op, updated, change))
        }
        .await;
        let (tenant, op, updated, change) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CredRetarget, &resource, Err(e)).await,
        };
        let detail =
            format!("from version={}; new version={}; {change}", updated.current_version - 1, updated.current_version);
        self.commit(caller, AuditAction::CredRetarget, &resource, op, &detail).await?;
        Ok(CredentialView::new(&tenant.name, &tenant.region, updated))
    }

    /// The secret of `from` stored again as the next, current version of `credential`, for
    /// `fields` (re-encrypted under a fresh DEK): how a rollback and a retarget write.
    async fn reseal(
        &self,
        caller: &Caller,
        tenant: TenantId,
        credential: &CredentialRow,
        from: &VersionRow,
        fields: Fields,
    ) -> Result<(WriteOp, CredentialRow), CoreError> {
        let secret = self.open_version(tenant, credential, from, KeyUse::Serve).await?;
        let next = NextVersion {
            tenant,
            name: &credential.name,
            kind: credential.kind,
            fields,
            labels: credential.labels.clone(),
            existing: Some(credential),
            created_by: &caller.principal.audit_name(),
            kek_version: None,
            pending: false,
        };
        self.sealed_version(next, &secret).await
    }

    /// Waits for this server's turn on `cref` (puts, rollbacks and promotions of one credential
    /// take turns). No turn is needed for a tenant that does not exist: the use case refuses it.
    async fn turn_of(&self, cref: &CredRef) -> Result<Option<crate::kernel::locks::CredentialGuard<'_>>, CoreError> {
        Ok(match self.store().tenant_by_name(&cref.tenant).await? {
            Some(t) => Some(self.credential_locks().lock(t.id, cref.name.as_str()).await),
            None => None,
        })
    }

    /// Makes the pending version current (after it was registered with, or applied at, its
    /// target). An `entra-app` whose pending version is a certificate in the inventory switches
    /// to certificate authentication.
    pub async fn promote(&self, caller: &Caller, cref: &CredRef) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        // Authorized before the credential's turn is taken: waiting on another tenant's
        // credential would tell a caller that it exists and is busy.
        if let Err(e) = self.authorize(caller, Action::RollbackCredential(&cref.tenant), &format!("credential {cref}"))
        {
            return self.finish(caller, AuditAction::CredPromote, &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, AuditAction::CredPromote, &resource, Err(e)).await,
        };
        let prepared = async {
            let (tenant, credential) = self.load(cref).await?;
            let version = credential.latest_version;
            let pending = self
                .store()
                .version(credential.id, Some(version))
                .await?
                .filter(|v| v.stage == Stage::Pending && version > credential.current_version)
                .ok_or_else(|| CoreError::Conflict(format!("credential {cref} has no pending version")))?;
            // Only what can be served becomes current.
            self.keks()
                .get(self.store().as_ref(), self.seal().as_ref(), tenant.id, pending.kek_version, KeyUse::Serve)
                .await?;
            // The pending version serves the target it was stored for.
            let fields = pending
                .fields
                .clone()
                .ok_or_else(|| CoreError::Conflict(format!("the pending version of {cref} is not migrated yet")))?;
            let now = Timestamp::now();
            let updated = CredentialRow {
                current_version: version,
                fields: fields.clone(),
                updated_at: now,
                ..credential.clone()
            };
            let op = WriteOp::PromotePending { credential: credential.id, version, fields, at: now };
            Ok((tenant, op, updated))
        }
        .await;
        let (tenant, op, updated) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CredPromote, &resource, Err(e)).await,
        };
        let detail = format!("version={}", updated.current_version);
        self.commit(caller, AuditAction::CredPromote, &resource, op, &detail).await?;
        Ok(CredentialView::new(&tenant.name, &tenant.region, updated))
    }
}
