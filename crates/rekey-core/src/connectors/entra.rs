//! Microsoft Graph specifics of an Entra application's rotation: a client secret added through
//! Graph (and one left by a crashed attempt removed).

use rekey_store::{CredentialRow, RotationRow, WriteOp};
use rekey_types::{AuditAction, AuditOutcome, CredentialKind, Fields, RotationState, Secret, Timestamp};

use super::rotation::{not_rotatable, password_label, with_item};
use super::ConnectorStats;
use crate::kernel::Actor;
use crate::{CoreError, Vault};

impl Vault {
    /// The apply step of a secret-based Entra app: removes a client secret left by an attempt
    /// that crashed before storing it, asks Graph for a new one, and stores it as the pending
    /// version in the same write that marks the rotation applied.
    pub(super) async fn add_client_secret(
        &self,
        actor: &Actor,
        rotation: RotationRow,
        credential: &CredentialRow,
        fields: &Fields,
        current: &Secret,
    ) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let limits = &self.options().connect.limits;
        let label = password_label(&rotation);
        let _permit = self.host_permit(credential.kind, fields).await;
        let (listed, existing) =
            rekey_connect::graph::password_credentials(fields, current, limits).await.map_err(not_rotatable)?;
        if !listed.is_ok() {
            return self.apply_failed(actor, rotation, &listed).await;
        }
        for orphan in existing.iter().filter(|p| p.display_name.as_deref() == Some(label.as_str())) {
            let removed = rekey_connect::graph::remove_password(fields, current, &orphan.key_id, limits)
                .await
                .map_err(not_rotatable)?;
            if !removed.is_ok() {
                return self.apply_failed(actor, rotation, &removed).await;
            }
        }
        let (added, new) =
            rekey_connect::graph::add_password(fields, current, &label, limits).await.map_err(not_rotatable)?;
        let Some(new) = new else { return self.apply_failed(actor, rotation, &added).await };
        let stored = async {
            let next = crate::credentials::NextVersion {
                tenant: credential.tenant_id,
                name: &credential.name,
                kind: credential.kind,
                fields: fields.clone(),
                labels: credential.labels.clone(),
                existing: Some(credential),
                created_by: &actor.name,
                kek_version: None,
                pending: true,
            };
            let (op, updated) = self.sealed_version(next, &new.secret).await?;
            if updated.latest_version != rotation.to_version {
                return Err(CoreError::Conflict("the credential changed while the rotation ran".into()));
            }
            let step = with_item(WriteOp::SetRotation {
                id: rotation.id,
                from: &[RotationState::Pending],
                state: RotationState::Applied,
                error: None,
                retire_after: None,
                target_ref: Some(new.key_id.clone()),
                at: Timestamp::now(),
            });
            let detail = format!("rotation={}; {}", rotation.id, added.detail);
            self.write(
                actor,
                AuditAction::CredRotateApply,
                &resource,
                Some(WriteOp::All(vec![op, step])),
                AuditOutcome::Success,
                &detail,
            )
            .await
        }
        .await;
        if let Err(e) = stored {
            // Not stored: take the new secret back so that nothing Rekey lacks stays valid.
            let _ = rekey_connect::graph::remove_password(fields, current, &new.key_id, limits).await;
            return match e {
                CoreError::Conflict(_) => {
                    self.fail(actor, rotation, "superseded: the credential changed while the rotation ran").await
                }
                other => Err(other),
            };
        }
        ConnectorStats::count(&self.stats().rotations, credential.kind, "applied");
        Ok(RotationRow {
            state: RotationState::Applied,
            error: None,
            target_ref: Some(new.key_id),
            changed_at: Timestamp::now(),
            ..rotation
        })
    }

    /// The Graph key id of the client secret `version` of a credential: the one a rotation made,
    /// or the only one at Graph whose hint (first three characters) matches.
    pub(super) async fn client_secret_key_id(
        &self,
        credential: &CredentialRow,
        fields: &Fields,
        current: &Secret,
        version: u32,
        keep: Option<&str>,
    ) -> Result<Result<String, String>, CoreError> {
        if let Some(made) = self
            .store()
            .rotations_of(credential.id, 100)
            .await?
            .into_iter()
            .find(|r| r.to_version == version && r.target_ref.is_some())
        {
            return Ok(Ok(made.target_ref.unwrap_or_default()));
        }
        let old = self.secret_local(credential, version).await?;
        let hint: String = String::from_utf8_lossy(old.expose()).chars().take(3).collect();
        let (listed, all) = rekey_connect::graph::password_credentials(fields, current, &self.options().connect.limits)
            .await
            .map_err(not_rotatable)?;
        if !listed.is_ok() {
            return Ok(Err(format!("{}: {}", listed.status, listed.detail)));
        }
        let matching: Vec<_> = all
            .iter()
            .filter(|p| p.hint.as_deref() == Some(hint.as_str()) && Some(p.key_id.as_str()) != keep)
            .collect();
        match matching.as_slice() {
            [one] => Ok(Ok(one.key_id.clone())),
            [] => Ok(Err("no client secret at Graph matches the old one (already removed?)".into())),
            _ => Ok(Err(format!(
                "{} client secrets at Graph start like the old one; remove the old one in the portal",
                matching.len()
            ))),
        }
    }
}

/// Whether the credential is an Entra application that authenticates with a client secret
/// (rotated with Graph `addPassword`, which makes the secret itself).
pub(crate) fn is_secret_app(credential: &CredentialRow) -> bool {
    credential.kind == CredentialKind::EntraApp
        && credential.fields.get("auth").map(String::as_str) != Some("certificate")
}
