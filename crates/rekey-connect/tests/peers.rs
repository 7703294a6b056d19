//! Interop: every connector against the real servers the test script starts on loopback
//! (`scripts/peers/connectors.sh`): OpenLDAP, Dovecot POP3 and submission, npm oidc-provider with
//! the Graph stand-in beside it. Without those peers (`REKEY_TEST_PEERS` unset) the tests skip,
//! except under CI, where they fail.

use std::collections::BTreeMap;
use std::time::Duration;

use rekey_connect::ldap::Changer;
use rekey_connect::{verify, Limits, Outcome, Status};
use rekey_types::{CredentialKind, Fields, Secret};

use rekey_test_peers::Peers;

fn peers() -> Option<Peers> {
    Peers::or_skip()
}

fn fields(kind: CredentialKind, pairs: &[(&str, &str)]) -> Fields {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Fields::validate(kind, map).unwrap()
}

fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes().to_vec())
}

fn limits() -> Limits {
    // The peers listen on loopback, which the default egress policy refuses.
    Limits {
        connect: Duration::from_secs(3),
        overall: Duration::from_secs(10),
        egress: std::sync::Arc::new(rekey_connect::EgressPolicy::deny_internal().with_loopback()),
    }
}

async fn check(kind: CredentialKind, f: &Fields, s: &str) -> Outcome {
    let outcome = verify(kind, f, &secret(s), &limits()).await.unwrap();
    assert!(!outcome.detail.contains(s), "the detail shows the secret: {}", outcome.detail);
    outcome
}

const SVC_DN: &str = "uid=svc-app,ou=services,dc=rekey,dc=test";
use rekey_test_peers::{LDAP_ADMIN_DN as ADMIN_DN, LDAP_ADMIN_PASSWORD};

fn ldap_fields(p: &Peers, url: String, dn: &str) -> Fields {
    fields(CredentialKind::Ldap, &[("url", &url), ("bind_dn", dn), ("ca_pem", &p.ca_pem)])
}

/// Adds a service account with a password, as the directory administrator.
async fn add_account(p: &Peers, uid: &str, password: &str) -> String {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&format!("ldap://127.0.0.1:{}", p.ldap)).await.unwrap();
    tokio::spawn(async move { conn.drive().await });
    ldap.simple_bind(ADMIN_DN, LDAP_ADMIN_PASSWORD).await.unwrap().success().unwrap();
    let dn = format!("uid={uid},ou=services,dc=rekey,dc=test");
    ldap.add(
        &dn,
        vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", [uid].into()),
            ("cn", [uid].into()),
            ("sn", ["service"].into()),
            ("userPassword", [password].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    dn
}

#[tokio::test]
async fn ldap_verify_outcomes() {
    let Some(p) = peers() else { return };
    let starttls = ldap_fields(&p, format!("ldap://localhost:{}", p.ldap), SVC_DN);
    let o = check(CredentialKind::Ldap, &starttls, "svc-initial-pw").await;
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let ldaps = ldap_fields(&p, format!("ldaps://localhost:{}", p.ldaps), SVC_DN);
    assert_eq!(check(CredentialKind::Ldap, &ldaps, "svc-initial-pw").await.status, Status::Ok);

    let o = check(CredentialKind::Ldap, &starttls, "wrong-password").await;
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");

    let closed = ldap_fields(&p, "ldap://localhost:1".into(), SVC_DN);
    assert_eq!(check(CredentialKind::Ldap, &closed, "svc-initial-pw").await.status, Status::Unreachable);

    // The certificate names localhost only.
    let by_ip = ldap_fields(&p, format!("ldaps://127.0.0.1:{}", p.ldaps), SVC_DN);
    let o = check(CredentialKind::Ldap, &by_ip, "svc-initial-pw").await;
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
    assert!(o.detail.contains("name mismatch"), "{o:?}");

    // Without the pinned CA, the test CA is unknown.
    let unpinned =
        fields(CredentialKind::Ldap, &[("url", &format!("ldap://localhost:{}", p.ldap)), ("bind_dn", SVC_DN)]);
    let o = check(CredentialKind::Ldap, &unpinned, "svc-initial-pw").await;
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
    assert!(o.detail.contains("unknown CA"), "{o:?}");

    // Only the loudly named option accepts it.
    let danger = fields(
        CredentialKind::Ldap,
        &[
            ("url", &format!("ldaps://127.0.0.1:{}", p.ldaps)),
            ("bind_dn", SVC_DN),
            ("danger_accept_invalid_certs", "true"),
        ],
    );
    assert_eq!(check(CredentialKind::Ldap, &danger, "svc-initial-pw").await.status, Status::Ok);
}

#[tokio::test]
async fn ldap_password_modify_as_itself_and_by_rotator() {
    let Some(p) = peers() else { return };
    let uid = format!("svc-{}", uuid_suffix());
    let dn = add_account(&p, &uid, "first-password-1").await;
    let f = ldap_fields(&p, format!("ldap://localhost:{}", p.ldap), &dn);

    let o = rekey_connect::ldap::change_password(
        &f,
        Changer::Itself { current: &secret("first-password-1") },
        &secret("second-password-2"),
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(o.changed.status, Status::Ok, "{o:?}");
    assert_eq!(o.proof.as_ref().map(|p| p.status), Some(Status::Ok), "proved on the same connection: {o:?}");
    assert_eq!(check(CredentialKind::Ldap, &f, "second-password-2").await.status, Status::Ok);
    assert_eq!(check(CredentialKind::Ldap, &f, "first-password-1").await.status, Status::AuthFailed);

    // The wrong old password changes nothing.
    let o = rekey_connect::ldap::change_password(
        &f,
        Changer::Itself { current: &secret("first-password-1") },
        &secret("third-password-3"),
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(o.changed.status, Status::AuthFailed, "{o:?}");
    assert!(o.proof.is_none(), "nothing to prove when nothing changed");
    assert_eq!(check(CredentialKind::Ldap, &f, "second-password-2").await.status, Status::Ok);

    let admin = ldap_fields(&p, format!("ldaps://localhost:{}", p.ldaps), ADMIN_DN);
    let o = rekey_connect::ldap::change_password(
        &f,
        Changer::Rotator { fields: &admin, secret: &secret(LDAP_ADMIN_PASSWORD) },
        &secret("fourth-password-4"),
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(o.changed.status, Status::Ok, "{o:?}");
    assert!(o.proof.is_none(), "the rotator's connection is to another URL: no proof from it");
    assert_eq!(check(CredentialKind::Ldap, &f, "fourth-password-4").await.status, Status::Ok);
}

fn uuid_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

fn mail_fields(p: &Peers, kind: CredentialKind, host: &str, port: u16, tls: &str) -> Fields {
    fields(
        kind,
        &[
            ("host", host),
            ("port", &port.to_string()),
            ("tls", tls),
            ("user", "svc-mail@rekey.test"),
            ("ca_pem", &p.ca_pem),
        ],
    )
}

#[tokio::test]
async fn pop3_verify_outcomes() {
    let Some(p) = peers() else { return };
    let k = CredentialKind::Pop3;
    for (port, tls) in [(p.pop3s, "implicit"), (p.pop3, "starttls"), (p.pop3, "none")] {
        let o = check(k, &mail_fields(&p, k, "localhost", port, tls), "mail-initial-pw").await;
        assert_eq!(o.status, Status::Ok, "{tls}: {o:?}");
    }
    let o = check(k, &mail_fields(&p, k, "localhost", p.pop3s, "implicit"), "wrong").await;
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");
    let o = check(k, &mail_fields(&p, k, "127.0.0.1", p.pop3s, "implicit"), "mail-initial-pw").await;
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
    assert!(o.detail.contains("name mismatch"));
    let o = check(k, &mail_fields(&p, k, "localhost", 1, "implicit"), "mail-initial-pw").await;
    assert_eq!(o.status, Status::Unreachable, "{o:?}");
    // Implicit TLS against a plain-text port: the handshake fails, nothing is sent in clear.
    let o = check(k, &mail_fields(&p, k, "localhost", p.pop3, "implicit"), "mail-initial-pw").await;
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
}

#[tokio::test]
async fn smtp_verify_outcomes() {
    let Some(p) = peers() else { return };
    let k = CredentialKind::Smtp;
    for (port, tls) in [(p.submission, "starttls"), (p.submissions, "implicit")] {
        let o = check(k, &mail_fields(&p, k, "localhost", port, tls), "mail-initial-pw").await;
        assert_eq!(o.status, Status::Ok, "{tls}: {o:?}");
    }
    let o = check(k, &mail_fields(&p, k, "localhost", p.submission, "starttls"), "wrong").await;
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");
    let unpinned = fields(
        k,
        &[
            ("host", "localhost"),
            ("port", &p.submission.to_string()),
            ("tls", "starttls"),
            ("user", "svc-mail@rekey.test"),
        ],
    );
    let o = check(k, &unpinned, "mail-initial-pw").await;
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
    assert!(o.detail.contains("unknown CA"), "{o:?}");
    let o = check(k, &mail_fields(&p, k, "localhost", 1, "starttls"), "mail-initial-pw").await;
    assert_eq!(o.status, Status::Unreachable, "{o:?}");
}

/// The notice relay delivers through the real SMTP sink once the policy allows its loopback
/// address (refusals by the default policy: `notify.rs`).
#[tokio::test]
async fn the_notice_relay_delivers_when_the_policy_allows_it() {
    let Some(p) = peers() else { return };
    let marker = format!("relay-{}", uuid_suffix());
    let allowed = std::sync::Arc::new(rekey_connect::EgressPolicy::deny_internal().with_loopback());
    let relay = rekey_connect::notify::MailRelay::new(
        &format!("smtp://localhost:{}", p.sink),
        "rekey@rekey.test",
        Duration::from_secs(5),
        allowed,
    )
    .unwrap();
    relay.send(&["admin@tenant.example".into()], &marker, "a notice".into()).await.unwrap();
    let landed = std::fs::read_dir(format!("{}/new", p.maildir))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .any(|m| m.contains(&marker));
    assert!(landed, "the message reached the sink's Maildir");
}

fn entra(p: &Peers, client_id: &str, extra: &[(&str, &str)]) -> Fields {
    let token_url = format!("{}/token", p.oidc);
    let mut pairs = vec![("token_url", token_url.as_str()), ("client_id", client_id), ("scope", "api.read")];
    pairs.extend_from_slice(extra);
    fields(CredentialKind::EntraApp, &pairs)
}

#[tokio::test]
async fn entra_client_secret_basic_and_post() {
    let Some(p) = peers() else { return };
    let k = CredentialKind::EntraApp;
    let o = check(k, &entra(&p, "svc-secret", &[]), "client-secret-1").await;
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(o.detail.contains("signature checked"), "{o:?}");
    let o = check(k, &entra(&p, "svc-secret-post", &[("secret_method", "post")]), "client-secret-post-1").await;
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let o = check(k, &entra(&p, "svc-secret", &[]), "not-the-secret").await;
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");
    let closed =
        fields(k, &[("token_url", "http://127.0.0.1:1/token"), ("client_id", "svc-secret"), ("scope", "api.read")]);
    assert_eq!(check(k, &closed, "client-secret-1").await.status, Status::Unreachable);
}

/// Registers an application at the stand-in with `cert` as its first certificate.
async fn register_app(p: &Peers, cert_pem: &str) -> (String, String) {
    let der = pem_to_der(cert_pem);
    use base64::Engine;
    let body = serde_json::json!({"certificate": base64::engine::general_purpose::STANDARD.encode(der)});
    rekey_connect::install_crypto_provider();
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_standin/applications", p.oidc))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (r["id"].as_str().unwrap().to_owned(), r["appId"].as_str().unwrap().to_owned())
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn cert_secret(issued: &rekey_crypto::cert::IssuedCert) -> Secret {
    Secret::new(format!("{}\n{}", issued.key_pem.as_str(), issued.info.pem).into_bytes())
}

#[tokio::test]
async fn entra_certificate_assertion_and_graph_key_roll() {
    let Some(p) = peers() else { return };
    let k = CredentialKind::EntraApp;
    let first = rekey_crypto::cert::issue("acme", "ews", 86400).unwrap();
    let (object_id, app_id) = register_app(&p, &first.info.pem).await;
    let f = entra(&p, &app_id, &[("app_object_id", &object_id), ("graph_url", &p.oidc)]);
    let current = cert_secret(&first);
    let o = verify(k, &f, &current, &limits()).await.unwrap();
    assert_eq!(o.status, Status::Ok, "{o:?}");

    let second = rekey_crypto::cert::issue("acme", "ews", 86400).unwrap();
    let next = cert_secret(&second);
    // Not registered yet: refused.
    let o = verify(k, &f, &next, &limits()).await.unwrap();
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");

    let o = rekey_connect::graph::add_certificate(&f, &current, &next, &limits()).await.unwrap();
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let o = rekey_connect::graph::add_certificate(&f, &current, &next, &limits()).await.unwrap();
    assert!(o.detail.contains("already registered"), "{o:?}");
    // Both work during the overlap.
    assert_eq!(verify(k, &f, &next, &limits()).await.unwrap().status, Status::Ok);
    assert_eq!(verify(k, &f, &current, &limits()).await.unwrap().status, Status::Ok);

    let o = rekey_connect::graph::remove_certificate(&f, &next, &current, &limits()).await.unwrap();
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(verify(k, &f, &current, &limits()).await.unwrap().status, Status::AuthFailed);
    assert_eq!(verify(k, &f, &next, &limits()).await.unwrap().status, Status::Ok);
    let o = rekey_connect::graph::remove_certificate(&f, &next, &current, &limits()).await.unwrap();
    assert!(o.detail.contains("already removed"), "{o:?}");

    // A proof signed by a certificate the application does not have is refused.
    let stranger = cert_secret(&rekey_crypto::cert::issue("evil", "ews", 86400).unwrap());
    let o = rekey_connect::graph::add_certificate(&f, &stranger, &stranger, &limits()).await.unwrap();
    assert_eq!(o.status, Status::AuthFailed, "{o:?}");
}

#[tokio::test]
async fn entra_client_secret_roll_through_graph_add_and_remove_password() {
    let Some(p) = peers() else { return };
    let k = CredentialKind::EntraApp;
    rekey_connect::install_crypto_provider();
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_standin/applications", p.oidc))
        .json(&serde_json::json!({"secret": "first-secret-value"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (object_id, app_id) = (r["id"].as_str().unwrap(), r["appId"].as_str().unwrap());
    let f = entra(&p, app_id, &[("app_object_id", object_id), ("graph_url", &p.oidc)]);
    let first = secret("first-secret-value");
    assert_eq!(verify(k, &f, &first, &limits()).await.unwrap().status, Status::Ok);

    let (o, new) = rekey_connect::graph::add_password(&f, &first, "rekey rotation test", &limits()).await.unwrap();
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let new = new.unwrap();
    assert!(!o.detail.contains(std::str::from_utf8(new.secret.expose()).unwrap()), "the detail shows the secret");
    assert_eq!(verify(k, &f, &new.secret, &limits()).await.unwrap().status, Status::Ok);
    let (o, listed) = rekey_connect::graph::password_credentials(&f, &new.secret, &limits()).await.unwrap();
    assert!(o.is_ok());
    assert!(listed.iter().any(|p| p.key_id == new.key_id && p.display_name.as_deref() == Some("rekey rotation test")));
    let o = rekey_connect::graph::remove_password(&f, &new.secret, &new.key_id, &limits()).await.unwrap();
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let o = rekey_connect::graph::remove_password(&f, &new.secret, &new.key_id, &limits()).await.unwrap();
    assert!(o.detail.contains("already removed"), "{o:?}");
    // A proof-less app cannot use addKey.
    let cert = cert_secret(&rekey_crypto::cert::issue("acme", "ews", 3600).unwrap());
    let err = rekey_connect::graph::add_certificate(&f, &new.secret, &cert, &limits()).await.unwrap_err();
    assert!(err.to_string().contains("client secret"), "{err}");
}
