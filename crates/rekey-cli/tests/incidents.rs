//! Incidents end to end with the real binary: blast radius with reasons, export, containment
//! (keys, tokens, freeze), bad input, who may.

mod common;

use common::*;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn blast_radius_containment_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::dev(dir.path());
    let root = s.root_token();
    for (tenant, region) in [("acme", "uk"), ("globex", "us"), ("initech", "eu"), ("hooli", "eu")] {
        ok(&s.rekey(&root, &["tenant", "create", tenant, "--region", region], None));
        for name in ["dir", "relay"] {
            let cref = format!("{tenant}/{name}");
            ok(&s.rekey(&root, &["cred", "put", &cref, "--kind", "generic", "--secret-stdin"], Some(b"s3cret-value")));
        }
    }
    // A connector token of globex that revealed its credential.
    let t = json(&s.rekey(
        &root,
        &["-o", "json", "token", "create", "--role", "connector", "--tenant", "globex", "--cred", "dir"],
        None,
    ));
    let (token_id, token) = (t["token"]["id"].as_str().unwrap().to_owned(), t["secret"].as_str().unwrap().to_owned());
    ok(&s.rekey(&token, &["-o", "json", "cred", "reveal", "globex/dir"], None));
    let acme_connector = json(&s.rekey(
        &root,
        &["-o", "json", "token", "create", "--role", "connector", "--tenant", "acme", "--cred", "dir"],
        None,
    ));
    let acme_connector = acme_connector["secret"].as_str().unwrap().to_owned();

    let scope_token = format!("token:{token_id}");
    let args = [
        "-o",
        "json",
        "incident",
        "open",
        "--title",
        "backup stolen",
        "--scope",
        "region:uk",
        "--scope",
        &scope_token,
        "--scope",
        "key:initech@1",
        "--since",
        "1d",
    ];
    let r = json(&s.rekey(&root, &args, None));
    let id = r["incident"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["incident"]["affected"], 5, "{r}");
    assert_eq!(r["by_region"], serde_json::json!({"eu": 2, "uk": 2, "us": 1}));
    assert_eq!(r["reveals_since"], serde_json::json!({"reveals": 1, "credentials": 1}));

    // The export lists each credential with why it is in scope; hooli (eu) is untouched.
    let csv = ok(&s.rekey(&root, &["-o", "csv", "incident", "show", &id], None));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "tenant,region,credential,kind,reasons,reveals_since");
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with("globex,us,dir,generic,") && l.contains("revealed it") && l.ends_with(",1")),
        "{csv}"
    );
    assert!(lines.iter().any(|l| l.starts_with("initech,eu,relay,generic,key:initech@1")), "{csv}");
    assert!(!csv.contains("hooli"));
    let full = json(&s.rekey(&root, &["-o", "json", "incident", "show", &id], None));
    assert_eq!(full["credentials"].as_array().unwrap().len(), 5);
    let table = ok(&s.rekey(&root, &["-o", "table", "incident", "show", &id], None));
    assert!(table.contains("5 credentials") && table.contains("incident.open"), "{table}");

    // A dry run changes nothing.
    let plan = json(&s.rekey(&root, &["-o", "json", "incident", "contain", &id, "--freeze", "--dry-run"], None));
    assert!(plan["actions"].as_array().unwrap().iter().all(|a| a["outcome"] == "planned"), "{plan}");
    ok(&s.rekey(&token, &["-o", "json", "cred", "reveal", "globex/dir"], None));
    ok(&s.rekey(&acme_connector, &["-o", "json", "cred", "reveal", "acme/dir"], None));

    // Containment, in the order of the scope: the token revoked, the key compromised (and rotated off), reveals frozen.
    let done = json(&s.rekey(&root, &["-o", "json", "incident", "contain", &id, "--freeze"], None));
    let outcomes: Vec<(String, String)> = done["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap().to_owned(), a["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("revoke-token".to_string(), "done".to_string()),
            ("compromise-key".to_string(), "done".to_string()),
            ("freeze".to_string(), "done".to_string())
        ]
    );
    assert!(fails(&s.rekey(&token, &["cred", "reveal", "globex/dir"], None)).contains("unauthenticated"));
    let err = fails(&s.rekey(&acme_connector, &["cred", "reveal", "acme/dir"], None));
    assert!(err.contains("frozen") && err.contains("423"), "{err}");
    // Operators still can; a new version ends the freeze for that credential only.
    ok(&s.rekey(&root, &["-o", "json", "cred", "reveal", "acme/dir"], None));
    ok(&s.rekey(&root, &["cred", "put", "acme/dir", "--kind", "generic", "--secret-stdin"], Some(b"rotated")));
    assert_eq!(
        json(&s.rekey(&acme_connector, &["-o", "json", "cred", "reveal", "acme/dir"], None))["secret"],
        "rotated"
    );
    let keys = ok(&s.rekey(&root, &["-o", "table", "key", "list", "--tenant", "initech"], None));
    assert!(keys.contains("compromised"), "{keys}");
    let shown = json(&s.rekey(&root, &["-o", "json", "incident", "show", &id], None));
    let timeline: Vec<String> = shown["report"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert!(timeline.iter().any(|d| d.starts_with("compromise-key initech@1: done")), "{timeline:?}");
    assert!(timeline.iter().any(|d| d.starts_with("freeze 5 credentials: done")), "{timeline:?}");
    assert_eq!(shown["report"]["incident"]["frozen"], true);

    // Who may: an auditor reads, a tenant admin does not, neither opens one.
    let au = json(&s.rekey(&root, &["-o", "json", "token", "create", "--role", "auditor"], None));
    let au = au["secret"].as_str().unwrap().to_owned();
    ok(&s.rekey(&au, &["-o", "json", "incident", "show", &id], None));
    assert!(
        fails(&s.rekey(&au, &["incident", "open", "--title", "x", "--scope", "region:uk"], None)).contains("forbidden")
    );
    let ta =
        json(&s.rekey(&root, &["-o", "json", "token", "create", "--role", "tenant-admin", "--tenant", "acme"], None));
    let ta = ta["secret"].as_str().unwrap().to_owned();
    assert!(fails(&s.rekey(&ta, &["incident", "list"], None)).contains("forbidden"));

    // Bad input: a clear error and nothing recorded.
    for (scope, says) in [
        ("colour:red", "unknown selector type"),
        ("region:", "empty"),
        ("key:nobody@1", "no tenant nobody"),
        ("key:acme@9", "no key version 9"),
        ("cert:0123456789abcdef0123456789abcdef01234567", "no certificate"),
        ("token:01a216c4-2d50-732e-b628-52cac193c647", "no token"),
        ("cred:acme/nothing", "no credential acme/nothing"),
    ] {
        let err = fails(&s.rekey(&root, &["incident", "open", "--title", "bad", "--scope", scope], None));
        assert!(err.contains(says) && err.contains("bad_request"), "{scope}: {err}");
    }
    assert!(
        fails(&s.rekey(&root, &["incident", "open", "--title", " ", "--scope", "region:uk"], None)).contains("title")
    );
    assert_eq!(json(&s.rekey(&root, &["-o", "json", "incident", "list"], None)).as_array().unwrap().len(), 1);
    assert!(fails(&s.rekey(&root, &["incident", "show", "not-an-id"], None)).contains("UUID"));

    ok(&s.rekey(&root, &["incident", "close", &id], None));
    assert!(fails(&s.rekey(&root, &["incident", "contain", &id], None)).contains("closed"));
    ok(&s.rekey(&root, &["audit", "verify"], None));
}
