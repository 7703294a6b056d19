//! An OpenID provider: its metadata from discovery (where its keys are, for workload and
//! operator login; where to sign in and exchange a code, for operator login), and the exchange
//! of a code for an ID token (authorization code with PKCE). Every request goes out under the egress
//! policy; the endpoints discovery names are checked as discovered (`https` unless the allow
//! list names their host).

use rekey_types::Fields;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::jwks::KeySetError;
use crate::oauth::{capped_body, egress_url, http_client, http_failure};
use crate::Limits;

/// What discovery says of a provider. An issuer of workload tokens (a Kubernetes cluster) may
/// name its keys and nothing to sign in at.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    /// Where the browser goes.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where a code becomes tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Its key set.
    pub jwks_uri: String,
}

/// The metadata of the provider whose configuration is at
/// `<issuer>/.well-known/openid-configuration`.
pub async fn discover(issuer: &str, limits: &Limits) -> Result<ProviderMetadata, KeySetError> {
    let base = issuer.trim_end_matches('/');
    let url = egress_url(limits, &format!("{base}/.well-known/openid-configuration"), false, "the discovery URL")?;
    let client = http_client(&Fields::default(), limits)?;
    let response = client.get(url.as_str()).send().await.map_err(|e| http_failure(&e, "discovery"))?;
    if !response.status().is_success() {
        return Err(KeySetError::new(format!("discovery at {url} answered {}", response.status())));
    }
    let body = capped_body(response, "discovery").await?;
    serde_json::from_slice(&body).map_err(|_| KeySetError::new(format!("discovery at {url} names no jwks_uri")))
}

/// A code for tokens at `token_endpoint` (discovered), with the PKCE verifier; a public
/// client sends its id, a confidential one authenticates with its secret (HTTP Basic). The ID
/// token, zeroized on drop.
pub async fn exchange_code(
    token_endpoint: &str,
    client_id: &str,
    client_secret: Option<&str>,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    limits: &Limits,
) -> Result<Zeroizing<String>, KeySetError> {
    #[derive(Deserialize)]
    struct Tokens {
        id_token: Option<String>,
    }
    let url = egress_url(limits, token_endpoint, true, "the token endpoint")?;
    let client = http_client(&Fields::default(), limits)?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ];
    let request = client.post(url.as_str()).form(&form);
    let request = match client_secret {
        Some(secret) => request.basic_auth(client_id, Some(secret)),
        None => request,
    };
    let response = request.send().await.map_err(|e| http_failure(&e, "the code exchange"))?;
    let status = response.status();
    let body = Zeroizing::new(capped_body(response, "the code exchange").await?);
    if !status.is_success() {
        #[derive(Deserialize)]
        struct Error {
            error: String,
        }
        let why = serde_json::from_slice::<Error>(&body).map(|e| e.error).unwrap_or_else(|_| status.to_string());
        return Err(KeySetError::new(format!("the provider refused the code: {}", crate::error::one_line(&why))));
    }
    let tokens: Tokens =
        serde_json::from_slice(&body).map_err(|_| KeySetError::new("the provider's token answer is not JSON"))?;
    tokens.id_token.map(Zeroizing::new).ok_or_else(|| KeySetError::new("the provider's answer holds no ID token"))
}
