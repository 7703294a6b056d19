//! Outbound notifications of tenants: email through an SMTP relay (`relay`), and webhooks
//! signed with HMAC-SHA256 (`reqwest`), both under the egress policy.
//!
//! A webhook is a `POST` of a JSON body with `Content-Type: application/json` and
//! `Rekey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; any 2xx answer
//! is a delivery. Redirects are not followed. Nothing here retries: the caller keeps the attempt
//! count and the schedule, durably.

use std::sync::Arc;
use std::time::Duration;

use crate::egress::EgressPolicy;

mod relay;

pub use relay::MailRelay;

/// Why a notice was not delivered. Never holds the message body (it carries a reset link).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A setting is wrong (the relay URL, the webhook URL or secret).
    #[error("bad notification setting: {0}")]
    Config(String),
    /// The relay refused the message, or the connection failed.
    #[error("the mail relay refused or failed: {0}")]
    Mail(String),
    /// The webhook did not answer 2xx, or could not be reached.
    #[error("the webhook failed: {0}")]
    Webhook(String),
}

/// Where webhooks go, and the key that signs them. No `Debug`: it holds the signing secret.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Arc<zeroize::Zeroizing<Vec<u8>>>,
    client: reqwest::Client,
}

impl Webhook {
    /// The URL is held as a secret would be (it often carries a token): no error, log or audit
    /// event repeats it. It must pass the egress policy, here for its port and an address
    /// written in it, and at every delivery for the addresses its host resolves to.
    pub fn new(url: &str, secret: Vec<u8>, timeout: Duration, egress: Arc<EgressPolicy>) -> Result<Self, NotifyError> {
        let url: reqwest::Url =
            url.parse().map_err(|_| NotifyError::Config("the webhook URL does not parse".into()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(NotifyError::Config("the webhook URL must be http or https".into()));
        }
        egress.check_url(&url, false).map_err(|d| NotifyError::Config(format!("the webhook URL: {d}")))?;
        if secret.len() < 16 {
            return Err(NotifyError::Config("the webhook secret must be at least 16 bytes".into()));
        }
        let tls = crate::tls::public_config()
            .map_err(|_| NotifyError::Config("the TLS configuration could not be built".into()))?;
        let client = crate::http::client(&tls, timeout, timeout, Some(egress))
            .map_err(|e| NotifyError::Config(e.without_url().to_string()))?;
        Ok(Self { url, secret: Arc::new(zeroize::Zeroizing::new(secret)), client })
    }

    /// Posts a signed body; `Ok` on a 2xx answer.
    pub async fn post(&self, body: Vec<u8>, delivery: &str) -> Result<(), NotifyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let signature = rekey_crypto::link::webhook_signature(&self.secret, now, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("rekey-signature", signature)
            .header("rekey-delivery", delivery)
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::Webhook(crate::http::failure_text(e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Webhook(format!("answered {status}")))
        }
    }
}
