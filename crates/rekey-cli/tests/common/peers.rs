//! The connector peers that `scripts/test.sh` starts (OpenLDAP, Dovecot, the SMTP sink, the
//! OpenID provider with the Graph stand-in), as the CLI tests reach them.

use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

pub(crate) use rekey_test_peers::Peers;

pub(crate) fn peers() -> Option<Peers> {
    Peers::or_skip()
}

pub(crate) use rekey_test_peers::{LDAP_ADMIN_DN as ADMIN_DN, LDAP_ADMIN_PASSWORD};

/// Adds service accounts `uid=<prefix>-<i>` with password `pw-<prefix>-<i>`, as the directory admin.
pub(crate) fn add_accounts(p: &Peers, prefix: &str, n: usize) {
    let mut ldif = String::new();
    for i in 0..n {
        ldif.push_str(&format!(
            "dn: uid={prefix}-{i},ou=services,dc=rekey,dc=test\nobjectClass: inetOrgPerson\nuid: {prefix}-{i}\ncn: {prefix}-{i}\nsn: service\nuserPassword: pw-{prefix}-{i}\n\n"
        ));
    }
    let mut child = Command::new("ldapadd")
        .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", p.ldap), "-D", ADMIN_DN, "-w", LDAP_ADMIN_PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ldapadd (ldap-utils)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), ldif.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ldapadd: {}", String::from_utf8_lossy(&out.stderr));
}

/// Imports the accounts `add_accounts` made as `ldap` credentials `svc-<i>` of a tenant (created
/// in `region` if missing), with their passwords.
pub(crate) fn import_accounts(
    p: &Peers,
    s: &Server,
    root: &str,
    dir: &Path,
    (tenant, region): (&str, &str),
    prefix: &str,
    n: usize,
) {
    let url = format!("ldap://localhost:{}", p.ldap);
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "tenant": tenant, "region": region, "name": format!("svc-{i}"), "kind": "ldap",
                "fields": {"url": url, "bind_dn": dn(prefix, i), "ca_pem": p.ca_pem},
                "secret": format!("pw-{prefix}-{i}"),
            })
            .to_string()
        })
        .collect();
    let file = dir.join("creds.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&s.rekey(root, &["cred", "import", file.to_str().unwrap(), "--create-tenants"], None));
}

/// The `i` of each credential `<tenant>/svc-<i>` whose stored secret its target refuses
/// (`cred verify`, eight at a time).
pub(crate) fn refused_credentials(s: &Server, root: &str, tenant: &str, n: usize) -> Vec<usize> {
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for part in 0..8 {
            let failed = &failed;
            scope.spawn(move || {
                for i in (part..n).step_by(8) {
                    let out = s.rekey(root, &["-o", "json", "cred", "verify", &format!("{tenant}/svc-{i}")], None);
                    if !out.status.success() {
                        failed.lock().unwrap().push(i);
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort_unstable();
    failed
}

pub(crate) fn dn(prefix: &str, i: usize) -> String {
    format!("uid={prefix}-{i},ou=services,dc=rekey,dc=test")
}

pub(crate) fn unique() -> String {
    format!("{:x}", rand_suffix() % 0xffff_ffff)
}

pub(crate) fn server_with(dir: &Path, config: &str) -> Server {
    let cfg = dir.join("rekey.toml");
    std::fs::write(&cfg, format!("{config}{LOOPBACK_EGRESS}")).unwrap();
    let args = dev_with_config(&dir.join("data"), &cfg);
    Server::start(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), "http")
}

/// Sets (adds or replaces) a Dovecot user's password in the passwd-file Dovecot reads; Dovecot
/// notices the change within about a second. Test processes share the file, so a lock file
/// beside it keeps their edits apart.
pub(crate) fn set_mail_password(p: &Peers, user: &str, password: &str) {
    let lock = format!("{}.lock", p.dovecot_users);
    let started = std::time::Instant::now();
    loop {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("cannot lock {lock}: {e}"),
        }
    }
    let text = std::fs::read_to_string(&p.dovecot_users).unwrap();
    let mut lines: Vec<String> =
        text.lines().filter(|l| !l.starts_with(&format!("{user}:"))).map(str::to_owned).collect();
    lines.push(format!("{user}:{{PLAIN}}{password}::::"));
    let tmp = format!("{}.tmp{}", p.dovecot_users, std::process::id());
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, &p.dovecot_users).unwrap();
    std::fs::remove_file(&lock).unwrap();
}

/// Waits until Dovecot accepts `password` for `user` over POP3S (it re-reads its passwd-file).
pub(crate) fn wait_mail_login(p: &Peers, user: &str, password: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = Command::new("curl")
            .args(["-s", "--cacert", &p.ca_path, "-u", &format!("{user}:{password}")])
            .arg(format!("pop3s://localhost:{}/", p.pop3s))
            .output()
            .expect("curl");
        if out.status.success() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "dovecot never accepted the new password of {user}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A message's text with quoted-printable soft breaks and escapes undone (what a mail client
/// shows).
pub(crate) fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The messages the SMTP sink received for `rcpt`, decoded, oldest first.
pub(crate) fn mail_to(p: &Peers, rcpt: &str) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(dir) = std::fs::read_dir(Path::new(&p.maildir).join(sub)) else { continue };
        for entry in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if text.lines().any(|l| l.to_ascii_lowercase().starts_with("to:") && l.contains(rcpt)) {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                found.push((modified, text));
            }
        }
    }
    found.sort_by_key(|(m, _)| *m);
    found.into_iter().map(|(_, t)| unquote(&t)).collect()
}

/// A throwaway certificate and key (PEM files) and the certificate as base64 DER.
pub(crate) fn openssl_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let der = Command::new("openssl").args(["x509", "-outform", "der", "-in"]).arg(&cert).output().unwrap().stdout;
    use base64::Engine;
    (cert, key, base64::engine::general_purpose::STANDARD.encode(der))
}

/// Registers an application whose credential is that certificate at the Graph stand-in, as a
/// tenant's administrator would in the portal; returns (object id, client id).
pub(crate) fn register_app(p: &Peers, der_b64: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json", "-d"])
        .arg(format!("{{\"certificate\":\"{der_b64}\"}}"))
        .arg(format!("{}/_standin/applications", p.oidc))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stand-in answer");
    (v["id"].as_str().unwrap().to_owned(), v["appId"].as_str().unwrap().to_owned())
}

/// Stores `cref` as an `entra-app` that signs in with a certificate of its own, registered at
/// the Graph stand-in (so that Rekey can rotate it there).
pub(crate) fn put_certificate_app(p: &Peers, s: &Server, root: &str, dir: &Path, cref: &str) {
    let (cert, key, der) = openssl_cert(dir, &cref.replace('/', "-"));
    let (object_id, app_id) = register_app(p, &der);
    let (token_url, client_id) = (format!("token_url={}/token", p.oidc), format!("client_id={app_id}"));
    let (object, graph) = (format!("app_object_id={object_id}"), format!("graph_url={}", p.oidc));
    ok(&s.rekey(
        root,
        &[
            "cred",
            "put",
            cref,
            "--kind",
            "entra-app",
            "--set",
            &token_url,
            "--set",
            &client_id,
            "--set",
            "scope=api.read",
            "--set",
            &object,
            "--set",
            &graph,
            "--cert-file",
            cert.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ],
        None,
    ));
}
