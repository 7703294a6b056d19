//! CLI tests: the real `rekey` binary, as a server and as a client, over real TCP, each in a
//! fresh folder.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn the_readme_tour_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    assert!(root.starts_with("rk_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["root-token", "dev-root.key"] {
            let mode = std::fs::metadata(dir.path().join("data").join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let status = ok(&server.rekey(&root, &["-o", "table", "status"], None));
    assert!(status.contains("dev (unsealed)") && status.contains("WARNING"), "{status}");
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk", "--contact", "it@acme.example"], None));
    let tenants = ok(&server.rekey(&root, &["-o", "table", "tenant", "list"], None));
    assert!(tenants.lines().nth(1).unwrap().starts_with("acme"), "{tenants}");
    let shown = ok(&server.rekey(&root, &["-o", "json", "tenant", "show", "acme"], None));
    assert!(shown.contains("it@acme.example"));

    let put = [
        "cred",
        "put",
        "acme/directory",
        "--kind",
        "ldap",
        "--set",
        "url=ldaps://dc1.acme.example:636",
        "--set",
        "bind_dn=cn=svc-mail,ou=svc,dc=acme,dc=example",
        "--secret-stdin",
    ];
    ok(&server.rekey(&root, &put, Some(b"Tour-Secret-1\n")));
    let secret_file = dir.path().join("client-secret.txt");
    std::fs::write(&secret_file, "Tour-Secret-2\n").unwrap();
    let ews = [
        "cred",
        "put",
        "acme/ews",
        "--kind",
        "entra-app",
        "--set",
        "token_url=https://login.example/t/oauth2/v2.0/token",
        "--set",
        "client_id=11111111-2222",
        "--set",
        "scope=https://outlook.office365.com/.default",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ];
    ok(&server.rekey(&root, &ews, None));
    let pop = [
        "cred",
        "put",
        "acme/journal",
        "--kind",
        "pop3",
        "--set",
        "host=mail.acme.example",
        "--set",
        "port=995",
        "--set",
        "tls=implicit",
        "--set",
        "user=journal@acme.example",
        "--secret-stdin",
    ];
    ok(&server.rekey(&root, &pop, Some(b"Tour-Secret-3")));
    ok(&server.rekey(
        &root,
        &["cred", "put", "acme/other", "--kind", "generic", "--secret-stdin"],
        Some(b"Tour-Secret-4"),
    ));

    let show = ok(&server.rekey(&root, &["-o", "table", "cred", "show", "acme/directory"], None));
    assert!(show.contains("bind_dn=cn=svc-mail") && !show.contains("Tour-Secret"), "{show}");
    // reveal prints exactly the secret (the trailing newline from echo was dropped on put).
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/directory"], None)), "Tour-Secret-1\n");
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/ews"], None)), "Tour-Secret-2\n");
    let list = ok(&server.rekey(
        &root,
        &["-o", "table", "cred", "list", "--tenant", "acme", "--kind", "ldap", "--region", "uk"],
        None,
    ));
    assert_eq!(list.lines().count(), 2, "{list}");

    ok(&server.rekey(&root, &put, Some(b"Tour-Secret-5")));
    let versions = ok(&server.rekey(&root, &["-o", "table", "cred", "versions", "acme/directory"], None));
    assert!(versions.contains("previous") && versions.contains("current"), "{versions}");
    ok(&server.rekey(&root, &["cred", "rollback", "acme/directory", "--to", "1"], None));
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/directory"], None)), "Tour-Secret-1\n");

    // A connector token: shown once, works only for its credential, only from loopback.
    let token = ok(&server.rekey(
        &root,
        &[
            "-o",
            "table",
            "token",
            "create",
            "--role",
            "connector",
            "--tenant",
            "acme",
            "--cred",
            "directory",
            "--cidr",
            "127.0.0.1/32",
            "--ttl",
            "1h",
        ],
        None,
    ));
    let connector = token.trim();
    assert_eq!(
        ok(&server.rekey(connector, &["-o", "table", "cred", "reveal", "acme/directory"], None)),
        "Tour-Secret-1\n"
    );
    let denied = fails(&server.rekey(connector, &["cred", "reveal", "acme/ews"], None));
    assert!(denied.contains("not found") && denied.contains("HTTP 404"), "{denied}");
    let tokens = ok(&server.rekey(&root, &["-o", "table", "token", "list"], None));
    assert!(tokens.contains("connector") && !tokens.contains(connector), "{tokens}");
    let id = tokens.lines().find(|l| l.contains("connector")).unwrap().split_whitespace().next().unwrap().to_owned();
    ok(&server.rekey(&root, &["token", "revoke", &id], None));
    assert!(fails(&server.rekey(connector, &["cred", "reveal", "acme/directory"], None)).contains("HTTP 401"));

    ok(&server.rekey(&root, &["cred", "delete", "acme/other"], None));
    assert!(fails(&server.rekey(&root, &["cred", "show", "acme/other"], None)).contains("not found"));

    let tail = ok(&server.rekey(&root, &["-o", "table", "audit", "tail", "-n", "50"], None));
    assert!(tail.contains("cred.reveal") && tail.contains("denied") && tail.contains("token.revoke"), "{tail}");
    let verify = ok(&server.rekey(&root, &["-o", "table", "audit", "verify"], None));
    assert!(verify.starts_with("audit log OK"), "{verify}");
    let export = ok(&server.rekey(&root, &["audit", "export"], None));
    assert!(export.lines().count() > 25, "{export}");
    assert!(export.lines().all(|l| l.starts_with('{') && l.contains("\"mac\"")), "{export}");
    // The Merkle tree: a proof of one event and of a prefix, each checked by the CLI itself.
    let proved = ok(&server.rekey(&root, &["-o", "table", "audit", "prove", "3"], None));
    assert!(proved.contains("event 3 (leaf ") && proved.trim_end().ends_with("proof verified"), "{proved}");
    assert!(proved.contains("against the checkpoint signed"), "{proved}");
    let unsigned = ok(&server.rekey(&root, &["-o", "table", "audit", "prove", "3", "--size", "4"], None));
    assert!(unsigned.contains("tree of 4 events") && !unsigned.contains("checkpoint"), "{unsigned}");
    let prefix = ok(&server.rekey(&root, &["-o", "table", "audit", "consistency", "5"], None));
    assert!(prefix.trim_end().ends_with("verified"), "{prefix}");
    let head = ok(&server.rekey(&root, &["-o", "json", "audit", "tree", "--size", "4"], None));
    assert!(head.contains("\"size\": 4") || head.contains("\"size\":4"), "{head}");

    // No secret, and no token secret, in the server's log or the audit export.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log_text();
    assert!(log.contains("request"), "the server logs requests");
    for needle in ["Tour-Secret", connector.rsplit('_').next().unwrap(), root.rsplit('_').next().unwrap()] {
        assert!(!log.contains(needle), "{needle} in the server log");
        assert!(!export.contains(needle), "{needle} in the audit export");
    }
}

#[test]
fn secrets_never_come_from_arguments_and_bad_input_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let err = fails(&server.rekey(&root, &["cred", "put", "acme/x", "--kind", "generic"], None));
    assert!(err.contains("--secret-stdin"), "{err}");
    let err = fails(&server.rekey(&root, &["cred", "put", "acme/x", "--kind", "generic", "--secret", "hunter2"], None));
    assert!(err.contains("unexpected argument"), "{err}");
    let err = fails(&server.rekey(
        &root,
        &["cred", "put", "acme/x", "--kind", "ldap", "--set", "url=ldap://h", "--secret-stdin"],
        Some(b"pw"),
    ));
    assert!(err.contains("bind_dn") && err.contains("invalid_field"), "{err}");
    let err = fails(&server.rekey(&root, &["cred", "show", "nonsense"], None));
    assert!(err.contains("tenant/name"), "{err}");
    let err = fails(&server.rekey(&root, &["tenant", "create", "Bad_Name", "--region", "uk"], None));
    assert!(err.contains("invalid_name"), "{err}");
    let err = fails(&run(&server.addr, "rk_nope", &["status"], None, &[]));
    assert!(err.contains("unauthenticated"), "{err}");
    let err = fails(&run("http://127.0.0.1:1", &root, &["status"], None, &[]));
    assert!(err.contains("cannot reach the server"), "{err}");
    // A binary secret goes through base64 and comes back byte for byte.
    let binary = [0u8, 159, 146, 150, 255, 10];
    ok(&server.rekey(
        &root,
        &["cred", "put", "acme/bin", "--kind", "generic", "--secret-stdin", "--keep-newline"],
        Some(&binary),
    ));
    let out = server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/bin"], None);
    assert!(out.status.success());
    assert_eq!(out.stdout, binary);
}

#[test]
fn import_is_all_or_nothing_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let file = dir.path().join("creds.jsonl");
    let mut lines: Vec<String> = (0..250)
        .map(|i| {
            format!(r#"{{"tenant":"t{}","region":"us","name":"c{i}","kind":"generic","secret":"import-{i}"}}"#, i % 7)
        })
        .collect();
    lines[137] = r#"{"tenant":"acme","name":"x","kind":"ldap","fields":{"url":"ldap://h"},"secret":"s"}"#.to_owned();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let args = ["cred", "import", file.to_str().unwrap(), "--create-tenants", "--chunk", "40"];
    let err = fails(&server.rekey(&root, &args, None));
    assert!(err.contains("line 138") && err.contains("bind_dn") && err.contains("nothing was written"), "{err}");
    let list = ok(&server.rekey(&root, &["-o", "json", "cred", "list"], None));
    assert_eq!(list.trim(), "[]", "a failed import writes nothing");
    // --continue-on-error writes the good lines, lists the bad one, and still exits non-zero.
    let out = server.rekey(
        &root,
        &[
            "-o",
            "table",
            "cred",
            "import",
            file.to_str().unwrap(),
            "--create-tenants",
            "--chunk",
            "40",
            "--continue-on-error",
        ],
        None,
    );
    let err = fails(&out);
    assert!(err.contains("line 138"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 249 of 250 lines; 7 tenants created"), "{stdout}");
    lines[137] = r#"{"tenant":"acme","name":"x","kind":"generic","secret":"s"}"#.to_owned();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = ok(&server.rekey(
        &root,
        &["-o", "table", "cred", "import", "-", "--chunk", "100"],
        Some(lines.join("\n").as_bytes()),
    ));
    assert!(out.contains("imported 250 of 250 lines"), "{out}");
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "t3/c3"], None)), "import-3\n");
    let versions = ok(&server.rekey(&root, &["-o", "json", "cred", "versions", "t3/c3"], None));
    assert!(versions.contains("\"version\": 2"), "a second import adds a version");
}

#[test]
fn nothing_is_lost_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let children: Vec<Child> = (0..30)
        .map(|i| {
            let mut c = Command::new(BIN)
                .args(["cred", "put", &format!("acme/c{i}"), "--kind", "generic", "--secret-stdin"])
                .env("REKEY_ADDR", &server.addr)
                .env("REKEY_TOKEN", &root)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(format!("durable-{i}").as_bytes()).unwrap();
            c
        })
        .collect();
    let acknowledged: Vec<usize> = children
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| c.wait_with_output().unwrap().status.success().then_some(i))
        .collect();
    assert_eq!(acknowledged.len(), 30);
    server.kill9();
    let again = Server::dev(dir.path());
    assert_eq!(again.root_token(), root, "the root token is not recreated");
    for i in acknowledged {
        let got = ok(&again.rekey(&root, &["-o", "table", "cred", "reveal", &format!("acme/c{i}")], None));
        assert_eq!(got, format!("durable-{i}\n"));
    }
    assert!(ok(&again.rekey(&root, &["-o", "table", "audit", "verify"], None)).starts_with("audit log OK"));
}

/// A server stopped with SIGTERM closes its store before it exits: the audit writer's threads
/// let go of it after the async runtime is gone, and the process waits for them, so SQLite
/// checkpoints its WAL into the database file and removes it.
#[test]
fn a_stopped_server_closes_its_store_into_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&server.rekey(&root, &["cred", "put", "acme/c", "--kind", "generic", "--secret-stdin"], Some(b"whole")));
    let data = dir.path().join("data");
    assert!(data.join("rekey.db-wal").exists(), "a running server writes through its WAL");
    let term = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    let mut left: Vec<String> =
        std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.retain(|f| f.starts_with("rekey.db"));
    left.sort();
    assert_eq!(left, ["rekey.db", "rekey.db.audit-index", "rekey.db.lock"], "{}", server.log_text());
    let again = Server::dev(dir.path());
    assert_eq!(ok(&again.rekey(&root, &["-o", "table", "cred", "reveal", "acme/c"], None)), "whole\n");
}

/// A server whose stderr goes nowhere (the pipe it was started with closed before it wrote a
/// word: a terminal gone, a supervisor that stopped reading) still starts, serves and logs
/// without panicking.
#[test]
fn a_server_whose_stderr_is_closed_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .env("REKEY_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let addr = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let root = loop {
        if let Ok(token) = std::fs::read_to_string(data.join("root-token")) {
            if run(&addr, token.trim(), &["status"], None, &[]).status.success() {
                break token.trim().to_owned();
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited: {:?}", child.try_wait());
        assert!(std::time::Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every request is logged, into the closed pipe.
    for _ in 0..5 {
        ok(&run(&addr, &root, &["tenant", "list"], None, &[]));
        assert!(!run(&addr, "rk_bogus_token", &["tenant", "list"], None, &[]).status.success());
    }
    assert!(child.try_wait().unwrap().is_none(), "the server is still running");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_production_shape_needs_tls_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    // Dev mode refuses a public address; production refuses to run without TLS.
    let out = Command::new(BIN)
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data", "d"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback") && !out.status.success());
    let cfg = dir.path().join("rekey.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\n").unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config", cfg.to_str().unwrap()]).current_dir(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls") && !out.status.success());
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config", cfg.to_str().unwrap()]).current_dir(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"), "{}", String::from_utf8_lossy(&out.stderr));

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n[store]\nurl = \"sqlite://{}/prod.db\"\n[log]\nformat = \"json\"\n",
            data.display(),
            data.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(dir.path(), &["serve", "--config", cfg.to_str().unwrap()], "https");
    // In production the root token goes to stdout once, not to a file.
    let mut first = String::new();
    BufReader::new(server.child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let root = first.trim().to_owned();
    assert!(root.starts_with("rk_") && !data.join("root-token").exists());
    let addr = server.addr.replace("127.0.0.1", "localhost");
    let cacert = dir.path().join("cert.pem");
    let status = ok(&run(&addr, &root, &["-o", "json", "status"], None, &[("REKEY_CACERT", cacert.to_str().unwrap())]));
    assert!(status.contains("\"store\": \"sqlite\""), "{status}");
    let err = fails(&run(&addr, &root, &["status"], None, &[]));
    assert!(err.contains("cannot reach the server"), "an unknown CA is refused: {err}");
}

// ---- key custody ----------------------------------------------------------------------------

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

fn job_state(db: &Path, id: &str) -> (String, i64, i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row("SELECT state, done, total FROM key_jobs WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

/// Every credential version's DEK is under its tenant's active KEK.
fn all_under_active_keks(db: &Path) -> bool {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let stray: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM credential_versions v JOIN credentials c ON c.id = v.credential_id \
             WHERE v.kek_version <> (SELECT MAX(version) FROM tenant_keks k WHERE k.tenant_id = c.tenant_id AND k.state = 'active')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    stray == 0
}

/// Reveals every credential through the API and checks each secret.
fn reveal_all(addr: &str, token: &str, expected: &[(String, String)]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        rekey_server::install_crypto_provider();
        let http = reqwest::Client::new();
        for (cred, secret) in expected {
            let (t, n) = cred.split_once('/').unwrap();
            let r = http
                .post(format!("{addr}/v1/tenants/{t}/credentials/{n}/reveal"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["secret"].as_str(), Some(secret.as_str()), "{cred}: {body}");
        }
    });
}

#[test]
fn a_rotation_of_every_tenant_survives_kill_9_and_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::dev(dir.path());
    let root = server.root_token();
    let db = dir.path().join("data").join("rekey.db");
    let mut expected = Vec::new();
    let mut lines = Vec::new();
    for t in 0..100 {
        for c in 0..40 {
            let secret = format!("s-{t}-{c}");
            lines.push(format!(
                r#"{{"tenant":"t{t}","region":"uk","name":"c{c}","kind":"generic","secret":"{secret}"}}"#
            ));
            expected.push((format!("t{t}/c{c}"), secret));
        }
    }
    let file = dir.path().join("creds.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&server.rekey(&root, &["cred", "import", file.to_str().unwrap(), "--create-tenants"], None));
    // Kill the server at growing delays into a rotation of every tenant, restart it, and let the
    // job finish; at least one kill must land in the middle of a job.
    let mut mid_job_kills = 0;
    for round in 0..6u64 {
        let job = json_of(&server.rekey(&root, &["-o", "json", "key", "rotate", "--all", "--no-wait"], None));
        let id = job["id"].as_str().unwrap().to_owned();
        std::thread::sleep(Duration::from_millis(round * 60));
        server.kill9();
        let (state, done, total) = job_state(&db, &id);
        if state == "running" && done < total {
            mid_job_kills += 1;
        }
        server = Server::dev(dir.path());
        let finished = json_of(&server.rekey(&root, &["-o", "json", "key", "job", &id, "--wait"], None));
        assert_eq!(finished["state"], "done", "{finished}");
        assert!(all_under_active_keks(&db), "round {round}: every DEK is under its tenant's active key");
    }
    assert!(mid_job_kills >= 1, "no kill landed during a job; the test proves nothing");
    reveal_all(&server.addr, &root, &expected);
    let keys = json_of(&server.rekey(&root, &["-o", "json", "key", "list", "--tenant", "t7"], None));
    let versions = keys["tenants"][0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 7, "one new version per rotation: {keys}");
    assert!(ok(&server.rekey(&root, &["-o", "table", "audit", "verify"], None)).starts_with("audit log OK"));
}

#[test]
fn destructive_commands_want_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&server.rekey(&root, &["cred", "put", "acme/a", "--kind", "generic", "--secret-stdin"], Some(b"alpha")));
    for args in [vec!["tenant", "shred", "acme"], vec!["key", "destroy", "acme@1"], vec!["key", "rotate", "--root"]] {
        let err = fails(&server.rekey(&root, &args, None));
        assert!(err.contains("--yes"), "{args:?}: {err}");
    }
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/a"], None)), "alpha\n");
    let err = fails(&server.rekey(&root, &["key", "destroy", "acme@1", "--yes"], None));
    assert!(err.contains("active key"), "{err}");
    let err = fails(&server.rekey(&root, &["key", "destroy", "acme@7", "--yes"], None));
    assert!(err.contains("not found"), "{err}");
    let err = fails(&server.rekey(&root, &["key", "show", "acme"], None));
    assert!(err.contains("root@N or TENANT@N"), "{err}");
    let out = ok(&server.rekey(&root, &["-o", "table", "tenant", "shred", "acme", "--yes"], None));
    assert!(out.contains("1 key versions destroyed"), "{out}");
    assert!(fails(&server.rekey(&root, &["cred", "reveal", "acme/a"], None)).contains("unrecoverable"));
}

#[test]
fn shamir_init_and_unseal_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rekey.toml");
    std::fs::write(&cfg, "[seal]\nkind = \"shamir\"\n").unwrap();
    let data = dir.path().join("data");
    let args = dev_with_config(&data, &cfg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(dir.path(), &args, "http");
    let status = ok(&server.rekey("", &["-o", "table", "status"], None));
    assert!(status.contains("shamir (sealed)") && status.contains("not initialized"), "{status}");
    let out = ok(&server.rekey("", &["-o", "table", "init", "--shares", "3", "--threshold", "2"], None));
    let shares: Vec<String> = out.lines().filter_map(|l| l.split(": ").nth(1)).map(str::to_owned).collect();
    assert_eq!(shares.len(), 3, "{out}");
    let err = fails(&server.rekey("", &["unseal"], Some(b"rekey-share-00")));
    assert!(err.contains("not a Rekey unseal share"), "{err}");
    let out = ok(&server.rekey("", &["-o", "table", "unseal"], Some(shares[2].as_bytes())));
    assert!(out.contains("1 of 2"), "{out}");
    let out = ok(&server.rekey("", &["-o", "table", "unseal"], Some(format!("{}\n", shares[0]).as_bytes())));
    let root = out.lines().last().unwrap().trim().to_owned();
    assert!(out.contains("unsealed") && root.starts_with("rk_"), "{out}");
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&server.rekey(&root, &["cred", "put", "acme/a", "--kind", "generic", "--secret-stdin"], Some(b"alpha")));
    ok(&server.rekey(&root, &["seal"], None));
    assert!(fails(&server.rekey(&root, &["cred", "reveal", "acme/a"], None)).contains("sealed"));
    // A restart comes up sealed too; two shares open it again.
    server.kill9();
    let server = Server::start(dir.path(), &args, "http");
    assert!(fails(&server.rekey(&root, &["cred", "reveal", "acme/a"], None)).contains("HTTP 503"));
    for s in &shares[..2] {
        ok(&server.rekey("", &["unseal"], Some(s.as_bytes())));
    }
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/a"], None)), "alpha\n");
    // A root rotation keeps the split's shape, prints the new shares, then switches to them.
    let out = server.rekey(&root, &["-o", "table", "key", "rotate", "--root", "--yes"], None);
    let printed = ok(&out);
    let new_shares: Vec<String> = printed.lines().filter_map(|l| l.split(": ").nth(1)).map(str::to_owned).collect();
    assert_eq!(new_shares.len(), 3, "{printed}");
    assert!(new_shares.iter().all(|s| !shares.contains(s)));
    let mut server = server;
    server.kill9();
    let server = Server::start(dir.path(), &args, "http");
    assert!(fails(&server.rekey("", &["unseal"], Some(shares[0].as_bytes()))).contains("another key set"));
    for s in &new_shares[1..] {
        ok(&server.rekey("", &["unseal"], Some(s.as_bytes())));
    }
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/a"], None)), "alpha\n");
    let keys = json_of(&server.rekey(&root, &["-o", "json", "key", "list"], None));
    assert_eq!(
        (keys["root"][1]["key"].as_str(), keys["root"][1]["state"].as_str()),
        (Some("root@2"), Some("active")),
        "{keys}"
    );
}

/// `rekey serve --dev` on loopback with the seal (and the rest) from a config file.
/// The SoftHSM2 token for the PKCS#11 tests: the one the test script initialized in its private
/// token directory (`SOFTHSM2_CONF`, `REKEY_TEST_HSM_TOKEN`, `REKEY_TEST_HSM_PIN`), or else one
/// made here in `dir`. Returns (config, module, token label, PIN); `None` (skipped loudly) when
/// SoftHSM2 is not installed, except under CI, where that is a failure.
fn softhsm(dir: &Path) -> Option<(PathBuf, String, String, String)> {
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    if let (Ok(conf), Ok(token), Ok(pin)) =
        (std::env::var("SOFTHSM2_CONF"), std::env::var("REKEY_TEST_HSM_TOKEN"), std::env::var("REKEY_TEST_HSM_PIN"))
    {
        return Some((conf.into(), MODULE.to_owned(), token, pin));
    }
    if !Path::new(MODULE).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("SoftHSM2 is not installed under CI: the PKCS#11 tests would not run");
        }
        eprintln!("SKIPPED: PKCS#11 tests (install softhsm2 and opensc, or run scripts/test.sh)");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "rekey-test", "--so-pin", "87654321", "--pin", "1234"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some((conf, MODULE.to_owned(), "rekey-test".to_owned(), "1234".to_owned()))
}

#[test]
fn pkcs11_seal_keeps_the_root_key_in_softhsm() {
    let dir = tempfile::tempdir().unwrap();
    let Some((conf, module, token, pin)) = softhsm(dir.path()) else { return };
    let conf_s = conf.to_str().unwrap();
    // A key label of its own, so a shared token can hold the keys of several runs.
    let label = format!("rekey-root-{}", rand_suffix());
    let write_cfg = |module: &str, token: &str| {
        let cfg = dir.path().join(format!("rekey-{}.toml", rand_suffix()));
        std::fs::write(
            &cfg,
            format!(
                "[seal]\nkind = \"pkcs11\"\nmodule = \"{module}\"\ntoken_label = \"{token}\"\nkey_label = \"{label}\"\npin_env = \"TEST_HSM_PIN\"\n"
            ),
        )
        .unwrap();
        cfg
    };
    let cfg = write_cfg(&module, &token);
    let data = dir.path().join("data");
    let args = dev_with_config(&data, &cfg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("SOFTHSM2_CONF", conf_s), ("TEST_HSM_PIN", pin.as_str())];
    let mut server = Server::start_env(dir.path(), &args, "http", &env);
    let root = server.root_token();
    let status = ok(&server.rekey(&root, &["-o", "table", "status"], None));
    assert!(status.contains("pkcs11 (unsealed)") && !status.contains("WARNING"), "{status}");
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&server.rekey(&root, &["cred", "put", "acme/a", "--kind", "generic", "--secret-stdin"], Some(b"alpha")));
    // The root key is in the token, sensitive and never extractable; nothing of it is on disk.
    let listing = Command::new("pkcs11-tool")
        .args([
            "--module",
            &module,
            "--token-label",
            &token,
            "--login",
            "--pin",
            &pin,
            "--list-objects",
            "--type",
            "secrkey",
        ])
        .env("SOFTHSM2_CONF", conf_s)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let ours: Vec<&str> = listing.split("Secret Key Object").filter(|o| o.contains(&label)).collect();
    assert_eq!(ours.len(), 1, "one root key version: {listing}");
    assert!(ours[0].contains("never extractable") && ours[0].contains("sensitive"), "{listing}");
    assert!(!data.join("dev-root.key").exists());
    // A restart logs in again and finds the same key.
    server.kill9();
    let server = Server::start_env(dir.path(), &args, "http", &env);
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/a"], None)), "alpha\n");
    // Root rotation makes a second HSM key and moves every KEK under it; the old one can go.
    let job = json_of(&server.rekey(&root, &["-o", "json", "key", "rotate", "--root", "--yes"], None));
    assert_eq!(job["state"], "done", "{job}");
    let keys = json_of(&server.rekey(&root, &["-o", "json", "key", "list"], None));
    assert_eq!(keys["root"][1]["key"], "root@2");
    assert_eq!(keys["root"][1]["keks"], 1, "{keys}");
    ok(&server.rekey(&root, &["key", "destroy", "root@1", "--yes"], None));
    drop(server);
    let server = Server::start_env(dir.path(), &args, "http", &env);
    assert_eq!(ok(&server.rekey(&root, &["-o", "table", "cred", "reveal", "acme/a"], None)), "alpha\n");
    drop(server);
    // A wrong PIN, a missing module, a wrong token: a clear error, and nothing starts.
    for (cfg, env, says) in [
        (write_cfg(&module, &token), [("SOFTHSM2_CONF", conf_s), ("TEST_HSM_PIN", "9999")], "refused the PIN"),
        (write_cfg("/nonexistent/libpkcs11.so", &token), env, "no PKCS#11 module"),
        (write_cfg(&module, "other-token"), env, "no token labelled"),
    ] {
        let out = Command::new(BIN).args(dev_with_config(&data, &cfg)).envs(env.iter().copied()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{says}: {err}");
    }
}

/// The custody commands through the real binary: a tenant admin cannot retarget a secret or
/// name a rotator, cannot roll back during an incident; an operator retargets, and the audit
/// log shows the old and new target.
#[test]
fn custody_commands_as_tenant_admin_and_operator() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let put = |token: &str, url: &str, extra: &[&str], secret: &[u8]| {
        let mut args = vec!["cred", "put", "acme/dir", "--kind", "ldap", "--set", url];
        args.extend(["--set", "bind_dn=cn=svc,ou=people,dc=acme,dc=example"]);
        args.extend(extra);
        args.push("--secret-stdin");
        server.rekey(token, &args, Some(secret))
    };
    ok(&put(&root, "url=ldaps://dc1.acme.example", &[], b"first"));
    ok(&put(&root, "url=ldaps://dc1.acme.example", &[], b"S3cond-Secret"));
    let admin = json_of(&server.rekey(
        &root,
        &["-o", "json", "token", "create", "--role", "tenant-admin", "--tenant", "acme"],
        None,
    ))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let err =
        fails(&server.rekey(&admin, &["cred", "retarget", "acme/dir", "--set", "url=ldaps://evil.example"], None));
    assert!(err.contains("only an operator") && err.contains("403"), "{err}");
    let err = fails(&put(&admin, "url=ldaps://dc1.acme.example", &["--set", "rotator=admin"], b"third"));
    assert!(err.contains("rotator") && err.contains("403"), "{err}");
    // Rollback during an open incident that covers the credential names the incident.
    let incident = json_of(&server.rekey(
        &root,
        &["-o", "json", "incident", "open", "--title", "dump", "--scope", "tenant:acme"],
        None,
    ));
    let id = incident["incident"]["id"].as_str().unwrap().to_owned();
    let err = fails(&server.rekey(&admin, &["cred", "rollback", "acme/dir", "--to", "1"], None));
    assert!(err.contains(&id) && err.contains("409"), "{err}");
    ok(&server.rekey(&root, &["incident", "close", &id], None));
    // The operator retargets: a new version, same secret, audited with both targets.
    let moved = json_of(&server.rekey(
        &root,
        &["-o", "json", "cred", "retarget", "acme/dir", "--set", "url=ldaps://dc2.acme.example"],
        None,
    ));
    assert_eq!(moved["current_version"], 3);
    assert_eq!(moved["fields"]["url"], "ldaps://dc2.acme.example");
    let revealed = json_of(&server.rekey(&root, &["-o", "json", "cred", "reveal", "acme/dir"], None));
    assert_eq!(revealed["secret"], "S3cond-Secret");
    let tail = ok(&server.rekey(&root, &["-o", "json", "audit", "tail", "-n", "20"], None));
    assert!(
        tail.contains("cred.retarget") && tail.contains("dc1.acme.example") && tail.contains("dc2.acme.example"),
        "{tail}"
    );
    assert!(!tail.contains("S3cond-Secret"), "no secret in the audit log");
}

/// `audit export --proofs` and `audit evidence` write directories that `audit verify --export`
/// checks with the log's public key alone (no server, no token); any change to an event, a
/// missing or reordered event, another key, or a missing witness fails it with exit 3.
#[test]
fn audit_exports_verify_offline_and_fail_when_altered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&server.rekey(&root, &["tenant", "create", "other", "--region", "us"], None));
    for (i, t) in ["acme", "other", "acme"].iter().enumerate() {
        ok(&server.rekey(
            &root,
            &["cred", "put", &format!("{t}/c{i}"), "--kind", "generic", "--secret-stdin"],
            Some(b"s3cret-value"),
        ));
    }
    ok(&server.rekey(&root, &["cred", "reveal", "acme/c0"], None));
    let cp: serde_json::Value =
        serde_json::from_str(&ok(&server.rekey(&root, &["-o", "json", "audit", "checkpoint", "--now"], None))).unwrap();
    let key = cp["key"].as_str().unwrap().to_owned();
    let shown = ok(&server.rekey(&root, &["-o", "table", "audit", "checkpoint", "--key", &key], None));
    assert!(shown.contains("signature verified with the key given"), "{shown}");
    let verify = |d: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["-o", "table", "audit", "verify", "--export", d.to_str().unwrap(), "--key", &key];
        args.extend_from_slice(extra);
        // An address nothing listens on and no token: the check is offline.
        common::run("http://127.0.0.1:9", "", &args, None, &[])
    };

    let full = dir.path().join("full");
    ok(&server.rekey(&root, &["audit", "export", "--proofs", full.to_str().unwrap()], None));
    let report = ok(&verify(&full, &[]));
    assert!(report.contains("all") && report.trim_end().ends_with("export verified"), "{report}");
    assert!(report.contains("tenant map (2 tenants) rebuilt from the events: it matches"), "{report}");
    let key_file = dir.path().join("log.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    ok(&common::run(
        "http://127.0.0.1:9",
        "",
        &["audit", "verify", "--export", full.to_str().unwrap(), "--key", key_file.to_str().unwrap()],
        None,
        &[],
    ));
    let partial = dir.path().join("partial");
    ok(&server.rekey(&root, &["audit", "export", "--proofs", partial.to_str().unwrap(), "--after", "5"], None));
    assert!(ok(&verify(&partial, &[])).contains("events 6..="));
    let events = std::fs::read_to_string(full.join("events.jsonl")).unwrap();
    assert!(!events.contains("s3cret-value"), "no secret in an export");

    // Altered copies.
    let altered = |name: &str, change: &dyn Fn(&str) -> String| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in ["checkpoint.note", "start.json"] {
            std::fs::copy(full.join(f), d.join(f)).unwrap();
        }
        std::fs::write(d.join("events.jsonl"), change(&events)).unwrap();
        d
    };
    let lines: Vec<&str> = events.lines().collect();
    let changed = altered("changed", &|e| e.replacen("cred.reveal", "cred.show", 1));
    let dropped = altered("dropped", &|_| {
        lines.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, l)| format!("{l}\n")).collect()
    });
    let swapped = altered("swapped", &|_| {
        let mut l = lines.clone();
        l.swap(2, 3);
        l.iter().map(|l| format!("{l}\n")).collect()
    });
    let cut = altered("cut", &|_| lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect());
    for (d, why) in [(&changed, "do not hash"), (&dropped, "belongs"), (&swapped, "belongs"), (&cut, "ends at event")] {
        let out = verify(d, &[]);
        assert_eq!(out.status.code(), Some(3), "{}", d.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{}: {}",
            d.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Another key, or a witness that did not cosign.
    let wkey = dir.path().join("w.key");
    let witness = ok(&common::run(
        "http://127.0.0.1:9",
        "",
        &["witness", "key", "--name", "w.test/w1", "--out", wkey.to_str().unwrap()],
        None,
        &[],
    ));
    let other_log = witness.trim().replace("w.test/w1", "x").to_owned();
    let out = common::run(
        "http://127.0.0.1:9",
        "",
        &["audit", "verify", "--export", full.to_str().unwrap(), "--key", &other_log],
        None,
        &[],
    );
    assert_ne!(out.status.code(), Some(0));
    let out = verify(&full, &["--witness", witness.trim()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cosignature of the witness"));

    // A tenant's evidence: only its events, each proven.
    let ev = dir.path().join("evidence");
    let out = ok(&server.rekey(
        &root,
        &["-o", "table", "audit", "evidence", "--tenant", "acme", "--out", ev.to_str().unwrap()],
        None,
    ));
    assert!(out.contains("events of acme"), "{out}");
    let proven = std::fs::read_to_string(ev.join("evidence.jsonl")).unwrap();
    assert!(proven.contains("acme/c0") && proven.contains("cred.reveal") && !proven.contains("other/"), "{proven}");
    let shown = ok(&verify(&ev, &[]));
    assert!(shown.contains("each proven") && shown.contains("complete: every event about acme"), "{shown}");
    std::fs::write(ev.join("evidence.jsonl"), proven.replacen("acme/c0", "acme/c2", 1)).unwrap();
    assert_eq!(verify(&ev, &[]).status.code(), Some(3));
    // One event left out: each remaining proof holds, but the list is not the tenant's log.
    let lines: Vec<&str> = proven.lines().collect();
    assert!(lines.len() > 3, "{proven}");
    let omitted: String = lines.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(ev.join("evidence.jsonl"), omitted).unwrap();
    let out = verify(&ev, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant's log"), "{}", String::from_utf8_lossy(&out.stderr));
    // A later period starts with the event before it, and is complete too.
    let since =
        serde_json::from_str::<serde_json::Value>(lines[2]).unwrap()["event"]["time"].as_str().unwrap().to_owned();
    let later = dir.path().join("later");
    ok(&server.rekey(
        &root,
        &["audit", "evidence", "--tenant", "acme", "--since", &since, "--out", later.to_str().unwrap()],
        None,
    ));
    let later_lines = std::fs::read_to_string(later.join("evidence.jsonl")).unwrap();
    assert!(later_lines.lines().count() < lines.len() + 3, "{later_lines}");
    assert!(ok(&verify(&later, &[])).contains("complete: every event about acme"));
}
