//! Per-tenant certificates: issue one for an `entra-app` credential (its private key becomes
//! the credential's pending version), the inventory, and revocation.
//!
//! Every certificate Rekey holds, issued here or uploaded with `cred put --cert-file`, is in the
//! inventory, and the inventory refuses a certificate or a public key it already holds for
//! another credential: no two tenants ever share one.

use rekey_crypto::cert::{self, CertInfo};
use rekey_store::{CertificateRow, CredentialRow, WriteOp};
use rekey_types::{AuditAction, CertState, CredRef, CredentialKind, Secret, Timestamp};
use zeroize::Zeroizing;

use crate::credentials::NextVersion;
use crate::kernel::policy::Action;
use crate::views::CertificateView;
use crate::{Caller, CoreError, Vault};

pub use crate::options::DEFAULT_CERT_LIFETIME_SECS as DEFAULT_LIFETIME_SECS;

/// Shortest lifetime accepted: one hour.
pub const MIN_LIFETIME_SECS: u64 = 3600;
/// Longest lifetime accepted: two years.
pub const MAX_LIFETIME_SECS: u64 = 2 * 365 * 86_400;

impl From<CertificateRow> for CertificateView {
    fn from(c: CertificateRow) -> Self {
        let x5t = hex::decode(&c.sha1)
            .map(|b| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            })
            .unwrap_or_default();
        Self {
            tenant: c.tenant,
            credential: c.credential,
            credential_version: c.credential_version,
            subject: c.subject,
            sha1: c.sha1,
            sha256: c.sha256,
            x5t,
            not_before: c.not_before,
            not_after: c.not_after,
            // Expiry is a fact of the clock, not a stored state.
            state: if c.state == CertState::Active && c.not_after <= Timestamp::now() {
                CertState::Expired
            } else {
                c.state
            },
            pem: c.pem,
        }
    }
}

fn row_of(info: &CertInfo, credential: &CredentialRow, version: u32) -> CertificateRow {
    CertificateRow {
        sha256: hex::encode(info.sha256),
        sha1: hex::encode(info.sha1),
        public_key_sha256: hex::encode(info.public_key_sha256),
        tenant_id: credential.tenant_id,
        tenant: String::new(),
        credential_id: credential.id,
        credential: credential.name.clone(),
        credential_version: version,
        subject: info.subject.clone(),
        not_before: Timestamp::from_micros(info.not_before.saturating_mul(1_000_000)),
        not_after: Timestamp::from_micros(info.not_after.saturating_mul(1_000_000)),
        state: CertState::Active,
        pem: info.pem.clone(),
        created_at: Timestamp::now(),
        revoked_at: None,
    }
}

impl Vault {
    /// Adds the certificate to `op`'s write, unless this very credential already holds it.
    pub(crate) async fn with_certificate(
        &self,
        op: WriteOp,
        credential: &CredentialRow,
        info: Option<&CertInfo>,
    ) -> Result<WriteOp, CoreError> {
        let Some(info) = info else { return Ok(op) };
        if let Some(held) = self.store().certificate(&hex::encode(info.sha256)).await? {
            if held.credential_id == credential.id {
                return Ok(op);
            }
            return Err(CoreError::Conflict(
                "this certificate already belongs to another credential; every credential needs its own".into(),
            ));
        }
        let row = row_of(info, credential, credential.latest_version);
        Ok(WriteOp::All(vec![op, WriteOp::InsertCertificate(row)]))
    }

    /// A new key pair and certificate for credential `name` of `tenant`, as the secret Rekey
    /// stores for it (private key PEM, then certificate PEM).
    pub(crate) async fn new_certificate_secret(
        &self,
        tenant: &str,
        name: &str,
        lifetime_secs: Option<u64>,
    ) -> Result<(Secret, CertInfo), CoreError> {
        let lifetime = lifetime_secs.unwrap_or(self.options().cert_lifetime_secs);
        let issued = tokio::task::spawn_blocking({
            let (cn, unit) = (tenant.to_owned(), name.to_owned());
            move || cert::issue(&cn, &unit, lifetime)
        })
        .await
        .map_err(|_| CoreError::Crypto(rekey_crypto::CryptoError::Certificate("key generation stopped".into())))?
        .map_err(CoreError::Crypto)?;
        let mut combined = Zeroizing::new(Vec::with_capacity(issued.key_pem.len() + issued.info.pem.len() + 1));
        combined.extend_from_slice(issued.key_pem.as_bytes());
        combined.push(b'\n');
        combined.extend_from_slice(issued.info.pem.as_bytes());
        Ok((Secret::new(combined.to_vec()), issued.info))
    }

    /// `rekey cert issue`: a new key pair and certificate for an `entra-app` credential. The
    /// private key (with the certificate) is stored as a new `pending` version; the current
    /// version keeps serving until the rotation promotes the pending one.
    pub async fn issue_certificate(
        &self,
        caller: &Caller,
        cref: &CredRef,
        lifetime_secs: Option<u64>,
    ) -> Result<CertificateView, CoreError> {
        let resource = cref.to_string();
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "certificates")?;
            let lifetime = lifetime_secs.unwrap_or(self.options().cert_lifetime_secs);
            if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&lifetime) {
                return Err(CoreError::BadRequest("a certificate lives between 1 hour and 2 years".into()));
            }
            let (tenant, credential) = self.tenant_credential(cref).await?;
            if credential.kind != CredentialKind::EntraApp {
                return Err(CoreError::BadRequest(format!(
                    "certificates are for entra-app credentials; {cref} is {}",
                    credential.kind
                )));
            }
            let (secret, info) = self.new_certificate_secret(&tenant.name, &credential.name, Some(lifetime)).await?;
            // The pending version authenticates with its certificate once promoted.
            let mut fields = self.current_fields(&credential).await?.into_map();
            fields.insert("auth".into(), "certificate".into());
            let fields = rekey_types::Fields::validate(credential.kind, fields)?;
            let next = NextVersion {
                tenant: tenant.id,
                name: cref.name.as_str(),
                kind: credential.kind,
                fields,
                labels: credential.labels.clone(),
                existing: Some(&credential),
                created_by: &caller.principal.audit_name(),
                kek_version: None,
                pending: true,
            };
            let (op, updated) = self.sealed_version(next, &secret).await?;
            let row = row_of(&info, &updated, updated.latest_version);
            let view = CertificateView::from(CertificateRow {
                tenant: tenant.name.clone(),
                credential: credential.name.clone(),
                ..row.clone()
            });
            Ok((WriteOp::All(vec![op, WriteOp::InsertCertificate(row)]), view))
        }
        .await;
        let (op, view) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CertIssue, &resource, Err(e)).await,
        };
        let detail = format!("sha1={}; pending version={}", view.sha1, view.credential_version);
        self.commit(caller, AuditAction::CertIssue, &resource, op, &detail).await?;
        Ok(view)
    }

    /// The inventory; with `expiring_within_secs`, only certificates that expire within it.
    pub async fn list_certificates(
        &self,
        caller: &Caller,
        expiring_within_secs: Option<u64>,
    ) -> Result<Vec<CertificateView>, CoreError> {
        let result = async {
            self.authorize(caller, Action::ReadKeys, "certificates")?;
            let before = expiring_within_secs.map(|s| {
                Timestamp::from_micros(
                    Timestamp::now().as_micros().saturating_add((s as i64).saturating_mul(1_000_000)),
                )
            });
            Ok(self.store().certificates(before).await?.into_iter().map(CertificateView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::CertList, "", result).await
    }

    /// Marks a certificate revoked, found by its SHA-1 or SHA-256 thumbprint (hex).
    pub async fn revoke_certificate(&self, caller: &Caller, thumbprint: &str) -> Result<CertificateView, CoreError> {
        let wanted: String = thumbprint.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        let resource = format!("cert:{}", wanted.chars().take(64).collect::<String>());
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "certificates")?;
            if !(wanted.len() == 40 || wanted.len() == 64) || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CoreError::BadRequest("a thumbprint is 40 (SHA-1) or 64 (SHA-256) hex digits".into()));
            }
            let cert = self
                .store()
                .certificate(&wanted)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("certificate {wanted}")))?;
            if cert.state == CertState::Revoked {
                return Err(CoreError::Conflict("the certificate is already revoked".into()));
            }
            Ok(cert)
        }
        .await;
        let cert = match prepared {
            Ok(c) => c,
            Err(e) => return self.finish(caller, AuditAction::CertRevoke, &resource, Err(e)).await,
        };
        let at = Timestamp::now();
        let op = WriteOp::RevokeCertificate { sha256: cert.sha256.clone(), at };
        self.commit(caller, AuditAction::CertRevoke, &resource, op, &format!("{}/{}", cert.tenant, cert.credential))
            .await?;
        Ok(CertificateView::from(CertificateRow { state: CertState::Revoked, revoked_at: Some(at), ..cert }))
    }
}
