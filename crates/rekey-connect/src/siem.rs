//! Where audit events go for a SIEM: a syslog receiver (RFC 5424 messages over TCP with TLS,
//! octet-counted as RFC 5425 frames them; `tokio-rustls`) and an HTTP collector (a `POST` of JSON
//! lines; `reqwest`). Each takes a batch of messages and says whether it was delivered; the
//! caller keeps the position and resends what was not (at least once).
//!
//! Syslog over TCP has no acknowledgement: [`SyslogSink::send`] means "written to an open
//! connection", and [`SyslogSink::still_open`] tells the caller, later, whether the receiver
//! has closed it since (then what was written since the last check may be lost, and is resent).
//! Both destinations come from the server's configuration (the operator approved them); the
//! events carry no secret.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A setting is wrong.
    #[error("bad SIEM setting: {0}")]
    Config(String),
    /// The destination could not be reached, or refused the batch.
    #[error("the SIEM destination failed: {0}")]
    Failed(String),
}

fn failure(f: crate::Failure) -> String {
    match f {
        crate::Failure::Target { detail, .. } | crate::Failure::Config(detail) => detail,
        crate::Failure::Unsupported => "unsupported".into(),
    }
}

/// A syslog receiver over TLS.
pub struct SyslogSink {
    host: String,
    port: u16,
    connector: TlsConnector,
    name: ServerName<'static>,
    timeout: Duration,
    conn: Mutex<Option<TlsStream<TcpStream>>>,
}

impl SyslogSink {
    /// The receiver at `host:port`, whose certificate is checked against `ca_pem` (else the
    /// Mozilla roots) and the host name.
    pub fn new(address: &str, ca_pem: Option<&str>, timeout: Duration) -> Result<Self, SinkError> {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']').to_owned(), p.parse().ok()?)))
            .ok_or_else(|| SinkError::Config("a syslog address is host:port".into()))?;
        let name = ServerName::try_from(host.clone()).map_err(|_| SinkError::Config("the syslog host name".into()))?;
        let config = crate::tls::config_with_ca(ca_pem).map_err(|e| SinkError::Config(failure(e)))?;
        Ok(Self { host, port, connector: TlsConnector::from(config), name, timeout, conn: Mutex::new(None) })
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, SinkError> {
        let failed = |what: &str, e: std::io::Error| {
            SinkError::Failed(format!("{what}: {}", crate::error::one_line(&e.to_string())))
        };
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| SinkError::Failed("connect: no answer in time".into()))?
            .map_err(|e| failed("connect", e))?;
        tcp.set_nodelay(true).ok();
        tokio::time::timeout(self.timeout, self.connector.connect(self.name.clone(), tcp))
            .await
            .map_err(|_| SinkError::Failed("TLS: no answer in time".into()))?
            .map_err(|e| failed("TLS", e))
    }

    /// Writes each message as one frame (`<length> <message>`) on the open connection (opened
    /// if there is none). On an error the connection is dropped.
    pub async fn send(&self, messages: &[String]) -> Result<(), SinkError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let mut buf = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            buf.extend_from_slice(format!("{} ", m.len()).as_bytes());
            buf.extend_from_slice(m.as_bytes());
        }
        let conn = guard.as_mut().expect("connected above");
        let written = tokio::time::timeout(self.timeout, async {
            conn.write_all(&buf).await?;
            conn.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *guard = None;
                Err(SinkError::Failed(format!("write: {}", crate::error::one_line(&e.to_string()))))
            }
            Err(_) => {
                *guard = None;
                Err(SinkError::Failed("write: no progress in time".into()))
            }
        }
    }

    /// Whether the connection is still open (the receiver has not closed it). A closed one is
    /// dropped; `false` also when there is none.
    pub async fn still_open(&self) -> bool {
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else { return false };
        let mut byte = [0u8; 64];
        // A receiver sends nothing: a read that completes at once is its close (or an error).
        match tokio::time::timeout(Duration::ZERO, conn.read(&mut byte)).await {
            Err(_) => true,
            Ok(_) => {
                *guard = None;
                false
            }
        }
    }
}

/// An HTTP collector: each batch is one `POST` of `application/x-ndjson`, one event per line;
/// any 2xx answer is a delivery.
pub struct HttpSink {
    url: reqwest::Url,
    client: reqwest::Client,
    authorization: Option<Arc<zeroize::Zeroizing<String>>>,
}

impl HttpSink {
    /// The collector at `url`; `authorization`, if given, is sent as the `Authorization` header
    /// (it is held as a secret: never logged).
    pub fn new(url: &str, authorization: Option<String>, timeout: Duration) -> Result<Self, SinkError> {
        let url: reqwest::Url =
            url.parse().map_err(|_| SinkError::Config("the collector URL does not parse".into()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(SinkError::Config("the collector URL must be http or https".into()));
        }
        let tls = crate::tls::public_config().map_err(|e| SinkError::Config(failure(e)))?;
        let client = crate::http::client(&tls, timeout, timeout, None)
            .map_err(|e| SinkError::Config(e.without_url().to_string()))?;
        Ok(Self { url, client, authorization: authorization.map(|a| Arc::new(zeroize::Zeroizing::new(a))) })
    }

    /// Posts the batch; `Ok` on a 2xx answer.
    pub async fn send(&self, lines: &[String]) -> Result<(), SinkError> {
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        let mut request = self.client.post(self.url.clone()).header("content-type", "application/x-ndjson").body(body);
        if let Some(a) = &self.authorization {
            request = request.header("authorization", a.as_str());
        }
        let response = request.send().await.map_err(|e| {
            SinkError::Failed(if e.is_timeout() {
                "no answer in time".into()
            } else {
                crate::error::one_line(&e.without_url().to_string())
            })
        })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(SinkError::Failed(format!("answered {s}"))),
        }
    }
}
