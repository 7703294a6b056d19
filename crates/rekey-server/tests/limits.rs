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
