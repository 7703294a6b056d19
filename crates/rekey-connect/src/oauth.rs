//! OAuth 2.0 client credentials (RFC 6749 §4.4) the way Azure AD / Entra ID takes them, over
//! `reqwest` and rustls.
//!
//! - A client secret goes in HTTP Basic (`client_secret_basic`, the default) or in the form
//!   (`client_secret_post`), as the credential's `secret_method` says.
//! - A certificate signs a `private_key_jwt` client assertion (RFC 7523): header `alg=RS256`,
//!   `x5t` = base64url of the certificate's SHA-1 thumbprint; claims `aud` = the token URL,
//!   `iss` = `sub` = the client id, a fresh `jti`, `nbf`/`iat` now and `exp` five minutes on.
//!
//! A check succeeds when a token is issued and, if it is a JWT, its RS256 signature checks against
//! the provider's published keys (`jwks_url`, or else found from the token URL: Azure's
//! `/oauth2/v2.0/token` → `/discovery/v2.0/keys`, any other provider through
//! `/.well-known/openid-configuration`). Key sets, and what a provider's configuration names, are
//! cached for ten minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use rekey_crypto::jwt::{JwtSigner, UnverifiedJwt};
use rekey_types::{Fields, Secret};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::capped::MAX_ANSWER_BYTES;
use crate::error::one_line;
use crate::{tls, Failure, Limits, Status};

/// How long a client assertion is valid.
const ASSERTION_LIFETIME: i64 = 300;
/// How long a provider's key set is reused.
const JWKS_TTL: Duration = Duration::from_secs(600);

pub(crate) async fn verify(fields: &Fields, secret: &Secret, limits: &Limits) -> Result<String, Failure> {
    let scope = fields.get("scope").ok_or_else(|| Failure::Config("the credential has no scope".into()))?;
    let token = access_token(fields, secret, scope, limits).await?;
    let checked = check_signature(fields, &token, limits).await?;
    Ok(checked)
}

/// Obtains an access token for `scope` with the credential's client secret or certificate.
pub(crate) async fn access_token(
    fields: &Fields,
    secret: &Secret,
    scope: &str,
    limits: &Limits,
) -> Result<Zeroizing<String>, Failure> {
    let token_url = fields.get("token_url").ok_or_else(|| Failure::Config("the credential has no token_url".into()))?;
    let client_id = fields.get("client_id").ok_or_else(|| Failure::Config("the credential has no client_id".into()))?;
    let client = http_client(fields, limits)?;
    let token_target = egress_url(limits, token_url, false, "token_url")?;
    let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into()), ("scope", scope.into())];
    let mut request = client.post(token_target);
    let secret_form: Zeroizing<String>;
    match CertificateSecret::split(secret) {
        Some(pair) => {
            let assertion = Zeroizing::new(client_assertion(&pair, client_id, token_url)?);
            form.push(("client_id", client_id.into()));
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
            secret_form = assertion;
        }
        None => {
            let text = crate::secret_text(secret)?;
            match fields.get("secret_method").unwrap_or("basic") {
                "post" => {
                    form.push(("client_id", client_id.into()));
                    secret_form = Zeroizing::new(text.to_owned());
                }
                _ => {
                    // RFC 6749 §2.3.1: both parts are form-encoded before Basic.
                    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                    let basic = Zeroizing::new(format!("{}:{}", enc(client_id), enc(text)));
                    let header = Zeroizing::new(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(basic.as_bytes())
                    ));
                    request = request.header(reqwest::header::AUTHORIZATION, header.as_str());
                    secret_form = Zeroizing::new(String::new());
                }
            }
        }
    }
    let body = {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &form {
            body.append_pair(k, v);
        }
        if !secret_form.is_empty() {
            let name = if CertificateSecret::split(secret).is_some() { "client_assertion" } else { "client_secret" };
            body.append_pair(name, &secret_form);
        }
        Zeroizing::new(body.finish())
    };
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| http_failure(&e, "token request"))?;
    let status = response.status();
    let bytes = capped_body(response, "token response").await?;
    if status.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| Failure::protocol(format!("the token endpoint answered {status} without a token")))?;
        return Ok(Zeroizing::new(parsed.access_token));
    }
    let error: ErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = format!(
        "{} {}{}",
        status.as_u16(),
        error.error.as_deref().unwrap_or("no OAuth error code"),
        error.error_description.as_deref().map(|d| format!(": {}", one_line(d))).unwrap_or_default()
    );
    match (status.as_u16(), error.error.as_deref()) {
        (_, Some("invalid_client" | "unauthorized_client")) | (401, _) => {
            Err(Failure::auth(format!("the provider refused the client: {text}")))
        }
        _ => Err(Failure::protocol(format!("the token endpoint refused: {text}"))),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

/// An `entra-app` secret that is a certificate: the private key PEM followed by the certificate
/// PEM, as Rekey stores them.
pub struct CertificateSecret<'a> {
    /// The private key, PEM.
    pub key_pem: &'a [u8],
    /// The certificate, PEM.
    pub cert_pem: &'a str,
}

impl<'a> CertificateSecret<'a> {
    /// `None` when the secret is not a key and certificate (a client secret, then).
    pub fn split(secret: &'a Secret) -> Option<Self> {
        let bytes = secret.expose();
        let text = std::str::from_utf8(bytes).ok()?;
        if !text.starts_with("-----BEGIN") || !text.contains("PRIVATE KEY-----") {
            return None;
        }
        let at = text.find("-----BEGIN CERTIFICATE-----")?;
        Some(Self { key_pem: &bytes[..at], cert_pem: &text[at..] })
    }

    pub(crate) fn info(&self) -> Result<rekey_crypto::cert::CertInfo, Failure> {
        rekey_crypto::cert::inspect(self.cert_pem).map_err(|e| Failure::Config(e.to_string()))
    }

    pub(crate) fn signer(&self) -> Result<JwtSigner, Failure> {
        JwtSigner::from_pem(self.key_pem).map_err(|e| Failure::Config(e.to_string()))
    }
}

fn client_assertion(pair: &CertificateSecret<'_>, client_id: &str, token_url: &str) -> Result<String, Failure> {
    let info = pair.info()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut header = serde_json::Map::new();
    header.insert("x5t".into(), info.x5t().into());
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::now_v7().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    pair.signer()?.sign(header, &claims).map_err(|e| Failure::Config(e.to_string()))
}

/// A reqwest client for the credential's trust settings and the limits, reused between checks.
/// It resolves names through the egress policy (no proxy: the address checked is the address
/// connected); URLs are checked with [`egress_url`] before each request.
pub(crate) fn http_client(fields: &Fields, limits: &Limits) -> Result<reqwest::Client, Failure> {
    // The policy by identity: the client holds it, so its address is not reused while cached.
    type Key = (Option<String>, bool, Duration, Duration, usize);
    static CLIENTS: OnceLock<Mutex<HashMap<Key, reqwest::Client>>> = OnceLock::new();
    let key: Key = (
        fields.get("ca_pem").map(str::to_owned),
        crate::accepts_invalid_certs(fields),
        limits.connect,
        limits.overall,
        Arc::as_ptr(&limits.egress) as usize,
    );
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().expect("http clients").get(&key) {
        return Ok(c.clone());
    }
    let config = tls::client_config(fields)?;
    let client = crate::http::client(&config, limits.connect, limits.overall, Some(limits.egress.clone()))
        .map_err(|e| Failure::Config(format!("HTTP client: {e}")))?;
    let mut clients = clients.lock().expect("http clients");
    if clients.len() > 1024 {
        clients.clear();
    }
    clients.insert(key, client.clone());
    Ok(client)
}

/// `url` parsed and checked against the egress policy before a request; `discovered` for a
/// URL found at run time rather than configured (it must then be `https` unless allowed by
/// name). Host names are checked again on the addresses they resolve to.
pub(crate) fn egress_url(limits: &Limits, url: &str, discovered: bool, what: &str) -> Result<url::Url, Failure> {
    let parsed = url::Url::parse(url).map_err(|e| Failure::Config(format!("{what}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure::Config(format!("{what}: only http and https URLs are used")));
    }
    limits.egress.check_url(&parsed, discovered)?;
    Ok(parsed)
}

/// Reads an answer's body (token endpoint, discovery, key set, Graph) up to the cap on what a
/// target may send ([`MAX_ANSWER_BYTES`]); a longer one is a protocol error, said so.
pub(crate) async fn capped_body(mut response: reqwest::Response, doing: &str) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(Failure::protocol(format!("{doing}: the answer is larger than {} KiB", MAX_ANSWER_BYTES >> 10)));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_failure(&e, doing))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Failure::protocol(format!(
                "{doing}: the answer is larger than {} KiB; cut there",
                MAX_ANSWER_BYTES >> 10
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn http_failure(err: &reqwest::Error, doing: &str) -> Failure {
    if err.is_timeout() {
        return Failure::new(Status::Timeout, format!("{doing}: no answer in time"));
    }
    let fallback = if err.is_connect() { Status::Unreachable } else { Status::ProtocolError };
    Failure::from_transport(err, fallback, doing)
}

/// Checks the access token's signature against the provider's keys.
async fn check_signature(fields: &Fields, token: &str, limits: &Limits) -> Result<String, Failure> {
    let Some(jwt) = UnverifiedJwt::parse(token) else {
        return Ok("token issued (opaque: no signature to check)".into());
    };
    let (jwks_url, discovered) = jwks_url(fields, limits).await?;
    let kid = jwt.header.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
    for refresh in [false, true] {
        let keys = key_set(fields, &jwks_url, discovered, refresh, limits).await?;
        let candidates: Vec<&Jwk> = keys.iter().filter(|k| k.kty == "RSA" && (kid.is_none() || k.kid == kid)).collect();
        if candidates.iter().any(|k| jwt.verify_rs256(&k.n, &k.e)) {
            if let Some(exp) = jwt.claims.get("exp").and_then(|e| e.as_i64()) {
                if exp < time::OffsetDateTime::now_utc().unix_timestamp() {
                    return Err(Failure::protocol("the provider issued an already expired token"));
                }
            }
            return Ok("token issued; signature checked against the provider's keys".into());
        }
        if !candidates.is_empty() {
            break;
        }
    }
    Err(Failure::protocol("a token was issued, but its signature does not check against the provider's published keys"))
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// The key set's URL, and whether it was discovered (from the provider's OpenID configuration)
/// rather than configured or derived from the token URL.
async fn jwks_url(fields: &Fields, limits: &Limits) -> Result<(String, bool), Failure> {
    if let Some(url) = fields.get("jwks_url") {
        return Ok((url.to_owned(), false));
    }
    let token_url = fields.get("token_url").unwrap_or_default();
    if let Some(base) = token_url.strip_suffix("/oauth2/v2.0/token") {
        return Ok((format!("{base}/discovery/v2.0/keys"), false));
    }
    let mut url = url::Url::parse(token_url).map_err(|e| Failure::Config(format!("token_url: {e}")))?;
    url.set_path("/.well-known/openid-configuration");
    url.set_query(None);
    // What a provider's configuration names is cached as long as its key sets are, by the
    // configuration's URL: a verify does not ask for it again each time.
    type Discovered = Mutex<HashMap<String, (Instant, String)>>;
    static DISCOVERED: OnceLock<Discovered> = OnceLock::new();
    let discovered = DISCOVERED.get_or_init(Default::default);
    if let Some((at, jwks_uri)) = discovered.lock().expect("discovery").get(url.as_str()) {
        if at.elapsed() < JWKS_TTL {
            return Ok((jwks_uri.clone(), true));
        }
    }
    #[derive(Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let client = http_client(fields, limits)?;
    limits.egress.check_url(&url, false)?;
    let response = client.get(url.as_str()).send().await.map_err(|e| http_failure(&e, "discovery"))?;
    if !response.status().is_success() {
        return Err(Failure::protocol(format!("discovery at {url} answered {}", response.status())));
    }
    let body = capped_body(response, "discovery").await?;
    let discovery: Discovery =
        serde_json::from_slice(&body).map_err(|_| Failure::protocol(format!("discovery at {url} has no jwks_uri")))?;
    let mut cache = discovered.lock().expect("discovery");
    if cache.len() > 1024 {
        cache.clear();
    }
    cache.insert(url.to_string(), (Instant::now(), discovery.jwks_uri.clone()));
    Ok((discovery.jwks_uri, true))
}

async fn key_set(
    fields: &Fields,
    url: &str,
    discovered: bool,
    refresh: bool,
    limits: &Limits,
) -> Result<Vec<Jwk>, Failure> {
    type Sets = Mutex<HashMap<String, (Instant, Vec<Jwk>)>>;
    static SETS: OnceLock<Sets> = OnceLock::new();
    let sets = SETS.get_or_init(Default::default);
    if !refresh {
        if let Some((at, keys)) = sets.lock().expect("jwks").get(url) {
            if at.elapsed() < JWKS_TTL {
                return Ok(keys.clone());
            }
        }
    }
    let client = http_client(fields, limits)?;
    let target = egress_url(limits, url, discovered, "the provider's key set URL")?;
    let response = client.get(target).send().await.map_err(|e| http_failure(&e, "fetching the provider's keys"))?;
    if !response.status().is_success() {
        return Err(Failure::protocol(format!("the provider's key set at {url} answered {}", response.status())));
    }
    let body = capped_body(response, "fetching the provider's keys").await?;
    let set: JwkSet =
        serde_json::from_slice(&body).map_err(|_| Failure::protocol(format!("{url} is not a JSON Web Key Set")))?;
    let mut sets = sets.lock().expect("jwks");
    if sets.len() > 1024 {
        sets.clear();
    }
    sets.insert(url.to_owned(), (Instant::now(), set.keys.clone()));
    Ok(set.keys)
}
