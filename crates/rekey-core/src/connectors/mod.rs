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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rekey_connect::{Limits, Outcome};
use rekey_store::{CredentialRow, RotationRow, WriteOp, WriteRequest};
use rekey_types::{AuditOutcome, CredentialKind, Fields, RequestId, Secret, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::keys::KeyUse;
use crate::vault::record;
use crate::{Caller, CoreError, Vault};

mod entra;
mod rotation;
mod verify;

pub(crate) use rotation::rotation_plan;

/// How connectors behave; from the `[connectors]` and `[rotation]` config sections.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub limits: Limits,
    /// Connections to one `host:port` at once, across everything this server does.
    pub per_host: usize,
    /// How long the old version stays `previous` (and an Entra app keeps its old certificate)
    /// after a rotation is promoted.
    pub grace_secs: u64,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { limits: Limits::default(), per_host: 4, grace_secs: 24 * 3600 }
    }
}

/// New LDAP passwords when the credential names no policy.
const DEFAULT_PASSWORD_LENGTH: usize = 32;
/// Checks of a new secret before a rotation waits for the scheduler (directories replicate).
const VERIFY_ATTEMPTS: u32 = 3;

/// The last check of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthView {
    pub tenant: String,
    pub name: String,
    pub kind: CredentialKind,
    pub version: u32,
    pub status: String,
    pub detail: String,
    pub elapsed_ms: i64,
    pub checked_at: Timestamp,
}

/// One rotation of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RotationView {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub from_version: u32,
    pub to_version: u32,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_after: Option<Timestamp>,
}

impl From<&RotationRow> for RotationView {
    fn from(r: &RotationRow) -> Self {
        Self {
            id: r.id.to_string(),
            tenant: r.tenant.clone(),
            name: r.credential.clone(),
            from_version: r.from_version,
            to_version: r.to_version,
            state: r.state.clone(),
            error: r.error.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            changed_at: r.changed_at,
            retire_after: r.retire_after,
        }
    }
}

/// Counters for `/metrics`; shared so they survive a seal and unseal.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Checks by (kind, status).
    pub verifies: Mutex<HashMap<(String, String), u64>>,
    /// Rotation steps by (kind, step): started, applied, promoted, retired, failed.
    pub rotations: Mutex<HashMap<(String, String), u64>>,
    /// The last health counts the scheduler read: (kind, status) → credentials.
    pub health: Mutex<Vec<rekey_store::HealthCount>>,
}

impl ConnectorStats {
    fn count(map: &Mutex<HashMap<(String, String), u64>>, kind: CredentialKind, what: &str) {
        *map.lock().expect("stats lock").entry((kind.as_str().to_owned(), what.to_owned())).or_default() += 1;
    }
}

/// Permits per target host.
#[derive(Default)]
pub(crate) struct HostLimiter {
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimiter {
    async fn acquire(&self, host: Option<String>, per_host: usize) -> Option<OwnedSemaphorePermit> {
        let host = host?;
        let semaphore = {
            let mut hosts = self.hosts.lock().expect("host limiter lock");
            if hosts.len() > 10_000 {
                hosts.retain(|_, s| s.available_permits() < per_host);
            }
            hosts.entry(host).or_insert_with(|| Arc::new(Semaphore::new(per_host.max(1)))).clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}

/// Who a step is recorded as: a caller, or the server's own scheduler.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub name: String,
    pub source: String,
    pub request: RequestId,
    /// The scheduler keeps an unfinished rotation for later instead of failing it when the
    /// target cannot be reached.
    pub patient: bool,
    /// Picking up a rotation that an earlier run (perhaps one that crashed) left unfinished: a
    /// pending rotation first asks the target whether it already took the new secret, so that
    /// the target is never told twice.
    pub recovering: bool,
    /// Retire the old version as soon as the new one is promoted, whatever the grace period
    /// (a campaign: the old secret is the stolen one).
    pub retire_at_once: bool,
}

impl Actor {
    pub fn of(caller: &Caller) -> Self {
        Self {
            name: caller.principal.audit_name(),
            source: caller.source.to_string(),
            request: caller.request_id,
            patient: false,
            recovering: false,
            retire_at_once: false,
        }
    }

    pub fn scheduler() -> Self {
        Self::system("system:scheduler")
    }

    /// The server's own background work, under a name of its own.
    pub fn system(name: &str) -> Self {
        Self {
            name: name.into(),
            source: String::new(),
            request: RequestId::generate(),
            patient: true,
            recovering: false,
            retire_at_once: false,
        }
    }
}

impl Vault {
    fn stats(&self) -> &ConnectorStats {
        &self.connector_stats
    }

    /// A permit of the credential's target host (`per_host` at once); none for a kind without a
    /// target.
    async fn host_permit(&self, kind: CredentialKind, fields: &Fields) -> Option<OwnedSemaphorePermit> {
        self.hosts.acquire(rekey_connect::target_host(kind, fields), self.options.connect.per_host).await
    }

    /// Checks a secret against the credential's target, holding a permit of its host.
    pub(crate) async fn probe(
        &self,
        kind: CredentialKind,
        fields: &Fields,
        secret: &Secret,
    ) -> Result<Outcome, CoreError> {
        let _permit = self.host_permit(kind, fields).await;
        rekey_connect::verify(kind, fields, secret, &self.options.connect.limits)
            .await
            .map_err(|e| CoreError::BadRequest(e.to_string()))
    }

    /// The secret of one version for a comparison inside the server; never sent anywhere (what
    /// is sent goes through [`Vault::secret_for_target`]).
    async fn secret_local(&self, credential: &CredentialRow, version: u32) -> Result<Secret, CoreError> {
        let row = self
            .store
            .version(credential.id, Some(version))
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("version {version} of {}", credential.name)))?;
        self.open_version(credential.tenant_id, credential, &row, KeyUse::Rewrap).await
    }

    async fn write(
        &self,
        actor: &Actor,
        action: &str,
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
        action: &str,
        resource: &str,
        op: Option<WriteOp>,
        outcome: AuditOutcome,
        detail: &str,
    ) -> WriteRequest {
        let audit = record(&actor.name, &actor.source, &actor.request, action, resource, outcome, detail);
        WriteRequest { op, audit }
    }
}
