//! One SQL implementation of [`Store`] for SQLite and PostgreSQL, over sqlx's `Any` driver.
//!
//! The two dialects share almost all SQL here (numbered `$n` parameters work in both); where they
//! differ (pragmas, locking the audit head, migrations), [`Backend`] says which. SQLite runs in WAL
//! mode with `synchronous=FULL`, so a commit is on disk when it returns; all writes go through one
//! connection (SQLite has one writer anyway) and reads through a small pool. PostgreSQL uses one
//! pool; several Rekey servers may share the database, and the audit head row is locked
//! (`FOR UPDATE`) while a batch appends, so the chain stays linear across servers.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rekey_types::{
    AuditOutcome, AuditRecord, CredentialId, CredentialKind, Role, TenantId, TenantName, Timestamp, TokenId,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::model::*;
use crate::{ChainFn, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Backend::Sqlite => &[(1, include_str!("../migrations/sqlite/0001_init.sql"))],
            Backend::Postgres => &[(1, include_str!("../migrations/postgres/0001_init.sql"))],
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    /// Read connections (SQLite) or all connections (PostgreSQL).
    pub max_connections: u32,
}

pub struct SqlStore {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
}

impl SqlStore {
    /// Connects and brings the schema up to date.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if options.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Corrupt("store url must start with sqlite:// or postgres://".into()));
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = if options.url.contains('?') {
                    options.url.clone()
                } else {
                    format!("{}?mode=rwc", options.url)
                };
                let write = sqlite_pool(&url, 1).await?;
                // Create the schema before the read pool opens, so WAL mode is already set.
                let store_w = Self { backend, read: write.clone(), write };
                store_w.migrate().await?;
                let read = sqlite_pool(&url, options.max_connections.max(1)).await?;
                Self { backend, read, write: store_w.write }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&options.url)
                    .await?;
                let store = Self { backend, read: pool.clone(), write: pool };
                store.migrate().await?;
                store
            }
        };
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.write.acquire().await?;
        let mut tx = conn.begin().await.map_err(StoreError::Migrate)?;
        if self.backend == Backend::Postgres {
            // Several servers may start at once against one database: one migrates at a time.
            tx.execute("SELECT pg_advisory_xact_lock(72657365)").await.map_err(StoreError::Migrate)?;
        }
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await
            .map_err(StoreError::Migrate)?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::Migrate)?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(StoreError::Migrate)?;
        for (version, sql) in self.backend.migrations() {
            if applied.contains(version) {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(StoreError::Migrate)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(Timestamp::now().as_micros())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::Migrate)?;
            tracing::info!(backend = self.backend.as_str(), version, "applied migration");
        }
        tx.commit().await.map_err(StoreError::Migrate)?;
        Ok(())
    }

    /// Closes every connection (SQLite checkpoints its WAL on the last close).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

async fn sqlite_pool(url: &str, max: u32) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
                     PRAGMA busy_timeout=10000;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

// ---- row decoding -------------------------------------------------------------------------

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn get_id<T: FromStr>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(|_| corrupt(col))
}

fn get_u32(row: &AnyRow, col: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| corrupt(col))
}

fn get_ts(row: &AnyRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_micros(row.try_get(col)?))
}

fn get_opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp::from_micros))
}

fn get_json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|_| corrupt(col))
}

fn get_kind(row: &AnyRow, col: &str) -> Result<CredentialKind, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(|_| corrupt(col))
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always serialize")
}

fn tenant_row(row: &AnyRow) -> Result<TenantRow, StoreError> {
    Ok(TenantRow {
        id: get_id(row, "id")?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        contacts: get_json(row, "contacts")?,
        state: row.try_get("state")?,
        created_at: get_ts(row, "created_at")?,
    })
}

fn kek_row(row: &AnyRow) -> Result<KekRow, StoreError> {
    Ok(KekRow {
        tenant_id: get_id(row, "tenant_id")?,
        version: get_u32(row, "version")?,
        state: row.try_get("state")?,
        wrapped: row.try_get("wrapped")?,
        root_version: get_u32(row, "root_version")?,
        created_at: get_ts(row, "created_at")?,
    })
}

const CRED_COLS: &str = "c.id, c.tenant_id, c.name, c.kind, c.fields, c.labels, c.current_version, c.created_at, c.updated_at";

fn credential_row(row: &AnyRow) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        id: get_id(row, "id")?,
        tenant_id: get_id(row, "tenant_id")?,
        name: row.try_get("name")?,
        kind: get_kind(row, "kind")?,
        fields: get_json(row, "fields")?,
        labels: get_json(row, "labels")?,
        current_version: get_u32(row, "current_version")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

const TOKEN_SELECT: &str =
    "SELECT tk.*, t.name AS tenant_name FROM tokens tk LEFT JOIN tenants t ON t.id = tk.tenant_id";

fn token_row(row: &AnyRow) -> Result<TokenRow, StoreError> {
    let role: String = row.try_get("role")?;
    let tenant: Option<String> = row.try_get("tenant_id")?;
    Ok(TokenRow {
        id: get_id(row, "id")?,
        hash: row.try_get("hash")?,
        role: Role::from_str(&role).map_err(|_| corrupt("role"))?,
        tenant_id: tenant.map(|t| t.parse().map_err(|_| corrupt("tenant_id"))).transpose()?,
        tenant_name: row.try_get("tenant_name")?,
        bound: get_json(row, "bound")?,
        cidrs: get_json(row, "cidrs")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: get_ts(row, "created_at")?,
        expires_at: get_opt_ts(row, "expires_at")?,
        revoked_at: get_opt_ts(row, "revoked_at")?,
    })
}

fn audit_row(row: &AnyRow) -> Result<StoredAudit, StoreError> {
    let outcome: String = row.try_get("outcome")?;
    Ok(StoredAudit {
        record: AuditRecord {
            seq: row.try_get("seq")?,
            time: get_ts(row, "time")?,
            principal: row.try_get("principal")?,
            action: row.try_get("action")?,
            resource: row.try_get("resource")?,
            outcome: AuditOutcome::parse(&outcome).ok_or_else(|| corrupt("outcome"))?,
            source: row.try_get("source")?,
            request_id: row.try_get("request_id")?,
            detail: row.try_get("detail")?,
        },
        mac: row.try_get("mac")?,
    })
}

/// A bind value for queries assembled at run time.
enum Arg {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

// ---- writes -------------------------------------------------------------------------------

async fn apply_op(conn: &mut AnyConnection, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::CreateTenant { tenant, kek } => {
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
                .bind(&tenant.name)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists { entity: "tenant", id: tenant.name.clone() });
            }
            sqlx::query(
                "INSERT INTO tenants (id, name, region, contacts, state, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(&tenant.region)
            .bind(json(&tenant.contacts))
            .bind(&tenant.state)
            .bind(tenant.created_at.as_micros())
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists { entity: "tenant", id: tenant.name.clone() }
                } else {
                    e.into()
                }
            })?;
            insert_kek(conn, kek).await
        }
        WriteOp::PutVersion { credential, version, create } => {
            if *create {
                sqlx::query(
                    "INSERT INTO credentials (id, tenant_id, name, kind, fields, labels, current_version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(credential.id.to_string())
                .bind(credential.tenant_id.to_string())
                .bind(&credential.name)
                .bind(credential.kind.as_str())
                .bind(json(&credential.fields))
                .bind(json(&credential.labels))
                .bind(i64::from(version.version))
                .bind(credential.created_at.as_micros())
                .bind(credential.updated_at.as_micros())
                .execute(&mut *conn)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
            } else {
                let updated = sqlx::query(
                    "UPDATE credentials SET fields = $1, labels = $2, current_version = $3, updated_at = $4 \
                     WHERE id = $5 AND current_version = $6 AND deleted_at IS NULL AND kind = $7",
                )
                .bind(json(&credential.fields))
                .bind(json(&credential.labels))
                .bind(i64::from(version.version))
                .bind(credential.updated_at.as_micros())
                .bind(credential.id.to_string())
                .bind(i64::from(version.version) - 1)
                .bind(credential.kind.as_str())
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict);
                }
                // The old current becomes previous; the old previous is retired.
                sqlx::query("UPDATE credential_versions SET stage = 'retired' WHERE credential_id = $1 AND stage = 'previous'")
                    .bind(credential.id.to_string())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE credential_versions SET stage = 'previous' WHERE credential_id = $1 AND stage = 'current'")
                    .bind(credential.id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO credential_versions (credential_id, version, stage, kek_version, wrapped_dek, ciphertext, created_by, created_at) \
                 VALUES ($1, $2, 'current', $3, $4, $5, $6, $7)",
            )
            .bind(version.credential_id.to_string())
            .bind(i64::from(version.version))
            .bind(i64::from(version.kek_version))
            .bind(version.wrapped_dek.clone())
            .bind(version.ciphertext.clone())
            .bind(&version.created_by)
            .bind(version.created_at.as_micros())
            .execute(&mut *conn)
            .await
            .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
            Ok(())
        }
        WriteOp::DeleteCredential { id, at } => {
            let done = sqlx::query("UPDATE credentials SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(at.as_micros())
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound { entity: "credential", id: id.to_string() });
            }
            Ok(())
        }
        WriteOp::CreateToken(t) => {
            sqlx::query(
                "INSERT INTO tokens (id, hash, role, tenant_id, bound, cidrs, description, created_by, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
            )
            .bind(t.id.to_string())
            .bind(t.hash.clone())
            .bind(t.role.as_str())
            .bind(t.tenant_id.map(|id| id.to_string()))
            .bind(json(&t.bound))
            .bind(json(&t.cidrs))
            .bind(&t.description)
            .bind(&t.created_by)
            .bind(t.created_at.as_micros())
            .bind(t.expires_at.map(Timestamp::as_micros))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        WriteOp::RevokeToken { id, at } => {
            let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at.as_micros())
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound { entity: "active token", id: id.to_string() });
            }
            Ok(())
        }
        WriteOp::All(ops) => {
            for op in ops {
                Box::pin(apply_op(conn, op)).await?;
            }
            Ok(())
        }
    }
}

async fn insert_kek(conn: &mut AnyConnection, kek: &KekRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tenant_keks (tenant_id, version, state, wrapped, root_version, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(kek.tenant_id.to_string())
    .bind(i64::from(kek.version))
    .bind(&kek.state)
    .bind(kek.wrapped.clone())
    .bind(i64::from(kek.root_version))
    .bind(kek.created_at.as_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT of audit events (10 parameters each).
const AUDIT_ROWS_PER_INSERT: usize = 500;

async fn append_audit(conn: &mut AnyConnection, backend: Backend, records: &[(AuditRecord, [u8; 32])]) -> Result<(), StoreError> {
    for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut sql = String::with_capacity(120 + chunk.len() * 60);
        sql.push_str(
            "INSERT INTO audit_events (seq, time, principal, action, resource, outcome, source, request_id, detail, mac) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            match backend {
                // sqlx's SQLite driver resolves numbered parameters in time quadratic in their
                // count; anonymous ones bind in order, which is what a large insert needs.
                Backend::Sqlite => sql.push_str("(?,?,?,?,?,?,?,?,?,?)"),
                Backend::Postgres => {
                    let b = i * 10;
                    sql.push('(');
                    for j in 1..=10 {
                        if j > 1 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("${}", b + j));
                    }
                    sql.push(')');
                }
            }
        }
        let mut q = sqlx::query(&sql);
        for (r, mac) in chunk {
            q = q
                .bind(r.seq)
                .bind(r.time.as_micros())
                .bind(r.principal.clone())
                .bind(r.action.clone())
                .bind(r.resource.clone())
                .bind(r.outcome.as_str())
                .bind(r.source.clone())
                .bind(r.request_id.clone())
                .bind(r.detail.clone())
                .bind(mac.to_vec());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn error_code_of(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict => "conflict",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) | StoreError::Migrate(_) => "backend",
    }
}

// ---- the trait ------------------------------------------------------------------------------

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn tenant_by_name(&self, name: &TenantName) -> Result<Option<TenantRow>, StoreError> {
        sqlx::query("SELECT * FROM tenants WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await?
            .map(|r| tenant_row(&r))
            .transpose()
    }

    async fn tenant_by_id(&self, id: TenantId) -> Result<Option<TenantRow>, StoreError> {
        sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?
            .map(|r| tenant_row(&r))
            .transpose()
    }

    async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<TenantRow>, StoreError> {
        let mut sql = String::from("SELECT * FROM tenants WHERE 1=1");
        let mut args = Vec::new();
        if let Some(region) = &filter.region {
            args.push(Arg::Text(region.clone()));
            sql.push_str(&format!(" AND region = ${}", args.len()));
        }
        if let Some(after) = &filter.after {
            args.push(Arg::Text(after.clone()));
            sql.push_str(&format!(" AND name > ${}", args.len()));
        }
        args.push(Arg::Int(i64::from(filter.limit.max(1))));
        sql.push_str(&format!(" ORDER BY name LIMIT ${}", args.len()));
        bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(tenant_row)
            .collect()
    }

    async fn kek(&self, tenant: TenantId, version: u32) -> Result<Option<KekRow>, StoreError> {
        sqlx::query("SELECT * FROM tenant_keks WHERE tenant_id = $1 AND version = $2")
            .bind(tenant.to_string())
            .bind(i64::from(version))
            .fetch_optional(&self.read)
            .await?
            .map(|r| kek_row(&r))
            .transpose()
    }

    async fn active_kek(&self, tenant: TenantId) -> Result<Option<KekRow>, StoreError> {
        sqlx::query("SELECT * FROM tenant_keks WHERE tenant_id = $1 AND state = 'active' ORDER BY version DESC LIMIT 1")
            .bind(tenant.to_string())
            .fetch_optional(&self.read)
            .await?
            .map(|r| kek_row(&r))
            .transpose()
    }

    async fn credential(&self, tenant: TenantId, name: &str) -> Result<Option<CredentialRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CRED_COLS} FROM credentials c WHERE c.tenant_id = $1 AND c.name = $2 AND c.deleted_at IS NULL"
        ))
        .bind(tenant.to_string())
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .map(|r| credential_row(&r))
        .transpose()
    }

    async fn list_credentials(&self, filter: &CredentialFilter) -> Result<Vec<CredentialListRow>, StoreError> {
        let mut sql = format!(
            "SELECT {CRED_COLS}, t.name AS tenant_name, t.region AS tenant_region FROM credentials c \
             JOIN tenants t ON t.id = c.tenant_id WHERE c.deleted_at IS NULL"
        );
        let mut args = Vec::new();
        if let Some(tenant) = filter.tenant {
            args.push(Arg::Text(tenant.to_string()));
            sql.push_str(&format!(" AND c.tenant_id = ${}", args.len()));
        }
        if let Some(kind) = filter.kind {
            args.push(Arg::Text(kind.as_str().to_owned()));
            sql.push_str(&format!(" AND c.kind = ${}", args.len()));
        }
        if let Some(region) = &filter.region {
            args.push(Arg::Text(region.clone()));
            sql.push_str(&format!(" AND t.region = ${}", args.len()));
        }
        if let Some((tenant, name)) = &filter.after {
            args.push(Arg::Text(tenant.clone()));
            let t = args.len();
            args.push(Arg::Text(name.clone()));
            let n = args.len();
            sql.push_str(&format!(" AND (t.name > ${t} OR (t.name = ${t} AND c.name > ${n}))"));
        }
        args.push(Arg::Int(i64::from(filter.limit.max(1))));
        sql.push_str(&format!(" ORDER BY t.name, c.name LIMIT ${}", args.len()));
        bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(CredentialListRow {
                    tenant: r.try_get("tenant_name")?,
                    region: r.try_get("tenant_region")?,
                    credential: credential_row(r)?,
                })
            })
            .collect()
    }

    async fn version(&self, credential: CredentialId, version: Option<u32>) -> Result<Option<VersionRow>, StoreError> {
        let row = match version {
            Some(v) => sqlx::query("SELECT * FROM credential_versions WHERE credential_id = $1 AND version = $2")
                .bind(credential.to_string())
                .bind(i64::from(v))
                .fetch_optional(&self.read)
                .await?,
            None => sqlx::query("SELECT * FROM credential_versions WHERE credential_id = $1 AND stage = 'current'")
                .bind(credential.to_string())
                .fetch_optional(&self.read)
                .await?,
        };
        row.map(|r| {
            Ok(VersionRow {
                credential_id: get_id(&r, "credential_id")?,
                version: get_u32(&r, "version")?,
                stage: r.try_get("stage")?,
                kek_version: get_u32(&r, "kek_version")?,
                wrapped_dek: r.try_get("wrapped_dek")?,
                ciphertext: r.try_get("ciphertext")?,
                created_by: r.try_get("created_by")?,
                created_at: get_ts(&r, "created_at")?,
            })
        })
        .transpose()
    }

    async fn list_versions(&self, credential: CredentialId) -> Result<Vec<VersionMeta>, StoreError> {
        sqlx::query(
            "SELECT version, stage, kek_version, created_by, created_at FROM credential_versions \
             WHERE credential_id = $1 ORDER BY version",
        )
        .bind(credential.to_string())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            Ok(VersionMeta {
                version: get_u32(r, "version")?,
                stage: r.try_get("stage")?,
                kek_version: get_u32(r, "kek_version")?,
                created_by: r.try_get("created_by")?,
                created_at: get_ts(r, "created_at")?,
            })
        })
        .collect()
    }

    async fn reveal_row(&self, tenant: &TenantName, name: &str) -> Result<Option<RevealRow>, StoreError> {
        sqlx::query(
            "SELECT c.tenant_id, c.id, c.kind, v.version, v.kek_version, v.wrapped_dek, v.ciphertext \
             FROM tenants t JOIN credentials c ON c.tenant_id = t.id AND c.deleted_at IS NULL \
             JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
             WHERE t.name = $1 AND c.name = $2",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .map(|r| {
            Ok(RevealRow {
                tenant_id: get_id(&r, "tenant_id")?,
                credential_id: get_id(&r, "id")?,
                kind: get_kind(&r, "kind")?,
                version: get_u32(&r, "version")?,
                kek_version: get_u32(&r, "kek_version")?,
                wrapped_dek: r.try_get("wrapped_dek")?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    async fn token(&self, id: TokenId) -> Result<Option<TokenRow>, StoreError> {
        sqlx::query(&format!("{TOKEN_SELECT} WHERE tk.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?
            .map(|r| token_row(&r))
            .transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        sqlx::query(&format!("{TOKEN_SELECT} ORDER BY tk.created_at, tk.id"))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(token_row)
            .collect()
    }

    async fn system_key(&self, purpose: &str) -> Result<Option<SystemKeyRow>, StoreError> {
        sqlx::query("SELECT purpose, version, wrapped FROM system_keys WHERE purpose = $1 ORDER BY version DESC LIMIT 1")
            .bind(purpose)
            .fetch_optional(&self.read)
            .await?
            .map(|r| {
                Ok(SystemKeyRow {
                    purpose: r.try_get("purpose")?,
                    version: get_u32(&r, "version")?,
                    wrapped: r.try_get("wrapped")?,
                })
            })
            .transpose()
    }

    async fn insert_system_key(&self, row: &SystemKeyRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO system_keys (purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (purpose, version) DO NOTHING",
        )
        .bind(&row.purpose)
        .bind(i64::from(row.version))
        .bind(row.wrapped.clone())
        .bind(Timestamp::now().as_micros())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM tenants) AS tenants, \
                    (SELECT COUNT(*) FROM credentials WHERE deleted_at IS NULL) AS credentials, \
                    (SELECT COUNT(*) FROM credential_versions) AS versions, \
                    (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL) AS tokens, \
                    (SELECT seq FROM audit_head WHERE id = 1) AS audit_events",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(Counts {
            tenants: r.try_get("tenants")?,
            credentials: r.try_get("credentials")?,
            versions: r.try_get("versions")?,
            tokens: r.try_get("tokens")?,
            audit_events: r.try_get("audit_events")?,
        })
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        sqlx::query("SELECT seq, mac FROM audit_head WHERE id = 1")
            .fetch_optional(&self.read)
            .await?
            .map(|r| Ok(AuditHead { seq: r.try_get("seq")?, mac: r.try_get("mac")? }))
            .transpose()
    }

    async fn audit_tail(&self, n: u32) -> Result<Vec<StoredAudit>, StoreError> {
        let mut rows: Vec<StoredAudit> = sqlx::query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT $1")
            .bind(i64::from(n))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(audit_row)
            .collect::<Result<_, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<StoredAudit>, StoreError> {
        sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(audit_row)
            .collect()
    }

    async fn apply(&self, requests: &[WriteRequest], chain: ChainFn<'_>) -> Result<Applied, StoreError> {
        let mut conn = self.write.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut results = Vec::with_capacity(requests.len());
        for req in requests {
            let Some(op) = &req.op else {
                results.push(Ok(OpOk::AuditOnly));
                continue;
            };
            let mut savepoint = tx.begin().await?;
            match apply_op(&mut savepoint, op).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    results.push(Ok(OpOk::Done));
                }
                Err(StoreError::Backend(e)) if !matches!(e, sqlx::Error::Database(_)) => {
                    // An I/O or protocol failure, not a constraint: the whole batch fails.
                    return Err(StoreError::Backend(e));
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    results.push(Err(e));
                }
            }
        }
        let lock = match self.backend {
            Backend::Postgres => "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq, mac FROM audit_head WHERE id = 1",
        };
        let head = sqlx::query(lock).fetch_one(&mut *tx).await?;
        let mut seq: i64 = head.try_get("seq")?;
        let stored_mac: Vec<u8> = head.try_get("mac")?;
        let mut mac: [u8; 32] = stored_mac.as_slice().try_into().map_err(|_| corrupt("audit_head.mac"))?;
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
        append_audit(&mut tx, self.backend, &records).await?;
        sqlx::query("UPDATE audit_head SET seq = $1, mac = $2 WHERE id = 1")
            .bind(seq)
            .bind(mac.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied { results, last_seq: seq })
    }
}
