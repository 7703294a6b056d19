//! The Vault-compatible read path and the health answers a load balancer reads: the same
//! decisions as the native API (a matrix of tokens and credentials), Vault's shapes, and the
//! status codes. The real `bao` CLI and agent are driven against a running server in
//! `rekey-cli/tests/vault_clients.rs`.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::{Reply, TestApp};

/// A GET with the token in `X-Vault-Token`, as Vault's clients send it.
async fn vault_get(t: &TestApp, router: &axum::Router, path: &str, token: Option<&str>) -> (Reply, Option<String>) {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(token) = token {
        req = req.header("x-vault-token", token);
    }
    let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let request_id_header = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let raw = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let _ = t;
    (Reply { status, body, raw, request_id_header }, retry_after)
}

/// A new token: its secret and its id.
async fn token_and_id(t: &TestApp, body: Value) -> (String, String) {
    let r = t.root(Method::POST, "/v1/tokens", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (r.body["secret"].as_str().unwrap().to_owned(), r.body["token"]["id"].as_str().unwrap().to_owned())
}

async fn get(t: &TestApp, path: &str, token: Option<&str>) -> Reply {
    vault_get(t, &t.router, path, token).await.0
}

fn reveals(t: &TestApp) -> Vec<Value> {
    let c = t.db();
    let mut q = c
        .prepare("SELECT principal, resource, outcome FROM audit_events WHERE action = 'cred.reveal' ORDER BY seq")
        .unwrap();
    q.query_map([], |r| Ok(json!([r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?])))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every token against every credential: the KV v2 read answers the same status and the same
/// secret as the native reveal, and leaves the same audit event.
#[tokio::test]
async fn a_kv_read_decides_exactly_as_a_native_reveal() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.tenant("globex", "us").await;
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/dir",
            Some(json!({"kind": "ldap", "secret": "acme-dir-pw", "fields": {"url": "ldap://127.0.0.1:1", "bind_dn": "cn=svc,dc=acme"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for (cred, secret) in [("acme/other", "acme-other-pw"), ("globex/dir", "globex-pw"), ("acme/frozen", "frozen-pw")] {
        assert_eq!(t.put(cred, secret).await.status, StatusCode::OK);
    }
    let (revoked, revoked_id) =
        token_and_id(&t, json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    let tokens = [
        ("root", t.root.clone()),
        ("auditor", t.token(json!({"role": "auditor"})).await),
        ("admin", t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await),
        ("connector", t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir", "frozen"]})).await),
        (
            "elsewhere",
            t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["10.0.0.0/8"]}))
                .await,
        ),
        ("revoked", revoked.clone()),
        (
            "forged",
            "rk_00000000000000000000000000000000_0000000000000000000000000000000000000000000000000000000000000000"
                .to_owned(),
        ),
    ];
    let r = t.root(Method::DELETE, &format!("/v1/tokens/{revoked_id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let incident =
        t.root(Method::POST, "/v1/incidents", Some(json!({"title": "dump", "scope": ["cred:acme/frozen"]}))).await;
    assert_eq!(incident.status, StatusCode::OK, "{:?}", incident.body);
    let id = incident.body["incident"]["id"].as_str().unwrap();
    let r = t.root(Method::POST, &format!("/v1/incidents/{id}/contain"), Some(json!({"freeze": true}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let creds = ["acme/dir", "acme/other", "acme/frozen", "globex/dir", "nosuch/dir", "acme/nosuch", "acme/bad%20name"];
    let mut seen = std::collections::BTreeSet::new();
    // The KV reads come from an address of their own: failed attempts are counted per source
    // (the first of a window audited, the rest folded into one event), so each path meets the
    // same sequence of its own.
    let kv_router = TestApp::router_from(&t.app, "127.0.0.2:40000");
    for (who, token) in &tokens {
        for cred in creds {
            let before = reveals(&t).len();
            let native = t.reveal_with(token, cred).await;
            let after_native = reveals(&t);
            let (tenant, name) = cred.split_once('/').unwrap();
            let (kv, _) = vault_get(&t, &kv_router, &format!("/v1/kv/data/{tenant}/{name}"), Some(token)).await;
            let after_kv = reveals(&t);
            assert_eq!(kv.status, native.status, "{who} {cred}: {:?} vs {:?}", kv.body, native.body);
            seen.insert(native.status.as_u16());
            if native.status == StatusCode::OK {
                assert_eq!(kv.body["data"]["data"]["secret"], native.body["secret"], "{who} {cred}");
                assert_eq!(kv.body["data"]["metadata"]["version"], native.body["version"], "{who} {cred}");
            } else {
                let errors = kv.body["errors"].as_array().unwrap_or_else(|| panic!("{who} {cred}: {:?}", kv.body));
                assert_eq!(errors[0], native.body["message"], "{who} {cred}: the same reason in Vault's shape");
                assert!(!String::from_utf8_lossy(&kv.raw).contains("-pw"), "{who} {cred}: a secret in an error");
            }
            // The same audit events.
            let native_events = &after_native[before..];
            let kv_events = &after_kv[after_native.len()..];
            assert_eq!(kv_events, native_events, "{who} {cred}: the same audit events");
        }
    }
    // The matrix covered success, unauthenticated, forbidden, hidden, frozen and bad input.
    for status in [200, 401, 403, 404, 423, 400] {
        assert!(seen.contains(&status), "no case answered {status}: {seen:?}");
    }
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn a_kv_read_has_vaults_shape() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let fields = json!({"url": "ldap://127.0.0.1:1", "bind_dn": "cn=svc,dc=acme"});
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/dir",
            Some(json!({"kind": "ldap", "secret": "first-pw", "fields": fields})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/dir",
            Some(json!({"kind": "ldap", "secret": "second-pw", "fields": fields})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;

    let (r, _) = vault_get(&t, &t.router, "/v1/kv/data/acme/dir", Some(&connector)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let b = &r.body;
    for key in ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"] {
        assert!(b.get(key).is_some(), "{key} missing: {b}");
    }
    assert_eq!(
        (b["lease_id"].as_str(), b["renewable"].as_bool(), b["lease_duration"].as_u64()),
        (Some(""), Some(false), Some(0))
    );
    assert_eq!(
        b["data"]["data"],
        json!({"secret": "second-pw", "url": "ldap://127.0.0.1:1", "bind_dn": "cn=svc,dc=acme"}),
        "the secret beside the target fields"
    );
    let m = &b["data"]["metadata"];
    assert_eq!(
        (m["version"].as_u64(), m["destroyed"].as_bool(), m["deletion_time"].as_str()),
        (Some(2), Some(false), Some(""))
    );
    assert_eq!(m["custom_metadata"], json!({"kind": "ldap"}));
    assert!(rekey_types::Timestamp::parse_rfc3339(m["created_time"].as_str().unwrap()).is_ok(), "{m}");
    assert_eq!(r.request_id_header.as_deref(), b["request_id"].as_str(), "the envelope carries the request id");

    // `?version=` reads an older version, for operators only (as `cred reveal --version`);
    // `version=0` is the current one, as in Vault.
    let old = get(&t, "/v1/kv/data/acme/dir?version=1", Some(&t.root)).await;
    assert_eq!((old.status, old.body["data"]["data"]["secret"].as_str()), (StatusCode::OK, Some("first-pw")));
    let zero = get(&t, "/v1/kv/data/acme/dir?version=0", Some(&connector)).await;
    assert_eq!(zero.body["data"]["data"]["secret"], "second-pw");
    let refused = get(&t, "/v1/kv/data/acme/dir?version=1", Some(&connector)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let bad = get(&t, "/v1/kv/data/acme/dir?version=x", Some(&connector)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);
    assert!(bad.body["errors"][0].as_str().unwrap().contains("invalid query"), "{:?}", bad.body);

    // A secret that is not UTF-8 comes as base64, as the native reveal gives it.
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/blob",
            Some(json!({"kind": "generic", "secret_base64": "/wD+"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let blob = get(&t, "/v1/kv/data/acme/blob", Some(&t.root)).await;
    assert_eq!(blob.body["data"]["data"], json!({"secret_base64": "/wD+"}));

    // The Authorization header works on this path too; both headers: Authorization wins.
    let r = t.call(Method::GET, "/v1/kv/data/acme/dir", Some(&connector), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let req = Request::builder()
        .uri("/v1/kv/data/acme/dir")
        .header("authorization", format!("Bearer {connector}"))
        .header("x-vault-token", "rk_bogus")
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
    // The native API takes X-Vault-Token as well.
    let (r, _) = vault_get(&t, &t.router, "/v1/tenants/acme/credentials/dir", Some(&t.root)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Writes and other KV v2 routes are not served: Vault's error shape, nothing changed.
    for (method, path) in [
        (Method::POST, "/v1/kv/data/acme/dir"),
        (Method::PUT, "/v1/kv/data/acme/dir"),
        (Method::DELETE, "/v1/kv/data/acme/dir"),
    ] {
        let r = t.call(method.clone(), path, Some(&t.root.clone()), Some(json!({"data": {"secret": "x"}}))).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {:?}", r.body);
        assert!(r.body["errors"].is_array(), "{:?}", r.body);
    }
    let r = get(&t, "/v1/kv/metadata/acme/dir", Some(&t.root)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&t, "/v1/kv/data/acme/dir", Some(&t.root)).await.body["data"]["metadata"]["version"], 2);
}

#[tokio::test]
async fn clients_discover_the_mount_and_their_token() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/dir", "pw").await.status, StatusCode::OK);
    let (connector, id) =
        token_and_id(&t, json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "ttl": "1h"})).await;

    for path in ["kv", "kv/", "kv/acme/dir", "kv/data/acme/dir"] {
        let r = get(&t, &format!("/v1/sys/internal/ui/mounts/{path}"), Some(&connector)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        assert_eq!((r.body["data"]["path"].as_str(), r.body["data"]["type"].as_str()), (Some("kv/"), Some("kv")));
        assert_eq!(r.body["data"]["options"]["version"], "2");
    }
    let r = get(&t, "/v1/sys/internal/ui/mounts/secret/acme/dir", Some(&connector)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert!(r.body["errors"][0].as_str().unwrap().contains("kv/"), "{:?}", r.body);
    assert_eq!(get(&t, "/v1/sys/internal/ui/mounts/kvx", Some(&connector)).await.status, StatusCode::NOT_FOUND);
    let r = get(&t, "/v1/sys/internal/ui/mounts/kv", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a token is needed");
    assert!(r.body["errors"].is_array(), "{:?}", r.body);

    let r = get(&t, "/v1/sys/mounts", Some(&connector)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["kv/"]["options"]["version"], "2");
    assert_eq!(r.body["kv/"]["type"], "kv", "also at the top level, as Vault answers");

    let r = get(&t, "/v1/auth/token/lookup-self", Some(&connector)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let d = &r.body["data"];
    assert_eq!(d["policies"], json!(["connector"]));
    assert_eq!(d["meta"], json!({"role": "connector", "tenant": "acme"}));
    assert_eq!(d["renewable"], false);
    let ttl = d["ttl"].as_i64().unwrap();
    assert!((3590..=3600).contains(&ttl), "{ttl}");
    assert_eq!(d["creation_ttl"], 3600);
    assert_eq!(d["id"].as_str(), Some(id.as_str()), "the token's public id");
    assert!(!String::from_utf8_lossy(&r.raw).contains(&connector), "lookup-self never echoes the token itself");
    let never = get(&t, "/v1/auth/token/lookup-self", Some(&t.root)).await;
    assert_eq!((never.body["data"]["ttl"].as_i64(), never.body["data"]["expire_time"].is_null()), (Some(0), true));

    // Each is audited.
    let events = t.root(Method::GET, "/v1/audit/events?n=200", None).await.body;
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"sys.mounts") && actions.contains(&"token.lookup-self"), "{actions:?}");
}

#[tokio::test]
async fn the_mount_is_configurable_and_can_be_turned_off() {
    let t = TestApp::spawn_configured(None, |c| c.vault_api.mount = "rekey".into()).await;
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/dir", "pw").await.status, StatusCode::OK);
    assert_eq!(get(&t, "/v1/rekey/data/acme/dir", Some(&t.root)).await.body["data"]["data"]["secret"], "pw");
    assert_eq!(get(&t, "/v1/kv/data/acme/dir", Some(&t.root)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&t, "/v1/sys/internal/ui/mounts/rekey/acme/dir", Some(&t.root)).await.body["data"]["path"],
        "rekey/"
    );

    let off = TestApp::spawn_configured(None, |c| c.vault_api.enabled = false).await;
    for path in ["/v1/kv/data/acme/dir", "/v1/sys/mounts", "/v1/auth/token/lookup-self"] {
        let r = get(&off, path, Some(&off.root)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body["code"], "not_found", "Rekey's own error shape: {:?}", r.body);
    }

    for (mount, says) in [
        ("sys", "path of the API"),
        ("tenants", "path of the API"),
        ("a/b", "one path segment"),
        ("", "one path segment"),
        ("KV", "one path segment"),
    ] {
        let mut c = TestApp::config(&tempfile::tempdir().unwrap());
        c.vault_api.mount = mount.into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("vault_api.mount") && err.contains(says), "{mount}: {err}");
    }
}

/// Vault's health codes: 200 unsealed, 503 sealed (with `Retry-After`), 501 before init; the
/// overrides; readiness; the sealed gauge.
#[tokio::test]
async fn health_answers_a_load_balancer_in_vaults_codes() {
    let t = TestApp::spawn().await;
    let (r, retry) = vault_get(&t, &t.router, "/v1/sys/health", None).await;
    assert_eq!((r.status, retry), (StatusCode::OK, None));
    assert_eq!(
        (r.body["status"].as_str(), r.body["initialized"].as_bool(), r.body["sealed"].as_bool()),
        (Some("ok"), Some(true), Some(false))
    );
    assert!(r.body["server_time_utc"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(get(&t, "/v1/sys/health?activecode=299", None).await.status.as_u16(), 299);
    for bad in ["activecode=abc", "sealedcode=199", "uninitcode=600", "activecode=-1"] {
        let r = get(&t, &format!("/v1/sys/health?{bad}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(get(&t, "/v1/sys/health?standbyok=true&perfstandbyok=true&other=1", None).await.status, StatusCode::OK);
    let r = get(&t, "/v1/sys/ready", None).await;
    assert_eq!((r.status, r.body["ready"].as_bool()), (StatusCode::OK, Some(true)));
    let metrics = String::from_utf8(get(&t, "/metrics", None).await.raw).unwrap();
    assert!(metrics.contains("\nrekey_sealed 0\n"), "{metrics}");
    assert!(metrics.contains(&format!("rekey_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{metrics}");

    assert_eq!(t.root(Method::POST, "/v1/sys/seal", None).await.status, StatusCode::OK);
    let (r, retry) = vault_get(&t, &t.router, "/v1/sys/health", None).await;
    assert_eq!((r.status, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("5")));
    assert_eq!((r.body["status"].as_str(), r.body["sealed"].as_bool()), (Some("sealed"), Some(true)));
    assert_eq!(get(&t, "/v1/sys/health?sealedcode=200", None).await.status, StatusCode::OK);
    let (r, retry) = vault_get(&t, &t.router, "/v1/sys/ready", None).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str(), retry.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("sealed"), Some("5"))
    );
    let metrics = String::from_utf8(get(&t, "/metrics", None).await.raw).unwrap();
    assert!(metrics.contains("\nrekey_sealed 1\n"), "{metrics}");
    // The compatible read answers a sealed server as Vault does: 503, in Vault's shape.
    let r = get(&t, "/v1/kv/data/acme/dir", Some(&t.root)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body["errors"].is_array(), "{:?}", r.body);

    // A Shamir seal before `rekey init`: 501.
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestApp::config(&dir);
    config.seal.kind = "shamir".into();
    let app = rekey_server::App::build(config).await.unwrap();
    let router = TestApp::router_from(&app, "127.0.0.1:40000");
    let (r, _) = vault_get(&t, &router, "/v1/sys/health", None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str(), r.body["initialized"].as_bool()),
        (StatusCode::NOT_IMPLEMENTED, Some("uninitialized"), Some(false))
    );
    let (r, _) = vault_get(&t, &router, "/v1/sys/health?uninitcode=200", None).await;
    assert_eq!(r.status, StatusCode::OK);
}
