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

/// Accepts connections and sends `head`, then filler bytes without end (no line end, no end of
/// message), as fast as the connection takes them.
async fn flood(head: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let filler = vec![b'a'; 64 * 1024];
                if socket.write_all(head).await.is_ok() {
                    while socket.write_all(&filler).await.is_ok() {}
                }
            });
        }
    });
    port
}

/// The peak resident size of this process, in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A target that never stops sending (an SMTP or POP3 greeting line without end, an LDAP message
/// that announces 2 GiB) is cut at the cap: a `protocol-error` that says so, long before the
/// timeout, with the process's memory where it was.
#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_for_every_kind() {
    let long = Limits { overall: Duration::from_secs(20), connect: Duration::from_secs(10), ..limits() };
    let text = flood(b"220-").await.to_string();
    let pop3 = flood(b"+OK ").await.to_string();
    // SEQUENCE of 0x7fffffff bytes, message id 1, then filler.
    let ldap = flood(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01]).await.to_string();
    let cases = [
        (
            CredentialKind::Smtp,
            fields(CredentialKind::Smtp, &[("host", "127.0.0.1"), ("port", &text), ("tls", "none"), ("user", "u")]),
        ),
        (
            CredentialKind::Pop3,
            fields(CredentialKind::Pop3, &[("host", "127.0.0.1"), ("port", &pop3), ("tls", "none"), ("user", "u")]),
        ),
        (
            CredentialKind::Ldap,
            fields(
                CredentialKind::Ldap,
                &[("url", &format!("ldap://127.0.0.1:{ldap}")), ("bind_dn", "cn=x"), ("tls", "none")],
            ),
        ),
    ];
    let before = peak_kib();
    for (kind, f) in cases {
        let started = Instant::now();
        let o = verify(kind, &f, &Secret::new(b"pw".to_vec()), &long).await.unwrap();
        assert_eq!(o.status, Status::ProtocolError, "{kind}: {o:?}");
        assert!(o.detail.contains("cut off") || o.detail.contains("longer than"), "{kind}: {o:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{kind} took {:?}", started.elapsed());
    }
    let grown = peak_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "the peak resident size grew by {grown} KiB");
}
