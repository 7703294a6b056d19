//! Where a stored secret may go: to the target it was stored for, and nowhere else.
//!
//! Each credential version keeps the target fields its secret was stored with, and its payload's
//! associated data binds a digest of the credential's name and those fields (ciphertext format
//! 2, see `rekey_crypto::envelope`). Everything that sends a secret out (verify, rotation, the
//! scheduler, retirement, the campaign workers) decrypts it here, with the fields it is about to
//! use: fields changed anywhere but through a new version fail to decrypt, so nothing is sent.
//!
//! Before a decrypted secret can leave, [`Vault::secret_for_target`] commits an audit event of
//! the intent (`cred.send`: who, which version, which target, why); if that write fails, the
//! secret is never decrypted (fail closed, as for reveal).
//!
//! Must never: decrypt a version for a connector with fields other than its own; send before
//! the intent is durable.

use std::collections::BTreeMap;

use rekey_crypto::{open_legacy_payload, open_payload, CryptoError, Fingerprint, PayloadSlot, TargetBinding};

use rekey_store::{CredentialRow, VersionRow};
use rekey_types::{AuditAction, AuditOutcome, CredentialId, CredentialKind, Fields, Secret, TenantId};

use crate::kernel::keys::KeyUse;
use crate::kernel::Actor;
use crate::{CoreError, Vault};

/// Fields that only an operator may name or change: which tenant credential resets others'
/// passwords, and the subtrees it may reset.
pub(crate) const OPERATOR_FIELDS: [&str; 2] = ["rotator", "subtrees"];

/// The binding of a secret stored for `name` with `fields`.
pub(crate) fn binding(name: &str, fields: &BTreeMap<String, String>) -> TargetBinding {
    TargetBinding::of(name, fields)
}

/// A one-line description of a target, without its secret (for audit details and pages).
pub(crate) fn target_of(kind: CredentialKind, fields: &Fields) -> String {
    let get = |k: &str| fields.get(k).unwrap_or("?").to_owned();
    match kind {
        CredentialKind::Ldap => format!("{} at {}", get("bind_dn"), get("url")),
        CredentialKind::Pop3 | CredentialKind::Smtp => {
            format!("{} at {}:{}", get("user"), get("host"), get("port"))
        }
        CredentialKind::EntraApp => match fields.get("graph_url") {
            Some(graph) => format!("application {} at {} and {graph}", get("client_id"), get("token_url")),
            None => format!("application {} at {}", get("client_id"), get("token_url")),
        },
        CredentialKind::Generic => "no target".into(),
    }
}

/// The operator-only fields that `after` names with a value `before` did not have (dropping
/// one is not naming one).
pub(crate) fn operator_fields_changed(
    before: Option<&BTreeMap<String, String>>,
    after: &BTreeMap<String, String>,
) -> Vec<&'static str> {
    OPERATOR_FIELDS
        .into_iter()
        .filter(|f| after.get(*f).is_some_and(|v| before.and_then(|b| b.get(*f)) != Some(v)))
        .collect()
}

use rekey_types::dn::dn_within;

/// Refuses a reset of `bind_dn` by the rotator `rotator` (with fields `rotator_fields`) unless
/// the account is inside one of the rotator's `subtrees` (base DNs separated by `;`); a rotator
/// without subtrees resets nothing.
pub(crate) fn may_reset(rotator: &str, rotator_fields: &Fields, bind_dn: &str) -> Result<(), CoreError> {
    let subtrees: Vec<&str> = rotator_fields
        .get("subtrees")
        .map(|s| s.split(';').map(str::trim).filter(|b| !b.is_empty()).collect())
        .unwrap_or_default();
    if subtrees.iter().any(|base| dn_within(bind_dn, base)) {
        return Ok(());
    }
    Err(CoreError::NotRotatable(format!(
        "the rotator {rotator} may not reset {bind_dn}: it is outside the rotator's subtrees ({})",
        if subtrees.is_empty() { "none set".to_owned() } else { subtrees.join("; ") }
    )))
}

impl Vault {
    /// Opens one version with the fields stored beside it, for use inside the server only (a
    /// local comparison, a re-encryption): nothing is sent. A legacy (format 1) version opens
    /// too, for the callers that never send (reveal, rollback's re-encryption, migration).
    pub(crate) async fn open_version(
        &self,
        tenant: TenantId,
        credential: &CredentialRow,
        row: &VersionRow,
        use_: KeyUse,
    ) -> Result<Secret, CoreError> {
        let kek = self.keks.get(self.store.as_ref(), self.seal.as_ref(), tenant, row.kek_version, use_).await?;
        let slot = PayloadSlot { tenant, credential: credential.id, version: row.version, kind: credential.kind };
        if rekey_crypto::is_legacy_payload(&row.ciphertext) {
            return open_legacy_payload(&kek, row.kek_version, &slot, &row.wrapped_dek, &row.ciphertext)
                .map_err(CoreError::Decrypt);
        }
        let fields = row.fields.clone().unwrap_or_default();
        open_payload(
            &kek,
            row.kek_version,
            &slot,
            &binding(&credential.name, &fields),
            &row.wrapped_dek,
            &row.ciphertext,
        )
        .map_err(|e| mismatch(credential, row.version, e))
    }

    /// The fields and the secret of `version` of `tenant`'s `credential`, to be sent to that
    /// target by `actor` for `purpose` (`verify`, `rotate`, `retire`, `rotator`). The intent is
    /// recorded first, and durably; the payload opens only with the fields it was stored for. A
    /// compromised key still opens it: rotating off a stolen secret is the point.
    pub(crate) async fn secret_for_target(
        &self,
        actor: &Actor,
        tenant: &str,
        credential: &CredentialRow,
        version: u32,
        purpose: &str,
    ) -> Result<(Fields, Secret), CoreError> {
        let resource = format!("{tenant}/{}", credential.name);
        let row = self
            .store
            .version(credential.id, Some(version))
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("version {version} of {resource}")))?;
        let fields = Fields::from_stored(
            bound_fields(&row).ok_or_else(|| not_migrated(&format!("version {version} of {resource}")))?.clone(),
        );
        let detail = format!("version={version}; purpose={purpose}; target={}", target_of(credential.kind, &fields));
        let event = actor.event(AuditAction::CredSend, &resource, AuditOutcome::Success, &detail);
        self.audit_event(event).await?;
        match self.open_version(credential.tenant_id, credential, &row, KeyUse::Rewrap).await {
            Ok(secret) => Ok((fields, secret)),
            Err(err) => {
                if matches!(err, CoreError::TargetMismatch(_)) {
                    self.integrity_failure(&resource, &format!("version {version}: target fields fail their binding"))
                        .await?;
                }
                let event = actor.event(
                    AuditAction::CredSend,
                    &resource,
                    AuditOutcome::Denied,
                    &format!("version={version}; purpose={purpose}; refused: {err}"),
                );
                self.audit_event(event).await?;
                Err(err)
            }
        }
    }

    /// The fields the current version was stored for (the credential row's copy is for
    /// display): what a new version of the same target, a rotation's or a certificate's, takes.
    pub(crate) async fn current_fields(&self, credential: &CredentialRow) -> Result<Fields, CoreError> {
        let what = || format!("the current version of {}", credential.name);
        let row = self
            .store
            .version(credential.id, Some(credential.current_version))
            .await?
            .ok_or_else(|| CoreError::NotFound(what()))?;
        Ok(Fields::from_stored(bound_fields(&row).ok_or_else(|| not_migrated(&what()))?.clone()))
    }

    /// The keyed fingerprint of a secret of a credential.
    pub(crate) fn fingerprint(&self, credential: CredentialId, secret: &Secret) -> Fingerprint {
        self.integrity.fingerprint(credential.as_bytes(), secret.expose())
    }

    /// The version of the credential whose secret has fingerprint `fp`, if any. A version
    /// without a fingerprint (stored before fingerprints, not yet migrated) counts as holding
    /// it: freshness cannot be shown, so it is not assumed.
    pub(crate) async fn holder_of(&self, credential: CredentialId, fp: &Fingerprint) -> Result<Option<u32>, CoreError> {
        Ok(self
            .store
            .list_versions(credential)
            .await?
            .into_iter()
            .find(|v| v.fingerprint.as_deref().is_none_or(|stored| fp.same(stored)))
            .map(|v| v.version))
    }
}

/// The target fields a version is bound to; `None` for one stored before target binding (format
/// 1, no fields) and not migrated yet.
pub(crate) fn bound_fields(row: &VersionRow) -> Option<&BTreeMap<String, String>> {
    row.fields.as_ref().filter(|_| !rekey_crypto::is_legacy_payload(&row.ciphertext))
}

/// `what` (a version) was stored before target binding and is not migrated yet.
pub(crate) fn not_migrated(what: &str) -> CoreError {
    CoreError::Conflict(format!(
        "{what} was stored before target binding and is not migrated yet: nothing is sent or changed until it is"
    ))
}

/// A payload that does not open for the fields stored beside it.
fn mismatch(credential: &CredentialRow, version: u32, e: CryptoError) -> CoreError {
    match e {
        CryptoError::Decrypt => CoreError::TargetMismatch(format!(
            "version {version} of credential {} does not open for the target stored with it (its fields or \
             name were changed outside Rekey); nothing was sent",
            credential.name
        )),
        CryptoError::Unbound => not_migrated(&format!("version {version} of credential {}", credential.name)),
        other => CoreError::Decrypt(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_fields() {
        let a = BTreeMap::from([("rotator".to_string(), "admin".to_string())]);
        assert!(operator_fields_changed(Some(&a), &a).is_empty());
        assert!(operator_fields_changed(Some(&a), &BTreeMap::new()).is_empty());
        let b = BTreeMap::from([("rotator".to_string(), "other".to_string())]);
        assert_eq!(operator_fields_changed(Some(&a), &b), vec!["rotator"]);
        assert_eq!(operator_fields_changed(None, &a), vec!["rotator"]);
        assert!(operator_fields_changed(None, &BTreeMap::new()).is_empty());
    }
}
