//! Connectors in the vault: verify a credential against its real target, and rotate it there
//! with a staged protocol that survives a crash at any step.
//!
//! ```text
//! start     a new secret is stored as a `pending` version, with a rotation row    cred.rotate.start
//! apply     the target is told the new secret (LDAP password modify, Graph addKey) cred.rotate.apply
//! verify    the new secret is checked against the target
//! promote   the pending version becomes current, the old one previous             cred.rotate.promote
//! retire    after the grace period, the old version is retired (and, for an        cred.rotate.retire
//!           Entra app, its certificate removed from the application)
//! ```
//!
//! The new secret is durable before the target hears of it, so no crash can leave the target
//! with a secret Rekey does not have. A failure before the target took the new secret fails the
//! rotation (`cred.rotate.fail`) and leaves the current version serving. After a crash the
//! scheduler finds the unfinished rotation and asks the target which secret it accepts: the new
//! one → promote; the old one → apply again; no answer → try again later.
//!
//! Every network step holds a permit of its target host (`per_host` at once, across verify,
//! rotation and the scheduler), and runs within the connect and overall timeouts.

use rekey_connect::Outcome;
use rekey_store::{CredentialRow, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, CredentialKind, Fields, Secret};
use tokio::sync::OwnedSemaphorePermit;

use crate::kernel::keys::KeyUse;
use crate::kernel::Actor;
use crate::{CoreError, Vault};

mod entra;
mod plan;
mod retire;
mod rotation;
pub mod scheduler;
mod verify;

pub use crate::options::ConnectOptions;
pub use crate::stats::ConnectorStats;
pub use crate::views::{HealthView, RotationView};

pub(crate) use plan::rotation_plan;

/// New LDAP passwords when the credential names no policy.
const DEFAULT_PASSWORD_LENGTH: usize = 32;
/// Checks of a new secret before a rotation waits for the scheduler (directories replicate).
const VERIFY_ATTEMPTS: u32 = 3;

impl Vault {
    fn stats(&self) -> &ConnectorStats {
        self.connector_stats()
    }

    /// A permit of the credential's target host (`per_host` at once); none for a kind without a
    /// target.
    async fn host_permit(&self, kind: CredentialKind, fields: &Fields) -> Option<OwnedSemaphorePermit> {
        self.hosts().acquire(rekey_connect::target_host(kind, fields), self.options().connect.per_host).await
    }

    /// Checks a secret against the credential's target, holding a permit of its host.
    pub(crate) async fn probe(
        &self,
        kind: CredentialKind,
        fields: &Fields,
        secret: &Secret,
    ) -> Result<Outcome, CoreError> {
        let _permit = self.host_permit(kind, fields).await;
        rekey_connect::verify(kind, fields, secret, &self.options().connect.limits)
            .await
            .map_err(|e| CoreError::BadRequest(e.to_string()))
    }

    /// The secret of one version for a comparison inside the server; never sent anywhere (what
    /// is sent goes through [`Vault::secret_for_target`]).
    async fn secret_local(&self, credential: &CredentialRow, version: u32) -> Result<Secret, CoreError> {
        let row = self
            .store()
            .version(credential.id, Some(version))
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("version {version} of {}", credential.name)))?;
        self.open_version(credential.tenant_id, credential, &row, KeyUse::Rewrap).await
    }

    async fn write(
        &self,
        actor: &Actor,
        action: AuditAction,
        resource: &str,
        op: Option<WriteOp>,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), CoreError> {
        self.submit(self.request(actor, action, resource, op, outcome, detail)).await
    }

    /// A write request with its audit event, recorded as the actor.
    fn request(
        &self,
        actor: &Actor,
        action: AuditAction,
        resource: &str,
        op: Option<WriteOp>,
        outcome: AuditOutcome,
        detail: &str,
    ) -> WriteRequest {
        let audit = actor.event(action, resource, outcome, detail);
        WriteRequest { op, audit }
    }
}
