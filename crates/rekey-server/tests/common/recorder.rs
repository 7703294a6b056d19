#![allow(dead_code)]
//! Listeners that record every byte they receive, speaking just enough of a protocol for a
//! client to send its secret (a POP3 or SMTP login, an LDAP simple bind, an HTTP form post),
//! and a check that a recording holds a secret in any encoding a protocol would give it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Speaks {
    /// Reads what arrives (an LDAP bind request, in clear with `tls=none`), answers nothing.
    Ldap,
    /// `+OK` to everything: any login succeeds.
    Pop3,
    /// Offers AUTH PLAIN and LOGIN, refuses the credentials.
    Smtp,
    /// Answers every request `400 {"error":"invalid_client"}`.
    Http,
}

/// A listener on 127.0.0.1 and everything it received.
pub(crate) struct Recorder {
    pub port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Recorder {
    pub(crate) async fn start(speaks: Speaks) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (b, n) = (bytes.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *n.lock().unwrap() += 1;
                let b = b.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), serve(speaks, stream, b)).await;
                });
            }
        });
        Self { port, bytes, connections }
    }

    pub(crate) fn received(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    pub(crate) fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Whether anything it received holds `secret`.
    pub(crate) fn saw(&self, secret: &str) -> bool {
        holds(&self.received(), secret)
    }
}

async fn serve(speaks: Speaks, stream: TcpStream, log: Arc<Mutex<Vec<u8>>>) -> std::io::Result<()> {
    let record = |data: &[u8]| log.lock().unwrap().extend_from_slice(data);
    match speaks {
        Speaks::Ldap => {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            // A bind request comes at once; then the client gives up on a closed connection.
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                record(&buf[..n]);
            }
            Ok(())
        }
        Speaks::Http => {
            let mut stream = stream;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = find(&got, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            record(&got);
            let body = br#"{"error":"invalid_client","error_description":"recorded"}"#;
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            stream.shutdown().await
        }
        Speaks::Pop3 | Speaks::Smtp => {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let greeting: &[u8] = if speaks == Speaks::Pop3 { b"+OK ready\r\n" } else { b"220 recorder ESMTP\r\n" };
            write.write_all(greeting).await?;
            let mut login_steps = 0;
            loop {
                let mut line = Vec::new();
                if lines.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                record(&line);
                let upper = String::from_utf8_lossy(&line).to_ascii_uppercase();
                let answer: &[u8] = match speaks {
                    Speaks::Pop3 if upper.starts_with("QUIT") => {
                        write.write_all(b"+OK bye\r\n").await?;
                        return Ok(());
                    }
                    Speaks::Pop3 => b"+OK\r\n",
                    _ if upper.starts_with("EHLO") || upper.starts_with("HELO") => {
                        b"250-recorder\r\n250-AUTH PLAIN LOGIN\r\n250 OK\r\n"
                    }
                    _ if upper.starts_with("AUTH LOGIN") => {
                        login_steps = 2;
                        b"334 VXNlcm5hbWU6\r\n"
                    }
                    _ if upper.starts_with("AUTH PLAIN") && upper.trim_end().len() <= "AUTH PLAIN".len() => {
                        login_steps = 1;
                        b"334 \r\n"
                    }
                    _ if login_steps == 2 => {
                        login_steps = 1;
                        b"334 UGFzc3dvcmQ6\r\n"
                    }
                    _ if upper.starts_with("QUIT") => {
                        write.write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    }
                    _ => {
                        login_steps = 0;
                        b"535 5.7.8 recorded\r\n"
                    }
                };
                write.write_all(answer).await?;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `data` holds `secret`: as is, percent-decoded (a form post), or inside any base64
/// token (SMTP AUTH, HTTP Basic), standard or URL-safe.
pub(crate) fn holds(data: &[u8], secret: &str) -> bool {
    let s = secret.as_bytes();
    if find(data, s).is_some() {
        return true;
    }
    let text = String::from_utf8_lossy(data);
    let decoded: String = url::form_urlencoded::parse(text.replace(['\r', '\n'], "&").as_bytes())
        .flat_map(|(k, v)| [k.into_owned(), v.into_owned()])
        .collect::<Vec<_>>()
        .join(" ");
    if decoded.contains(secret) {
        return true;
    }
    let engines = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE];
    text.split(|c: char| c.is_whitespace() || matches!(c, '&' | '=' | ':' | '"' | ',' | '.'))
        .filter(|t| t.len() >= 4)
        .any(|token| {
            engines.iter().any(|e| {
                let trimmed = token.trim_end_matches('=');
                [token, trimmed].iter().any(|t| {
                    e.decode(t).ok().is_some_and(|d| find(&d, s).is_some())
                        || base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(t)
                            .ok()
                            .is_some_and(|d| find(&d, s).is_some())
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_secret_in_each_encoding() {
        let secret = "REAL-1234-secret";
        assert!(holds(b"PASS REAL-1234-secret\r\n", secret));
        assert!(holds(b"client_secret=REAL-1234-secret&x=1", secret));
        let plain = base64::engine::general_purpose::STANDARD.encode(b"\0user\0REAL-1234-secret");
        assert!(holds(format!("AUTH PLAIN {plain}\r\n").as_bytes(), secret));
        let basic = base64::engine::general_purpose::STANDARD.encode(b"client:REAL-1234-secret");
        assert!(holds(format!("Authorization: Basic {basic}\r\n").as_bytes(), secret));
        assert!(!holds(b"PASS junk\r\n", secret));
    }
}
