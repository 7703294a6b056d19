//! Credentials and their versions: put, show, reveal, list, versions, rollback, delete.

pub mod certs;
pub mod import;
pub(crate) mod put;
mod versions;

pub(crate) use put::{describe_change, prepare, NextVersion, Prepared};
pub use put::{PutInput, PutSecret};

use rekey_crypto::{open_legacy_payload, open_payload, PayloadSlot};
use rekey_store::{CredentialFilter, CredentialRow, WriteOp};
use rekey_types::{AuditAction, CredRef, CredentialKind, Region, Role, TenantName, Timestamp};

use crate::kernel::keys::KeyUse;
use crate::kernel::policy::Action;
use crate::views::{CredentialView, Revealed, VersionView};
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// The live credential `cref`, after the policy allowed `action` on it.
    async fn load(&self, cref: &CredRef) -> Result<(rekey_store::TenantRow, CredentialRow), CoreError> {
        let not_found = || CoreError::NotFound(format!("credential {cref}"));
        let tenant = self.store().tenant_by_name(&cref.tenant).await?.ok_or_else(not_found)?;
        let credential = self.store().credential(tenant.id, cref.name.as_str()).await?.ok_or_else(not_found)?;
        Ok((tenant, credential))
    }

    /// `cred show`: the metadata, the last check against the target, the newest rotation.
    pub async fn show_credential(&self, caller: &Caller, cref: &CredRef) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        let result = async {
            self.authorize(caller, Action::ReadCredentialMeta(&cref.tenant), &format!("credential {cref}"))?;
            let (tenant, credential) = self.load(cref).await?;
            let (health, rotation) = self.connector_state(&tenant.name, &credential).await?;
            let mut view = CredentialView::new(&tenant.name, &tenant.region, credential);
            view.health = health;
            view.rotation = rotation;
            Ok(view)
        }
        .await;
        self.finish(caller, AuditAction::CredShow, &resource, result).await
    }

    /// The secret of the current version (or of `version`, for operators). Audited; the secret
    /// is returned only once its audit event is durable.
    pub async fn reveal(&self, caller: &Caller, cref: &CredRef, version: Option<u32>) -> Result<Revealed, CoreError> {
        let resource = cref.to_string();
        let result = async {
            self.authorize(caller, Action::RevealCredential(cref), &format!("credential {cref}"))?;
            if version.is_some() {
                self.authorize(caller, Action::RevealVersion(cref), &format!("credential {cref}"))?;
            }
            let not_found = || CoreError::NotFound(format!("credential {cref}"));
            let row = match version {
                None => self.store().reveal_row(&cref.tenant, cref.name.as_str()).await?.ok_or_else(not_found)?,
                Some(v) => {
                    let (tenant, credential) = self.load(cref).await?;
                    let ver = self
                        .store()
                        .version(credential.id, Some(v))
                        .await?
                        .ok_or_else(|| CoreError::NotFound(format!("version {v} of credential {cref}")))?;
                    rekey_store::RevealRow {
                        frozen_by: None,
                        tenant_id: tenant.id,
                        credential_id: credential.id,
                        kind: credential.kind,
                        version: ver.version,
                        created_at: ver.created_at,
                        kek_version: ver.kek_version,
                        wrapped_dek: ver.wrapped_dek,
                        ciphertext: ver.ciphertext,
                        fields: ver.fields,
                    }
                }
            };
            if let Some(incident) = &row.frozen_by {
                if crate::kernel::policy::check(&caller.principal, Action::RevealFrozen(cref)).is_err() {
                    return Err(CoreError::Frozen(format!(
                        "credential {cref} is frozen by incident {incident}: connectors get it again once it is rotated"
                    )));
                }
            }
            let kek = self
                .keks()
                .get(self.store().as_ref(), self.seal().as_ref(), row.tenant_id, row.kek_version, KeyUse::Serve)
                .await?;
            let slot = PayloadSlot {
                tenant: row.tenant_id,
                credential: row.credential_id,
                version: row.version,
                kind: row.kind,
            };
            // The binding is recomputed from the name asked for: a payload opens only under the
            // name (and fields) it was stored with.
            let secret = if rekey_crypto::is_legacy_payload(&row.ciphertext) {
                open_legacy_payload(&kek, row.kek_version, &slot, &row.wrapped_dek, &row.ciphertext)
            } else {
                let fields =
                    row.fields.as_ref().ok_or(rekey_crypto::CryptoError::Decrypt).map_err(CoreError::Decrypt)?;
                let binding = crate::kernel::target::binding(cref.name.as_str(), fields);
                open_payload(&kek, row.kek_version, &slot, &binding, &row.wrapped_dek, &row.ciphertext)
            }
            .map_err(CoreError::Decrypt)?;
            Ok(Revealed {
                tenant: cref.tenant.to_string(),
                name: cref.name.to_string(),
                kind: row.kind,
                version: row.version,
                created_at: row.created_at,
                fields: row.fields.unwrap_or_default(),
                secret,
            })
        }
        .await;
        self.finish_with(caller, AuditAction::CredReveal, &resource, result, |r| format!("version={}", r.version)).await
    }

    /// `cred list`: credentials by tenant and name, one page, within what the caller may see.
    pub async fn list_credentials(
        &self,
        caller: &Caller,
        tenant: Option<TenantName>,
        kind: Option<CredentialKind>,
        region: Option<Region>,
        after: Option<CredRef>,
        limit: u32,
    ) -> Result<Vec<CredentialView>, CoreError> {
        let resource = tenant.as_ref().map(|t| t.to_string()).unwrap_or_default();
        let result = async {
            // A tenant admin without --tenant lists its own tenant.
            let tenant = match (&tenant, caller.principal.role, &caller.principal.tenant) {
                (None, Role::TenantAdmin, Some((_, own))) => Some(own.clone()),
                _ => tenant.clone(),
            };
            let tenant_id = match &tenant {
                Some(t) => {
                    self.authorize(caller, Action::ReadCredentialMeta(t), &format!("tenant {t}"))?;
                    Some(self.tenant(t).await?.id)
                }
                None => {
                    self.authorize(caller, Action::ListAllCredentials, "credentials")?;
                    None
                }
            };
            let filter = CredentialFilter {
                tenant: tenant_id,
                kind,
                region: region.map(|r| r.to_string()),
                after: after.map(|a| (a.tenant.to_string(), a.name.to_string())),
                limit: limit.clamp(1, 10_000),
            };
            Ok(self
                .store()
                .list_credentials(&filter)
                .await?
                .into_iter()
                .map(|r| CredentialView::new(&r.tenant, &r.region, r.credential))
                .collect())
        }
        .await;
        self.finish(caller, AuditAction::CredList, &resource, result).await
    }

    /// `cred versions`: every version of a credential, never a secret.
    pub async fn versions(&self, caller: &Caller, cref: &CredRef) -> Result<Vec<VersionView>, CoreError> {
        let resource = cref.to_string();
        let result = async {
            self.authorize(caller, Action::ReadCredentialMeta(&cref.tenant), &format!("credential {cref}"))?;
            let (_, credential) = self.load(cref).await?;
            Ok(self.store().list_versions(credential.id).await?.into_iter().map(VersionView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::CredVersions, &resource, result).await
    }

    /// Soft delete: the credential disappears from reads; its rows and audit history stay.
    pub async fn delete_credential(&self, caller: &Caller, cref: &CredRef) -> Result<(), CoreError> {
        let resource = cref.to_string();
        let prepared = async {
            self.authorize(caller, Action::DeleteCredential(&cref.tenant), &format!("credential {cref}"))?;
            Ok(self.load(cref).await?.1)
        }
        .await;
        let credential = match prepared {
            Ok(c) => c,
            Err(e) => return self.finish(caller, AuditAction::CredDelete, &resource, Err(e)).await,
        };
        let op = WriteOp::DeleteCredential { id: credential.id, at: Timestamp::now() };
        self.commit(caller, AuditAction::CredDelete, &resource, op, "").await
    }
}
