//! Every statement Rekey runs, written once for both backends over [`Conn`].

use std::fmt::Write as _;
use std::str::FromStr;

use rekey_types::{AuditOutcome, AuditRecord, CredentialKind, Role, TenantId, Timestamp};

use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::*;
use crate::{Backend, ChainFn, StoreError};

/// The target fields of version `v` (a column named `fields`; NULL for a legacy version). A
/// macro, so that the statements that use it stay literals.
macro_rules! target_fields {
    () => {
        "(SELECT t.fields FROM version_targets t WHERE t.credential_id = v.credential_id \
         AND t.binding = v.binding) AS fields"
    };
}

/// No version of credential `cred` other than `version` holds fingerprint `fp` (or has none,
/// which cannot be shown to differ). `cred` is a column of the updated row, so the subquery is
/// correlated and runs only for a row the rest of the statement already matched (uncorrelated,
/// SQLite runs it once per statement, scanning every version of the credential on every put).
/// `version` and `fp` are parameter names (`$2`); SQLite numbers them in order of first use, so
/// the caller's statement must use them in order. A macro, so that the statement is a literal
/// (no text built per write).
macro_rules! fresh {
    ($cred:literal, $version:literal, $fp:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM credential_versions fv WHERE fv.credential_id = ",
            $cred,
            " AND fv.version <> ",
            $version,
            " AND (fv.fingerprint IS NULL OR fv.fingerprint = ",
            $fp,
            "))"
        )
    };
}
pub(crate) use fresh;

mod campaigns;
pub(crate) use campaigns::*;

// ---- decoding -------------------------------------------------------------------------------

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn id<T: FromStr>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    row.text(col)?.parse().map_err(|_| corrupt(col))
}

fn u32_of(row: &OwnedRow, col: &str) -> Result<u32, StoreError> {
    u32::try_from(row.int(col)?).map_err(|_| corrupt(col))
}

fn ts(row: &OwnedRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_micros(row.int(col)?))
}

fn opt_ts(row: &OwnedRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.opt_int(col)?.map(Timestamp::from_micros))
}

fn json_of<T: serde::de::DeserializeOwned>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    serde_json::from_str(&row.text(col)?).map_err(|_| corrupt(col))
}

fn opt_json_of<T: serde::de::DeserializeOwned>(row: &OwnedRow, col: &str) -> Result<Option<T>, StoreError> {
    row.opt_text(col)?.map(|t| serde_json::from_str(&t).map_err(|_| corrupt(col))).transpose()
}

fn kind(row: &OwnedRow, col: &str) -> Result<CredentialKind, StoreError> {
    row.text(col)?.parse().map_err(|_| corrupt(col))
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always serialize")
}

fn tenant_row(row: &OwnedRow) -> Result<TenantRow, StoreError> {
    Ok(TenantRow {
        id: id(row, "id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        contacts: json_of(row, "contacts")?,
        state: row.text("state")?,
        created_at: ts(row, "created_at")?,
    })
}

fn kek_row(row: &OwnedRow) -> Result<KekRow, StoreError> {
    Ok(KekRow {
        tenant_id: id(row, "tenant_id")?,
        version: u32_of(row, "version")?,
        state: row.text("state")?,
        wrapped: row.blob("wrapped")?,
        root_version: u32_of(row, "root_version")?,
        created_at: ts(row, "created_at")?,
    })
}

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

const TOKEN_SELECT: &str =
    "SELECT tk.*, t.name AS tenant_name FROM tokens tk LEFT JOIN tenants t ON t.id = tk.tenant_id";

fn token_row(row: &OwnedRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: id(row, "id")?,
        hash: row.blob("hash")?,
        role: Role::from_str(&row.text("role")?).map_err(|_| corrupt("role"))?,
        tenant_id: row.opt_text("tenant_id")?.map(|t| t.parse().map_err(|_| corrupt("tenant_id"))).transpose()?,
        tenant_name: row.opt_text("tenant_name")?,
        bound: json_of(row, "bound")?,
        cidrs: json_of(row, "cidrs")?,
        description: row.text("description")?,
        created_by: row.text("created_by")?,
        created_at: ts(row, "created_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        mac: row.opt_blob("mac")?,
    })
}

fn audit_row(row: &OwnedRow) -> Result<StoredAudit, StoreError> {
    Ok(StoredAudit {
        record: AuditRecord {
            seq: row.int("seq")?,
            time: ts(row, "time")?,
            principal: row.text("principal")?,
            action: row.text("action")?,
            resource: row.text("resource")?,
            outcome: AuditOutcome::parse(&row.text("outcome")?).ok_or_else(|| corrupt("outcome"))?,
            source: row.text("source")?,
            request_id: row.text("request_id")?,
            detail: row.text("detail")?,
        },
        mac: row.blob("mac")?,
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

fn all<T>(rows: Vec<OwnedRow>, f: impl Fn(&OwnedRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

// ---- migrations -----------------------------------------------------------------------------

fn migrations(backend: Backend) -> &'static [(i64, &'static str)] {
    match backend {
        Backend::Sqlite => &[
            (1, include_str!("../migrations/sqlite/0001_init.sql")),
            (2, include_str!("../migrations/sqlite/0002_key_custody.sql")),
            (3, include_str!("../migrations/sqlite/0003_connectors.sql")),
            (4, include_str!("../migrations/sqlite/0004_incidents.sql")),
            (5, include_str!("../migrations/sqlite/0005_campaigns.sql")),
            (6, include_str!("../migrations/sqlite/0006_region_reach.sql")),
            (7, include_str!("../migrations/sqlite/0007_audit_index_file.sql")),
            (8, include_str!("../migrations/sqlite/0008_custody_binding.sql")),
            (9, include_str!("../migrations/sqlite/0009_bind_marker.sql")),
            (10, include_str!("../migrations/sqlite/0010_share_commitments.sql")),
        ],
        Backend::Postgres => &[
            (1, include_str!("../migrations/postgres/0001_init.sql")),
            (2, include_str!("../migrations/postgres/0002_key_custody.sql")),
            (3, include_str!("../migrations/postgres/0003_connectors.sql")),
            (4, include_str!("../migrations/postgres/0004_incidents.sql")),
            (5, include_str!("../migrations/postgres/0005_campaigns.sql")),
            (6, include_str!("../migrations/postgres/0006_region_reach.sql")),
            (7, include_str!("../migrations/postgres/0007_custody_binding.sql")),
            (8, include_str!("../migrations/postgres/0008_bind_marker.sql")),
            (9, include_str!("../migrations/postgres/0009_share_commitments.sql")),
        ],
    }
}

pub(crate) async fn migrate<C: Conn>(c: &mut C) -> Result<(), StoreError> {
    let backend = c.backend();
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    c.batch(begin).await?;
    let result = async {
        if backend == Backend::Postgres {
            // Several servers may start at once against one database: one migrates at a time.
            c.exec("SELECT pg_advisory_xact_lock(72657365)", vec![]).await?;
        }
        c.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let applied: Vec<i64> =
            all(c.query("SELECT version FROM schema_migrations", vec![]).await?, |r| r.int("version"))?;
        for (version, sql) in migrations(backend) {
            if applied.contains(version) {
                continue;
            }
            c.batch(sql).await?;
            c.exec(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                args![*version, Timestamp::now().as_micros()],
            )
            .await?;
            tracing::info!(backend = backend.as_str(), version, "applied migration");
        }
        Ok(())
    }
    .await;
    finish(c, result).await
}

/// Commits on success, rolls back on failure.
async fn finish<C: Conn, T>(c: &mut C, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            c.batch("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch("ROLLBACK").await;
            Err(e)
        }
    }
}

// ---- reads ----------------------------------------------------------------------------------

pub(crate) async fn tenant_by<C: Conn>(
    c: &mut C,
    column: &'static str,
    value: String,
) -> Result<Option<TenantRow>, StoreError> {
    let sql = match column {
        "id" => "SELECT * FROM tenants WHERE id = $1",
        _ => "SELECT * FROM tenants WHERE name = $1",
    };
    c.query_opt(sql, args![value]).await?.map(|r| tenant_row(&r)).transpose()
}

pub(crate) async fn list_tenants<C: Conn>(c: &mut C, filter: TenantFilter) -> Result<Vec<TenantRow>, StoreError> {
    let mut sql = String::from("SELECT * FROM tenants WHERE 1=1");
    let mut a: Vec<Arg> = Vec::new();
    if let Some(region) = filter.region {
        a.push(region.into());
        sql.push_str(&format!(" AND region = ${}", a.len()));
    }
    if let Some(after) = filter.after {
        a.push(after.into());
        sql.push_str(&format!(" AND name > ${}", a.len()));
    }
    a.push(filter.limit.max(1).into());
    sql.push_str(&format!(" ORDER BY name LIMIT ${}", a.len()));
    all(c.query(&sql, a).await?, tenant_row)
}

pub(crate) async fn kek<C: Conn>(
    c: &mut C,
    tenant: String,
    version: Option<u32>,
) -> Result<Option<KekRow>, StoreError> {
    let row = match version {
        Some(v) => {
            c.query_opt("SELECT * FROM tenant_keks WHERE tenant_id = $1 AND version = $2", args![tenant, v]).await?
        }
        None => {
            c.query_opt(
                "SELECT * FROM tenant_keks WHERE tenant_id = $1 AND state = 'active' ORDER BY version DESC LIMIT 1",
                args![tenant],
            )
            .await?
        }
    };
    row.map(|r| kek_row(&r)).transpose()
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

pub(crate) async fn token<C: Conn>(c: &mut C, id_text: String) -> Result<Option<TokenRow>, StoreError> {
    c.query_opt(&format!("{TOKEN_SELECT} WHERE tk.id = $1"), args![id_text]).await?.map(|r| token_row(&r)).transpose()
}

pub(crate) async fn list_tokens<C: Conn>(c: &mut C) -> Result<Vec<TokenRow>, StoreError> {
    all(c.query(&format!("{TOKEN_SELECT} ORDER BY tk.created_at, tk.id"), vec![]).await?, token_row)
}

pub(crate) async fn system_key<C: Conn>(c: &mut C, purpose: String) -> Result<Option<SystemKeyRow>, StoreError> {
    let row = c
        .query_opt(
            "SELECT purpose, version, wrapped FROM system_keys WHERE purpose = $1 ORDER BY version DESC LIMIT 1",
            args![purpose],
        )
        .await?;
    row.map(|r| {
        Ok(SystemKeyRow { purpose: r.text("purpose")?, version: u32_of(&r, "version")?, wrapped: r.blob("wrapped")? })
    })
    .transpose()
}

pub(crate) async fn insert_system_key<C: Conn>(c: &mut C, row: SystemKeyRow) -> Result<bool, StoreError> {
    let n = c
        .exec(
            "INSERT INTO system_keys (purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (purpose, version) DO NOTHING",
            args![row.purpose, row.version, row.wrapped, Timestamp::now().as_micros()],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn counts<C: Conn>(c: &mut C) -> Result<Counts, StoreError> {
    let r = c
        .query_opt(
            "SELECT (SELECT COUNT(*) FROM tenants) AS tenants, \
                    (SELECT COUNT(*) FROM credentials WHERE deleted_at IS NULL) AS credentials, \
                    (SELECT COUNT(*) FROM credential_versions) AS versions, \
                    (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL) AS tokens, \
                    (SELECT seq FROM audit_head WHERE id = 1) AS audit_events",
            vec![],
        )
        .await?
        .ok_or_else(|| corrupt("counts"))?;
    Ok(Counts {
        tenants: r.int("tenants")?,
        credentials: r.int("credentials")?,
        versions: r.int("versions")?,
        tokens: r.int("tokens")?,
        audit_events: r.int("audit_events")?,
    })
}

pub(crate) async fn audit_head<C: Conn>(c: &mut C) -> Result<Option<AuditHead>, StoreError> {
    c.query_opt("SELECT seq, mac FROM audit_head WHERE id = 1", vec![])
        .await?
        .map(|r| Ok(AuditHead { seq: r.int("seq")?, mac: r.blob("mac")? }))
        .transpose()
}

pub(crate) async fn audit_tail<C: Conn>(c: &mut C, n: u32) -> Result<Vec<StoredAudit>, StoreError> {
    let mut rows = all(c.query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT $1", args![n]).await?, audit_row)?;
    rows.reverse();
    Ok(rows)
}

pub(crate) async fn audit_page<C: Conn>(c: &mut C, after: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
    all(
        c.query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2", args![after, limit]).await?,
        audit_row,
    )
}

// ---- key custody reads ------------------------------------------------------------------------

fn root_key_row(r: &OwnedRow) -> Result<RootKeyRow, StoreError> {
    Ok(RootKeyRow {
        version: u32_of(r, "version")?,
        state: r.text("state")?,
        created_at: ts(r, "created_at")?,
        changed_at: ts(r, "changed_at")?,
    })
}

pub(crate) async fn root_keys<C: Conn>(c: &mut C) -> Result<Vec<RootKeyRow>, StoreError> {
    all(c.query("SELECT * FROM root_keys ORDER BY version", vec![]).await?, root_key_row)
}

fn small(r: &OwnedRow, col: &str) -> Result<u8, StoreError> {
    u8::try_from(r.int(col)?).map_err(|_| corrupt(col))
}

pub(crate) async fn seal_keyring<C: Conn>(c: &mut C, slot: String) -> Result<Option<SealKeyringRow>, StoreError> {
    c.query_opt("SELECT * FROM seal_keyring WHERE slot = $1", args![slot])
        .await?
        .map(|r| {
            Ok(SealKeyringRow {
                slot: r.text("slot")?,
                set_id: r.blob("set_id")?,
                shares: small(&r, "shares")?,
                threshold: small(&r, "threshold")?,
                blob: r.blob("blob")?,
                commitments: r.opt_blob("commitments")?,
                created_at: ts(&r, "created_at")?,
            })
        })
        .transpose()
}

/// Stores a keyring outside the audited write path: `rekey init` runs before there is an audit
/// key, and a pending keyring changes nothing until it is committed (which is audited). An
/// `active` row is inserted only if none exists (`false` if one did); `pending` replaces.
pub(crate) async fn put_seal_keyring<C: Conn>(c: &mut C, row: SealKeyringRow) -> Result<bool, StoreError> {
    let on_conflict = if row.slot == "active" {
        "ON CONFLICT (slot) DO NOTHING"
    } else {
        "ON CONFLICT (slot) DO UPDATE SET set_id = excluded.set_id, shares = excluded.shares, \
         threshold = excluded.threshold, blob = excluded.blob, commitments = excluded.commitments, \
         created_at = excluded.created_at"
    };
    let n = c
        .exec(
            &format!(
                "INSERT INTO seal_keyring (slot, set_id, shares, threshold, blob, created_at, commitments) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) {on_conflict}"
            ),
            args![
                row.slot,
                row.set_id,
                i64::from(row.shares),
                i64::from(row.threshold),
                row.blob,
                row.created_at.as_micros(),
                row.commitments
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn keks<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<Vec<KekRow>, StoreError> {
    let rows = match tenant {
        Some(t) => c.query("SELECT * FROM tenant_keks WHERE tenant_id = $1 ORDER BY version", args![t]).await?,
        None => c.query("SELECT * FROM tenant_keks ORDER BY tenant_id, version", vec![]).await?,
    };
    all(rows, kek_row)
}

pub(crate) async fn dek_counts<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<Vec<DekCount>, StoreError> {
    let base = "SELECT c.tenant_id, v.kek_version, COUNT(*) AS n FROM credential_versions v \
                JOIN credentials c ON c.id = v.credential_id";
    let rows = match tenant {
        Some(t) => {
            c.query(&format!("{base} WHERE c.tenant_id = $1 GROUP BY c.tenant_id, v.kek_version"), args![t]).await?
        }
        None => c.query(&format!("{base} GROUP BY c.tenant_id, v.kek_version"), vec![]).await?,
    };
    all(rows, |r| {
        Ok(DekCount { tenant_id: id(r, "tenant_id")?, kek_version: u32_of(r, "kek_version")?, count: r.int("n")? })
    })
}

/// Up to `limit` credential versions of `tenant` (deleted credentials included) whose DEK is
/// wrapped under a KEK version other than `target`, skipping versions under destroyed KEKs.
pub(crate) async fn deks_to_rewrap<C: Conn>(
    c: &mut C,
    tenant: String,
    target: u32,
    limit: u32,
) -> Result<Vec<DekRow>, StoreError> {
    let rows = c
        .query(
            "SELECT c.tenant_id, v.credential_id, c.kind, v.version, v.kek_version, v.wrapped_dek \
             FROM credentials c JOIN credential_versions v ON v.credential_id = c.id \
             JOIN tenant_keks k ON k.tenant_id = c.tenant_id AND k.version = v.kek_version \
             WHERE c.tenant_id = $1 AND v.kek_version <> $2 AND k.state <> 'destroyed' LIMIT $3",
            args![tenant, target, limit],
        )
        .await?;
    all(rows, |r| {
        Ok(DekRow {
            tenant_id: id(r, "tenant_id")?,
            credential_id: id(r, "credential_id")?,
            kind: kind(r, "kind")?,
            version: u32_of(r, "version")?,
            kek_version: u32_of(r, "kek_version")?,
            wrapped_dek: r.blob("wrapped_dek")?,
        })
    })
}

/// KEKs and system keys wrapped under a root version other than `target` (up to `limit`).
pub(crate) async fn root_wrapped<C: Conn>(c: &mut C, target: u32, limit: u32) -> Result<Vec<RootRewrap>, StoreError> {
    let keks = c
        .query(
            "SELECT tenant_id, version, root_version, wrapped FROM tenant_keks \
             WHERE root_version <> $1 AND state <> 'destroyed' LIMIT $2",
            args![target, limit],
        )
        .await?;
    let mut out = all(keks, |r| {
        Ok(RootRewrap {
            tenant_id: Some(id(r, "tenant_id")?),
            purpose: String::new(),
            version: u32_of(r, "version")?,
            from_root: u32_of(r, "root_version")?,
            to_root: target,
            wrapped: r.blob("wrapped")?,
        })
    })?;
    let system = c.query("SELECT purpose, version, wrapped FROM system_keys", vec![]).await?;
    for r in &system {
        let wrapped = r.blob("wrapped")?;
        let from_root = rekey_root_version(&wrapped).ok_or_else(|| corrupt("system_keys.wrapped"))?;
        if from_root != target {
            out.push(RootRewrap {
                tenant_id: None,
                purpose: r.text("purpose")?,
                version: u32_of(r, "version")?,
                from_root,
                to_root: target,
                wrapped,
            });
        }
    }
    Ok(out)
}

/// The key version in a Rekey blob header (bytes 21..25); see `rekey-crypto`'s envelope.
fn rekey_root_version(blob: &[u8]) -> Option<u32> {
    (blob.len() > 25 && &blob[..2] == b"RK").then(|| u32::from_be_bytes(blob[21..25].try_into().expect("4 bytes")))
}

/// Credential versions wrapped under one KEK version (what destroying it makes unrecoverable).
pub(crate) async fn wrapped_by<C: Conn>(
    c: &mut C,
    tenant: String,
    version: u32,
    limit: u32,
) -> Result<Vec<WrappedBy>, StoreError> {
    let rows = c
        .query(
            "SELECT t.name AS tenant_name, c.name, v.version, c.deleted_at FROM credential_versions v \
             JOIN credentials c ON c.id = v.credential_id JOIN tenants t ON t.id = c.tenant_id \
             WHERE c.tenant_id = $1 AND v.kek_version = $2 ORDER BY c.name, v.version LIMIT $3",
            args![tenant, version, limit],
        )
        .await?;
    all(rows, |r| {
        Ok(WrappedBy {
            tenant: r.text("tenant_name")?,
            credential: r.text("name")?,
            version: u32_of(r, "version")?,
            deleted: r.opt_int("deleted_at")?.is_some(),
        })
    })
}

pub(crate) async fn tenant_ids<C: Conn>(c: &mut C) -> Result<Vec<TenantId>, StoreError> {
    all(c.query("SELECT id FROM tenants WHERE state <> 'shredded' ORDER BY id", vec![]).await?, |r| id(r, "id"))
}

/// Credential versions in scope of a job: of one tenant, or of all.
pub(crate) async fn count_versions<C: Conn>(c: &mut C, tenant: Option<String>) -> Result<i64, StoreError> {
    let row = match tenant {
        Some(t) => {
            c.query_opt(
                "SELECT COUNT(*) AS n FROM credential_versions v JOIN credentials c ON c.id = v.credential_id \
                 WHERE c.tenant_id = $1",
                args![t],
            )
            .await?
        }
        None => c.query_opt("SELECT COUNT(*) AS n FROM credential_versions", vec![]).await?,
    };
    row.ok_or_else(|| corrupt("count"))?.int("n")
}

fn job_row(r: &OwnedRow) -> Result<KeyJobRow, StoreError> {
    Ok(KeyJobRow {
        id: id(r, "id")?,
        scope: r.text("scope")?,
        tenant_id: r.opt_text("tenant_id")?.map(|t| t.parse().map_err(|_| corrupt("tenant_id"))).transpose()?,
        reason: r.text("reason")?,
        state: r.text("state")?,
        total: r.int("total")?,
        done: r.int("done")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        finished_at: opt_ts(r, "finished_at")?,
        error: r.opt_text("error")?,
    })
}

pub(crate) async fn jobs<C: Conn>(c: &mut C, running_only: bool, limit: u32) -> Result<Vec<KeyJobRow>, StoreError> {
    let sql = if running_only {
        "SELECT * FROM key_jobs WHERE state = 'running' ORDER BY created_at, id LIMIT $1"
    } else {
        "SELECT * FROM key_jobs ORDER BY created_at DESC, id DESC LIMIT $1"
    };
    all(c.query(sql, args![limit]).await?, job_row)
}

pub(crate) async fn job<C: Conn>(c: &mut C, id_text: String) -> Result<Option<KeyJobRow>, StoreError> {
    c.query_opt("SELECT * FROM key_jobs WHERE id = $1", args![id_text]).await?.map(|r| job_row(&r)).transpose()
}

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
        state: r.text("state")?,
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

const ROTATION_SELECT: &str = "SELECT r.*, t.name AS tenant_name, c.name AS credential_name, c.kind AS kind \
     FROM rotations r JOIN tenants t ON t.id = r.tenant_id JOIN credentials c ON c.id = r.credential_id";

fn rotation_row(r: &OwnedRow) -> Result<RotationRow, StoreError> {
    Ok(RotationRow {
        id: id(r, "id")?,
        credential_id: id(r, "credential_id")?,
        tenant_id: id(r, "tenant_id")?,
        from_version: u32_of(r, "from_version")?,
        to_version: u32_of(r, "to_version")?,
        state: r.text("state")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        changed_at: ts(r, "changed_at")?,
        retire_after: opt_ts(r, "retire_after")?,
        error: r.opt_text("error")?,
        target_ref: r.opt_text("target_ref")?,
        tenant: r.text("tenant_name")?,
        credential: r.text("credential_name")?,
        kind: Some(kind(r, "kind")?),
    })
}

pub(crate) async fn rotation<C: Conn>(c: &mut C, id_text: String) -> Result<Option<RotationRow>, StoreError> {
    c.query_opt(&format!("{ROTATION_SELECT} WHERE r.id = $1"), args![id_text])
        .await?
        .map(|r| rotation_row(&r))
        .transpose()
}

/// The newest rotations of one credential, newest first.
pub(crate) async fn rotations_of<C: Conn>(
    c: &mut C,
    credential: String,
    limit: u32,
) -> Result<Vec<RotationRow>, StoreError> {
    let sql = format!("{ROTATION_SELECT} WHERE r.credential_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2");
    all(c.query(&sql, args![credential, limit]).await?, rotation_row)
}

/// Rotations that still need a step: unfinished ones, and promoted ones whose grace period
/// ended before `now`. Oldest first.
pub(crate) async fn rotations_due<C: Conn>(c: &mut C, now: i64, limit: u32) -> Result<Vec<RotationRow>, StoreError> {
    let sql = format!(
        "{ROTATION_SELECT} WHERE (r.state IN ('pending', 'applied') \
         OR (r.state = 'promoted' AND r.retire_after <= $1)) \
         AND NOT EXISTS (SELECT 1 FROM campaign_items ci WHERE ci.rotation_id = r.id) \
         ORDER BY r.changed_at, r.id LIMIT $2"
    );
    all(c.query(&sql, args![now, limit]).await?, rotation_row)
}

fn health_row(r: &OwnedRow) -> Result<HealthRow, StoreError> {
    Ok(HealthRow {
        credential_id: id(r, "credential_id")?,
        version: u32_of(r, "version")?,
        status: r.text("status")?,
        detail: r.text("detail")?,
        elapsed_ms: r.int("elapsed_ms")?,
        checked_at: ts(r, "checked_at")?,
    })
}

pub(crate) async fn health<C: Conn>(c: &mut C, credential: String) -> Result<Option<HealthRow>, StoreError> {
    c.query_opt("SELECT * FROM credential_health WHERE credential_id = $1", args![credential])
        .await?
        .map(|r| health_row(&r))
        .transpose()
}

/// Live credentials of kinds with a target whose last check is before `before` (or missing),
/// least recently checked first.
pub(crate) async fn stale_health<C: Conn>(
    c: &mut C,
    before: i64,
    limit: u32,
) -> Result<Vec<StaleCredential>, StoreError> {
    let sql = "SELECT c.id AS id, t.name AS tenant_name, c.name AS name, c.kind AS kind FROM credentials c \
         JOIN tenants t ON t.id = c.tenant_id LEFT JOIN credential_health h ON h.credential_id = c.id \
         WHERE c.deleted_at IS NULL AND t.state = 'active' AND c.kind <> 'generic' \
         AND (h.checked_at IS NULL OR h.checked_at < $1) \
         ORDER BY COALESCE(h.checked_at, 0), c.id LIMIT $2";
    all(c.query(sql, args![before, limit]).await?, |r| {
        Ok(StaleCredential {
            credential_id: id(r, "id")?,
            tenant: r.text("tenant_name")?,
            name: r.text("name")?,
            kind: kind(r, "kind")?,
        })
    })
}

pub(crate) async fn health_counts<C: Conn>(c: &mut C) -> Result<Vec<HealthCount>, StoreError> {
    let sql = "SELECT c.kind AS kind, h.status AS status, COUNT(*) AS n FROM credential_health h \
         JOIN credentials c ON c.id = h.credential_id WHERE c.deleted_at IS NULL \
         GROUP BY c.kind, h.status ORDER BY c.kind, h.status";
    all(c.query(sql, vec![]).await?, |r| {
        Ok(HealthCount { kind: r.text("kind")?, status: r.text("status")?, count: r.int("n")? })
    })
}

fn incident_row(r: &OwnedRow) -> Result<IncidentRow, StoreError> {
    let kinds: Option<Vec<String>> =
        r.opt_text("kinds")?.map(|k| serde_json::from_str(&k)).transpose().map_err(|_| corrupt("kinds"))?;
    let kinds = kinds
        .map(|list| list.iter().map(|k| k.parse::<CredentialKind>().map_err(|_| corrupt("kinds"))).collect())
        .transpose()?;
    Ok(IncidentRow {
        id: id(r, "id")?,
        title: r.text("title")?,
        scope: json_of(r, "scope")?,
        reasons: json_of(r, "reasons")?,
        kinds,
        since: opt_ts(r, "since")?,
        state: r.text("state")?,
        frozen: r.int("frozen")? != 0,
        affected: r.int("affected")?,
        counts: json_of(r, "counts")?,
        created_by: r.text("created_by")?,
        created_at: ts(r, "created_at")?,
        contained_at: opt_ts(r, "contained_at")?,
        closed_at: opt_ts(r, "closed_at")?,
    })
}

pub(crate) async fn incident<C: Conn>(c: &mut C, id_text: String) -> Result<Option<IncidentRow>, StoreError> {
    c.query_opt("SELECT * FROM incidents WHERE id = $1", args![id_text]).await?.map(|r| incident_row(&r)).transpose()
}

pub(crate) async fn incidents<C: Conn>(c: &mut C, limit: u32) -> Result<Vec<IncidentRow>, StoreError> {
    all(
        c.query("SELECT * FROM incidents ORDER BY created_at DESC, id DESC LIMIT $1", args![limit]).await?,
        incident_row,
    )
}

const TARGET_FIELDS: &str = target_fields!();

/// Records the fields of a binding once per credential.
const INSERT_TARGET: &str = "INSERT INTO version_targets (credential_id, binding, fields) VALUES ";
const TARGET_CONFLICT: &str = " ON CONFLICT (credential_id, binding) DO NOTHING";

fn target_args(
    credential: &rekey_types::CredentialId,
    binding: &[u8],
    fields: &std::collections::BTreeMap<String, String>,
) -> Vec<Arg> {
    args![credential.to_string(), binding.to_vec(), json(fields)]
}

/// The open incidents whose scope holds `credential`.
pub(crate) async fn open_incidents_covering<C: Conn>(
    c: &mut C,
    credential: String,
) -> Result<Vec<IncidentRow>, StoreError> {
    let open = all(
        c.query("SELECT * FROM incidents WHERE state = 'open' ORDER BY created_at, id", vec![]).await?,
        incident_row,
    )?;
    let mut out = Vec::new();
    for incident in open {
        let sql = format!("SELECT c.id {} AND c.id = $3", reach(&incident.kinds));
        let hit = c
            .query_opt(&sql, args![incident.id.to_string(), incident.created_at.as_micros(), credential.clone()])
            .await?;
        if hit.is_some() {
            out.push(incident);
        }
    }
    Ok(out)
}

/// Versions stored before target binding, a batch at a time (`bound`: those stored after it,
/// in key order after `after`, for tests and benchmarks that build a legacy store).
pub(crate) async fn legacy_versions<C: Conn>(
    c: &mut C,
    bound: bool,
    after: Option<(String, u32)>,
    limit: u32,
) -> Result<Vec<LegacyVersion>, StoreError> {
    // In key order along the primary key, which holds the rows themselves: a sequential read.
    let which = if bound { "v.binding IS NOT NULL" } else { "v.binding IS NULL" };
    // A bound version carries its own fields; a legacy one is bound to its credential's.
    let own = if bound { TARGET_FIELDS } else { "NULL AS fields" };
    let (cred, version) = after.unwrap_or_default();
    let versions = c
        .query(
            &format!(
                "SELECT v.credential_id, v.version, v.kek_version, v.wrapped_dek, v.ciphertext, {own} \
                 FROM credential_versions v WHERE (v.credential_id, v.version) > ($1, $2) AND {which} \
                 ORDER BY v.credential_id, v.version LIMIT $3"
            ),
            args![cred, version, limit],
        )
        .await?;
    let (Some(first), Some(last)) = (versions.first(), versions.last()) else { return Ok(Vec::new()) };
    // The credentials of the batch in one range read along their key, not one lookup per
    // version (a join looked each one up: most of the migration's time).
    let (first, last) = (first.text("credential_id")?, last.text("credential_id")?);
    let credentials = c
        .query(
            "SELECT id, tenant_id, name, kind, fields FROM credentials WHERE id >= $1 AND id <= $2 ORDER BY id",
            args![first, last],
        )
        .await?;
    let mut of: std::collections::HashMap<String, &OwnedRow> =
        std::collections::HashMap::with_capacity(credentials.len());
    for r in &credentials {
        of.insert(r.text("id")?, r);
    }
    let mut out = Vec::with_capacity(versions.len());
    for v in &versions {
        let id_text = v.text("credential_id")?;
        let c = of
            .get(&id_text)
            .ok_or_else(|| StoreError::Corrupt(format!("version of a missing credential {id_text}")))?;
        out.push(LegacyVersion {
            tenant_id: id(c, "tenant_id")?,
            credential_id: id(c, "id")?,
            name: c.text("name")?,
            kind: kind(c, "kind")?,
            fields: json_of(if bound { v } else { c }, "fields")?,
            version: u32_of(v, "version")?,
            kek_version: u32_of(v, "kek_version")?,
            wrapped_dek: v.blob("wrapped_dek")?,
            ciphertext: v.blob("ciphertext")?,
        });
    }
    Ok(out)
}

pub(crate) async fn integrity_pending<C: Conn>(c: &mut C, what: String) -> Result<bool, StoreError> {
    Ok(c.query_opt("SELECT what FROM integrity_pending WHERE what = $1", args![what]).await?.is_some())
}

/// `AND c.kind IN (…)` for an incident limited to some kinds (constant names, never input).
fn kinds_clause(kinds: &Option<Vec<CredentialKind>>) -> String {
    match kinds {
        Some(list) => {
            let names: Vec<String> = list.iter().map(|k| format!("'{}'", k.as_str())).collect();
            format!(" AND c.kind IN ({})", if names.is_empty() { "''".into() } else { names.join(", ") })
        }
        None => String::new(),
    }
}

/// The tenants an incident reaches, as `(tenant_id, tenant_name, region, whole, reasons)`: the
/// tenant rows outside covered regions, and every tenant of a covered region (its reasons merged
/// with its tenant row's, if it has one). `$1` is the incident id.
const REACH_TENANTS: &str =
    "SELECT it.tenant_id, it.tenant_name, it.region, it.whole, it.reasons FROM incident_tenants it \
     WHERE it.incident_id = $1 AND it.region NOT IN (SELECT r.region FROM incident_regions r WHERE r.incident_id = $1) \
     UNION ALL \
     SELECT t.id, t.name, t.region, 1, r.reasons | COALESCE(x.reasons, 0) FROM incident_regions r \
     JOIN tenants t ON t.region = r.region \
     LEFT JOIN incident_tenants x ON x.incident_id = r.incident_id AND x.tenant_id = t.id \
     WHERE r.incident_id = $1";

/// The credentials an incident reaches: `$1` is the incident id, `$2` its opening time. Joins
/// `it` (the reached tenants, [`REACH_TENANTS`]), `c` (credentials) and `i` (incident_items, if
/// any).
fn reach(kinds: &Option<Vec<CredentialKind>>) -> String {
    format!(
        "FROM ({REACH_TENANTS}) it \
         JOIN credentials c ON c.tenant_id = it.tenant_id \
         LEFT JOIN incident_items i ON i.incident_id = $1 AND i.credential_id = c.id \
         WHERE c.deleted_at IS NULL AND c.created_at <= $2 \
         AND (it.whole = 1 OR i.credential_id IS NOT NULL){}",
        kinds_clause(kinds)
    )
}

/// A page of the incident's credentials, by tenant and name, after `(tenant, name)`: tenants in
/// name order (`incident_tenants_name`), and each tenant's credentials in name order
/// (`credentials_live_name`), so no page sorts the whole scope.
pub(crate) async fn incident_items<C: Conn>(
    c: &mut C,
    incident: IncidentRow,
    after: Option<(String, String)>,
    limit: u32,
) -> Result<Vec<IncidentItemRow>, StoreError> {
    let limit = limit.max(1) as usize;
    let kinds = kinds_clause(&incident.kinds);
    let id = incident.id.to_string();
    let opened = incident.created_at.as_micros();
    let creds_sql = |after_name: bool| {
        format!(
            "SELECT c.id AS credential_id, c.name, c.kind, i.reasons AS item_reasons FROM credentials c \
             LEFT JOIN incident_items i ON i.incident_id = $1 AND i.credential_id = c.id \
             WHERE c.tenant_id = $2 AND c.deleted_at IS NULL AND c.created_at <= $3{kinds} \
             AND ($4 = 1 OR i.credential_id IS NOT NULL){} ORDER BY c.name LIMIT $6",
            if after_name { " AND c.name > $5" } else { " AND $5 = $5" }
        )
    };
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut first_after = None;
    if let Some((t, n)) = after {
        cursor = t.clone();
        first_after = Some((t, n));
    }
    let regions =
        !c.query("SELECT region FROM incident_regions WHERE incident_id = $1", args![id.clone()]).await?.is_empty();
    // The tenant the previous page ended in: its remaining credentials first.
    let mut tenants: Vec<ReachTenant> = Vec::new();
    if let Some((t, _)) = &first_after {
        tenants = reach_tenants(c, &id, regions, "=", t).await?;
    }
    loop {
        for tenant in std::mem::take(&mut tenants) {
            let after_name = first_after.as_ref().filter(|(t, _)| *t == tenant.name).map(|(_, n)| n.clone());
            let remaining = (limit - out.len()) as i64;
            let rows = c
                .query(
                    &creds_sql(after_name.is_some()),
                    args![id.clone(), tenant.id, opened, tenant.whole, after_name.unwrap_or_default(), remaining],
                )
                .await?;
            for r in rows {
                let bits = tenant.reasons | r.opt_int("item_reasons")?.unwrap_or(0);
                out.push(IncidentItemRow {
                    credential_id: id_of(&r, "credential_id")?,
                    tenant: tenant.name.clone(),
                    region: tenant.region.clone(),
                    name: r.text("name")?,
                    kind: kind(&r, "kind")?,
                    reasons: bits as u64,
                });
            }
            if out.len() >= limit {
                return Ok(out);
            }
        }
        let next = reach_tenants(c, &id, regions, ">", &cursor).await?;
        match next.last() {
            None => return Ok(out),
            Some(last) => cursor = last.name.clone(),
        }
        tenants = next;
    }
}

/// A tenant an incident reaches, as [`REACH_TENANTS`] gives it.
struct ReachTenant {
    id: String,
    name: String,
    region: String,
    whole: i64,
    reasons: i64,
}

/// Up to 256 tenants an incident reaches whose name compares (`op`, `=` or `>`) with `name`, in
/// name order: the tenant rows (`incident_tenants_name`) and, if the incident covers `regions`,
/// the tenants of those regions (the unique index on tenant names), merged.
async fn reach_tenants<C: Conn>(
    c: &mut C,
    incident: &str,
    regions: bool,
    op: &str,
    name: &str,
) -> Result<Vec<ReachTenant>, StoreError> {
    const PAGE: usize = 256;
    let mut sqls = vec![format!(
        "SELECT it.tenant_id, it.tenant_name, it.region, it.whole, it.reasons FROM incident_tenants it \
         WHERE it.incident_id = $1 AND it.tenant_name {op} $2 \
         AND it.region NOT IN (SELECT r.region FROM incident_regions r WHERE r.incident_id = $1) \
         ORDER BY it.tenant_name LIMIT {PAGE}"
    )];
    if regions {
        sqls.push(format!(
            "SELECT t.id AS tenant_id, t.name AS tenant_name, t.region, 1 AS whole, \
             r.reasons | COALESCE(x.reasons, 0) AS reasons FROM tenants t \
             JOIN incident_regions r ON r.incident_id = $1 AND r.region = t.region \
             LEFT JOIN incident_tenants x ON x.incident_id = $1 AND x.tenant_id = t.id \
             WHERE t.name {op} $2 ORDER BY t.name LIMIT {PAGE}"
        ));
    }
    let mut out = Vec::new();
    for sql in sqls {
        for r in c.query(&sql, args![incident.to_owned(), name.to_owned()]).await? {
            out.push(ReachTenant {
                id: r.text("tenant_id")?,
                name: r.text("tenant_name")?,
                region: r.text("region")?,
                whole: r.int("whole")?,
                reasons: r.int("reasons")?,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.truncate(PAGE);
    Ok(out)
}

fn id_of<T: FromStr>(row: &OwnedRow, col: &str) -> Result<T, StoreError> {
    id(row, col)
}

/// The condition on audit events `a` whose `key` column (`resource` or `principal`) is in `set`
/// (a list or a subquery, which may be used twice) and whose action is `action`, if given.
/// PostgreSQL reads the log's own indexes. SQLite reads its index file (`ix`, see
/// `audit_index`) and scans the events past that file's watermark, which the log's key keeps to
/// the tail.
fn audit_where(backend: Backend, key: &str, set: &str, action: Option<&str>) -> String {
    let act = |t: &str| action.map(|a| format!(" AND {t}.action = '{a}'")).unwrap_or_default();
    match backend {
        Backend::Postgres => format!("a.{key} IN ({set}){}", act("a")),
        Backend::Sqlite => format!(
            "a.seq IN (SELECT x.seq FROM ix.by_{key} x WHERE x.{key} IN ({set}){} \
             UNION ALL SELECT t.seq FROM audit_events t \
             WHERE t.seq > (SELECT w.seq FROM ix.indexed w WHERE w.id = 1) AND t.{key} IN ({set}){})",
            act("x"),
            act("t")
        ),
    }
}

const REVEAL: Option<&str> = Some("cred.reveal");

/// Successful reveals of an incident's credentials at or after `since`: (events, credentials).
pub(crate) async fn incident_reveals<C: Conn>(
    c: &mut C,
    incident: IncidentRow,
    since: i64,
) -> Result<(i64, i64), StoreError> {
    let sql = format!(
        "WITH r (resource) AS (SELECT it.tenant_name || '/' || c.name {}) \
         SELECT COUNT(*) AS n, COUNT(DISTINCT a.resource) AS d FROM audit_events a \
         WHERE {} AND a.outcome = 'success' AND a.time >= $3",
        reach(&incident.kinds),
        audit_where(c.backend(), "resource", "SELECT r.resource FROM r", REVEAL)
    );
    let row = c.query_opt(&sql, args![incident.id.to_string(), incident.created_at.as_micros(), since]).await?;
    match row {
        Some(r) => Ok((r.int("n")?, r.int("d")?)),
        None => Ok((0, 0)),
    }
}

/// Successful reveals at or after `since` of each of `resources` (`tenant/name`).
pub(crate) async fn reveal_counts<C: Conn>(
    c: &mut C,
    resources: Vec<String>,
    since: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::new();
    for chunk in resources.chunks(200) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        // `$1` first: SQLite numbers parameters in order of first use.
        let sql = format!(
            "SELECT a.resource, COUNT(*) AS n FROM audit_events a WHERE a.time >= $1 AND {} \
             AND a.outcome = 'success' GROUP BY a.resource",
            audit_where(c.backend(), "resource", &marks.join(", "), REVEAL)
        );
        let mut a: Vec<Arg> = vec![since.into()];
        a.extend(chunk.iter().map(|r| Arg::from(r.clone())));
        for r in c.query(&sql, a).await? {
            out.push((r.text("resource")?, r.int("n")?));
        }
    }
    Ok(out)
}

/// The resources (`tenant/name`) a principal revealed successfully, with how many times.
pub(crate) async fn reveals_by<C: Conn>(c: &mut C, principal: String) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = format!(
        "SELECT a.resource, COUNT(*) AS n FROM audit_events a WHERE {} AND a.outcome = 'success' GROUP BY a.resource",
        audit_where(c.backend(), "principal", "$1", REVEAL)
    );
    all(c.query(&sql, args![principal]).await?, |r| Ok((r.text("resource")?, r.int("n")?)))
}

/// The audit events about one resource, oldest first (an incident's timeline).
pub(crate) async fn audit_of<C: Conn>(c: &mut C, resource: String, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
    let sql = format!(
        "SELECT a.* FROM audit_events a WHERE {} ORDER BY a.seq LIMIT $2",
        audit_where(c.backend(), "resource", "$1", None)
    );
    all(c.query(&sql, args![resource, limit]).await?, audit_row)
}

/// Events past the SQLite audit index's watermark (see `audit_where`).
pub(crate) async fn audit_index_lag<C: Conn>(c: &mut C) -> Result<i64, StoreError> {
    let row = c
        .query_opt(
            "SELECT (SELECT seq FROM audit_head WHERE id = 1) - (SELECT seq FROM ix.indexed WHERE id = 1) AS lag",
            vec![],
        )
        .await?;
    row.map_or(Ok(0), |r| r.int("lag"))
}

/// Adds what one scope query reaches to an incident, merging reason bits.
async fn add_scope<C: Conn>(c: &mut C, incident: &str, q: &ScopeQuery) -> Result<(), StoreError> {
    const WHOLE: &str = "INSERT INTO incident_tenants (incident_id, tenant_id, tenant_name, region, whole, reasons) \
         SELECT $1, t.id, t.name, t.region, 1, $2 FROM tenants t";
    const WHOLE_MERGE: &str = "ON CONFLICT (incident_id, tenant_id) DO UPDATE \
         SET whole = 1, reasons = incident_tenants.reasons | excluded.reasons";
    let bit = |b: u8| -> i64 { 1i64 << b };
    let whole = |cond: &str| format!("{WHOLE} {cond} {WHOLE_MERGE}");
    // Single credentials: the items, and their tenants (not whole).
    let items = |cond: &str| {
        (
            format!(
                "INSERT INTO incident_items (incident_id, credential_id, reasons) SELECT $1, c.id, $2 FROM credentials c \
                 WHERE c.deleted_at IS NULL AND {cond} ON CONFLICT (incident_id, credential_id) DO UPDATE \
                 SET reasons = incident_items.reasons | excluded.reasons"
            ),
            format!(
                "INSERT INTO incident_tenants (incident_id, tenant_id, tenant_name, region, whole, reasons) \
                 SELECT DISTINCT $1, t.id, t.name, t.region, 0, 0 FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
                 WHERE c.deleted_at IS NULL AND {} ON CONFLICT (incident_id, tenant_id) DO NOTHING",
                cond.replace("$3", "$2").replace("$4", "$3")
            ),
        )
    };
    let id = || incident.to_owned();
    match q {
        ScopeQuery::AllTenants { bit: b } => {
            // Every tenant is every region's tenants: one row per region, not per tenant. (A
            // region that appears later brings only tenants, and credentials, created after the
            // opening.) SQLite reads `ON CONFLICT` after a bare `FROM t` as a join: give it a WHERE.
            c.exec(
                "INSERT INTO incident_regions (incident_id, region, reasons) \
                 SELECT DISTINCT $1, t.region, $2 FROM tenants t WHERE 1 = 1 \
                 ON CONFLICT (incident_id, region) DO UPDATE SET reasons = incident_regions.reasons | excluded.reasons",
                args![id(), bit(*b)],
            )
            .await?;
        }
        ScopeQuery::Region { region, bit: b } => {
            c.exec(
                "INSERT INTO incident_regions (incident_id, region, reasons) VALUES ($1, $2, $3) \
                 ON CONFLICT (incident_id, region) DO UPDATE SET reasons = incident_regions.reasons | excluded.reasons",
                args![id(), region.clone(), bit(*b)],
            )
            .await?;
        }
        ScopeQuery::Tenants { ids, bit: b } => {
            for tenant in ids {
                c.exec(&whole("WHERE t.id = $3"), args![id(), bit(*b), tenant.to_string()]).await?;
            }
        }
        ScopeQuery::RootKey { version, bit: b } => {
            let cond = "WHERE EXISTS (SELECT 1 FROM tenant_keks k WHERE k.tenant_id = t.id AND k.root_version = $3)";
            c.exec(&whole(cond), args![id(), bit(*b), *version]).await?;
        }
        ScopeQuery::Credentials { ids, bit: b } => {
            let (ins, ten) = items("c.id = $3");
            for cred in ids {
                c.exec(&ins, args![id(), bit(*b), cred.to_string()]).await?;
                c.exec(&ten, args![id(), cred.to_string()]).await?;
            }
        }
        ScopeQuery::TenantKek { tenant, version, bit: b } => {
            let (ins, ten) = items(
                "c.tenant_id = $3 AND EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id \
                 AND v.kek_version = $4)",
            );
            c.exec(&ins, args![id(), bit(*b), tenant.to_string(), *version]).await?;
            c.exec(&ten, args![id(), tenant.to_string(), *version]).await?;
        }
        ScopeQuery::Certificate { thumbprint, bit: b } => {
            let (ins, ten) = items("c.id IN (SELECT credential_id FROM certificates WHERE sha1 = $3 OR sha256 = $3)");
            c.exec(&ins, args![id(), bit(*b), thumbprint.clone()]).await?;
            c.exec(&ten, args![id(), thumbprint.clone()]).await?;
        }
    }
    Ok(())
}

/// Counts what an incident reaches by tenant, region and kind. Covered regions come from
/// `tenant_counts` (less the credentials created after the incident opened, found through
/// `credentials_created`), so their credentials are not visited; whole tenants of other regions
/// from the `credentials_reach` index; single credentials through their items.
async fn count_reach<C: Conn>(c: &mut C, incident: &IncidentRow) -> Result<(i64, IncidentCounts), StoreError> {
    const TOP: usize = 50;
    let kinds = kinds_clause(&incident.kinds);
    let id = incident.id.to_string();
    let opened = incident.created_at.as_micros();
    let covered = "(SELECT r.region FROM incident_regions r WHERE r.incident_id = $1)";
    let mut counts = IncidentCounts::default();
    let mut tenants: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut total = 0;

    // Covered regions. `tenant_counts` is aliased `c` for the kinds clause.
    let live_now = format!(
        "SELECT c.region AS region, c.kind AS kind, CAST(SUM(c.n) AS BIGINT) AS n FROM tenant_counts c \
         WHERE c.region IN {covered}{kinds} GROUP BY c.region, c.kind"
    );
    // `CROSS JOIN` keeps SQLite on `credentials_created` (few rows) rather than walking the
    // regions' tenants; PostgreSQL plans it as a plain join.
    let late = format!(
        "SELECT t.name AS tname, t.region AS region, c.kind AS kind, COUNT(*) AS n FROM credentials c \
         CROSS JOIN tenants t WHERE t.id = c.tenant_id AND t.region IN {covered} AND c.deleted_at IS NULL \
         AND c.created_at > $2{kinds} GROUP BY t.id, t.name, t.region, c.kind"
    );
    let mut late_by_tenant: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in c.query(&late, args![id.clone(), opened]).await? {
        let n = r.int("n")?;
        total -= n;
        *counts.by_region.entry(r.text("region")?).or_default() -= n;
        *counts.by_kind.entry(r.text("kind")?).or_default() -= n;
        *late_by_tenant.entry(r.text("tname")?).or_default() += n;
    }
    for r in c.query(&live_now, args![id.clone()]).await? {
        let n = r.int("n")?;
        total += n;
        *counts.by_region.entry(r.text("region")?).or_default() += n;
        *counts.by_kind.entry(r.text("kind")?).or_default() += n;
    }
    // The largest tenants of covered regions: enough of them that the late credentials cannot
    // change which are the largest.
    let top = format!(
        "SELECT c.tenant_name AS tname, CAST(SUM(c.n) AS BIGINT) AS n FROM tenant_counts c WHERE c.region IN {covered}{kinds} \
         GROUP BY c.tenant_id, c.tenant_name ORDER BY SUM(c.n) DESC, c.tenant_name LIMIT {}",
        TOP + late_by_tenant.len()
    );
    for r in c.query(&top, args![id.clone()]).await? {
        let name = r.text("tname")?;
        let n = r.int("n")? - late_by_tenant.get(&name).copied().unwrap_or(0);
        tenants.insert(name, n);
    }

    // Tenant rows outside covered regions, and single credentials.
    let whole = format!(
        "SELECT it.tenant_name AS tname, it.region AS region, c.kind AS kind, COUNT(*) AS n \
         FROM incident_tenants it JOIN credentials c ON c.tenant_id = it.tenant_id \
         WHERE it.incident_id = $1 AND it.whole = 1 AND it.region NOT IN {covered} \
         AND c.deleted_at IS NULL AND c.created_at <= $2{kinds} \
         GROUP BY it.tenant_id, it.tenant_name, it.region, c.kind"
    );
    let single = format!(
        "SELECT it.tenant_name AS tname, it.region AS region, c.kind AS kind, COUNT(*) AS n \
         FROM incident_items i JOIN credentials c ON c.id = i.credential_id \
         JOIN incident_tenants it ON it.incident_id = i.incident_id AND it.tenant_id = c.tenant_id \
         WHERE i.incident_id = $1 AND it.whole = 0 AND c.deleted_at IS NULL AND c.created_at <= $2{kinds} \
         GROUP BY it.tenant_id, it.tenant_name, it.region, c.kind"
    );
    for sql in [whole, single] {
        for r in c.query(&sql, args![id.clone(), opened]).await? {
            let n = r.int("n")?;
            total += n;
            *counts.by_region.entry(r.text("region")?).or_default() += n;
            *counts.by_kind.entry(r.text("kind")?).or_default() += n;
            *tenants.entry(r.text("tname")?).or_default() += n;
        }
    }
    counts.by_region.retain(|_, n| *n != 0);
    counts.by_kind.retain(|_, n| *n != 0);
    tenants.retain(|_, n| *n != 0);
    let mut by_tenant: Vec<(String, i64)> = tenants.into_iter().collect();
    by_tenant.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_tenant.truncate(TOP);
    counts.by_tenant = by_tenant;
    Ok((total, counts))
}

// ---- writes ---------------------------------------------------------------------------------

/// `credential_versions`, for a lookup of one credential's versions by stage. Without
/// statistics SQLite prefers the primary key's `credential_id` prefix, which walks every version
/// the credential ever had (a put cost 100 µs in these lookups at a few hundred versions);
/// `INDEXED BY` (SQLite only) keeps it on `credential_versions_live`, which holds the current,
/// previous and pending versions only. PostgreSQL plans from its statistics.
fn live_versions(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "credential_versions INDEXED BY credential_versions_live",
        Backend::Postgres => "credential_versions",
    }
}

fn duplicate_as(e: StoreError, as_: StoreError) -> StoreError {
    match e {
        StoreError::Duplicate => as_,
        other => other,
    }
}

/// Stamps one row, found by id, with a time (`$1` the time, `$2` the id); "not found" if no
/// row matched (absent, or already stamped).
async fn update_one<C: Conn>(
    c: &mut C,
    sql: &str,
    at: i64,
    entity: &'static str,
    id: String,
) -> Result<(), StoreError> {
    if c.exec(sql, args![at, id.clone()]).await? == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { entity, id })
    }
}

/// Applies one operation; an `All` applies its parts in order. Only a nested `All` goes through a
/// boxed call: the usual one level (a put and the operations that go with it) allocates nothing
/// (boxing each part cost a put about a tenth of its rate: the boxed future is large).
async fn apply_op<C: Conn>(c: &mut C, op: &WriteOp) -> Result<(), StoreError> {
    let WriteOp::All(ops) = op else { return apply_one(c, op).await };
    let mut rest = &ops[..];
    while let Some(op) = rest.first() {
        // On PostgreSQL, a run of new tenants and new credentials (an import) goes in a few
        // multi-row statements instead of three or four round trips each.
        let run = if c.backend() == Backend::Postgres { rest.iter().take_while(|op| bulk(op)).count() } else { 0 };
        if run > 1 {
            apply_bulk(c, &rest[..run]).await?;
            rest = &rest[run..];
        } else {
            match op {
                WriteOp::All(_) => Box::pin(apply_op(c, op)).await?,
                other => apply_one(c, other).await?,
            }
            rest = &rest[1..];
        }
    }
    Ok(())
}

/// Applies one operation other than `All`.
async fn apply_one<C: Conn>(c: &mut C, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::CreateTenant { tenant, kek } => {
            let exists = || StoreError::AlreadyExists { entity: "tenant", id: tenant.name.clone() };
            if c.query_opt("SELECT 1 AS one FROM tenants WHERE name = $1", args![&tenant.name]).await?.is_some() {
                return Err(exists());
            }
            insert_rows(c, INSERT_TENANT, "", 6, vec![tenant_args(tenant)])
                .await
                .map_err(|e| duplicate_as(e, exists()))?;
            insert_rows(c, INSERT_KEK, "", 6, vec![kek_args(kek)]).await
        }
        WriteOp::PutVersion { credential, version, create } => {
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
            if kek_state.as_deref() != Some(key_state::ACTIVE) {
                return Err(StoreError::Conflict);
            }
            let pending = version.stage == "pending";
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
                    (
                        "('pending', 'previous', 'current')",
                        "CASE WHEN stage = 'current' THEN 'previous' ELSE 'retired' END",
                    )
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
                insert_rows(
                    c,
                    INSERT_TARGET,
                    TARGET_CONFLICT,
                    3,
                    vec![target_args(&version.credential_id, binding, fields)],
                )
                .await?;
            }
            Ok(())
        }
        WriteOp::LiftFreeze { credential, fresh: unless } => {
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
        WriteOp::ItemsRotated { credential, version, fingerprint, by, at } => {
            follow_put(c, credential.to_string(), *version, fingerprint.clone(), by.clone(), *at).await
        }
        WriteOp::BindVersions(updates) => {
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
        WriteOp::VersionsBound => {
            c.exec("DELETE FROM integrity_pending WHERE what = 'versions'", vec![]).await.map(drop)
        }
        WriteOp::UnbindVersions(rows) => {
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
        WriteOp::SealTokens(macs) => {
            for (id, mac) in macs {
                c.exec("UPDATE tokens SET mac = $1 WHERE id = $2 AND mac IS NULL", args![mac.clone(), id.to_string()])
                    .await?;
            }
            c.exec("DELETE FROM integrity_pending WHERE what = 'tokens'", vec![]).await.map(drop)
        }
        WriteOp::DeleteCredential { id, at } => {
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
        WriteOp::CreateToken(t) => {
            c.exec(
                "INSERT INTO tokens (id, hash, role, tenant_id, bound, cidrs, description, created_by, created_at, expires_at, revoked_at, mac) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11)",
                args![
                    t.id.to_string(),
                    t.hash.clone(),
                    t.role.as_str(),
                    t.tenant_id.map(|id| id.to_string()),
                    json(&t.bound),
                    json(&t.cidrs),
                    &t.description,
                    &t.created_by,
                    t.created_at.as_micros(),
                    t.expires_at.map(Timestamp::as_micros),
                    t.mac.clone().unwrap_or_default()
                ],
            )
            .await?;
            Ok(())
        }
        WriteOp::RevokeToken { id, at, mac } => {
            let n = c
                .exec(
                    "UPDATE tokens SET revoked_at = $1, mac = $2 WHERE id = $3 AND revoked_at IS NULL",
                    args![at.as_micros(), mac.clone(), id.to_string()],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::NotFound { entity: "active token", id: id.to_string() });
            }
            Ok(())
        }
        WriteOp::CreateKek(kek) => {
            let tenant = kek.tenant_id.to_string();
            c.exec(
                "UPDATE tenant_keks SET state = 'retired', changed_at = $1 WHERE tenant_id = $2 AND state = 'active'",
                args![kek.created_at.as_micros(), tenant.clone()],
            )
            .await?;
            c.exec(
                "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at, changed_at) \
                 VALUES ($1, $2, 'active', $3, $4, $5, $5)",
                args![tenant, kek.version, kek.wrapped.clone(), kek.root_version, kek.created_at.as_micros()],
            )
            .await
            .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
            Ok(())
        }
        WriteOp::SetKekState { tenant, version, state, at } => {
            let (sql, a) = if *state == key_state::DESTROYED {
                (
                    "UPDATE tenant_keks SET state = $1, changed_at = $2, wrapped = $3 \
                     WHERE tenant_id = $4 AND version = $5 AND state <> 'destroyed'",
                    args![*state, at.as_micros(), Vec::<u8>::new(), tenant.to_string(), *version],
                )
            } else {
                (
                    "UPDATE tenant_keks SET state = $1, changed_at = $2 \
                     WHERE tenant_id = $3 AND version = $4 AND state <> 'destroyed'",
                    args![*state, at.as_micros(), tenant.to_string(), *version],
                )
            };
            let n = c.exec(sql, a).await?;
            if n != 1 {
                return Err(StoreError::NotFound { entity: "key version", id: format!("{tenant}@{version}") });
            }
            Ok(())
        }
        WriteOp::ShredTenant { tenant, at } => {
            let tenant = tenant.to_string();
            c.exec(
                "UPDATE tenant_keks SET state = 'destroyed', changed_at = $1, wrapped = $2 WHERE tenant_id = $3",
                args![at.as_micros(), Vec::<u8>::new(), tenant.clone()],
            )
            .await?;
            if c.exec(
                "UPDATE tenants SET state = 'shredded' WHERE id = $1 AND state <> 'shredded'",
                args![tenant.clone()],
            )
            .await?
                != 1
            {
                return Err(StoreError::NotFound { entity: "tenant", id: tenant });
            }
            Ok(())
        }
        WriteOp::RewrapDeks { updates, job } => {
            let mut moved = 0i64;
            for u in updates {
                moved += c
                    .exec(
                        "UPDATE credential_versions SET kek_version = $1, wrapped_dek = $2 \
                         WHERE credential_id = $3 AND version = $4 AND kek_version = $5",
                        args![u.to_kek, u.wrapped_dek.clone(), u.credential_id.to_string(), u.version, u.from_kek],
                    )
                    .await? as i64;
            }
            if let Some(job) = job {
                c.exec("UPDATE key_jobs SET done = done + $1 WHERE id = $2", args![moved, job.to_string()]).await?;
            }
            Ok(())
        }
        WriteOp::RewrapRoot { updates, job } => {
            let mut moved = 0i64;
            for u in updates {
                moved += match u.tenant_id {
                    Some(t) => {
                        c.exec(
                            "UPDATE tenant_keks SET root_version = $1, wrapped = $2 \
                             WHERE tenant_id = $3 AND version = $4 AND root_version = $5 AND state <> 'destroyed'",
                            args![u.to_root, u.wrapped.clone(), t.to_string(), u.version, u.from_root],
                        )
                        .await? as i64
                    }
                    None => {
                        c.exec(
                            "UPDATE system_keys SET wrapped = $1 WHERE purpose = $2 AND version = $3",
                            args![u.wrapped.clone(), &u.purpose, u.version],
                        )
                        .await? as i64
                    }
                };
            }
            if let Some(job) = job {
                c.exec("UPDATE key_jobs SET done = done + $1 WHERE id = $2", args![moved, job.to_string()]).await?;
            }
            Ok(())
        }
        WriteOp::InsertRootKey(r) => {
            c.exec(
                "INSERT INTO root_keys (version, state, created_at, changed_at) VALUES ($1, $2, $3, $4)",
                args![r.version, &r.state, r.created_at.as_micros(), r.changed_at.as_micros()],
            )
            .await
            .map_err(|e| {
                duplicate_as(e, StoreError::AlreadyExists { entity: "root key", id: format!("root@{}", r.version) })
            })?;
            Ok(())
        }
        WriteOp::SetRootKeyState { version, state, at } => {
            let n = c
                .exec(
                    "UPDATE root_keys SET state = $1, changed_at = $2 WHERE version = $3 AND state <> 'destroyed'",
                    args![*state, at.as_micros(), *version],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::NotFound { entity: "key version", id: format!("root@{version}") });
            }
            Ok(())
        }
        WriteOp::CreateJob(j) => {
            c.exec(
                "INSERT INTO key_jobs (id, scope, tenant_id, reason, state, total, done, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                args![
                    j.id.to_string(),
                    &j.scope,
                    j.tenant_id.map(|t| t.to_string()),
                    &j.reason,
                    &j.state,
                    j.total,
                    j.done,
                    &j.created_by,
                    j.created_at.as_micros()
                ],
            )
            .await?;
            Ok(())
        }
        WriteOp::FinishJob { id, state, error, at } => {
            let n = c
                .exec(
                    "UPDATE key_jobs SET state = $1, error = $2, finished_at = $3 WHERE id = $4 AND state = 'running'",
                    args![*state, error.clone(), at.as_micros(), id.to_string()],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::NotFound { entity: "running job", id: id.to_string() });
            }
            Ok(())
        }
        WriteOp::CommitKeyring { set_id } => {
            let pending = c
                .query_opt("SELECT set_id FROM seal_keyring WHERE slot = 'pending'", vec![])
                .await?
                .map(|r| r.blob("set_id"))
                .transpose()?;
            if pending.as_deref() != Some(set_id.as_slice()) {
                return Err(StoreError::NotFound { entity: "pending root rotation", id: hex_of(set_id) });
            }
            c.exec("DELETE FROM seal_keyring WHERE slot = 'active'", vec![]).await?;
            c.exec("UPDATE seal_keyring SET slot = 'active' WHERE slot = 'pending'", vec![]).await?;
            Ok(())
        }
        WriteOp::ReplaceKeyring(row) => {
            let n = c
                .exec(
                    "UPDATE seal_keyring SET blob = $1 WHERE slot = 'active' AND set_id = $2",
                    args![row.blob.clone(), row.set_id.clone()],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        }
        WriteOp::PromotePending { credential, version, fields, at } => {
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
        WriteOp::InsertRotation(r) => c
            .exec(
                "INSERT INTO rotations (id, credential_id, tenant_id, from_version, to_version, state, created_by, \
                 created_at, changed_at, retire_after, error, target_ref) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                args![
                    r.id.to_string(),
                    r.credential_id.to_string(),
                    r.tenant_id.to_string(),
                    r.from_version,
                    r.to_version,
                    r.state.clone(),
                    r.created_by.clone(),
                    r.created_at.as_micros(),
                    r.changed_at.as_micros(),
                    r.retire_after.map(Timestamp::as_micros),
                    r.error.clone(),
                    r.target_ref.clone()
                ],
            )
            .await
            .map(drop)
            .map_err(|e| {
                duplicate_as(
                    e,
                    StoreError::AlreadyExists { entity: "unfinished rotation of", id: r.credential_id.to_string() },
                )
            }),
        WriteOp::SetRotation { id, from, state, error, retire_after, target_ref, at } => {
            // `from` holds constant state names only, never input.
            let states: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
            let sql = format!(
                "UPDATE rotations SET state = $1, error = $2, retire_after = $3, changed_at = $4, \
                 target_ref = COALESCE($5, target_ref) WHERE id = $6 AND state IN ({})",
                states.join(", ")
            );
            let n = c
                .exec(
                    &sql,
                    args![
                        *state,
                        error.clone(),
                        retire_after.map(Timestamp::as_micros),
                        at.as_micros(),
                        target_ref.clone(),
                        id.to_string()
                    ],
                )
                .await?;
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            follow_rotation(c, *id, state, error.clone(), *at).await
        }
        WriteOp::SetVersionStage { credential, version, from, stage } => c
            .exec(
                "UPDATE credential_versions SET stage = $1 WHERE credential_id = $2 AND version = $3 AND stage = $4",
                args![*stage, credential.to_string(), *version, *from],
            )
            .await
            .map(drop),
        WriteOp::RecordHealth(h) => c
            .exec(
                "INSERT INTO credential_health (credential_id, version, status, detail, elapsed_ms, checked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO UPDATE SET \
                 version = excluded.version, status = excluded.status, detail = excluded.detail, \
                 elapsed_ms = excluded.elapsed_ms, checked_at = excluded.checked_at",
                args![
                    h.credential_id.to_string(),
                    h.version,
                    h.status.clone(),
                    h.detail.clone(),
                    h.elapsed_ms,
                    h.checked_at.as_micros()
                ],
            )
            .await
            .map(drop),
        WriteOp::OpenIncident { incident, scope } => {
            let id = incident.id.to_string();
            let kinds: Option<Vec<&str>> = incident.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect());
            c.exec(
                "INSERT INTO incidents (id, title, scope, reasons, kinds, since, state, frozen, affected, counts, \
                 created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', 0, 0, '{}', $7, $8)",
                args![
                    id.clone(),
                    incident.title.clone(),
                    json(&incident.scope),
                    json(&incident.reasons),
                    kinds.map(|k| json(&k)),
                    incident.since.map(Timestamp::as_micros),
                    incident.created_by.clone(),
                    incident.created_at.as_micros()
                ],
            )
            .await?;
            for q in scope {
                add_scope(c, &id, q).await?;
            }
            // A tenant of a covered region that another selector reached as well: whole, with
            // the region's reasons too (readers take its row, not the region's, for its reasons).
            c.exec(
                "UPDATE incident_tenants SET whole = 1, reasons = reasons | (SELECT r.reasons FROM incident_regions r \
                 WHERE r.incident_id = incident_tenants.incident_id AND r.region = incident_tenants.region) \
                 WHERE incident_id = $1 AND region IN (SELECT region FROM incident_regions WHERE incident_id = $1)",
                args![id.clone()],
            )
            .await?;
            let (total, counts) = count_reach(c, incident).await?;
            c.exec("UPDATE incidents SET affected = $1, counts = $2 WHERE id = $3", args![total, json(&counts), id])
                .await
                .map(drop)
        }
        WriteOp::ContainIncident { id, freeze, at } => {
            let row = incident(c, id.to_string()).await?.filter(|r| r.state == "open");
            let Some(row) = row else {
                return Err(StoreError::NotFound { entity: "open incident", id: id.to_string() });
            };
            if *freeze {
                let sql =
                    format!("UPDATE credentials SET frozen_by = $1 WHERE id IN (SELECT c.id {})", reach(&row.kinds));
                c.exec(&sql, args![id.to_string(), row.created_at.as_micros()]).await?;
            }
            c.exec(
                "UPDATE incidents SET contained_at = $1, frozen = CASE WHEN $2 = 1 THEN 1 ELSE frozen END WHERE id = $3",
                args![at.as_micros(), i64::from(*freeze), id.to_string()],
            )
            .await
            .map(drop)
        }
        WriteOp::CloseIncident { id, at } => {
            update_one(
                c,
                "UPDATE incidents SET state = 'closed', closed_at = $1 WHERE id = $2 AND state = 'open'",
                at.as_micros(),
                "open incident",
                id.to_string(),
            )
            .await
        }
        WriteOp::InsertCertificate(ce) => {
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
                    &ce.state,
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
        WriteOp::RevokeCertificate { sha256, at } => {
            let sql =
                "UPDATE certificates SET state = 'revoked', revoked_at = $1 WHERE sha256 = $2 AND state <> 'revoked'";
            update_one(c, sql, at.as_micros(), "active certificate", sha256.clone()).await
        }
        WriteOp::StartCampaign(campaign) => start_campaign(c, campaign).await,
        WriteOp::StartItemRotation { campaign, credential, rotation, by, at } => {
            start_item_rotation(c, *campaign, *credential, *rotation, by.clone(), *at).await
        }
        WriteOp::SetItem(update) => set_item(c, update).await,
        WriteOp::FinishCampaign { id, at } => finish_campaign(c, id.to_string(), *at).await,
        WriteOp::SetReminded { id } => {
            c.exec("UPDATE campaigns SET reminded = 1 WHERE id = $1", args![id.to_string()]).await.map(drop)
        }
        WriteOp::QueueNotices(notices) => queue_notices(c, notices).await,
        WriteOp::SetNotice(update) => set_notice(c, update).await,
        WriteOp::InsertLink(link) => insert_link(c, link).await,
        WriteOp::UseLink { id, at } => use_link(c, *id, *at).await,
        WriteOp::RevokeLink { id, at } => revoke_link(c, *id, *at).await,
        WriteOp::All(_) => Box::pin(apply_op(c, op)).await,
    }
}

const AUDIT_COLUMNS: &str = "INSERT INTO audit_events (seq, time, principal, action, resource, outcome, source, request_id, detail, mac) VALUES ";

fn audit_args(r: &AuditRecord, mac: &[u8; 32]) -> Vec<Arg> {
    args![
        r.seq,
        r.time.as_micros(),
        &r.principal,
        &r.action,
        &r.resource,
        r.outcome.as_str(),
        &r.source,
        &r.request_id,
        &r.detail,
        mac.to_vec()
    ]
}

async fn append_audit<C: Conn>(c: &mut C, records: &[(AuditRecord, [u8; 32])]) -> Result<(), StoreError> {
    match c.backend() {
        // In-process SQLite: one cached single-row statement is fastest (no statement per batch
        // size to parse, no round trips to save).
        Backend::Sqlite => {
            let sql = format!("{AUDIT_COLUMNS}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
            for (r, mac) in records {
                c.exec(&sql, audit_args(r, mac)).await?;
            }
        }
        // PostgreSQL: few round trips, many rows each.
        Backend::Postgres => {
            let rows = records.iter().map(|(r, mac)| audit_args(r, mac)).collect();
            insert_rows(c, AUDIT_COLUMNS, "", 10, rows).await?;
        }
    }
    Ok(())
}

/// Rows per multi-row statement on PostgreSQL, which takes at most 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// Runs `{head}(…), (…), …{tail}` over `rows` of `width` arguments each, in statements of at
/// most [`ROWS_PER_STATEMENT`] rows. `head` ends where the first row's parenthesis opens.
async fn insert_rows<C: Conn>(
    c: &mut C,
    head: &str,
    tail: &str,
    width: usize,
    rows: Vec<Vec<Arg>>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = String::with_capacity(head.len() + tail.len() + ROWS_PER_STATEMENT * width * 6);
        sql.push_str(head);
        let mut a = Vec::with_capacity(ROWS_PER_STATEMENT * width);
        for (i, row) in rows.by_ref().take(ROWS_PER_STATEMENT).enumerate() {
            debug_assert_eq!(row.len(), width);
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for j in 1..=width {
                if j > 1 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", i * width + j);
            }
            sql.push(')');
            a.extend(row);
        }
        sql.push_str(tail);
        c.exec(&sql, a).await?;
    }
    Ok(())
}

const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, region, contacts, state, created_at) VALUES ";
const INSERT_KEK: &str =
    "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at) VALUES ";

fn tenant_args(tenant: &TenantRow) -> Vec<Arg> {
    args![
        tenant.id.to_string(),
        &tenant.name,
        &tenant.region,
        json(&tenant.contacts),
        &tenant.state,
        tenant.created_at.as_micros()
    ]
}

const INSERT_CREDENTIAL: &str = "INSERT INTO credentials (id, tenant_id, name, kind, fields, labels, \
     current_version, latest_version, created_at, updated_at) VALUES ";
const INSERT_VERSION: &str = "INSERT INTO credential_versions (credential_id, version, stage, kek_version, \
     wrapped_dek, ciphertext, created_by, created_at, binding, fingerprint) VALUES ";

/// A new credential, whose first version (current and latest) is `version`.
fn new_credential_args(credential: &CredentialRow, version: &VersionRow) -> Vec<Arg> {
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

fn version_args(version: &VersionRow, stage: &str) -> Vec<Arg> {
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

fn kek_args(kek: &KekRow) -> Vec<Arg> {
    args![
        kek.tenant_id.to_string(),
        kek.version,
        &kek.state,
        kek.wrapped.clone(),
        kek.root_version,
        kek.created_at.as_micros()
    ]
}

/// Whether `apply_bulk` can take `op`: a new tenant, or the first (current) version of a new
/// credential.
fn bulk(op: &WriteOp) -> bool {
    match op {
        WriteOp::CreateTenant { .. } => true,
        WriteOp::PutVersion { version, create, .. } => *create && version.stage != "pending",
        _ => false,
    }
}

/// Applies new tenants and new credentials (each accepted by [`bulk`]) in a few multi-row
/// statements, as `apply_op` would one by one. If any statement fails for a reason of the data
/// (a name taken, a key no longer active), they are applied again one by one, so that the
/// error is the precise one.
async fn apply_bulk<C: Conn>(c: &mut C, ops: &[WriteOp]) -> Result<(), StoreError> {
    c.batch("SAVEPOINT bulk").await?;
    match insert_bulk(c, ops).await {
        Ok(()) => c.batch("RELEASE SAVEPOINT bulk").await,
        Err(e @ (StoreError::Backend(_) | StoreError::Migrate(_))) => Err(e),
        Err(_) => {
            c.batch("ROLLBACK TO SAVEPOINT bulk").await?;
            c.batch("RELEASE SAVEPOINT bulk").await?;
            for op in ops {
                Box::pin(apply_op(c, op)).await?;
            }
            Ok(())
        }
    }
}

async fn insert_bulk<C: Conn>(c: &mut C, ops: &[WriteOp]) -> Result<(), StoreError> {
    let (mut tenants, mut keks, mut credentials, mut versions) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut targets = Vec::new();
    let mut counts: std::collections::BTreeMap<(String, &str), i64> = Default::default();
    let mut kek_uses = std::collections::BTreeSet::new();
    for op in ops {
        match op {
            WriteOp::CreateTenant { tenant, kek } => {
                tenants.push(tenant_args(tenant));
                keks.push(kek_args(kek));
            }
            WriteOp::PutVersion { credential, version, .. } => {
                let tenant = credential.tenant_id.to_string();
                kek_uses.insert((tenant.clone(), version.kek_version));
                *counts.entry((tenant, credential.kind.as_str())).or_default() += 1;
                credentials.push(new_credential_args(credential, version));
                versions.push(version_args(version, "current"));
                if let (Some(binding), Some(fields)) = (&version.binding, &version.fields) {
                    targets.push(target_args(&version.credential_id, binding, fields));
                }
            }
            _ => return Err(StoreError::Constraint("not an operation for a bulk insert".into())),
        }
    }
    insert_rows(c, INSERT_TENANT, "", 6, tenants).await?;
    insert_rows(c, INSERT_KEK, "", 6, keks).await?;
    // A new DEK goes under its tenant's active KEK only (see `PutVersion`).
    let uses: Vec<Vec<Arg>> = kek_uses.into_iter().map(|(t, v)| args![t, v]).collect();
    for chunk in uses.chunks(ROWS_PER_STATEMENT) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
        let sql = format!(
            "SELECT COUNT(*) AS n FROM tenant_keks WHERE state = '{}' AND (tenant_id, version) IN (VALUES {})",
            key_state::ACTIVE,
            marks.join(", ")
        );
        let active = c.query_opt(&sql, chunk.concat()).await?.map_or(Ok(0), |r| r.int("n"))?;
        if active != chunk.len() as i64 {
            return Err(StoreError::Conflict);
        }
    }
    insert_rows(c, INSERT_CREDENTIAL, "", 10, credentials).await?;
    let counts = counts.into_iter().map(|((tenant, kind), n)| args![tenant, kind, n]).collect();
    insert_rows(
        c,
        "INSERT INTO tenant_counts (tenant_id, tenant_name, region, kind, n) \
         SELECT t.id, t.name, t.region, v.kind, v.n FROM (VALUES ",
        ") AS v (tenant_id, kind, n) JOIN tenants t ON t.id = v.tenant_id \
         ON CONFLICT (region, tenant_id, kind) DO UPDATE SET n = tenant_counts.n + excluded.n",
        3,
        counts,
    )
    .await?;
    insert_rows(c, INSERT_VERSION, "", 10, versions).await?;
    insert_rows(c, INSERT_TARGET, TARGET_CONFLICT, 3, targets).await
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_code_of(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict | StoreError::Duplicate => "conflict",
        StoreError::Constraint(_) => "constraint",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) | StoreError::Migrate(_) | StoreError::InUse(_) => "backend",
    }
}

/// See [`crate::Store::apply`].
pub(crate) async fn apply<C: Conn>(
    c: &mut C,
    requests: &[WriteRequest],
    chain: &ChainFn,
) -> Result<Applied, StoreError> {
    let backend = c.backend();
    c.batch(match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    })
    .await?;
    let result = async {
        let mut results = Vec::with_capacity(requests.len());
        for req in requests {
            let Some(op) = &req.op else {
                results.push(Ok(OpOk::AuditOnly));
                continue;
            };
            c.batch("SAVEPOINT op").await?;
            match apply_op(c, op).await {
                Ok(()) => {
                    c.batch("RELEASE SAVEPOINT op").await?;
                    results.push(Ok(OpOk::Done));
                }
                // An I/O or protocol failure, not a refusal: the whole batch fails.
                Err(e @ (StoreError::Backend(_) | StoreError::Migrate(_))) => return Err(e),
                Err(e) => {
                    c.batch("ROLLBACK TO SAVEPOINT op").await?;
                    c.batch("RELEASE SAVEPOINT op").await?;
                    results.push(Err(e));
                }
            }
        }
        let lock = match backend {
            Backend::Postgres => "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq, mac FROM audit_head WHERE id = 1",
        };
        let head = c.query_opt(lock, vec![]).await?.ok_or_else(|| corrupt("audit_head"))?;
        let mut seq = head.int("seq")?;
        let mut mac: [u8; 32] = head.blob("mac")?.as_slice().try_into().map_err(|_| corrupt("audit_head.mac"))?;
        let mut records = Vec::with_capacity(requests.len());
        for (req, result) in requests.iter().zip(&results) {
            let mut record = req.audit.clone();
            seq += 1;
            record.seq = seq;
            if let Err(e) = result {
                record.outcome = AuditOutcome::Error;
                let code = error_code_of(e);
                record.detail = if record.detail.is_empty() {
                    format!("failed: {code}")
                } else {
                    format!("{}; failed: {code}", record.detail)
                };
            }
            mac = chain(&mac, &record.canonical_bytes());
            records.push((record, mac));
        }
        append_audit(c, &records).await?;
        c.exec("UPDATE audit_head SET seq = $1, mac = $2 WHERE id = 1", args![seq, mac.to_vec()]).await?;
        Ok(Applied { results, last_seq: seq })
    }
    .await;
    finish(c, result).await
}
