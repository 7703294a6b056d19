//! Connectors end to end: the `rekey` binary as server and client against the real OpenLDAP,
//! Dovecot and OpenID provider (with the Graph stand-in) that the test script starts
//! (`scripts/peers/connectors.sh`). Without them the tests skip, except under CI, where they fail.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::peers::*;
use common::*;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// Stores an ldap credential: `target` is (url, bind DN).
fn put_ldap(s: &Server, token: &str, cref: &str, target: (&str, &str), password: &str, extra: &[&str], ca: &str) {
    let (url, bind_dn) = target;
    let mut args = vec![
        "cred".to_owned(),
        "put".into(),
        cref.into(),
        "--kind".into(),
        "ldap".into(),
        "--set".into(),
        format!("url={url}"),
        "--set".into(),
        format!("bind_dn={bind_dn}"),
        "--set".into(),
        format!("ca_pem={ca}"),
        "--secret-stdin".into(),
    ];
    for e in extra {
        args.push("--set".into());
        args.push((*e).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&s.rekey(token, &args, Some(password.as_bytes())));
}

#[test]
fn verify_and_rotate_every_kind_against_real_targets() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s =
        server_with(dir.path(), "[rotation]\ngrace = \"0s\"\n[scheduler]\ninterval = \"1s\"\nverify_every = \"2s\"\n");
    let root = s.root_token();
    let tenant = format!("t{}", unique());
    let prefix = format!("svc{}", unique());
    add_accounts(&p, &prefix, 4);
    ok(&s.rekey(&root, &["tenant", "create", &tenant, "--region", "uk"], None));
    let starttls = format!("ldap://localhost:{}", p.ldap);
    let ldaps = format!("ldaps://localhost:{}", p.ldaps);

    // ldap, as itself.
    let a = format!("{tenant}/dir-a");
    put_ldap(&s, &root, &a, (&starttls, &dn(&prefix, 0)), &format!("pw-{prefix}-0"), &[], &p.ca_pem);
    let v = json(&s.rekey(&root, &["-o", "json", "cred", "verify", &a], None));
    assert_eq!(v["status"], "ok", "{v}");
    let r = json(&s.rekey(&root, &["-o", "json", "cred", "rotate", &a], None));
    assert_eq!(r["state"], "retired", "grace 0s retires at once: {r}");
    assert_eq!((r["from_version"].as_u64(), r["to_version"].as_u64()), (Some(1), Some(2)));
    let v = json(&s.rekey(&root, &["-o", "json", "cred", "verify", &a], None));
    assert_eq!((v["status"].as_str(), v["version"].as_u64()), (Some("ok"), Some(2)), "{v}");
    let revealed = json(&s.rekey(&root, &["-o", "json", "cred", "reveal", &a], None));
    let new_password = revealed["secret"].as_str().unwrap().to_owned();
    assert_eq!(new_password.len(), 32);
    // The directory itself: the old password is gone, the new one binds.
    let bind = |pw: &str| {
        Command::new("ldapwhoami")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", p.ldap), "-D", &dn(&prefix, 0), "-w", pw])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(bind(&new_password));
    assert!(!bind(&format!("pw-{prefix}-0")));

    // ldap, through an admin rotator, with a password policy.
    let admin = format!("{tenant}/directory-admin");
    // The rotator resets only the accounts of the subtrees an operator gives it.
    put_ldap(
        &s,
        &root,
        &admin,
        (&ldaps, ADMIN_DN),
        LDAP_ADMIN_PASSWORD,
        &["subtrees=ou=services,dc=rekey,dc=test"],
        &p.ca_pem,
    );
    let b = format!("{tenant}/dir-b");
    let extra = ["rotator=directory-admin", "password_length=20", "password_alphabet=alnum-symbols"];
    put_ldap(&s, &root, &b, (&starttls, &dn(&prefix, 1)), &format!("pw-{prefix}-1"), &extra, &p.ca_pem);
    let r = json(&s.rekey(&root, &["-o", "json", "cred", "rotate", &b], None));
    assert_eq!(r["state"], "retired", "{r}");
    let revealed = json(&s.rekey(&root, &["-o", "json", "cred", "reveal", &b], None));
    assert_eq!(revealed["secret"].as_str().unwrap().len(), 20);
    assert_eq!(json(&s.rekey(&root, &["-o", "json", "cred", "verify", &b], None))["status"], "ok");

    // A wrong stored password: verify says so (exit 3); rotation fails before the target
    // changes anything, and the current version stays.
    let bad = format!("{tenant}/dir-bad");
    put_ldap(&s, &root, &bad, (&starttls, &dn(&prefix, 2)), "not-the-password", &[], &p.ca_pem);
    let out = s.rekey(&root, &["-o", "json", "cred", "verify", &bad], None);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "auth-failed", "{v}");
    let out = s.rekey(&root, &["-o", "json", "cred", "rotate", &bad], None);
    assert_eq!(out.status.code(), Some(3));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("auth-failed"), "{r}");
    let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &bad], None));
    assert_eq!(shown["current_version"], 1);
    let versions = json(&s.rekey(&root, &["-o", "json", "cred", "versions", &bad], None));
    assert_eq!(versions[1]["stage"], "failed", "{versions}");

    // TLS: the peer's certificate names localhost only; without the CA pin it is unknown.
    let mismatch = format!("{tenant}/dir-ip");
    let ip_url = format!("ldaps://127.0.0.1:{}", p.ldaps);
    put_ldap(&s, &root, &mismatch, (&ip_url, &dn(&prefix, 3)), &format!("pw-{prefix}-3"), &[], &p.ca_pem);
    let out = s.rekey(&root, &["-o", "json", "cred", "verify", &mismatch], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "tls-failed", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("name mismatch"), "{v}");

    // pop3 and smtp: verified, and rotation is refused with a reason.
    for (name, kind, port, tls) in
        [("journal", "pop3", &p.pop3s, "implicit"), ("relay", "smtp", &p.submission, "starttls")]
    {
        let cref = format!("{tenant}/{name}");
        ok(&s.rekey(
            &root,
            &[
                "cred",
                "put",
                &cref,
                "--kind",
                kind,
                "--set",
                "host=localhost",
                "--set",
                &format!("port={port}"),
                "--set",
                &format!("tls={tls}"),
                "--set",
                "user=svc-mail@rekey.test",
                "--set",
                &format!("ca_pem={}", p.ca_pem),
                "--secret-stdin",
            ],
            Some(b"mail-initial-pw"),
        ));
        let v = json(&s.rekey(&root, &["-o", "json", "cred", "verify", &cref], None));
        assert_eq!(v["status"], "ok", "{kind}: {v}");
        let err = fails(&s.rekey(&root, &["cred", "rotate", &cref], None));
        assert!(err.contains("not_rotatable") && err.contains("customer"), "{err}");
    }

    // entra-app with a certificate: the new one is registered through Graph (stand-in), a token
    // is obtained with it from the real provider, the old one is removed.
    let ews = format!("{tenant}/ews");
    put_certificate_app(&p, &s, &root, dir.path(), &ews);
    assert_eq!(json(&s.rekey(&root, &["-o", "json", "cred", "verify", &ews], None))["status"], "ok");
    let r = json(&s.rekey(&root, &["-o", "json", "cred", "rotate", &ews], None));
    assert_eq!(r["state"], "retired", "{r}");
    let v = json(&s.rekey(&root, &["-o", "json", "cred", "verify", &ews], None));
    assert_eq!((v["status"].as_str(), v["version"].as_u64()), (Some("ok"), Some(2)), "{v}");
    let certs = ok(&s.rekey(&root, &["-o", "table", "cert", "list"], None));
    assert!(certs.contains(&format!("{ews} v2")), "{certs}");

    // entra-app with a client secret: Graph addPassword makes the new one, stored at once; the
    // old one is removed after the grace period (found by its hint the first time, by the key id
    // Rekey recorded after that).
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json", "-d", r#"{"secret":"first-app-secret"}"#])
        .arg(format!("{}/_standin/applications", p.oidc))
        .output()
        .unwrap();
    let app: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let graph = format!("{tenant}/graph");
    ok(&s.rekey(
        &root,
        &[
            "cred",
            "put",
            &graph,
            "--kind",
            "entra-app",
            "--set",
            &format!("token_url={}/token", p.oidc),
            "--set",
            &format!("client_id={}", app["appId"].as_str().unwrap()),
            "--set",
            "scope=api.read",
            "--set",
            &format!("app_object_id={}", app["id"].as_str().unwrap()),
            "--set",
            &format!("graph_url={}", p.oidc),
            "--secret-stdin",
        ],
        Some(b"first-app-secret"),
    ));
    for round in 0..2 {
        let r = json(&s.rekey(&root, &["-o", "json", "cred", "rotate", &graph], None));
        assert_eq!(r["state"], "retired", "round {round}: {r}");
        assert!(r.get("error").is_none(), "round {round}: the old secret was left behind: {r}");
        let v = json(&s.rekey(&root, &["-o", "json", "cred", "verify", &graph], None));
        assert_eq!((v["status"].as_str(), v["version"].as_u64()), (Some("ok"), Some(round + 2)), "{v}");
    }
    let revealed = json(&s.rekey(&root, &["-o", "json", "cred", "reveal", &graph], None));
    assert_ne!(revealed["secret"], "first-app-secret");

    // Who may: the tenant's admin verifies and rotates; an auditor does neither.
    let ta =
        json(&s.rekey(&root, &["-o", "json", "token", "create", "--role", "tenant-admin", "--tenant", &tenant], None));
    let ta = ta["secret"].as_str().unwrap().to_owned();
    assert_eq!(json(&s.rekey(&ta, &["-o", "json", "cred", "verify", &a], None))["status"], "ok");
    let au = json(&s.rekey(&root, &["-o", "json", "token", "create", "--role", "auditor"], None));
    let au = au["secret"].as_str().unwrap().to_owned();
    assert!(fails(&s.rekey(&au, &["cred", "verify", &a], None)).contains("forbidden"));
    assert!(fails(&s.rekey(&au, &["cred", "rotate", &a], None)).contains("forbidden"));

    // The scheduler checked what nobody asked about, and shows it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let shown = ok(&s.rekey(&root, &["-o", "table", "cred", "show", &admin], None));
        if shown.contains("last check") || Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(shown.contains("last check") && shown.contains("ok (version 1"), "{shown}");
    let metrics = Command::new("curl").args(["-sf", &format!("{}/metrics", s.addr)]).output().unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("rekey_connector_checks_total{kind=\"ldap\",status=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("rekey_rotation_steps_total{kind=\"entra-app\",step=\"retired\"} 3"), "{metrics}");

    // No secret in the log or the audit trail; and the chain verifies.
    let audit = ok(&s.rekey(&root, &["-o", "json", "audit", "tail", "-n", "1000"], None));
    for step in
        ["cred.rotate.start", "cred.rotate.apply", "cred.rotate.promote", "cred.rotate.retire", "cred.rotate.fail"]
    {
        assert!(audit.contains(step), "{step} missing from the audit log");
    }
    for secret in [new_password.as_str(), LDAP_ADMIN_PASSWORD, "mail-initial-pw", &format!("pw-{prefix}-1")] {
        assert!(!audit.contains(secret), "a secret is in the audit log");
        assert!(!s.log_text().contains(secret), "a secret is in the server log");
    }
    ok(&s.rekey(&root, &["audit", "verify"], None));
    let _ = p.ca_path;
}

#[test]
fn scheduler_rotates_past_max_age() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s =
        server_with(dir.path(), "[rotation]\ngrace = \"0s\"\n[scheduler]\ninterval = \"1s\"\nverify_every = \"off\"\n");
    let root = s.root_token();
    let tenant = format!("t{}", unique());
    let prefix = format!("age{}", unique());
    add_accounts(&p, &prefix, 1);
    ok(&s.rekey(&root, &["tenant", "create", &tenant, "--region", "us"], None));
    let cref = format!("{tenant}/aging");
    let url = format!("ldap://localhost:{}", p.ldap);
    put_ldap(&s, &root, &cref, (&url, &dn(&prefix, 0)), &format!("pw-{prefix}-0"), &["max_age=2s"], &p.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &cref], None));
        if shown["current_version"].as_u64().unwrap() >= 2 {
            assert_eq!(shown["rotation"]["created_by"], "system:scheduler", "{shown}");
            break;
        }
        assert!(Instant::now() < deadline, "not rotated by age: {shown}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(json(&s.rekey(&root, &["-o", "json", "cred", "verify", &cref], None))["status"], "ok");
}

/// Counts rotations by state, straight from the server's SQLite file.
fn rotation_states(db: &Path) -> std::collections::BTreeMap<String, i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = c.prepare("SELECT state, COUNT(*) FROM rotations GROUP BY state").unwrap();
    q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn bulk_rotation_survives_kill_9_and_loses_no_secret() {
    let Some(p) = peers() else { return };
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let config = "[rotation]\ngrace = \"0s\"\n[scheduler]\ninterval = \"1s\"\nverify_every = \"off\"\n[connectors]\nper_host = 8\n";
    let mut s = server_with(dir.path(), config);
    let root = s.root_token();
    let tenant = format!("bulk{}", unique());
    let prefix = format!("blk{}", unique());
    add_accounts(&p, &prefix, N);
    import_accounts(&p, &s, &root, dir.path(), (&tenant, "uk"), &prefix, N);

    // Rotate all of them; kill the server while the rotations run.
    let mut bulk = Command::new(BIN)
        .args(["-o", "json", "cred", "rotate", "--tenant", &tenant, "--concurrency", "16"])
        .env("REKEY_ADDR", &s.addr)
        .env("REKEY_TOKEN", &root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("data").join("rekey.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = rotation_states(&db);
        if states.get("retired").copied().unwrap_or(0) >= (N / 4) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "rotations did not progress: {states:?}");
        assert!(bulk.try_wait().unwrap().is_none(), "the bulk rotation finished before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let _ = bulk.wait();
    let at_kill = rotation_states(&db);
    let unfinished: i64 = ["pending", "applied"].iter().map(|k| at_kill.get(*k).copied().unwrap_or(0)).sum();
    eprintln!("at kill -9: {at_kill:?}");
    assert!(at_kill.get("retired").copied().unwrap_or(0) < N as i64, "killed too late: {at_kill:?}");

    // Restart: the scheduler finishes (or fails, current untouched) every unfinished rotation.
    let args = dev_with_config(&dir.path().join("data"), &dir.path().join("rekey.toml"));
    let s = Server::start(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>(), "http");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = rotation_states(&db);
        if states.get("pending").copied().unwrap_or(0) + states.get("applied").copied().unwrap_or(0) == 0 {
            eprintln!("after recovery: {states:?} ({unfinished} were unfinished at the kill)");
            assert_eq!(states.get("failed"), None, "a rotation failed: {states:?}");
            break;
        }
        assert!(Instant::now() < deadline, "recovery did not finish: {states:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Rotate the rest, then every stored current secret must open its account.
    let out = s.rekey(&root, &["-o", "json", "cred", "rotate", "--tenant", &tenant, "--concurrency", "16"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let states = rotation_states(&db);
    assert_eq!(states.values().sum::<i64>(), states.get("retired").copied().unwrap_or(0), "{states:?}");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let below_2: i64 = c
        .query_row("SELECT COUNT(*) FROM credentials WHERE name LIKE 'svc-%' AND current_version < 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(below_2, 0, "every credential was rotated at least once");
    drop(c);
    let failed = refused_credentials(&s, &root, &tenant, N);
    assert!(failed.is_empty(), "stored secrets that the directory refuses: {failed:?}");
    ok(&s.rekey(&root, &["audit", "verify"], None));
}
