//! Microsoft Graph v1.0: rolling an application's certificate with `addKey` and `removeKey`.
//!
//! The application rolls its own keys, which Graph allows without any directory permission: the
//! call carries an access token the application obtained for `https://graph.microsoft.com/.default`
//! with its current certificate, and a proof of possession, a JWT signed by one of the
//! application's current certificates (`aud` = Microsoft Graph's app id, `iss` = the application's
//! object id, a lifetime of ten minutes). Both steps are idempotent: a certificate already
//! registered is not added twice, and one already gone is not removed twice, so a rotation that
//! was interrupted can simply run them again.
//!
//! Client secrets are rolled with `addPassword` and `removePassword`, which take no proof but need
//! the application to hold `Application.ReadWrite.OwnedBy` and own itself. Graph generates the new
//! secret and returns its text once; the caller names it (`displayName`) so that one created by
//! an attempt that crashed before storing it can be found and removed.
//!
//! The credential names its application object with `app_object_id`, and may point `graph_url`
//! somewhere else than `https://graph.microsoft.com` (the tests point it at a local stand-in that
//! follows Graph's documented shapes, because Graph itself cannot be reached from a test machine).

use std::time::Instant;

use base64::Engine;
use rekey_types::{Fields, Secret};
use serde::Deserialize;

use crate::error::one_line;
use crate::oauth::{access_token, capped_body, egress_url, http_client, http_failure, CertificateSecret};
use crate::{conclude, ConnectError, Failure, Limits, Outcome, Status};

/// The scope of an application token for Microsoft Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The application id of Microsoft Graph: the audience of a proof of possession.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// Graph refuses proofs that live longer than ten minutes.
const PROOF_LIFETIME: i64 = 600;

/// A key credential of an application, as Graph lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    /// Graph's id of the key credential.
    pub key_id: String,
    /// The SHA-1 thumbprint in hex, for certificates.
    #[serde(default)]
    pub custom_key_identifier: Option<String>,
    /// The name it was registered under.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A client secret of an application, as Graph lists it (never with its text).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    /// Graph's id of the client secret.
    pub key_id: String,
    /// The name it was registered under.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The first three characters of the secret.
    #[serde(default)]
    pub hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    #[serde(default)]
    password_credentials: Vec<PasswordCredential>,
}

/// A client secret Graph generated: its key id and its text (shown by Graph only once).
pub struct NewPassword {
    /// Graph's id of the new client secret.
    pub key_id: String,
    /// Its text.
    pub secret: Secret,
}

/// The application's client secrets, read with a token obtained with `current`.
pub async fn password_credentials(
    fields: &Fields,
    current: &Secret,
    limits: &Limits,
) -> Result<(Outcome, Vec<PasswordCredential>), ConnectError> {
    let started = Instant::now();
    let mut list = Vec::new();
    let result = within(limits, async {
        let app = App::new(fields, limits, current).await?;
        list = app.application().await?.password_credentials;
        Ok(format!("{} client secrets", list.len()))
    })
    .await;
    Ok((conclude(result, started, &[current])?, list))
}

/// Asks Graph for a new client secret named `display_name` (`addPassword`), authenticating with
/// `current`. Graph generates the secret and shows it only in this answer.
pub async fn add_password(
    fields: &Fields,
    current: &Secret,
    display_name: &str,
    limits: &Limits,
) -> Result<(Outcome, Option<NewPassword>), ConnectError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Added {
        key_id: String,
        secret_text: Option<String>,
    }
    let started = Instant::now();
    let mut created = None;
    let result = within(limits, async {
        let app = App::new(fields, limits, current).await?;
        let body = serde_json::json!({ "passwordCredential": { "displayName": display_name } });
        let answer = zeroize::Zeroizing::new(app.post("addPassword", &body).await?);
        let added: Added = serde_json::from_slice(&answer)
            .map_err(|_| Failure::protocol("Graph's addPassword answer has no keyId"))?;
        let text =
            added.secret_text.ok_or_else(|| Failure::protocol("Graph's addPassword answer has no secretText"))?;
        created = Some(NewPassword { key_id: added.key_id.clone(), secret: Secret::new(text.into_bytes()) });
        Ok(format!("client secret {} added to application {}", added.key_id, app.object_id))
    })
    .await;
    Ok((conclude(result, started, &[current])?, created))
}

/// Removes a client secret by key id (`removePassword`), authenticating with `current`. Does
/// nothing if it is already gone.
pub async fn remove_password(
    fields: &Fields,
    current: &Secret,
    key_id: &str,
    limits: &Limits,
) -> Result<Outcome, ConnectError> {
    let started = Instant::now();
    let result = within(limits, async {
        let app = App::new(fields, limits, current).await?;
        if !app.application().await?.password_credentials.iter().any(|p| p.key_id == key_id) {
            return Ok(format!("client secret {key_id} was already removed"));
        }
        app.post("removePassword", &serde_json::json!({ "keyId": key_id })).await?;
        Ok(format!("client secret {key_id} removed from application {}", app.object_id))
    })
    .await;
    conclude(result, started, &[current])
}

/// Registers the certificate of `new` with the application, proving possession with `current`
/// (which must be a certificate the application already has). Does nothing if it is registered.
pub async fn add_certificate(
    fields: &Fields,
    current: &Secret,
    new: &Secret,
    limits: &Limits,
) -> Result<Outcome, ConnectError> {
    let started = Instant::now();
    let result = within(limits, async {
        let added = certificate(new, "the new version")?;
        let info = added.info()?;
        let app = App::new(fields, limits, current).await?;
        let thumbprint = hex::encode_upper(info.sha1);
        if app.keys().await?.iter().any(|k| same_thumbprint(k, &thumbprint)) {
            return Ok(format!("certificate {thumbprint} was already registered"));
        }
        let der = pem_der(added.cert_pem)?;
        let body = serde_json::json!({
            "keyCredential": {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64::engine::general_purpose::STANDARD.encode(der),
                "displayName": info.subject,
            },
            "passwordCredential": null,
            "proof": app.proof()?,
        });
        app.post("addKey", &body).await?;
        Ok(format!("certificate {thumbprint} registered with application {}", app.object_id))
    })
    .await;
    conclude(result, started, &[current])
}

/// Removes the certificate of `old` from the application, proving possession with `current`.
/// Does nothing if it is not registered.
pub async fn remove_certificate(
    fields: &Fields,
    current: &Secret,
    old: &Secret,
    limits: &Limits,
) -> Result<Outcome, ConnectError> {
    let started = Instant::now();
    let result = within(limits, async {
        let thumbprint = hex::encode_upper(certificate(old, "the old version")?.info()?.sha1);
        let app = App::new(fields, limits, current).await?;
        let Some(key) = app.keys().await?.into_iter().find(|k| same_thumbprint(k, &thumbprint)) else {
            return Ok(format!("certificate {thumbprint} was already removed"));
        };
        let body = serde_json::json!({ "keyId": key.key_id, "proof": app.proof()? });
        app.post("removeKey", &body).await?;
        Ok(format!("certificate {thumbprint} removed from application {}", app.object_id))
    })
    .await;
    conclude(result, started, &[current])
}

async fn within(
    limits: &Limits,
    f: impl std::future::Future<Output = Result<String, Failure>>,
) -> Result<String, Failure> {
    match tokio::time::timeout(limits.overall, f).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(Status::Timeout, format!("no complete answer within {:?}", limits.overall))),
    }
}

fn certificate<'a>(secret: &'a Secret, which: &str) -> Result<CertificateSecret<'a>, Failure> {
    CertificateSecret::split(secret).ok_or_else(|| {
        Failure::Config(format!(
            "{which} is a client secret; Graph's addKey and removeKey need a certificate of the application"
        ))
    })
}

fn same_thumbprint(key: &KeyCredential, thumbprint: &str) -> bool {
    key.custom_key_identifier.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(thumbprint))
}

fn pem_der(pem: &str) -> Result<Vec<u8>, Failure> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| Failure::Config("the certificate is not PEM".into()))
}

/// One application object in Graph, with an access token the application obtained with its
/// current secret or certificate.
struct App<'a> {
    base: String,
    object_id: &'a str,
    client: reqwest::Client,
    token: zeroize::Zeroizing<String>,
    /// The current certificate, which signs proofs of possession (certificate apps only).
    signer: Option<CertificateSecret<'a>>,
}

impl<'a> App<'a> {
    async fn new(fields: &'a Fields, limits: &Limits, current: &'a Secret) -> Result<Self, Failure> {
        let object_id = fields.get("app_object_id").ok_or_else(|| {
            Failure::Config("the credential has no app_object_id (the application's object id in the directory)".into())
        })?;
        let base = fields.get("graph_url").unwrap_or(DEFAULT_GRAPH_URL).trim_end_matches('/').to_owned();
        // Checked before the token is asked for: a Graph URL that may not be reached gets no
        // access token. Every request below goes to this base, through the same client.
        egress_url(limits, &base, false, "graph_url")?;
        let client = http_client(fields, limits)?;
        let token = access_token(fields, current, GRAPH_SCOPE, limits).await?;
        let signer = CertificateSecret::split(current);
        Ok(Self { base, object_id, client, token, signer })
    }

    fn url(&self, action: Option<&str>) -> String {
        match action {
            Some(a) => format!("{}/v1.0/applications/{}/{a}", self.base, self.object_id),
            None => format!("{}/v1.0/applications/{}", self.base, self.object_id),
        }
    }

    fn proof(&self) -> Result<String, Failure> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            Failure::Config(
                "the current version is a client secret; Graph's addKey and removeKey need proof from a certificate of the application"
                    .into(),
            )
        })?;
        let info = signer.info()?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = serde_json::Map::new();
        header.insert("x5t".into(), info.x5t().into());
        let claims = serde_json::json!({
            "aud": GRAPH_APP_ID,
            "iss": self.object_id,
            "nbf": now,
            "exp": now + PROOF_LIFETIME,
        });
        signer.signer()?.sign(header, &claims).map_err(|e| Failure::Config(e.to_string()))
    }

    async fn application(&self) -> Result<Application, Failure> {
        let response = self
            .client
            .get(format!("{}?$select=id,appId,keyCredentials,passwordCredentials", self.url(None)))
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|e| http_failure(&e, "reading the application"))?;
        serde_json::from_slice(&checked(response, "reading the application").await?)
            .map_err(|_| Failure::protocol("Graph answered something that is not an application"))
    }

    async fn keys(&self) -> Result<Vec<KeyCredential>, Failure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Application {
            #[serde(default)]
            key_credentials: Vec<KeyCredential>,
        }
        let response = self
            .client
            .get(format!("{}?$select=id,appId,keyCredentials", self.url(None)))
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|e| http_failure(&e, "reading the application"))?;
        let app: Application = serde_json::from_slice(&checked(response, "reading the application").await?)
            .map_err(|_| Failure::protocol("Graph answered an application without keyCredentials"))?;
        Ok(app.key_credentials)
    }

    async fn post(&self, action: &str, body: &serde_json::Value) -> Result<Vec<u8>, Failure> {
        let response = self
            .client
            .post(self.url(Some(action)))
            .bearer_auth(self.token.as_str())
            .json(body)
            .send()
            .await
            .map_err(|e| http_failure(&e, action))?;
        checked(response, action).await
    }
}

/// The body of a successful answer, or a failure with Graph's error code and message.
async fn checked(response: reqwest::Response, doing: &str) -> Result<Vec<u8>, Failure> {
    let status = response.status();
    let bytes = capped_body(response, doing).await?;
    if status.is_success() {
        return Ok(bytes);
    }
    #[derive(Deserialize, Default)]
    struct GraphError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(Deserialize, Default)]
    struct Envelope {
        #[serde(default)]
        error: GraphError,
    }
    let e: Envelope = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = format!("{doing}: Graph answered {} {}: {}", status.as_u16(), e.error.code, one_line(&e.error.message));
    if matches!(status.as_u16(), 401 | 403) {
        Err(Failure::auth(text))
    } else {
        Err(Failure::protocol(text))
    }
}
