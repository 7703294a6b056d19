//! Reads of the certificate inventory.

use rekey_types::Timestamp;

use super::{all, duplicate_as, id, opt_ts, state, ts, u32_of, update_one};
use crate::conn::{args, Conn, OwnedRow};
use crate::model::CertificateRow;
use crate::StoreError;

const CERT_SELECT: &str = "SELECT ce.*, t.name AS tenant_name, c.name AS credential_name FROM certificates ce \
     JOIN tenants t ON t.id = ce.tenant_id JOIN credentials c ON c.id = ce.credential_id";

fn certificate_row(r: &OwnedRow) -> Result<CertificateRow, StoreError> {
    Ok(CertificateRow {
        sha256: r.text("sha256")?,
        sha1: r.text("sha1")?,
        public_key_sha256: r.text("public_key_sha256")?,
        tenant_id: id(r, "tenant_id")?,
        tenant: r.text("tenant_name")?,
        credential_id: id(r, "credential_id")?,
        credential: r.text("credential_name")?,
        credential_version: u32_of(r, "credential_version")?,
        subject: r.text("subject")?,
        not_before: ts(r, "not_before")?,
        not_after: ts(r, "not_after")?,
        state: state(r, "state")?,
        pem: r.text("pem")?,
        created_at: ts(r, "created_at")?,
        revoked_at: opt_ts(r, "revoked_at")?,
    })
}

pub(crate) async fn certificates<C: Conn>(
    c: &mut C,
    not_after_before: Option<i64>,
) -> Result<Vec<CertificateRow>, StoreError> {
    let rows = match not_after_before {
        Some(t) => {
            c.query(&format!("{CERT_SELECT} WHERE ce.not_after < $1 ORDER BY ce.not_after, ce.sha256"), args![t])
                .await?
        }
        None => c.query(&format!("{CERT_SELECT} ORDER BY t.name, c.name, ce.created_at"), vec![]).await?,
    };
    all(rows, certificate_row)
}

/// The certificate whose key is a given credential version, if any.
pub(crate) async fn certificate_of<C: Conn>(
    c: &mut C,
    credential: String,
    version: u32,
) -> Result<Option<CertificateRow>, StoreError> {
    c.query_opt(
        &format!("{CERT_SELECT} WHERE ce.credential_id = $1 AND ce.credential_version = $2"),
        args![credential, version],
    )
    .await?
    .map(|r| certificate_row(&r))
    .transpose()
}

/// A certificate by its SHA-256 or SHA-1 thumbprint (hex, lowercase).
pub(crate) async fn certificate<C: Conn>(c: &mut C, thumbprint: String) -> Result<Option<CertificateRow>, StoreError> {
    c.query_opt(&format!("{CERT_SELECT} WHERE ce.sha256 = $1 OR ce.sha1 = $1"), args![thumbprint])
        .await?
        .map(|r| certificate_row(&r))
        .transpose()
}

// Writes.

pub(super) async fn insert_certificate<C: Conn>(c: &mut C, ce: &CertificateRow) -> Result<(), StoreError> {
    c.exec(
        "INSERT INTO certificates (sha256, sha1, public_key_sha256, tenant_id, credential_id, credential_version, \
         subject, not_before, not_after, state, pem, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        args![
            &ce.sha256,
            &ce.sha1,
            &ce.public_key_sha256,
            ce.tenant_id.to_string(),
            ce.credential_id.to_string(),
            ce.credential_version,
            &ce.subject,
            ce.not_before.as_micros(),
            ce.not_after.as_micros(),
            ce.state,
            &ce.pem,
            ce.created_at.as_micros()
        ],
    )
    .await
    .map_err(|e| {
        duplicate_as(e, StoreError::AlreadyExists { entity: "certificate or key", id: ce.sha256.clone() })
    })?;
    Ok(())
}

pub(super) async fn revoke_certificate<C: Conn>(c: &mut C, sha256: &str, at: &Timestamp) -> Result<(), StoreError> {
    let sql = "UPDATE certificates SET state = 'revoked', revoked_at = $1 WHERE sha256 = $2 AND state <> 'revoked'";
    update_one(c, sql, at.as_micros(), "active certificate", sha256.to_owned()).await
}
