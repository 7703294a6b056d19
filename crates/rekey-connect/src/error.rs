//! Errors: [`ConnectError`] for the caller, [`Failure`] inside the protocols, and the one place
//! that reads a transport error chain (I/O, rustls) into a [`Status`] and a detail.

use std::error::Error as StdError;
use std::io;

use crate::Status;

/// No check could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The kind has no target (`generic`).
    #[error("this kind of credential has no target to connect to")]
    Unsupported,
    /// The credential's fields do not make a target (a URL that does not parse, a bad CA).
    #[error("{0}")]
    Config(String),
    /// The server cannot rotate this kind: the tenant's administrator resets it.
    #[error("rotation is driven by the customer for this kind: {0}")]
    CustomerDriven(&'static str),
}

/// How a protocol exchange ended short of success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The target (or the way to it) gave this answer.
    Target { status: Status, detail: String },
    /// The credential's fields or secret do not allow a check.
    Config(String),
    /// The kind has no protocol.
    Unsupported,
}

impl Failure {
    pub(crate) fn new(status: Status, detail: impl Into<String>) -> Self {
        Failure::Target { status, detail: detail.into() }
    }

    pub(crate) fn auth(detail: impl Into<String>) -> Self {
        Failure::new(Status::AuthFailed, detail)
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        Failure::new(Status::ProtocolError, detail)
    }

    /// Reads a transport error (and everything it wraps) into a failure: a TLS verdict, a refused
    /// or timed-out connection, or else `fallback` with the error's own text.
    pub(crate) fn from_transport(err: &(dyn StdError + 'static), fallback: Status, doing: &str) -> Self {
        if let Some(f) = classify(err) {
            return f;
        }
        Failure::new(fallback, format!("{doing}: {}", one_line(&err.to_string())))
    }
}

fn classify(err: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(denied) = e.downcast_ref::<crate::egress::Denied>() {
            return Some(denied.clone().into());
        }
        if let Some(cut) = e.downcast_ref::<crate::capped::AnswerTooLarge>() {
            return Some((*cut).into());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(Failure::new(Status::TlsFailed, tls_reason(tls)));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // io::Error::source() skips the error it wraps: look at it directly.
            if let Some(inner) = io.get_ref() {
                if let Some(f) = classify(inner) {
                    return Some(f);
                }
            }
            match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    return Some(Failure::new(Status::Unreachable, "connection refused"));
                }
                io::ErrorKind::TimedOut => return Some(Failure::new(Status::Timeout, "the connection timed out")),
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    return Some(Failure::new(Status::Unreachable, "no route to the host"));
                }
                _ => {}
            }
        }
        current = e.source();
    }
    None
}

/// The reason a TLS handshake failed, as a responder would want to read it.
pub(crate) fn tls_reason(err: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "name mismatch: the certificate is not valid for this host".into()
            }
            C::UnknownIssuer => "unknown CA: the certificate does not chain to a trusted root".into(),
            C::Revoked => "certificate revoked".into(),
            C::BadSignature | C::BadEncoding => "the certificate is malformed or badly signed".into(),
            other => format!("invalid certificate: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("the server refused the handshake ({alert:?})"),
        rustls::Error::NoCertificatesPresented => "the server presented no certificate".into(),
        other => format!("TLS handshake failed: {}", one_line(&other.to_string())),
    }
}

/// Collapses an error text to one short line.
pub(crate) fn one_line(text: &str) -> String {
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}
