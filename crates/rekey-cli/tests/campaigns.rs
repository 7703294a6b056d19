//! Rotation campaigns end to end with the real binary against the real peers: automatic LDAP
//! rotation, self-service reset of POP3 and SMTP credentials through an emailed link (checked
//! against Dovecot), a webhook receiver that never answers, waivers, the report, and a campaign
//! of 1,000 LDAP accounts that survives `kill -9`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::peers::*;
use common::*;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A server with campaign workers and notices set up for tests: fast retries, email to the
/// sink, webhooks to `hook`. `extra` goes at the end of the `[campaign]` section (and may open
/// sections of its own).
fn campaign_server(dir: &Path, p: &Peers, hook: u16, extra: &str) -> Server {
    let config = format!(
        "[rotation]\ngrace = \"0s\"\n[scheduler]\ninterval = \"1s\"\nverify_every = \"off\"\n\
         [campaign]\ninterval = \"1s\"\nretry_base = \"1s\"\nmax_attempts = 2\n{extra}\n\
         [notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"rekey@rekey.test\"\n\
         webhook_url = \"http://127.0.0.1:{hook}/hook\"\nwebhook_secret_env = \"REKEY_TEST_WEBHOOK_SECRET\"\n\
         timeout = \"1s\"\n",
        p.sink
    );
    let cfg = dir.join("rekey.toml");
    std::fs::write(&cfg, format!("{config}{LOOPBACK_EGRESS}")).unwrap();
    let args = dev_with_config(&dir.join("data"), &cfg);
    Server::start_env(
        dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "http",
        &[("REKEY_TEST_WEBHOOK_SECRET", "campaign-webhook-secret-0123456789")],
    )
}

/// A webhook receiver that accepts connections and never answers.
fn silent_receiver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

fn put(s: &Server, root: &str, cref: &str, kind: &str, fields: &[(&str, &str)], secret: &str) {
    let mut args = vec!["cred".to_owned(), "put".into(), cref.into(), "--kind".into(), kind.into()];
    for (k, v) in fields {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--secret-stdin".into());
    ok(&s.rekey(root, &args.iter().map(String::as_str).collect::<Vec<_>>(), Some(secret.as_bytes())));
}

/// Polls `campaign status` until `done` says so (or fails after `secs`).
fn wait_status(
    s: &Server,
    root: &str,
    id: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = json(&s.rekey(root, &["-o", "json", "campaign", "status", id], None));
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "campaign did not get there: {status:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A campaign's items by name (of one tenant, if given).
fn items_of(s: &Server, root: &str, id: &str, tenant: Option<&str>) -> BTreeMap<String, serde_json::Value> {
    let mut args = vec!["-o", "json", "campaign", "items", id];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let list = json(&s.rekey(root, &args, None));
    list.as_array().unwrap().iter().map(|i| (i["name"].as_str().unwrap().to_owned(), i.clone())).collect()
}

fn items(s: &Server, root: &str, id: &str) -> BTreeMap<String, serde_json::Value> {
    items_of(s, root, id, None)
}

/// A page request with curl: (status, headers, body). `jar` keeps cookies between calls.
fn page(url: &str, jar: &Path, form: Option<&[(&str, &str)]>, send_cookies: bool) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-D", "-", "-c"]).arg(jar);
    if send_cookies {
        cmd.arg("-b").arg(jar);
    }
    if let Some(fields) = form {
        for (k, v) in fields {
            cmd.args(["--data-urlencode", &format!("{k}={v}")]);
        }
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("the form carries a CSRF token") + 19;
    body[at..at + 64].to_owned()
}

#[test]
fn campaign_rotates_ldap_and_resets_mail_through_a_single_use_link() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let prefix = format!("cmp{u}");
    add_accounts(&p, &prefix, 3);
    let mail_user = format!("camp{u}@rekey.test");
    let (mail_old, mail_new) = (format!("mail-old-{u}"), format!("mail-new-{u}"));
    set_mail_password(&p, &mail_user, &mail_old);
    wait_mail_login(&p, &mail_user, &mail_old);

    let hook = silent_receiver();
    let s = campaign_server(dir.path(), &p, hook, "");
    let root = s.root_token();
    let (a, e) = (format!("camp-a-{u}"), format!("camp-e-{u}"));
    let contact = format!("admin-{u}@tenant-a.test");
    ok(&s.rekey(&root, &["tenant", "create", &a, "--region", "uk", "--contact", &contact], None));
    ok(&s.rekey(&root, &["tenant", "create", &e, "--region", "eu", "--contact", "eu@tenant-e.test"], None));
    let ldap_url = format!("ldap://localhost:{}", p.ldap);
    for (i, name) in ["dir0", "dir1"].iter().enumerate() {
        let bind = dn(&prefix, i);
        put(
            &s,
            &root,
            &format!("{a}/{name}"),
            "ldap",
            &[("url", &ldap_url), ("bind_dn", &bind), ("ca_pem", &p.ca_pem)],
            &format!("pw-{prefix}-{i}"),
        );
    }
    // Stored with a password the directory does not take: its rotation fails, is retried, fails.
    let bind2 = dn(&prefix, 2);
    put(
        &s,
        &root,
        &format!("{a}/dirbad"),
        "ldap",
        &[("url", &ldap_url), ("bind_dn", &bind2), ("ca_pem", &p.ca_pem)],
        "not-the-password",
    );
    put(
        &s,
        &root,
        &format!("{e}/dir2"),
        "ldap",
        &[("url", &ldap_url), ("bind_dn", &bind2), ("ca_pem", &p.ca_pem)],
        &format!("pw-{prefix}-2"),
    );
    // An Entra application with a certificate of its own: rotated through Graph (the stand-in).
    put_certificate_app(&p, &s, &root, dir.path(), &format!("{a}/ews"));
    let pop3 = [
        ("host", "localhost"),
        ("port", &p.pop3s.to_string()),
        ("tls", "implicit"),
        ("user", mail_user.as_str()),
        ("ca_pem", p.ca_pem.as_str()),
    ];
    put(&s, &root, &format!("{a}/mail-in"), "pop3", &pop3, &mail_old);
    let smtp = [
        ("host", "localhost"),
        ("port", &p.submission.to_string()),
        ("tls", "starttls"),
        ("user", mail_user.as_str()),
        ("ca_pem", p.ca_pem.as_str()),
    ];
    put(&s, &root, &format!("{a}/relay"), "smtp", &smtp, &mail_old);

    let incident = json(&s.rekey(
        &root,
        &["-o", "json", "incident", "open", "--title", "stolen uk database", "--scope", &format!("tenant:{a}")],
        None,
    ));
    let incident_id = incident["incident"]["id"].as_str().unwrap().to_owned();
    assert_eq!(incident["incident"]["affected"], 6);

    // Bad input changes nothing.
    let bad = fails(&s.rekey(&root, &["campaign", "start", "--incident", &incident_id, "--notify", "pigeon"], None));
    assert!(bad.contains("unknown notification channel"), "{bad}");
    let bad = fails(&s.rekey(&root, &["campaign", "start", "--incident", &incident_id, "--deadline", "10s"], None));
    assert!(bad.contains("deadline"), "{bad}");
    assert_eq!(json(&s.rekey(&root, &["-o", "json", "campaign", "list"], None)).as_array().unwrap().len(), 0);

    let started = json(&s.rekey(
        &root,
        &[
            "-o",
            "json",
            "campaign",
            "start",
            "--incident",
            &incident_id,
            "--deadline",
            "1d",
            "--notify",
            "email,webhook",
        ],
        None,
    ));
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["items"], 6);
    let again = fails(&s.rekey(&root, &["campaign", "start", "--incident", &incident_id], None));
    assert!(again.contains("already exists"), "one running campaign per incident: {again}");

    // LDAP rotates on its own; the bad one fails twice; mail waits for its tenant, notified by
    // email (the webhook never answers: recorded as failed after two attempts).
    let status = wait_status(&s, &root, &id, 90, |st| {
        st["counts"]["retired"] == 3
            && st["counts"]["failed"] == 1
            && st["counts"]["notified"] == 2
            && st["notices"]["webhook/failed"] == 1
            && st["failed"] == 1
    });
    assert_eq!(status["notices"]["email/sent"], 1, "{status:#}");
    let listed = items(&s, &root, &id);
    assert_eq!(listed["dir0"]["mode"], "automatic");
    assert_eq!(listed["dir0"]["done_by"], "system:campaign");
    for stamp in ["rotated_at", "verified_at", "retired_at"] {
        assert!(listed["dir0"][stamp].is_string(), "{stamp}: {:#}", listed["dir0"]);
    }
    assert_eq!(listed["dirbad"]["attempts"], 2);
    assert!(listed["dirbad"]["error"].as_str().unwrap().contains("auth-failed"), "{:#}", listed["dirbad"]);
    assert_eq!(listed["mail-in"]["mode"], "self-service");
    assert_eq!((listed["ews"]["mode"].as_str(), listed["ews"]["state"].as_str()), (Some("automatic"), Some("retired")));
    for name in ["dir0", "dir1", "ews"] {
        ok(&s.rekey(&root, &["cred", "verify", &format!("{a}/{name}")], None));
        let versions = json(&s.rekey(&root, &["-o", "json", "cred", "versions", &format!("{a}/{name}")], None));
        let stages: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["stage"].as_str().unwrap()).collect();
        assert_eq!(stages.iter().filter(|s| **s == "current").count(), 1, "{versions}");
        assert!(stages.contains(&"retired"), "the stolen version is retired at once: {versions}");
    }

    // The email: who, what, the link; never a secret.
    let mails = mail_to(&p, &contact);
    assert_eq!(mails.len(), 1, "one notice by email");
    let mail = &mails[0];
    assert!(mail.contains("mail-in") && mail.contains("relay") && mail.contains("stolen uk database"), "{mail}");
    assert!(!mail.contains(&mail_old) && !mail.contains("dir0"), "{mail}");
    let link = mail.lines().map(str::trim).find(|l| l.contains("/r/")).expect("a link in the mail").to_owned();
    assert!(link.starts_with(&s.addr), "{link} is on this server");

    // The page: what and why, strict headers, a CSRF cookie; no secret.
    let jar = dir.path().join("cookies");
    let (status, head, body) = page(&link, &jar, None, false);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("referrer-policy: no-referrer") && head.contains("x-frame-options: deny"), "{head}");
    assert!(
        head.contains("set-cookie: rekey_csrf=") && head.contains("samesite=strict") && head.contains("httponly"),
        "{head}"
    );
    assert!(body.contains("mail-in") && body.contains("relay") && body.contains(&mail_user), "{body}");
    assert!(!body.contains(&mail_old) && !body.contains("<script"), "{body}");
    let csrf = csrf_of(&body);

    // No cookie (a post from another site): refused before anything is checked.
    let (status, _, _) = page(
        &link,
        &dir.path().join("other-jar"),
        Some(&[("csrf", &csrf), ("secret.mail-in", &mail_old), ("secret.relay", &mail_old)]),
        false,
    );
    assert_eq!(status, 403);
    // A credential the link does not reset: refused outright.
    let (status, _, body) = page(
        &link,
        &jar,
        Some(&[("csrf", &csrf), ("secret.dir0", "x"), ("secret.mail-in", "y"), ("secret.relay", "y")]),
        true,
    );
    assert_eq!(status, 400, "{body}");
    // A wrong password: the connector's reason, nothing stored.
    let (status, _, body) = page(
        &link,
        &jar,
        Some(&[("csrf", &csrf), ("secret.mail-in", "wrong-password"), ("secret.relay", "wrong-password")]),
        true,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("auth-failed") && body.contains("Nothing was stored"), "{body}");
    assert!(!body.contains("wrong-password"), "a refused secret is not echoed");
    for name in ["mail-in", "relay"] {
        let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &format!("{a}/{name}")], None));
        assert_eq!(shown["current_version"], 1, "nothing stored for {name}");
    }

    // The administrator changes the password at Dovecot, then enters it.
    set_mail_password(&p, &mail_user, &mail_new);
    wait_mail_login(&p, &mail_user, &mail_new);
    let csrf = csrf_of(&body);
    let (status, _, body) =
        page(&link, &jar, Some(&[("csrf", &csrf), ("secret.mail-in", &mail_new), ("secret.relay", &mail_new)]), true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("every new secret works"), "{body}");
    // Used once: never again; a forged link is unknown.
    let (status, _, body) = page(&link, &jar, None, true);
    assert_eq!(status, 410, "{body}");
    let mut forged = link.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(page(&forged, &jar, None, true).0, 404);

    for name in ["mail-in", "relay"] {
        let reveal = json(&s.rekey(&root, &["-o", "json", "cred", "reveal", &format!("{a}/{name}")], None));
        assert_eq!(reveal["secret"], mail_new.as_str());
    }
    let listed = items(&s, &root, &id);
    assert_eq!(listed["mail-in"]["state"], "retired");
    assert!(listed["mail-in"]["done_by"].as_str().unwrap().starts_with("link:"), "{:#}", listed["mail-in"]);

    // Waive the one that cannot be rotated; the campaign then finishes.
    let bad = fails(&s.rekey(&root, &["campaign", "waive", &id, &format!("{a}/dirbad"), "--reason", ""], None));
    assert!(bad.contains("reason"), "{bad}");
    ok(&s.rekey(
        &root,
        &["campaign", "waive", &id, &format!("{a}/dirbad"), "--reason", "account decommissioned by the customer"],
        None,
    ));
    let status = wait_status(&s, &root, &id, 30, |st| st["campaign"]["state"] == "finished");
    assert_eq!(status["done"], 6);

    // eu is untouched.
    let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &format!("{e}/dir2")], None));
    assert_eq!(shown["current_version"], 1);

    // The report, three ways; no secret in any.
    let report = json(&s.rekey(&root, &["campaign", "report", &id, "--format", "json"], None));
    assert_eq!(report["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(report["tenants"][0]["tenant"], a.as_str());
    assert_eq!(report["done"], 6);
    // The tenant's audit evidence is linked, and answers that tenant's proven events.
    let evidence = report["tenants"][0]["evidence"].as_str().unwrap();
    assert!(evidence.starts_with(&format!("/v1/audit/evidence?tenant={a}")), "{evidence}");
    let ev_dir = dir.path().join("evidence");
    let since = evidence.split("since=").nth(1).map(str::to_owned);
    let mut args = vec!["audit", "evidence", "--tenant", a.as_str(), "--out", ev_dir.to_str().unwrap()];
    if let Some(since) = &since {
        args.extend(["--since", since.as_str()]);
    }
    ok(&s.rekey(&root, &args, None));
    assert!(std::fs::read_to_string(ev_dir.join("evidence.jsonl")).unwrap().contains(&format!("{a}/")));
    let html_path = dir.path().join("report.html");
    ok(&s.rekey(&root, &["campaign", "report", &id, "--format", "html", "--out", html_path.to_str().unwrap()], None));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("account decommissioned by the customer") && html.contains("stolen uk database"));
    let csv = ok(&s.rekey(&root, &["campaign", "report", &id, "--format", "csv"], None));
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(csv.starts_with("tenant,region,credential,kind,reasons"), "{csv}");

    // A campaign needs an open incident.
    ok(&s.rekey(&root, &["incident", "close", &incident_id], None));
    let closed = fails(&s.rekey(&root, &["campaign", "start", "--incident", &incident_id], None));
    assert!(closed.contains("closed"), "{closed}");

    // Who may: an auditor reads, never acts.
    let auditor = json(&s.rekey(&root, &["-o", "json", "token", "create", "--role", "auditor"], None));
    let auditor = auditor["secret"].as_str().unwrap();
    ok(&s.rekey(auditor, &["campaign", "status", &id], None));
    fails(&s.rekey(auditor, &["campaign", "link", &id, "--tenant", &a], None));

    ok(&s.rekey(&root, &["audit", "verify"], None));
    let audit = ok(&s.rekey(&root, &["-o", "json", "audit", "tail", "-n", "10000"], None));
    let log = s.log_text();
    let link_secret = link.rsplit('.').next().unwrap();
    for secret in [mail_old.as_str(), mail_new.as_str(), "wrong-password", link_secret, "campaign-webhook-secret"] {
        assert!(!audit.contains(secret), "a secret in the audit log");
        assert!(!log.contains(secret), "a secret in the server log");
    }
    for i in 0..2 {
        assert!(!log.contains(&format!("pw-{prefix}-{i}")));
    }
}

/// Rows of one query on the server's SQLite file, read-only, as (text, count) pairs.
fn counts(db: &Path, sql: &str) -> BTreeMap<String, i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = c.prepare(sql).unwrap();
    q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_campaign_of_1000_ldap_accounts_survives_kill_9() {
    let Some(p) = peers() else { return };
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let prefix = format!("k9{u}");
    add_accounts(&p, &prefix, N);
    let extra = "[connectors]\nper_host = 8\n";
    let mut s = campaign_server(dir.path(), &p, silent_receiver(), extra);
    let root = s.root_token();
    let tenant = format!("kill-{u}");
    import_accounts(&p, &s, &root, dir.path(), (&tenant, "us"), &prefix, N);
    let incident = json(&s.rekey(
        &root,
        &["-o", "json", "incident", "open", "--title", "us keys", "--scope", &format!("tenant:{tenant}")],
        None,
    ));
    let incident_id = incident["incident"]["id"].as_str().unwrap().to_owned();
    let started = json(&s.rekey(&root, &["-o", "json", "campaign", "start", "--incident", &incident_id], None));
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["items"], N as i64);

    // Kill the server while the campaign runs.
    let db = dir.path().join("data").join("rekey.db");
    let by_state = "SELECT state, COUNT(*) FROM campaign_items GROUP BY state";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states = counts(&db, by_state);
        if states.get("retired").copied().unwrap_or(0) >= (N / 5) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not progress: {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let at_kill = counts(&db, by_state);
    eprintln!("items at kill -9: {at_kill:?}");
    assert!(at_kill.get("retired").copied().unwrap_or(0) < N as i64, "killed too late: {at_kill:?}");

    // Restart: the campaign resumes and finishes.
    let args = dev_with_config(&dir.path().join("data"), &dir.path().join("rekey.toml"));
    let s = Server::start_env(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "http",
        &[("REKEY_TEST_WEBHOOK_SECRET", "campaign-webhook-secret-0123456789")],
    );
    let status = wait_status(&s, &root, &id, 180, |st| st["campaign"]["state"] == "finished");
    assert_eq!(status["counts"]["retired"], N as i64, "{status:#}");

    // Nothing lost, nothing done twice at the target: one rotation per credential, and at most
    // one password change sent to the directory for each (a recovered step that found the
    // directory already holding the new password says so instead).
    let rotations =
        counts(&db, "SELECT credential_id, COUNT(*) FROM rotations GROUP BY credential_id HAVING COUNT(*) > 1");
    assert!(rotations.is_empty(), "credentials rotated more than once: {}", rotations.len());
    let applied = counts(
        &db,
        "SELECT resource, COUNT(*) FROM audit_events WHERE action = 'cred.rotate.apply' AND outcome = 'success' \
         AND detail NOT LIKE '%already took it%' GROUP BY resource HAVING COUNT(*) > 1",
    );
    assert!(applied.is_empty(), "a password sent twice: {applied:?}");
    let recovered = counts(&db, "SELECT 'recovered', COUNT(*) FROM audit_events WHERE detail LIKE '%already took it%'");
    eprintln!("steps that found the directory already changed: {recovered:?}");

    // Every stored secret opens its account.
    let failed = refused_credentials(&s, &root, &tenant, N);
    assert!(failed.is_empty(), "stored secrets that the directory refuses: {failed:?}");
    ok(&s.rekey(&root, &["audit", "verify"], None));
}

/// What `scripts/browser/reset.mjs` saw in headless Chromium (JavaScript off), or `None` when
/// the browser tools are not installed (outside CI).
fn browser(link: &str, secrets: &[(&str, &str)]) -> Option<serde_json::Value> {
    let Ok(modules) = std::env::var("REKEY_TEST_BROWSER_MODULES") else {
        assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_BROWSER_MODULES must be set under CI (scripts/test.sh)");
        eprintln!("SKIPPED: no browser tools (run scripts/test.sh)");
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser/reset.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(link)
        .args(secrets.iter().map(|(k, v)| format!("{k}={v}")))
        .env("REKEY_TEST_BROWSER_MODULES", modules)
        .output()
        .expect("node");
    assert!(out.status.success(), "reset.mjs: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn the_reset_page_works_in_headless_chromium_without_javascript() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let mail_user = format!("web{u}@rekey.test");
    let (old, new) = (format!("web-old-{u}"), format!("web-new-{u}"));
    set_mail_password(&p, &mail_user, &old);
    wait_mail_login(&p, &mail_user, &old);
    let s = campaign_server(dir.path(), &p, silent_receiver(), "");
    let root = s.root_token();
    let (t, other) = (format!("web-{u}"), format!("web-other-{u}"));
    ok(&s.rekey(&root, &["tenant", "create", &t, "--region", "us"], None));
    ok(&s.rekey(&root, &["tenant", "create", &other, "--region", "us"], None));
    let pop3 = [
        ("host", "localhost"),
        ("port", &p.pop3s.to_string()),
        ("tls", "implicit"),
        ("user", mail_user.as_str()),
        ("ca_pem", p.ca_pem.as_str()),
    ];
    put(&s, &root, &format!("{t}/journal"), "pop3", &pop3, &old);
    put(&s, &root, &format!("{other}/journal"), "pop3", &pop3, &old);
    let incident = json(&s.rekey(
        &root,
        &["-o", "json", "incident", "open", "--title", "us mailboxes", "--scope", "region:us"],
        None,
    ));
    let incident_id = incident["incident"]["id"].as_str().unwrap().to_owned();
    let id = json(&s.rekey(&root, &["-o", "json", "campaign", "start", "--incident", &incident_id], None))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No channel configured for this campaign: the operator hands the link out.
    let link = json(&s.rekey(&root, &["-o", "json", "campaign", "link", &id, "--tenant", &t], None));
    let link = link["url"].as_str().unwrap().to_owned();
    assert_eq!(items_of(&s, &root, &id, Some(&t))["journal"]["state"], "notified");
    assert_eq!(items_of(&s, &root, &id, Some(&other))["journal"]["state"], "pending");

    let Some(seen) = browser(&link, &[]) else { return };
    let opened = &seen["opened"];
    assert_eq!(opened["status"], 200, "{seen:#}");
    assert!(opened["csp"].as_str().unwrap().starts_with("default-src 'none'"), "{seen:#}");
    assert_eq!(opened["fields"], serde_json::json!(["secret.journal"]), "only this tenant's credential: {seen:#}");
    assert!(opened["text"].as_str().unwrap().contains("us mailboxes"), "{seen:#}");
    assert_eq!(opened["stylesheet"], 1);
    let complaints: Vec<&serde_json::Value> = seen["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m.as_str().unwrap().starts_with("verbose:") && !m.as_str().unwrap().starts_with("debug:"))
        .collect();
    assert!(complaints.is_empty(), "no CSP violation or other complaint: {seen:#}");
    assert!(!seen["console"].to_string().contains("username"), "password managers find the account: {seen:#}");

    // A wrong password: refused with the connector's reason, nothing stored.
    let seen = browser(&link, &[("journal", "not-the-new-one")]).unwrap();
    let submitted = &seen["submitted"];
    assert_eq!(submitted["status"], 422, "{seen:#}");
    let alert = submitted["alerts"][0].as_str().unwrap();
    assert!(alert.contains("journal") && alert.contains("auth-failed"), "{seen:#}");
    assert!(!submitted["text"].as_str().unwrap().contains("not-the-new-one"));
    let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &format!("{t}/journal")], None));
    assert_eq!(shown["current_version"], 1);

    // The right one, after the administrator changed it at Dovecot.
    set_mail_password(&p, &mail_user, &new);
    wait_mail_login(&p, &mail_user, &new);
    let seen = browser(&link, &[("journal", &new)]).unwrap();
    assert_eq!(seen["submitted"]["status"], 200, "{seen:#}");
    assert!(seen["submitted"]["heading"].as_str().unwrap().contains("every new secret works"), "{seen:#}");
    let revealed = json(&s.rekey(&root, &["-o", "json", "cred", "reveal", &format!("{t}/journal")], None));
    assert_eq!(revealed["secret"], new.as_str());
    assert_eq!(items_of(&s, &root, &id, Some(&t))["journal"]["state"], "retired");

    // Used: the same link again is refused, and the other tenant's credential was never offered.
    let seen = browser(&link, &[]).unwrap();
    assert_eq!(seen["opened"]["status"], 410, "{seen:#}");
    assert!(seen["opened"]["heading"].as_str().unwrap().contains("can no longer be used"), "{seen:#}");
    let shown = json(&s.rekey(&root, &["-o", "json", "cred", "show", &format!("{other}/journal")], None));
    assert_eq!(shown["current_version"], 1);
}

#[test]
fn reminders_go_out_before_the_deadline_and_skip_what_is_done() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    // Deadline in a day, reminders a day minus five seconds before it: five seconds in.
    let s = campaign_server(dir.path(), &p, silent_receiver(), "remind_before = \"86395s\"\n");
    let root = s.root_token();
    let (t, done) = (format!("rem-{u}"), format!("rem-done-{u}"));
    let (contact, done_contact) = (format!("remind-{u}@tenant.test"), format!("done-{u}@tenant.test"));
    ok(&s.rekey(&root, &["tenant", "create", &t, "--region", "eu", "--contact", &contact], None));
    ok(&s.rekey(&root, &["tenant", "create", &done, "--region", "eu", "--contact", &done_contact], None));
    let pop3 = [
        ("host", "localhost"),
        ("port", &p.pop3s.to_string()),
        ("tls", "implicit"),
        ("user", "nobody@rekey.test"),
        ("ca_pem", p.ca_pem.as_str()),
    ];
    put(&s, &root, &format!("{t}/journal"), "pop3", &pop3, "old");
    put(&s, &root, &format!("{done}/journal"), "pop3", &pop3, "old");
    let incident = json(&s.rekey(
        &root,
        &["-o", "json", "incident", "open", "--title", "eu relay logs", "--scope", "region:eu"],
        None,
    ));
    let incident_id = incident["incident"]["id"].as_str().unwrap().to_owned();
    let started = json(&s.rekey(
        &root,
        &["-o", "json", "campaign", "start", "--incident", &incident_id, "--deadline", "1d", "--notify", "email"],
        None,
    ));
    let id = started["id"].as_str().unwrap().to_owned();
    // One tenant is done before the reminder: an operator waives its item.
    wait_status(&s, &root, &id, 30, |st| st["notices"]["email/sent"] == 2);
    ok(&s.rekey(&root, &["campaign", "waive", &id, &format!("{done}/journal"), "--reason", "mailbox closed"], None));
    let status = wait_status(&s, &root, &id, 60, |st| {
        st["notices"]["email/sent"].as_i64().unwrap_or(0) + st["notices"]["email/skipped"].as_i64().unwrap_or(0) >= 3
    });
    let mails = mail_to(&p, &contact);
    assert_eq!(mails.len(), 2, "{status:#}");
    assert!(mails[0].contains("Subject: Action required"), "{}", mails[0]);
    assert!(mails[1].contains("Subject: Reminder: action required"), "{}", mails[1]);
    let first_link = mails[0].lines().find(|l| l.contains("/r/")).unwrap().trim().to_owned();
    let second_link = mails[1].lines().find(|l| l.contains("/r/")).unwrap().trim().to_owned();
    assert_ne!(first_link, second_link, "each notice carries a link of its own");
    assert_eq!(mail_to(&p, &done_contact).len(), 1, "no reminder for a tenant with nothing left");
}
