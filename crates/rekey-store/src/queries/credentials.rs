//! Reads of credentials and their versions, and the row a reveal needs.

use std::collections::BTreeMap;

use rekey_types::{CredentialId, KeyState, Stage, Timestamp};

use super::{
    all, duplicate_as, id, insert_rows, json, json_of, kind, live_versions, opt_json_of, state, ts, u32_of, update_one,
    TARGET_FIELDS,
};
use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::{
    CredentialFilter, CredentialListRow, CredentialRow, LegacyRewrite, RevealRow, VersionBinding, VersionMeta,
    VersionRow,
};
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
        stage: state(r, "stage")?,
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
            stage: state(r, "stage")?,
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
                "SELECT c.tenant_id, c.id, c.kind, c.frozen_by, v.version, v.created_at, v.kek_version, v.wrapped_dek, \
                 v.ciphertext, ",
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
            created_at: ts(&r, "created_at")?,
            kek_version: u32_of(&r, "kek_version")?,
            wrapped_dek: r.blob("wrapped_dek")?,
            ciphertext: r.blob("ciphertext")?,
            fields: opt_json_of(&r, "fields")?,
        })
    })
    .transpose()
}

// Writes.

/// Records the fields of a binding once per credential.
pub(super) const INSERT_TARGET: &str = "INSERT INTO version_targets (credential_id, binding, fields) VALUES ";

pub(super) const TARGET_CONFLICT: &str = " ON CONFLICT (credential_id, binding) DO NOTHING";

pub(super) fn target_args(
    credential: &rekey_types::CredentialId,
    binding: &[u8],
    fields: &std::collections::BTreeMap<String, String>,
) -> Vec<Arg> {
    args![credential.to_string(), binding.to_vec(), json(fields)]
}

pub(super) const INSERT_CREDENTIAL: &str = "INSERT INTO credentials (id, tenant_id, name, kind, fields, labels, \
     current_version, latest_version, created_at, updated_at) VALUES ";

pub(super) const INSERT_VERSION: &str = "INSERT INTO credential_versions (credential_id, version, stage, kek_version, \
     wrapped_dek, ciphertext, created_by, created_at, binding, fingerprint) VALUES ";

/// A new credential, whose first version (current and latest) is `version`.
pub(super) fn new_credential_args(credential: &CredentialRow, version: &VersionRow) -> Vec<Arg> {
    args![
        credential.id.to_string(),
        credential.tenant_id.to_string(),
        &credential.name,
        credential.kind.as_str(),
        json(&credential.fields),
        json(&credential.labels),
        version.version,
        version.version,
        credential.created_at.as_micros(),
        credential.updated_at.as_micros()
    ]
}

pub(super) fn version_args(version: &VersionRow, stage: &str) -> Vec<Arg> {
    args![
        version.credential_id.to_string(),
        version.version,
        stage,
        version.kek_version,
        version.wrapped_dek.clone(),
        version.ciphertext.clone(),
        &version.created_by,
        version.created_at.as_micros(),
        version.binding.clone().unwrap_or_default(),
        version.fingerprint.clone().unwrap_or_default()
    ]
}

pub(super) async fn put_version<C: Conn>(
    c: &mut C,
    credential: &CredentialRow,
    version: &VersionRow,
    create: &bool,
) -> Result<(), StoreError> {
    let cred_id = credential.id.to_string();
    // A new DEK goes under the tenant's active KEK only: not one that a rotation retired
    // or that was marked compromised since the caller looked.
    let kek_state = c
        .query_opt(
            "SELECT state FROM tenant_keks WHERE tenant_id = $1 AND version = $2",
            args![credential.tenant_id.to_string(), version.kek_version],
        )
        .await?
        .map(|r| r.text("state"))
        .transpose()?;
    if kek_state.as_deref() != Some(KeyState::Active.as_str()) {
        return Err(StoreError::Conflict);
    }
    let pending = version.stage == Stage::Pending;
    if *create {
        if pending {
            return Err(StoreError::Constraint("a new credential starts with a current version".into()));
        }
        insert_rows(c, INSERT_CREDENTIAL, "", 10, vec![new_credential_args(credential, version)])
            .await
            .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
        c.exec(
            "INSERT INTO tenant_counts (tenant_id, tenant_name, region, kind, n) \
             SELECT t.id, t.name, t.region, $1, 1 FROM tenants t WHERE t.id = $2 \
             ON CONFLICT (region, tenant_id, kind) DO UPDATE SET n = tenant_counts.n + 1",
            args![credential.kind.as_str(), credential.tenant_id.to_string()],
        )
        .await?;
    } else {
        // Freezes and campaign items move only by operations of their own (`LiftFreeze`,
        // `ItemsRotated`), which the caller adds to the same write when they apply.
        let set_current = if pending { "current_version" } else { "$3" };
        let updated = c
            .exec(
                &format!(
                    "UPDATE credentials SET fields = $1, labels = $2, current_version = {set_current}, latest_version = $3, \
                     updated_at = $4 WHERE id = $5 AND latest_version = $6 AND deleted_at IS NULL AND kind = $7"
                ),
                args![
                    json(&credential.fields),
                    json(&credential.labels),
                    version.version,
                    credential.updated_at.as_micros(),
                    cred_id.clone(),
                    i64::from(version.version) - 1,
                    credential.kind.as_str()
                ],
            )
            .await?;
        if updated != 1 {
            return Err(StoreError::Conflict);
        }
        // A newer version supersedes any pending one. A new current one also moves the
        // old current to previous, and the old previous to retired (one statement).
        let (moved, set) = if pending {
            ("('pending')", "'retired'")
        } else {
            ("('pending', 'previous', 'current')", "CASE WHEN stage = 'current' THEN 'previous' ELSE 'retired' END")
        };
        c.exec(
            &format!(
                "UPDATE {} SET stage = {set} WHERE credential_id = $1 AND stage IN {moved} \
                 AND stage <> 'retired'",
                live_versions(c.backend())
            ),
            args![cred_id.clone()],
        )
        .await?;
    }
    let stage = if pending { "pending" } else { "current" };
    insert_rows(c, INSERT_VERSION, "", 10, vec![version_args(version, stage)])
        .await
        .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
    if let (Some(binding), Some(fields)) = (&version.binding, &version.fields) {
        insert_rows(c, INSERT_TARGET, TARGET_CONFLICT, 3, vec![target_args(&version.credential_id, binding, fields)])
            .await?;
    }
    Ok(())
}

pub(super) async fn lift_freeze<C: Conn>(
    c: &mut C,
    credential: &CredentialId,
    unless: &Option<(u32, Vec<u8>)>,
) -> Result<(), StoreError> {
    let id = credential.to_string();
    match unless {
        None => c.exec("UPDATE credentials SET frozen_by = NULL WHERE id = $1", args![id]).await.map(drop),
        Some((version, fingerprint)) => c
            .exec(
                concat!(
                    "UPDATE credentials SET frozen_by = NULL WHERE id = $1 AND frozen_by IS NOT NULL AND ",
                    fresh!("credentials.id", "$2", "$3")
                ),
                args![id, *version, fingerprint.clone()],
            )
            .await
            .map(drop),
    }
}

pub(super) async fn bind_versions<C: Conn>(c: &mut C, updates: &[VersionBinding]) -> Result<(), StoreError> {
    for u in updates {
        c.exec(
            "UPDATE credential_versions SET ciphertext = $1, binding = $2, fingerprint = $3 \
             WHERE credential_id = $4 AND version = $5 AND binding IS NULL",
            args![
                u.ciphertext.clone(),
                u.binding.clone(),
                u.fingerprint.clone(),
                u.credential_id.to_string(),
                u.version
            ],
        )
        .await?;
    }
    // In multi-row statements; a target row for a version another server bound first is
    // the same row (or an unused one): harmless.
    let targets = updates.iter().map(|u| target_args(&u.credential_id, &u.binding, &u.fields)).collect();
    insert_rows(c, INSERT_TARGET, TARGET_CONFLICT, 3, targets).await
}

pub(super) async fn versions_bound<C: Conn>(c: &mut C) -> Result<(), StoreError> {
    c.exec("DELETE FROM integrity_pending WHERE what = 'versions'", vec![]).await.map(drop)
}

pub(super) async fn unbind_versions<C: Conn>(c: &mut C, rows: &[LegacyRewrite]) -> Result<(), StoreError> {
    c.exec("INSERT INTO integrity_pending (what) VALUES ('versions') ON CONFLICT DO NOTHING", vec![]).await?;
    for r in rows {
        c.exec(
            "UPDATE credential_versions SET wrapped_dek = $1, ciphertext = $2, binding = NULL, \
             fingerprint = NULL WHERE credential_id = $3 AND version = $4",
            args![r.wrapped_dek.clone(), r.ciphertext.clone(), r.credential_id.to_string(), r.version],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn delete_credential<C: Conn>(c: &mut C, id: &CredentialId, at: &Timestamp) -> Result<(), StoreError> {
    let sql = "UPDATE credentials SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL";
    update_one(c, sql, at.as_micros(), "credential", id.to_string()).await?;
    c.exec(
        "UPDATE tenant_counts SET n = n - 1 WHERE (region, tenant_id, kind) IN \
         (SELECT t.region, c.tenant_id, c.kind FROM credentials c JOIN tenants t ON t.id = c.tenant_id WHERE c.id = $1)",
        args![id.to_string()],
    )
    .await
    .map(drop)
}

pub(super) async fn promote_pending<C: Conn>(
    c: &mut C,
    credential: &CredentialId,
    version: &u32,
    fields: &BTreeMap<String, String>,
    at: &Timestamp,
) -> Result<(), StoreError> {
    let id = credential.to_string();
    let n = c
        .exec(
            "UPDATE credentials SET current_version = $1, fields = $2, updated_at = $3 \
             WHERE id = $4 AND latest_version = $1 AND current_version < $1 AND deleted_at IS NULL",
            args![*version, json(fields), at.as_micros(), id.clone()],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::NotFound { entity: "pending version", id: format!("{id} v{version}") });
    }
    let versions = live_versions(c.backend());
    c.exec(
        &format!(
            "UPDATE {versions} SET stage = 'retired' WHERE credential_id = $1 AND stage = 'previous' \
             AND stage <> 'retired'"
        ),
        args![id.clone()],
    )
    .await?;
    c.exec(
        &format!(
            "UPDATE {versions} SET stage = 'previous' WHERE credential_id = $1 AND stage = 'current' \
             AND stage <> 'retired'"
        ),
        args![id.clone()],
    )
    .await?;
    c.exec(
        "UPDATE credential_versions SET stage = 'current' WHERE credential_id = $1 AND version = $2",
        args![id, *version],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_version_stage<C: Conn>(
    c: &mut C,
    credential: &CredentialId,
    version: &u32,
    from: &Stage,
    stage: &Stage,
) -> Result<(), StoreError> {
    c.exec(
        "UPDATE credential_versions SET stage = $1 WHERE credential_id = $2 AND version = $3 AND stage = $4",
        args![*stage, credential.to_string(), *version, *from],
    )
    .await
    .map(drop)
}
