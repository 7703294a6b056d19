//! Credentials and their versions: put, show, reveal, list, versions, rollback, delete.

pub mod certs;
pub mod import;

use std::collections::BTreeMap;

use rekey_crypto::{open_legacy_payload, open_payload, seal_payload, PayloadSlot};
use rekey_store::{CredentialFilter, CredentialRow, VersionRow, WriteOp};
use rekey_types::fields::validate_labels;
use rekey_types::{
    CredRef, CredentialId, CredentialKind, Fields, Region, Role, Secret, TenantId, TenantName, Timestamp,
};
use zeroize::Zeroizing;

use crate::kernel::keys::KeyUse;
use crate::kernel::policy::Action;
use crate::views::{CredentialView, Revealed, VersionView};
use crate::{Caller, CoreError, Vault};

/// How many times a put is retried when a concurrent put of the same credential won.
const PUT_ATTEMPTS: usize = 3;

/// The secret of a `put`.
pub enum PutSecret {
    /// A password, client secret or opaque bytes.
    Opaque(Secret),
    /// An `entra-app` certificate (PEM) and its private key (PEM), stored together as the secret.
    Certificate { cert_pem: String, key_pem: Secret },
}

pub struct PutInput {
    pub kind: CredentialKind,
    pub fields: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub secret: PutSecret,
}

/// Checks the input and turns it into validated fields and the bytes to encrypt.
pub(crate) fn prepare(input: PutInput) -> Result<Prepared, CoreError> {
    let PutInput { kind, mut fields, labels, secret } = input;
    validate_labels(&labels)?;
    let mut certificate = None;
    let secret = match secret {
        PutSecret::Opaque(s) => {
            if kind == CredentialKind::EntraApp {
                fields.entry("auth".into()).or_insert_with(|| "secret".into());
            }
            s
        }
        PutSecret::Certificate { cert_pem, key_pem } => {
            if kind != CredentialKind::EntraApp {
                return Err(CoreError::BadRequest(
                    "a certificate and key are only taken by entra-app credentials".into(),
                ));
            }
            if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(CoreError::BadRequest("the certificate must be PEM (-----BEGIN CERTIFICATE-----)".into()));
            }
            let key_text = std::str::from_utf8(key_pem.expose()).unwrap_or("");
            if !(key_text.contains("-----BEGIN") && key_text.contains("PRIVATE KEY-----")) {
                return Err(CoreError::BadRequest(
                    "the private key must be PEM (-----BEGIN ... PRIVATE KEY-----)".into(),
                ));
            }
            fields.insert("auth".into(), "certificate".into());
            let info = rekey_crypto::cert::inspect_pair(&cert_pem, key_pem.expose())
                .map_err(|e| CoreError::BadRequest(e.to_string()))?;
            certificate = Some(info);
            let mut combined = Zeroizing::new(Vec::with_capacity(key_pem.len() + cert_pem.len() + 1));
            combined.extend_from_slice(key_pem.expose());
            combined.push(b'\n');
            combined.extend_from_slice(cert_pem.as_bytes());
            Secret::new(combined.to_vec())
        }
    };
    if secret.is_empty() {
        return Err(CoreError::BadRequest("the secret is empty".into()));
    }
    if secret.len() > Secret::MAX_LEN {
        return Err(CoreError::BadRequest(format!("the secret is larger than {} bytes", Secret::MAX_LEN)));
    }
    let fields = Fields::validate(kind, fields)?;
    Ok(Prepared { fields, labels, secret, certificate })
}

/// Checked input of a put.
pub(crate) struct Prepared {
    pub fields: Fields,
    pub labels: BTreeMap<String, String>,
    pub secret: Secret,
    /// An `entra-app` certificate: recorded in the certificate inventory with the version.
    pub certificate: Option<rekey_crypto::cert::CertInfo>,
}

/// The next version of a credential, before it is encrypted.
pub(crate) struct NextVersion<'a> {
    pub tenant: TenantId,
    pub name: &'a str,
    pub kind: CredentialKind,
    pub fields: Fields,
    pub labels: BTreeMap<String, String>,
    /// The credential as stored, or `None` for a new one.
    pub existing: Option<&'a CredentialRow>,
    pub created_by: &'a str,
    /// Wrap under this KEK version instead of the tenant's active one (a tenant created in the
    /// same write, whose KEK is not stored yet).
    pub kek_version: Option<u32>,
    /// Store it as `pending` beside the current version instead of making it current.
    pub pending: bool,
}

impl Vault {
    /// Encrypts `secret` as the next version of a credential and returns the write and the
    /// credential as it will be.
    pub(crate) async fn sealed_version(
        &self,
        next: NextVersion<'_>,
        secret: &Secret,
    ) -> Result<(WriteOp, CredentialRow), CoreError> {
        let NextVersion { tenant, name, kind, fields, labels, existing, created_by, kek_version, pending } = next;
        if let Some(e) = existing {
            if e.kind != kind {
                return Err(CoreError::Conflict(format!(
                    "credential {name} is of kind {}; delete it first to store a {kind}",
                    e.kind
                )));
            }
        }
        let kek_version = match kek_version {
            Some(v) => v,
            None => {
                self.store()
                    .active_kek(tenant)
                    .await?
                    .ok_or_else(|| CoreError::KeyDestroyed("the tenant has no usable key: it was shredded".into()))?
                    .version
            }
        };
        let kek =
            self.keks().get(self.store().as_ref(), self.seal().as_ref(), tenant, kek_version, KeyUse::Serve).await?;
        let now = Timestamp::now();
        let version_fields = fields.into_map();
        let credential = CredentialRow {
            id: existing.map_or_else(CredentialId::generate, |e| e.id),
            tenant_id: tenant,
            name: name.to_owned(),
            kind,
            // The credential shows its current version's fields; a pending version keeps its
            // own beside it until it is promoted.
            fields: match existing {
                Some(e) if pending => e.fields.clone(),
                _ => version_fields.clone(),
            },
            frozen_by: existing.and_then(|e| e.frozen_by.clone()),
            labels,
            current_version: existing.map_or(1, |e| e.current_version),
            latest_version: existing.map_or(1, |e| e.latest_version + 1),
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at: now,
        };
        let mut credential = credential;
        if !pending {
            credential.current_version = credential.latest_version;
        }
        let slot = PayloadSlot { tenant, credential: credential.id, version: credential.latest_version, kind };
        // The secret is bound to the name and the fields it is stored for: it opens for no other.
        let binding = crate::kernel::target::binding(name, &version_fields);
        let sealed = seal_payload(&kek, kek_version, &slot, &binding, secret.expose()).map_err(CoreError::Crypto)?;
        let version = VersionRow {
            credential_id: credential.id,
            version: credential.latest_version,
            stage: if pending { "pending" } else { "current" }.into(),
            kek_version,
            wrapped_dek: sealed.wrapped_dek,
            ciphertext: sealed.ciphertext,
            created_by: created_by.to_owned(),
            created_at: now,
            fields: Some(version_fields),
            binding: Some(binding.as_bytes().to_vec()),
            fingerprint: Some(self.fingerprint(credential.id, secret).0.to_vec()),
        };
        let op = WriteOp::PutVersion { credential: credential.clone(), version, create: existing.is_none() };
        Ok((op, credential))
    }

    pub async fn put_credential(
        &self,
        caller: &Caller,
        cref: &CredRef,
        input: PutInput,
    ) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        let name = cref.name.as_str();
        let prepared = async {
            self.authorize(caller, Action::PutCredential(&cref.tenant), &format!("tenant {}", cref.tenant))?;
            // What the last put of this credential saw, if this server made one: the write checks
            // it again (see `hints`), so the first attempt need not read the store.
            let hint = self.put_hints().get(cref.tenant.as_str(), name);
            let tenant = match &hint {
                Some(h) => h.tenant.clone(),
                None => self.tenant(&cref.tenant).await?,
            };
            let kind = input.kind;
            let Prepared { fields, labels, secret, certificate } = prepare(input)?;
            Ok((tenant, hint, kind, fields, labels, secret, certificate))
        }
        .await;
        let (tenant, mut hint, kind, fields, labels, secret, certificate) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, "cred.put", &resource, Err(e)).await,
        };
        let _turn = self.credential_locks().lock(tenant.id, name).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let hinted = hint.take().and_then(|h| Some((h.credential?, h.kek_version?)));
            let from_hint = hinted.is_some();
            let sealed = async {
                let (existing, kek_version) = match hinted {
                    Some((credential, kek)) => (Some(credential), Some(kek)),
                    None => (self.store().credential(tenant.id, name).await?, None),
                };
                let next = NextVersion {
                    tenant: tenant.id,
                    name,
                    kind,
                    fields: fields.clone(),
                    labels: labels.clone(),
                    existing: existing.as_ref(),
                    created_by: &caller.principal.audit_name(),
                    kek_version,
                    pending: false,
                };
                self.may_write_fields(caller, cref, existing.as_ref(), fields.as_map())?;
                let (mut op, credential) = self.sealed_version(next, &secret).await?;
                let (kek_version, fingerprint) = match &mut op {
                    WriteOp::PutVersion { version, .. } => {
                        // The version this server last wrote was stored for the same fields: the
                        // store holds them already under the same binding, nothing to add.
                        if from_hint && existing.as_ref().map(|e| &e.fields) == version.fields.as_ref() {
                            version.fields = None;
                        }
                        (version.kek_version, version.fingerprint.clone().unwrap_or_default())
                    }
                    _ => unreachable!("sealed_version makes a PutVersion"),
                };
                let mut ops = vec![op];
                if existing.is_some() {
                    ops.extend(self.after_new_secret(caller, &credential, fingerprint));
                }
                let op = if ops.len() == 1 { ops.remove(0) } else { WriteOp::All(ops) };
                let op = self.with_certificate(op, &credential, certificate.as_ref()).await?;
                Ok((op, credential, kek_version))
            }
            .await;
            let (op, credential, kek_version) = match sealed {
                Ok(s) => s,
                Err(e) => {
                    self.put_hints().forget(&tenant, name);
                    return self.finish(caller, "cred.put", &resource, Err(e)).await;
                }
            };
            let detail = format!("kind={kind}; version={}", credential.current_version);
            match self.commit(caller, "cred.put", &resource, op, &detail).await {
                Ok(()) => {
                    self.put_hints().wrote_under(&tenant, kek_version);
                    return Ok(CredentialView::new(&tenant.name, &tenant.region, credential));
                }
                Err(e) => {
                    self.put_hints().forget(&tenant, name);
                    match e {
                        CoreError::Conflict(_) if attempt < PUT_ATTEMPTS => continue,
                        e => return Err(e),
                    }
                }
            }
        }
    }

    /// Refuses a write of `fields` that only an operator may make: naming a rotator or its
    /// subtrees, or writing a rotator credential (one with subtrees).
    pub(crate) fn may_write_fields(
        &self,
        caller: &Caller,
        cref: &CredRef,
        existing: Option<&CredentialRow>,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), CoreError> {
        let before = existing.map(|c| &c.fields);
        let rotator = before.is_some_and(|f| f.contains_key("subtrees"));
        if rotator || !crate::kernel::target::operator_fields_changed(before, fields).is_empty() {
            self.authorize(caller, Action::ManageRotators(&cref.tenant), &format!("credential {cref}"))?;
        }
        Ok(())
    }

    /// What a new current version stored by a caller moves besides itself, each an operation
    /// of its own in the same write: the credential's campaign items that wait for a new secret
    /// (only if the secret differs from every earlier one), and for a `generic` credential put by
    /// an operator, the freeze (nothing to verify it against; again only for a fresh secret).
    /// `fingerprint` is the new version's.
    pub(crate) fn after_new_secret(
        &self,
        caller: &Caller,
        credential: &CredentialRow,
        fingerprint: Vec<u8>,
    ) -> Vec<WriteOp> {
        let mut ops = vec![WriteOp::ItemsRotated {
            credential: credential.id,
            version: credential.latest_version,
            fingerprint: fingerprint.clone(),
            by: caller.principal.audit_name(),
            at: credential.updated_at,
        }];
        // Added whether or not the credential looked frozen (a remembered row may predate the
        // freeze): the store lifts only a freeze that is there, and only for a fresh secret.
        let lifts = crate::kernel::policy::check(&caller.principal, Action::LiftFreezeByPut).is_ok();
        if credential.kind == CredentialKind::Generic && lifts {
            ops.push(WriteOp::LiftFreeze {
                credential: credential.id,
                fresh: Some((credential.latest_version, fingerprint)),
            });
        }
        ops
    }

    /// The live credential `cref`, after the policy allowed `action` on it.
    async fn load(&self, cref: &CredRef) -> Result<(rekey_store::TenantRow, CredentialRow), CoreError> {
        let not_found = || CoreError::NotFound(format!("credential {cref}"));
        let tenant = self.store().tenant_by_name(&cref.tenant).await?.ok_or_else(not_found)?;
        let credential = self.store().credential(tenant.id, cref.name.as_str()).await?.ok_or_else(not_found)?;
        Ok((tenant, credential))
    }

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
        self.finish(caller, "cred.show", &resource, result).await
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
                secret,
            })
        }
        .await;
        self.finish_with(caller, "cred.reveal", &resource, result, |r| format!("version={}", r.version)).await
    }

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
        self.finish(caller, "cred.list", &resource, result).await
    }

    pub async fn versions(&self, caller: &Caller, cref: &CredRef) -> Result<Vec<VersionView>, CoreError> {
        let resource = cref.to_string();
        let result = async {
            self.authorize(caller, Action::ReadCredentialMeta(&cref.tenant), &format!("credential {cref}"))?;
            let (_, credential) = self.load(cref).await?;
            Ok(self.store().list_versions(credential.id).await?.into_iter().map(VersionView::from).collect())
        }
        .await;
        self.finish(caller, "cred.versions", &resource, result).await
    }

    /// Makes version `to` current again, as a new version (re-encrypted under a fresh DEK) with
    /// the target fields `to` was stored for. Refused on a frozen credential, for a retired
    /// version, and for a version that existed when an open incident covering the credential
    /// was opened: none of those may put a possibly stolen secret back in service.
    pub async fn rollback(&self, caller: &Caller, cref: &CredRef, to: u32) -> Result<CredentialView, CoreError> {
        let resource = cref.to_string();
        if let Err(e) = self.authorize(caller, Action::RollbackCredential(&cref.tenant), &format!("credential {cref}"))
        {
            return self.finish(caller, "cred.rollback", &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, "cred.rollback", &resource, Err(e)).await,
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
            if old.stage == "retired" || old.stage == "failed" {
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
            Err(e) => return self.finish(caller, "cred.rollback", &resource, Err(e)).await,
        };
        let detail = format!("to={to}; new version={}", updated.current_version);
        self.commit(caller, "cred.rollback", &resource, op, &detail).await?;
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
            return self.finish(caller, "cred.retarget", &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, "cred.retarget", &resource, Err(e)).await,
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
                    return Err(CoreError::BadRequest(format!("field {key:?} is not set on {cref}")));
                }
            }
            after.extend(set);
            let fields = Fields::validate(credential.kind, after)?;
            if fields.as_map() == &before {
                return Err(CoreError::BadRequest("nothing to change: the target is already that".into()));
            }
            let change = describe_change(&before, fields.as_map());
            let (op, updated) = self.reseal(caller, tenant.id, &credential, &current, fields).await?;
            Ok((tenant, op, updated, change))
        }
        .await;
        let (tenant, op, updated, change) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, "cred.retarget", &resource, Err(e)).await,
        };
        let detail =
            format!("from version={}; new version={}; {change}", updated.current_version - 1, updated.current_version);
        self.commit(caller, "cred.retarget", &resource, op, &detail).await?;
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
            return self.finish(caller, "cred.promote", &resource, Err(e)).await;
        }
        let _turn = match self.turn_of(cref).await {
            Ok(turn) => turn,
            Err(e) => return self.finish(caller, "cred.promote", &resource, Err(e)).await,
        };
        let prepared = async {
            let (tenant, credential) = self.load(cref).await?;
            let version = credential.latest_version;
            let pending = self
                .store()
                .version(credential.id, Some(version))
                .await?
                .filter(|v| v.stage == "pending" && version > credential.current_version)
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
            Err(e) => return self.finish(caller, "cred.promote", &resource, Err(e)).await,
        };
        let detail = format!("version={}", updated.current_version);
        self.commit(caller, "cred.promote", &resource, op, &detail).await?;
        Ok(CredentialView::new(&tenant.name, &tenant.region, updated))
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
            Err(e) => return self.finish(caller, "cred.delete", &resource, Err(e)).await,
        };
        let op = WriteOp::DeleteCredential { id: credential.id, at: Timestamp::now() };
        self.commit(caller, "cred.delete", &resource, op, "").await
    }
}

/// `field: old -> new` for each changed field; long values (a CA bundle) by a digest.
fn describe_change(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let show = |v: Option<&String>| match v {
        None => "(unset)".to_owned(),
        Some(v) if v.len() > 120 || v.contains('\n') => {
            format!("sha256:{}", &hex::encode(sha2::Sha256::digest(v.as_bytes()))[..16])
        }
        Some(v) => format!("{v:?}"),
    };
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(before.get(k)), show(after.get(k))))
        .collect::<Vec<_>>()
        .join("; ")
}
