//! Behind a proxy: only a trusted proxy may name the client's address (`X-Forwarded-For`, or
//! the PROXY protocol v2 on a listener that says so), and the address it names is the one
//! CIDR-bound tokens and the audit log use. Tested both ways: from a trusted proxy and from
//! anyone else sending the same headers.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::TestApp;

async fn reveal_via(router: &axum::Router, token: &str, forwarded: &[&str]) -> StatusCode {
    let mut req = Request::builder().method(Method::GET).uri("/v1/kv/data/acme/dir").header("x-vault-token", token);
    for f in forwarded {
        req = req.header("x-forwarded-for", *f);
    }
    router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap().status()
}

async fn last_source(t: &TestApp) -> String {
    let events = t.root(Method::GET, "/v1/audit/events?n=5", None).await.body;
    let reveal = events.as_array().unwrap().iter().rev().find(|e| e["action"] == "cred.reveal").cloned();
    reveal.map(|e| e["source"].as_str().unwrap().to_owned()).unwrap_or_default()
}

async fn scene(trusted: &[&str]) -> (TestApp, String) {
    let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    let t = TestApp::spawn_configured(None, |c| c.server.trusted_proxies = trusted).await;
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/dir", "proxied-pw").await.status, StatusCode::OK);
    let token = t
        .token(json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["192.0.2.0/24"]}))
        .await;
    (t, token)
}

#[tokio::test]
async fn forwarded_for_counts_from_a_trusted_proxy_only() {
    let (t, token) = scene(&["10.0.0.0/8"]).await;
    let proxy = TestApp::router_from(&t.app, "10.1.2.3:40000");
    let stranger = TestApp::router_from(&t.app, "198.51.100.20:40000");

    assert_eq!(reveal_via(&proxy, &token, &["192.0.2.7"]).await, StatusCode::OK);
    assert_eq!(last_source(&t).await, "192.0.2.7", "the audit log records the client, not the proxy");
    // A client that sends its own header to the proxy: the proxy appends what it saw, and
    // that is what counts.
    assert_eq!(reveal_via(&proxy, &token, &["192.0.2.7, 203.0.113.5"]).await, StatusCode::FORBIDDEN);
    assert_eq!(last_source(&t).await, "203.0.113.5");
    // A chain of trusted proxies is walked past.
    assert_eq!(reveal_via(&proxy, &token, &["203.0.113.5, 192.0.2.8, 10.9.9.9"]).await, StatusCode::OK);
    assert_eq!(last_source(&t).await, "192.0.2.8");
    // The same header from anyone else is ignored.
    assert_eq!(reveal_via(&stranger, &token, &["192.0.2.7"]).await, StatusCode::FORBIDDEN);
    assert_eq!(last_source(&t).await, "198.51.100.20");
    // A trusted proxy's header that does not parse is refused, not served as the proxy's.
    let req = Request::builder()
        .uri("/v1/kv/data/acme/dir")
        .header("x-vault-token", &token)
        .header("x-forwarded-for", "192.0.2.7:443")
        .body(Body::empty())
        .unwrap();
    assert_eq!(proxy.clone().oneshot(req).await.unwrap().status(), StatusCode::BAD_REQUEST);

    // Without trusted proxies, no one is believed.
    let (t, token) = scene(&[]).await;
    let proxy = TestApp::router_from(&t.app, "10.1.2.3:40000");
    assert_eq!(reveal_via(&proxy, &token, &["192.0.2.7"]).await, StatusCode::FORBIDDEN);
    assert_eq!(last_source(&t).await, "10.1.2.3");

    let mut c = TestApp::config(&tempfile::tempdir().unwrap());
    c.server.trusted_proxies = vec!["10.0.0.0/33".into()];
    assert!(c.validate().unwrap_err().to_string().contains("server.trusted_proxies"));
    c.server.trusted_proxies = vec![];
    c.server.proxy_protocol = true;
    assert!(c.validate().unwrap_err().to_string().contains("server.proxy_protocol"));
}

/// A PROXY protocol v2 header for a TCP/IPv4 client.
fn proxy_header(client: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12];
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1, 0x30, 0x39, 0x20, 0xFB]);
    h
}

/// One HTTP/1.1 request on a fresh connection from `local` (after `preamble`), and the status
/// of the answer (`None` if the connection closed without one).
async fn raw_get(server: std::net::SocketAddr, local: &str, preamble: &[u8], token: &str) -> Option<u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!(
        "GET /v1/kv/data/acme/dir HTTP/1.1\r\nHost: rekey\r\nX-Vault-Token: {token}\r\nX-Forwarded-For: 192.0.2.9\r\nConnection: close\r\n\r\n"
    );
    let mut bytes = preamble.to_vec();
    bytes.extend_from_slice(request.as_bytes());
    if stream.write_all(&bytes).await.is_err() {
        return None;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_for_trusted_peers_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestApp::config(&dir);
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    config.server.proxy_protocol = true;
    let mut app = rekey_server::App::build(config).await.unwrap();
    let root = app.root_token.take().unwrap().expose().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = app.start(async { drop(stopped.await) }).await.unwrap();
    let addr = started.addr;
    let token = seed_through_the_proxy(addr, &root).await;

    // From the trusted proxy: the header's client counts (and X-Forwarded-For does not).
    assert_eq!(raw_get(addr, "127.0.0.1", &proxy_header([192, 0, 2, 7]), &token).await, Some(200));
    assert_eq!(raw_get(addr, "127.0.0.1", &proxy_header([203, 0, 113, 5]), &token).await, Some(403));
    // A trusted proxy must send the header: without it the connection is closed unanswered.
    assert_eq!(raw_get(addr, "127.0.0.1", b"", &token).await, None);
    // From anyone else the header is not read: it is not HTTP, and nothing is served.
    let from_stranger = raw_get(addr, "127.0.0.2", &proxy_header([192, 0, 2, 7]), &token).await;
    assert!(matches!(from_stranger, None | Some(400)), "{from_stranger:?}");
    // A stranger's plain request is its own (outside the token's CIDRs).
    assert_eq!(raw_get(addr, "127.0.0.2", b"", &token).await, Some(403));
    let _ = stop.send(());
    let _ = started.task.await;
}

/// Creates the tenant, the credential and a CIDR-bound connector token through a proxied
/// connection (a `LOCAL` PROXY header: the proxy's own request), and returns the token.
async fn seed_through_the_proxy(addr: std::net::SocketAddr, root: &str) -> String {
    let local = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0];
    let mut token = String::new();
    for (method, path, body) in [
        ("POST", "/v1/tenants", json!({"name": "acme", "region": "uk"})),
        ("PUT", "/v1/tenants/acme/credentials/dir", json!({"kind": "generic", "secret": "pp-pw"})),
        (
            "POST",
            "/v1/tokens",
            json!({"role": "connector", "tenant": "acme", "credentials": ["dir"], "cidrs": ["192.0.2.0/24"]}),
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: rekey\r\nAuthorization: Bearer {root}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut bytes = local.clone();
        bytes.extend_from_slice(request.as_bytes());
        stream.write_all(&bytes).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        if path == "/v1/tokens" {
            let json_start = text.find("\r\n\r\n").unwrap() + 4;
            let body: serde_json::Value = serde_json::from_str(&text[json_start..]).unwrap();
            token = body["secret"].as_str().unwrap().to_owned();
        }
    }
    token
}
