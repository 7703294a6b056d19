//! Put: a new version of a credential, sealed under its tenant's KEK and bound to its target;
//! the checks of who may name which fields, and what a new secret does to a campaign or a freeze.

use std::collections::BTreeMap;

use rekey_crypto::{seal_payload, PayloadSlot};
use rekey_store::{CredentialRow, VersionRow, WriteOp};
use rekey_types::fields::validate_labels;
use rekey_types::{AuditAction, CredRef, CredentialId, CredentialKind, Fields, Secret, Stage, TenantId, Timestamp};
use zeroize::Zeroizing;

use crate::kernel::keys::KeyUse;
use crate::kernel::policy::Action;
use crate::views::CredentialView;
use crate::{Caller, CoreError, Vault};

/// How many times a put is retried when a concurrent put of the same credential won.
const PUT_ATTEMPTS: usize = 3;

/// The secret of a `put`.
pub enum PutSecret {
    /// A password, client secret or opaque bytes.
    Opaque(Secret),
    /// An `entra-app` certificate (PEM) and its private key (PEM), stored together as the secret.
    Certificate {
        /// The certificate, PEM.
        cert_pem: String,
        /// Its private key, PEM.
        key_pem: Secret,
    },
}

/// What a `put` stores: a new version of a credential.
pub struct PutInput {
    /// What it connects to; a credential's kind never changes.
    pub kind: CredentialKind,
    /// The target, as the kind takes it.
    pub fields: BTreeMap<String, String>,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// The secret.
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
            stage: if pending { Stage::Pending } else { Stage::Current },
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

    /// `cred put`: stores a new version (the credential too, if new) and makes it current, with its audit event in the same write.
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
            Err(e) => return self.finish(caller, AuditAction::CredPut, &resource, Err(e)).await,
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
                    return self.finish(caller, AuditAction::CredPut, &resource, Err(e)).await;
                }
            };
            let detail = format!("kind={kind}; version={}", credential.current_version);
            match self.commit(caller, AuditAction::CredPut, &resource, op, &detail).await {
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
}

/// `field: old -> new` for each changed field; long values (a CA bundle) by a digest.
pub(crate) fn describe_change(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
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
