//! Workload login with a JWT (`POST /v1/auth/jwt/login`): each refusal with its own reason, the
//! token a login grants, renewal up to the maximum, expiry, key sets fetched and rotated, and
//! the same on two servers sharing PostgreSQL. The real `bao` CLI and agent log in against a
//! running server in `rekey-cli/tests/vault_clients.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use common::{Reply, TestApp};

/// A signing key of each algorithm, with its public JWK.
enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Key {
    fn rsa() -> Self {
        Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }
    fn ec() -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Key::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }
    fn ed() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
            Key::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Key::Rsa(k) => {
                let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "kid": kid, "n": b(&c.n), "e": b(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b(&p[1..33]), "y": b(&p[33..])})
            }
            Key::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b(k.public_key().as_ref())}),
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
            Key::Ec(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(message).as_ref().to_vec(),
        }
    }

    /// A JWT with `header` (alg set unless given) and `claims`.
    fn jwt(&self, kid: &str, header: Value, claims: &Value) -> String {
        let mut h = json!({"alg": self.alg(), "kid": kid, "typ": "JWT"});
        for (k, v) in header.as_object().unwrap() {
            h[k] = v.clone();
        }
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(h.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

const ISSUER: &str = "https://ci.example";

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "rekey", "sub": "repo:acme/mail:ref:refs/heads/main", "exp": now() + 300,
           "iat": now() - 5, "nbf": now() - 5, "repository_owner": "acme"})
}

async fn login(t: &TestApp, role: &str, jwt: &str) -> Reply {
    t.call(Method::POST, "/v1/auth/jwt/login", None, Some(json!({"role": role, "jwt": jwt}))).await
}

async fn setup() -> (TestApp, Key, Key, Key) {
    let t = TestApp::spawn().await;
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/dir", "workload-pw").await.status, StatusCode::OK);
    assert_eq!(t.put("acme/other", "other-pw").await.status, StatusCode::OK);
    let (rsa, ec, ed) = (Key::rsa(), Key::ec(), Key::ed());
    let role = json!({
        "issuer": ISSUER,
        "jwks": {"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1"), ed.jwk("ed-1")]},
        "audiences": ["rekey"],
        "algorithms": ["RS256", "ES256"],
        "bound_subject": "repo:acme/mail:ref:refs/heads/*",
        "bound_claims": {"repository_owner": ["acme"]},
        "role": "connector", "tenant": "acme", "credentials": ["dir"],
    });
    let r = t.root(Method::PUT, "/v1/jwt-roles/ci", Some(role)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (t, rsa, ec, ed)
}

#[tokio::test]
async fn a_good_jwt_logs_in_and_every_bad_one_is_refused_with_its_own_reason() {
    let (t, rsa, ec, ed) = setup().await;
    for (key, kid) in [(&rsa, "rsa-1"), (&ec, "ec-1")] {
        let r = login(&t, "ci", &key.jwt(kid, json!({}), &claims())).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {:?}", key.alg(), r.body);
        let auth = &r.body["auth"];
        assert_eq!((auth["lease_duration"].as_i64(), auth["renewable"].as_bool()), (Some(900), Some(true)));
        assert_eq!(auth["policies"], json!(["connector"]));
        assert_eq!(auth["metadata"], json!({"role": "connector", "tenant": "acme", "auth_role": "ci"}));
        let token = auth["client_token"].as_str().unwrap();
        // The token reveals what the role binds, and nothing else.
        assert_eq!(t.reveal_with(token, "acme/dir").await.body["secret"], "workload-pw");
        assert_eq!(t.reveal_with(token, "acme/other").await.status, StatusCode::NOT_FOUND);
    }

    let forged = Key::ec();
    let c = claims();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let unsigned = |header: Value, claims: &Value| {
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong issuer", ec.jwt("ec-1", json!({}), &with(&|c| c["iss"] = "https://evil.example".into())), "issuer"),
        ("wrong audience", ec.jwt("ec-1", json!({}), &with(&|c| c["aud"] = json!(["vault"]))), "audience"),
        ("alg none", unsigned(json!({"alg": "none", "kid": "ec-1"}), &c), "algorithm is not one Rekey accepts"),
        (
            "HS256 keyed with the public key",
            {
                // The classic confusion: an HMAC keyed with the issuer's public key.
                let input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "rsa-1"}).to_string()),
                    URL_SAFE_NO_PAD.encode(c.to_string())
                );
                let key =
                    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, rsa.jwk("rsa-1").to_string().as_bytes());
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
            },
            "algorithm is not one Rekey accepts",
        ),
        ("an algorithm the role does not pin", ed.jwt("ed-1", json!({}), &c), "does not accept EdDSA"),
        ("expired", ec.jwt("ec-1", json!({}), &with(&|c| c["exp"] = (now() - 120).into())), "expired"),
        ("not yet valid", ec.jwt("ec-1", json!({}), &with(&|c| c["nbf"] = (now() + 120).into())), "not valid yet"),
        (
            "issued in the future",
            ec.jwt("ec-1", json!({}), &with(&|c| c["iat"] = (now() + 120).into())),
            "in the future",
        ),
        (
            "no expiry",
            ec.jwt("ec-1", json!({}), &with(&|c| drop(c.as_object_mut().unwrap().remove("exp")))),
            "no expiry",
        ),
        ("unknown kid", ec.jwt("ec-9", json!({}), &c), "key id"),
        ("another key under a known kid", forged.jwt("ec-1", json!({}), &c), "signature does not check"),
        ("an RSA key's kid for an ES256 token", ec.jwt("rsa-1", json!({}), &c), "key id"),
        (
            "bound subject",
            ec.jwt("ec-1", json!({}), &with(&|c| c["sub"] = "repo:acme/mail:ref:refs/tags/v1".into())),
            "subject",
        ),
        (
            "bound claim",
            ec.jwt("ec-1", json!({}), &with(&|c| c["repository_owner"] = "evil".into())),
            "repository_owner",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "not a JWT"),
    ];
    let mut reasons = std::collections::BTreeSet::new();
    for (what, jwt, says) in &cases {
        let r = login(&t, "ci", jwt).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        let message = r.body["errors"][0].as_str().unwrap_or_else(|| panic!("{what}: {:?}", r.body));
        assert!(message.starts_with("login refused: ") && message.contains(says), "{what}: {message}");
        reasons.insert(message.to_owned());
    }
    assert!(reasons.len() >= 12, "each refusal has its reason: {reasons:?}");
    let r = login(&t, "nosuch", &ec.jwt("ec-1", json!({}), &c)).await;
    assert!(r.body["errors"][0].as_str().unwrap().contains("no such auth role"), "{:?}", r.body);
    // Malformed bodies are 400, in Vault's shape.
    for body in [json!({"role": "ci"}), json!({"role": "ci", "jwt": 3}), json!({"role": "ci", "jwt": "x", "extra": 1})]
    {
        let r = t.call(Method::POST, "/v1/auth/jwt/login", None, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.body["errors"].is_array());
    }

    // Logins and refusals are audited with the claims that decided, never the JWT.
    let events = t.root(Method::GET, "/v1/audit/events?n=500", None).await.body;
    let logins: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["action"] == "auth.login").collect();
    let ok = logins.iter().filter(|e| e["outcome"] == "success").count();
    assert_eq!(ok, 2, "{logins:?}");
    let first_ok = logins.iter().find(|e| e["outcome"] == "success").unwrap();
    let detail = first_ok["detail"].as_str().unwrap();
    assert!(detail.contains("sub=repo:acme/mail:ref:refs/heads/main") && detail.contains("aud=rekey"), "{detail}");
    assert!(first_ok["principal"].as_str().unwrap().starts_with("token:"), "the new token is the principal");
    assert!(logins.iter().any(|e| e["outcome"] == "denied" && e["detail"].as_str().unwrap().contains("issuer")));
    let all = events.to_string();
    for (_, jwt, _) in &cases {
        if let Some(sig) = jwt.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!all.contains(sig), "a JWT's signature is in the audit log");
        }
        if let Some(body) = jwt.split('.').nth(1).filter(|s| s.len() > 20) {
            assert!(!all.contains(body), "a JWT is in the audit log");
        }
    }
}

#[tokio::test]
async fn a_login_token_renews_up_to_its_maximum_and_then_expires() {
    let (t, _rsa, ec, _ed) = setup().await;
    let mut role = t.root(Method::GET, "/v1/jwt-roles/ci", None).await.body["spec"].clone();
    role["ttl"] = "2s".into();
    role["max_ttl"] = "4s".into();
    assert_eq!(t.root(Method::PUT, "/v1/jwt-roles/ci", Some(role)).await.status, StatusCode::OK);
    let r = login(&t, "ci", &ec.jwt("ec-1", json!({}), &claims())).await;
    assert_eq!(r.body["auth"]["lease_duration"], 2);
    let token = r.body["auth"]["client_token"].as_str().unwrap().to_owned();
    let looked = t.call(Method::GET, "/v1/auth/token/lookup-self", Some(&token), None).await;
    assert_eq!(looked.body["data"]["renewable"], true, "{:?}", looked.body);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Asked for an hour, it gets what is left of its 4 s.
    let r = t.call(Method::POST, "/v1/auth/token/renew-self", Some(&token), Some(json!({"increment": 3600}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let ttl = r.body["auth"]["lease_duration"].as_i64().unwrap();
    assert!((1..=3).contains(&ttl), "{ttl}");
    assert_eq!(r.body["auth"]["client_token"], token.as_str());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(t.reveal_with(&token, "acme/dir").await.status, StatusCode::OK, "renewed past its first 2 s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = t.call(Method::POST, "/v1/auth/token/renew-self", Some(&token), None).await;
    assert!(matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED), "{:?}", r.body);
    assert_eq!(t.reveal_with(&token, "acme/dir").await.status, StatusCode::UNAUTHORIZED, "expired at its maximum");

    // A static token cannot be renewed; a holder can revoke its own token.
    let r = t.call(Method::POST, "/v1/auth/token/renew-self", Some(&t.root.clone()), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["errors"][0].as_str().unwrap().contains("cannot be renewed"));
    let r = login(&t, "ci", &ec.jwt("ec-1", json!({}), &claims())).await;
    let token = r.body["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(
        t.call(Method::POST, "/v1/auth/token/revoke-self", Some(&token), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.reveal_with(&token, "acme/dir").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.verify().await["ok"], true);
}

#[tokio::test]
async fn roles_are_checked_authorized_and_cannot_be_forged_in_the_database() {
    let (t, _rsa, ec, _ed) = setup().await;
    let auditor = t.token(json!({"role": "auditor"})).await;
    let connector = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"]})).await;
    assert_eq!(t.call(Method::GET, "/v1/jwt-roles", Some(&auditor), None).await.status, StatusCode::OK);
    let spec = t.root(Method::GET, "/v1/jwt-roles/ci", None).await.body["spec"].clone();
    for token in [&auditor, &connector] {
        let r = t.call(Method::PUT, "/v1/jwt-roles/x", Some(token), Some(spec.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    }
    for (change, says) in [
        (json!({"role": "operator"}), "never operator"),
        (json!({"tenant": "nosuch"}), "not found"),
        (json!({"credentials": ["nosuch"]}), "not found"),
        (json!({"algorithms": ["HS256"]}), "only RS256"),
        (json!({"max_ttl": "30d"}), "at most 24h"),
    ] {
        let mut s = spec.clone();
        for (k, v) in change.as_object().unwrap() {
            s[k] = v.clone();
        }
        let r = t.root(Method::PUT, "/v1/jwt-roles/x", Some(s)).await;
        assert!(
            r.status.is_client_error() && r.body["message"].as_str().unwrap().contains(says),
            "{says}: {:?}",
            r.body
        );
    }
    assert_eq!(
        t.root(Method::PUT, "/v1/jwt-roles/Bad%20Name", Some(spec.clone())).await.status,
        StatusCode::BAD_REQUEST
    );

    // A role rewritten with SQL (its issuer's keys swapped for the attacker's) is refused.
    let attacker = Key::ec();
    let mut forged = spec.clone();
    forged["jwks"] = json!({"keys": [attacker.jwk("ec-1")]});
    t.db().execute("UPDATE auth_roles SET spec = ?1 WHERE name = 'ci'", [forged.to_string()]).unwrap();
    let r = login(&t, "ci", &attacker.jwt("ec-1", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["errors"][0].as_str().unwrap().contains("integrity"), "{:?}", r.body);
    let r = login(&t, "ci", &ec.jwt("ec-1", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the forged row is refused for everyone");
    // A login token's row stretched with SQL past its maximum is refused too.
    assert_eq!(t.root(Method::PUT, "/v1/jwt-roles/ci", Some(spec)).await.status, StatusCode::OK);
    let r = login(&t, "ci", &ec.jwt("ec-1", json!({}), &claims())).await;
    let token = r.body["auth"]["client_token"].as_str().unwrap().to_owned();
    let id = r.body["auth"]["accessor"].as_str().unwrap().to_owned();
    t.db().execute("UPDATE tokens SET max_expires_at = max_expires_at + 86400000000 WHERE id = ?1", [&id]).unwrap();
    tokio::time::sleep(rekey_core::TOKEN_CACHE_TTL + Duration::from_millis(100)).await;
    assert_eq!(t.reveal_with(&token, "acme/dir").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.root(Method::DELETE, "/v1/jwt-roles/ci", None).await.status, StatusCode::OK);
    assert_eq!(t.root(Method::GET, "/v1/jwt-roles/ci", None).await.status, StatusCode::NOT_FOUND);
}

/// A JWK set served over HTTP on loopback, whose keys a test can rotate, counting requests.
struct KeyServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn key_server(keys: Value) -> KeyServer {
    let keys = Arc::new(Mutex::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (keys.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let (k, h) = (k.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    KeyServer { url, keys, hits }
}

#[tokio::test]
async fn a_rotated_key_set_is_fetched_again_but_a_flood_of_unknown_kids_is_not() {
    let (t, _rsa, _ec, _ed) = setup().await;
    let (old, new) = (Key::ec(), Key::ec());
    let server = key_server(json!({"keys": [old.jwk("k1")]})).await;
    let mut spec = t.root(Method::GET, "/v1/jwt-roles/ci", None).await.body["spec"].clone();
    spec.as_object_mut().unwrap().remove("jwks");
    spec["jwks_url"] = server.url.clone().into();
    assert_eq!(t.root(Method::PUT, "/v1/jwt-roles/ci", Some(spec)).await.status, StatusCode::OK);

    assert_eq!(login(&t, "ci", &old.jwt("k1", json!({}), &claims())).await.status, StatusCode::OK);
    assert_eq!(login(&t, "ci", &old.jwt("k1", json!({}), &claims())).await.status, StatusCode::OK);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "kept, not fetched per login");
    // The issuer rotates: a token under the new kid makes the set be fetched again, once the
    // last fetch is more than 10 s old.
    *server.keys.lock().unwrap() = json!({"keys": [new.jwk("k2")]});
    let r = login(&t, "ci", &new.jwt("k2", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "within 10 s of the last fetch: {:?}", r.body);
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let r = login(&t, "ci", &new.jwt("k2", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let after = server.hits.load(Ordering::SeqCst);
    assert_eq!(after, 2);
    for i in 0..20 {
        let r = login(&t, "ci", &new.jwt(&format!("made-up-{i}"), json!({}), &claims())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), after, "made-up key ids fetch nothing");
}

/// Two servers sharing PostgreSQL: a token from a login on one works on the other, a renewal on
/// one is seen by the other, and expiry refuses it on both.
#[tokio::test]
async fn a_login_token_expires_on_every_server_sharing_postgres() {
    let Some(url) = common::fresh_postgres_database().await else { return };
    let a = TestApp::spawn_with(Some(url.clone())).await;
    a.tenant("acme", "uk").await;
    assert_eq!(a.put("acme/dir", "pg-pw").await.status, StatusCode::OK);
    let key = Key::ed();
    let role = json!({
        "issuer": ISSUER, "jwks": {"keys": [key.jwk("ed-1")]}, "audiences": ["rekey"], "algorithms": ["EdDSA"],
        "bound_subject": "repo:acme/*", "role": "connector", "tenant": "acme", "credentials": ["dir"],
        "ttl": "2s", "max_ttl": "6s",
    });
    assert_eq!(a.root(Method::PUT, "/v1/jwt-roles/ci", Some(role)).await.status, StatusCode::OK);
    let dir_b = tempfile::tempdir().unwrap();
    let mut config = TestApp::config(&dir_b);
    config.store.url = Some(rekey_server::config::Redacted::new(url));
    config.seal.key_file = Some(a.dir.path().join("data").join("dev-root.key"));
    let app_b = rekey_server::App::build(config).await.unwrap();
    let b = TestApp {
        router: TestApp::router_from(&app_b, "127.0.0.1:40000"),
        app: app_b,
        root: a.root.clone(),
        dir: dir_b,
    };

    let r = login(&b, "ci", &key.jwt("ed-1", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::OK, "a role written on one server logs in on the other: {:?}", r.body);
    let token = r.body["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(a.reveal_with(&token, "acme/dir").await.body["secret"], "pg-pw");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = b.call(Method::POST, "/v1/auth/token/renew-self", Some(&token), Some(json!({"increment": "3s"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Past the first 2 s: alive on both, by the renewal made on b.
    assert_eq!(a.reveal_with(&token, "acme/dir").await.status, StatusCode::OK);
    assert_eq!(b.reveal_with(&token, "acme/dir").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.reveal_with(&token, "acme/dir").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.reveal_with(&token, "acme/dir").await.status, StatusCode::UNAUTHORIZED);
}

/// Roles declared in the configuration file log in like stored ones, are listed as `config`,
/// and cannot be changed through the API; a bad one stops the server from starting.
#[tokio::test]
async fn roles_of_the_configuration_file() {
    let key = Key::ec();
    let spec: rekey_core::workloads::JwtRoleSpec = serde_json::from_value(json!({
        "issuer": ISSUER, "jwks": {"keys": [key.jwk("ec-1")]}, "audiences": ["rekey"],
        "bound_subject": "repo:acme/*", "role": "auditor",
    }))
    .unwrap();
    let mut orphan = spec.clone();
    orphan.role = rekey_types::Role::TenantAdmin;
    orphan.tenant = Some("nosuch".into());
    let t = TestApp::spawn_configured(None, |c| {
        c.jwt_roles.insert("from-file".into(), spec.clone());
        c.jwt_roles.insert("orphan".into(), orphan);
    })
    .await;
    // A role of the file whose tenant does not exist refuses its logins, with that reason.
    let r = login(&t, "orphan", &key.jwt("ec-1", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["errors"][0].as_str().unwrap().contains("tenant does not exist"), "{:?}", r.body);
    let r = login(&t, "from-file", &key.jwt("ec-1", json!({}), &claims())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["auth"]["policies"], json!(["auditor"]));
    let listed = t.root(Method::GET, "/v1/jwt-roles", None).await.body;
    assert_eq!(listed[0]["created_by"], "config", "{listed}");
    let r = t.root(Method::PUT, "/v1/jwt-roles/from-file", Some(serde_json::to_value(&spec).unwrap())).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(t.root(Method::DELETE, "/v1/jwt-roles/from-file", None).await.status, StatusCode::CONFLICT);

    let mut bad = spec;
    bad.algorithms = vec!["none".into()];
    let mut c = TestApp::config(&tempfile::tempdir().unwrap());
    c.jwt_roles.insert("broken".into(), bad.clone());
    assert!(c.validate().unwrap_err().to_string().contains("broken: algorithm"));
    let mut c = TestApp::config(&tempfile::tempdir().unwrap());
    bad.algorithms = vec!["ES256".into()];
    c.jwt_roles.insert("Bad Name".into(), bad);
    assert!(c.validate().unwrap_err().to_string().contains("role name"));
}
