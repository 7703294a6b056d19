//! Operator login with OpenID Connect, end to end: `rekey login --oidc` against a running server
//! whose `[oidc]` names the real test provider (npm oidc-provider), signed in through the
//! provider's own pages in headless Chromium (`scripts/browser/oidc-login.mjs`), the code coming
//! back to the CLI's loopback listener, the token kept in a 0600 token file the CLI then uses.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn browser_modules() -> Option<String> {
    match std::env::var("REKEY_TEST_BROWSER_MODULES") {
        Ok(m) => Some(m),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_BROWSER_MODULES must be set under CI");
            eprintln!("SKIPPED: set REKEY_TEST_BROWSER_MODULES or run scripts/test.sh");
            None
        }
    }
}

/// `rekey ARGS` with `HOME` at `home` and no token but the token file there.
fn rekey_at(server: &Server, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("HOME", home)
        .env("REKEY_ADDR", &server.addr)
        .env_remove("REKEY_TOKEN")
        .env_remove("REKEY_TOKEN_FILE")
        .env_remove("REKEY_CACERT");
    cmd
}

/// Runs `rekey login --oidc [ARGS]`, signs in as `login` in the browser when it prints the
/// address, and returns what the CLI did and what the browser saw last.
fn login(server: &Server, home: &Path, modules: &str, login: &str, args: &[&str]) -> (Output, serde_json::Value) {
    std::fs::create_dir_all(home).unwrap();
    let mut all = vec!["login", "--oidc"];
    all.extend_from_slice(args);
    let mut child = rekey_at(server, home, &all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let url = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let out = child.wait_with_output().unwrap();
            panic!("rekey login ended before printing an address: {said}{}", String::from_utf8_lossy(&out.stdout));
        }
        said.push_str(&line);
        if line.starts_with("http") {
            break line.trim().to_owned();
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser/oidc-login.mjs");
    let browser = Command::new("node")
        .arg(script)
        .args([url.as_str(), login])
        .env("REKEY_TEST_BROWSER_MODULES", modules)
        .output()
        .expect("node");
    assert!(browser.status.success(), "oidc-login.mjs: {}", String::from_utf8_lossy(&browser.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&browser.stdout).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut out = child.wait_with_output().unwrap();
    out.stderr = format!("{said}{rest}").into_bytes();
    (out, seen)
}

fn token_file(home: &Path) -> PathBuf {
    home.join(".rekey-token")
}

#[test]
fn an_operator_signs_in_with_oidc_through_a_real_provider_in_a_browser() {
    let Some(p) = peers::peers() else { return };
    let Some(modules) = browser_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oidc.toml");
    std::fs::write(
        &cfg,
        format!(
            "{LOOPBACK_EGRESS}\n[oidc]\nissuer = \"{}\"\nclient_id = \"rekey-operators\"\nttl = \"30m\"\n\
             [oidc.roles]\n\"rekey-operators\" = \"operator\"\n\"rekey-auditors\" = \"auditor\"\n",
            p.oidc
        ),
    )
    .unwrap();
    let args = dev_with_config(&dir.path().join("data"), &cfg);
    let server = Server::start(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>(), "http");

    // alice is in rekey-operators: an operator token for 30 minutes, in a 0600 file the CLI uses.
    let home = dir.path().join("alice");
    let (out, seen) = login(&server, &home, &modules, "alice", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Signed in as operator for 30 minutes"));
    assert!(seen["text"].as_str().unwrap().contains("Signed in to Rekey"), "{seen}");
    assert!(seen["url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "back at the loopback listener: {seen}");
    let file = token_file(&home);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let status = rekey_at(&server, &home, &["-o", "json", "status"]).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let created = rekey_at(&server, &home, &["tenant", "create", "acme", "--region", "uk"]).output().unwrap();
    assert!(created.status.success(), "an operator may create a tenant: {}", String::from_utf8_lossy(&created.stderr));

    // She may ask for less; carol (rekey-auditors) gets auditor and may not ask for operator;
    // bob (no mapped group) gets nothing, and no token file is written.
    let home = dir.path().join("alice-auditor");
    let (out, _) = login(&server, &home, &modules, "alice", &["--role", "auditor"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Signed in as auditor"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let denied = rekey_at(&server, &home, &["tenant", "create", "globex", "--region", "us"]).output().unwrap();
    assert!(!denied.status.success(), "an auditor token may not create a tenant");
    let home = dir.path().join("carol");
    let (out, _) = login(&server, &home, &modules, "carol", &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Signed in as auditor"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = |home: &str, user: &str, args: &[&str], says: &str| {
        let home = dir.path().join(home);
        let (out, _) = login(&server, &home, &modules, user, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{user} {args:?}: {stderr}");
        assert!(!token_file(&home).exists(), "{user} {args:?}: a refused login writes no token file");
    };
    refused("carol-operator", "carol", &["--role", "operator"], "do not grant operator");
    refused("bob", "bob", &[], "no group of the user maps");

    // The flow cannot be bent: a redirect off loopback is refused, and a state is good only
    // with the client nonce it was issued for.
    let curl = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("curl").arg("-sS").args(args).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
    };
    let auth_url = |redirect: &str, nonce: &str| {
        let body = serde_json::json!({"redirect_uri": redirect, "client_nonce": nonce}).to_string();
        curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            &format!("{}/v1/auth/oidc/oidc/auth_url", server.addr),
        ])
    };
    let r = auth_url("https://evil.example/oidc/callback", "nonce-nonce-nonce-1");
    assert!(r["errors"][0].as_str().unwrap().contains("loopback"), "{r}");
    let r = auth_url("http://127.0.0.1:9/oidc/callback", "nonce-nonce-nonce-1");
    let url = r["data"]["auth_url"].as_str().unwrap().to_owned();
    let state = url.split("state=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    for (state, nonce, says) in [
        (state.as_str(), "nonce-nonce-nonce-2", "not one this vault issued for this client"),
        ("bm90LWEtc3RhdGU", "nonce-nonce-nonce-1", "does not parse"),
    ] {
        let r =
            curl(&[&format!("{}/v1/auth/oidc/oidc/callback?state={state}&code=x&client_nonce={nonce}", server.addr)]);
        assert!(r["errors"][0].as_str().unwrap().contains(says), "{says}: {r}");
    }

    // Every login is in the audit log with the claims that decided; refusals count as failed
    // attempts of their source (the first of a window audited as itself with its reason, the
    // next ones folded into the window's `auth.failures` event).
    let root = server.root_token();
    let events: serde_json::Value =
        serde_json::from_str(&ok(&server.rekey(&root, &["-o", "json", "audit", "tail", "-n", "200"], None))).unwrap();
    let logins: Vec<&serde_json::Value> =
        events.as_array().unwrap().iter().filter(|e| e["action"] == "auth.login").collect();
    assert_eq!(logins.iter().filter(|e| e["outcome"] == "success").count(), 3, "{logins:?}");
    let denied: Vec<_> = logins.iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{logins:?}");
    assert!(denied[0]["detail"].as_str().unwrap().contains("do not grant operator; sub=carol"), "{denied:?}");
    assert!(logins.iter().any(|e| e["detail"].as_str().unwrap().contains("sub=alice; email=alice@rekey.test")));
}
