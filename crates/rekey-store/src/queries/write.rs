//! The write side: one transaction per batch of requests, each operation under a savepoint of
//! its own and dispatched to its domain's file, then the batch's audit events chained, hashed into
//! the Merkle tree and appended; a run of new tenants and credentials (an import) in multi-row
//! statements on PostgreSQL.

use std::fmt::Write as _;

use rekey_tlog::Hash;
use rekey_types::{AuditOutcome, AuditRecord, KeyState};

use super::credentials::{
    new_credential_args, target_args, version_args, INSERT_CREDENTIAL, INSERT_TARGET, INSERT_VERSION, TARGET_CONFLICT,
};
use super::keys::{kek_args, INSERT_KEK};
use super::tenants::{tenant_args, INSERT_TENANT};
use super::{
    alerts, begin_write, campaigns, certificates, corrupt, credentials, finish, incidents, keys, rotations, tenants,
    tokens, tree,
};
use crate::conn::{args, Arg, Conn};
use crate::model::{Applied, OpOk, WriteOp, WriteRequest};
use crate::{Backend, ChainFn, StoreError};

pub(super) fn duplicate_as(e: StoreError, as_: StoreError) -> StoreError {
    match e {
        StoreError::Duplicate => as_,
        other => other,
    }
}

/// Stamps one row, found by id, with a time (`$1` the time, `$2` the id); "not found" if no
/// row matched (absent, or already stamped).
pub(super) async fn update_one<C: Conn>(
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
        WriteOp::CreateTenant { tenant, kek } => tenants::create_tenant(c, tenant, kek).await,
        WriteOp::PutVersion { credential, version, create } => {
            credentials::put_version(c, credential, version, create).await
        }
        WriteOp::LiftFreeze { credential, fresh: unless } => credentials::lift_freeze(c, credential, unless).await,
        WriteOp::ItemsRotated { credential, version, fingerprint, by, at } => {
            campaigns::items_rotated(c, credential, version, fingerprint, by, at).await
        }
        WriteOp::BindVersions(updates) => credentials::bind_versions(c, updates).await,
        WriteOp::VersionsBound => credentials::versions_bound(c).await,
        WriteOp::UnbindVersions(rows) => credentials::unbind_versions(c, rows).await,
        WriteOp::SealTokens(macs) => tokens::seal_tokens(c, macs).await,
        WriteOp::DeleteCredential { id, at } => credentials::delete_credential(c, id, at).await,
        WriteOp::CreateToken(t) => tokens::create_token(c, t).await,
        WriteOp::RevokeToken { id, at, mac } => tokens::revoke_token(c, id, at, mac).await,
        WriteOp::RenewToken { id, expires_at, mac } => tokens::renew_token(c, id, expires_at, mac).await,
        WriteOp::PutAuthRole(r) => tokens::put_auth_role(c, r).await,
        WriteOp::DeleteAuthRole { name } => tokens::delete_auth_role(c, name).await,
        WriteOp::CreateKek(kek) => keys::create_kek(c, kek).await,
        WriteOp::SetKekState { tenant, version, state, at } => keys::set_kek_state(c, tenant, version, state, at).await,
        WriteOp::ShredTenant { tenant, at } => tenants::shred_tenant(c, tenant, at).await,
        WriteOp::RewrapDeks { updates, job } => keys::rewrap_deks(c, updates, job).await,
        WriteOp::RewrapRoot { updates, job } => keys::rewrap_root(c, updates, job).await,
        WriteOp::InsertRootKey(r) => keys::insert_root_key(c, r).await,
        WriteOp::SetRootKeyState { version, state, at } => keys::set_root_key_state(c, version, state, at).await,
        WriteOp::CreateJob(j) => keys::create_job(c, j).await,
        WriteOp::FinishJob { id, state, error, at } => keys::finish_job(c, id, state, error, at).await,
        WriteOp::CommitKeyring { set_id } => keys::commit_keyring(c, set_id).await,
        WriteOp::ReplaceKeyring(row) => keys::replace_keyring(c, row).await,
        WriteOp::PromotePending { credential, version, fields, at } => {
            credentials::promote_pending(c, credential, version, fields, at).await
        }
        WriteOp::FollowRotation { rotation, state, error, at } => {
            campaigns::follow_rotation(c, rotation, state, error, at).await
        }
        WriteOp::InsertRotation(r) => rotations::insert_rotation(c, r).await,
        WriteOp::SetRotation { id, from, state, error, retire_after, target_ref, at } => {
            rotations::set_rotation(c, id, from, state, error, retire_after, target_ref, at).await
        }
        WriteOp::SetVersionStage { credential, version, from, stage } => {
            credentials::set_version_stage(c, credential, version, from, stage).await
        }
        WriteOp::RecordHealth(h) => rotations::record_health(c, h).await,
        WriteOp::OpenIncident { incident, scope } => incidents::open_incident(c, incident, scope).await,
        WriteOp::ContainIncident { id, freeze, at } => incidents::contain_incident(c, id, freeze, at).await,
        WriteOp::CloseIncident { id, at } => incidents::close_incident(c, id, at).await,
        WriteOp::PlantDecoy { credential, tenant, by, at } => alerts::plant_decoy(c, credential, tenant, by, at).await,
        WriteOp::HandleAlert { id, state, by, at, note, incident } => {
            alerts::handle_alert(c, id, state, by, at, note, incident).await
        }
        WriteOp::AlertActed { id, outcome } => alerts::alert_acted(c, id, outcome).await,
        WriteOp::InsertCertificate(ce) => certificates::insert_certificate(c, ce).await,
        WriteOp::RevokeCertificate { sha256, at } => certificates::revoke_certificate(c, sha256, at).await,
        WriteOp::StartCampaign(campaign) => campaigns::start_campaign(c, campaign).await,
        WriteOp::StartItemRotation { campaign, credential, rotation, by, at } => {
            campaigns::start_item_rotation(c, *campaign, *credential, *rotation, by.clone(), *at).await
        }
        WriteOp::SetItem(update) => campaigns::set_item(c, update).await,
        WriteOp::FinishCampaign { id, at } => campaigns::finish_campaign(c, id.to_string(), *at).await,
        WriteOp::SetReminded { id } => campaigns::set_reminded(c, id).await,
        WriteOp::QueueNotices(notices) => campaigns::queue_notices(c, notices).await,
        WriteOp::SetNotice(update) => campaigns::set_notice(c, update).await,
        WriteOp::InsertLink(link) => campaigns::insert_link(c, link).await,
        WriteOp::UseLink { id, at } => campaigns::use_link(c, *id, *at).await,
        WriteOp::RevokeLink { id, at } => campaigns::revoke_link(c, *id, *at).await,
        WriteOp::All(_) => Box::pin(apply_op(c, op)).await,
    }
}

const AUDIT_COLUMNS: &str = "INSERT INTO audit_events (seq, time, principal, action, resource, outcome, source, request_id, detail, mac, leaf) VALUES ";

fn audit_args(r: &AuditRecord, mac: &[u8; 32], leaf: &[u8; 32]) -> Vec<Arg> {
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
        mac.to_vec(),
        leaf.to_vec()
    ]
}

/// Writes events, each with its chain MAC and its leaf hash.
async fn append_audit<C: Conn>(
    c: &mut C,
    records: &[(AuditRecord, [u8; 32])],
    leaves: &[Hash],
) -> Result<(), StoreError> {
    match c.backend() {
        // In-process SQLite: one cached single-row statement is fastest (no statement per batch
        // size to parse, no round trips to save).
        Backend::Sqlite => {
            let sql = format!("{AUDIT_COLUMNS}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
            for ((r, mac), leaf) in records.iter().zip(leaves) {
                c.exec(&sql, audit_args(r, mac, leaf)).await?;
            }
        }
        // PostgreSQL: few round trips, many rows each.
        Backend::Postgres => {
            let rows = records.iter().zip(leaves).map(|((r, mac), leaf)| audit_args(r, mac, leaf)).collect();
            insert_rows(c, AUDIT_COLUMNS, "", 11, rows).await?;
        }
    }
    Ok(())
}

/// Rows per multi-row statement on PostgreSQL, which takes at most 65,535 parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Runs `{head}(…), (…), …{tail}` over `rows` of `width` arguments each, in statements of at
/// most [`ROWS_PER_STATEMENT`] rows. `head` ends where the first row's parenthesis opens.
pub(super) async fn insert_rows<C: Conn>(
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

/// Whether `apply_bulk` can take `op`: a new tenant, or the first (current) version of a new
/// credential.
fn bulk(op: &WriteOp) -> bool {
    match op {
        WriteOp::CreateTenant { .. } => true,
        WriteOp::PutVersion { version, create, .. } => *create && version.stage != rekey_types::Stage::Pending,
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
            KeyState::Active,
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

pub(super) fn hex_of(bytes: &[u8]) -> String {
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
    begin_write(c).await?;
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
            Backend::Postgres => "SELECT seq, mac, tree_size, tree_edge FROM audit_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq, mac, tree_size, tree_edge FROM audit_head WHERE id = 1",
        };
        let head = c.query_opt(lock, vec![]).await?.ok_or_else(|| corrupt("audit_head"))?;
        let mut seq = head.int("seq")?;
        let mut frontier = tree::frontier_of(head.int("tree_size")?, head.blob("tree_edge")?)?;
        if frontier.size() as i64 != seq {
            // `SqlStore::open` hashes in the events of an older store before any write.
            return Err(corrupt("the audit tree does not cover the audit log"));
        }
        let mut mac: [u8; 32] = head.blob("mac")?.as_slice().try_into().map_err(|_| corrupt("audit_head.mac"))?;
        let mut records = Vec::with_capacity(requests.len());
        let mut leaves: Vec<Hash> = Vec::with_capacity(requests.len());
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
            // The same bytes make the chain MAC and the Merkle leaf.
            let bytes = record.canonical_bytes();
            mac = chain(&mac, &bytes);
            leaves.push(rekey_tlog::leaf_hash(&bytes));
            records.push((record, mac));
        }
        append_audit(c, &records, &leaves).await?;
        let nodes = tree::extend(&mut frontier, &leaves);
        tree::store_nodes(c, &nodes).await?;
        c.exec(
            "UPDATE audit_head SET seq = $1, mac = $2, tree_size = $3, tree_edge = $4 WHERE id = 1",
            args![seq, mac.to_vec(), frontier.size() as i64, tree::edge_bytes(&frontier)],
        )
        .await?;
        Ok(Applied { results, last_seq: seq, records: records.into_iter().map(|(r, _)| r).collect() })
    }
    .await;
    finish(c, result).await
}
