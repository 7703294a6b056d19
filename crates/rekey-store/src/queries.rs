//! Every statement Rekey runs, written once for both backends over [`Conn`].

use std::str::FromStr;

use rekey_types::{AuditOutcome, AuditRecord, CredentialKind, Role, Timestamp};

use crate::conn::{args, Arg, Conn, OwnedRow};
use crate::model::*;
use crate::{Backend, ChainFn, StoreError};

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

const CRED_COLS: &str =
    "c.id, c.tenant_id, c.name, c.kind, c.fields, c.labels, c.current_version, c.created_at, c.updated_at";

fn credential_row(row: &OwnedRow) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        name: row.text("name")?,
        kind: kind(row, "kind")?,
        fields: json_of(row, "fields")?,
        labels: json_of(row, "labels")?,
        current_version: u32_of(row, "current_version")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
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
    })
}

fn all<T>(rows: Vec<OwnedRow>, f: impl Fn(&OwnedRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

// ---- migrations -----------------------------------------------------------------------------

fn migrations(backend: Backend) -> &'static [(i64, &'static str)] {
    match backend {
        Backend::Sqlite => &[(1, include_str!("../migrations/sqlite/0001_init.sql"))],
        Backend::Postgres => &[(1, include_str!("../migrations/postgres/0001_init.sql"))],
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
                "SELECT * FROM credential_versions WHERE credential_id = $1 AND version = $2",
                args![credential, v],
            )
            .await?
        }
        None => {
            c.query_opt(
                "SELECT * FROM credential_versions WHERE credential_id = $1 AND stage = 'current'",
                args![credential],
            )
            .await?
        }
    };
    row.map(|r| version_row(&r)).transpose()
}

pub(crate) async fn list_versions<C: Conn>(c: &mut C, credential: String) -> Result<Vec<VersionMeta>, StoreError> {
    let rows = c
        .query(
            "SELECT version, stage, kek_version, created_by, created_at FROM credential_versions \
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
            "SELECT c.tenant_id, c.id, c.kind, v.version, v.kek_version, v.wrapped_dek, v.ciphertext \
             FROM tenants t JOIN credentials c ON c.tenant_id = t.id AND c.deleted_at IS NULL \
             JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
             WHERE t.name = $1 AND c.name = $2",
            args![tenant, name],
        )
        .await?;
    row.map(|r| {
        Ok(RevealRow {
            tenant_id: id(&r, "tenant_id")?,
            credential_id: id(&r, "id")?,
            kind: kind(&r, "kind")?,
            version: u32_of(&r, "version")?,
            kek_version: u32_of(&r, "kek_version")?,
            wrapped_dek: r.blob("wrapped_dek")?,
            ciphertext: r.blob("ciphertext")?,
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

// ---- writes ---------------------------------------------------------------------------------

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

async fn apply_op<C: Conn>(c: &mut C, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::CreateTenant { tenant, kek } => {
            let exists = || StoreError::AlreadyExists { entity: "tenant", id: tenant.name.clone() };
            if c.query_opt("SELECT 1 AS one FROM tenants WHERE name = $1", args![&tenant.name]).await?.is_some() {
                return Err(exists());
            }
            c.exec(
                "INSERT INTO tenants (id, name, region, contacts, state, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                args![
                    tenant.id.to_string(),
                    &tenant.name,
                    &tenant.region,
                    json(&tenant.contacts),
                    &tenant.state,
                    tenant.created_at.as_micros()
                ],
            )
            .await
            .map_err(|e| duplicate_as(e, exists()))?;
            c.exec(
                "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                args![kek.tenant_id.to_string(), kek.version, &kek.state, kek.wrapped.clone(), kek.root_version, kek.created_at.as_micros()],
            )
            .await?;
            Ok(())
        }
        WriteOp::PutVersion { credential, version, create } => {
            let cred_id = credential.id.to_string();
            if *create {
                c.exec(
                    "INSERT INTO credentials (id, tenant_id, name, kind, fields, labels, current_version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    args![
                        cred_id.clone(),
                        credential.tenant_id.to_string(),
                        &credential.name,
                        credential.kind.as_str(),
                        json(&credential.fields),
                        json(&credential.labels),
                        version.version,
                        credential.created_at.as_micros(),
                        credential.updated_at.as_micros()
                    ],
                )
                .await
                .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
            } else {
                let updated = c
                    .exec(
                        "UPDATE credentials SET fields = $1, labels = $2, current_version = $3, updated_at = $4 \
                         WHERE id = $5 AND current_version = $6 AND deleted_at IS NULL AND kind = $7",
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
                // The old current becomes previous; the old previous is retired.
                c.exec(
                    "UPDATE credential_versions SET stage = 'retired' WHERE credential_id = $1 AND stage = 'previous'",
                    args![cred_id.clone()],
                )
                .await?;
                c.exec(
                    "UPDATE credential_versions SET stage = 'previous' WHERE credential_id = $1 AND stage = 'current'",
                    args![cred_id.clone()],
                )
                .await?;
            }
            c.exec(
                "INSERT INTO credential_versions (credential_id, version, stage, kek_version, wrapped_dek, ciphertext, created_by, created_at) \
                 VALUES ($1, $2, 'current', $3, $4, $5, $6, $7)",
                args![
                    version.credential_id.to_string(),
                    version.version,
                    version.kek_version,
                    version.wrapped_dek.clone(),
                    version.ciphertext.clone(),
                    &version.created_by,
                    version.created_at.as_micros()
                ],
            )
            .await
            .map_err(|e| duplicate_as(e, StoreError::Conflict))?;
            Ok(())
        }
        WriteOp::DeleteCredential { id, at } => {
            let sql = "UPDATE credentials SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL";
            update_one(c, sql, at.as_micros(), "credential", id.to_string()).await
        }
        WriteOp::CreateToken(t) => {
            c.exec(
                "INSERT INTO tokens (id, hash, role, tenant_id, bound, cidrs, description, created_by, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
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
                    t.expires_at.map(Timestamp::as_micros)
                ],
            )
            .await?;
            Ok(())
        }
        WriteOp::RevokeToken { id, at } => {
            let sql = "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
            update_one(c, sql, at.as_micros(), "active token", id.to_string()).await
        }
        WriteOp::All(ops) => {
            for op in ops {
                Box::pin(apply_op(c, op)).await?;
            }
            Ok(())
        }
    }
}

/// Rows per multi-row INSERT of audit events on PostgreSQL (10 parameters each).
const AUDIT_ROWS_PER_INSERT: usize = 500;

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
            for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
                let mut sql = String::with_capacity(120 + chunk.len() * 60);
                sql.push_str(AUDIT_COLUMNS);
                let mut a = Vec::with_capacity(chunk.len() * 10);
                for (i, (r, mac)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let b = i * 10;
                    sql.push('(');
                    for j in 1..=10 {
                        if j > 1 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("${}", b + j));
                    }
                    sql.push(')');
                    a.extend(audit_args(r, mac));
                }
                c.exec(&sql, a).await?;
            }
        }
    }
    Ok(())
}

fn error_code_of(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict | StoreError::Duplicate => "conflict",
        StoreError::Constraint(_) => "constraint",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) | StoreError::Migrate(_) => "backend",
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
