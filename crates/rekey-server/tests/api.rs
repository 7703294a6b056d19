//! API tests through the router (no socket), each on a fresh SQLite data folder; one tour runs
//! on PostgreSQL too. Tampering and faults are made for real, with SQL on the database file.

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use axum::http::{Method, StatusCode};
use common::{assert_error, fresh_postgres_database, Reply, TestApp};
use serde_json::{json, Value};

#[tokio::test]
async fn tour_create_put_show_reveal_versions_rollback_delete() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let body = json!({"kind": "ldap", "fields": {"url": "ldaps://dc1.acme.example:636", "bind_dn": "cn=svc,dc=acme,dc=example"}, "secret": "pw-one"});
    let r = t.root(Method::PUT, "/v1/tenants/acme/credentials/directory", Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["current_version"], 1);
    assert!(!String::from_utf8_lossy(&r.raw).contains("pw-one"), "put answers with metadata only");
    let mut body2 = body.clone();
    body2["secret"] = json!("pw-two");
    assert_eq!(
        t.root(Method::PUT, "/v1/tenants/acme/credentials/directory", Some(body2)).await.body["current_version"],
        2
    );
    let shown = t.root(Method::GET, "/v1/tenants/acme/credentials/directory", None).await;
    assert_eq!(shown.body["fields"]["bind_dn"], "cn=svc,dc=acme,dc=example");
    assert!(!String::from_utf8_lossy(&shown.raw).contains("pw-"), "show never carries the secret");
    let root = t.root.clone();
    let r = t.reveal_with(&root, "acme/directory").await;
    assert_eq!((r.body["secret"].as_str(), r.body["version"].as_u64()), (Some("pw-two"), Some(2)));
    let old = t.root(Method::POST, "/v1/tenants/acme/credentials/directory/reveal?version=1", None).await;
    assert_eq!(old.body["secret"], "pw-one");
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/directory/rollback", Some(json!({"to": 1}))).await;
    assert_eq!(r.body["current_version"], 3);
    assert_eq!(t.reveal_with(&root, "acme/directory").await.body["secret"], "pw-one");
    let versions = t.root(Method::GET, "/v1/tenants/acme/credentials/directory/versions", None).await;
    let stages: Vec<&str> = versions.body.as_array().unwrap().iter().map(|v| v["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, vec!["retired", "previous", "current"]);
    let r = t.root(Method::DELETE, "/v1/tenants/acme/credentials/directory", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_error(&t.reveal_with(&root, "acme/directory").await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn binary_secrets_and_certificates() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/blob",
            Some(json!({"kind": "generic", "secret_base64": "AP8AAQ=="})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let root = t.root.clone();
    let r = t.reveal_with(&root, "acme/blob").await;
    assert_eq!(r.body["secret_base64"], "AP8AAQ==");
    assert!(r.body.get("secret").is_none());
    let issued = rekey_crypto::cert::issue("acme", "ews", 86_400).unwrap();
    let other = rekey_crypto::cert::issue("acme", "ews", 86_400).unwrap();
    let (cert, key) = (issued.info.pem.as_str(), issued.key_pem.as_str());
    let fields = json!({"token_url": "https://login.example/t/oauth2/v2.0/token", "client_id": "abc", "scope": "https://graph.microsoft.com/.default"});
    // Something that only looks like PEM, or a key of another certificate, is refused.
    let fake = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for (c, k) in [(fake, key), (cert, other.key_pem.as_str())] {
        let body = json!({"kind": "entra-app", "fields": fields, "certificate_pem": c, "private_key_pem": k});
        let r = t.root(Method::PUT, "/v1/tenants/acme/credentials/ews", Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/ews",
            Some(json!({"kind": "entra-app", "fields": fields, "certificate_pem": cert, "private_key_pem": key})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["fields"]["auth"], "certificate");
    let secret = t.reveal_with(&root, "acme/ews").await.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.contains("PRIVATE KEY") && secret.contains("BEGIN CERTIFICATE"));
    // The certificate is in the inventory; the same one for another tenant is refused.
    let r = t.root(Method::GET, "/v1/certificates", None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);
    assert_eq!(r.body[0]["sha1"].as_str().unwrap(), hex::encode(issued.info.sha1));
    t.root(Method::POST, "/v1/tenants", Some(json!({"name": "globex", "region": "us"}))).await;
    let body = json!({"kind": "entra-app", "fields": fields, "certificate_pem": cert, "private_key_pem": key});
    let r = t.root(Method::PUT, "/v1/tenants/globex/credentials/ews", Some(body)).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    // A certificate for another kind, or a key that is not PEM, is refused.
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/g",
            Some(json!({"kind": "generic", "certificate_pem": cert, "private_key_pem": key})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
}

/// The whole matrix of role × tenant × action. `acme` is the token's tenant, `globex` another.
#[tokio::test]
async fn role_matrix() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.tenant("globex", "us").await;
    for c in ["acme/dir", "acme/dir", "acme/relay", "globex/dir"] {
        assert_eq!(t.put(c, "s3cret").await.status, StatusCode::OK);
    }
    let auditor = t.token(json!({"role": "auditor"})).await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let connector =
        t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["127.0.0.0/8"]})).await;
    let operator = t.root.clone();
    let put = json!({"kind": "generic", "secret": "x"});
    // (method, path, body, [operator, auditor, tenant-admin, connector])
    let cases: Vec<(Method, &str, Option<Value>, [u16; 4])> = vec![
        (Method::GET, "/v1/sys/status", None, [200, 200, 403, 403]),
        (Method::POST, "/v1/tenants", Some(json!({"name": "newco", "region": "eu"})), [200, 403, 403, 403]),
        (Method::GET, "/v1/tenants", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/tenants/acme", None, [200, 200, 200, 403]),
        (Method::GET, "/v1/tenants/globex", None, [200, 200, 404, 403]),
        (Method::PUT, "/v1/tenants/acme/credentials/x", Some(put.clone()), [200, 403, 200, 403]),
        (Method::PUT, "/v1/tenants/globex/credentials/x", Some(put.clone()), [200, 403, 404, 403]),
        (Method::GET, "/v1/tenants/acme/credentials/dir", None, [200, 200, 200, 403]),
        (Method::GET, "/v1/tenants/globex/credentials/dir", None, [200, 200, 404, 403]),
        (Method::POST, "/v1/tenants/acme/credentials/dir/reveal", None, [200, 403, 403, 200]),
        (Method::POST, "/v1/tenants/acme/credentials/relay/reveal", None, [200, 403, 403, 404]),
        (Method::POST, "/v1/tenants/acme/credentials/nope/reveal", None, [404, 403, 403, 404]),
        (Method::POST, "/v1/tenants/globex/credentials/dir/reveal", None, [200, 403, 404, 404]),
        (Method::POST, "/v1/tenants/acme/credentials/dir/reveal?version=1", None, [200, 403, 403, 403]),
        (Method::GET, "/v1/credentials", None, [200, 200, 200, 403]),
        (Method::GET, "/v1/credentials?tenant=acme", None, [200, 200, 200, 403]),
        (Method::GET, "/v1/credentials?tenant=globex", None, [200, 200, 404, 403]),
        (Method::GET, "/v1/tenants/acme/credentials/dir/versions", None, [200, 200, 200, 403]),
        (Method::GET, "/v1/tenants/globex/credentials/dir/versions", None, [200, 200, 404, 403]),
        // The operator's rollback retires version 1, so the tenant admin's, though allowed, is
        // refused for that (409, not 403); a tenant admin's rollback is shown working below.
        (Method::POST, "/v1/tenants/acme/credentials/dir/rollback", Some(json!({"to": 1})), [200, 403, 409, 403]),
        (Method::POST, "/v1/tenants/globex/credentials/dir/rollback", Some(json!({"to": 1})), [409, 403, 404, 403]),
        (Method::DELETE, "/v1/tenants/acme/credentials/nope", None, [404, 403, 403, 403]),
        (Method::DELETE, "/v1/tenants/globex/credentials/nope", None, [404, 403, 404, 403]),
        (Method::POST, "/v1/tokens", Some(json!({"role": "auditor"})), [200, 403, 403, 403]),
        (Method::GET, "/v1/tokens", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/audit/events", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/audit/verify", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/audit/tree", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/audit/proof/inclusion?seq=1", None, [200, 200, 403, 403]),
        (Method::GET, "/v1/audit/proof/consistency?old=1", None, [200, 200, 403, 403]),
    ];
    let tokens = [&operator, &auditor, &admin, &connector];
    let names = ["operator", "auditor", "tenant-admin", "connector"];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        for (i, token) in tokens.iter().enumerate() {
            let r = t.call(method.clone(), path, Some(token), body.clone()).await;
            if r.status.as_u16() != expected[i] {
                failures.push(format!(
                    "{} {method} {path}: got {} want {} ({})",
                    names[i],
                    r.status.as_u16(),
                    expected[i],
                    r.body
                ));
            }
            // A secret reaches only the roles allowed to reveal it.
            if String::from_utf8_lossy(&r.raw).contains("s3cret") {
                assert!(path.contains("/reveal") && (i == 0 || i == 3), "{} saw a secret at {path}", names[i]);
            }
        }
    }
    assert!(failures.is_empty(), "policy mismatches:\n{}", failures.join("\n"));
    // The document names, for each of these operations, exactly the roles the policy let
    // through (any answer but 403).
    let doc = t.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    let mut admitted: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<&str>> =
        Default::default();
    for (method, path, _, expected) in &cases {
        let path = path.split('?').next().unwrap();
        let template = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .find(|tpl| {
                let (a, b): (Vec<_>, Vec<_>) = (tpl.split('/').collect(), path.split('/').collect());
                a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.starts_with('{') || x == y)
            })
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        let roles = admitted.entry((method.as_str().to_lowercase(), template.clone())).or_default();
        // A tenant-scoped role's 404 on the other tenant hides it; it is not an admission.
        let scoped_away = |i: usize| i >= 2 && path.contains("globex");
        roles.extend((0..4).filter(|&i| expected[i] != 403 && !scoped_away(i)).map(|i| names[i]));
    }
    for ((method, template), roles) in admitted {
        let documented: std::collections::BTreeSet<&str> = doc["paths"][&template][&method]["x-rekey-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {template}: no x-rekey-roles"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(documented, roles, "{method} {template}: documented roles");
    }
    assert_eq!(t.put("acme/relay", "s3cret-2").await.status, StatusCode::OK);
    let r =
        t.call(Method::POST, "/v1/tenants/acme/credentials/relay/rollback", Some(&admin), Some(json!({"to": 1}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A tenant admin listing without a tenant sees only its own.
    let r = t.call(Method::GET, "/v1/credentials", Some(&admin), None).await;
    assert!(r.body.as_array().unwrap().iter().all(|c| c["tenant"] == "acme"));
    // A connector cannot tell a hidden credential from a missing one.
    let hidden = t.call(Method::POST, "/v1/tenants/globex/credentials/dir/reveal", Some(&connector), None).await;
    let missing = t.call(Method::POST, "/v1/tenants/globex/credentials/zzz/reveal", Some(&connector), None).await;
    assert_eq!(hidden.status, missing.status);
    assert_eq!(
        hidden.body["message"].as_str().unwrap().replace("dir", "X"),
        missing.body["message"].as_str().unwrap().replace("zzz", "X")
    );
}

#[tokio::test]
async fn tokens_expire_revoke_and_respect_cidrs() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/dir", "pw").await;
    let far =
        t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["10.0.0.0/8"]})).await;
    assert_error(&t.reveal_with(&far, "acme/dir").await, StatusCode::FORBIDDEN, "forbidden");
    let from_ten = TestApp::router_from(&t.app, "10.1.2.3:5555");
    let r = t.call_on(&from_ten, Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&far), None).await;
    assert_eq!(r.status, StatusCode::OK);

    let short = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "ttl": "1s"})).await;
    assert_eq!(t.reveal_with(&short, "acme/dir").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&t.reveal_with(&short, "acme/dir").await, StatusCode::UNAUTHORIZED, "unauthenticated");

    let list = t.root(Method::GET, "/v1/tokens", None).await;
    let id = list.body.as_array().unwrap().iter().find(|x| x["cidrs"][0] == "10.0.0.0/8").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.root(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.status, StatusCode::OK);
    let r = t.call_on(&from_ten, Method::POST, "/v1/tenants/acme/credentials/dir/reveal", Some(&far), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_error(&t.root(Method::DELETE, &format!("/v1/tokens/{id}"), None).await, StatusCode::NOT_FOUND, "not_found");
    // A forged secret for a real id, and garbage, are both plain 401s.
    let forged = format!("{}0000", &t.root[..t.root.len() - 4]);
    assert_error(
        &t.call(Method::GET, "/v1/sys/status", Some(&forged), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_error(
        &t.call(Method::GET, "/v1/sys/status", Some("garbage"), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_error(&t.call(Method::GET, "/v1/sys/status", None, None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    // Token rules.
    for bad in [
        json!({"role": "connector", "tenant": "acme"}),
        json!({"role": "connector", "credentials": ["dir"]}),
        json!({"role": "operator", "tenant": "acme"}),
        json!({"role": "auditor", "credentials": ["dir"]}),
        json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["300.1.1.1/8"]}),
        json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "ttl": "-5m"}),
        json!({"role": "king"}),
    ] {
        assert_error(&t.root(Method::POST, "/v1/tokens", Some(bad)).await, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = t
        .root(
            Method::POST,
            "/v1/tokens",
            Some(json!({"role": "connector", "tenant": "acme", "credentials": ["ghost"]})),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/dir", "pw").await;
    let before = t.counts().await;
    let root = t.root.clone();
    let raw = |body: &str| Some(body.as_bytes().to_vec());
    let path = "/v1/tenants/acme/credentials/dir";
    type Case = (Method, String, Option<Vec<u8>>, StatusCode, &'static str);
    let cases: Vec<Case> = vec![
        (Method::PUT, path.into(), raw("{not json"), StatusCode::BAD_REQUEST, "bad_request"),
        (Method::PUT, path.into(), raw(""), StatusCode::BAD_REQUEST, "bad_request"),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"generic","secret":987654321}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"generic","secret":"x","extra":1}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (Method::PUT, path.into(), raw(r#"{"kind":"generic"}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (Method::PUT, path.into(), raw(r#"{"kind":"generic","secret":""}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (Method::PUT, path.into(), raw(r#"{"kind":"nosuch","secret":"x"}"#), StatusCode::BAD_REQUEST, "invalid_field"),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"ldap","secret":"x","fields":{"url":"http://x"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"ldap","secret":"x","fields":{"url":"ldap://x","bind_dn":"cn=a","colour":"red"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"pop3","secret":"x","fields":{"host":"h","port":"0","tls":"none","user":"u"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"ldap","secret":"x","fields":{"url":"ldap://x","bind_dn":"not a dn"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::PUT,
            path.into(),
            raw(r#"{"kind":"smtp","secret":"x","fields":{"host":"h","port":"25","tls":"none","user":"u"}}"#),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            Method::PUT,
            "/v1/tenants/Acme/credentials/dir".into(),
            raw(r#"{"kind":"generic","secret":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/credentials/d%20ir".into(),
            raw(r#"{"kind":"generic","secret":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            Method::PUT,
            "/v1/tenants/nobody/credentials/dir".into(),
            raw(r#"{"kind":"generic","secret":"x"}"#),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (Method::PUT, path.into(), Some(vec![b' '; 70 * 1024]), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        (Method::POST, "/v1/tenants".into(), raw(r#"{"name":"acme","region":"uk"}"#), StatusCode::CONFLICT, "conflict"),
        (
            Method::POST,
            "/v1/tenants".into(),
            raw(r#"{"name":"x","region":"United Kingdom"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            raw(r#"{"name":"x","region":"uk","contacts":["not-an-address"]}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (Method::POST, format!("{path}/rollback"), raw(r#"{"to":"one"}"#), StatusCode::BAD_REQUEST, "bad_request"),
        (Method::POST, format!("{path}/rollback"), raw(r#"{"to":9}"#), StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, format!("{path}/rollback"), raw(r#"{"to":1}"#), StatusCode::CONFLICT, "conflict"),
        (Method::GET, "/v1/credentials?limit=abc".into(), None, StatusCode::BAD_REQUEST, "bad_request"),
        (Method::GET, "/v1/credentials?kind=nosuch".into(), None, StatusCode::BAD_REQUEST, "invalid_field"),
        (Method::GET, "/v1/credentials?colour=red".into(), None, StatusCode::BAD_REQUEST, "bad_request"),
        (Method::DELETE, "/v1/tokens/not-a-uuid".into(), None, StatusCode::BAD_REQUEST, "bad_request"),
        (Method::GET, "/v1/no/such/route".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (Method::PATCH, "/v1/tenants".into(), None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let r = t.call_on(&t.router, method.clone(), &path, Some(&root), body).await;
        assert_error(&r, status, code);
        assert!(
            !String::from_utf8_lossy(&r.raw).contains("987654321"),
            "{method} {path}: a value from the body was echoed"
        );
    }
    assert_eq!(t.counts().await, before, "nothing changed");
    assert_eq!(t.reveal_with(&root, "acme/dir").await.body["secret"], "pw");
    // Every one of those requests left an audit event, and the chain is intact.
    let events = t.root(Method::GET, "/v1/audit/events?n=100", None).await;
    let errors = events.body.as_array().unwrap().iter().filter(|e| e["outcome"] == "error").count();
    assert!(errors >= 25, "only {errors} error events");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn the_database_never_holds_a_secret_or_token_in_clear() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let secrets: Vec<String> = (0..20).map(|i| format!("Distinctive-Secret-{i}-Zq8")).collect();
    for (i, s) in secrets.iter().enumerate() {
        assert_eq!(t.put(&format!("acme/c{i}"), s).await.status, StatusCode::OK);
    }
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["c0"]})).await;
    assert_eq!(t.reveal_with(&connector, "acme/c0").await.body["secret"], secrets[0].as_str());
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(t.dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("rekey.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(bytes.len() > 10_000);
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    for s in &secrets {
        assert!(!contains(s), "{s} is in the database files in clear");
    }
    for token in [&t.root, &connector] {
        let secret_half = token.rsplit('_').next().unwrap();
        assert!(!contains(secret_half), "a token secret is in the database in clear");
    }
    // The audit log holds none either.
    let events = t.root(Method::GET, "/v1/audit/events?n=1000", None).await;
    for s in &secrets {
        assert!(!String::from_utf8_lossy(&events.raw).contains(s.as_str()));
    }
}

#[tokio::test]
async fn ciphertexts_swapped_between_slots_fail_to_decrypt() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.tenant("globex", "us").await;
    t.put("acme/a", "secret-of-a").await;
    t.put("acme/b", "secret-of-b").await;
    t.put("globex/a", "secret-of-globex").await;
    let root = t.root.clone();
    let db = t.db();
    // Give acme/b the ciphertext and wrapped DEK of acme/a; give acme/a globex's.
    let rows: Vec<(String, Vec<u8>, Vec<u8>)> = db
        .prepare(
            "SELECT t.name || '/' || c.name, v.wrapped_dek, v.ciphertext FROM credential_versions v \
             JOIN credentials c ON c.id = v.credential_id JOIN tenants t ON t.id = c.tenant_id ORDER BY 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let get = |n: &str| rows.iter().find(|r| r.0 == n).unwrap().clone();
    let (a, g) = (get("acme/a"), get("globex/a"));
    let set = "UPDATE credential_versions SET wrapped_dek = $1, ciphertext = $2 WHERE credential_id = \
               (SELECT c.id FROM credentials c JOIN tenants t ON t.id = c.tenant_id WHERE t.name || '/' || c.name = $3)";
    db.execute(set, rusqlite::params![a.1, a.2, "acme/b"]).unwrap();
    db.execute(set, rusqlite::params![g.1, g.2, "acme/a"]).unwrap();
    for cred in ["acme/a", "acme/b"] {
        let r = t.reveal_with(&root, cred).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "decrypt_failed");
        assert_eq!(r.body["message"], "internal error");
        assert!(!String::from_utf8_lossy(&r.raw).contains("secret-of"));
    }
    // Only the ciphertext (own wrapped DEK) swapped: still refused.
    let b_orig = get("acme/b");
    db.execute(set, rusqlite::params![b_orig.1, a.2, "acme/b"]).unwrap();
    assert_error(&t.reveal_with(&root, "acme/b").await, StatusCode::INTERNAL_SERVER_ERROR, "decrypt_failed");
    // Untouched credentials still work.
    assert_eq!(t.reveal_with(&root, "globex/a").await.body["secret"], "secret-of-globex");
}

#[tokio::test]
async fn audit_fails_closed() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/dir", "pw-before").await;
    let root = t.root.clone();
    let db = t.db();
    db.execute_batch("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'simulated audit outage'); END;")
        .unwrap();
    let r = t.reveal_with(&root, "acme/dir").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    assert!(!String::from_utf8_lossy(&r.raw).contains("pw-before"), "no secret leaves without its audit event");
    let r = t.put("acme/dir", "pw-during").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    let r = t.root(Method::POST, "/v1/tenants", Some(json!({"name": "newco", "region": "uk"}))).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    db.execute_batch("DROP TRIGGER audit_down").unwrap();
    // The refused writes did not happen.
    let r = t.reveal_with(&root, "acme/dir").await;
    assert_eq!((r.body["secret"].as_str(), r.body["version"].as_u64()), (Some("pw-before"), Some(1)));
    assert_error(&t.root(Method::GET, "/v1/tenants/newco", None).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(t.verify().await["ok"], true);
}

/// Builds an app with some history, tampers with its audit log through `sql`, and returns the
/// verify report.
async fn tampered(sql: &str) -> Value {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    for i in 0..8 {
        t.put(&format!("acme/c{i}"), "x").await;
    }
    assert_eq!(t.verify().await["ok"], true);
    t.db().execute_batch(sql).unwrap();
    t.verify().await
}

#[tokio::test]
async fn an_event_forged_at_the_next_sequence_number_stops_the_vault() {
    // The forged row takes the number the next real event needs: appending fails, and the
    // vault refuses every request rather than serve without an audit trail.
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/a", "x").await;
    t.db()
        .execute_batch(
            "INSERT INTO audit_events SELECT (SELECT seq FROM audit_head) + 1, time, principal, action, resource, outcome, source, \
             request_id, detail, mac, leaf FROM audit_events WHERE seq = 2",
        )
        .unwrap();
    let root = t.root.clone();
    assert_error(&t.reveal_with(&root, "acme/a").await, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    assert_error(
        &t.root(Method::GET, "/v1/audit/verify", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
    );
}

fn problem_kinds(report: &Value) -> Vec<(i64, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["seq"].as_i64().unwrap(), p["kind"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn audit_verify_names_each_kind_of_tampering() {
    let r = tampered("UPDATE audit_events SET detail = 'nothing to see' WHERE seq = 5").await;
    assert_eq!(r["ok"], false);
    assert_eq!(problem_kinds(&r), vec![(5, "modified".to_string())]);

    let r = tampered("DELETE FROM audit_events WHERE seq = 6").await;
    let kinds = problem_kinds(&r);
    assert!(kinds.contains(&(6, "deleted".into())), "{kinds:?}");

    let r = tampered(
        "INSERT INTO audit_events SELECT (SELECT seq FROM audit_head) + 1000, time, principal, action, resource, outcome, source, \
         request_id, detail, mac, leaf FROM audit_events WHERE seq = 3",
    )
    .await;
    let kinds = problem_kinds(&r);
    assert!(kinds.iter().any(|(_, k)| k == "appended"), "{kinds:?}");

    // Reorder: swap the contents of events 4 and 7, each keeping its MAC.
    let r = tampered(
        "CREATE TEMP TABLE swap AS SELECT seq, time, resource, request_id FROM audit_events WHERE seq IN (4, 7); \
         UPDATE audit_events SET time = (SELECT time FROM swap WHERE swap.seq = 11 - audit_events.seq), \
         resource = (SELECT resource FROM swap WHERE swap.seq = 11 - audit_events.seq), \
         request_id = (SELECT request_id FROM swap WHERE swap.seq = 11 - audit_events.seq) WHERE seq IN (4, 7)",
    )
    .await;
    assert_eq!(problem_kinds(&r), vec![(4, "modified".to_string()), (7, "modified".to_string())]);

    let r = tampered("DELETE FROM audit_events WHERE seq > 6").await;
    let kinds = problem_kinds(&r);
    assert_eq!(kinds.first(), Some(&(7, "truncated".to_string())), "{kinds:?}");

    // A careful attacker also moves the head back, and the Merkle tree's edge with it (from the
    // leaves of the six events kept): the server's own high-water mark catches it.
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    for i in 0..8 {
        t.put(&format!("acme/c{i}"), "x").await;
    }
    let db = t.db();
    let mut frontier = rekey_tlog::Frontier::new();
    {
        let mut leaves = db.prepare("SELECT leaf FROM audit_events WHERE seq <= 6 ORDER BY seq").unwrap();
        for leaf in leaves.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            frontier.push(leaf.unwrap().try_into().unwrap());
        }
    }
    db.execute_batch("DELETE FROM audit_events WHERE seq > 6").unwrap();
    db.execute(
        "UPDATE audit_head SET seq = 6, mac = (SELECT mac FROM audit_events WHERE seq = 6), tree_size = 6, tree_edge = ?1",
        [frontier.edge().concat()],
    )
    .unwrap();
    let r = t.verify().await;
    let kinds = problem_kinds(&r);
    assert!(kinds.contains(&(7, "truncated".to_string())), "{kinds:?}");
}

#[tokio::test]
async fn concurrent_puts_make_consecutive_versions() {
    let t = std::sync::Arc::new(TestApp::spawn().await);
    t.tenant("acme", "uk").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move { t.put("acme/hot", &format!("v{i}")).await.status }));
    }
    let mut ok = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "{status}");
        ok += usize::from(status == StatusCode::OK);
    }
    let versions = t.root(Method::GET, "/v1/tenants/acme/credentials/hot/versions", None).await;
    let list = versions.body.as_array().unwrap();
    assert_eq!(list.len(), ok);
    assert!(list.iter().enumerate().all(|(i, v)| v["version"] == i as u64 + 1));
    assert_eq!(list.iter().filter(|v| v["stage"] == "current").count(), 1);
    assert_eq!(ok, 24, "concurrent puts of one credential take turns on one server");
}

/// A put starts from what the previous put of the credential saw; every other write of this
/// server keeps that current, so none of these puts has to retry (a retry leaves a failed
/// `cred.put` event behind) and each lands where it should.
#[tokio::test]
async fn puts_follow_rollbacks_deletes_and_key_rotations() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    for secret in ["one", "two"] {
        assert_eq!(t.put("acme/a", secret).await.status, StatusCode::OK);
    }
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/a/rollback", Some(json!({"to": 1}))).await;
    assert_eq!(r.body["current_version"], 3);
    assert_eq!(t.put("acme/a", "four").await.body["current_version"], 4);
    assert_eq!(t.root(Method::DELETE, "/v1/tenants/acme/credentials/a", None).await.status, StatusCode::OK);
    assert_eq!(t.put("acme/a", "fresh").await.body["current_version"], 1);
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"tenant": "acme"}))).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(t.put("acme/a", "after").await.body["current_version"], 2);
    let kek = |v: i64| stored_versions(&t, "acme").iter().filter(|s| s.0 == "a" && s.1 == v).map(|s| s.2).max();
    assert_eq!(kek(2), Some(2), "the put after the rotation is under the new key");
    let root = t.root.clone();
    assert_eq!(t.reveal_with(&root, "acme/a").await.body["secret"], "after");
    let events = t.root(Method::GET, "/v1/audit/events?n=100", None).await.body;
    let failed: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["outcome"] != "success").collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn import_is_all_or_nothing_unless_asked() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let good = r#"{"tenant":"acme","name":"a","kind":"generic","secret":"sa"}"#;
    let lines = [
        good,
        r#"{"tenant":"acme","name":"B","kind":"generic","secret":"x"}"#,
        r#"{"tenant":"newco","region":"eu","name":"n","kind":"ldap","fields":{"url":"ldap://h","bind_dn":"cn=x"},"secret":"sn"}"#,
        r#"not json"#,
        r#"{"tenant":"acme","name":"c","kind":"generic","secret_base64":"/wD+"}"#,
    ]
    .join("\n");
    let t = &t;
    let send = |query: &str| {
        let body = lines.clone().into_bytes();
        let path = format!("/v1/import?{query}");
        async move { t.call_on(&t.router, Method::POST, &path, Some(&t.root), Some(body)).await }
    };
    let r = send("dry_run=true&first_line=10").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let errs: Vec<u64> = r.body["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(errs, vec![11, 12, 13], "{:?}", r.body);
    assert!(r.body["errors"][1]["reason"].as_str().unwrap().contains("--create-tenants"));
    let before = t.counts().await;
    let r = send("mode=atomic").await;
    assert_eq!(r.body["written"], 0);
    assert_eq!(t.counts().await, before, "an atomic chunk with bad lines writes nothing");
    let r = send("mode=continue-on-error&create_tenants=true").await;
    assert_eq!(r.body["written"], 3, "{:?}", r.body);
    assert_eq!(r.body["tenants_created"], json!(["newco"]));
    let root = t.root.clone();
    assert_eq!(t.reveal_with(&root, "newco/n").await.body["secret"], "sn");
    assert_eq!(t.reveal_with(&root, "acme/c").await.body["secret_base64"], "/wD+");
    assert_eq!(t.root(Method::GET, "/v1/tenants/newco", None).await.body["region"], "eu");
    // Importing the same name again makes a new version.
    let r = t.call_on(&t.router, Method::POST, "/v1/import", Some(&root), Some(good.as_bytes().to_vec())).await;
    assert_eq!(r.body["written"], 1);
    assert_eq!(t.reveal_with(&root, "acme/a").await.body["version"], 2);
    // One chunk: an existing credential, and a new one named twice.
    let mixed = [
        good,
        r#"{"tenant":"acme","name":"d","kind":"generic","secret":"sd1"}"#,
        r#"{"tenant":"acme","name":"d","kind":"generic","secret":"sd2"}"#,
    ]
    .join("\n");
    let r = t.call_on(&t.router, Method::POST, "/v1/import", Some(&root), Some(mixed.into_bytes())).await;
    assert_eq!(r.body["written"], 3, "{:?}", r.body);
    assert_eq!(t.reveal_with(&root, "acme/a").await.body["version"], 3);
    let d = t.reveal_with(&root, "acme/d").await;
    assert_eq!((d.body["version"].as_u64(), d.body["secret"].as_str()), (Some(2), Some("sd2")));
}

/// The document is generated from the handlers, and the router registers a handler only through
/// its documentation: each documented operation is served, no other method is served on a
/// documented path, and the document is whole (ids unique, every reference resolves, every
/// operation answers its errors as `Error`, and names whom it admits).
#[tokio::test]
async fn openapi_documents_exactly_the_routes_served() {
    let t = TestApp::spawn().await;
    let doc = t.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let concrete = |path: &str| {
        path.replace("{tenant}", "acme")
            .replace("{name}", "x")
            .replace("{id}", "01a2a6c4-20b7-70f6-8746-fb26912d2871")
            .replace("{key}", "acme@1")
            .replace("{thumbprint}", &"0".repeat(40))
    };
    let mut ids = std::collections::BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Sealing would end the test; the probe's 401 without a token shows it is served.
            let r = t.call(m, &concrete(path), None, None).await;
            let unrouted = r.status == StatusCode::METHOD_NOT_ALLOWED
                || (r.status == StatusCode::NOT_FOUND
                    && r.body["message"].as_str().is_some_and(|s| s.contains("no such route")));
            let Some(op) = item.get(method) else {
                assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is served but not documented");
                continue;
            };
            operations += 1;
            assert!(!unrouted, "{method} {path} is documented but not served");
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "{method} {path}: operationId again");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}: no summary");
            for status in ["400", "401", "403", "404", "409", "429", "500", "503"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path}: {status}"
                );
            }
            let anonymous =
                op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().unwrap().is_empty()));
            assert!(anonymous || op["x-rekey-roles"].is_array(), "{method} {path}: whom it admits");
        }
    }
    assert!(operations >= 53, "{operations} operations");
    let text = doc.body.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(doc.body["components"]["schemas"].get(name).is_some(), "{name} is referenced but not defined");
    }
}

/// The audit log's Merkle tree covers every event, and its proofs verify with the RFC 6962
/// verifier alone: an event's leaf is the hash of the bytes its chain MAC covers.
#[tokio::test]
async fn the_audit_tree_proves_each_event_and_every_prefix() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    for i in 0..5 {
        t.put(&format!("acme/c{i}"), "x").await;
    }
    let head = t.root(Method::GET, "/v1/audit/tree", None).await.body;
    let size = head["size"].as_u64().unwrap();
    let events = t.root(Method::GET, &format!("/v1/audit/events?n={size}"), None).await.body;
    let events = events.as_array().unwrap();
    assert!(events.len() as u64 >= size && size >= 7, "{size} events in the tree, {} in the log", events.len());
    let hash = |v: &Value| -> rekey_tlog::Hash { hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap() };
    for seq in [1, 3, size as i64] {
        let p = t.root(Method::GET, &format!("/v1/audit/proof/inclusion?seq={seq}&size={size}"), None).await.body;
        let proof: Vec<_> = p["proof"].as_array().unwrap().iter().map(hash).collect();
        assert_eq!(p["tree"]["root"], head["root"]);
        assert!(rekey_tlog::tree::verify_inclusion(
            seq as u64 - 1,
            size,
            &hash(&p["leaf"]),
            &proof,
            &hash(&head["root"])
        ));
    }
    // The leaf is the event's own: recomputed from the event as listed.
    let first = &events[0];
    let record = rekey_types::AuditRecord {
        seq: first["seq"].as_i64().unwrap(),
        time: rekey_types::Timestamp::parse_rfc3339(first["time"].as_str().unwrap()).unwrap(),
        principal: first["principal"].as_str().unwrap().into(),
        action: first["action"].as_str().unwrap().into(),
        resource: first["resource"].as_str().unwrap().into(),
        outcome: rekey_types::AuditOutcome::parse(first["outcome"].as_str().unwrap()).unwrap(),
        source: first["source"].as_str().unwrap().into(),
        request_id: first["request_id"].as_str().unwrap().into(),
        detail: first["detail"].as_str().unwrap().into(),
    };
    let p = t.root(Method::GET, &format!("/v1/audit/proof/inclusion?seq={}", record.seq), None).await.body;
    assert_eq!(hash(&p["leaf"]), rekey_tlog::leaf_hash(&record.canonical_bytes()));
    // Every older tree is a prefix of the newer.
    let later = t.root(Method::GET, "/v1/audit/tree", None).await.body;
    let c = t.root(Method::GET, &format!("/v1/audit/proof/consistency?old=3&new={}", later["size"]), None).await.body;
    let proof: Vec<_> = c["proof"].as_array().unwrap().iter().map(hash).collect();
    assert!(rekey_tlog::tree::verify_consistency(
        3,
        later["size"].as_u64().unwrap(),
        &hash(&c["old"]["root"]),
        &hash(&later["root"]),
        &proof
    ));
    // Beyond the log, or out of order: refused, and nothing is made up.
    assert_error(
        &t.root(Method::GET, "/v1/audit/proof/inclusion?seq=100000", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(&t.root(Method::GET, "/v1/audit/tree?size=100000", None).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &t.root(Method::GET, "/v1/audit/proof/consistency?old=5&new=4", None).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &t.root(Method::GET, "/v1/audit/proof/inclusion?seq=0", None).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

/// Sealing takes an operator's token; once sealed, the vault answers `503 sealed` to everything,
/// a request without a token included (the API fuzzing cannot see the 401 after its first seal,
/// so this test holds it).
#[tokio::test]
async fn seal_needs_an_operator_token() {
    let t = TestApp::spawn().await;
    let auditor = t.token(json!({"role": "auditor"})).await;
    assert_error(&t.call(Method::POST, "/v1/sys/seal", None, None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_error(&t.call(Method::POST, "/v1/sys/seal", Some(&auditor), None).await, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(t.root(Method::POST, "/v1/sys/seal", None).await.status, StatusCode::OK);
    assert_error(&t.call(Method::POST, "/v1/sys/seal", None, None).await, StatusCode::SERVICE_UNAVAILABLE, "sealed");
}

#[tokio::test]
async fn metrics_and_health_carry_no_names_or_secrets() {
    let t = TestApp::spawn().await;
    t.tenant("secretive-tenant", "uk").await;
    t.put("secretive-tenant/hidden-name", "metric-secret").await;
    let h = t.call(Method::GET, "/v1/sys/health", None, None).await;
    assert_eq!(h.body["status"], "ok");
    let m = t.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(m.raw).unwrap();
    assert!(text.contains("rekey_http_requests_total{"), "{text}");
    assert!(text.contains("rekey_audit_events_total"));
    assert!(text.contains("\nrekey_audit_index_lag "), "the SQLite store's audit index lag is shown: {text}");
    for word in ["secretive", "hidden-name", "metric-secret", &t.root] {
        assert!(!text.contains(word), "{word} leaked into /metrics");
    }
}

#[tokio::test]
async fn tour_on_postgres() {
    let Some(url) = fresh_postgres_database().await else { return };
    let t = TestApp::spawn_with(Some(url)).await;
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/dir", "pg-secret").await.status, StatusCode::OK);
    assert_eq!(t.put("acme/dir", "pg-secret-2").await.body["current_version"], 2);
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    assert_eq!(t.reveal_with(&connector, "acme/dir").await.body["secret"], "pg-secret-2");
    assert_eq!(t.root(Method::GET, "/v1/sys/status", None).await.body["store"], "postgres");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn key_custody_on_postgres() {
    let Some(url) = fresh_postgres_database().await else { return };
    let t = TestApp::spawn_with(Some(url)).await;
    for tenant in ["acme", "globex"] {
        t.tenant(tenant, "uk").await;
        for c in ["a", "b"] {
            t.put(&format!("{tenant}/{c}"), &format!("{tenant}-{c}")).await;
        }
    }
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"all": true}))).await;
    assert_eq!((job["state"].as_str(), job["done"].as_i64()), (Some("done"), Some(4)), "{job}");
    let r = t.root(Method::POST, "/v1/keys/acme@2/compromise", None).await;
    assert_eq!(t.wait_job(r.body["id"].as_str().unwrap()).await["state"], "done");
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    assert_eq!(key_state(&list, "acme@2"), ("compromised".into(), 0));
    assert_eq!(key_state(&list, "acme@3"), ("active".into(), 2));
    assert_eq!(t.root(Method::DELETE, "/v1/keys/acme@1", None).await.status, StatusCode::OK);
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"root": true}))).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/a").await.body["secret"], "acme-a");
    assert_eq!(t.root(Method::POST, "/v1/tenants/globex/shred", None).await.status, StatusCode::OK);
    assert_error(&t.reveal_with(&t.root.clone(), "globex/a").await, StatusCode::GONE, "key_destroyed");
    let fields = json!({"token_url": "https://login.example/t/oauth2/v2.0/token", "client_id": "abc", "scope": "x"});
    t.root(
        Method::PUT,
        "/v1/tenants/acme/credentials/ews",
        Some(json!({"kind": "entra-app", "fields": fields, "secret": "s"})),
    )
    .await;
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/ews/certificate", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(t.root(Method::GET, "/v1/certificates", None).await.body.as_array().unwrap().len(), 1);
    assert_eq!(t.verify().await["ok"], true);
}

// ---- key custody ----------------------------------------------------------------------------

/// `(credential name, version, kek_version, wrapped_dek, ciphertext)`.
type StoredVersion = (String, i64, i64, Vec<u8>, Vec<u8>);

/// Every stored version of a tenant's credentials.
fn stored_versions(t: &TestApp, tenant: &str) -> Vec<StoredVersion> {
    let db = t.db();
    let mut st = db
        .prepare(
            "SELECT c.name, v.version, v.kek_version, v.wrapped_dek, v.ciphertext FROM credential_versions v \
             JOIN credentials c ON c.id = v.credential_id JOIN tenants t ON t.id = c.tenant_id \
             WHERE t.name = ?1 ORDER BY c.name, v.version",
        )
        .unwrap();
    st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn reveal_version(t: &TestApp, cred: &str, version: i64) -> Reply {
    let (tn, n) = cred.split_once('/').unwrap();
    t.root(Method::POST, &format!("/v1/tenants/{tn}/credentials/{n}/reveal?version={version}"), None).await
}

fn key_state(list: &Value, key: &str) -> (String, i64) {
    for t in list["tenants"].as_array().unwrap() {
        for k in t["versions"].as_array().unwrap() {
            if k["key"] == key {
                return (k["state"].as_str().unwrap().to_owned(), k["deks"].as_i64().unwrap());
            }
        }
    }
    for r in list["root"].as_array().unwrap() {
        if r["key"] == key {
            return (r["state"].as_str().unwrap().to_owned(), r["keks"].as_i64().unwrap());
        }
    }
    panic!("no key {key} in {list}");
}

#[tokio::test]
async fn tenant_rotation_rewraps_every_dek_and_never_touches_a_payload() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.tenant("globex", "us").await;
    for name in ["a", "b", "c"] {
        for v in 1..=2 {
            assert_eq!(t.put(&format!("acme/{name}"), &format!("{name}-secret-{v}")).await.status, StatusCode::OK);
        }
    }
    t.put("globex/a", "g-secret").await;
    let before = stored_versions(&t, "acme");
    let globex_before = stored_versions(&t, "globex");
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"tenant": "acme"}))).await;
    assert_eq!(
        (job["state"].as_str(), job["done"].as_i64(), job["total"].as_i64()),
        (Some("done"), Some(6), Some(6)),
        "{job}"
    );
    let after = stored_versions(&t, "acme");
    assert_eq!(after.len(), 6);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.2, a.2), (1, 2), "every version moved to acme@2");
        assert_ne!(b.3, a.3, "the wrapped DEK changed");
        assert_eq!(b.4, a.4, "the payload was not re-encrypted");
    }
    assert_eq!(stored_versions(&t, "globex"), globex_before, "other tenants untouched");
    for name in ["a", "b", "c"] {
        for v in 1..=2 {
            let r = reveal_version(&t, &format!("acme/{name}"), v).await;
            assert_eq!(r.body["secret"], format!("{name}-secret-{v}"), "{:?}", r.body);
        }
    }
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    assert_eq!(key_state(&list, "acme@1"), ("retired".into(), 0));
    assert_eq!(key_state(&list, "acme@2"), ("active".into(), 6));
    assert_eq!(key_state(&list, "globex@1"), ("active".into(), 1));
    // New versions go under the new key.
    t.put("acme/a", "a-secret-3").await;
    assert_eq!(stored_versions(&t, "acme").iter().find(|v| v.0 == "a" && v.1 == 3).unwrap().2, 2);
    // Bad input changes nothing.
    for body in [
        json!({}),
        json!({"tenant": "acme", "all": true}),
        json!({"tenant": "Nope"}),
        json!({"tenant": "acme", "x": 1}),
    ] {
        let r = t.root(Method::POST, "/v1/keys/rotate", Some(body)).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            if r.body["code"] == "invalid_name" { "invalid_name" } else { "bad_request" },
        );
    }
    let r = t.root(Method::POST, "/v1/keys/rotate", Some(json!({"tenant": "nobody"}))).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    for key in ["acme@9", "nobody@1", "root@9"] {
        let r = t.root(Method::GET, &format!("/v1/keys/{key}"), None).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.body["total"] == 0, "{key}: {:?}", r.body);
        let r = t.root(Method::POST, &format!("/v1/keys/{key}/compromise"), None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
    let r = t.root(Method::POST, "/v1/keys/acme@x/compromise", None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(stored_versions(&t, "acme").len(), 7);
    // Auditors see keys but change none.
    let auditor = t.token(json!({"role": "auditor"})).await;
    assert_eq!(t.call(Method::GET, "/v1/keys", Some(&auditor), None).await.status, StatusCode::OK);
    let r = t.call(Method::POST, "/v1/keys/rotate", Some(&auditor), Some(json!({"all": true}))).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let events = t.root(Method::GET, "/v1/audit/events?n=200", None).await.body;
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["key.rotate", "key.create", "key.rewrap", "key.job.finish"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn rotating_all_tenants_and_the_root_survives_a_restart() {
    let t = TestApp::spawn().await;
    for (name, region) in [("acme", "uk"), ("globex", "us"), ("initech", "us")] {
        t.tenant(name, region).await;
        t.put(&format!("{name}/db"), &format!("{name}-pw")).await;
    }
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"all": true}))).await;
    assert_eq!(job["state"], "done", "{job}");
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    for name in ["acme", "globex", "initech"] {
        assert_eq!(key_state(&list, &format!("{name}@2")), ("active".into(), 1));
    }
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"root": true}))).await;
    assert_eq!(job["state"], "done", "{job}");
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    assert_eq!(key_state(&list, "root@1"), ("retired".into(), 0));
    assert_eq!(key_state(&list, "root@2"), ("active".into(), 6));
    let status = t.root(Method::GET, "/v1/sys/status", None).await.body;
    assert_eq!(status["seal"]["root_key_version"], 2);
    // The dev key file now holds both versions; a restart opens everything.
    let t = t.restart("dev").await;
    for name in ["acme", "globex", "initech"] {
        assert_eq!(t.reveal_with(&t.root.clone(), &format!("{name}/db")).await.body["secret"], format!("{name}-pw"));
    }
    // The active root cannot be destroyed; the old one, which wraps nothing now, can.
    let r = t.root(Method::DELETE, "/v1/keys/root@2", None).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = t.root(Method::DELETE, "/v1/keys/root@1", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let key_file = std::fs::read_to_string(t.dir.path().join("data/dev-root.key")).unwrap();
    assert!(!key_file.lines().any(|l| l.starts_with("1:")), "root@1 is gone from the key file");
    let t = t.restart("dev").await;
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/db").await.body["secret"], "acme-pw");
    let r = t.root(Method::DELETE, "/v1/keys/root@1", None).await;
    assert_error(&r, StatusCode::GONE, "key_destroyed");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn compromised_keys_never_serve_and_destroyed_keys_say_unrecoverable() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.put("acme/a", "alpha").await;
    t.put("acme/b", "bravo").await;
    // Damage one wrapped DEK: the rotation moves everything else and reports it.
    t.db()
        .execute(
            "UPDATE credential_versions SET wrapped_dek = CAST(zeroblob(length(wrapped_dek)) AS BLOB) \
             WHERE credential_id = (SELECT id FROM credentials WHERE name = 'b')",
            [],
        )
        .unwrap();
    let r = t.root(Method::POST, "/v1/keys/acme@1/compromise", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let job = t.wait_job(r.body["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("1 wrapped keys could not be opened"), "{job}");
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/a").await.body["secret"], "alpha", "moved off the compromised key");
    // What is still under the compromised key is never served.
    let r = t.reveal_with(&t.root.clone(), "acme/b").await;
    assert_error(&r, StatusCode::CONFLICT, "key_compromised");
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    assert_eq!(key_state(&list, "acme@1"), ("compromised".into(), 1));
    assert_eq!(key_state(&list, "acme@2"), ("active".into(), 1));
    // Destroying it needs force, because it still wraps data; the active one cannot go at all.
    let r = t.root(Method::DELETE, "/v1/keys/acme@1", None).await;
    assert_error(&r, StatusCode::CONFLICT, "key_in_use");
    let r = t.root(Method::DELETE, "/v1/keys/acme@2?force=true", None).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = t.root(Method::GET, "/v1/keys/acme@1", None).await;
    assert_eq!((r.body["total"].as_i64(), r.body["items"][0].as_str()), (Some(1), Some("acme/b v1")), "{:?}", r.body);
    let r = t.root(Method::DELETE, "/v1/keys/acme@1?force=true", None).await;
    assert_eq!((r.status, r.body["unrecoverable"].as_i64()), (StatusCode::OK, Some(1)), "{:?}", r.body);
    let r = t.reveal_with(&t.root.clone(), "acme/b").await;
    assert_error(&r, StatusCode::GONE, "key_destroyed");
    let wrapped: Vec<u8> =
        t.db().query_row("SELECT wrapped FROM tenant_keks WHERE version = 1", [], |r| r.get(0)).unwrap();
    assert!(wrapped.is_empty(), "the destroyed key's wrapped bytes are erased");
    // A state set elsewhere (another server on the same database) is seen within a second.
    t.db().execute("UPDATE tenant_keks SET state = 'compromised' WHERE version = 2", []).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&t.reveal_with(&t.root.clone(), "acme/a").await, StatusCode::CONFLICT, "key_compromised");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn shredding_a_tenant_makes_its_credentials_unrecoverable_and_keeps_its_history() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    t.tenant("globex", "us").await;
    t.put("acme/a", "alpha").await;
    t.put("globex/a", "gamma").await;
    let r = t.root(Method::POST, "/v1/tenants/acme/shred", None).await;
    assert_eq!((r.status, r.body["keys_destroyed"].as_u64()), (StatusCode::OK, Some(1)), "{:?}", r.body);
    assert_error(&t.reveal_with(&t.root.clone(), "acme/a").await, StatusCode::GONE, "key_destroyed");
    assert_error(&t.put("acme/b", "x").await, StatusCode::GONE, "key_destroyed");
    assert_error(&t.root(Method::POST, "/v1/tenants/acme/shred", None).await, StatusCode::GONE, "key_destroyed");
    assert_eq!(t.reveal_with(&t.root.clone(), "globex/a").await.body["secret"], "gamma");
    assert_eq!(t.root(Method::GET, "/v1/tenants/acme", None).await.body["state"], "shredded");
    let events = t.root(Method::GET, "/v1/audit/events?n=100", None).await.body;
    assert!(events.as_array().unwrap().iter().any(|e| e["action"] == "cred.put" && e["resource"] == "acme/a"));
    assert!(events.as_array().unwrap().iter().any(|e| e["action"] == "tenant.shred"));
    // Rotating everything skips the shredded tenant.
    let job = t.start_job(Method::POST, "/v1/keys/rotate", Some(json!({"all": true}))).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn shamir_seal_init_unseal_seal_and_root_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestApp::config(&dir);
    config.seal.kind = "shamir".into();
    let app = rekey_server::App::build(config).await.unwrap();
    assert!(app.root_token.is_none(), "nothing exists before init and unseal");
    let router = TestApp::router_from(&app, "127.0.0.1:40000");
    let mut t = TestApp { app, router, root: String::new(), dir };
    // Sealed: every route but health, status and the seal's own answers 503.
    assert_error(&t.call(Method::GET, "/v1/tenants", None, None).await, StatusCode::SERVICE_UNAVAILABLE, "sealed");
    assert_error(&t.call(Method::GET, "/v1/keys", Some("rk_x"), None).await, StatusCode::SERVICE_UNAVAILABLE, "sealed");
    assert_eq!(t.call(Method::GET, "/v1/sys/health", None, None).await.body["sealed"], true);
    let s = t.call(Method::GET, "/v1/sys/status", None, None).await.body;
    assert_eq!(
        (s["seal"]["kind"].as_str(), s["seal"]["sealed"].as_bool(), s["seal"]["initialized"].as_bool()),
        (Some("shamir"), Some(true), Some(false))
    );
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(json!({"share": "x"}))).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    for bad in [json!({"shares": 2, "threshold": 3}), json!({"shares": 3, "threshold": 1}), json!({"shares": 3})] {
        let r = t.call(Method::POST, "/v1/sys/init", None, Some(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    }
    let r = t.call(Method::POST, "/v1/sys/init", None, Some(json!({"shares": 5, "threshold": 3}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let shares: Vec<String> =
        r.body["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    assert_eq!(shares.len(), 5);
    assert_error(
        &t.call(Method::POST, "/v1/sys/init", None, Some(json!({"shares": 5, "threshold": 3}))).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let unseal = |share: String| json!({ "share": share });
    // Wrong shares are named for what they are, and change nothing.
    let typo = format!("{}{}", &shares[0][..shares[0].len() - 1], if shares[0].ends_with('0') { '1' } else { '0' });
    let foreign = rekey_crypto::ShamirSeal::initialize(3, 2).unwrap().shares[0].to_string();
    for (bad, says) in
        [("garbage".to_owned(), "not a Rekey unseal share"), (typo, "mistyped"), (foreign, "another key set")]
    {
        let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(bad))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_share");
        assert!(r.body["message"].as_str().unwrap().contains(says), "{:?}", r.body);
    }
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(shares[0].clone()))).await;
    assert_eq!((r.body["sealed"].as_bool(), r.body["progress"].as_u64()), (Some(true), Some(1)), "{:?}", r.body);
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(shares[0].clone()))).await;
    assert!(r.body["message"].as_str().unwrap().contains("already given"), "{:?}", r.body);
    assert_eq!(t.call(Method::GET, "/v1/sys/status", None, None).await.body["seal"]["unseal_progress"], 1);
    // A forged share (right format, checksum, key set and index; another value) is refused on
    // arrival and counts for nothing.
    let forged = forge_share(&shares[1]);
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(forged.clone()))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_share");
    assert!(r.body["message"].as_str().unwrap().contains("not issued"), "{:?}", r.body);
    assert_eq!(t.call(Method::GET, "/v1/sys/status", None, None).await.body["seal"]["unseal_progress"], 1);
    // Only a share holder resets: no share, or a forged one, is refused and changes nothing.
    let reset = |share: Option<String>| match share {
        Some(s) => json!({"reset": true, "share": s}),
        None => json!({"reset": true}),
    };
    assert_error(
        &t.call(Method::POST, "/v1/sys/unseal", None, Some(reset(None))).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &t.call(Method::POST, "/v1/sys/unseal", None, Some(reset(Some(forged)))).await,
        StatusCode::BAD_REQUEST,
        "invalid_share",
    );
    assert_eq!(t.call(Method::GET, "/v1/sys/status", None, None).await.body["seal"]["unseal_progress"], 1);
    // Reset with a real share forgets progress (that share does not count).
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(reset(Some(shares[4].clone())))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(t.call(Method::GET, "/v1/sys/status", None, None).await.body["seal"]["unseal_progress"], 0);
    for s in &shares[2..4] {
        t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(s.clone()))).await;
    }
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(shares[0].clone()))).await;
    assert_eq!(r.body["sealed"], false, "{:?}", r.body);
    t.root = r.body["root_token"].as_str().expect("the first unseal hands out the root token").to_owned();
    // The reset made while sealed is in the unseal's audit event, with its source.
    let audit = t.root(Method::GET, "/v1/audit/events?n=100", None).await.body.to_string();
    assert!(audit.contains("progress was reset 1 times while sealed"), "{audit}");
    t.tenant("acme", "uk").await;
    t.put("acme/a", "alpha").await;
    // Sealing drops the keys; unsealing again needs shares again; no second root token.
    assert_eq!(t.root(Method::POST, "/v1/sys/seal", None).await.status, StatusCode::OK);
    assert_error(&t.reveal_with(&t.root.clone(), "acme/a").await, StatusCode::SERVICE_UNAVAILABLE, "sealed");
    for s in &shares[1..4] {
        let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(s.clone()))).await;
        assert!(r.body.get("root_token").is_none());
    }
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/a").await.body["secret"], "alpha");
    // Root rotation: new shares; nothing changes until the commit.
    let r = t.root(Method::POST, "/v1/keys/rotate", Some(json!({"root": true}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = t.root(Method::POST, "/v1/keys/rotate", Some(json!({"root": true, "shares": 3, "threshold": 2}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new_shares: Vec<String> =
        r.body["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    let set_id = r.body["set_id"].as_str().unwrap().to_owned();
    let events = t.root(Method::GET, "/v1/audit/events?n=20", None).await.raw;
    assert!(!String::from_utf8_lossy(&events).contains(&new_shares[0]), "shares never reach the audit log");
    let r = t.root(Method::POST, "/v1/keys/rotate/commit", Some(json!({"set_id": "00".repeat(8)}))).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = t.root(Method::POST, "/v1/keys/rotate/commit", Some(json!({"set_id": set_id}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let job = t.wait_job(r.body["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let list = t.root(Method::GET, "/v1/keys", None).await.body;
    assert_eq!(key_state(&list, "root@2"), ("active".into(), 1));
    // After a restart only the new shares open it.
    let t = t.restart("shamir").await;
    assert_error(
        &t.call(Method::GET, "/v1/tenants", Some(&t.root.clone()), None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "sealed",
    );
    let r = t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(shares[0].clone()))).await;
    assert!(r.body["message"].as_str().unwrap().contains("another key set"), "{:?}", r.body);
    for s in &new_shares[1..] {
        t.call(Method::POST, "/v1/sys/unseal", None, Some(unseal(s.clone()))).await;
    }
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/a").await.body["secret"], "alpha");
    let events = t.root(Method::GET, "/v1/audit/events?n=500", None).await.body;
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "sys.unseal" && e["principal"] == "unseal-shares"));
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn certificates_are_issued_per_credential_as_pending_versions() {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    let fields = json!({"token_url": "https://login.example/t/oauth2/v2.0/token", "client_id": "abc", "scope": "https://graph.microsoft.com/.default"});
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/ews",
            Some(json!({"kind": "entra-app", "fields": fields, "secret": "client-secret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    t.put("acme/other", "x").await;
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/ews/certificate", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cert = r.body.clone();
    assert_eq!(cert["sha1"].as_str().unwrap().len(), 40);
    assert_eq!(cert["sha256"].as_str().unwrap().len(), 64);
    assert!(cert["subject"].as_str().unwrap().contains("CN=acme"), "{cert}");
    assert_eq!(cert["credential_version"], 2);
    let show = t.root(Method::GET, "/v1/tenants/acme/credentials/ews", None).await.body;
    assert_eq!((show["current_version"].as_u64(), show["latest_version"].as_u64()), (Some(1), Some(2)));
    assert_eq!(
        t.reveal_with(&t.root.clone(), "acme/ews").await.body["secret"],
        "client-secret",
        "the current one still serves"
    );
    let pending = reveal_version(&t, "acme/ews", 2).await.body["secret"].as_str().unwrap().to_owned();
    assert!(pending.contains("BEGIN PRIVATE KEY") && pending.contains(cert["pem"].as_str().unwrap().trim()));
    let lifetime = cert["not_after"].as_str().unwrap() > cert["not_before"].as_str().unwrap();
    assert!(lifetime);
    // The inventory, and what expires soon.
    let all = t.root(Method::GET, "/v1/certificates", None).await.body;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert!(t.root(Method::GET, "/v1/certificates?expiring=30d", None).await.body.as_array().unwrap().is_empty());
    assert_eq!(t.root(Method::GET, "/v1/certificates?expiring=91d", None).await.body.as_array().unwrap().len(), 1);
    // Bad input.
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/other/certificate", None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    for lifetime in ["10m", "3y", "soon"] {
        let r = t
            .root(Method::POST, "/v1/tenants/acme/credentials/ews/certificate", Some(json!({"lifetime": lifetime})))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_error(
        &t.root(Method::POST, "/v1/certificates/zz/revoke", None).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &t.root(Method::POST, &format!("/v1/certificates/{}/revoke", "0".repeat(40)), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Revoke by SHA-1 thumbprint; twice is a conflict.
    let r = t.root(Method::POST, &format!("/v1/certificates/{}/revoke", cert["sha1"].as_str().unwrap()), None).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("revoked")), "{:?}", r.body);
    let r = t.root(Method::POST, &format!("/v1/certificates/{}/revoke", cert["sha256"].as_str().unwrap()), None).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    // A second issue makes a different certificate and key, and retires the older pending version.
    let again = t.root(Method::POST, "/v1/tenants/acme/credentials/ews/certificate", None).await.body;
    assert_ne!(again["sha256"], cert["sha256"]);
    let versions = t.root(Method::GET, "/v1/tenants/acme/credentials/ews/versions", None).await.body;
    let stages: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, vec!["current", "retired", "pending"]);
    // Promoting makes it current and switches the credential to certificate authentication.
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/ews/promote", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!((r.body["current_version"].as_u64(), r.body["fields"]["auth"].as_str()), (Some(3), Some("certificate")));
    let served = t.reveal_with(&t.root.clone(), "acme/ews").await.body["secret"].as_str().unwrap().to_owned();
    assert!(served.contains(again["pem"].as_str().unwrap().trim()), "the promoted certificate is served");
    let versions = t.root(Method::GET, "/v1/tenants/acme/credentials/ews/versions", None).await.body;
    let stages: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, vec!["previous", "retired", "current"]);
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/ews/promote", None).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert_error(
        &t.root(Method::POST, "/v1/tenants/acme/credentials/nope/promote", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(t.verify().await["ok"], true);
}

/// A store written before target binding (format 1 payloads, token rows without MACs) is
/// migrated at the first start: the versions are bound to their credential's fields by a
/// background job that commits batch by batch (resuming from what is left unbound), and the
/// token rows are sealed once. Until a version is bound, it is revealed but never sent.
#[tokio::test]
async fn a_store_from_before_target_binding_migrates_at_start() {
    // No scheduled checks: the pass at start would otherwise reach the target on its own.
    let t = TestApp::spawn_configured(None, |c| c.scheduler.verify_every = "off".into()).await;
    t.tenant("acme", "uk").await;
    let target = recorder::Recorder::start(recorder::Speaks::Pop3).await;
    let fields = json!({"host": "127.0.0.1", "port": target.port.to_string(), "tls": "none", "user": "svc"});
    let r = t
        .root(
            Method::PUT,
            "/v1/tenants/acme/credentials/mail",
            Some(json!({"kind": "pop3", "fields": fields, "secret": "mail-v1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    t.put("acme/a", "a-v1").await;
    t.put("acme/a", "a-v2").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let vault = t.app.keeper.vault().unwrap();
    assert_eq!(vault.downgrade_to_legacy().await.unwrap(), 3);
    // As the older release left it: no MAC on token rows, and the one-time seal still to do.
    t.db()
        .execute_batch("UPDATE tokens SET mac = NULL; INSERT INTO integrity_pending (what) VALUES ('tokens');")
        .unwrap();
    let unbound = |t: &TestApp| -> i64 {
        t.db().query_row("SELECT COUNT(*) FROM credential_versions WHERE binding IS NULL", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(unbound(&t), 3);
    // An unbound version is revealed, but not sent to any target.
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/mail").await.body["secret"], "mail-v1");
    let r = t.root(Method::POST, "/v1/tenants/acme/credentials/mail/verify", None).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert_eq!(target.connections(), 0);

    let pending =
        |t: &TestApp| -> i64 { t.db().query_row("SELECT COUNT(*) FROM integrity_pending", [], |r| r.get(0)).unwrap() };
    assert_eq!(pending(&t), 2, "tokens and versions are pending");
    let t = t.restart("dev").await;
    for _ in 0..200 {
        if unbound(&t) == 0 && pending(&t) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(unbound(&t), 0, "every version is bound after the start");
    let unsealed: i64 = t.db().query_row("SELECT COUNT(*) FROM tokens WHERE mac IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(unsealed, 0, "every token row carries its MAC");
    // Same secrets, now sent to their targets; old tokens still work.
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/a").await.body["secret"], "a-v2");
    let r = t.call(Method::POST, "/v1/tenants/acme/credentials/mail/verify", Some(&admin), None).await;
    assert_eq!(r.body["status"], "ok", "{:?}", r.body);
    assert!(target.saw("mail-v1"));
    // Fingerprints came with the migration: the old secret is recognised.
    let fps: i64 = t
        .db()
        .query_row("SELECT COUNT(*) FROM credential_versions WHERE length(fingerprint) = 32", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fps, 3);
    let audit = t.root(Method::GET, "/v1/audit/events?n=1000", None).await.body.to_string();
    assert!(audit.contains("cred.bind") && audit.contains("integrity.seal"), "{audit}");
    assert!(audit.contains("format migration complete"), "{audit}");
    assert_eq!(pending(&t), 0, "both one-time steps are done");
    // A restart after that has nothing left to do.
    let t = t.restart("dev").await;
    assert_eq!(unbound(&t), 0);
    assert_eq!(t.verify().await["ok"], true);
}

/// A share with the right format, checksum, key set and index, and another value: what anyone
/// who saw one share's header could make.
fn forge_share(real: &str) -> String {
    use sha2::Digest as _;
    let mut body = hex::decode(real.trim().strip_prefix("rekey-share-").unwrap()).unwrap();
    body.truncate(body.len() - 4);
    body[15] ^= 0x5a;
    let checksum = sha2::Sha256::new().chain_update(b"rekey-share-v1").chain_update(&body).finalize();
    body.extend_from_slice(&checksum[..4]);
    format!("rekey-share-{}", hex::encode(body))
}
