//! Limits before work: a request without a valid token is answered before its body is read, a
//! body that does not arrive in time is refused, and concurrency is capped per source address
//! and in all. Bodies here are streams that send a little and then nothing, so "answered before
//! the body was read" is shown by an answer at all: the body never ends.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use common::TestApp;
use futures_util::StreamExt as _;
use serde_json::json;
use tower::ServiceExt as _;

async fn spawn() -> TestApp {
    TestApp::spawn_configured(None, |c| {
        c.limits.body_timeout = "1s".into();
        c.limits.max_concurrent = 4;
        c.limits.max_concurrent_per_source = 2;
        c.limits.max_import_bytes = 64 * 1024 * 1024;
    })
    .await
}

/// A request whose body sends 1 KiB and then never ends, announcing `length` bytes.
fn stalled(method: Method, path: &str, token: Option<&str>, length: u64) -> Request<Body> {
    let chunks = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1024])) })
        .chain(futures_util::stream::pending());
    let mut req = Request::builder().method(method).uri(path).header("content-length", length.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(Body::from_stream(chunks)).unwrap()
}

async fn answer(
    router: &Router,
    req: Request<Body>,
    within: Duration,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let resp = tokio::time::timeout(within, router.clone().oneshot(req))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let raw = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&raw).unwrap_or_default(), retry)
}

#[tokio::test]
async fn an_anonymous_64_mib_import_is_refused_before_its_body_is_read() {
    let t = spawn().await;
    for token in [None, Some("rk_forged.0123456789abcdef")] {
        let req = stalled(Method::POST, "/v1/import", token, 64 * 1024 * 1024);
        let (status, body, _) = answer(&t.router, req, Duration::from_millis(500)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "unauthenticated");
    }
    // A put without a token, likewise.
    let req = stalled(Method::PUT, "/v1/tenants/acme/credentials/x", None, 1 << 20);
    assert_eq!(answer(&t.router, req, Duration::from_millis(500)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let t = spawn().await;
    let req = stalled(Method::PUT, "/v1/tenants/acme/credentials/x", Some(&t.root.clone()), 4096);
    let started = std::time::Instant::now();
    let (status, body, _) = answer(&t.router, req, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["code"], "request_timeout");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the body up to the limit");
    // An ordinary request still works.
    t.tenant("acme", "uk").await;
    assert_eq!(t.put("acme/x", "value").await.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrency_is_capped_per_source_and_in_all() {
    let t = spawn().await;
    t.tenant("acme", "uk").await;
    let root = t.root.clone();
    let path = "/v1/tenants/acme/credentials/x";
    let from = |ip: &str| TestApp::router_from(&t.app, &format!("{ip}:40000"));
    let (a, b, c) = (from("10.1.0.1"), from("10.1.0.2"), from("10.1.0.3"));
    // Requests whose bodies never end hold their places until the 1 s deadline.
    let mut held = Vec::new();
    let mut hold = |router: &Router| {
        let router = router.clone();
        let req = stalled(Method::PUT, path, Some(&root), 4096);
        held.push(tokio::spawn(async move { router.oneshot(req).await.unwrap().status() }));
    };
    hold(&a);
    hold(&a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third from a: too many from that address.
    let (status, body, retry) =
        answer(&a, stalled(Method::PUT, path, Some(&root), 4096), Duration::from_millis(500)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    hold(&b);
    hold(&b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Four in flight in all: c, which has none, is refused as the server is full.
    let req =
        Request::builder().method(Method::GET).uri("/v1/tenants").header("authorization", format!("Bearer {root}"));
    let (status, body, retry) = answer(&c, req.body(Body::empty()).unwrap(), Duration::from_millis(500)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!((body["code"].as_str(), retry.as_deref()), (Some("overloaded"), Some("1")));
    // Once the held requests are over (their bodies time out), places are free again.
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::REQUEST_TIMEOUT);
    }
    let r = t
        .call_on(
            &c,
            Method::PUT,
            path,
            Some(&root),
            Some(serde_json::to_vec(&json!({"kind": "generic", "secret": "v"})).unwrap()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// Audit events in the database.
fn audit_rows(t: &TestApp) -> i64 {
    t.db().query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0)).unwrap()
}

/// The aggregate events written so far: (action, source, failures + refused).
fn aggregates(t: &TestApp) -> Vec<(String, String, u64)> {
    let db = t.db();
    let mut stmt = db
        .prepare("SELECT action, source, detail FROM audit_events WHERE action IN ('auth.failures', 'link.failures')")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)));
    rows.unwrap()
        .map(|r| {
            let (action, source, detail) = r.unwrap();
            let count = |key: &str| -> u64 {
                let rest = &detail[detail.find(key).unwrap() + key.len()..];
                rest.split(' ').next().unwrap().parse().unwrap()
            };
            (action, source, count("failures=") + count("refused="))
        })
        .collect()
}

#[tokio::test]
async fn ten_thousand_anonymous_requests_add_a_bounded_number_of_audit_events() {
    let t = TestApp::spawn_configured(None, |c| {
        c.limits.failures_window = "2s".into();
    })
    .await;
    let before = audit_rows(&t);
    let sources = ["198.51.100.1", "198.51.100.2", "2001:db8:7::1", "2001:db8:7::2"];
    let (mut unauthenticated, mut refused, mut not_found) = (0, 0, 0);
    for (i, source) in sources.iter().enumerate() {
        let addr = if source.contains(':') { format!("[{source}]:40000") } else { format!("{source}:40000") };
        let router = TestApp::router_from(&t.app, &addr);
        for n in 0..1250 {
            // A guessed token on the API...
            let token = format!("rk_{:016x}.{n:064x}", i);
            let req = Request::builder().uri("/v1/tenants").header("authorization", format!("Bearer {token}"));
            let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            match resp.status() {
                StatusCode::UNAUTHORIZED => unauthenticated += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(resp.headers().contains_key("retry-after"));
                    refused += 1;
                }
                other => panic!("unexpected {other}"),
            }
            // ...and a guessed reset link.
            let req = Request::builder().uri(format!("/r/rl_{n:032x}.{:064x}", i));
            let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            match resp.status() {
                StatusCode::NOT_FOUND => not_found += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(unauthenticated + refused + not_found, 10_000);
    assert!(refused > 9_000, "a source is stopped after its burst ({unauthenticated} 401, {not_found} 404)");
    // The two IPv6 sources share a /64: counted as one. So three sources, two kinds, and at most
    // two events each (the first failure, then one aggregate).
    let first = audit_rows(&t) - before;
    assert_eq!(first, 6, "the first failure of each source and kind, at once");
    // A valid token from a stopped source is refused too; from another source it works.
    let stopped = TestApp::router_from(&t.app, "198.51.100.1:40000");
    let r = t.call_on(&stopped, Method::GET, "/v1/tenants", Some(&t.root.clone()), None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(t.root(Method::GET, "/v1/tenants", None).await.status, StatusCode::OK);
    // Once the window is over, one aggregate per source and kind accounts for every other attempt.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut found = aggregates(&t);
    for _ in 0..20 {
        if found.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        found = aggregates(&t);
    }
    assert_eq!(found.len(), 6, "{found:?}");
    let counted: u64 = found.iter().map(|(_, _, n)| n).sum();
    // Every attempt is in the log: the 6 first ones as themselves, the rest (and the root token's
    // refusal) in the aggregates.
    assert_eq!(counted + 6, 10_001, "{found:?}");
    assert!(found.iter().any(|(a, s, _)| a == "link.failures" && s == "2001:db8:7::/64"), "{found:?}");
    let growth = audit_rows(&t) - before;
    assert!(growth <= 12 + 2, "the audit log grew by {growth} events");
}

#[tokio::test]
async fn an_anonymous_64_mib_import_leaves_the_servers_memory_flat() {
    let t = spawn().await;
    const CHUNK: usize = 64 * 1024;
    const LENGTH: usize = 64 * 1024 * 1024;
    // A body made as it is read: chunks are counted as the server takes them.
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = |taken: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        let chunks = futures_util::stream::iter(0..LENGTH / CHUNK).map(move |_| {
            taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'\n'; CHUNK]))
        });
        Body::from_stream(chunks)
    };
    let before = common::peak_kib();
    let mut waiting = Vec::new();
    for _ in 0..8 {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/import")
            .header("content-length", LENGTH.to_string())
            .body(body(taken.clone()))
            .unwrap();
        waiting.push(tokio::spawn(t.router.clone().oneshot(req)));
    }
    for w in waiting {
        assert_eq!(w.await.unwrap().unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let grown = common::peak_kib().saturating_sub(before);
    let read = taken.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(read, 0, "no chunk of an anonymous body was read");
    assert!(grown < 16 * 1024, "the peak resident size grew by {grown} KiB for 512 MiB of anonymous bodies");
    // The same body with a token is read (so the measurement would have shown it).
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/import")
        .header("authorization", format!("Bearer {}", t.root))
        .header("content-length", LENGTH.to_string())
        .body(body(taken.clone()))
        .unwrap();
    let resp = t.router.clone().oneshot(req).await.unwrap();
    assert_ne!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(taken.load(std::sync::atomic::Ordering::Relaxed), LENGTH / CHUNK);
    let grown = common::peak_kib().saturating_sub(before);
    assert!(grown >= 60 * 1024, "reading one 64 MiB body shows in the peak ({grown} KiB)");
}

/// A reveal by `token`: its status, `Retry-After` and error code.
async fn reveal(t: &TestApp, token: &str, cred: &str) -> (StatusCode, Option<String>, serde_json::Value) {
    let (tenant, name) = cred.split_once('/').unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/tenants/{tenant}/credentials/{name}/reveal"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, body, retry) = answer(&t.router, req, Duration::from_secs(10)).await;
    (status, retry, body)
}

#[tokio::test]
async fn a_stolen_connector_token_sweeping_its_tenant_is_stopped_by_its_roles_rate() {
    let rate = rekey_server::config::RateConfig { per_second: 5.0, burst: 20 };
    let t = TestApp::spawn_configured(None, |c| {
        c.limits.rate.insert("connector".into(), rate.clone());
        c.limits.failures_window = "1s".into();
    })
    .await;
    t.tenant("acme", "uk").await;
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            json!({"tenant": "acme", "name": format!("c{i}"), "kind": "generic", "secret": format!("s{i}")}).to_string()
        })
        .collect();
    let r = t.call_on(&t.router, Method::POST, "/v1/import", Some(&t.root), Some(lines.join("\n").into_bytes())).await;
    assert_eq!(r.body["written"], 1000, "{:?}", r.body);
    // A connector bound to every credential of its tenant (a fleet's shared token).
    let all: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
    let thief = t.token(json!({"role": "connector", "tenant": "acme", "credentials": all})).await;
    let other = t.token(json!({"role": "connector", "tenant": "acme", "credentials": ["c1"]})).await;

    let started = std::time::Instant::now();
    let (mut read, mut refused) = (0u32, 0u32);
    for i in 0..1000 {
        match reveal(&t, &thief, &format!("acme/c{i}")).await {
            (StatusCode::OK, _, body) => {
                assert_eq!(body["secret"], format!("s{i}"));
                read += 1;
            }
            (StatusCode::TOO_MANY_REQUESTS, retry, body) => {
                assert_eq!(body["code"], "too_many_requests", "{body}");
                assert_eq!(retry.as_deref(), Some("1"), "one request comes back within a second at 5/s");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    let allowed = 20.0 + 5.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(read >= 20 && f64::from(read) <= allowed, "read {read} of 1,000; at most {allowed} allowed");
    assert_eq!(read + refused, 1000);

    // Its own bucket only: another connector and the operator (no limit) are served.
    assert_eq!(reveal(&t, &other, "acme/c1").await.0, StatusCode::OK);
    assert_eq!(t.reveal_with(&t.root.clone(), "acme/c2").await.status, StatusCode::OK);
    // The thief waits its turn, then reads again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(reveal(&t, &thief, "acme/c999").await.0, StatusCode::OK);

    // The first refusal of each window (1 s here; the loop may outlast one) is audited as
    // itself, the window's others as one event; together they account for every refusal.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = t.root(Method::GET, "/v1/audit/events?n=5000", None).await.body;
    let events = events.as_array().unwrap();
    let limited: Vec<_> = events
        .iter()
        .filter(|e| e["detail"].as_str().unwrap_or("").starts_with("rate limit of role connector"))
        .collect();
    assert!(!limited.is_empty());
    assert!(limited.iter().all(|e| e["outcome"] == "denied" && e["action"] == "cred.reveal"), "{limited:?}");
    let principal = limited[0]["principal"].as_str().unwrap();
    assert!(limited.iter().all(|e| e["principal"] == principal));
    let aggregates: Vec<_> = events.iter().filter(|e| e["action"] == "auth.throttled").collect();
    assert!(!aggregates.is_empty() && aggregates.len() <= limited.len(), "{aggregates:?}");
    let counted: u32 = aggregates
        .iter()
        .map(|e| {
            assert_eq!(e["principal"], principal);
            let detail = e["detail"].as_str().unwrap();
            detail.strip_prefix("refused=").and_then(|d| d.split(' ').next()).unwrap().parse::<u32>().unwrap()
        })
        .sum();
    assert_eq!(counted + limited.len() as u32, refused, "{aggregates:?}");
    let metrics = String::from_utf8(t.call(Method::GET, "/metrics", None, None).await.raw).unwrap();
    assert!(metrics.contains(&format!("rekey_rate_limited_requests_total {refused}\n")), "{metrics}");
}
