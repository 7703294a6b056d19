//! The test application shared by the API test binaries: the real router on a fresh data
//! folder, driven without a socket, and a second connection to its database for tampering.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use rekey_server::{App, Config};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use tower::ServiceExt;

pub(crate) struct TestApp {
    pub app: App,
    pub router: Router,
    pub root: String,
    pub dir: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub raw: Vec<u8>,
    pub request_id_header: Option<String>,
}

impl TestApp {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(None).await
    }

    pub(crate) async fn spawn_with(store_url: Option<String>) -> Self {
        Self::spawn_configured(store_url, |_| {}).await
    }

    /// A fresh app whose configuration `tweak` adjusts first.
    pub(crate) async fn spawn_configured(store_url: Option<String>, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Self::config(&dir);
        config.store.url = store_url.map(rekey_server::config::Redacted::new);
        tweak(&mut config);
        let mut app = App::build(config).await.unwrap();
        let root = app.root_token.take().expect("a fresh vault creates a root token").expose().to_owned();
        let router = Self::router_from(&app, "127.0.0.1:40000");
        Self { app, router, root, dir }
    }

    pub(crate) fn config(dir: &tempfile::TempDir) -> Config {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
        let mut config = Config::dev_defaults();
        config.data_dir = dir.path().join("data");
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.limits.max_body_bytes = 64 * 1024;
        // The recorders and peers listen on loopback, which the default egress policy refuses.
        config.egress.allow = vec!["127.0.0.0/8".into(), "::1".into()];
        config
    }

    /// A server on the same data folder, as after a restart (`root` is kept from before).
    pub(crate) async fn restart(self, seal_kind: &str) -> Self {
        let Self { app, root, dir, router } = self;
        drop((app, router));
        let mut config = Self::config(&dir);
        config.seal.kind = seal_kind.into();
        let app = App::build(config).await.unwrap();
        let router = Self::router_from(&app, "127.0.0.1:40000");
        Self { app, router, root, dir }
    }

    /// A server on the same data folder and store, as after a restart, with the configuration
    /// `tweak` adjusts.
    pub(crate) async fn restart_configured(self, store_url: Option<String>, tweak: impl FnOnce(&mut Config)) -> Self {
        let Self { app, root, dir, router } = self;
        drop((app, router));
        let mut config = Self::config(&dir);
        config.store.url = store_url.map(rekey_server::config::Redacted::new);
        tweak(&mut config);
        let app = App::build(config).await.unwrap();
        let router = Self::router_from(&app, "127.0.0.1:40000");
        Self { app, router, root, dir }
    }

    /// Waits for a key job to end and returns it.
    pub(crate) async fn wait_job(&self, id: &str) -> Value {
        for _ in 0..600 {
            let r = self.root(Method::GET, &format!("/v1/keys/jobs/{id}"), None).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            if r.body["state"] != "running" {
                return r.body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("job {id} did not finish");
    }

    pub(crate) async fn start_job(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.root(method, path, body).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        self.wait_job(r.body["id"].as_str().expect("a job")).await
    }

    pub(crate) fn router_from(app: &App, source: &str) -> Router {
        app.router().layer(MockConnectInfo(source.parse::<SocketAddr>().unwrap()))
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("rekey.db")
    }

    /// A second, independent connection to the database file, for tampering.
    pub(crate) fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.db_path()).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }

    pub(crate) async fn call_on(
        &self,
        router: &Router,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let request_id_header = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
        let raw = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply { status, body, raw, request_id_header }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.call_on(&self.router, method, path, token, body.map(|b| serde_json::to_vec(&b).unwrap())).await
    }

    pub(crate) async fn root(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.root.clone()), body).await
    }

    pub(crate) async fn tenant(&self, name: &str, region: &str) {
        let r = self.root(Method::POST, "/v1/tenants", Some(json!({"name": name, "region": region}))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    pub(crate) async fn put(&self, cred: &str, secret: &str) -> Reply {
        let (t, n) = cred.split_once('/').unwrap();
        self.root(
            Method::PUT,
            &format!("/v1/tenants/{t}/credentials/{n}"),
            Some(json!({"kind": "generic", "secret": secret})),
        )
        .await
    }

    pub(crate) async fn reveal_with(&self, token: &str, cred: &str) -> Reply {
        let (t, n) = cred.split_once('/').unwrap();
        self.call(Method::POST, &format!("/v1/tenants/{t}/credentials/{n}/reveal"), Some(token), None).await
    }

    pub(crate) async fn token(&self, body: Value) -> String {
        let r = self.root(Method::POST, "/v1/tokens", Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["secret"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn counts(&self) -> Value {
        self.root(Method::GET, "/v1/sys/status", None).await.body["counts"].clone()
    }

    pub(crate) async fn verify(&self) -> Value {
        let r = self.root(Method::GET, "/v1/audit/verify", None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }
}

pub(crate) fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let rid = r.body["request_id"].as_str().expect("request_id in body");
    assert_eq!(Some(rid), r.request_id_header.as_deref(), "body and header carry the same request id");
}

/// A new, empty PostgreSQL database on the test server, or `None` (outside CI) without one.
pub(crate) async fn fresh_postgres_database() -> Option<String> {
    let Ok(admin) = std::env::var("REKEY_TEST_POSTGRES_URL") else {
        assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_POSTGRES_URL must be set under CI");
        eprintln!("SKIPPED: set REKEY_TEST_POSTGRES_URL or run scripts/test.sh");
        return None;
    };
    let name = format!("rekey_api_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    Some(format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
}

/// Runs SQL on a PostgreSQL database, from a thread of its own (the callers are inside the test's
/// runtime).
pub(crate) fn pg_exec(url: &str, sql: &str) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                    c.execute(sql).await.unwrap();
                })
            })
            .join()
            .unwrap()
    });
}

pub(crate) fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// The peak resident size of this process (the server under test runs in it), in KiB: `VmHWM`.
pub(crate) fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
