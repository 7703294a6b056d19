//! The egress policy against a tenant administrator who points targets at internal addresses:
//! with the default policy, every kind of connector refuses loopback, private, link-local and
//! metadata addresses (written as addresses or behind a name) with `egress-denied`, and a
//! listener on loopback proves that no connection arrived; allowed by the policy, the same
//! targets are reached. A key set URL that discovery hands out as plain `http` is refused.

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use axum::http::{Method, StatusCode};
use common::TestApp;
use recorder::{Recorder, Speaks};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "egress-test-secret-4f1d";

async fn spawn(allow: &[&str]) -> TestApp {
    let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
    TestApp::spawn_configured(None, move |c| {
        c.scheduler.interval = "off".into();
        c.campaign.interval = "off".into();
        c.connectors.connect_timeout = "2s".into();
        c.connectors.timeout = "4s".into();
        c.egress.allow = allow;
    })
    .await
}

/// The fields of `kind` pointing at `host` (an address as written in a URL or a host field)
/// and `port`.
fn fields(kind: &str, host: &str, port: u16) -> Value {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match kind {
        "ldap" => {
            json!({"url": format!("ldap://{host}:{port}"), "tls": "none", "bind_dn": "cn=svc,dc=acme,dc=example"})
        }
        "pop3" | "smtp" => json!({"host": bare, "port": port.to_string(), "tls": "none", "user": "svc@acme.example"}),
        // An address other than loopback needs https in a token URL.
        _ => {
            let scheme = if matches!(host, "127.0.0.1" | "localhost") { "http" } else { "https" };
            json!({
                "token_url": format!("{scheme}://{host}:{port}/token"),
                "client_id": "11111111-2222-3333-4444-555555555555",
                "scope": "https://graph.microsoft.com/.default", "app_object_id": "obj-1", "auth": "secret"
            })
        }
    }
}

fn speaks(kind: &str) -> Speaks {
    match kind {
        "ldap" => Speaks::Ldap,
        "pop3" => Speaks::Pop3,
        "smtp" => Speaks::Smtp,
        _ => Speaks::Http,
    }
}

async fn put_and_verify(t: &TestApp, admin: &str, kind: &str, fields: Value) -> Value {
    let path = format!("/v1/tenants/acme/credentials/{kind}");
    let path = path.as_str();
    let r =
        t.call(Method::PUT, path, Some(admin), Some(json!({"kind": kind, "fields": fields, "secret": SECRET}))).await;
    assert_eq!(r.status, StatusCode::OK, "{kind}: {:?}", r.body);
    let r = t.call(Method::POST, &format!("{path}/verify"), Some(admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{kind}: {:?}", r.body);
    r.body
}

#[tokio::test]
async fn every_connector_refuses_internal_targets_by_default() {
    let t = spawn(&[]).await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    for kind in ["ldap", "pop3", "smtp", "entra-app"] {
        let listener = Recorder::start(speaks(kind)).await;
        for (host, rule) in [
            ("127.0.0.1", "loopback address"),
            ("localhost", "loopback address"),
            ("[::1]", "loopback address"),
            ("10.0.0.1", "private address (RFC 1918)"),
            ("169.254.169.254", "cloud metadata address"),
        ] {
            let port = if host == "127.0.0.1" || host == "localhost" { listener.port } else { 443 };
            let v = put_and_verify(&t, &admin, kind, fields(kind, host, port)).await;
            assert_eq!(v["status"], "egress-denied", "{kind} at {host}: {v}");
            let detail = v["detail"].as_str().unwrap();
            assert!(detail.contains(rule), "{kind} at {host}: {detail}");
        }
        assert_eq!(listener.connections(), 0, "{kind}: no connection reached the loopback listener");
    }
    // Each refusal is in the audit log as a denial, with its rule.
    let audit = t.root(Method::GET, "/v1/audit/events?n=1000", None).await.body;
    let denials = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "cred.verify" && e["outcome"] == "denied")
        .filter(|e| e["detail"].as_str().unwrap().contains("status=egress-denied"))
        .count();
    assert_eq!(denials, 20, "{audit}");
    assert!(!audit.to_string().contains(SECRET));
}

#[tokio::test]
async fn an_allowed_internal_target_is_reached() {
    let t = spawn(&["127.0.0.0/8"]).await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    for kind in ["ldap", "pop3", "smtp", "entra-app"] {
        let listener = Recorder::start(speaks(kind)).await;
        for host in ["127.0.0.1", "localhost"] {
            let v = put_and_verify(&t, &admin, kind, fields(kind, host, listener.port)).await;
            assert_ne!(v["status"], "egress-denied", "{kind} at {host}: {v}");
        }
        assert!(listener.connections() >= 2, "{kind}: the allowed target was reached");
        assert!(listener.saw(SECRET), "{kind}: the secret went where the policy allows");
    }
    // `[::1]` is not in the list: still refused.
    let v = put_and_verify(&t, &admin, "pop3", fields("pop3", "[::1]", 110)).await;
    assert_eq!(v["status"], "egress-denied", "{v}");
}

/// A token endpoint (allowed) that issues a JWT-shaped token and whose OpenID configuration
/// names `jwks_uri`: the key set URL is discovered, so it must be `https` and pass the policy.
async fn provider(jwks_uri: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if head.starts_with("POST /token") {
                    // header {"alg":"RS256","kid":"k1"}, claims {"sub":"x"}, any signature
                    json!({"access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln",
                           "token_type": "Bearer", "expires_in": 3600})
                } else {
                    json!({"jwks_uri": jwks_uri})
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_key_set_url_discovered_as_plain_http_is_refused() {
    let t = spawn(&["127.0.0.0/8"]).await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    for (jwks, rule) in [
        ("http://169.254.169.254/keys", "cloud metadata address"),
        ("http://keys.rekey-test.example/keys", "a discovered URL must be https"),
        ("https://10.0.0.1/keys", "private address (RFC 1918)"),
    ] {
        let port = provider(jwks).await;
        let v = put_and_verify(&t, &admin, "entra-app", fields("entra-app", "127.0.0.1", port)).await;
        assert_eq!(v["status"], "egress-denied", "{jwks}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(rule), "{jwks}: {v}");
    }
}

/// A token endpoint that answers with a body without end is cut at the cap (1 MiB), well before
/// the exchange's time limit, as a protocol error that says so.
#[tokio::test]
async fn an_endless_token_answer_is_cut_at_the_cap() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"access_token\":\"").await;
                let chunk = vec![b'a'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let t = spawn(&["127.0.0.0/8"]).await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let before = common::peak_kib();
    let started = std::time::Instant::now();
    let v = put_and_verify(&t, &admin, "entra-app", fields("entra-app", "127.0.0.1", port)).await;
    let grown = common::peak_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "the server's peak memory grew by {grown} KiB");
    assert_eq!(v["status"], "protocol-error", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("larger than 1024 KiB"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "cut at the cap, not at the time limit");
    // The server stopped reading: what the endpoint managed to push is bounded by the cap and
    // the socket buffers, not by the time limit.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < 64 << 20, "the server kept reading");
}

/// A target that echoes what it is sent: POP3 `PASS x` → `-ERR wrong password x`, SMTP
/// `AUTH PLAIN b64` → `535 rejected b64`.
async fn echoing(kind: &'static str) -> u16 {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                let greeting = if kind == "pop3" { "+OK ready\r\n" } else { "220 echo ESMTP\r\n" };
                w.write_all(greeting.as_bytes()).await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let answer = if kind == "pop3" {
                        match line.split_once(' ') {
                            Some((cmd, arg)) if cmd.eq_ignore_ascii_case("PASS") => {
                                format!("-ERR [AUTH] wrong password {arg}\r\n")
                            }
                            _ => "+OK\r\n".to_owned(),
                        }
                    } else if upper.starts_with("EHLO") {
                        "250-echo\r\n250 AUTH PLAIN LOGIN\r\n".to_owned()
                    } else if upper.starts_with("AUTH PLAIN ") {
                        format!("535 5.7.8 rejected {}\r\n", &line[11..])
                    } else if upper.starts_with("QUIT") {
                        "221 bye\r\n".to_owned()
                    } else {
                        format!("500 unknown {line}\r\n")
                    };
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_target_that_echoes_the_secret_does_not_put_it_in_the_detail() {
    use base64::Engine as _;
    let t = spawn(&["127.0.0.0/8"]).await;
    t.tenant("acme", "uk").await;
    let admin = t.token(json!({"role": "tenant-admin", "tenant": "acme"})).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    for kind in ["pop3", "smtp"] {
        let port = echoing(kind).await;
        let v = put_and_verify(&t, &admin, kind, fields(kind, "127.0.0.1", port)).await;
        assert_eq!(v["status"], "auth-failed", "{kind}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("[masked]"), "{kind}: the echo is there, masked: {detail}");
        assert!(!detail.contains(SECRET) && !detail.contains(&b64), "{kind}: {detail}");
    }
    let audit = t.root(Method::GET, "/v1/audit/events?n=1000", None).await;
    let text = String::from_utf8_lossy(&audit.raw).to_string();
    assert!(text.contains("[masked]") && !text.contains(SECRET), "{text}");
}
