//! SMTP submission login check with `lettre`'s connection layer: EHLO, STARTTLS (RFC 3207) or
//! implicit TLS (RFC 8314), AUTH PLAIN or LOGIN (RFC 4954), QUIT. No mail is sent.
//!
//! AUTH goes out only inside TLS unless the credential says `tls=none`; a server that does not
//! offer STARTTLS on a `starttls` credential fails the check as `tls-failed`.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rekey_types::fields::TlsMode;
use rekey_types::{Fields, Secret};

use crate::capped::CappedStream;
use crate::egress::EgressPolicy;
use crate::error::one_line;
use crate::{accepts_invalid_certs, secret_text, tls, Failure, Limits, Status};

/// The name Rekey gives in EHLO.
const HELLO: &str = "rekey.localhost";

pub(crate) async fn verify(fields: &Fields, secret: &Secret, limits: &Limits) -> Result<String, Failure> {
    let host = fields.get("host").ok_or_else(|| Failure::Config("the credential has no host".into()))?;
    let port: u16 =
        fields.get("port").and_then(|p| p.parse().ok()).ok_or_else(|| Failure::Config("bad port".into()))?;
    let user = fields.get("user").ok_or_else(|| Failure::Config("the credential has no user".into()))?;
    let mode: TlsMode = fields.get("tls").unwrap_or("starttls").parse().map_err(Failure::Config)?;
    let password = secret_text(secret)?;
    let hello = ClientId::Domain(HELLO.into());
    let implicit = (mode == TlsMode::Implicit).then(|| tls::client_config(fields)).transpose()?;
    let mut conn = open(host, port, &limits.egress, limits.connect, &hello, implicit).await?;
    if mode == TlsMode::StartTls {
        if !conn.can_starttls() {
            return Err(Failure::new(Status::TlsFailed, "the server does not offer STARTTLS"));
        }
        conn.starttls(parameters(host, fields)?, &hello).await.map_err(|e| failure(&e, "STARTTLS"))?;
    }
    let credentials = Credentials::new(user.to_owned(), password.to_owned());
    let reply = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials).await;
    let result = match reply {
        Ok(r) if r.is_positive() => Ok(format!("authenticated as {user}")),
        Ok(r) => Err(Failure::protocol(format!("AUTH answered {}", u16::from(r.code())))),
        Err(e) => Err(failure(&e, "AUTH")),
    };
    if result.is_ok() {
        let _ = conn.quit().await;
    } else {
        conn.abort().await;
    }
    result
}

/// Opens an SMTP connection (and reads the greeting, sends EHLO) on an address the egress policy
/// allows, within `connect`; with `implicit`, inside TLS from the first byte. What the server
/// sends is capped (`capped`).
pub(crate) async fn open(
    host: &str,
    port: u16,
    egress: &EgressPolicy,
    connect: Duration,
    hello: &ClientId,
    implicit: Option<Arc<rustls::ClientConfig>>,
) -> Result<AsyncSmtpConnection, Failure> {
    let stream = egress.connect(host, port, connect).await?;
    let peer = stream.peer_addr().ok();
    let stream: Box<dyn AsyncTokioStream> = match implicit {
        None => Box::new(CappedStream::new(stream, peer)),
        Some(config) => {
            let handshake = tokio_rustls::TlsConnector::from(config).connect(tls::server_name(host)?, stream);
            let tls = match tokio::time::timeout(connect, handshake).await {
                Ok(r) => r.map_err(|e| Failure::from_transport(&e, Status::TlsFailed, "TLS"))?,
                Err(_) => return Err(Failure::new(Status::Timeout, "TLS: no answer in time")),
            };
            Box::new(CappedStream::new(tls, peer))
        }
    };
    match tokio::time::timeout(connect, AsyncSmtpConnection::connect_with_transport(stream, hello)).await {
        Ok(r) => r.map_err(|e| failure(&e, "connecting")),
        Err(_) => Err(Failure::new(Status::Timeout, "connecting: no greeting in time")),
    }
}

fn parameters(host: &str, fields: &Fields) -> Result<TlsParameters, Failure> {
    let mut builder = TlsParameters::builder(host.to_owned());
    match fields.get("ca_pem") {
        Some(pem) => {
            builder = builder.certificate_store(CertificateStore::None);
            for der in tls::pinned(pem)? {
                let cert = Certificate::from_der(der.to_vec()).map_err(|e| Failure::Config(format!("ca_pem: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        None => builder = builder.certificate_store(CertificateStore::WebpkiRoots),
    }
    if accepts_invalid_certs(fields) {
        builder = builder.dangerous_accept_invalid_certs(true);
    }
    builder.build_rustls().map_err(|e| Failure::Config(format!("TLS setup: {e}")))
}

fn failure(err: &lettre::transport::smtp::Error, doing: &str) -> Failure {
    if let Some(code) = err.status() {
        let code = u16::from(code);
        let text = one_line(&err.to_string());
        return match code {
            535 | 534 | 530 => Failure::auth(format!("{doing} refused: {text}")),
            _ => Failure::protocol(format!("{doing}: {text}")),
        };
    }
    if err.is_timeout() {
        return Failure::new(Status::Timeout, format!("{doing}: no answer in time"));
    }
    let fallback = if err.is_tls() {
        Status::TlsFailed
    } else if doing == "connecting" {
        Status::Unreachable
    } else {
        Status::ProtocolError
    };
    Failure::from_transport(err, fallback, doing)
}
