//! Reads of credentials and their versions, and the row a reveal needs.

use super::{all, id, json_of, kind, live_versions, opt_json_of, ts, u32_of, TARGET_FIELDS};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{CredentialFilter, CredentialListRow, CredentialRow, RevealRow, VersionMeta, VersionRow};
use crate::StoreError;

const CRED_COLS: &str = "c.id, c.tenant_id, c.name, c.kind, c.fields, c.labels, c.current_version, \
     c.latest_version, c.created_at, c.updated_at, c.frozen_by";

fn credential_row(row: &OwnedRow) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        name: row.text("name")?,
        kind: kind(row, "kind")?,
        fields: json_of(row, "fields")?,
        labels: json_of(row, "labels")?,
        current_version: u32_of(row, "current_version")?,
        latest_version: u32_of(row, "latest_version")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        frozen_by: row.opt_text("frozen_by")?,
    })
}

fn version_row(r: &OwnedRow) -> Result<VersionRow, StoreError> {
    Ok(VersionRow {
        credential_id: id(r, "credential_id")?,
        version: u32_of(r, "version")?,
        stage: r.text("stage")?,
        kek_version: u32_of(r, "kek_version")?,
        wrapped_dek: r.blob("wrapped_dek")?,
        ciphertext: r.blob("ciphertext")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        fields: opt_json_of(r, "fields")?,
        binding: r.opt_blob("binding")?,
        fingerprint: r.opt_blob("fingerprint")?,
    })
}

pub(crate) async fn credential<C: Conn>(
    c: &mut C,
    tenant: String,
    name: String,
) -> Result<Option<CredentialRow>, StoreError> {
    let sql = format!(
        "SELECT {CRED_COLS} FROM credentials c WHERE c.tenant_id = $1 AND c.name = $2 AND c.deleted_at IS NULL"
    );
    c.query_opt(&sql, args![tenant, name]).await?.map(|r| credential_row(&r)).transpose()
}

/// The live credentials of one tenant among `names`, in statements of at most 500 names.
pub(crate) async fn credentials_named<C: Conn>(
    c: &mut C,
    tenant: String,
    names: Vec<String>,
) -> Result<Vec<CredentialRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in names.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT {CRED_COLS} FROM credentials c WHERE c.tenant_id = $1 AND c.deleted_at IS NULL AND c.name IN ({})",
            marks.join(", ")
        );
        let mut a: Vec<Arg> = vec![tenant.clone().into()];
        a.extend(chunk.iter().map(Arg::from));
        for r in c.query(&sql, a).await? {
            out.push(credential_row(&r)?);
        }
    }
    Ok(out)
}

pub(crate) async fn list_credentials<C: Conn>(
    c: &mut C,
    filter: CredentialFilter,
) -> Result<Vec<CredentialListRow>, StoreError> {
    let mut sql = format!(
        "SELECT {CRED_COLS}, t.name AS tenant_name, t.region AS tenant_region FROM credentials c \
         JOIN tenants t ON t.id = c.tenant_id WHERE c.deleted_at IS NULL"
    );
    let mut a: Vec<Arg> = Vec::new();
    if let Some(tenant) = filter.tenant {
        a.push(tenant.to_string().into());
        sql.push_str(&format!(" AND c.tenant_id = ${}", a.len()));
    }
    if let Some(k) = filter.kind {
        a.push(k.as_str().into());
        sql.push_str(&format!(" AND c.kind = ${}", a.len()));
    }
    if let Some(region) = filter.region {
        a.push(region.into());
        sql.push_str(&format!(" AND t.region = ${}", a.len()));
    }
    if let Some((tenant, name)) = filter.after {
        a.push(tenant.into());
        let t = a.len();
        a.push(name.into());
        let n = a.len();
        sql.push_str(&format!(" AND (t.name > ${t} OR (t.name = ${t} AND c.name > ${n}))"));
    }
    a.push(filter.limit.max(1).into());
    sql.push_str(&format!(" ORDER BY t.name, c.name LIMIT ${}", a.len()));
    all(c.query(&sql, a).await?, |r| {
        Ok(CredentialListRow {
            tenant: r.text("tenant_name")?,
            region: r.text("tenant_region")?,
            credential: credential_row(r)?,
        })
    })
}

pub(crate) async fn version<C: Conn>(
    c: &mut C,
    credential: String,
    version: Option<u32>,
) -> Result<Option<VersionRow>, StoreError> {
    let row = match version {
        Some(v) => {
            c.query_opt(
                concat!(
                    "SELECT v.*, ",
                    target_fields!(),
                    " FROM credential_versions v WHERE v.credential_id = $1 AND v.version = $2"
                ),
                args![credential, v],
            )
            .await?
        }
        None => {
            let sql = format!(
                "SELECT v.*, {TARGET_FIELDS} FROM (SELECT * FROM {} WHERE credential_id = $1 AND stage = 'current' \
                 AND stage <> 'retired') v",
                live_versions(c.backend())
            );
            c.query_opt(&sql, args![credential]).await?
        }
    };
    row.map(|r| version_row(&r)).transpose()
}

pub(crate) async fn list_versions<C: Conn>(c: &mut C, credential: String) -> Result<Vec<VersionMeta>, StoreError> {
    let rows = c
        .query(
            "SELECT version, stage, kek_version, created_by, created_at, fingerprint FROM credential_versions \
             WHERE credential_id = $1 ORDER BY version",
            args![credential],
        )
        .await?;
    all(rows, |r| {
        Ok(VersionMeta {
            version: u32_of(r, "version")?,
            stage: r.text("stage")?,
            kek_version: u32_of(r, "kek_version")?,
            created_by: r.text("created_by")?,
            created_at: ts(r, "created_at")?,
            fingerprint: r.opt_blob("fingerprint")?,
        })
    })
}

pub(crate) async fn reveal_row<C: Conn>(
    c: &mut C,
    tenant: String,
    name: String,
) -> Result<Option<RevealRow>, StoreError> {
    let row = c
        .query_opt(
            concat!(
                "SELECT c.tenant_id, c.id, c.kind, c.frozen_by, v.version, v.kek_version, v.wrapped_dek, v.ciphertext, ",
                target_fields!(),
                " FROM tenants t JOIN credentials c ON c.tenant_id = t.id AND c.deleted_at IS NULL \
                 JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
                 WHERE t.name = $1 AND c.name = $2"
            ),
            args![tenant, name],
        )
        .await?;
    row.map(|r| {
        Ok(RevealRow {
            frozen_by: r.opt_text("frozen_by")?,
            tenant_id: id(&r, "tenant_id")?,
            credential_id: id(&r, "id")?,
            kind: kind(&r, "kind")?,
            version: u32_of(&r, "version")?,
            kek_version: u32_of(&r, "kek_version")?,
            wrapped_dek: r.blob("wrapped_dek")?,
            ciphertext: r.blob("ciphertext")?,
            fields: opt_json_of(&r, "fields")?,
        })
    })
    .transpose()
}
