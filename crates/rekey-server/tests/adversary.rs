//! The custody adversary suite: a tenant administrator (and a database writer) tries to move a
//! stored secret to a target of its choosing, or to put a stolen one back in service. Every
//! target is a listener that records each byte it receives (`common/recorder.rs`); each case is
//! named after the attack and asserts that the attacker's listener never holds the real secret,
//! in any encoding its protocol would give it.
//!
//! Each attack first shows that the attacker's listener does receive what the server sends it
//! (a junk secret the attacker stored itself), so that "the secret never arrived" cannot pass
//! because the listener or the protocol failed.

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use axum::http::{Method, StatusCode};
use common::{assert_error, fresh_postgres_database, pg_exec, Reply, TestApp};
use recorder::{Recorder, Speaks};
use serde_json::{json, Value};

/// The real secret every case protects.
const REAL: &str = "REAL-8b1c0f7e2d-secret";
/// What the attacker stores itself (it knows it anyway).
const JUNK: &str = "JUNK-attacker-own";

async fn spawn() -> TestApp {
    spawn_on(None).await
}

async fn spawn_on(store: Option<String>) -> TestApp {
    TestApp::spawn_configured(store, |c| {
        c.scheduler.interval = "off".into();
        c.campaign.interval = "off".into();
        c.connectors.connect_timeout = "2s".into();
        c.connectors.timeout = "4s".into();
        c.rotation.grace = "0s".into();
    })
    .await
}

/// The kinds of target an attacker may try to point a secret at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Ldap,
    Pop3,
    Smtp,
    /// An Entra application's OAuth token endpoint.
    TokenUrl,
    /// An Entra application's Microsoft Graph endpoint (where rotation registers a secret).
    GraphUrl,
}

impl Target {
    const ALL: [Target; 5] = [Target::Ldap, Target::Pop3, Target::Smtp, Target::TokenUrl, Target::GraphUrl];

    fn speaks(self) -> Speaks {
        match self {
            Target::Ldap => Speaks::Ldap,
            Target::Pop3 => Speaks::Pop3,
            Target::Smtp => Speaks::Smtp,
            Target::TokenUrl | Target::GraphUrl => Speaks::Http,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Target::Ldap => "ldap",
            Target::Pop3 => "pop3",
            Target::Smtp => "smtp",
            Target::TokenUrl | Target::GraphUrl => "entra-app",
        }
    }

    /// Whether Rekey rotates this kind itself (so `rotate` sends the secret too).
    fn rotatable(self) -> bool {
        matches!(self, Target::Ldap | Target::TokenUrl | Target::GraphUrl)
    }

    /// Fields that point the credential at `port` (the Graph case keeps its token endpoint at
    /// `token_port` and moves only `graph_url`).
    fn fields(self, port: u16, token_port: u16) -> Value {
        match self {
            Target::Ldap => json!({
                "url": format!("ldap://127.0.0.1:{port}"), "tls": "none",
                "bind_dn": "cn=svc,ou=people,dc=acme,dc=example"
            }),
            Target::Pop3 | Target::Smtp => {
                json!({"host": "127.0.0.1", "port": port.to_string(), "tls": "none", "user": "svc@acme.example"})
            }
            Target::TokenUrl => json!({
                "token_url": format!("http://127.0.0.1:{port}/token"), "client_id": "11111111-2222-3333-4444-555555555555",
                "scope": "https://graph.microsoft.com/.default", "app_object_id": "obj-1", "auth": "secret",
                "graph_url": format!("http://127.0.0.1:{token_port}/graph")
            }),
            Target::GraphUrl => json!({
                "token_url": format!("http://127.0.0.1:{token_port}/token"), "client_id": "11111111-2222-3333-4444-555555555555",
                "scope": "https://graph.microsoft.com/.default", "app_object_id": "obj-1", "auth": "secret",
                "graph_url": format!("http://127.0.0.1:{port}/graph")
            }),
        }
    }
}

/// One tenant, its administrator's token, a credential holding [`REAL`] at a legitimate
/// target, and the attacker's listener.
struct Scene {
    t: TestApp,
    admin: String,
    target: Target,
    legit: Recorder,
    attacker: Recorder,
    /// Where an Entra app's token endpoint stays when the Graph URL is the one attacked.
    token: Recorder,
}

impl Scene {
    async fn new(target: Target) -> Self {
        Self::new_on(target, None).await
    }

    async fn new_on(target: Target, store: Option<String>) -> Self {
        let t = spawn_on(store).await;
        t.tenant("acme", "uk").await;
        let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
        let legit = Recorder::start(target.speaks()).await;
        let attacker = Recorder::start(target.speaks()).await;
        let token = Recorder::start(Speaks::Http).await;
        let scene = Self { t, admin, target, legit, attacker, token };
        let r = scene.put_as(&scene.t.root.clone(), scene.legit.port, REAL).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        scene
    }

    fn path(&self) -> &'static str {
        "/v1/tenants/acme/credentials/c"
    }

    async fn put_as(&self, token: &str, port: u16, secret: &str) -> Reply {
        let body =
            json!({"kind": self.target.kind(), "fields": self.target.fields(port, self.token.port), "secret": secret});
        self.t.call(Method::PUT, self.path(), Some(token), Some(body)).await
    }

    async fn admin(&self, method: Method, what: &str, body: Option<Value>) -> Reply {
        self.t.call(method, &format!("{}{what}", self.path()), Some(&self.admin), body).await
    }

    /// Everything that sends the current secret out: verify, rotate (where Rekey rotates), and
    /// a scheduler pass.
    async fn send_everything(&self) {
        self.admin(Method::POST, "/verify", None).await;
        if self.target.rotatable() {
            self.admin(Method::POST, "/rotate", None).await;
        }
        self.t.app.keeper.vault().unwrap().scheduler_pass().await.unwrap();
    }

    /// The attacker's listener never received the real secret.
    fn assert_real_never_left(&self, what: &str) {
        assert!(!self.attacker.saw(REAL), "{what}: the real secret reached the attacker's {:?} listener", self.target);
    }
}

/// The audit log as text (the last 5,000 events).
async fn audit_text(t: &TestApp) -> String {
    let r = t.root(Method::GET, "/v1/audit/events?n=5000", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.to_string()
}

/// put (junk secret, attacker's target) → rollback to the real secret's version → verify,
/// rotate, scheduler: the rollback restores the version's own target, so the real secret goes
/// only to the legitimate one.
#[tokio::test]
async fn put_junk_at_attacker_then_rollback_then_verify_rotate_and_scheduler() {
    for target in Target::ALL {
        let s = Scene::new(target).await;
        let r = s.put_as(&s.admin.clone(), s.attacker.port, JUNK).await;
        assert_eq!(r.status, StatusCode::OK, "{target:?}: {:?}", r.body);
        // Control: what is sent goes to the attacker's listener while its junk is current.
        s.admin(Method::POST, "/verify", None).await;
        if target == Target::GraphUrl {
            s.admin(Method::POST, "/rotate", None).await;
            assert!(s.token.saw(JUNK), "{target:?}: the token endpoint saw the junk secret");
        } else {
            assert!(s.attacker.saw(JUNK), "{target:?}: the attacker's listener records what it is sent");
        }
        let r = s.admin(Method::POST, "/rollback", Some(json!({"to": 1}))).await;
        assert_eq!(r.status, StatusCode::OK, "{target:?}: {:?}", r.body);
        let attacker_bytes = s.attacker.received().len();
        s.send_everything().await;
        s.assert_real_never_left("rollback");
        assert_eq!(
            s.attacker.received().len(),
            attacker_bytes,
            "{target:?}: nothing reached the attacker after the rollback"
        );
        if target != Target::GraphUrl {
            assert!(s.legit.saw(REAL), "{target:?}: the rolled-back secret went to the target it was stored for");
        }
        let show = s.admin(Method::GET, "", None).await;
        let fields = &show.body["fields"];
        assert_eq!(
            fields,
            &s.target.fields(s.legit.port, s.token.port),
            "{target:?}: the rollback restored the fields"
        );
    }
}

/// A tenant admin may not send an existing secret elsewhere: `retarget` is an operator's act,
/// and a put that changes the target needs a new secret (which it then knows anyway).
#[tokio::test]
async fn retarget_as_tenant_admin_is_refused_and_sends_nothing() {
    for target in Target::ALL {
        let s = Scene::new(target).await;
        let moved = s.target.fields(s.attacker.port, s.token.port);
        let r = s.admin(Method::POST, "/retarget", Some(json!({"set": moved}))).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        s.send_everything().await;
        assert_eq!(s.attacker.connections(), 0, "{target:?}: nothing connected to the attacker");
        s.assert_real_never_left("retarget");
    }
}

/// An operator may retarget: the same secret, a new version, the old and new target audited.
#[tokio::test]
async fn retarget_by_an_operator_moves_the_secret_and_is_audited() {
    let s = Scene::new(Target::Pop3).await;
    let elsewhere = Recorder::start(Speaks::Pop3).await;
    let root = s.t.root.clone();
    let r =
        s.t.call(
            Method::POST,
            "/v1/tenants/acme/credentials/c/retarget",
            Some(&root),
            Some(json!({"set": {"port": elsewhere.port.to_string()}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["current_version"], 2);
    let r = s.t.call(Method::POST, "/v1/tenants/acme/credentials/c/verify", Some(&root), None).await;
    assert_eq!(r.body["status"], "ok", "{:?}", r.body);
    assert!(elsewhere.saw(REAL));
    let text = audit_text(&s.t).await;
    assert!(text.contains("cred.retarget"), "{text}");
    assert!(text.contains(&format!("port: \\\"{}\\\" -> \\\"{}\\\"", s.legit.port, elsewhere.port)), "{text}");
    assert!(!text.contains(REAL));
    // Nothing to change is refused; an unknown field too.
    let r =
        s.t.call(
            Method::POST,
            "/v1/tenants/acme/credentials/c/retarget",
            Some(&root),
            Some(json!({"set": {"port": elsewhere.port.to_string()}})),
        )
        .await;
    // Nothing to change is a state of the credential, not a malformed request.
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = s
        .t
        .call(Method::POST, "/v1/tenants/acme/credentials/c/retarget", Some(&root), Some(json!({"set": {"hots": "x"}})))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field");
}

/// Target fields edited with SQL (the credential row and the version's own): the payload does
/// not open for them, so verify, rotate and the scheduler send nothing, and the refusal is
/// counted and audited.
#[tokio::test]
async fn target_fields_edited_in_the_database_send_nothing() {
    for target in Target::ALL {
        let s = Scene::new(target).await;
        let moved = s.target.fields(s.attacker.port, s.token.port).to_string();
        let db = s.t.db();
        db.execute("UPDATE version_targets SET fields = ?1", [&moved]).unwrap();
        db.execute("UPDATE credentials SET fields = ?1", [&moved]).unwrap();
        let r = s.admin(Method::POST, "/verify", None).await;
        assert_error(&r, StatusCode::CONFLICT, "target_mismatch");
        s.send_everything().await;
        assert_eq!(s.attacker.connections(), 0, "{target:?}: nothing connected to the attacker");
        s.assert_real_never_left("database edit");
        let status = s.t.root(Method::GET, "/v1/sys/status", None).await;
        assert!(status.body["integrity_failures"].as_u64().unwrap() >= 1, "{:?}", status.body);
        let audit = audit_text(&s.t).await;
        assert!(audit.contains("cred.send") && audit.contains("denied"), "{audit}");
    }
}

#[tokio::test]
async fn target_fields_edited_in_the_database_send_nothing_on_postgres() {
    let Some(url) = fresh_postgres_database().await else { return };
    let s = Scene::new_on(Target::Pop3, Some(url.clone())).await;
    let moved = s.target.fields(s.attacker.port, s.token.port).to_string();
    pg_exec(&url, &format!("UPDATE version_targets SET fields = '{moved}'"));
    pg_exec(&url, &format!("UPDATE credentials SET fields = '{moved}'"));
    let r = s.admin(Method::POST, "/verify", None).await;
    assert_error(&r, StatusCode::CONFLICT, "target_mismatch");
    s.send_everything().await;
    assert_eq!(s.attacker.connections(), 0, "nothing connected to the attacker");
    s.assert_real_never_left("database edit on PostgreSQL");
}

/// Two credentials' names swapped with SQL: a connector bound to one never gets the other's
/// secret (the name is part of the binding).
#[tokio::test]
async fn names_swapped_in_the_database_reveal_nothing() {
    let t = spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/mine", "mine-secret").await;
    t.put("acme/theirs", REAL).await;
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["mine"]})).await;
    assert_eq!(t.reveal_with(&connector, "acme/mine").await.body["secret"], "mine-secret");
    let db = t.db();
    db.execute_batch(
        "UPDATE credentials SET name = 'tmp' WHERE name = 'mine';
         UPDATE credentials SET name = 'mine' WHERE name = 'theirs';
         UPDATE credentials SET name = 'theirs' WHERE name = 'tmp';",
    )
    .unwrap();
    // A server restarted on the edited file reads the rows afresh.
    let t = t.restart("dev").await;
    let r = t.reveal_with(&connector, "acme/mine").await;
    assert!(!String::from_utf8_lossy(&r.raw).contains(REAL), "{:?}", r.body);
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "decrypt_failed");
}

/// Token rows inserted or edited with SQL are refused, on SQLite and PostgreSQL.
#[tokio::test]
async fn token_rows_forged_in_the_database_are_refused_on_sqlite() {
    let t = spawn().await;
    forged_tokens(&t, |sql| {
        t.db().execute_batch(sql).unwrap();
    })
    .await;
}

#[tokio::test]
async fn token_rows_forged_in_the_database_are_refused_on_postgres() {
    let Some(url) = fresh_postgres_database().await else { return };
    let t = spawn_on(Some(url.clone())).await;
    // PostgreSQL spells a blob literal '\x…' where SQLite takes X'…'.
    forged_tokens(&t, |sql| pg_exec(&url, &sql.replace("X'", "'\\x"))).await;
}

async fn forged_tokens(t: &TestApp, exec: impl Fn(&str)) {
    t.tenant("acme", "uk").await;
    t.put("acme/dir", REAL).await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    assert_eq!(t.call(Method::GET, "/v1/tenants/acme", Some(&admin), None).await.status, StatusCode::OK);
    // A new operator token with a hash the attacker computed (the token format is public).
    let secret = "ab".repeat(32);
    let id = "01939f3a-0000-7000-8000-000000000001";
    let hash = sha256_hex(&format!("rekey-token-v1{secret}"));
    exec(&format!(
        "INSERT INTO tokens (id, hash, role, tenant_id, bound, cidrs, description, created_by, created_at) \
         VALUES ('{id}', X'{hash}', 'operator', NULL, '[]', '[]', 'forged', 'sql', 0)"
    ));
    let forged = format!("rk_{}_{secret}", id.replace('-', ""));
    let r = t.call(Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&forged), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(!String::from_utf8_lossy(&r.raw).contains(REAL));
    // The tenant admin's own row, promoted to operator with SQL.
    exec("UPDATE tokens SET role = 'operator', tenant_id = NULL WHERE role = 'tenant-admin'");
    // Past the token cache's life, so the edited row is read again.
    tokio::time::sleep(rekey_core::TOKEN_CACHE_TTL + std::time::Duration::from_millis(200)).await;
    let r = t.call(Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&admin), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let status = t.root(Method::GET, "/v1/sys/status", None).await;
    assert!(status.body["integrity_failures"].as_u64().unwrap() >= 2, "{:?}", status.body);
    let audit = audit_text(t).await;
    assert!(audit.contains("integrity.fail"), "{audit}");
    let metrics = t.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.raw).to_string();
    assert!(text.lines().any(|l| l.starts_with("rekey_integrity_failures_total ") && !l.ends_with(" 0")), "{text}");
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The audit log cannot be written: verify fails closed before any byte of the secret leaves.
#[tokio::test]
async fn audit_write_failure_before_a_verify_sends_nothing() {
    let s = Scene::new(Target::Pop3).await;
    let db = s.t.db();
    db.execute_batch("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'down'); END;")
        .unwrap();
    let r = s.admin(Method::POST, "/verify", None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    assert_eq!(s.legit.connections(), 0, "no connection to the target before the intent is durable");
    db.execute_batch("DROP TRIGGER audit_down").unwrap();
    let r = s.admin(Method::POST, "/verify", None).await;
    assert_eq!(r.body["status"], "ok", "{:?}", r.body);
    assert!(s.legit.saw(REAL));
}

/// During an open incident that covers the credential, no version that existed when it opened
/// comes back, even before containment.
#[tokio::test]
async fn rollback_during_an_incident_is_refused() {
    let s = Scene::new(Target::Pop3).await;
    s.put_as(&s.admin.clone(), s.legit.port, "second-secret").await;
    let r = s.t.root(Method::POST, "/v1/incidents", Some(json!({"title": "dump", "scope": ["tenant:acme"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let incident = r.body["incident"]["id"].as_str().unwrap().to_owned();
    let r = s.admin(Method::POST, "/rollback", Some(json!({"to": 1}))).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert!(r.body["message"].as_str().unwrap().contains(&incident), "{:?}", r.body);
    // A version made after the incident opened may be rolled back to.
    s.put_as(&s.admin.clone(), s.legit.port, "third-secret").await;
    s.put_as(&s.admin.clone(), s.legit.port, "fourth-secret").await;
    let r = s.admin(Method::POST, "/rollback", Some(json!({"to": 3}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    s.t.root(Method::POST, &format!("/v1/incidents/{incident}/close"), None).await;
}

/// A frozen credential stays frozen when its old secret comes back (by rollback, put or the
/// reset form), and thaws only for a new secret verified at its target.
#[tokio::test]
async fn freeze_survives_reuse_of_the_old_secret() {
    let s = Scene::new(Target::Pop3).await;
    let connector = s.t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["c"]})).await;
    let r = s.t.root(Method::POST, "/v1/incidents", Some(json!({"title": "dump", "scope": ["tenant:acme"]}))).await;
    let incident = r.body["incident"]["id"].as_str().unwrap().to_owned();
    let r = s.t.root(Method::POST, &format!("/v1/incidents/{incident}/contain"), Some(json!({"freeze": true}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let frozen = |r: &Reply| r.status == StatusCode::LOCKED;
    assert!(frozen(&s.t.reveal_with(&connector, "acme/c").await));
    // Rollback: refused outright while frozen.
    let r = s.admin(Method::POST, "/rollback", Some(json!({"to": 1}))).await;
    assert_error(&r, StatusCode::LOCKED, "frozen");
    // The old secret put again and verified (the target takes it): still frozen.
    assert_eq!(s.put_as(&s.admin.clone(), s.legit.port, REAL).await.status, StatusCode::OK);
    assert_eq!(s.admin(Method::POST, "/verify", None).await.body["status"], "ok");
    assert!(frozen(&s.t.reveal_with(&connector, "acme/c").await), "the old secret does not thaw it");
    // A new secret, stored but not yet verified: still frozen. Verified: thawed.
    assert_eq!(s.put_as(&s.admin.clone(), s.legit.port, "brand-new-secret").await.status, StatusCode::OK);
    assert!(frozen(&s.t.reveal_with(&connector, "acme/c").await), "a secret not yet verified does not thaw it");
    assert_eq!(s.admin(Method::POST, "/verify", None).await.body["status"], "ok");
    let r = s.t.reveal_with(&connector, "acme/c").await;
    assert_eq!(r.body["secret"], "brand-new-secret", "{:?}", r.body);
}

/// A campaign item is not done by the old secret: not by a put of it, not by the reset form.
#[tokio::test]
async fn campaign_item_not_verified_by_the_old_secret() {
    let s = Scene::new(Target::Pop3).await;
    let r = s.t.root(Method::POST, "/v1/incidents", Some(json!({"title": "dump", "scope": ["tenant:acme"]}))).await;
    let incident = r.body["incident"]["id"].as_str().unwrap().to_owned();
    s.t.root(Method::POST, &format!("/v1/incidents/{incident}/contain"), Some(json!({"freeze": true}))).await;
    let r = s.t.root(Method::POST, "/v1/campaigns", Some(json!({"incident": incident}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let campaign = r.body["id"].as_str().unwrap().to_owned();
    // The items filter takes the states of the item state machine, and nothing else.
    let r = s.t.root(Method::GET, &format!("/v1/campaigns/{campaign}/items?state=halfway"), None).await;
    assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("unknown item state \"halfway\""), "{:?}", r.body);
    let r = s.t.root(Method::GET, &format!("/v1/campaigns/{campaign}/items?state=waived"), None).await;
    assert_eq!((r.status, r.body.as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{:?}", r.body);
    let vault = s.t.app.keeper.vault().unwrap();
    let item_state = || async {
        let r = s.t.root(Method::GET, &format!("/v1/campaigns/{campaign}/items"), None).await;
        r.body[0]["state"].as_str().unwrap().to_owned()
    };
    // The reset form refuses the old secret before sending it anywhere.
    let r = s.t.root(Method::POST, &format!("/v1/campaigns/{campaign}/links"), Some(json!({"tenant": "acme"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let link = r.body["url"].as_str().unwrap().rsplit_once("/r/").unwrap().1.to_owned();
    let before = s.legit.received().len();
    let outcome = vault
        .reset_submit(
            &link,
            std::net::Ipv4Addr::LOCALHOST.into(),
            vec![("c".into(), rekey_types::Secret::new(REAL.as_bytes().to_vec()))],
        )
        .await
        .unwrap();
    match outcome {
        rekey_core::campaigns::ResetOutcome::Refused { refusals, .. } => {
            assert!(refusals[0].1.contains("used before"), "{refusals:?}")
        }
        other => panic!("the old secret was accepted: {other:?}"),
    }
    assert_eq!(s.legit.received().len(), before, "a reused secret is refused before it is sent");
    // A put of the old secret leaves the item waiting, and a pass does not verify it.
    s.put_as(&s.admin.clone(), s.legit.port, REAL).await;
    vault.campaign_pass().await.unwrap();
    let state = item_state().await;
    assert!(!matches!(state.as_str(), "verified" | "retired"), "the old secret finished the item: {state}");
    // A new secret does.
    s.put_as(&s.admin.clone(), s.legit.port, "brand-new-secret").await;
    assert_eq!(item_state().await, "rotated");
    vault.campaign_pass().await.unwrap();
    assert_eq!(item_state().await, "retired");
}

/// The reset form sends a new secret to the target of the version the campaign replaces, not
/// to fields a tenant admin token changed since.
#[tokio::test]
async fn reset_form_sends_to_the_campaign_target_not_to_changed_fields() {
    let s = Scene::new(Target::Pop3).await;
    let r = s.t.root(Method::POST, "/v1/incidents", Some(json!({"title": "dump", "scope": ["tenant:acme"]}))).await;
    let incident = r.body["incident"]["id"].as_str().unwrap().to_owned();
    let r = s.t.root(Method::POST, "/v1/campaigns", Some(json!({"incident": incident}))).await;
    let campaign = r.body["id"].as_str().unwrap().to_owned();
    let r = s.t.root(Method::POST, &format!("/v1/campaigns/{campaign}/links"), Some(json!({"tenant": "acme"}))).await;
    let link = r.body["url"].as_str().unwrap().rsplit_once("/r/").unwrap().1.to_owned();
    // A stolen tenant-admin token points the credential at the attacker, with a secret the
    // attacker's server takes: the campaign does not count that as a rotation.
    s.put_as(&s.admin.clone(), s.attacker.port, JUNK).await;
    let vault = s.t.app.keeper.vault().unwrap();
    vault.campaign_pass().await.unwrap();
    let r = s.t.root(Method::GET, &format!("/v1/campaigns/{campaign}/items"), None).await;
    assert_eq!(r.body[0]["state"], "failed", "{:?}", r.body);
    assert!(r.body[0]["error"].as_str().unwrap().contains("another target"), "{:?}", r.body);
    let typed = "typed-by-the-real-admin";
    let outcome = vault
        .reset_submit(
            &link,
            std::net::Ipv4Addr::LOCALHOST.into(),
            vec![("c".into(), rekey_types::Secret::new(typed.as_bytes().to_vec()))],
        )
        .await;
    assert!(matches!(outcome, Ok(rekey_core::campaigns::ResetOutcome::Done(_))), "{outcome:?}");
    assert!(!s.attacker.saw(typed), "the typed secret went to the attacker");
    assert!(s.legit.saw(typed), "it went to the campaign's target");
}

/// Only an operator names a rotator, sets its subtrees, or writes a rotator credential; and a
/// rotator resets only accounts inside its subtrees, refused before any bind.
#[tokio::test]
async fn rotator_outside_its_subtrees_is_refused_before_any_bind() {
    let t = spawn().await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let directory = Recorder::start(Speaks::Ldap).await;
    let url = format!("ldap://127.0.0.1:{}", directory.port);
    let put = |token: String, name: &'static str, fields: Value, secret: &'static str| {
        let t = &t;
        async move {
            let body = json!({"kind": "ldap", "fields": fields, "secret": secret});
            t.call(Method::PUT, &format!("/v1/tenants/acme/credentials/{name}"), Some(&token), Some(body)).await
        }
    };
    let root = t.root.clone();
    let rotator = json!({"url": url, "tls": "none", "bind_dn": "cn=rekey,dc=acme,dc=example", "subtrees": "ou=people,dc=acme,dc=example"});
    assert_eq!(put(root.clone(), "rotator", rotator.clone(), REAL).await.status, StatusCode::OK);
    // The tenant admin may neither write the rotator credential nor name it on an account.
    assert_error(&put(admin.clone(), "rotator", rotator.clone(), JUNK).await, StatusCode::FORBIDDEN, "forbidden");
    let outside =
        json!({"url": url, "tls": "none", "bind_dn": "cn=Administrator,dc=acme,dc=example", "rotator": "rotator"});
    assert_error(&put(admin.clone(), "boss", outside.clone(), JUNK).await, StatusCode::FORBIDDEN, "forbidden");
    // Named by an operator, an account outside the subtrees is still refused, before any bind.
    assert_eq!(put(root.clone(), "boss", outside, "boss-old").await.status, StatusCode::OK);
    let r = t.call(Method::POST, "/v1/tenants/acme/credentials/boss/rotate", Some(&root), None).await;
    assert_eq!(r.body["state"], "failed", "{:?}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("outside the rotator's subtrees"), "{:?}", r.body);
    assert!(!directory.saw(REAL), "the rotator's password never went out");
    // Inside the subtrees, the rotator binds (to a listener that refuses, here).
    let inside =
        json!({"url": url, "tls": "none", "bind_dn": "cn=svc,ou=people,dc=acme,dc=example", "rotator": "rotator"});
    assert_eq!(put(root.clone(), "svc", inside, "svc-old").await.status, StatusCode::OK);
    t.call(Method::POST, "/v1/tenants/acme/credentials/svc/rotate", Some(&root), None).await;
    assert!(directory.saw(REAL), "control: inside its subtrees the rotator binds");
}

/// Import is an operator's: a tenant admin cannot use it to point a credential elsewhere.
#[tokio::test]
async fn import_as_tenant_admin_is_refused() {
    let s = Scene::new(Target::Pop3).await;
    let line = json!({"tenant": "acme", "name": "c", "kind": "pop3", "fields": s.target.fields(s.attacker.port, 0), "secret": JUNK});
    let r =
        s.t.call_on(
            &s.t.router,
            Method::POST,
            "/v1/import",
            Some(&s.admin.clone()),
            Some(format!("{line}\n").into_bytes()),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    s.send_everything().await;
    assert_eq!(s.attacker.connections(), 0);
}

/// Rollback and promote decide the caller's permission before they wait for the credential's
/// turn: while a rotation holds the turn (its directory never answers), another tenant's admin
/// is refused at once, so the wait cannot tell it that the credential exists and is busy. The
/// operator's own promote, allowed, does wait: the turn was held.
#[tokio::test]
async fn rollback_and_promote_refuse_another_tenant_before_waiting_for_the_credential() {
    let t = spawn().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    t.tenant("acme", "uk").await;
    t.tenant("other", "uk").await;
    let fields = json!({"url": format!("ldap://127.0.0.1:{port}"), "bind_dn": "uid=svc,dc=acme", "tls": "none"});
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/dir",
            Some(json!({"kind": "ldap", "fields": fields, "secret": REAL})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stranger = t.token(json!({"role": "tenant-admin", "tenant": "other"})).await;
    let path = "/v1/tenants/acme/credentials/dir";
    let router = t.router.clone();
    let root = t.root.clone();
    let rotating = tokio::spawn(async move {
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri(format!("{path}/rotate"))
            .header("authorization", format!("Bearer {root}"))
            .body(axum::body::Body::empty())
            .unwrap();
        tower::ServiceExt::oneshot(router, req).await.unwrap().status()
    });
    // The rotation now waits on the directory, holding the credential's turn (up to 4 s).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (action, body) in [("rollback", Some(json!({"to": 1}))), ("promote", None)] {
        let started = std::time::Instant::now();
        let r = t.call(Method::POST, &format!("{path}/{action}"), Some(&stranger), body).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{action} waited {:?}", started.elapsed());
    }
    let started = std::time::Instant::now();
    let r = t.root(Method::POST, &format!("{path}/promote"), None).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "the operator's promote waited for the turn: {:?}",
        r.body
    );
    rotating.await.unwrap();
}
