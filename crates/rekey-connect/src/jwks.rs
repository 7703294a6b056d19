//! An issuer's published keys, for workload and operator login: the key set itself (its URL
//! given, or found by OpenID discovery, `crate::oidc::discover`). Every request goes out under
//! the egress policy, like every other connection Rekey makes: the discovery URL is the
//! operator's (from the auth role), the key set URL it names is checked as discovered (`https`
//! unless the allow list names its host).

use rekey_crypto::jws::JwkSet;
use rekey_types::Fields;

use crate::error::one_line;
use crate::oauth::{capped_body, egress_url, http_client, http_failure};
use crate::{Failure, Limits};

/// Why an issuer's keys could not be had, in one line for the audit log and the refusal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeySetError(String);

impl KeySetError {
    pub(crate) fn new(why: impl Into<String>) -> Self {
        KeySetError(why.into())
    }
}

impl From<Failure> for KeySetError {
    fn from(f: Failure) -> Self {
        KeySetError(one_line(&match f {
            Failure::Target { detail, .. } => detail,
            Failure::Config(why) => why,
            Failure::Unsupported => "unsupported".into(),
        }))
    }
}

/// The key set at `url`; `discovered` when the URL came from discovery rather than the operator.
pub async fn fetch(url: &str, discovered: bool, limits: &Limits) -> Result<JwkSet, KeySetError> {
    let target = egress_url(limits, url, discovered, "the key set URL")?;
    let client = http_client(&Fields::default(), limits)?;
    let response = client.get(target).send().await.map_err(|e| http_failure(&e, "fetching the issuer's keys"))?;
    if !response.status().is_success() {
        return Err(KeySetError(format!("the key set at {url} answered {}", response.status())));
    }
    let body = capped_body(response, "fetching the issuer's keys").await?;
    serde_json::from_slice(&body).map_err(|_| KeySetError(format!("{url} is not a JSON Web Key Set")))
}
