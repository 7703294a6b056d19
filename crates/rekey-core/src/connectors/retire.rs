//! Retiring the old version once a rotation's grace period is over: the old secret is removed
//! at the target where the kind allows it (an Entra app's old certificate or secret), then the
//! version is marked retired.

use rekey_store::{RotationRow, WriteOp};
use rekey_types::{AuditAction, AuditOutcome, CredentialKind, RotationState, Stage, Timestamp};

use super::entra::is_secret_app;
use super::rotation::{not_rotatable, set_rotation};
use super::ConnectorStats;
use crate::kernel::Actor;
use crate::{CoreError, Vault};

impl Vault {
    /// Ends the grace period: retires the old version (and removes an Entra app's old certificate).
    pub(crate) async fn retire(
        &self,
        actor: &Actor,
        rotation: RotationRow,
        now: bool,
    ) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let due = now || rotation.retire_after.is_none_or(|t| t <= Timestamp::now());
        if !due {
            return Ok(rotation);
        }
        let _turn = self.credential_locks().lock(rotation.tenant_id, &rotation.credential).await;
        // Another driver (the scheduler, a campaign worker, `cred rotate`) may have retired it
        // meanwhile: then that is the answer, not a conflict.
        match self.store().rotation(rotation.id).await? {
            Some(stored) if stored.state != RotationState::Promoted => return Ok(stored),
            None => return Err(CoreError::NotFound(format!("rotation {}", rotation.id))),
            Some(_) => {}
        }
        let credential = self
            .store()
            .credential(rotation.tenant_id, &rotation.credential)
            .await?
            .filter(|c| c.id == rotation.credential_id);
        // An Entra app's old client secret or certificate is removed at Graph first.
        let mut removed = None;
        let mut leftover = None;
        if let Some(credential) = credential.as_ref().filter(|c| c.kind == CredentialKind::EntraApp) {
            let (fields, current) =
                self.secret_for_target(actor, &rotation.tenant, credential, rotation.to_version, "retire").await?;
            let limits = &self.options().connect.limits;
            if is_secret_app(credential) {
                let _permit = self.host_permit(credential.kind, &fields).await;
                let key_id = self
                    .client_secret_key_id(
                        credential,
                        &fields,
                        &current,
                        rotation.from_version,
                        rotation.target_ref.as_deref(),
                    )
                    .await?;
                match key_id {
                    Ok(key_id) => {
                        removed = Some(rekey_connect::graph::remove_password(&fields, &current, &key_id, limits).await)
                    }
                    Err(why) => leftover = Some(format!("old client secret left at the provider: {why}")),
                }
            } else {
                let old = self.secret_local(credential, rotation.from_version).await?;
                if rekey_connect::oauth::CertificateSecret::split(&old).is_some() {
                    let _permit = self.host_permit(credential.kind, &fields).await;
                    removed = Some(rekey_connect::graph::remove_certificate(&fields, &current, &old, limits).await);
                }
            }
        }
        let (op, mut detail) = retire_op(&rotation, leftover.clone());
        if let Some(removed) = removed {
            let removed = removed.map_err(not_rotatable)?;
            if !removed.is_ok() {
                return self.note(actor, rotation, &format!("retire: {}: {}", removed.status, removed.detail)).await;
            }
            detail.push_str(&format!("; {}", removed.detail));
        }
        if let Some(left) = &leftover {
            detail.push_str(&format!("; {left}"));
        }
        self.write(actor, AuditAction::CredRotateRetire, &resource, Some(op), AuditOutcome::Success, &detail).await?;
        if let Some(kind) = rotation.kind {
            ConnectorStats::count(&self.stats().rotations, kind, "retired");
        }
        Ok(RotationRow { state: RotationState::Retired, error: leftover, changed_at: Timestamp::now(), ..rotation })
    }
}

/// The write that retires a promoted rotation's old version (what a target needed done is done
/// by then), and the audit detail of that step.
pub(super) fn retire_op(rotation: &RotationRow, leftover: Option<String>) -> (WriteOp, String) {
    let op = WriteOp::All(vec![
        WriteOp::SetVersionStage {
            credential: rotation.credential_id,
            version: rotation.from_version,
            from: Stage::Previous,
            stage: Stage::Retired,
        },
        set_rotation(rotation, &[RotationState::Promoted], RotationState::Retired, leftover, rotation.retire_after),
    ]);
    (op, format!("rotation={}; version={}", rotation.id, rotation.from_version))
}
