//! Detection end to end with the real binary: decoys planted and listed by the CLI, a decoy's
//! reveal raising a critical alert whose notice reaches a webhook receiver (signed) and the
//! mail sink, then escalated to an incident; nothing in a notice is a secret.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::peers::*;
use common::*;

const HOOK_SECRET: &str = "alert-webhook-secret-0123456789";

/// What the receiver kept of each request: its signature header and its body.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver that answers `204` and keeps each request's signature header and body.
fn receiver() -> (u16, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut signature) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("rekey-signature:") {
                    signature = line.split_once(':').unwrap().1.trim().to_owned();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            kept.lock().unwrap().push((signature, String::from_utf8(body).unwrap()));
            let mut out = stream;
            let _ = out.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, got)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn a_decoy_read_is_alerted_by_signed_webhook_and_mail_and_escalated() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (hook, received) = receiver();
    let soc = format!("soc-{}@provider.test", unique());
    let config = format!(
        "[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"rekey@rekey.test\"\n\
         webhook_url = \"http://127.0.0.1:{hook}/alerts\"\nwebhook_secret_env = \"REKEY_TEST_WEBHOOK_SECRET\"\n\
         timeout = \"2s\"\n[detect]\ninterval = \"100ms\"\nwebhook = true\nemail = [\"{soc}\"]\n{LOOPBACK_EGRESS}",
        p.sink
    );
    let cfg = dir.path().join("rekey.toml");
    std::fs::write(&cfg, config).unwrap();
    let args = dev_with_config(&dir.path().join("data"), &cfg);
    let s = Server::start_env(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "http",
        &[("REKEY_TEST_WEBHOOK_SECRET", HOOK_SECRET)],
    );
    let root = s.root_token();
    ok(&s.rekey(&root, &["tenant", "create", "acme", "--region", "uk"], None));
    ok(&s.rekey(&root, &["cred", "put", "acme/journal", "--kind", "generic", "--secret-stdin"], Some(b"real-secret")));

    let planted = json(&s.rekey(&root, &["decoy", "plant", "--tenant", "acme", "--count", "2", "-o", "json"], None));
    let decoy = planted[0]["credential"].as_str().unwrap().to_owned();
    assert!(decoy.starts_with("acme/journal-"), "named after the tenant's own: {decoy}");
    let listed = ok(&s.rekey(&root, &["decoy", "list", "--tenant", "acme"], None));
    assert!(listed.contains(&decoy), "{listed}");

    let revealed = json(&s.rekey(&root, &["cred", "reveal", &decoy, "-o", "json"], None));
    let secret = revealed["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 24);

    // The alert, its webhook and its mail.
    let started = Instant::now();
    let alert = loop {
        let list = json(&s.rekey(&root, &["alert", "list", "-o", "json"], None));
        if let Some(a) = list.as_array().unwrap().iter().find(|a| a["notified"] == true) {
            break a.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no notified alert: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((alert["rule"].as_str(), alert["severity"].as_str()), (Some("decoy"), Some("critical")));
    let id = alert["id"].as_str().unwrap().to_owned();
    let posts = received.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let (signature, body) = &posts[0];
    let t: i64 = signature.split(',').next().unwrap().strip_prefix("t=").unwrap().parse().unwrap();
    assert_eq!(signature, &rekey_crypto::link::webhook_signature(HOOK_SECRET.as_bytes(), t, body.as_bytes()));
    let posted: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(posted["type"], "alert");
    assert_eq!(posted["alert"]["id"], id.as_str());
    assert_eq!(posted["alert"]["resources"], serde_json::json!([decoy]));
    let mail = loop {
        let m = mail_to(&p, &soc);
        if !m.is_empty() {
            break m.join("\n");
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no mail to {soc}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(mail.contains("Subject: [rekey] critical alert: decoy"), "{mail}");
    assert!(mail.contains(&decoy) && mail.contains(&format!("rekey alert escalate {id}")), "{mail}");
    for text in [&mail, body] {
        assert!(!text.contains(&secret) && !text.contains("real-secret"), "a secret in a notice");
    }

    // Shown, escalated once, then no longer open.
    let shown = ok(&s.rekey(&root, &["alert", "show", &id, "-o", "table"], None));
    assert!(shown.contains("decoy (critical)") && shown.contains(&decoy), "{shown}");
    let escalated = ok(&s.rekey(&root, &["alert", "escalate", &id, "-o", "table"], None));
    assert!(escalated.contains("next: rekey incident contain"), "{escalated}");
    let incidents = json(&s.rekey(&root, &["incident", "list"], None));
    assert_eq!(incidents[0]["title"], format!("alert {id}: decoy by {}", alert["principal"].as_str().unwrap()));
    let again = fails(&s.rekey(&root, &["alert", "ack", &id, "--note", "too late"], None));
    assert!(again.contains("escalated already"), "{again}");
    // Not an operator: refused.
    let auditor = json(&s.rekey(&root, &["token", "create", "--role", "auditor", "-o", "json"], None));
    let auditor = auditor["secret"].as_str().unwrap();
    assert!(fails(&s.rekey(auditor, &["alert", "list"], None)).contains("forbidden"));
}
