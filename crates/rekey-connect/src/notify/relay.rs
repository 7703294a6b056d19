//! The SMTP relay that carries notices to tenants, under the egress policy like every other
//! connection: the relay's name is resolved and each address checked, the connection opened to
//! that very address, and `lettre`'s connection layer speaks SMTP over it (no pooled transport,
//! which would resolve on its own); the relay's answers are capped as a target's are.
//!
//! The relay URL reads as `lettre`'s transport URL did: `smtp://host[:25]` plain,
//! `smtp://host[:587]?tls=required` STARTTLS or fail, `smtp://host[:587]?tls=opportunistic`
//! STARTTLS when offered, `smtps://host[:465]` implicit TLS; `user:password@` (percent-encoded)
//! for AUTH PLAIN or LOGIN, a path for the EHLO name. Certificates are checked against the
//! Web PKI roots.
//!
//! Must never: connect to an address the policy refuses; put the URL's password in an error.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use zeroize::Zeroizing;

use super::NotifyError;
use crate::egress::EgressPolicy;
use crate::error::{one_line, Failure};

#[derive(Clone, Copy, PartialEq, Eq)]
enum RelayTls {
    None,
    Opportunistic,
    Required,
    Implicit,
}

/// Where email goes: the relay, the sender address and the egress policy. No `Debug`: it holds
/// the relay's password.
#[derive(Clone)]
pub struct MailRelay {
    host: String,
    port: u16,
    tls: RelayTls,
    hello: ClientId,
    user: Option<String>,
    password: Arc<Zeroizing<String>>,
    from: Mailbox,
    timeout: Duration,
    egress: Arc<EgressPolicy>,
}

fn config(message: &str) -> NotifyError {
    NotifyError::Config(message.to_owned())
}

impl MailRelay {
    /// Reads the relay URL (see the module documentation). A relay written as an address the
    /// policy refuses, or on a port it refuses, is refused here; a name, at every delivery.
    pub fn new(url: &str, from: &str, timeout: Duration, egress: Arc<EgressPolicy>) -> Result<Self, NotifyError> {
        // The URL may hold the relay's password: say what is wrong without repeating it.
        let url: url::Url = url.parse().map_err(|_| config("the smtp relay URL does not parse"))?;
        let tls_query = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let (tls, default_port) = match (url.scheme(), tls_query.as_deref()) {
            ("smtp", None | Some("none")) => (RelayTls::None, 25),
            ("smtp", Some("required")) => (RelayTls::Required, 587),
            ("smtp", Some("opportunistic")) => (RelayTls::Opportunistic, 587),
            ("smtps", None) => (RelayTls::Implicit, 465),
            _ => return Err(config("the smtp relay URL must be smtp:// (tls=required|opportunistic) or smtps://")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(config("the smtp relay URL has no host")),
        };
        let port = url.port().unwrap_or(default_port);
        // `smtp` is not a scheme the URL standard knows, so an address in it reads as a name:
        // parse it here.
        let refused = |d: crate::egress::Denied| NotifyError::Config(format!("the smtp relay: {d}"));
        egress.check_port(port).map_err(refused)?;
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            egress.check_ip("", ip).map_err(refused)?;
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let user = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = Arc::new(Zeroizing::new(url.password().map(decode).unwrap_or_default()));
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let from = from.parse().map_err(|_| NotifyError::Config(format!("not an email address: {from}")))?;
        Ok(Self { host, port, tls, hello, user, password, from, timeout, egress })
    }

    /// Sends one plain-text message to every recipient, within the timeout (resolution,
    /// connection, TLS and the whole exchange).
    pub async fn send(&self, to: &[String], subject: &str, body: String) -> Result<(), NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        if to.is_empty() {
            return Err(config("the tenant has no email contact"));
        }
        for address in to {
            let mailbox: Mailbox =
                address.parse().map_err(|_| NotifyError::Config(format!("not an email address: {address}")))?;
            builder = builder.to(mailbox);
        }
        let message = builder.body(body).map_err(|e| NotifyError::Config(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.deliver(&message)).await {
            Ok(r) => r.map_err(|text| NotifyError::Mail(crate::mask::mask(&text, &[self.password.as_bytes()]))),
            Err(_) => Err(NotifyError::Mail(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn parameters(&self) -> Result<TlsParameters, String> {
        TlsParameters::new(self.host.clone()).map_err(|e| format!("TLS setup: {e}"))
    }

    /// One delivery; the error is the text to report (masked by the caller).
    async fn deliver(&self, message: &Message) -> Result<(), String> {
        let text = |f: Failure| match f {
            Failure::Target { detail, .. } => detail,
            Failure::Config(m) => m,
            Failure::Unsupported => "unsupported".into(),
        };
        let implicit = match self.tls {
            RelayTls::Implicit => Some(crate::tls::client_config(&rekey_types::Fields::default()).map_err(text)?),
            _ => None,
        };
        let smtp = |doing: &str, e: lettre::transport::smtp::Error| format!("{doing}: {}", one_line(&e.to_string()));
        let mut conn = crate::smtp::open(&self.host, self.port, &self.egress, self.timeout, &self.hello, implicit)
            .await
            .map_err(text)?;
        let starttls = match self.tls {
            RelayTls::Required if !conn.can_starttls() => return Err("the relay does not offer STARTTLS".into()),
            RelayTls::Required => true,
            RelayTls::Opportunistic => conn.can_starttls(),
            RelayTls::None | RelayTls::Implicit => false,
        };
        if starttls {
            conn.starttls(self.parameters()?, &self.hello).await.map_err(|e| smtp("STARTTLS", e))?;
        }
        if let Some(user) = &self.user {
            let credentials = Credentials::new(user.clone(), self.password.as_str().to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials).await.map_err(|e| smtp("AUTH", e))?;
        }
        let sent = conn.send(message.envelope(), &message.formatted()).await.map_err(|e| smtp("sending", e));
        match sent {
            Ok(_) => {
                let _ = conn.quit().await;
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(e)
            }
        }
    }
}
