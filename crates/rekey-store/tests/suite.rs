//! The store suite: every test runs against SQLite and against PostgreSQL.
//!
//! PostgreSQL tests need `REKEY_TEST_POSTGRES_URL` (the project's test script starts a private
//! cluster and sets it). Each test gets a database of its own. Without the variable the
//! PostgreSQL half fails under CI and is skipped, loudly, elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use rekey_store::*;
use rekey_types::{
    AlertId, AlertState, AuditOutcome, AuditRecord, CampaignId, CampaignState, CertState, CredentialId, CredentialKind,
    IncidentId, IncidentState, ItemState, JobId, JobState, KeyState, LinkId, NoticeId, NoticeState, Role, RotationId,
    RotationState, Stage, TenantId, TenantName, TenantState, Timestamp, TokenId,
};
use sqlx::Connection;

struct Db {
    store: Arc<SqlStore>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqlStore::open(&StoreOptions { url: url.clone(), max_connections: 4 }).await.unwrap();
    Db { store: Arc::new(store), url, _dir: Some(dir) }
}

/// A SQLite store in the file `path`, which the caller's folder keeps.
async fn sqlite_file(path: &std::path::Path) -> Db {
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::open(&StoreOptions { url: url.clone(), max_connections: 2 }).await.unwrap();
    Db { store: Arc::new(store), url, _dir: None }
}

async fn postgres() -> Option<Db> {
    let Ok(admin) = std::env::var("REKEY_TEST_POSTGRES_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!("REKEY_TEST_POSTGRES_URL is not set under CI: the PostgreSQL half of the store suite would not run");
        }
        eprintln!("SKIPPED: PostgreSQL store tests (set REKEY_TEST_POSTGRES_URL, or run scripts/test.sh)");
        return None;
    };
    let name = format!("rekey_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connecting to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (base, _) = admin.rsplit_once('/').expect("URL has a database");
    let url = format!("{base}/{name}");
    let store = SqlStore::open(&StoreOptions { url: url.clone(), max_connections: 4 }).await.unwrap();
    Some(Db { store: Arc::new(store), url, _dir: None })
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() { if let Some(db) = super::postgres().await { super::$name(db).await } })*
        }
    };
}

both!(
    tenants_are_unique_by_name,
    versions_advance_and_stage,
    stale_version_is_a_conflict,
    failed_op_does_not_undo_others_and_is_audited_as_error,
    delete_is_soft_and_frees_the_name,
    tokens_create_and_revoke,
    tokens_renew_up_to_their_limit,
    auth_roles_write_read_and_delete,
    audit_chain_and_head,
    listing_filters_and_pages,
    system_keys_insert_once,
    atomic_group_rolls_back_together,
    kek_versions_rotate_and_rewrap_guarded,
    kek_states_destroy_and_shred,
    pending_versions_sit_beside_current,
    seal_keyring_pending_commits_once,
    jobs_record_progress,
    root_keys_and_root_rewrap,
    certificates_are_unique,
    rotations_move_forward_once_and_health_upserts,
    incidents_scope_reasons_counts_and_freeze,
    campaigns_items_leases_notices_and_links,
    reveal_reads_follow_every_write,
    audit_queries_agree_across_the_index,
    new_tenants_and_credentials_land_together,
    audit_tree_grows_with_the_log_and_proves_it,
    audit_tree_is_rebuilt_for_a_store_written_before_it,
    checkpoints_cosignatures_and_siem_positions,
    a_tenants_events_are_its_own_and_its_credentials,
    the_key_epoch_moves_when_a_key_row_changes,
    alerts_are_stored_once_by_key_and_decoys_are_kept_apart,
);

/// Checkpoints come back newest first with their cosignatures; a witness's second cosignature
/// replaces its first; a SIEM position never moves back.
async fn checkpoints_cosignatures_and_siem_positions(db: Db) {
    use rekey_store::{CosignatureRow, NewCheckpoint};
    assert!(db.store.latest_checkpoint().await.unwrap().is_none());
    let new = |size: u64| NewCheckpoint {
        size,
        root: [size as u8; 32],
        note: format!("o\n{size}\nAA==\n\n\u{2014} o sig\n"),
        signed_at: rekey_types::Timestamp::from_micros(size as i64),
        accepted: None,
    };
    let a = db.store.insert_checkpoint(&new(5)).await.unwrap();
    let b = db.store.insert_checkpoint(&new(9)).await.unwrap();
    let c = db.store.insert_checkpoint(&NewCheckpoint { accepted: Some("restored".into()), ..new(3) }).await.unwrap();
    assert!(a < b && b < c);
    let latest = db.store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!((latest.id, latest.checkpoint.size, latest.checkpoint.accepted.as_deref()), (c, 3, Some("restored")));
    assert_eq!(latest.checkpoint, NewCheckpoint { accepted: Some("restored".into()), ..new(3) });
    assert!(db.store.latest_cosigned_checkpoint().await.unwrap().is_none());
    let cosig =
        |w: &str, time: u64| CosignatureRow { witness: w.into(), line: format!("\u{2014} {w} x{time}\n"), time };
    db.store.add_cosignature(a, &cosig("w1", 10)).await.unwrap();
    db.store.add_cosignature(a, &cosig("w1", 11)).await.unwrap();
    db.store.add_cosignature(a, &cosig("w0", 12)).await.unwrap();
    let cosigned = db.store.latest_cosigned_checkpoint().await.unwrap().unwrap();
    assert_eq!(cosigned.id, a);
    assert_eq!(cosigned.cosignatures, vec![cosig("w0", 12), cosig("w1", 11)]);
    assert_eq!(db.store.checkpoint_covering(6).await.unwrap().unwrap().id, b);
    assert_eq!(db.store.checkpoint_covering(3).await.unwrap().unwrap().id, c);
    assert!(db.store.checkpoint_covering(10).await.unwrap().is_none());

    assert_eq!(db.store.siem_cursor("syslog:a").await.unwrap(), 0);
    db.store.set_siem_cursor("syslog:a", 40).await.unwrap();
    db.store.set_siem_cursor("syslog:a", 30).await.unwrap();
    db.store.set_siem_cursor("http:b", 7).await.unwrap();
    assert_eq!(db.store.siem_cursor("syslog:a").await.unwrap(), 40);
    assert_eq!(db.store.siem_cursor("http:b").await.unwrap(), 7);
}

/// A tenant's events: `tenant:<name>` and its credentials' `<name>/<credential>`, not another
/// tenant's (whose name it prefixes), since the time asked and up to the size asked.
async fn a_tenants_events_are_its_own_and_its_credentials(db: Db) {
    let acme = create_tenant(&db, "acme", "uk").await;
    let acme2 = create_tenant(&db, "acme2", "uk").await;
    apply(&db, vec![Some(put(acme, "ldap", 1, None)), Some(put(acme2, "ldap", 1, None))]).await;
    let mut requests = Vec::new();
    for resource in ["acme/ldap", "acme2/ldap", "tenant:acme", "tenant:acme2", "acme/gone", "acmeldap"] {
        requests.push(audit("cred.reveal", "token:x", resource, AuditOutcome::Success));
    }
    db.store.apply(requests, Arc::new(chain)).await.unwrap();
    let through = db.store.audit_head().await.unwrap().unwrap().seq;
    let ours = db.store.audit_of_tenant("acme", 0, through, 100).await.unwrap();
    let resources: Vec<&str> =
        ours.iter().filter(|e| e.record.action == "cred.reveal").map(|e| e.record.resource.as_str()).collect();
    assert_eq!(resources, ["acme/ldap", "tenant:acme", "acme/gone"], "a credential's events whether or not it exists");
    let none = db.store.audit_of_tenant("acme", through, through, 100).await.unwrap();
    assert!(none.is_empty());
    let before = db.store.audit_of_tenant("acme", 0, through - 6, 100).await.unwrap();
    assert!(before.iter().all(|e| e.record.action != "cred.reveal"));
    let leaves = db.store.tenant_leaves("acme", through).await.unwrap();
    assert_eq!(leaves.iter().map(|l| l.0).collect::<Vec<_>>(), ours.iter().map(|e| e.record.seq).collect::<Vec<_>>());
    // The tenants' own logs, advanced to the head: acme's is the leaves above.
    assert_eq!(db.store.advance_tenant_logs(through).await.unwrap(), through);
    let (upto, logs) = db.store.tenant_logs().await.unwrap();
    assert_eq!(upto, through);
    let acme_log = logs.iter().find(|l| l.name == "acme").unwrap();
    let mut f = rekey_tlog::Frontier::new();
    leaves.iter().for_each(|l| drop(f.push(l.2)));
    assert_eq!((acme_log.size, acme_log.root), (f.size(), f.root()));
    assert!(logs.windows(2).all(|w| w[0].name.as_bytes() < w[1].name.as_bytes()), "sorted by bytes");
    indexed(&db).await;
    let again = db.store.audit_of_tenant("acme", 0, through, 100).await.unwrap();
    assert_eq!(again.len(), ours.len(), "the same answer once the index caught up");
}

fn chain(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    // A stand-in MAC for the store's own tests: any deterministic function of both inputs.
    let mut out = *prev;
    for (i, b) in bytes.iter().enumerate() {
        out[i % 32] = out[i % 32].wrapping_mul(31).wrapping_add(*b);
    }
    out
}

fn event(action: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time: Timestamp::now(),
        principal: "test".into(),
        action: action.into(),
        resource: String::new(),
        outcome: AuditOutcome::Success,
        source: "127.0.0.1".into(),
        request_id: "r".into(),
        detail: String::new(),
    }
}

fn tenant(name: &str, region: &str) -> (TenantRow, KekRow) {
    let id = TenantId::generate();
    let now = Timestamp::now();
    (
        TenantRow {
            id,
            name: name.into(),
            region: region.into(),
            contacts: vec!["a@b.example".into()],
            state: TenantState::Active,
            created_at: now,
        },
        KekRow {
            tenant_id: id,
            version: 1,
            state: KeyState::Active,
            wrapped: vec![1; 60],
            root_version: 1,
            created_at: now,
        },
    )
}

fn put(tenant: TenantId, name: &str, version: u32, id: Option<CredentialId>) -> WriteOp {
    let now = Timestamp::now();
    let id = id.unwrap_or_else(CredentialId::generate);
    let mut fields = BTreeMap::new();
    fields.insert("description".to_string(), format!("v{version}"));
    WriteOp::PutVersion {
        credential: CredentialRow {
            id,
            tenant_id: tenant,
            name: name.into(),
            kind: CredentialKind::Generic,
            fields,
            labels: BTreeMap::new(),
            current_version: version,
            latest_version: version,
            created_at: now,
            updated_at: now,
            frozen_by: None,
        },
        version: VersionRow {
            credential_id: id,
            version,
            stage: Stage::Current,
            kek_version: 1,
            wrapped_dek: vec![2; 70],
            ciphertext: vec![3; 40 + version as usize],
            created_by: "test".into(),
            created_at: now,
            fields: Some(BTreeMap::from([("description".to_string(), format!("v{version}"))])),
            binding: Some(vec![version as u8; 32]),
            // Each version's own fingerprint.
            fingerprint: Some(vec![version as u8; 32]),
        },
        create: version == 1,
    }
}

/// A pending rotation from version 1 to 2.
fn pending_rotation(
    id: RotationId,
    credential: CredentialId,
    tenant: TenantId,
    by: &str,
    at: Timestamp,
) -> RotationRow {
    RotationRow {
        id,
        credential_id: credential,
        tenant_id: tenant,
        from_version: 1,
        to_version: 2,
        state: RotationState::Pending,
        created_by: by.into(),
        created_at: at,
        changed_at: at,
        retire_after: None,
        error: None,
        target_ref: None,
        tenant: String::new(),
        credential: String::new(),
        kind: None,
    }
}

/// An incident opened now, counting reveals since the epoch.
fn open_incident(id: IncidentId, reasons: &[&str], kinds: Option<Vec<CredentialKind>>) -> IncidentRow {
    IncidentRow {
        id,
        title: "stolen backup".into(),
        scope: vec![],
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        kinds,
        since: Some(Timestamp::from_micros(0)),
        state: IncidentState::Open,
        frozen: false,
        affected: 0,
        counts: Default::default(),
        created_by: "test".into(),
        created_at: Timestamp::now(),
        contained_at: None,
        closed_at: None,
    }
}

/// Waits until the audit log's deferred index (SQLite) has every event; at once where the
/// indexes are kept with each commit (PostgreSQL).
async fn indexed(db: &Db) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Some(lag) = db.store.audit_index_lag().await.unwrap() {
        if lag == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the audit index stayed {lag} events behind");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs `sql` on the database behind the store's back (an edit Rekey did not make).
async fn edit(db: &Db, sql: &str) {
    match db.url.strip_prefix("sqlite://") {
        Some(path) => {
            rusqlite::Connection::open(path).unwrap().execute(sql, []).unwrap();
        }
        None => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

async fn apply(db: &Db, ops: Vec<Option<WriteOp>>) -> Vec<OpResult> {
    let reqs: Vec<WriteRequest> = ops.into_iter().map(|op| WriteRequest { op, audit: event("test") }).collect();
    db.store.apply(reqs, Arc::new(chain)).await.unwrap().results
}

async fn create_tenant(db: &Db, name: &str, region: &str) -> TenantId {
    let (t, k) = tenant(name, region);
    let id = t.id;
    let r = apply(db, vec![Some(WriteOp::CreateTenant { tenant: t, kek: k })]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
    id
}

async fn tenants_are_unique_by_name(db: Db) {
    let id = create_tenant(&db, "acme", "uk").await;
    let (t, k) = tenant("acme", "us");
    let r = apply(&db, vec![Some(WriteOp::CreateTenant { tenant: t, kek: k })]).await;
    assert!(matches!(r[0], Err(StoreError::AlreadyExists { .. })), "{:?}", r[0]);
    let found = db.store.tenant_by_name(&TenantName::parse("acme").unwrap()).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.region, "uk");
    assert_eq!(db.store.tenant_by_id(id).await.unwrap().unwrap().name, "acme");
    assert!(db.store.tenant_by_name(&TenantName::parse("nobody").unwrap()).await.unwrap().is_none());
    assert_eq!(db.store.active_kek(id).await.unwrap().unwrap().version, 1);
    assert_eq!(db.store.kek(id, 1).await.unwrap().unwrap().wrapped, vec![1; 60]);
    assert!(db.store.kek(id, 2).await.unwrap().is_none());
}

async fn versions_advance_and_stage(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    for v in 1..=3 {
        let r = apply(&db, vec![Some(put(t, "dir", v, Some(id)))]).await;
        assert!(r[0].is_ok(), "v{v}: {:?}", r[0]);
    }
    let c = db.store.credential(t, "dir").await.unwrap().unwrap();
    assert_eq!(c.current_version, 3);
    assert_eq!(c.fields["description"], "v3");
    let stages: Vec<(u32, String)> =
        db.store.list_versions(id).await.unwrap().into_iter().map(|v| (v.version, v.stage.to_string())).collect();
    assert_eq!(stages, vec![(1, "retired".into()), (2, "previous".into()), (3, "current".into())]);
    let current = db.store.version(id, None).await.unwrap().unwrap();
    assert_eq!(current.version, 3);
    assert_eq!(current.ciphertext.len(), 43);
    let row = db.store.reveal_row(&TenantName::parse("acme").unwrap(), "dir").await.unwrap().unwrap();
    assert_eq!((row.version, row.credential_id, row.tenant_id), (3, id, t));
    assert_eq!(db.store.version(id, Some(1)).await.unwrap().unwrap().ciphertext.len(), 41);
}

/// A reveal read after a write sees it, however the write was committed, even when the same
/// row was read (and, on SQLite, kept in memory) just before.
async fn reveal_reads_follow_every_write(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let acme = TenantName::parse("acme").unwrap();
    let id = CredentialId::generate();
    apply(&db, vec![Some(put(t, "dir", 1, Some(id)))]).await[0].as_ref().unwrap();
    let version = |db: &Db| {
        let store = db.store.clone();
        let acme = acme.clone();
        async move { store.reveal_row(&acme, "dir").await.unwrap().map(|r| (r.credential_id, r.version)) }
    };
    assert_eq!(version(&db).await, Some((id, 1)));
    assert_eq!(version(&db).await, Some((id, 1)), "read again");
    // An audit-only batch changes no row.
    apply(&db, vec![None]).await;
    assert_eq!(version(&db).await, Some((id, 1)));
    // A put through the writer's path (commit now, sync after).
    let reqs = vec![WriteRequest { op: Some(put(t, "dir", 2, Some(id))), audit: event("test") }];
    let applied = db.store.apply_unsynced(reqs, Arc::new(chain)).await.unwrap();
    assert!(applied.results[0].is_ok());
    db.store.sync().await.unwrap();
    assert_eq!(version(&db).await, Some((id, 2)));
    assert_eq!(db.store.reveal_row(&acme, "dir").await.unwrap().unwrap().ciphertext, vec![3; 42]);
    // Deleted, then a new credential under the same name.
    apply(&db, vec![Some(WriteOp::DeleteCredential { id, at: Timestamp::now() })]).await[0].as_ref().unwrap();
    assert_eq!(version(&db).await, None);
    let again = CredentialId::generate();
    apply(&db, vec![Some(put(t, "dir", 1, Some(again)))]).await[0].as_ref().unwrap();
    assert_eq!(version(&db).await, Some((again, 1)));
}

/// A key row changed or deleted by anyone moves the key epoch (a trigger); a new key does not.
async fn the_key_epoch_moves_when_a_key_row_changes(db: Db) {
    let start = db.store.key_epoch().await.unwrap();
    let t = create_tenant(&db, "acme", "uk").await;
    assert_eq!(db.store.key_epoch().await.unwrap(), start, "a new key moves nothing");
    apply(&db, vec![Some(WriteOp::CreateKek(kek(t, 2)))]).await[0].as_ref().unwrap();
    let retired = db.store.key_epoch().await.unwrap();
    assert!(retired > start, "the key before is retired");
    let at = Timestamp::now();
    let r =
        apply(&db, vec![Some(WriteOp::SetKekState { tenant: t, version: 1, state: KeyState::Compromised, at })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    let after = db.store.key_epoch().await.unwrap();
    assert!(after > retired, "{after} after {retired}");
    edit(&db, "UPDATE tenant_keks SET state = 'destroyed' WHERE version = 2").await;
    assert!(db.store.key_epoch().await.unwrap() > after, "an edit of the database moves it too");
}

/// On SQLite, reveal rows are kept in memory: a put of one credential drops only its row, a
/// write of the audit log's own bookkeeping drops none, any other write drops them all, and a
/// budget of 0 keeps nothing.
#[tokio::test]
async fn sqlite_reveal_cache_drops_what_a_write_may_have_changed() {
    let db = sqlite().await;
    let t = create_tenant(&db, "acme", "uk").await;
    let acme = TenantName::parse("acme").unwrap();
    let (a, b) = (CredentialId::generate(), CredentialId::generate());
    apply(&db, vec![Some(put(t, "a", 1, Some(a))), Some(put(t, "b", 1, Some(b)))]).await;
    let hits = || db.store.reveal_cache().unwrap().hits;
    let version = |name: &'static str| {
        let (store, acme) = (db.store.clone(), acme.clone());
        async move { store.reveal_row(&acme, name).await.unwrap().map(|r| r.version) }
    };
    assert_eq!((version("a").await, version("b").await), (Some(1), Some(1)));
    let before = hits();
    assert_eq!((version("a").await, version("b").await), (Some(1), Some(1)));
    assert_eq!(hits(), before + 2, "both read again from memory");
    // A put of `a` through the audit writer's path.
    let reqs = vec![WriteRequest { op: Some(put(t, "a", 2, Some(a))), audit: event("test") }];
    assert!(db.store.apply_unsynced(reqs, Arc::new(chain)).await.unwrap().results[0].is_ok());
    db.store.sync().await.unwrap();
    let before = hits();
    assert_eq!((version("a").await, version("b").await), (Some(2), Some(1)));
    assert_eq!(hits(), before + 1, "`b` still in memory, `a` read again");
    db.store.set_siem_cursor("sink", 7).await.unwrap();
    let before = hits();
    assert_eq!(version("b").await, Some(1));
    assert_eq!(hits(), before + 1, "the audit log's bookkeeping leaves the rows");
    apply(&db, vec![Some(WriteOp::DeleteCredential { id: a, at: Timestamp::now() })]).await[0].as_ref().unwrap();
    let before = hits();
    assert_eq!((version("a").await, version("b").await), (None, Some(1)));
    assert_eq!(hits(), before, "a delete empties the cache");
    db.store.set_reveal_cache_bytes(0);
    let before = hits();
    assert_eq!((version("b").await, version("b").await), (Some(1), Some(1)));
    assert_eq!(hits(), before, "nothing kept without a budget");
    assert_eq!(db.store.reveal_cache().unwrap().rows, 0);
}

/// One server per SQLite file: while another process holds the file's lock (here, a lock taken
/// on a file description of our own, which `flock` treats alike), opening it is refused with a
/// clear error. Once free, this process may open it more than once (a server restarted in
/// place): the opens share one writer's view.
#[tokio::test]
async fn sqlite_file_serves_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let options = StoreOptions { url, max_connections: 2 };
    let other = std::fs::File::create(dir.path().join("t.db.lock")).unwrap();
    other.lock().unwrap();
    let Err(e) = SqlStore::open(&options).await else { panic!("opened a SQLite file another server holds") };
    assert!(matches!(e, StoreError::InUse(_)), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("another Rekey server") && message.contains("t.db.lock"), "{message}");
    assert!(!dir.path().join("t.db").exists(), "a refused open creates nothing");
    drop(other);
    let open = || async {
        SqlStore::open(&options).await.map(|s| Db { store: Arc::new(s), url: options.url.clone(), _dir: None })
    };
    let first = open().await.expect("the file is free once the other holder is gone");
    let second = open().await.expect("this process may open its own file again");
    // A write through one is seen by a reveal read through the other, even one it had cached.
    let t = create_tenant(&first, "acme", "uk").await;
    let id = CredentialId::generate();
    apply(&first, vec![Some(put(t, "dir", 1, Some(id)))]).await[0].as_ref().unwrap();
    let acme = TenantName::parse("acme").unwrap();
    assert_eq!(second.store.reveal_row(&acme, "dir").await.unwrap().unwrap().version, 1);
    apply(&first, vec![Some(put(t, "dir", 2, Some(id)))]).await[0].as_ref().unwrap();
    assert_eq!(second.store.reveal_row(&acme, "dir").await.unwrap().unwrap().version, 2);
}

async fn stale_version_is_a_conflict(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    apply(&db, vec![Some(put(t, "dir", 1, Some(id)))]).await[0].as_ref().unwrap();
    // Two writers both computed version 2: the second loses.
    let r = apply(&db, vec![Some(put(t, "dir", 2, Some(id))), Some(put(t, "dir", 2, Some(id)))]).await;
    assert!(r[0].is_ok());
    assert!(matches!(r[1], Err(StoreError::Conflict)), "{:?}", r[1]);
    // Creating a name that exists is a conflict too.
    let r = apply(&db, vec![Some(put(t, "dir", 1, None))]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{:?}", r[0]);
    assert_eq!(db.store.credential(t, "dir").await.unwrap().unwrap().current_version, 2);
}

async fn failed_op_does_not_undo_others_and_is_audited_as_error(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let before = db.store.audit_head().await.unwrap().unwrap().seq;
    let r = apply(
        &db,
        vec![
            Some(put(t, "a", 1, None)),
            Some(WriteOp::RevokeToken { id: TokenId::generate(), at: Timestamp::now(), mac: vec![0; 32] }),
            None,
            Some(put(t, "b", 1, None)),
        ],
    )
    .await;
    assert!(r[0].is_ok());
    assert!(matches!(r[1], Err(StoreError::NotFound { .. })));
    assert!(matches!(r[2], Ok(OpOk::AuditOnly)));
    assert!(r[3].is_ok());
    assert!(db.store.credential(t, "a").await.unwrap().is_some());
    assert!(db.store.credential(t, "b").await.unwrap().is_some());
    let events = db.store.audit_tail(4).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].record.seq, before + 1);
    let outcomes: Vec<AuditOutcome> = events.iter().map(|e| e.record.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AuditOutcome::Success, AuditOutcome::Error, AuditOutcome::Success, AuditOutcome::Success]
    );
    assert!(events[1].record.detail.contains("not_found"));
}

async fn delete_is_soft_and_frees_the_name(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    apply(&db, vec![Some(put(t, "dir", 1, Some(id)))]).await[0].as_ref().unwrap();
    let r = apply(&db, vec![Some(WriteOp::DeleteCredential { id, at: Timestamp::now() })]).await;
    assert!(r[0].is_ok());
    assert!(db.store.credential(t, "dir").await.unwrap().is_none());
    assert!(db.store.reveal_row(&TenantName::parse("acme").unwrap(), "dir").await.unwrap().is_none());
    // The history stays.
    assert_eq!(db.store.list_versions(id).await.unwrap().len(), 1);
    // Deleting twice is "not found"; the name can be used again.
    let r = apply(&db, vec![Some(WriteOp::DeleteCredential { id, at: Timestamp::now() })]).await;
    assert!(matches!(r[0], Err(StoreError::NotFound { .. })));
    let r = apply(&db, vec![Some(put(t, "dir", 1, None))]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
}

async fn tokens_create_and_revoke(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = TokenId::generate();
    let row = TokenRow {
        id,
        hash: vec![9; 32],
        role: Role::Connector,
        tenant_id: Some(t),
        tenant_name: None,
        bound: vec!["dir".into()],
        cidrs: vec!["127.0.0.1/32".into()],
        description: "c".into(),
        created_by: "test".into(),
        created_at: Timestamp::now(),
        expires_at: Some(Timestamp::now().add_seconds(60)),
        max_expires_at: None,
        revoked_at: None,
        mac: Some(vec![7; 32]),
    };
    assert!(apply(&db, vec![Some(WriteOp::CreateToken(row))]).await[0].is_ok());
    let got = db.store.token(id).await.unwrap().unwrap();
    assert_eq!(got.tenant_name.as_deref(), Some("acme"));
    assert_eq!(got.bound, vec!["dir".to_string()]);
    assert_eq!(got.role, Role::Connector);
    assert!(got.revoked_at.is_none());
    assert_eq!(got.mac, Some(vec![7; 32]));
    let revoke = || Some(WriteOp::RevokeToken { id, at: Timestamp::now(), mac: vec![8; 32] });
    assert!(apply(&db, vec![revoke()]).await[0].is_ok());
    let got = db.store.token(id).await.unwrap().unwrap();
    assert!(got.revoked_at.is_some());
    assert_eq!(got.mac, Some(vec![8; 32]), "a revocation stores the row's new MAC");
    let again = apply(&db, vec![revoke()]).await;
    assert!(matches!(again[0], Err(StoreError::NotFound { .. })));
    assert_eq!(db.store.list_tokens().await.unwrap().len(), 1);
    assert!(db.store.token(TokenId::generate()).await.unwrap().is_none());
}

async fn tokens_renew_up_to_their_limit(db: Db) {
    let now = Timestamp::now();
    let token = |max: Option<Timestamp>| TokenRow {
        id: TokenId::generate(),
        hash: vec![9; 32],
        role: Role::Auditor,
        tenant_id: None,
        tenant_name: None,
        bound: vec![],
        cidrs: vec![],
        description: "login".into(),
        created_by: "auth-role:ci".into(),
        created_at: now,
        expires_at: Some(now.add_seconds(60)),
        max_expires_at: max,
        revoked_at: None,
        mac: Some(vec![7; 32]),
    };
    let (renewable, fixed) = (token(Some(now.add_seconds(600))), token(None));
    let (id, fixed_id) = (renewable.id, fixed.id);
    let created = apply(&db, vec![Some(WriteOp::CreateToken(renewable)), Some(WriteOp::CreateToken(fixed))]).await;
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(db.store.token(id).await.unwrap().unwrap().max_expires_at, Some(now.add_seconds(600)));
    let renew = |id, secs| Some(WriteOp::RenewToken { id, expires_at: now.add_seconds(secs), mac: vec![5; 32] });
    assert!(apply(&db, vec![renew(id, 600)]).await[0].is_ok(), "up to the limit");
    let got = db.store.token(id).await.unwrap().unwrap();
    assert_eq!((got.expires_at, got.mac), (Some(now.add_seconds(600)), Some(vec![5; 32])));
    assert!(matches!(apply(&db, vec![renew(id, 601)]).await[0], Err(StoreError::NotFound { .. })), "never past it");
    assert!(
        matches!(apply(&db, vec![renew(fixed_id, 30)]).await[0], Err(StoreError::NotFound { .. })),
        "nor a static token"
    );
    let revoked = apply(&db, vec![Some(WriteOp::RevokeToken { id, at: now, mac: vec![8; 32] }), renew(id, 300)]).await;
    assert!(revoked[0].is_ok() && matches!(revoked[1], Err(StoreError::NotFound { .. })), "nor a revoked one");
}

async fn auth_roles_write_read_and_delete(db: Db) {
    let row = |spec: &str, at: Timestamp| rekey_store::AuthRoleRow {
        name: "ci".into(),
        spec: spec.into(),
        created_by: "token:x".into(),
        created_at: at,
        updated_at: at,
        mac: vec![1; 32],
    };
    let first = Timestamp::from_micros(1_000_000);
    assert!(apply(&db, vec![Some(WriteOp::PutAuthRole(row("{\"a\":1}", first)))]).await[0].is_ok());
    let later = Timestamp::from_micros(2_000_000);
    assert!(apply(&db, vec![Some(WriteOp::PutAuthRole(row("{\"a\":2}", later)))]).await[0].is_ok());
    let got = db.store.auth_role("ci").await.unwrap().unwrap();
    assert_eq!(
        (got.spec.as_str(), got.created_at, got.updated_at),
        ("{\"a\":2}", first, later),
        "replaced, first time kept"
    );
    assert_eq!(db.store.list_auth_roles().await.unwrap().len(), 1);
    assert!(db.store.auth_role("cd").await.unwrap().is_none());
    assert!(apply(&db, vec![Some(WriteOp::DeleteAuthRole { name: "ci".into() })]).await[0].is_ok());
    assert!(db.store.auth_role("ci").await.unwrap().is_none());
    let again = apply(&db, vec![Some(WriteOp::DeleteAuthRole { name: "ci".into() })]).await;
    assert!(matches!(again[0], Err(StoreError::NotFound { .. })));
}

async fn audit_chain_and_head(db: Db) {
    for batch in 0..3 {
        let ops = (0..250).map(|_| None).collect();
        let r = apply(&db, ops).await;
        assert_eq!(r.len(), 250, "batch {batch}");
    }
    let head = db.store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 750);
    let mut prev = [0u8; 32];
    let mut after = 0;
    let mut seen = 0;
    loop {
        let page = db.store.audit_page(after, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.record.seq;
        for e in page {
            seen += 1;
            assert_eq!(e.record.seq, seen);
            let mac = chain(&prev, &e.record.canonical_bytes());
            assert_eq!(e.mac, mac.to_vec(), "event {seen}");
            prev = mac;
        }
    }
    assert_eq!(seen, 750);
    assert_eq!(head.mac, prev.to_vec());
    let tail = db.store.audit_tail(3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.record.seq).collect::<Vec<_>>(), vec![748, 749, 750]);
    assert_eq!(db.store.counts().await.unwrap().audit_events, 750);
}

async fn listing_filters_and_pages(db: Db) {
    let a = create_tenant(&db, "acme", "uk").await;
    let g = create_tenant(&db, "globex", "us").await;
    let ops = vec![Some(put(a, "one", 1, None)), Some(put(a, "two", 1, None)), Some(put(g, "one", 1, None))];
    assert!(apply(&db, ops).await.iter().all(Result::is_ok));
    let all = db.store.list_credentials(&CredentialFilter { limit: 100, ..Default::default() }).await.unwrap();
    let names: Vec<String> = all.iter().map(|r| format!("{}/{}", r.tenant, r.credential.name)).collect();
    assert_eq!(names, vec!["acme/one", "acme/two", "globex/one"]);
    let uk = db
        .store
        .list_credentials(&CredentialFilter { region: Some("uk".into()), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(uk.len(), 2);
    let of_g = db
        .store
        .list_credentials(&CredentialFilter { tenant: Some(g), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(of_g.len(), 1);
    let ldap = db
        .store
        .list_credentials(&CredentialFilter { kind: Some(CredentialKind::Ldap), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert!(ldap.is_empty());
    let page = db
        .store
        .list_credentials(&CredentialFilter {
            after: Some(("acme".into(), "one".into())),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].credential.name, "two");
    let tenants = db
        .store
        .list_tenants(&TenantFilter { region: Some("us".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["globex"]);
    let after = db
        .store
        .list_tenants(&TenantFilter { after: Some("acme".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    let counts = db.store.counts().await.unwrap();
    assert_eq!((counts.tenants, counts.credentials, counts.versions), (2, 3, 3));
}

async fn system_keys_insert_once(db: Db) {
    let row = SystemKeyRow { purpose: "audit-chain".into(), version: 1, wrapped: vec![5; 60] };
    assert!(db.store.insert_system_key(&row).await.unwrap());
    let other = SystemKeyRow { wrapped: vec![6; 60], ..row.clone() };
    assert!(!db.store.insert_system_key(&other).await.unwrap());
    assert_eq!(db.store.system_key("audit-chain").await.unwrap().unwrap().wrapped, vec![5; 60]);
    assert!(db.store.system_key("other").await.unwrap().is_none());
}

async fn atomic_group_rolls_back_together(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let (t2, k2) = tenant("globex", "us");
    let t2id = t2.id;
    // The third op conflicts (a second version 1 of "a"), so the whole group must vanish.
    let group =
        WriteOp::All(vec![WriteOp::CreateTenant { tenant: t2, kek: k2 }, put(t, "a", 1, None), put(t, "a", 1, None)]);
    let r = apply(&db, vec![Some(group)]).await;
    assert!(r[0].is_err());
    assert!(db.store.tenant_by_id(t2id).await.unwrap().is_none());
    assert!(db.store.credential(t, "a").await.unwrap().is_none());
}

fn kek(tenant: TenantId, version: u32) -> KekRow {
    KekRow {
        tenant_id: tenant,
        version,
        state: KeyState::Active,
        wrapped: vec![version as u8; 60],
        root_version: 1,
        created_at: Timestamp::now(),
    }
}

async fn kek_versions_rotate_and_rewrap_guarded(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    let r =
        apply(&db, vec![Some(put(t, "a", 1, Some(id))), Some(put(t, "a", 2, Some(id))), Some(put(t, "b", 1, None))])
            .await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert!(matches!(apply(&db, vec![Some(WriteOp::CreateKek(kek(t, 2)))]).await[0], Ok(OpOk::Done)));
    let keks = db.store.keks(Some(t)).await.unwrap();
    let states: Vec<(u32, &str)> = keks.iter().map(|k| (k.version, k.state.as_str())).collect();
    assert_eq!(states, vec![(1, "retired"), (2, "active")]);
    // The same version twice is a conflict.
    assert!(matches!(apply(&db, vec![Some(WriteOp::CreateKek(kek(t, 2)))]).await[0], Err(StoreError::Conflict)));
    // A new version under a retired KEK is refused.
    let r = apply(&db, vec![Some(put(t, "c", 1, None))]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{r:?}");
    let counts = db.store.dek_counts(Some(t)).await.unwrap();
    assert_eq!(counts, vec![DekCount { tenant_id: t, kek_version: 1, count: 3 }]);
    let todo = db.store.deks_to_rewrap(t, 2, 2).await.unwrap();
    assert_eq!(todo.len(), 2, "limited");
    let todo = db.store.deks_to_rewrap(t, 2, 100).await.unwrap();
    assert_eq!(todo.len(), 3);
    let job = JobId::generate();
    let mut row = job_row(job, Some(t));
    row.total = 3;
    apply(&db, vec![Some(WriteOp::CreateJob(row))]).await;
    let updates: Vec<DekUpdate> = todo
        .iter()
        .map(|d| DekUpdate {
            credential_id: d.credential_id,
            version: d.version,
            from_kek: 1,
            to_kek: 2,
            wrapped_dek: vec![9; 70],
        })
        .collect();
    // Applied twice: the second time nothing matches any more, and progress does not double.
    let r = apply(&db, vec![Some(WriteOp::RewrapDeks { updates: updates.clone(), job: Some(job) })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    apply(&db, vec![Some(WriteOp::RewrapDeks { updates, job: Some(job) })]).await;
    assert!(db.store.deks_to_rewrap(t, 2, 100).await.unwrap().is_empty());
    assert_eq!(db.store.job(job).await.unwrap().unwrap().done, 3);
    let counts = db.store.dek_counts(Some(t)).await.unwrap();
    assert_eq!(counts, vec![DekCount { tenant_id: t, kek_version: 2, count: 3 }]);
    let v = db.store.version(id, Some(1)).await.unwrap().unwrap();
    assert_eq!((v.kek_version, v.wrapped_dek), (2, vec![9; 70]));
}

fn job_row(id: JobId, tenant: Option<TenantId>) -> KeyJobRow {
    KeyJobRow {
        id,
        scope: if tenant.is_some() { "tenant" } else { "all" }.into(),
        tenant_id: tenant,
        reason: "rotate".into(),
        state: JobState::Running,
        total: 0,
        done: 0,
        created_by: "test".into(),
        created_at: Timestamp::now(),
        finished_at: None,
        error: None,
    }
}

async fn kek_states_destroy_and_shred(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    apply(&db, vec![Some(put(t, "a", 1, None)), Some(WriteOp::CreateKek(kek(t, 2)))]).await;
    let at = Timestamp::now();
    let r =
        apply(&db, vec![Some(WriteOp::SetKekState { tenant: t, version: 1, state: KeyState::Compromised, at })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    assert_eq!(db.store.kek(t, 1).await.unwrap().unwrap().state.as_str(), "compromised");
    let r =
        apply(&db, vec![Some(WriteOp::SetKekState { tenant: t, version: 1, state: KeyState::Destroyed, at })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    let k = db.store.kek(t, 1).await.unwrap().unwrap();
    assert_eq!((k.state.as_str(), k.wrapped.len()), ("destroyed", 0), "the wrapped key is erased");
    // A destroyed version stays destroyed; a missing one is not found.
    for version in [1, 9] {
        let r = apply(&db, vec![Some(WriteOp::SetKekState { tenant: t, version, state: KeyState::Active, at })]).await;
        assert!(matches!(r[0], Err(StoreError::NotFound { .. })), "{r:?}");
    }
    assert!(db.store.deks_to_rewrap(t, 2, 10).await.unwrap().is_empty(), "nothing under a destroyed key can move");
    let other = create_tenant(&db, "globex", "us").await;
    assert!(matches!(apply(&db, vec![Some(WriteOp::ShredTenant { tenant: t, at })]).await[0], Ok(OpOk::Done)));
    assert!(db
        .store
        .keks(Some(t))
        .await
        .unwrap()
        .iter()
        .all(|k| k.state.as_str() == "destroyed" && k.wrapped.is_empty()));
    assert_eq!(db.store.tenant_by_id(t).await.unwrap().unwrap().state.as_str(), "shredded");
    assert_eq!(db.store.tenant_ids().await.unwrap(), vec![other]);
    assert!(matches!(
        apply(&db, vec![Some(WriteOp::ShredTenant { tenant: t, at })]).await[0],
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(db.store.kek(other, 1).await.unwrap().unwrap().state.as_str(), "active", "other tenants untouched");
}

async fn pending_versions_sit_beside_current(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    apply(&db, vec![Some(put(t, "a", 1, Some(id)))]).await;
    let mut pending = put(t, "a", 2, Some(id));
    if let WriteOp::PutVersion { credential, version, .. } = &mut pending {
        credential.current_version = 1;
        version.stage = rekey_types::Stage::Pending;
    }
    assert!(matches!(apply(&db, vec![Some(pending)]).await[0], Ok(OpOk::Done)));
    let c = db.store.credential(t, "a").await.unwrap().unwrap();
    assert_eq!((c.current_version, c.latest_version), (1, 2));
    assert_eq!(db.store.version(id, None).await.unwrap().unwrap().version, 1, "the current one is still served");
    // A new current version supersedes the pending one.
    apply(&db, vec![Some(put(t, "a", 3, Some(id)))]).await;
    let stages: Vec<(u32, String)> =
        db.store.list_versions(id).await.unwrap().into_iter().map(|v| (v.version, v.stage.to_string())).collect();
    assert_eq!(stages, vec![(1, "previous".into()), (2, "retired".into()), (3, "current".into())]);
    // A pending version 4, promoted: only the latest pending version can be, and only once.
    let mut pending = put(t, "a", 4, Some(id));
    if let WriteOp::PutVersion { credential, version, .. } = &mut pending {
        credential.current_version = 3;
        version.stage = rekey_types::Stage::Pending;
    }
    apply(&db, vec![Some(pending)]).await;
    let promote = |version| WriteOp::PromotePending {
        credential: id,
        version,
        fields: BTreeMap::from([("description".to_string(), "promoted".to_string())]),
        at: Timestamp::now(),
    };
    assert!(matches!(apply(&db, vec![Some(promote(3))]).await[0], Err(StoreError::NotFound { .. })));
    assert!(matches!(apply(&db, vec![Some(promote(4))]).await[0], Ok(OpOk::Done)));
    assert!(matches!(apply(&db, vec![Some(promote(4))]).await[0], Err(StoreError::NotFound { .. })));
    let c = db.store.credential(t, "a").await.unwrap().unwrap();
    assert_eq!((c.current_version, c.latest_version, c.fields["description"].as_str()), (4, 4, "promoted"));
    let stages: Vec<(u32, String)> =
        db.store.list_versions(id).await.unwrap().into_iter().map(|v| (v.version, v.stage.to_string())).collect();
    assert_eq!(stages[2..], [(3, "previous".into()), (4, "current".into())]);
    assert_eq!(stages[0], (1, "retired".into()));
    assert_eq!(db.store.version(id, None).await.unwrap().unwrap().version, 4);
}

async fn seal_keyring_pending_commits_once(db: Db) {
    let row = |slot: &str, set: u8| SealKeyringRow {
        slot: slot.into(),
        set_id: vec![set; 8],
        shares: 5,
        threshold: 3,
        blob: vec![set; 80],
        commitments: Some(vec![set; 33 * 5]),
        created_at: Timestamp::now(),
    };
    assert!(db.store.seal_keyring("active").await.unwrap().is_none());
    assert!(db.store.put_seal_keyring(&row("active", 1)).await.unwrap());
    assert!(!db.store.put_seal_keyring(&row("active", 2)).await.unwrap(), "init happens once");
    assert_eq!(db.store.seal_keyring("active").await.unwrap().unwrap().set_id, vec![1; 8]);
    assert!(db.store.put_seal_keyring(&row("pending", 3)).await.unwrap());
    assert!(db.store.put_seal_keyring(&row("pending", 4)).await.unwrap(), "a new pending split replaces the old");
    let wrong = apply(&db, vec![Some(WriteOp::CommitKeyring { set_id: vec![3; 8] })]).await;
    assert!(matches!(wrong[0], Err(StoreError::NotFound { .. })), "{wrong:?}");
    assert!(matches!(apply(&db, vec![Some(WriteOp::CommitKeyring { set_id: vec![4; 8] })]).await[0], Ok(OpOk::Done)));
    let active = db.store.seal_keyring("active").await.unwrap().unwrap();
    assert_eq!((active.set_id, active.threshold), (vec![4; 8], 3));
    assert_eq!(active.commitments, Some(vec![4; 33 * 5]), "the commitments come with the split");
    assert!(db.store.seal_keyring("pending").await.unwrap().is_none());
    let mut replaced = row("active", 4);
    replaced.blob = vec![7; 80];
    assert!(matches!(apply(&db, vec![Some(WriteOp::ReplaceKeyring(replaced))]).await[0], Ok(OpOk::Done)));
    let after = db.store.seal_keyring("active").await.unwrap().unwrap();
    assert_eq!((after.blob, after.commitments), (vec![7; 80], Some(vec![4; 33 * 5])), "same split, same commitments");
}

async fn jobs_record_progress(db: Db) {
    let a = JobId::generate();
    let b = JobId::generate();
    apply(&db, vec![Some(WriteOp::CreateJob(job_row(a, None))), Some(WriteOp::CreateJob(job_row(b, None)))]).await;
    assert_eq!(db.store.jobs(true, 10).await.unwrap().len(), 2);
    let at = Timestamp::now();
    let r = apply(&db, vec![Some(WriteOp::FinishJob { id: a, state: JobState::Done, error: None, at })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    let r = apply(&db, vec![Some(WriteOp::FinishJob { id: a, state: JobState::Failed, error: Some("x".into()), at })])
        .await;
    assert!(matches!(r[0], Err(StoreError::NotFound { .. })), "a finished job stays finished");
    let running: Vec<JobId> = db.store.jobs(true, 10).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(running, vec![b]);
    assert_eq!(db.store.jobs(false, 10).await.unwrap().len(), 2);
    assert_eq!(db.store.job(a).await.unwrap().unwrap().state.as_str(), "done");
}

async fn root_keys_and_root_rewrap(db: Db) {
    let now = Timestamp::now();
    let root = |version: u32, state: &str| RootKeyRow {
        version,
        state: state.parse().unwrap(),
        created_at: now,
        changed_at: now,
    };
    apply(&db, vec![Some(WriteOp::InsertRootKey(root(1, "active")))]).await;
    let r = apply(&db, vec![Some(WriteOp::InsertRootKey(root(1, "active")))]).await;
    assert!(matches!(r[0], Err(StoreError::AlreadyExists { .. })), "{r:?}");
    apply(
        &db,
        vec![
            Some(WriteOp::InsertRootKey(root(2, "active"))),
            Some(WriteOp::SetRootKeyState { version: 1, state: KeyState::Retired, at: now }),
        ],
    )
    .await;
    let roots: Vec<(u32, String)> =
        db.store.root_keys().await.unwrap().into_iter().map(|r| (r.version, r.state.to_string())).collect();
    assert_eq!(roots, vec![(1, "retired".into()), (2, "active".into())]);
    let t = create_tenant(&db, "acme", "uk").await;
    // Blobs whose header names a root version (the store reads a system key's from there).
    let blob = |root: u32| {
        let mut b = b"RK".to_vec();
        b.extend_from_slice(&[1, 1, 4]);
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&root.to_be_bytes());
        b.extend_from_slice(&[0; 40]);
        b
    };
    db.store
        .insert_system_key(&SystemKeyRow { purpose: "audit-chain".into(), version: 1, wrapped: blob(1) })
        .await
        .unwrap();
    let todo = db.store.root_wrapped(2, 100).await.unwrap();
    assert_eq!(todo.len(), 2, "the tenant KEK and the system key");
    let updates: Vec<RootRewrap> = todo.into_iter().map(|r| RootRewrap { to_root: 2, wrapped: blob(2), ..r }).collect();
    assert!(matches!(apply(&db, vec![Some(WriteOp::RewrapRoot { updates, job: None })]).await[0], Ok(OpOk::Done)));
    let k = db.store.kek(t, 1).await.unwrap().unwrap();
    assert_eq!((k.root_version, k.wrapped), (2, blob(2)));
    assert!(db.store.root_wrapped(2, 100).await.unwrap().is_empty(), "the system key moved too");
}

async fn certificates_are_unique(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let o = create_tenant(&db, "globex", "us").await;
    let a = CredentialId::generate();
    let b = CredentialId::generate();
    apply(&db, vec![Some(put(t, "ews", 1, Some(a))), Some(put(o, "ews", 1, Some(b)))]).await;
    let now = Timestamp::now();
    let cert = |tenant: TenantId, credential: CredentialId, sha: &str, key: &str, days: i64| CertificateRow {
        sha256: sha.repeat(64),
        sha1: sha.repeat(40),
        public_key_sha256: key.repeat(64),
        tenant_id: tenant,
        tenant: String::new(),
        credential_id: credential,
        credential: String::new(),
        credential_version: 1,
        subject: "CN=x".into(),
        not_before: now,
        not_after: Timestamp::from_micros(now.as_micros() + days * 86_400_000_000),
        state: CertState::Active,
        pem: "pem".into(),
        created_at: now,
        revoked_at: None,
    };
    assert!(matches!(
        apply(&db, vec![Some(WriteOp::InsertCertificate(cert(t, a, "a", "1", 10)))]).await[0],
        Ok(OpOk::Done)
    ));
    for dup in [cert(o, b, "a", "2", 10), cert(o, b, "b", "1", 10)] {
        let r = apply(&db, vec![Some(WriteOp::InsertCertificate(dup))]).await;
        assert!(matches!(r[0], Err(StoreError::AlreadyExists { .. })), "same certificate or same key: {r:?}");
    }
    apply(&db, vec![Some(WriteOp::InsertCertificate(cert(o, b, "c", "3", 100)))]).await;
    let soon = Timestamp::from_micros(now.as_micros() + 30 * 86_400_000_000);
    let expiring: Vec<String> =
        db.store.certificates(Some(soon)).await.unwrap().into_iter().map(|c| c.tenant).collect();
    assert_eq!(expiring, vec!["acme".to_string()]);
    assert_eq!(db.store.certificates(None).await.unwrap().len(), 2);
    let found = db.store.certificate(&"c".repeat(40)).await.unwrap().unwrap();
    assert_eq!((found.tenant.as_str(), found.credential.as_str()), ("globex", "ews"));
    let r = apply(&db, vec![Some(WriteOp::RevokeCertificate { sha256: "c".repeat(64), at: now })]).await;
    assert!(matches!(r[0], Ok(OpOk::Done)));
    let r = apply(&db, vec![Some(WriteOp::RevokeCertificate { sha256: "c".repeat(64), at: now })]).await;
    assert!(matches!(r[0], Err(StoreError::NotFound { .. })));
    assert_eq!(db.store.certificate(&"c".repeat(64)).await.unwrap().unwrap().state.as_str(), "revoked");
}

async fn rotations_move_forward_once_and_health_upserts(db: Db) {
    let t = create_tenant(&db, "acme", "uk").await;
    let id = CredentialId::generate();
    apply(&db, vec![Some(put(t, "a", 1, Some(id)))]).await;
    let now = Timestamp::now();
    let rotation = |rid: RotationId| pending_rotation(rid, id, t, "test", now);
    let first = RotationId::generate();
    assert!(apply(&db, vec![Some(WriteOp::InsertRotation(rotation(first)))]).await[0].is_ok());
    // One unfinished rotation per credential.
    let r = apply(&db, vec![Some(WriteOp::InsertRotation(rotation(RotationId::generate())))]).await;
    assert!(matches!(r[0], Err(StoreError::AlreadyExists { .. })), "{:?}", r[0]);
    let stored = db.store.rotation(first).await.unwrap().unwrap();
    assert_eq!((stored.tenant.as_str(), stored.credential.as_str(), stored.state.as_str()), ("acme", "a", "pending"));
    assert_eq!(stored.target_ref, None);
    assert_eq!(db.store.rotations_due(Timestamp::now(), 10).await.unwrap().len(), 1);

    let step = |from: &'static [RotationState], state: RotationState, retire_after| WriteOp::SetRotation {
        id: first,
        from,
        state,
        error: None,
        retire_after,
        target_ref: Some("key-1".into()),
        at: Timestamp::now(),
    };
    assert!(apply(&db, vec![Some(step(&[RotationState::Pending], RotationState::Applied, None))]).await[0].is_ok());
    assert_eq!(db.store.rotation(first).await.unwrap().unwrap().target_ref.as_deref(), Some("key-1"));
    // A second server that read it as pending loses.
    let r = apply(&db, vec![Some(step(&[RotationState::Pending], RotationState::Applied, None))]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{:?}", r[0]);
    let later = Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000);
    assert!(
        apply(&db, vec![Some(step(&[RotationState::Applied], RotationState::Promoted, Some(later)))]).await[0].is_ok()
    );
    // Promoted, grace period not over: nothing due; a new rotation may start.
    assert!(db.store.rotations_due(Timestamp::now(), 10).await.unwrap().is_empty());
    assert_eq!(db.store.rotations_due(later, 10).await.unwrap().len(), 1);
    assert!(apply(&db, vec![Some(WriteOp::InsertRotation(rotation(RotationId::generate())))]).await[0].is_ok());
    assert_eq!(db.store.rotations_of(id, 10).await.unwrap().len(), 2);

    let stale = db.store.stale_health(Timestamp::now(), 10).await.unwrap();
    assert!(stale.is_empty(), "generic credentials have no target: {stale:?}");
    let health = |status: &str| HealthRow {
        credential_id: id,
        version: 1,
        status: status.into(),
        detail: "d".into(),
        elapsed_ms: 3,
        checked_at: Timestamp::now(),
    };
    apply(&db, vec![Some(WriteOp::RecordHealth(health("ok")))]).await;
    apply(&db, vec![Some(WriteOp::RecordHealth(health("auth-failed")))]).await;
    assert_eq!(db.store.health(id).await.unwrap().unwrap().status, "auth-failed");
    let counts = db.store.health_counts().await.unwrap();
    assert_eq!(counts, vec![HealthCount { kind: "generic".into(), status: "auth-failed".into(), count: 1 }]);
}

async fn incidents_scope_reasons_counts_and_freeze(db: Db) {
    let acme = create_tenant(&db, "acme", "uk").await;
    let globex = create_tenant(&db, "globex", "us").await;
    let initech = create_tenant(&db, "initech", "eu").await;
    let hooli = create_tenant(&db, "hooli", "eu").await;
    let mut ids = std::collections::HashMap::new();
    for (t, tname) in [(acme, "acme"), (globex, "globex"), (initech, "initech"), (hooli, "hooli")] {
        for name in ["x", "y"] {
            let id = CredentialId::generate();
            ids.insert(format!("{tname}/{name}"), id);
            apply(&db, vec![Some(put(t, name, 1, Some(id)))]).await;
        }
    }
    // Reveals in the audit log: a token revealed acme/x twice and globex/y once.
    let reveal = |resource: &str| {
        let mut e = event("cred.reveal");
        e.principal = "token:t1".into();
        e.resource = resource.into();
        WriteRequest { op: None, audit: e }
    };
    let reqs = vec![reveal("acme/x"), reveal("acme/x"), reveal("globex/y")];
    db.store.apply(reqs, Arc::new(chain)).await.unwrap();

    let id = IncidentId::generate();
    let scope = vec![
        ScopeQuery::Region { region: "uk".into(), bit: 0 },
        ScopeQuery::Credentials { ids: vec![ids["globex/y"], ids["acme/x"]], bit: 1 },
        ScopeQuery::TenantKek { tenant: initech, version: 1, bit: 2 },
        ScopeQuery::TenantKek { tenant: initech, version: 2, bit: 3 },
    ];
    let reasons = ["region:uk", "token:t1 revealed it", "key:initech@1", "key:initech@2"];
    let r = apply(&db, vec![Some(WriteOp::OpenIncident { incident: open_incident(id, &reasons, None), scope })]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let stored = db.store.incident(id).await.unwrap().unwrap();
    assert_eq!((stored.affected, stored.state.as_str()), (5, "open"));
    assert_eq!(stored.reasons, reasons);
    let regions: Vec<(&str, i64)> = stored.counts.by_region.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(regions, [("eu", 2), ("uk", 2), ("us", 1)]);
    assert_eq!(stored.counts.by_tenant[0].1, 2);
    // A credential created after the incident opened is not in scope.
    apply(&db, vec![Some(put(acme, "later", 1, None))]).await;
    let items = db.store.incident_items(&stored, None, 100).await.unwrap();
    let names: Vec<String> = items.iter().map(|i| format!("{}/{}", i.tenant, i.name)).collect();
    assert_eq!(names, ["acme/x", "acme/y", "globex/y", "initech/x", "initech/y"]);
    assert_eq!(items[0].reasons, 0b11, "reasons add up: region and token");
    assert_eq!(items[2].reasons, 0b10);
    assert_eq!(items[3].reasons, 0b100);
    let mid = db.store.incident_items(&stored, Some(("acme".into(), "x".into())), 1).await.unwrap();
    assert_eq!((mid[0].tenant.as_str(), mid[0].name.as_str()), ("acme", "y"));
    let page = db.store.incident_items(&stored, Some(("acme".into(), "y".into())), 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!((page[0].tenant.as_str(), page[0].name.as_str()), ("globex", "y"));
    assert_eq!(db.store.incident_reveals(&stored, Timestamp::from_micros(0)).await.unwrap(), (3, 2));
    indexed(&db).await;
    assert_eq!(db.store.incident_reveals(&stored, Timestamp::from_micros(0)).await.unwrap(), (3, 2));
    let mut by = db.store.reveals_by("token:t1").await.unwrap();
    by.sort();
    assert_eq!(by, [("acme/x".to_string(), 2), ("globex/y".to_string(), 1)]);
    let counted =
        db.store.reveal_counts(vec!["acme/x".into(), "acme/y".into()], Timestamp::from_micros(0)).await.unwrap();
    assert_eq!(counted, [("acme/x".to_string(), 2)]);

    // Narrowed to a kind none of them has: nothing.
    let narrowed = IncidentId::generate();
    let op = WriteOp::OpenIncident {
        incident: open_incident(narrowed, &["all"], Some(vec![CredentialKind::Ldap])),
        scope: vec![ScopeQuery::AllTenants { bit: 0 }],
    };
    assert!(apply(&db, vec![Some(op)]).await[0].is_ok());
    assert_eq!(db.store.incident(narrowed).await.unwrap().unwrap().affected, 0);
    // Not narrowed: every live credential, in every region.
    let everything = IncidentId::generate();
    let op = WriteOp::OpenIncident {
        incident: open_incident(everything, &["all"], None),
        scope: vec![ScopeQuery::AllTenants { bit: 0 }],
    };
    assert!(apply(&db, vec![Some(op)]).await[0].is_ok());
    let all = db.store.incident(everything).await.unwrap().unwrap();
    assert_eq!(all.affected, 9);
    assert_eq!(all.counts.by_region.values().copied().collect::<Vec<_>>(), [4, 3, 2], "eu, uk, us");
    assert_eq!(db.store.incident_items(&all, None, 100).await.unwrap().len(), 9);

    // Freeze: reveals see it; a new current version alone does not end it, only an explicit
    // LiftFreeze does, and only for a secret no other version held.
    let r = apply(&db, vec![Some(WriteOp::ContainIncident { id, freeze: true, at: Timestamp::now() })]).await;
    assert!(r[0].is_ok());
    let acme_name = TenantName::parse("acme").unwrap();
    let frozen = db.store.reveal_row(&acme_name, "x").await.unwrap().unwrap().frozen_by;
    assert_eq!(frozen, Some(id.to_string()));
    assert_eq!(db.store.reveal_row(&acme_name, "later").await.unwrap().unwrap().frozen_by, None);
    let hooli_name = TenantName::parse("hooli").unwrap();
    assert_eq!(db.store.reveal_row(&hooli_name, "x").await.unwrap().unwrap().frozen_by, None);
    apply(&db, vec![Some(put(acme, "x", 2, Some(ids["acme/x"])))]).await;
    assert_eq!(db.store.reveal_row(&acme_name, "x").await.unwrap().unwrap().frozen_by, Some(id.to_string()));
    let lift = |fp: u8| Some(WriteOp::LiftFreeze { credential: ids["acme/x"], fresh: Some((2, vec![fp; 32])) });
    assert!(apply(&db, vec![lift(1)]).await[0].is_ok());
    assert_eq!(
        db.store.reveal_row(&acme_name, "x").await.unwrap().unwrap().frozen_by,
        Some(id.to_string()),
        "version 1's secret again keeps the freeze"
    );
    assert!(apply(&db, vec![lift(2)]).await[0].is_ok());
    assert_eq!(db.store.reveal_row(&acme_name, "x").await.unwrap().unwrap().frozen_by, None);
    assert!(db.store.reveal_row(&acme_name, "y").await.unwrap().unwrap().frozen_by.is_some());
    let close = || Some(WriteOp::CloseIncident { id, at: Timestamp::now() });
    assert!(apply(&db, vec![close()]).await[0].is_ok());
    assert!(matches!(apply(&db, vec![close()]).await[0], Err(StoreError::NotFound { .. })));
    let r = apply(&db, vec![Some(WriteOp::ContainIncident { id, freeze: false, at: Timestamp::now() })]).await;
    assert!(matches!(r[0], Err(StoreError::NotFound { .. })), "a closed incident is not contained");
    let mut e = event("incident.open");
    e.resource = format!("incident:{id}");
    db.store.apply(vec![WriteRequest { op: None, audit: e }], Arc::new(chain)).await.unwrap();
    assert_eq!(db.store.audit_of(&format!("incident:{id}"), 10).await.unwrap().len(), 1);
    assert_eq!(db.store.incidents(10).await.unwrap().len(), 3);

    // A region is counted from the live counts: a deleted credential is out, and so is one
    // created after the incident's opening time, in the counts as in the listing.
    apply(&db, vec![Some(WriteOp::DeleteCredential { id: ids["hooli/y"], at: Timestamp::now() })]).await;
    let late = IncidentId::generate();
    let row = open_incident(late, &["region:eu"], None);
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    apply(&db, vec![Some(put(hooli, "after", 1, None))]).await;
    let scope = vec![ScopeQuery::Region { region: "eu".into(), bit: 0 }];
    assert!(apply(&db, vec![Some(WriteOp::OpenIncident { incident: row, scope })]).await[0].is_ok());
    let stored = db.store.incident(late).await.unwrap().unwrap();
    assert_eq!(stored.affected, 3);
    assert_eq!(stored.counts.by_tenant, [("initech".to_string(), 2), ("hooli".to_string(), 1)]);
    assert_eq!(stored.counts.by_kind.values().sum::<i64>(), 3);
    let items = db.store.incident_items(&stored, None, 100).await.unwrap();
    let names: Vec<String> = items.iter().map(|i| format!("{}/{}", i.tenant, i.name)).collect();
    assert_eq!(names, ["hooli/x", "initech/x", "initech/y"]);
}

/// `put`, for a credential of another kind with a field.
fn put_kind(tenant: TenantId, name: &str, kind: CredentialKind, field: (&str, &str)) -> (CredentialId, WriteOp) {
    let id = CredentialId::generate();
    let WriteOp::PutVersion { mut credential, version, create } = put(tenant, name, 1, Some(id)) else {
        unreachable!()
    };
    credential.kind = kind;
    credential.fields = BTreeMap::from([(field.0.to_string(), field.1.to_string())]);
    (id, WriteOp::PutVersion { credential, version, create })
}

async fn campaigns_items_leases_notices_and_links(db: Db) {
    let acme = create_tenant(&db, "acme", "uk").await;
    let other = create_tenant(&db, "other", "eu").await;
    let (dir, op) = put_kind(acme, "dir", CredentialKind::Ldap, ("url", "ldaps://dc.acme.example"));
    apply(&db, vec![Some(op)]).await;
    let (app, op) = put_kind(acme, "app", CredentialKind::EntraApp, ("client_id", "c"));
    apply(&db, vec![Some(op)]).await;
    let (mail, op) = put_kind(acme, "mail", CredentialKind::Pop3, ("host", "mail.acme.example"));
    apply(&db, vec![Some(op)]).await;
    apply(&db, vec![Some(put(acme, "blob", 1, None)), Some(put(other, "elsewhere", 1, None))]).await;

    let incident = open_incident(IncidentId::generate(), &["region:uk"], None);
    let scope = vec![ScopeQuery::Region { region: "uk".into(), bit: 0 }];
    apply(&db, vec![Some(WriteOp::OpenIncident { incident: incident.clone(), scope })]).await;
    let now = Timestamp::now();
    let later = Timestamp::from_micros(now.as_micros() + 86_400_000_000);
    let campaign = |id| CampaignRow {
        id,
        incident_id: incident.id,
        state: CampaignState::Running,
        notify: vec!["email".into()],
        deadline: later,
        remind_at: later,
        reminded: false,
        items: 0,
        created_by: "test".into(),
        created_at: Timestamp::now(),
        finished_at: None,
    };
    let cid = CampaignId::generate();
    assert!(apply(&db, vec![Some(WriteOp::StartCampaign(campaign(cid)))]).await[0].is_ok());
    let r = apply(&db, vec![Some(WriteOp::StartCampaign(campaign(CampaignId::generate())))]).await;
    assert!(matches!(r[0], Err(StoreError::AlreadyExists { .. })), "one running campaign per incident: {:?}", r[0]);
    let stored = db.store.campaign(cid).await.unwrap().unwrap();
    assert_eq!(stored.items, 4, "acme's four credentials; not other's");
    let all = db.store.campaign_items(cid, &ItemFilter { limit: 100, ..Default::default() }).await.unwrap();
    let modes: Vec<(&str, &str, &str)> =
        all.iter().map(|i| (i.name.as_str(), i.mode.as_str(), i.state.as_str())).collect();
    assert_eq!(
        modes,
        [
            ("app", "self-service", "pending"),
            ("blob", "manual", "pending"),
            ("dir", "automatic", "pending"),
            ("mail", "self-service", "pending")
        ],
        "an entra-app without app_object_id is the customer's"
    );

    // Leases: a due item is taken once until its lease ends or is released.
    let until = Timestamp::from_micros(Timestamp::now().as_micros() + 60_000_000);
    let taken = db.store.claim_items(Timestamp::now(), until, 10).await.unwrap();
    assert_eq!(taken.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["dir"], "only automatic items are due");
    assert!(db.store.claim_items(Timestamp::now(), until, 10).await.unwrap().is_empty(), "leased");
    db.store.release_leases().await.unwrap();
    assert_eq!(db.store.claim_items(Timestamp::now(), until, 10).await.unwrap().len(), 1);

    // A rotation and its item move together.
    let rid = RotationId::generate();
    let rotation = pending_rotation(rid, dir, acme, "system:campaign", now);
    let start = WriteOp::All(vec![
        WriteOp::InsertRotation(rotation),
        WriteOp::StartItemRotation {
            campaign: cid,
            credential: dir,
            rotation: rid,
            by: "system:campaign".into(),
            at: now,
        },
    ]);
    assert!(apply(&db, vec![Some(start)]).await[0].is_ok());
    assert!(db.store.rotations_due(Timestamp::now(), 10).await.unwrap().is_empty(), "the campaign's worker drives it");
    let item = |db: &Db, id| {
        let store = db.store.clone();
        async move { store.campaign_item(cid, id).await.unwrap().unwrap() }
    };
    let got = item(&db, dir).await;
    assert_eq!((got.state.as_str(), got.attempts, got.rotation_id), ("rotating", 1, Some(rid)));
    // A rotation step and the item's move beside it, in one write, as the core writes them.
    let step = |from: &'static [RotationState], state: RotationState| {
        let mut ops = vec![WriteOp::SetRotation {
            id: rid,
            from,
            state,
            error: None,
            retire_after: None,
            target_ref: None,
            at: Timestamp::now(),
        }];
        if let Some(item) = ItemState::following(state) {
            ops.push(WriteOp::FollowRotation { rotation: rid, state: item, error: None, at: Timestamp::now() });
        }
        WriteOp::All(ops)
    };
    apply(&db, vec![Some(step(&[RotationState::Pending], RotationState::Applied))]).await;
    let got = item(&db, dir).await;
    assert_eq!(got.state.as_str(), "rotated");
    assert!(got.rotated_at.is_some() && got.verified_at.is_none());
    apply(&db, vec![Some(step(&[RotationState::Applied], RotationState::Promoted))]).await;
    assert_eq!(item(&db, dir).await.state.as_str(), "verified");
    apply(&db, vec![Some(step(&[RotationState::Promoted], RotationState::Retired))]).await;
    let got = item(&db, dir).await;
    assert_eq!((got.state.as_str(), got.next_at, got.done_by.as_deref()), ("retired", None, Some("system:campaign")));
    assert!(got.verified_at.is_some() && got.retired_at.is_some());

    // Notices: one per tenant, channel and purpose; a delivery marks the tenant notified.
    let to_notify = db.store.tenants_to_notify(cid, "initial", 10).await.unwrap();
    assert_eq!(to_notify, [(acme, "acme".to_string())]);
    let notice = |id| NoticeRow {
        id,
        campaign_id: cid,
        tenant_id: acme,
        tenant: "acme".into(),
        channel: "email".into(),
        purpose: "initial".into(),
        state: NoticeState::Pending,
        attempts: 0,
        next_at: Some(Timestamp::now()),
        error: None,
        link_id: None,
        created_at: Timestamp::now(),
        sent_at: None,
    };
    let nid = NoticeId::generate();
    apply(
        &db,
        vec![
            Some(WriteOp::QueueNotices(vec![notice(nid)])),
            Some(WriteOp::QueueNotices(vec![notice(NoticeId::generate())])),
        ],
    )
    .await;
    assert!(db.store.tenants_to_notify(cid, "initial", 10).await.unwrap().is_empty());
    let due = db.store.due_notices(Timestamp::now(), 10).await.unwrap();
    assert_eq!(due.iter().map(|n| n.id).collect::<Vec<_>>(), [nid]);
    let lid = LinkId::generate();
    let link = LinkRow {
        id: lid,
        campaign_id: cid,
        tenant_id: acme,
        secret_hash: vec![7; 32],
        expires_at: later,
        used_at: None,
        revoked_at: None,
        created_by: "system:campaign".into(),
        created_at: Timestamp::now(),
    };
    apply(&db, vec![Some(WriteOp::InsertLink(link.clone()))]).await;
    let sent = NoticeUpdate {
        id: nid,
        state: NoticeState::Sent,
        next_at: None,
        error: None,
        link_id: Some(lid),
        at: Timestamp::now(),
    };
    apply(&db, vec![Some(WriteOp::SetNotice(sent))]).await;
    assert!(db.store.due_notices(Timestamp::now(), 10).await.unwrap().is_empty());
    let n = &db.store.notices(cid).await.unwrap()[0];
    assert_eq!((n.state.as_str(), n.attempts, n.link_id), ("sent", 1, Some(lid)));
    assert_eq!(item(&db, mail).await.state.as_str(), "notified");
    assert_eq!(item(&db, app).await.state.as_str(), "notified");
    let outstanding = db.store.tenant_outstanding(cid, acme).await.unwrap();
    assert_eq!(outstanding.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["app", "mail"]);

    // Links: used once.
    assert!(apply(&db, vec![Some(WriteOp::UseLink { id: lid, at: Timestamp::now() })]).await[0].is_ok());
    let r = apply(&db, vec![Some(WriteOp::UseLink { id: lid, at: Timestamp::now() })]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{:?}", r[0]);
    let expired = LinkRow { id: LinkId::generate(), expires_at: now, ..link };
    apply(&db, vec![Some(WriteOp::InsertLink(expired.clone()))]).await;
    let r = apply(&db, vec![Some(WriteOp::UseLink { id: expired.id, at: Timestamp::now() })]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "an expired link: {:?}", r[0]);

    // A new current version stored by anyone moves a waiting item to rotated, due for a check.
    let WriteOp::PutVersion { mut credential, mut version, .. } = put(acme, "mail", 2, Some(mail)) else {
        unreachable!()
    };
    credential.kind = CredentialKind::Pop3;
    credential.fields = BTreeMap::from([("host".to_string(), "mail.acme.example".to_string())]);
    version.created_by = "link:x".into();
    apply(&db, vec![Some(WriteOp::PutVersion { credential, version, create: false })]).await;
    let rotated = |fp: u8| {
        Some(WriteOp::ItemsRotated {
            credential: mail,
            version: 2,
            fingerprint: vec![fp; 32],
            by: "link:x".into(),
            at: Timestamp::now(),
        })
    };
    // The put alone moves nothing; a secret version 1 held moves nothing either.
    assert!(apply(&db, vec![rotated(1)]).await[0].is_ok());
    assert_ne!(item(&db, mail).await.state.as_str(), "rotated");
    assert!(apply(&db, vec![rotated(2)]).await[0].is_ok());
    let got = item(&db, mail).await;
    assert_eq!((got.state.as_str(), got.done_by.as_deref()), ("rotated", Some("link:x")));
    assert_eq!(db.store.claim_items(Timestamp::now(), until, 10).await.unwrap()[0].name, "mail");

    // Finishing waits for every item.
    let finish = || Some(WriteOp::FinishCampaign { id: cid, at: Timestamp::now() });
    assert!(matches!(apply(&db, vec![finish()]).await[0], Err(StoreError::Conflict)));
    let close = |id, from: &'static [ItemState], state: ItemState| {
        Some(WriteOp::SetItem(ItemUpdate {
            campaign: cid,
            credential: id,
            from,
            state,
            error: None,
            next_at: None,
            done_by: Some("token:op".into()),
            note: (state == ItemState::Waived).then(|| "not ours".to_string()),
            stamp: (state == ItemState::Retired).then_some(ItemState::Retired),
            attempt: false,
            at: Timestamp::now(),
        }))
    };
    let r = apply(&db, vec![close(mail, &[ItemState::Notified], ItemState::Retired)]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "the item is not in that state: {:?}", r[0]);
    let blob = all.iter().find(|i| i.name == "blob").unwrap().credential_id;
    let r = apply(
        &db,
        vec![
            close(mail, &[ItemState::Rotated], ItemState::Retired),
            close(app, &[ItemState::Notified], ItemState::Waived),
            close(blob, &[ItemState::Pending], ItemState::Waived),
        ],
    )
    .await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(db.store.open_items(cid).await.unwrap(), 0);
    assert!(apply(&db, vec![finish()]).await[0].is_ok());
    let done = db.store.campaign(cid).await.unwrap().unwrap();
    assert_eq!(done.state.as_str(), "finished");
    let mut counts: Vec<(String, i64)> =
        db.store.item_counts(cid, false).await.unwrap().into_iter().map(|c| (c.state.to_string(), c.count)).collect();
    counts.sort();
    assert_eq!(counts, [("retired".to_string(), 2), ("waived".to_string(), 2)]);
    let by_tenant = db.store.item_counts(cid, true).await.unwrap();
    assert!(by_tenant.iter().all(|c| c.tenant.as_deref() == Some("acme")));

    // A closed incident takes no campaign.
    apply(&db, vec![Some(WriteOp::CloseIncident { id: incident.id, at: Timestamp::now() })]).await;
    let r = apply(&db, vec![Some(WriteOp::StartCampaign(campaign(CampaignId::generate())))]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{:?}", r[0]);
}

/// An audit event of `action` on `resource` by `principal`.
fn audit(action: &str, principal: &str, resource: &str, outcome: AuditOutcome) -> WriteRequest {
    let mut e = event(action);
    e.principal = principal.into();
    e.resource = resource.into();
    e.outcome = outcome;
    WriteRequest { op: None, audit: e }
}

/// The audit queries by resource and by principal give the same answers whether the events
/// are still past the deferred index's watermark (SQLite), already in it, or some of each.
async fn audit_queries_agree_across_the_index(db: Db) {
    // What every query should answer, kept alongside: (seq, action, principal, resource, outcome).
    let mut log: Vec<(i64, String, String, String, AuditOutcome)> = Vec::new();
    let resources = ["acme/x", "acme/y", "globex/x", "incident:1"];
    let principals = ["token:a", "token:b", "operator"];
    let outcomes = [AuditOutcome::Success, AuditOutcome::Denied, AuditOutcome::Success, AuditOutcome::Error];
    let append = |log: &mut Vec<_>, round: usize| {
        let mut reqs = Vec::new();
        for i in 0..40 {
            let n = round * 40 + i;
            let action = if n % 5 == 4 { "cred.show" } else { "cred.reveal" };
            let (p, r, o) = (principals[n % 3], resources[(n / 2) % 4], outcomes[n % 4]);
            log.push((log.len() as i64 + 1, action.to_string(), p.to_string(), r.to_string(), o));
            reqs.push(audit(action, p, r, o));
        }
        reqs
    };
    let check = |log: &[(i64, String, String, String, AuditOutcome)], db: &Db| {
        let log = log.to_vec();
        let store = db.store.clone();
        async move {
            let reveal =
                |e: &&(i64, String, String, String, AuditOutcome)| e.1 == "cred.reveal" && e.4 == AuditOutcome::Success;
            for r in resources {
                let want: Vec<i64> = log.iter().filter(|e| e.3 == r).map(|e| e.0).collect();
                let got: Vec<i64> = store.audit_of(r, 1000).await.unwrap().iter().map(|e| e.record.seq).collect();
                assert_eq!(got, want, "events about {r}");
                let limited = store.audit_of(r, 3).await.unwrap();
                assert_eq!(
                    limited.iter().map(|e| e.record.seq).collect::<Vec<_>>(),
                    want[..3],
                    "first three about {r}"
                );
            }
            for p in principals {
                let mut want = BTreeMap::<String, i64>::new();
                for e in log.iter().filter(reveal).filter(|e| e.2 == p) {
                    *want.entry(e.3.clone()).or_default() += 1;
                }
                let got: BTreeMap<String, i64> = store.reveals_by(p).await.unwrap().into_iter().collect();
                assert_eq!(got, want, "reveals by {p}");
            }
            let mut want = BTreeMap::<String, i64>::new();
            for e in log.iter().filter(reveal) {
                *want.entry(e.3.clone()).or_default() += 1;
            }
            let all = resources.iter().map(|r| r.to_string()).collect();
            let got: BTreeMap<String, i64> =
                store.reveal_counts(all, Timestamp::from_micros(0)).await.unwrap().into_iter().collect();
            assert_eq!(got, want, "reveal counts");
            let later = store.reveal_counts(vec!["acme/x".into()], Timestamp::from_micros(i64::MAX)).await.unwrap();
            assert!(later.is_empty(), "nothing revealed after the end of time: {later:?}");
        }
    };
    // Not indexed yet, then indexed, then some of each, then indexed again.
    db.store.apply(append(&mut log, 0), Arc::new(chain)).await.unwrap();
    check(&log, &db).await;
    indexed(&db).await;
    check(&log, &db).await;
    db.store.apply(append(&mut log, 1), Arc::new(chain)).await.unwrap();
    check(&log, &db).await;
    indexed(&db).await;
    check(&log, &db).await;
}

/// The SQLite WAL starts again from its beginning while writes keep coming: the background
/// checkpoint catches up with the writer and holds it for the last few frames, instead of the
/// WAL growing until the writer copies it all itself, holding every write meanwhile.
#[tokio::test]
async fn sqlite_wal_starts_again_under_a_steady_stream_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_file(&dir.path().join("t.db")).await;
    // The WAL header's checkpoint sequence (bytes 12..16), which SQLite moves on every start.
    let wal = dir.path().join("t.db-wal");
    let restarts = || {
        let mut header = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open(&wal).unwrap(), &mut header).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    let reqs = |i: usize| vec![audit("cred.reveal", &format!("token:t{i}"), "acme/x", AuditOutcome::Success)];
    db.store.apply(reqs(0), Arc::new(chain)).await.unwrap();
    let first = restarts();
    // Sixteen writers, one durable commit after another: the writer is never idle, so a
    // passive checkpoint (SQLite's, or a background thread's alone) never catches up with it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (store, stop) = (db.store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.apply(reqs(w), Arc::new(chain)).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let started_again = restarts() - first;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 1;
    for w in writers {
        written += w.await.unwrap();
    }
    // A background checkpoint every second that catches up with the writer starts the WAL again
    // about five times in 6 s; SQLite alone only when a checkpoint happens upon an idle writer,
    // or when the WAL passes CHECKPOINT_PAGES (160 MB): once in 6 s on the machine this was
    // written on, the WAL then at 165 MB (about 50 MB with the background's restarts).
    assert!(started_again >= 3, "the WAL started again {started_again} times in 6 s of writes");
    // Nothing was lost by it.
    assert_eq!(db.store.tree_head().await.unwrap().size, written);
}

/// The SQLite audit index is derived data: when it does not match its store (the store was
/// restored from an older copy, or the index file comes from another store), it starts over
/// instead of pointing at the wrong events.
#[tokio::test]
async fn sqlite_audit_index_starts_over_when_the_store_differs() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("t.db");
    let index_path = dir.path().join("t.db.audit-index");
    let open = || sqlite_file(&db_path);
    let write = |db: &Db, resource: &str, n: usize| {
        let reqs: Vec<WriteRequest> = (0..n)
            .map(|i| audit("cred.reveal", &format!("token:{resource}{i}"), resource, AuditOutcome::Success))
            .collect();
        let store = db.store.clone();
        async move { store.apply(reqs, Arc::new(chain)).await.unwrap() }
    };
    let seqs = |db: &Db, resource: &str| {
        let (store, resource) = (db.store.clone(), resource.to_owned());
        async move { store.audit_of(&resource, 100).await.unwrap().iter().map(|e| e.record.seq).collect::<Vec<_>>() }
    };

    // Restored from an older copy: the index reaches past the store's last event.
    let db = open().await;
    write(&db, "acme/x", 2).await;
    // A backup as an operator takes one: a single consistent file.
    let backup = dir.path().join("backup.db");
    rusqlite::Connection::open(&db_path).unwrap().execute("VACUUM INTO ?1", [backup.to_str().unwrap()]).unwrap();
    write(&db, "acme/x", 3).await;
    indexed(&db).await;
    assert_eq!(seqs(&db, "acme/x").await, [1, 2, 3, 4, 5]);
    drop(db);
    // Restored with the server stopped: the file replaced, its WAL and shared memory removed.
    std::fs::copy(&backup, &db_path).unwrap();
    for side in ["t.db-wal", "t.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(side));
    }
    let db = open().await;
    write(&db, "globex/y", 3).await;
    for round in 0..2 {
        assert_eq!(seqs(&db, "acme/x").await, [1, 2], "round {round}");
        assert_eq!(seqs(&db, "globex/y").await, [3, 4, 5], "round {round}");
        indexed(&db).await;
    }
    drop(db);

    // An index file from another store, whose event at the watermark differs.
    let other = tempfile::tempdir().unwrap();
    let db = sqlite_file(&other.path().join("o.db")).await;
    write(&db, "initech/z", 4).await;
    indexed(&db).await;
    drop(db);
    std::fs::copy(other.path().join("o.db.audit-index"), &index_path).unwrap();
    let db = open().await;
    for round in 0..2 {
        assert_eq!(seqs(&db, "acme/x").await, [1, 2], "round {round}");
        assert!(seqs(&db, "initech/z").await.is_empty(), "round {round}");
        assert_eq!(seqs(&db, "globex/y").await, [3, 4, 5], "round {round}");
        indexed(&db).await;
    }
    drop(db);

    // A damaged file: made afresh.
    std::fs::write(&index_path, vec![0x5a; 8192]).unwrap();
    let db = open().await;
    for round in 0..2 {
        assert_eq!(seqs(&db, "acme/x").await, [1, 2], "round {round}");
        assert_eq!(seqs(&db, "globex/y").await, [3, 4, 5], "round {round}");
        indexed(&db).await;
    }
}

/// A SQLite store closed cleanly, with its audit index kept, leaves its file and the index file
/// whole: their WALs checkpointed and removed.
#[tokio::test]
async fn sqlite_store_closes_into_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_file(&dir.path().join("t.db")).await;
    let reqs = (0..10).map(|_| audit("cred.reveal", "token:a", "acme/x", AuditOutcome::Success)).collect();
    db.store.apply(reqs, Arc::new(chain)).await.unwrap();
    indexed(&db).await;
    drop(db);
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["t.db", "t.db.audit-index", "t.db.lock"]);
}

/// The WAL is copied into the database file in the background while the store runs: the file
/// alone, read without its WAL, holds the events a second or so after they were written.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let db = sqlite_file(&path).await;
    let reqs = (0..25).map(|_| audit("cred.reveal", "token:a", "acme/x", AuditOutcome::Success)).collect();
    db.store.apply(reqs, Arc::new(chain)).await.unwrap();
    // Opened `immutable`, SQLite reads the database file only, not the WAL beside it.
    let in_file = || {
        let uri = format!("file:{}?immutable=1", path.display());
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let c = rusqlite::Connection::open_with_flags(uri, flags).unwrap();
        // Until the first checkpoint the file has not even the table.
        c.query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get::<_, i64>(0)).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while in_file() < 25 {
        assert!(std::time::Instant::now() < deadline, "the WAL was not checkpointed: {} events in the file", in_file());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(db);
}

/// New tenants and new credentials in one `All` (as an import writes them; PostgreSQL takes
/// them in multi-row statements) land as they would one by one: rows, versions, per-tenant
/// counts. A run with a name already taken fails with the same precise error, changing nothing.
async fn new_tenants_and_credentials_land_together(db: Db) {
    let acme = create_tenant(&db, "acme", "uk").await;
    let (globex, globex_kek) = tenant("globex", "us");
    let (initech, initech_kek) = tenant("initech", "us");
    let mut ops = vec![
        WriteOp::CreateTenant { tenant: globex.clone(), kek: globex_kek },
        WriteOp::CreateTenant { tenant: initech.clone(), kek: initech_kek },
    ];
    for (t, n) in [(acme, 3), (globex.id, 2), (initech.id, 4)] {
        ops.extend((0..n).map(|i| put(t, &format!("c{i}"), 1, None)));
    }
    let r = apply(&db, vec![Some(WriteOp::All(ops))]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
    for (name, n) in [("acme", 3), ("globex", 2), ("initech", 4)] {
        let tenant = TenantName::parse(name).unwrap();
        for i in 0..n {
            let row = db.store.reveal_row(&tenant, &format!("c{i}")).await.unwrap().expect("stored");
            assert_eq!((row.version, row.ciphertext.len()), (1, 41), "{name}/c{i}");
        }
    }
    let counts = db.store.counts().await.unwrap();
    assert_eq!((counts.tenants, counts.credentials, counts.versions), (3, 9, 9));
    let names = ["c0", "c2", "zz"].map(String::from).to_vec();
    let mut found: Vec<String> =
        db.store.credentials_named(acme, names).await.unwrap().into_iter().map(|c| c.name).collect();
    found.sort();
    assert_eq!(found, ["c0", "c2"], "live credentials among the names, of that tenant only");
    let id = IncidentId::generate();
    let op = WriteOp::OpenIncident {
        incident: open_incident(id, &["all"], None),
        scope: vec![ScopeQuery::AllTenants { bit: 0 }],
    };
    assert!(apply(&db, vec![Some(op)]).await[0].is_ok());
    let by_region: Vec<(String, i64)> =
        db.store.incident(id).await.unwrap().unwrap().counts.by_region.into_iter().collect();
    assert_eq!(by_region, [("uk".to_string(), 3), ("us".to_string(), 6)], "per-tenant counts");

    // A taken credential name in the middle of a run: the precise error, and nothing of the run.
    let (hooli, hooli_kek) = tenant("hooli", "eu");
    let ops = vec![
        WriteOp::CreateTenant { tenant: hooli.clone(), kek: hooli_kek },
        put(hooli.id, "c0", 1, None),
        put(acme, "c1", 1, None),
        put(acme, "c9", 1, None),
    ];
    let r = apply(&db, vec![Some(WriteOp::All(ops))]).await;
    assert!(matches!(r[0], Err(StoreError::Conflict)), "{:?}", r[0]);
    // A taken tenant name: that error.
    let (again, again_kek) = tenant("globex", "us");
    let ops = vec![WriteOp::CreateTenant { tenant: again, kek: again_kek }, put(acme, "c8", 1, None)];
    let r = apply(&db, vec![Some(WriteOp::All(ops))]).await;
    assert!(matches!(r[0], Err(StoreError::AlreadyExists { entity: "tenant", .. })), "{:?}", r[0]);
    let after = db.store.counts().await.unwrap();
    assert_eq!((after.tenants, after.credentials, after.versions), (3, 9, 9), "nothing of the failed runs");
}

/// The events' leaves, as anyone holding an export would hash them.
async fn leaves_of(db: &Db) -> Vec<rekey_tlog::Hash> {
    let mut leaves = Vec::new();
    let mut after = 0;
    loop {
        let page = db.store.audit_page(after, 500).await.unwrap();
        let Some(last) = page.last() else { return leaves };
        after = last.record.seq;
        leaves.extend(page.iter().map(|e| rekey_tlog::leaf_hash(&e.record.canonical_bytes())));
    }
}

/// A proof read from the store the way the server reads it: the nodes it needs, in one call.
async fn from_store<T>(db: &Db, build: impl Fn(NodeSource<'_>) -> T) -> T {
    with_tree_nodes(db.store.as_ref(), build).await.unwrap()
}

async fn audit_tree_grows_with_the_log_and_proves_it(db: Db) {
    use rekey_tlog::tree::{consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion};
    // Batches of uneven sizes, across the stored levels' boundaries (256, 512).
    for n in [1usize, 7, 248, 1, 255, 300] {
        apply(&db, (0..n).map(|_| None).collect()).await;
        let head = db.store.tree_head().await.unwrap();
        assert_eq!(head.size as i64, db.store.audit_head().await.unwrap().unwrap().seq, "the tree covers every event");
    }
    let leaves = leaves_of(&db).await;
    let size = leaves.len() as u64;
    assert_eq!(size, 812);
    let mut mine = rekey_tlog::Frontier::new();
    leaves.iter().for_each(|l| {
        mine.push(*l);
    });
    let head = db.store.tree_head().await.unwrap();
    assert_eq!(head.root, mine.root(), "the stored head is the head of the events' leaves");
    for (index, at) in [(0u64, 1u64), (0, size), (255, 256), (256, 300), (511, 812), (811, 812), (400, 700)] {
        let at_root = from_store(&db, |src| root(at, src).unwrap()).await;
        let proof = from_store(&db, |src| inclusion_proof(index, at, src).unwrap()).await;
        assert!(verify_inclusion(index, at, &leaves[index as usize], &proof, &at_root), "event {} in {at}", index + 1);
    }
    for (old, new) in [(1u64, size), (256, 512), (300, 812), (511, 513), (812, 812)] {
        let (r1, r2) = (
            from_store(&db, |src| root(old, src).unwrap()).await,
            from_store(&db, |src| root(new, src).unwrap()).await,
        );
        let proof = from_store(&db, |src| consistency_proof(old, new, src).unwrap()).await;
        assert!(verify_consistency(old, new, &r1, &r2, &proof), "{old} → {new}");
    }
    // A subtree the log does not complete yet is not there.
    let r = db.store.tree_nodes(vec![rekey_tlog::Node { level: 10, index: 0 }]).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

async fn audit_tree_is_rebuilt_for_a_store_written_before_it(db: Db) {
    apply(&db, (0..600).map(|_| None).collect()).await;
    let before = db.store.tree_head().await.unwrap();
    // What a store written before the tree looks like: no leaves, no nodes, an empty edge.
    let forget = "UPDATE audit_events SET leaf = NULL; DELETE FROM audit_tree; \
                  UPDATE audit_head SET tree_size = 0, tree_edge = ";
    let Db { store, url, _dir } = db;
    drop(store);
    if let Some(path) = url.strip_prefix("sqlite://") {
        assert!(rekey_store::wait_until_closed(std::time::Duration::from_secs(10)));
        rusqlite::Connection::open(path).unwrap().execute_batch(&format!("{forget} x''")).unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(&format!("{forget} '\\x'::bytea")).execute(&mut conn).await.unwrap();
    }
    let store = SqlStore::open(&StoreOptions { url: url.clone(), max_connections: 4 }).await.unwrap();
    assert_eq!(store.tree_head().await.unwrap(), before, "the tree is hashed in again when the store opens");
    let db = Db { store: Arc::new(store), url, _dir };
    apply(&db, vec![None]).await;
    assert_eq!(db.store.tree_head().await.unwrap().size, 601);
}

fn alert(key: &str, seq: i64) -> AlertRow {
    let now = Timestamp::now();
    AlertRow {
        id: AlertId::generate(),
        key: key.into(),
        rule: "decoy".into(),
        severity: rekey_types::Severity::Critical,
        principal: "token:x".into(),
        source: "192.0.2.1".into(),
        summary: "a sight of a decoy".into(),
        resources: vec!["acme/d".into()],
        first_seq: seq,
        last_seq: seq,
        first_seen: now,
        last_seen: now,
        events: 1,
        state: AlertState::Open,
        action: rekey_types::RuleAction::None,
        action_outcome: None,
        handled_by: None,
        handled_at: None,
        note: None,
        incident: None,
        notify_attempts: 0,
        notified_at: None,
        created_at: now,
    }
}

/// An alert's key is stored once, whoever stores it again (another server evaluating the same
/// log); the detector's position moves with it and never back; an alert is handled once; its
/// notice is retried until delivered or out of attempts; a token's baseline replaces the one
/// before; a decoy is listed apart and never among the credentials the scheduler checks.
async fn alerts_are_stored_once_by_key_and_decoys_are_kept_apart(db: Db) {
    let first = alert("decoy:token:x:7", 7);
    let stored =
        db.store.insert_alerts("detector", 10, vec![first.clone(), alert("decoy:token:y:8", 8)]).await.unwrap();
    assert_eq!(stored.len(), 2);
    let again = alert("decoy:token:x:7", 7);
    assert!(db.store.insert_alerts("detector", 9, vec![again.clone()]).await.unwrap().is_empty());
    assert_eq!(db.store.siem_cursor("detector").await.unwrap(), 10);
    assert!(db.store.alert(again.id).await.unwrap().is_none());
    assert_eq!(db.store.alert(first.id).await.unwrap().unwrap(), first);
    assert_eq!(db.store.alerts(None, 10).await.unwrap().len(), 2);

    let handle = |state, incident| WriteOp::HandleAlert {
        id: first.id,
        state,
        by: "token:op".into(),
        at: Timestamp::now(),
        note: Some("checked".into()),
        incident,
    };
    let r = apply(&db, vec![Some(handle(AlertState::Acknowledged, None))]).await;
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let r = apply(&db, vec![Some(handle(AlertState::Escalated, Some(IncidentId::generate())))]).await;
    assert!(matches!(r[0], Err(StoreError::NotFound { .. })), "handled once: {:?}", r[0]);
    assert_eq!(db.store.alerts(Some(AlertState::Open), 10).await.unwrap().len(), 1);
    let acked = db.store.alert(first.id).await.unwrap().unwrap();
    assert_eq!((acked.state, acked.note.as_deref()), (AlertState::Acknowledged, Some("checked")));

    assert_eq!(db.store.unnotified_alerts(2, 10).await.unwrap().len(), 2);
    db.store.alert_notified(first.id, None).await.unwrap();
    db.store.alert_notified(first.id, None).await.unwrap();
    let pending = db.store.unnotified_alerts(2, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "out of attempts");
    db.store.alert_notified(pending[0].id, Some(Timestamp::now())).await.unwrap();
    assert!(db.store.unnotified_alerts(2, 10).await.unwrap().is_empty());

    let base = |busiest| BaselineRow { first_at: 7, hours: 0b1010, busiest };
    db.store.save_baselines(vec![("token:a".into(), base(3)), ("token:b".into(), base(4))]).await.unwrap();
    db.store.save_baselines(vec![("token:a".into(), base(9))]).await.unwrap();
    let mut stored = db.store.baselines().await.unwrap();
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(stored, [("token:a".to_owned(), base(9)), ("token:b".to_owned(), base(4))], "the latest of each token");

    let tenant = create_tenant(&db, "acme", "uk").await;
    let decoy = CredentialId::generate();
    let plant = WriteOp::PlantDecoy { credential: decoy, tenant, by: "token:op".into(), at: Timestamp::now() };
    let r = apply(
        &db,
        vec![Some(WriteOp::All(vec![put(tenant, "d", 1, Some(decoy)), plant])), Some(put(tenant, "real", 1, None))],
    )
    .await;
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let decoys = db.store.decoys(Some(tenant)).await.unwrap();
    assert_eq!(decoys.len(), 1);
    assert_eq!((decoys[0].tenant.as_str(), decoys[0].name.as_str()), ("acme", "d"));
    assert!(db.store.decoys(Some(TenantId::generate())).await.unwrap().is_empty());
    // Of kind ldap both, so that the scheduler would check them: only the real one is due.
    edit(&db, "UPDATE credentials SET kind = 'ldap'").await;
    let stale = db.store.stale_health(Timestamp::now(), 100).await.unwrap();
    assert_eq!(stale.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["real"]);
}
