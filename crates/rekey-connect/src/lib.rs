//! Connectors: each credential kind's real protocol, used to verify that a stored secret still
//! opens its target and, where the protocol allows, to change it there.
//!
//! | kind | verify | rotate |
//! |---|---|---|
//! | `ldap` | simple bind (StartTLS or LDAPS), then who-am-I (`ldap3`) | password modify, RFC 3062 (`ldap3`) |
//! | `pop3` | USER/PASS after STLS or on implicit TLS (hand-written: [`pop3`]) | the customer's |
//! | `smtp` | EHLO, STARTTLS or implicit TLS, AUTH PLAIN/LOGIN, QUIT (`lettre`) | the customer's |
//! | `entra-app` | OAuth 2.0 client credentials, secret or `private_key_jwt` (`reqwest`) | new certificate through Microsoft Graph `addKey`/`removeKey` ([`graph`]) |
//!
//! Every connection uses rustls, trusts the credential's pinned CA (`ca_pem`) or else the Mozilla
//! root set (`webpki-roots`), and has a connect timeout and an overall timeout. The result of a
//! check is an [`Outcome`]: a [`Status`], a short detail and the time taken. No secret ever
//! appears in an outcome, an error or a log line of this crate.
//!
//! This crate does no I/O besides the target's protocol: the caller (rekey-core) decrypts the
//! secret, decides who may ask, and records what happened.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekey_types::{CredentialKind, Fields, Secret};
use serde::{Deserialize, Serialize};

mod capped;
pub mod egress;
mod error;
pub mod graph;
mod http;
pub mod jwks;
pub mod ldap;
mod mask;
pub mod notify;
pub mod oauth;
pub mod oidc;
pub mod pop3;
pub mod siem;
pub mod smtp;
pub mod taxii;
mod tls;
pub mod witness;

pub use egress::{Denied, EgressPolicy, PolicyError};

/// Installs aws-lc-rs as the process's rustls provider: the one every TLS connection Rekey makes
/// or accepts uses (the connectors build their configurations with it explicitly). Harmless if
/// a provider is installed already. A client built without a configuration of its own (the
/// CLI's) needs it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
pub use error::ConnectError;
pub(crate) use error::Failure;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The target accepted the secret.
    Ok,
    /// The target answered and refused the secret.
    AuthFailed,
    /// No connection: refused, no route, or the name does not resolve.
    Unreachable,
    /// The TLS handshake failed: the detail says why (expired, name mismatch, unknown CA…).
    TlsFailed,
    /// The target answered something the protocol does not allow.
    ProtocolError,
    /// The connect or the whole exchange took longer than its limit.
    Timeout,
    /// The egress policy refused the destination: nothing was sent (the detail names the rule).
    EgressDenied,
}

impl Status {
    /// Every status, in the order `/metrics` lists them.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::AuthFailed,
        Status::Unreachable,
        Status::TlsFailed,
        Status::ProtocolError,
        Status::Timeout,
        Status::EgressDenied,
    ];

    /// The status as the API, the audit log and `/metrics` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::AuthFailed => "auth-failed",
            Status::Unreachable => "unreachable",
            Status::TlsFailed => "tls-failed",
            Status::ProtocolError => "protocol-error",
            Status::Timeout => "timeout",
            Status::EgressDenied => "egress-denied",
        }
    }

    /// The status named `s`, if any.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check against a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How the check ended.
    pub status: Status,
    /// One line for a human: what was confirmed, or what went wrong. Never a secret.
    pub detail: String,
    /// How long the check took.
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the target accepted the secret.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Limits of every connection, and where connections may go.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Opening the TCP connection.
    pub connect: Duration,
    /// The whole exchange, connect and TLS included.
    pub overall: Duration,
    /// The destinations allowed (see [`egress`]).
    pub egress: Arc<EgressPolicy>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            overall: Duration::from_secs(20),
            egress: Arc::new(EgressPolicy::deny_internal()),
        }
    }
}

/// Where a credential connects: `host:port`, the unit the per-host concurrency limit counts.
pub fn target_host(kind: CredentialKind, fields: &Fields) -> Option<String> {
    match kind {
        CredentialKind::Ldap => {
            let url = url::Url::parse(fields.get("url")?).ok()?;
            let port = url.port().unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
            Some(format!("{}:{port}", url.host_str()?))
        }
        CredentialKind::Pop3 | CredentialKind::Smtp => Some(format!("{}:{}", fields.get("host")?, fields.get("port")?)),
        CredentialKind::EntraApp => {
            let url = url::Url::parse(fields.get("token_url")?).ok()?;
            Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
        }
        CredentialKind::Generic => None,
    }
}

/// Checks that `secret` opens the credential's target.
///
/// Returns `Err` only when no check can be made at all (a `generic` credential, a secret that is
/// not text where the protocol needs text); every answer of the target, and its silence, is an
/// [`Outcome`].
pub async fn verify(
    kind: CredentialKind,
    fields: &Fields,
    secret: &Secret,
    limits: &Limits,
) -> Result<Outcome, ConnectError> {
    let started = Instant::now();
    let attempt = async {
        match kind {
            CredentialKind::Ldap => ldap::verify(fields, secret, limits).await,
            CredentialKind::Pop3 => pop3::verify(fields, secret, limits).await,
            CredentialKind::Smtp => smtp::verify(fields, secret, limits).await,
            CredentialKind::EntraApp => oauth::verify(fields, secret, limits).await,
            CredentialKind::Generic => Err(Failure::Unsupported),
        }
    };
    let result = match tokio::time::timeout(limits.overall, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(Status::Timeout, format!("no complete answer within {:?}", limits.overall))),
    };
    conclude(result, started, &[secret])
}

/// Turns a protocol's result into an outcome with the time taken, every secret `sent` in the
/// exchange masked out of its text (see [`mask`]).
pub(crate) fn conclude(
    result: Result<String, Failure>,
    started: Instant,
    sent: &[&Secret],
) -> Result<Outcome, ConnectError> {
    let elapsed = started.elapsed();
    let sent: Vec<&[u8]> = sent.iter().map(|s| s.expose()).collect();
    let clean = |text: String| mask::mask(&text, &sent);
    match result {
        Ok(detail) => Ok(Outcome { status: Status::Ok, detail: clean(detail), elapsed }),
        Err(Failure::Unsupported) => Err(ConnectError::Unsupported),
        Err(Failure::Config(why)) => Err(ConnectError::Config(clean(why))),
        Err(Failure::Target { status, detail }) => Ok(Outcome { status, detail: clean(detail), elapsed }),
    }
}

/// The secret as text, for protocols that carry a password as text.
pub(crate) fn secret_text(secret: &Secret) -> Result<&str, Failure> {
    let text = std::str::from_utf8(secret.expose())
        .map_err(|_| Failure::Config("the secret is not UTF-8 text, which this protocol needs".into()))?;
    if text.is_empty() {
        return Err(Failure::Config("the secret is empty".into()));
    }
    if text.contains(['\r', '\n', '\0']) {
        return Err(Failure::Config(
            "the secret contains a line break or NUL, which this protocol cannot carry".into(),
        ));
    }
    Ok(text)
}

/// Whether the credential opts out of certificate checks (`danger_accept_invalid_certs=true`).
pub fn accepts_invalid_certs(fields: &Fields) -> bool {
    fields.get("danger_accept_invalid_certs") == Some("true")
}
