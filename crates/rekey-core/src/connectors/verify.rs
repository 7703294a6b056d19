//! Verify: a credential checked against its real target, the result stored as its health and
//! audited.

use rekey_connect::Status;
use rekey_store::{CredentialRow, HealthRow, TenantRow, WriteOp};
use rekey_types::{AuditAction, AuditOutcome, CredRef, CredentialKind, Timestamp};

use super::{ConnectorStats, HealthView, RotationView};
use crate::kernel::policy::Action;
use crate::kernel::Actor;
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// `rekey cred verify`: checks the current version against the target and records the result.
    pub async fn verify_credential(&self, caller: &Caller, cref: &CredRef) -> Result<HealthView, CoreError> {
        let resource = cref.to_string();
        let loaded = async {
            self.authorize(caller, Action::UseConnector(&cref.tenant), &format!("credential {cref}"))?;
            let (tenant, credential) = self.tenant_credential(cref).await?;
            if credential.kind == CredentialKind::Generic {
                return Err(CoreError::Conflict(format!("{cref} is a generic credential: it has no target to verify")));
            }
            Ok((tenant, credential))
        }
        .await;
        let (tenant, credential) = match loaded {
            Ok(l) => l,
            Err(e) => return self.finish(caller, AuditAction::CredVerify, &resource, Err(e)).await,
        };
        self.check(&Actor::of(caller), &tenant, &credential).await
    }

    /// Checks the current version of a credential and records (and audits) the result.
    pub(crate) async fn check(
        &self,
        actor: &Actor,
        tenant: &TenantRow,
        credential: &CredentialRow,
    ) -> Result<HealthView, CoreError> {
        let resource = format!("{}/{}", tenant.name, credential.name);
        let version = credential.current_version;
        let outcome = async {
            let (fields, secret) = self.secret_for_target(actor, &tenant.name, credential, version, "verify").await?;
            let outcome = self.probe(credential.kind, &fields, &secret).await?;
            // Only a frozen credential needs it (computed from the secret itself, not read back).
            let fingerprint = credential.frozen_by.is_some().then(|| self.fingerprint(credential.id, &secret));
            Ok::<_, CoreError>((outcome, fingerprint))
        }
        .await;
        let (outcome, fingerprint) = match outcome {
            Ok(o) => o,
            Err(e) => {
                let event = actor.event(AuditAction::CredVerify, &resource, e.audit_outcome(), e.code().as_str());
                self.audit_event(event).await?;
                return Err(e);
            }
        };
        ConnectorStats::count(&self.stats().verifies, credential.kind, outcome.status.as_str());
        let row = HealthRow {
            credential_id: credential.id,
            version,
            status: outcome.status.as_str().into(),
            detail: outcome.detail.clone(),
            elapsed_ms: i64::try_from(outcome.elapsed.as_millis()).unwrap_or(i64::MAX),
            checked_at: Timestamp::now(),
        };
        let mut detail = format!("version={version}; status={}; ms={}; {}", row.status, row.elapsed_ms, row.detail);
        let mut op = WriteOp::RecordHealth(row.clone());
        // A frozen credential thaws once a secret that no earlier version held works at its
        // target (the store checks the fingerprint in the same write).
        if let (Some(incident), Some(fingerprint), true) = (&credential.frozen_by, fingerprint, outcome.is_ok()) {
            op = WriteOp::All(vec![
                op,
                WriteOp::LiftFreeze { credential: credential.id, fresh: Some((version, fingerprint.0.to_vec())) },
            ]);
            detail.push_str(&format!("; lifts the freeze of incident {incident} unless the secret was used before"));
        }
        // A destination the egress policy refused is recorded as a denial, with its rule.
        let audited = if outcome.status == Status::EgressDenied { AuditOutcome::Denied } else { AuditOutcome::Success };
        self.write(actor, AuditAction::CredVerify, &resource, Some(op), audited, &detail).await?;
        Ok(health_view(tenant, credential, &row))
    }

    /// The last check and the newest rotation of a credential, for `cred show`.
    pub(crate) async fn connector_state(
        &self,
        tenant: &str,
        credential: &CredentialRow,
    ) -> Result<(Option<HealthView>, Option<RotationView>), CoreError> {
        let health = self.store().health(credential.id).await?.map(|h| HealthView {
            tenant: tenant.to_owned(),
            name: credential.name.clone(),
            kind: credential.kind,
            version: h.version,
            status: h.status,
            detail: h.detail,
            elapsed_ms: h.elapsed_ms,
            checked_at: h.checked_at,
        });
        let rotation = self.store().rotations_of(credential.id, 1).await?.first().map(RotationView::from);
        Ok((health, rotation))
    }
}

fn health_view(tenant: &TenantRow, credential: &CredentialRow, row: &HealthRow) -> HealthView {
    HealthView {
        tenant: tenant.name.clone(),
        name: credential.name.clone(),
        kind: credential.kind,
        version: row.version,
        status: row.status.clone(),
        detail: row.detail.clone(),
        elapsed_ms: row.elapsed_ms,
        checked_at: row.checked_at,
    }
}
