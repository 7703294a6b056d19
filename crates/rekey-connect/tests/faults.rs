//! Targets that misbehave, served from this test on loopback: one that accepts and never
//! answers (the overall timeout must end the check), and one that answers what the protocol does
//! not allow. These need no peers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rekey_connect::{verify, Limits, Status};
use rekey_types::{CredentialKind, Fields, Secret};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn fields(kind: CredentialKind, pairs: &[(&str, &str)]) -> Fields {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Fields::validate(kind, map).unwrap()
}

/// Accepts connections and holds them open without a byte, or sends `greeting` first.
async fn server(greeting: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if let Some(g) = greeting {
                let _ = socket.write_all(g).await;
            }
            held.push(socket);
        }
    });
    port
}

fn limits() -> Limits {
    Limits {
        connect: Duration::from_millis(500),
        overall: Duration::from_millis(800),
        egress: std::sync::Arc::new(rekey_connect::EgressPolicy::deny_internal().with_loopback()),
    }
}

#[tokio::test]
async fn a_silent_target_times_out_for_every_kind() {
    let port = server(None).await.to_string();
    let cases = [
        (
            CredentialKind::Pop3,
            fields(CredentialKind::Pop3, &[("host", "127.0.0.1"), ("port", &port), ("tls", "none"), ("user", "u")]),
        ),
        (
            CredentialKind::Smtp,
            fields(CredentialKind::Smtp, &[("host", "127.0.0.1"), ("port", &port), ("tls", "none"), ("user", "u")]),
        ),
        (
            CredentialKind::Ldap,
            fields(
                CredentialKind::Ldap,
                &[("url", &format!("ldap://127.0.0.1:{port}")), ("bind_dn", "cn=x"), ("tls", "none")],
            ),
        ),
        (
            CredentialKind::EntraApp,
            fields(
                CredentialKind::EntraApp,
                &[("token_url", &format!("http://127.0.0.1:{port}/token")), ("client_id", "c"), ("scope", "s")],
            ),
        ),
    ];
    for (kind, f) in cases {
        let started = Instant::now();
        let o = verify(kind, &f, &Secret::new(b"pw".to_vec()), &limits()).await.unwrap();
        assert_eq!(o.status, Status::Timeout, "{kind}: {o:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{kind} took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_target_speaking_another_protocol_is_a_protocol_error() {
    let port = server(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n")).await.to_string();
    let pop3 = fields(CredentialKind::Pop3, &[("host", "127.0.0.1"), ("port", &port), ("tls", "none"), ("user", "u")]);
    let o = verify(CredentialKind::Pop3, &pop3, &Secret::new(b"pw".to_vec()), &limits()).await.unwrap();
    assert_eq!(o.status, Status::ProtocolError, "{o:?}");
    // A POP3 server that refuses STLS: nothing is sent in clear, the check fails as TLS.
    let port = server(Some(b"+OK ready\r\n-ERR no STLS here\r\n")).await.to_string();
    let stls =
        fields(CredentialKind::Pop3, &[("host", "127.0.0.1"), ("port", &port), ("tls", "starttls"), ("user", "u")]);
    let o = verify(CredentialKind::Pop3, &stls, &Secret::new(b"pw".to_vec()), &limits()).await.unwrap();
    assert_eq!(o.status, Status::TlsFailed, "{o:?}");
}

#[tokio::test]
async fn generic_credentials_and_unusable_secrets_are_refused_up_front() {
    let g = fields(CredentialKind::Generic, &[]);
    assert!(verify(CredentialKind::Generic, &g, &Secret::new(b"x".to_vec()), &limits()).await.is_err());
    let pop3 = fields(CredentialKind::Pop3, &[("host", "127.0.0.1"), ("port", "1"), ("tls", "none"), ("user", "u")]);
    let err = verify(CredentialKind::Pop3, &pop3, &Secret::new(b"a\r\nQUIT".to_vec()), &limits()).await.unwrap_err();
    assert!(err.to_string().contains("line break"), "{err}");
}
