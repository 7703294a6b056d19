//! Every statement Rekey runs, written once for both backends over [`Conn`]. The reads of each
//! domain are in a file of their own (`queries/tenants.rs`, `credentials.rs`, `tokens.rs`,
//! `keys.rs`, `audit.rs`, `certificates.rs`, `rotations.rs`, `incidents.rs`, `campaigns.rs`);
//! here stay the decoding helpers, the migrations, and the writes (one `apply_one` dispatch over
//! `WriteOp`, which is over 600 lines: its cases are the write side of every domain, and moving
//! them out is the next step).

use std::fmt::Write as _;
use std::str::FromStr;

use rekey_types::{AuditOutcome, AuditRecord, CredentialKind, Timestamp};

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

mod audit;
mod campaigns;
mod certificates;
mod credentials;
mod incidents;
mod keys;
mod rotations;
mod tenants;
mod tokens;

pub(crate) use audit::*;
pub(crate) use campaigns::*;
pub(crate) use certificates::*;
pub(crate) use credentials::*;
pub(crate) use incidents::*;
pub(crate) use keys::*;
pub(crate) use rotations::*;
pub(crate) use tenants::*;
pub(crate) use tokens::*;

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

// ---- reads (the rest are in the domain files) ---------------------------------------------------

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

// ---- the target fields of versions (read and written) -----------------------------------------

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

/// A tenant an incident reaches, as [`REACH_TENANTS`] gives it.
struct ReachTenant {
    id: String,
    name: String,
    region: String,
    whole: i64,
    reasons: i64,
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
