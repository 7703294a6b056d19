//! An issuer's published keys, for workload login: OpenID discovery (`<issuer>/.well-known/
//! openid-configuration` names `jwks_uri`) and the key set itself. Every request goes out under
//! the egress policy, like every other connection Rekey makes: the discovery URL is the
//! operator's (from the auth role), the key set URL it names is checked as discovered (`https`
//! unless the allow list names its host).

use rekey_crypto::jws::JwkSet;
use rekey_types::Fields;
use serde::Deserialize;

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

/// The `jwks_uri` of the issuer whose OpenID configuration is at
/// `<discovery_url>/.well-known/openid-configuration`.
pub async fn discover(discovery_url: &str, limits: &Limits) -> Result<String, KeySetError> {
    #[derive(Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let base = discovery_url.trim_end_matches('/');
    let url = egress_url(limits, &format!("{base}/.well-known/openid-configuration"), false, "the discovery URL")?;
    let client = http_client(&Fields::default(), limits)?;
    let response = client.get(url.as_str()).send().await.map_err(|e| http_failure(&e, "discovery"))?;
    if !response.status().is_success() {
        return Err(KeySetError(format!("discovery at {url} answered {}", response.status())));
    }
    let body = capped_body(response, "discovery").await?;
    let d: Discovery =
        serde_json::from_slice(&body).map_err(|_| KeySetError(format!("discovery at {url} names no jwks_uri")))?;
    Ok(d.jwks_uri)
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
