//! Webhook delivery against receivers served from this test on loopback: the signature is
//! checked with `openssl` (an implementation other than ours), a non-2xx answer and a silent
//! receiver are failures, and a bad setting is refused up front.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use rekey_connect::notify::{MailRelay, NotifyError, Webhook};
use rekey_connect::EgressPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "webhook-test-secret-0123456789";

/// Answers one request with `status` and hands back the raw request, or never answers.
async fn receiver(status: Option<&'static str>) -> (u16, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head, then as many body bytes as content-length says.
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            if let Some(end) = find(&request, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(request);
        match status {
            Some(s) => {
                let answer = format!("HTTP/1.1 {s}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    });
    (port, rx)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn loopback() -> Arc<EgressPolicy> {
    Arc::new(EgressPolicy::deny_internal().with_loopback())
}

fn hook(port: u16, timeout: Duration) -> Webhook {
    Webhook::new(&format!("http://127.0.0.1:{port}/hook"), SECRET.as_bytes().to_vec(), timeout, loopback()).unwrap()
}

/// `HMAC-SHA256(secret, "<t>.<body>")` in hex, by `openssl`.
fn openssl_hmac(t: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut input = format!("{t}.").into_bytes();
    input.extend_from_slice(body);
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().rsplit(' ').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_delivered_webhook_carries_a_signature_a_receiver_can_check() {
    let (port, request) = receiver(Some("204 No Content")).await;
    let body = br#"{"event":"rekey.campaign.notice","tenant":"acme"}"#.to_vec();
    hook(port, Duration::from_secs(5)).post(body.clone(), "delivery-1").await.unwrap();
    let raw = request.await.unwrap();
    let end = find(&raw, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert_eq!(&raw[end + 4..], body.as_slice(), "the body arrives unchanged");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} header in {head}"))
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("rekey-delivery"), "delivery-1");
    let signature = header("rekey-signature");
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let sent_at: i64 = t.parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - sent_at).abs() < 60, "the timestamp is the time of sending");
    assert_eq!(v1, openssl_hmac(t, &body), "the signature is HMAC-SHA256 over \"<t>.<body>\"");
    assert!(!head.contains(SECRET), "the secret itself is never sent");
}

#[tokio::test]
async fn a_refusing_or_silent_receiver_is_a_failure() {
    let (port, _request) = receiver(Some("500 Internal Server Error")).await;
    let e = hook(port, Duration::from_secs(5)).post(b"{}".to_vec(), "d").await.unwrap_err();
    assert!(matches!(e, NotifyError::Webhook(ref m) if m.contains("500")), "{e}");

    let (port, _request) = receiver(None).await;
    let started = Instant::now();
    let e = hook(port, Duration::from_millis(800)).post(b"{}".to_vec(), "d").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout ends the attempt");
    assert!(e.to_string().contains("no answer in time"), "{e}");
    assert!(!e.to_string().contains(SECRET));
}

#[test]
fn bad_settings_are_refused() {
    let t = Duration::from_secs(1);
    assert!(Webhook::new("not a url", SECRET.as_bytes().to_vec(), t, loopback()).is_err());
    assert!(Webhook::new("ftp://example.com/x", SECRET.as_bytes().to_vec(), t, loopback()).is_err());
    assert!(Webhook::new("https://example.com/x", b"short".to_vec(), t, loopback()).is_err());
    assert!(MailRelay::new("smtp://127.0.0.1:25", "not an address", t, loopback()).is_err());
    for bad in ["bogus://user:hunter2@host", "smtp://user:hunter2@host?tls=sometimes", "smtp://user:hunter2@"] {
        let e = MailRelay::new(bad, "a@b.example", t, loopback()).err().unwrap();
        assert!(!e.to_string().contains("hunter2"), "a relay URL's password never reaches an error: {e}");
    }
}

/// The default egress policy refuses a webhook to an internal address, written in the URL or
/// behind a name, and nothing reaches the listener; the URL (often a credential) is in no error.
#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_by_default() {
    let (port, mut rx) = receiver(Some("200 OK")).await;
    let t = Duration::from_secs(2);
    let default = Arc::new(EgressPolicy::deny_internal());
    for url in [
        format!("http://127.0.0.1:{port}/hook?token=hunter2"),
        "http://169.254.169.254/latest/meta-data/?token=hunter2".to_owned(),
        "http://10.0.0.1/hook?token=hunter2".to_owned(),
        format!("http://[::1]:{port}/hook?token=hunter2"),
    ] {
        let e = Webhook::new(&url, SECRET.as_bytes().to_vec(), t, default.clone()).err().expect("refused");
        let text = e.to_string();
        assert!(text.contains("egress denied") && !text.contains("hunter2"), "{text}");
    }
    // A name that resolves to loopback passes the URL check and is refused on its address.
    let named =
        Webhook::new(&format!("http://localhost:{port}/hook?token=hunter2"), SECRET.as_bytes().to_vec(), t, default)
            .unwrap();
    let e = named.post(b"{}".to_vec(), "d1").await.unwrap_err().to_string();
    assert!(e.contains("egress denied: loopback address") && !e.contains("hunter2"), "{e}");
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut rx).await.is_err(), "nothing reached the listener");
    // Allowed, it is delivered.
    hook(port, t).post(b"{}".to_vec(), "d2").await.unwrap();
    assert!(rx.await.is_ok());
}

/// The notice relay is under the egress policy too: at an internal address, written in the URL
/// or behind a name, it is refused by default and nothing reaches the listener; the URL's
/// password is in no error. Allowed, it connects (delivery itself is shown against the real SMTP
/// sink in `peers.rs`).
#[tokio::test]
async fn the_notice_relay_to_an_internal_address_is_refused_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = Duration::from_secs(2);
    let default = Arc::new(EgressPolicy::deny_internal());
    let to = ["admin@tenant.example".to_owned()];
    for url in [
        format!("smtp://rekey:hunter2@127.0.0.1:{port}"),
        "smtp://rekey:hunter2@10.0.0.1:25".to_owned(),
        "smtps://rekey:hunter2@169.254.169.254".to_owned(),
        format!("smtp://rekey:hunter2@[::1]:{port}?tls=required"),
    ] {
        let e = MailRelay::new(&url, "rekey@rekey.test", t, default.clone()).err().expect("refused");
        let text = e.to_string();
        assert!(text.contains("egress denied") && !text.contains("hunter2"), "{text}");
    }
    let named = MailRelay::new(&format!("smtp://rekey:hunter2@localhost:{port}"), "rekey@rekey.test", t, default)
        .expect("a name is checked on its addresses, at delivery");
    let e = named.send(&to, "notice", "body".into()).await.unwrap_err().to_string();
    assert!(e.contains("egress denied: loopback address") && !e.contains("hunter2"), "{e}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept()).await.is_err(),
        "nothing reached the listener"
    );
    // Allowed, the relay connects to the listener.
    let allowed = MailRelay::new(&format!("smtp://localhost:{port}"), "rekey@rekey.test", t, loopback()).unwrap();
    let sending = tokio::spawn(async move { allowed.send(&to, "notice", "body".into()).await });
    let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
    let stream = accepted.expect("the allowed relay connected").unwrap();
    drop(stream);
    let _ = sending.await;
}
