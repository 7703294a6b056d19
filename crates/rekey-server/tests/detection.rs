//! Detection (docs/detection.md): each rule fires on its scenario and stays silent on a benign
//! run of the same size; decoys look like the tenant's own credentials to everyone but
//! operators; alerts are acknowledged and escalated; a rule's automatic action stops a sweep;
//! servers sharing a PostgreSQL database store each alert once.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{assert_error, TestApp};
use rekey_server::config::RuleSection;
use serde_json::{json, Value};

/// An app whose bulk-read rule fires past `distinct` credentials a minute, `action` on it.
async fn spawn(distinct: usize, bulk_action: Option<&str>, decoy_action: Option<&str>) -> TestApp {
    spawn_on(None, distinct, bulk_action, decoy_action).await
}

async fn spawn_on(
    store: Option<String>,
    distinct: usize,
    bulk_action: Option<&str>,
    decoy_action: Option<&str>,
) -> TestApp {
    TestApp::spawn_configured(store, |c| {
        c.detect.interval = "50ms".into();
        let bulk = RuleSection {
            distinct: Some(distinct),
            within: Some("1m".into()),
            action: bulk_action.map(Into::into),
            ..Default::default()
        };
        c.detect.rules.insert("bulk-read".into(), bulk);
        let decoy = RuleSection { action: decoy_action.map(Into::into), ..Default::default() };
        c.detect.rules.insert("decoy".into(), decoy);
    })
    .await
}

async fn import(t: &TestApp, tenant: &str, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"tenant": tenant, "name": format!("mail-{i}"), "kind": "generic", "secret": format!("s{i}")})
                .to_string()
        })
        .collect();
    let r = t.call_on(&t.router, Method::POST, "/v1/import", Some(&t.root), Some(lines.join("\n").into_bytes())).await;
    assert_eq!(r.body["written"], n, "{:?}", r.body);
}

async fn alerts(t: &TestApp) -> Vec<Value> {
    let r = t.root(Method::GET, "/v1/alerts?limit=1000", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().unwrap().clone()
}

/// Waits up to `within` for alerts of `rule`; answers them and how long it took.
async fn wait_for(t: &TestApp, rule: &str, within: Duration) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    loop {
        let found: Vec<Value> = alerts(t).await.into_iter().filter(|a| a["rule"] == rule).collect();
        if !found.is_empty() || started.elapsed() > within {
            return (found, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets the detector look at everything written so far.
async fn settle(t: &TestApp) {
    let head = t.root(Method::GET, "/v1/audit/events?n=1", None).await.body[0]["seq"].as_i64().unwrap();
    for _ in 0..200 {
        let metrics = t.call(Method::GET, "/metrics", None, None).await;
        let text = String::from_utf8_lossy(&metrics.raw).to_string();
        let seen = text
            .lines()
            .find_map(|l| l.strip_prefix("rekey_detector_seq "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if seen >= head {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the detector did not catch up");
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_decoy_is_indistinguishable_to_tenant_roles_and_its_reveal_alerts_within_a_second() {
    let t = spawn(1000, None, None).await;
    t.tenant("acme", "uk").await;
    let fields = json!({"url": "ldaps://dc1.acme.test", "bind_dn": "uid=mail-sync,ou=services,dc=acme,dc=test"});
    for name in ["directory", "directory-eu"] {
        let r = t
            .root(
                Method::PUT,
                &format!("/v1/tenants/acme/credentials/{name}"),
                Some(json!({"kind": "ldap", "fields": fields, "secret": "pw"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let planted = t.root(Method::POST, "/v1/tenants/acme/decoys", Some(json!({"count": 3}))).await;
    assert_eq!(planted.status, StatusCode::OK, "{:?}", planted.body);
    let planted: Vec<String> =
        planted.body.as_array().unwrap().iter().map(|d| d["credential"].as_str().unwrap().to_owned()).collect();
    assert_eq!(planted.len(), 3);

    // To a tenant admin and an auditor, a decoy is one more LDAP account of the tenant's own.
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let auditor = t.token(json!({"role": "auditor"})).await;
    let listed = t.call(Method::GET, "/v1/credentials?tenant=acme", Some(&admin), None).await.body;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5);
    let keys = |c: &Value| c.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let real = listed.iter().find(|c| c["name"] == "directory").unwrap();
    for decoy in &planted {
        let name = decoy.split_once('/').unwrap().1;
        let c = listed.iter().find(|c| c["name"] == name).expect("listed like the rest");
        assert_eq!(keys(c), keys(real), "the same fields of metadata");
        assert_eq!(c["kind"], "ldap");
        assert_eq!(c["fields"]["url"], "ldaps://dc1.acme.test", "the tenant's own target");
        assert_ne!(c["fields"]["bind_dn"], real["fields"]["bind_dn"]);
        assert!(name.starts_with("directory-"), "{name}");
        assert_eq!(c["labels"], real["labels"]);
    }
    for token in [&admin, &auditor] {
        let plant = t.call(Method::POST, "/v1/tenants/acme/decoys", Some(token), Some(json!({"count": 1}))).await;
        assert_error(&plant, StatusCode::FORBIDDEN, "forbidden");
        assert_error(&t.call(Method::GET, "/v1/decoys", Some(token), None).await, StatusCode::FORBIDDEN, "forbidden");
        assert_error(&t.call(Method::GET, "/v1/alerts", Some(token), None).await, StatusCode::FORBIDDEN, "forbidden");
    }
    let events = t.call(Method::GET, "/v1/audit/events?n=100", Some(&auditor), None).await.body;
    let plants: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["action"] == "cred.put").collect();
    assert_eq!(plants.len(), 5, "each decoy recorded as the put a real credential is");
    assert!(plants.iter().all(|e| e["detail"] == "kind=ldap; version=1"));
    let refused = events.as_array().unwrap().iter().filter(|e| e["action"] == "decoy.plant").count();
    assert_eq!(refused, 2, "the refused plants, and nothing of the one that succeeded");
    let listed = t.root(Method::GET, "/v1/decoys?tenant=acme", None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Real reads raise nothing; the decoy's first read alerts within a second.
    let thief = t.token(json!({"role": "operator"})).await;
    assert_eq!(t.reveal_with(&thief, "acme/directory").await.status, StatusCode::OK);
    settle(&t).await;
    assert!(alerts(&t).await.is_empty());
    let read = t.reveal_with(&thief, &planted[0]).await;
    assert_eq!(read.status, StatusCode::OK, "a decoy answers as any credential does");
    let (found, took) = wait_for(&t, "decoy", Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(took < Duration::from_secs(1), "alerted after {took:?}");
    let a = &found[0];
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["state"], "open");
    assert_eq!(a["resources"], json!([planted[0]]));
    assert_eq!(a["source"], "127.0.0.1");
    assert!(a["principal"].as_str().unwrap().starts_with("token:"));
    // A connector's refused try at a decoy is a sight too (it is bound to another credential).
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["directory"]})).await;
    assert_eq!(t.reveal_with(&connector, &planted[1]).await.status, StatusCode::NOT_FOUND);
    let (found, _) = wait_for(&t, "decoy", Duration::from_secs(5)).await;
    let mut waited = 0;
    let mut found = found;
    while found.len() < 2 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        found = wait_for(&t, "decoy", Duration::from_secs(1)).await.0;
        waited += 1;
    }
    assert_eq!(found.len(), 2);
    // The raise is audited without naming the decoy, and counted.
    let events = t.root(Method::GET, "/v1/audit/events?n=50", None).await.body;
    let raised: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["action"] == "alert.raise").collect();
    assert_eq!(raised.len(), 2);
    assert!(raised
        .iter()
        .all(|e| e["principal"] == "system:detector" && e["detail"] == "rule=decoy; severity=critical"));
    assert!(raised.iter().all(|e| e["resource"].as_str().unwrap().starts_with("alert:")));
    let metrics = String::from_utf8_lossy(&t.call(Method::GET, "/metrics", None, None).await.raw).to_string();
    assert_eq!(metric(&metrics, "rekey_alerts_total{rule=\"decoy\"} "), 2.0, "{metrics}");
    // No campaign rotates a decoy (no target knows its secret): an incident of the whole tenant
    // counts it, its campaign leaves it out.
    let incident = t.root(Method::POST, "/v1/incidents", Some(json!({"title": "t", "scope": ["tenant:acme"]}))).await;
    assert_eq!(incident.body["incident"]["affected"], 5, "{:?}", incident.body);
    let start = json!({"incident": incident.body["incident"]["id"]});
    let campaign = t.root(Method::POST, "/v1/campaigns", Some(start)).await;
    assert_eq!(campaign.status, StatusCode::OK, "{:?}", campaign.body);
    let items =
        t.root(Method::GET, &format!("/v1/campaigns/{}/items", campaign.body["id"].as_str().unwrap()), None).await;
    let names: Vec<&str> = items.body.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["directory", "directory-eu"], "{:?}", items.body);
}

#[tokio::test]
async fn a_sweep_raises_bulk_read_and_a_fleet_reading_its_own_credentials_does_not() {
    let t = spawn(50, None, None).await;
    t.tenant("acme", "uk").await;
    import(&t, "acme", 1000).await;
    // Benign, and as large: 20 connectors, 10 credentials each, each read 5 times.
    let mut fleet = Vec::new();
    for f in 0..20 {
        let bound: Vec<String> = (0..10).map(|i| format!("mail-{}", f * 10 + i)).collect();
        fleet.push((t.token(json!({"role": "connector", "tenant": "acme", "credentials": bound})).await, f));
    }
    for _ in 0..5 {
        for (token, f) in &fleet {
            for i in 0..10 {
                assert_eq!(t.reveal_with(token, &format!("acme/mail-{}", f * 10 + i)).await.status, StatusCode::OK);
            }
        }
    }
    settle(&t).await;
    assert!(alerts(&t).await.is_empty(), "no alert on 1,000 reads of a fleet keeping to its own");

    // A token bound to every credential sweeps them.
    let all: Vec<String> = (0..1000).map(|i| format!("mail-{i}")).collect();
    let thief = t.token(json!({"role": "connector", "tenant": "acme", "credentials": all})).await;
    let thief_id = t.root(Method::GET, "/v1/tokens", None).await.body.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..200 {
        assert_eq!(t.reveal_with(&thief, &format!("acme/mail-{i}")).await.status, StatusCode::OK);
    }
    let (found, _) = wait_for(&t, "bulk-read", Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "one alert per quiet time, however long the sweep: {found:?}");
    let a = &found[0];
    assert_eq!(a["principal"], format!("token:{thief_id}"));
    assert_eq!(a["severity"], "high");
    assert_eq!(a["resources"].as_array().unwrap().len(), 51);
    assert!(a["summary"].as_str().unwrap().contains("51 distinct credentials"), "{a}");

    // Escalated: an incident of the token (everything it could read), since the first sign.
    let id = a["id"].as_str().unwrap();
    let e = t.root(Method::POST, &format!("/v1/alerts/{id}/escalate"), None).await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    assert_eq!(e.body["alert"]["state"], "escalated");
    let incident = &e.body["incident"]["incident"];
    assert_eq!(e.body["alert"]["incident"], incident["id"]);
    assert!(incident["scope"].as_array().unwrap().contains(&json!(format!("token:{thief_id}"))));
    assert_eq!(incident["affected"], 1000);
    assert_eq!(incident["since"], a["first_seen"]);
    assert_eq!(e.body["incident"]["reveals_since"]["credentials"], 200, "{:?}", e.body["incident"]);
    // Handled once.
    let again = t.root(Method::POST, &format!("/v1/alerts/{id}/ack"), Some(json!({"note": "late"}))).await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    let events = t.root(Method::GET, "/v1/audit/events?n=20", None).await.body;
    let events = events.as_array().unwrap();
    assert!(events.iter().any(
        |e| e["action"] == "incident.open" && e["detail"].as_str().unwrap().ends_with(&format!("from alert:{id}"))
    ));
    assert!(events.iter().any(|e| e["action"] == "alert.escalate" && e["resource"] == format!("alert:{id}")));
}

#[tokio::test]
async fn tokens_used_from_outside_their_networks_or_after_revocation_are_raised_and_guesses_are_not() {
    let t = spawn(1000, None, None).await;
    t.tenant("acme", "uk").await;
    t.put("acme/dir", "pw").await;
    let fenced =
        t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["10.0.0.0/8"]})).await;
    assert_error(&t.reveal_with(&fenced, "acme/dir").await, StatusCode::FORBIDDEN, "forbidden");
    let (found, _) = wait_for(&t, "outside-cidr", Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["resources"], json!(["acme/dir"]));

    let gone = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    let id = t.root(Method::GET, "/v1/tokens", None).await.body.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.root(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.status, StatusCode::OK);
    assert_error(&t.reveal_with(&gone, "acme/dir").await, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (found, _) = wait_for(&t, "dead-token", Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["principal"], format!("token:{id}"));

    // A token id nobody issued is a guess: the per-source failure limit handles those.
    let forged = format!("rk_{}.0123456789abcdef0123456789abcdef", common::uuid_like());
    let _ = t.reveal_with(&forged, "acme/dir").await;
    let forged2 = "rk_0190f3a0-0000-7000-8000-000000000000.0123456789abcdef0123456789abcdef";
    let _ = t.reveal_with(forged2, "acme/dir").await;
    settle(&t).await;
    assert_eq!(alerts(&t).await.len(), 2, "only the two above");

    // Acknowledged with a note: handled, kept.
    let a = &found[0];
    let id = a["id"].as_str().unwrap();
    let r = t
        .root(Method::POST, &format!("/v1/alerts/{id}/ack"), Some(json!({"note": "a decommissioned job, removed"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "acknowledged");
    assert_eq!(r.body["note"], "a decommissioned job, removed");
    let open = t.root(Method::GET, "/v1/alerts?state=open", None).await.body;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_error(
        &t.root(Method::POST, &format!("/v1/alerts/{id}/escalate"), None).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(&t.root(Method::GET, "/v1/alerts?state=closed", None).await, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_rule_set_to_revoke_stops_a_sweep_and_one_set_to_freeze_contains_it() {
    let t = spawn(20, Some("revoke"), Some("freeze")).await;
    t.tenant("acme", "uk").await;
    import(&t, "acme", 100).await;
    let all: Vec<String> = (0..100).map(|i| format!("mail-{i}")).collect();
    let thief = t.token(json!({"role": "connector", "tenant": "acme", "credentials": all})).await;
    let mut read = 0;
    for i in 0..100 {
        match t.reveal_with(&thief, &format!("acme/mail-{i}")).await.status {
            StatusCode::OK => read += 1,
            StatusCode::UNAUTHORIZED => break,
            other => panic!("{other}"),
        }
        // The detector runs beside the requests; a sweep at the speed of a loop over an
        // in-process router outruns a 50 ms pass, so give it its pass as a network would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(read > 20 && read < 100, "stopped after {read} reads");
    let (found, _) = wait_for(&t, "bulk-read", Duration::from_secs(5)).await;
    assert!(found[0]["action_outcome"].as_str().unwrap().starts_with("done: token:"), "{:?}", found[0]);
    let events = t.root(Method::GET, "/v1/audit/events?n=400", None).await.body;
    let events = events.as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["action"] == "token.revoke" && e["principal"] == "system:detector" && e["source"] == ""));
    assert!(events
        .iter()
        .any(|e| e["action"] == "alert.act" && e["detail"].as_str().unwrap().starts_with("revoke: done")));

    // A decoy read by another token: an incident of it, contained, its credentials frozen.
    let planted = t.root(Method::POST, "/v1/tenants/acme/decoys", Some(json!({"count": 1}))).await.body;
    let decoy = planted[0]["credential"].as_str().unwrap().to_owned();
    let decoy_name = decoy.split_once('/').unwrap().1.to_owned();
    let second = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["mail-1", decoy_name]})).await;
    let bystander = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["mail-1"]})).await;
    assert_eq!(t.reveal_with(&second, &decoy).await.status, StatusCode::OK);
    let (found, _) = wait_for(&t, "decoy", Duration::from_secs(5)).await;
    let a = &found[0];
    let mut outcome = a["action_outcome"].clone();
    for _ in 0..100 {
        if outcome.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        outcome = t.root(Method::GET, &format!("/v1/alerts/{}", a["id"].as_str().unwrap()), None).await.body
            ["action_outcome"]
            .clone();
    }
    assert!(outcome.as_str().unwrap().contains("opened and contained"), "{outcome}");
    assert_error(&t.reveal_with(&second, "acme/mail-1").await, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_error(&t.reveal_with(&bystander, "acme/mail-1").await, StatusCode::LOCKED, "frozen");
    let incidents = t.root(Method::GET, "/v1/incidents", None).await.body;
    let incident = incidents.as_array().unwrap().iter().find(|i| i["created_by"] == "system:detector").unwrap().clone();
    assert!(incident["frozen"].as_bool().unwrap());
}

#[tokio::test]
async fn servers_sharing_postgresql_store_each_alert_once() {
    let Some(url) = common::fresh_postgres_database().await else { return };
    let a = spawn_on(Some(url.clone()), 1000, None, None).await;
    a.tenant("acme", "uk").await;
    a.put("acme/directory", "pw").await;
    let planted = a.root(Method::POST, "/v1/tenants/acme/decoys", Some(json!({"kind": "generic"}))).await.body;
    let decoy = planted[0]["credential"].as_str().unwrap().to_owned();
    // A second server on the same database (its own data folder, the same store and seal key).
    let dir_b = tempfile::tempdir().unwrap();
    let mut config = TestApp::config(&dir_b);
    config.store.url = Some(rekey_server::config::Redacted::new(url));
    config.seal.key_file = Some(a.dir.path().join("data").join("dev-root.key"));
    config.detect.interval = "50ms".into();
    let app_b = rekey_server::App::build(config).await.unwrap();
    let b = TestApp {
        router: TestApp::router_from(&app_b, "127.0.0.1:40001"),
        app: app_b,
        root: a.root.clone(),
        dir: dir_b,
    };
    for _ in 0..3 {
        assert_eq!(b.reveal_with(&a.root, &decoy).await.status, StatusCode::OK);
    }
    settle(&a).await;
    settle(&b).await;
    let seen_a = alerts(&a).await;
    let seen_b = alerts(&b).await;
    assert_eq!(seen_a.len(), 1, "{seen_a:?}");
    assert_eq!(seen_a, seen_b);
    let events = a.root(Method::GET, "/v1/audit/events?n=100", None).await.body;
    let raised = events.as_array().unwrap().iter().filter(|e| e["action"] == "alert.raise").count();
    assert_eq!(raised, 1, "raised by the server that stored it");
}

/// The test TAXII server (`scripts/peers/taxii.sh`), or `None` outside CI without one.
fn taxii() -> Option<(String, String)> {
    match (std::env::var("REKEY_TEST_TAXII_URL"), std::env::var("REKEY_TEST_TAXII_COLLECTION")) {
        (Ok(url), Ok(collection)) => Some((url, collection)),
        _ => {
            assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_TAXII_URL must be set under CI (scripts/test.sh)");
            eprintln!("SKIPPED: set REKEY_TEST_TAXII_* or run scripts/test.sh");
            None
        }
    }
}

/// Adds STIX objects to the test collection (with curl, as any publisher would).
fn publish(url: &str, collection: &str, objects: Value) {
    let body = json!({ "objects": objects }).to_string();
    let user = format!(
        "{}:{}",
        std::env::var("REKEY_TEST_TAXII_USER").unwrap(),
        std::env::var("REKEY_TEST_TAXII_PASSWORD").unwrap()
    );
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-u", &user, "-H", "Content-Type: application/taxii+json;version=2.1"])
        .args(["-H", "Accept: application/taxii+json;version=2.1", "--data-binary", &body])
        .arg(format!("{url}collections/{collection}/objects/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn indicator(id: &str, pattern: &str, valid_until: Option<&str>) -> Value {
    let mut i = json!({
        "type": "indicator", "spec_version": "2.1", "id": id,
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
        "name": "botnet exit", "indicator_types": ["malicious-activity"],
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00.000Z",
    });
    if let Some(u) = valid_until {
        i["valid_until"] = json!(u);
    }
    i
}

#[tokio::test]
async fn an_address_a_taxii_feed_lists_is_alerted_within_one_poll_and_the_feed_resumes_after_a_restart() {
    let Some((url, collection)) = taxii() else { return };
    // Addresses of this run only (the collection is shared by the test run).
    let n = common::uuid_like();
    let (a, b) = (
        u8::from_str_radix(&n[n.len() - 2..], 16).unwrap(),
        u8::from_str_radix(&n[n.len() - 4..n.len() - 2], 16).unwrap(),
    );
    let listed = format!("127.91.{a}.{b}");
    let expired = format!("127.92.{a}.{b}");
    let feed = |c: &mut rekey_server::Config| {
        c.detect.interval = "50ms".into();
        c.detect.feeds = vec![rekey_server::config::FeedSection {
            name: "isac".into(),
            taxii: Some(url.clone()),
            collection: Some(collection.clone()),
            user_env: Some("REKEY_TEST_TAXII_USER".into()),
            password_env: Some("REKEY_TEST_TAXII_PASSWORD".into()),
            interval: Some("2s".into()),
            ..Default::default()
        }];
    };
    let t = TestApp::spawn_configured(None, feed).await;
    t.tenant("acme", "uk").await;
    t.put("acme/dir", "pw").await;
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    let from_listed = TestApp::router_from(&t.app, &format!("{listed}:40000"));
    let from_expired = TestApp::router_from(&t.app, &format!("{expired}:40000"));
    let reveal_from = |router: axum::Router| {
        let (t, connector) = (&t, connector.clone());
        async move {
            t.call_on(&router, Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&connector), None)
                .await
                .status
        }
    };
    // The collection is the test run's, this test's alone (shared incidents go to another); it
    // lasts the run, so only alerts about this run's addresses count.
    let here = [listed.as_str(), expired.as_str()];
    assert_eq!(reveal_from(from_listed.clone()).await, StatusCode::OK);
    settle(&t).await;
    assert!(feed_alerts(&t, &here).await.is_empty(), "not listed yet");

    let published = Instant::now();
    publish(
        &url,
        &collection,
        json!([
            indicator(&format!("indicator--{}", uuid_v4(&n, 1)), &format!("[ipv4-addr:value = '{listed}']"), None),
            indicator(
                &format!("indicator--{}", uuid_v4(&n, 2)),
                &format!("[ipv4-addr:value = '{expired}']"),
                Some("2026-02-01T00:00:00.000Z")
            ),
            indicator(&format!("indicator--{}", uuid_v4(&n, 3)), "[domain-name:value = 'evil.example']", None),
        ]),
    );
    let found = loop {
        assert_eq!(reveal_from(from_listed.clone()).await, StatusCode::OK, "listed, not refused: an alert");
        assert_eq!(reveal_from(from_expired.clone()).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let found = feed_alerts(&t, &here).await;
        if !found.is_empty() {
            break found;
        }
        assert!(published.elapsed() < Duration::from_secs(10), "no alert 10 s after the indicator was published");
    };
    let took = published.elapsed();
    assert!(took < Duration::from_millis(3500), "matched {took:?} after publishing; the poll interval is 2 s");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["source"], listed);
    assert!(found[0]["summary"].as_str().unwrap().contains("listed by feed isac"), "{}", found[0]["summary"]);
    settle(&t).await;
    let sources: Vec<Value> = feed_alerts(&t, &here).await.iter().map(|a| a["source"].clone()).collect();
    assert_eq!(sources, [json!(listed)], "an expired indicator raises nothing");
    let events = t.root(Method::GET, "/v1/audit/events?n=200", None).await.body;
    let read: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["action"] == "feed.read").collect();
    assert!(read.iter().any(|e| e["detail"].as_str().unwrap().contains("not_understood=")), "{read:?}");

    // After a restart the feed resumes where it stopped, and its listings still hold.
    let t = t.restart_configured(None, feed).await;
    let other = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    let router = TestApp::router_from(&t.app, &format!("{listed}:40000"));
    let r = t.call_on(&router, Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&other), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut alerted = false;
    for _ in 0..100 {
        if feed_alerts(&t, &here).await.len() == 2 {
            alerted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alerted, "listed from the store after a restart");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events = t.root(Method::GET, "/v1/audit/events?n=100", None).await.body;
    let reads_after = events.as_array().unwrap().iter().filter(|e| e["action"] == "feed.read").count();
    assert_eq!(reads_after, read.len(), "nothing read again: the feed resumed after what it had");
}

/// A version 4 UUID made of the run's `n` (hex) and an index: ids unique to this run.
fn uuid_v4(n: &str, i: u8) -> String {
    let h = format!("{n:0>30}{i:02x}");
    let h = &h[h.len() - 32..];
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// The `feed-address` alerts about these source addresses.
async fn feed_alerts(t: &TestApp, sources: &[&str]) -> Vec<Value> {
    alerts(t)
        .await
        .into_iter()
        .filter(|a| a["rule"] == "feed-address" && sources.iter().any(|s| a["source"] == *s))
        .collect()
}

#[tokio::test]
async fn a_token_reading_faster_than_it_learned_to_is_raised_and_its_baseline_survives_a_restart() {
    let config = |c: &mut rekey_server::Config| {
        c.detect.interval = "50ms".into();
        let baseline = RuleSection { learn: Some("2s".into()), factor: Some(2), floor: Some(5), ..Default::default() };
        c.detect.rules.insert("baseline".into(), baseline);
    };
    let t = TestApp::spawn_configured(None, config).await;
    t.tenant("acme", "uk").await;
    import(&t, "acme", 10).await;
    let bound: Vec<String> = (0..10).map(|i| format!("mail-{i}")).collect();
    let fetcher = t.token(json!({"role": "connector", "tenant": "acme", "credentials": bound})).await;
    let steady = t.token(json!({"role": "connector", "tenant": "acme", "credentials": bound})).await;
    // Learning: four reads each.
    for token in [&fetcher, &steady] {
        for i in 0..4 {
            assert_eq!(t.reveal_with(token, &format!("acme/mail-{i}")).await.status, StatusCode::OK);
        }
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Judged: the steady one keeps its pace; the other reads thirty at once.
    for i in 0..4 {
        assert_eq!(t.reveal_with(&steady, &format!("acme/mail-{i}")).await.status, StatusCode::OK);
    }
    for i in 0..30 {
        assert_eq!(t.reveal_with(&fetcher, &format!("acme/mail-{}", i % 10)).await.status, StatusCode::OK);
    }
    let (found, _) = wait_for(&t, "baseline", Duration::from_secs(5)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["severity"], "medium");
    let fetcher_principal = found[0]["principal"].clone();
    // After a restart the baseline is the stored one, not a new one still learning.
    let t = t.restart_configured(None, config).await;
    for i in 0..30 {
        assert_eq!(t.reveal_with(&fetcher, &format!("acme/mail-{}", i % 10)).await.status, StatusCode::OK);
    }
    let mut raised = 0;
    for _ in 0..100 {
        raised =
            alerts(&t).await.iter().filter(|a| a["rule"] == "baseline" && a["principal"] == fetcher_principal).count();
        if raised == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(raised, 2, "judged at once after the restart");
    let all = alerts(&t).await;
    assert!(all.iter().filter(|a| a["rule"] == "baseline").all(|a| a["principal"] == fetcher_principal), "{all:?}");
}
