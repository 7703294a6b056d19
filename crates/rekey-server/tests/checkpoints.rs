//! Signed checkpoints of the audit log, witnesses, and rollback found after a restart, on SQLite
//! and PostgreSQL (docs/audit.md).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{Method, StatusCode};
use common::{assert_error, fresh_postgres_database, pg_exec, TestApp};
use rekey_server::witness::{serve, verifier_key, SigningKey, WitnessOptions};
use rekey_server::Config;
use rekey_tlog::cosignature::{verify_lines, AddCheckpoint};
use rekey_tlog::tree::consistency_proof;
use rekey_tlog::{leaf_hash, note, Checkpoint, Frontier, Hash, VerifierKey};
use serde_json::{json, Value};

/// Runs SQL on the app's store: the SQLite file, or the PostgreSQL database at `url`.
fn exec(t: &TestApp, url: &Option<String>, sql: &str) {
    match url {
        None => t.db().execute_batch(sql).unwrap(),
        Some(url) => pg_exec(url, sql),
    }
}

fn witness_dir(dir: &std::path::Path) -> impl Fn(&mut Config) + Clone {
    let dir = dir.to_path_buf();
    move |c: &mut Config| {
        c.audit.witness_dirs = vec![dir.clone()];
        c.audit.checkpoint_every = "off".into();
    }
}

/// The checkpoint's note opens with the key it states and says what the view says.
fn assert_signed(v: &Value) -> VerifierKey {
    let key = VerifierKey::parse(v["key"].as_str().unwrap()).unwrap();
    let (text, _) = note::open(v["note"].as_str().unwrap(), &key).unwrap();
    let c = Checkpoint::parse(text).unwrap();
    assert_eq!(c.origin, key.name);
    assert_eq!(c.size, v["size"].as_u64().unwrap());
    assert_eq!(hex::encode(c.root), v["root"].as_str().unwrap());
    key
}

async fn puts(t: &TestApp, from: usize, n: usize) {
    for i in from..from + n {
        assert_eq!(t.put(&format!("acme/c{i}"), "x").await.status, StatusCode::OK);
    }
}

/// A log rolled back in the database (events, tree and checkpoints together, as a restored
/// backup or an attacker with the database would leave it) is found at the next start by the
/// checkpoint in the witness directory: writes are refused with `audit_rollback`, the audit log
/// can still be read, and once an operator accepts, writes resume and stay allowed after the
/// next restart. A rewritten event is found by the store's own checkpoint.
async fn rollback_and_tampering_are_found_after_a_restart(url: Option<String>) {
    let witness = tempfile::tempdir().unwrap();
    let tweak = witness_dir(witness.path());
    let t = TestApp::spawn_configured(url.clone(), tweak.clone()).await;
    t.tenant("acme", "uk").await;
    puts(&t, 0, 3).await;
    let first = t.root(Method::POST, "/v1/audit/checkpoint", None).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let key = assert_signed(&first.body);
    assert!(key.name.starts_with("rekey/audit/"), "{}", key.name);
    // What a backup taken now holds.
    exec(
        &t,
        &url,
        "CREATE TABLE bak_head AS SELECT * FROM audit_head;
         CREATE TABLE bak_tree AS SELECT * FROM audit_tree;
         CREATE TABLE bak_checkpoints AS SELECT id FROM audit_checkpoints;",
    );
    puts(&t, 3, 4).await;
    let second = t.root(Method::POST, "/v1/audit/checkpoint", None).await.body;
    assert!(second["size"].as_u64() > first.body["size"].as_u64());
    assert_eq!(std::fs::read_dir(witness.path()).unwrap().count(), 2, "one file per checkpoint");
    // Restored: the log, its tree and its checkpoints as they were.
    exec(
        &t,
        &url,
        "DELETE FROM audit_events WHERE seq > (SELECT seq FROM bak_head);
         DELETE FROM audit_tree;
         INSERT INTO audit_tree SELECT * FROM bak_tree;
         UPDATE audit_head SET seq = (SELECT seq FROM bak_head), mac = (SELECT mac FROM bak_head),
             tree_size = (SELECT tree_size FROM bak_head), tree_edge = (SELECT tree_edge FROM bak_head);
         DELETE FROM audit_cosignatures WHERE checkpoint NOT IN (SELECT id FROM bak_checkpoints);
         DELETE FROM audit_checkpoints WHERE id NOT IN (SELECT id FROM bak_checkpoints);",
    );
    let auditor = t.token(json!({"role": "auditor"})).await;
    let t = t.restart_configured(url.clone(), tweak.clone()).await;
    let r = t.put("acme/after", "y").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_rollback");
    // Reading the log still works, and says why writes are refused.
    let v = t.call(Method::GET, "/v1/audit/checkpoint", Some(&auditor), None).await;
    assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
    assert!(v.body["rollback"].as_str().unwrap().contains("a signed checkpoint states"), "{:?}", v.body);
    // No checkpoint is signed over the rolled-back log.
    let r = t.root(Method::POST, "/v1/audit/checkpoint", None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_rollback");
    let events = t.root(Method::GET, "/v1/audit/events?n=5", None).await.body;
    assert!(events.as_array().unwrap().iter().any(|e| e["action"] == "audit.rollback"), "{events}");
    assert!(metrics_of(&t).await.contains("rekey_audit_rollback 1"));
    // Only an operator decides; a reason is required.
    let r = t.call(Method::POST, "/v1/audit/accept", Some(&auditor), Some(json!({"reason": "restored"}))).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t.root(Method::POST, "/v1/audit/accept", Some(json!({"reason": ""}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = t.root(Method::POST, "/v1/audit/accept", Some(json!({"reason": "restored the 02:00 backup"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["accepted"], "restored the 02:00 backup");
    assert!(r.body["rollback"].is_null());
    assert_signed(&r.body);
    assert_eq!(t.put("acme/after", "y").await.status, StatusCode::OK);
    let m = metrics_of(&t).await;
    assert!(m.contains("rekey_audit_rollback 0") && !m.contains("rekey_audit_checkpoint_size 0"), "{m}");
    let r = t.root(Method::POST, "/v1/audit/accept", Some(json!({"reason": "again"}))).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    // The acceptance holds across a restart: the newest checkpoint everywhere is the accepted one.
    let t = t.restart_configured(url.clone(), tweak.clone()).await;
    assert_eq!(t.put("acme/later", "z").await.status, StatusCode::OK);
    // A rewritten event: the store's checkpoint no longer matches the log's tree.
    assert_eq!(t.root(Method::POST, "/v1/audit/checkpoint", None).await.status, StatusCode::OK);
    exec(&t, &url, "UPDATE audit_events SET leaf = (SELECT leaf FROM audit_events WHERE seq = 1) WHERE seq = 2");
    let t = t.restart_configured(url.clone(), tweak).await;
    let r = t.put("acme/tampered", "z").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_rollback");
    let v = t.root(Method::GET, "/v1/audit/checkpoint", None).await.body;
    assert!(v["rollback"].as_str().unwrap().contains("do not hash to the root"), "{v}");
}

#[tokio::test]
async fn rollback_and_tampering_are_found_after_a_restart_on_sqlite() {
    rollback_and_tampering_are_found_after_a_restart(None).await;
}

#[tokio::test]
async fn rollback_and_tampering_are_found_after_a_restart_on_postgres() {
    let Some(url) = fresh_postgres_database().await else { return };
    rollback_and_tampering_are_found_after_a_restart(Some(url)).await;
}

/// A checkpoint file in the witness directory that this log's key did not sign (another
/// database's, or a forgery) is a finding too.
#[tokio::test]
async fn a_foreign_checkpoint_in_the_witness_directory_refuses_writes() {
    let witness = tempfile::tempdir().unwrap();
    let tweak = witness_dir(witness.path());
    let other = TestApp::spawn_configured(None, tweak.clone()).await;
    assert_eq!(other.root(Method::POST, "/v1/audit/checkpoint", None).await.status, StatusCode::OK);
    drop(other);
    let t = TestApp::spawn_configured(None, tweak).await;
    let r = t.root(Method::POST, "/v1/tenants", Some(json!({"name": "acme", "region": "uk"}))).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_rollback");
    let v = t.root(Method::GET, "/v1/sys/status", None).await.body;
    assert!(v["audit_rollback"].as_str().unwrap().contains("does not verify with this log's key"), "{v}");
    assert_error(
        &t.root(Method::GET, "/v1/audit/checkpoint", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_rollback",
    );
}

/// Starts a witness on a free loopback port; answers its URL and verifier key.
async fn start_witness(logs: Vec<VerifierKey>, state: PathBuf) -> (String, VerifierKey) {
    let key = SigningKey::generate().unwrap();
    let verifier = verifier_key("witness.test/w1", &key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(serve(WitnessOptions { listen, name: "witness.test/w1".into(), key, logs, state_dir: state }));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (format!("http://{listen}/"), verifier)
}

/// A Rekey configured with a witness gets each checkpoint cosigned, the first from size 0 and
/// each later one with a consistency proof from the last; the cosignature is stored and shown.
#[tokio::test]
async fn a_witness_cosigns_each_consistent_checkpoint() {
    let t = TestApp::spawn_configured(None, |c| c.audit.checkpoint_every = "off".into()).await;
    let key = VerifierKey::parse(t.root(Method::GET, "/v1/audit/checkpoint", None).await.body["key"].as_str().unwrap())
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let (url, witness) = start_witness(vec![key.clone()], state.path().to_path_buf()).await;
    let w = witness.to_string();
    let t = t
        .restart_configured(None, move |c| {
            c.audit.checkpoint_every = "off".into();
            c.audit.witnesses = vec![rekey_server::config::WitnessConfig { url, key: w }];
        })
        .await;
    t.tenant("acme", "uk").await;
    for round in 0..3 {
        puts(&t, round * 2, 2).await;
        let v = t.root(Method::POST, "/v1/audit/checkpoint", None).await.body;
        assert_signed(&v);
        assert_eq!(v["cosignatures"][0]["witness"], "witness.test/w1", "round {round}: {v}");
        let note = v["note"].as_str().unwrap();
        let (text, others) = note::open(note, &key).unwrap();
        assert_eq!(others.len(), 1, "the log's signature and the witness's cosignature");
        let cosig_lines: String =
            note.lines().filter(|l| l.starts_with("\u{2014} witness.test/w1 ")).map(|l| format!("{l}\n")).collect();
        let found = verify_lines(text, &cosig_lines, std::slice::from_ref(&witness)).unwrap();
        assert_eq!(found.len(), 1, "round {round}");
    }
}

/// The witness itself, driven with a log key of the test's: it cosigns a first checkpoint and
/// a consistent successor, and refuses what the protocol says it must.
#[tokio::test]
async fn the_witness_refuses_inconsistent_checkpoints() {
    let log = SigningKey::generate().unwrap();
    let log_key = VerifierKey::new("log.test/audit", log.public()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (url, witness) = start_witness(vec![log_key.clone()], state.path().to_path_buf()).await;
    let leaves =
        |tag: &str, n: u64| -> Vec<Hash> { (0..n).map(|i| leaf_hash(format!("{tag}{i}").as_bytes())).collect() };
    let head = |leaves: &[Hash]| {
        let mut f = Frontier::new();
        for l in leaves {
            f.push(*l);
        }
        f.root()
    };
    let signed = |size: u64, root: Hash| {
        let text = Checkpoint { origin: log_key.name.clone(), size, root, extensions: vec![] }.text();
        note::sign(&text, &log_key, |m| log.sign(m)).unwrap()
    };
    let proof = |all: &[Hash], old: u64, new: u64| -> Vec<Hash> {
        let mut f = Frontier::new();
        let mut nodes = std::collections::HashMap::new();
        for (i, l) in all.iter().enumerate().take(new as usize) {
            nodes.insert(rekey_tlog::Node { level: 0, index: i as u64 }, *l);
            for (n, h) in f.push(*l) {
                nodes.insert(n, h);
            }
        }
        consistency_proof(old, new, |n| Ok::<_, ()>(nodes[&n])).unwrap()
    };
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let post = |body: String| post_raw(addr.clone(), body);
    let a = leaves("a", 8);
    let first = signed(3, head(&a[..3]));
    let (status, _, body) = post(AddCheckpoint { old: 0, proof: vec![], note: first.clone() }.body()).await;
    assert_eq!(status, 200, "{body}");
    let text = note::open(&first, &log_key).unwrap().0;
    assert_eq!(verify_lines(text, &body, std::slice::from_ref(&witness)).unwrap().len(), 1);
    // A wrong old size: 409 with the size held.
    let next = signed(8, head(&a));
    let (status, ctype, body) = post(AddCheckpoint { old: 0, proof: vec![], note: next.clone() }.body()).await;
    assert_eq!((status, ctype.as_str(), body.as_str()), (409, "text/x.tlog.size", "3\n"));
    // A proof from another history: 422.
    let b = leaves("b", 8);
    let forked = signed(8, head(&b));
    let (status, _, _) = post(AddCheckpoint { old: 3, proof: proof(&b, 3, 8), note: forked }.body()).await;
    assert_eq!(status, 422);
    // The same size with another root: 409 without a size.
    let (status, ctype, _) = post(AddCheckpoint { old: 3, proof: vec![], note: signed(3, head(&b[..3])) }.body()).await;
    assert_eq!(status, 409);
    assert_ne!(ctype, "text/x.tlog.size");
    // Unsigned by the log's key: 403; an unknown origin: 404; an old size above the new: 400.
    let stranger = SigningKey::generate().unwrap();
    let forged = note::sign(
        &Checkpoint { origin: log_key.name.clone(), size: 8, root: head(&a), extensions: vec![] }.text(),
        &VerifierKey::new("log.test/audit", stranger.public()).unwrap(),
        |m| stranger.sign(m),
    )
    .unwrap();
    assert_eq!(post(AddCheckpoint { old: 3, proof: proof(&a, 3, 8), note: forged }.body()).await.0, 403);
    let other = VerifierKey::new("other.test/audit", log.public()).unwrap();
    let unknown = note::sign(
        &Checkpoint { origin: "other.test/audit".into(), size: 8, root: head(&a), extensions: vec![] }.text(),
        &other,
        |m| log.sign(m),
    )
    .unwrap();
    assert_eq!(post(AddCheckpoint { old: 3, proof: proof(&a, 3, 8), note: unknown }.body()).await.0, 404);
    assert_eq!(post(AddCheckpoint { old: 9, proof: vec![], note: next.clone() }.body()).await.0, 400);
    assert_eq!(post("old 3\n\nnot a note".into()).await.0, 400);
    // Nothing refused changed what it holds: the consistent successor is cosigned.
    let (status, _, body) = post(AddCheckpoint { old: 3, proof: proof(&a, 3, 8), note: next.clone() }.body()).await;
    assert_eq!(status, 200, "{body}");
    // And a rollback to the first is refused from then on.
    let (status, _, body) = post(AddCheckpoint { old: 3, proof: vec![], note: first }.body()).await;
    assert_eq!((status, body.as_str()), (409, "8\n"));
}

/// One `POST /add-checkpoint` over a plain connection: the status, the content type, the body.
async fn post_raw(addr: String, body: String) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

async fn metrics_of(t: &TestApp) -> String {
    String::from_utf8(t.call(Method::GET, "/metrics", None, None).await.raw).unwrap()
}
