//! The HTTP client side of the CLI.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::args::Global;

/// The token file `rekey login` writes and the client reads when no token is given:
/// `$HOME/.rekey-token`.
pub(crate) fn default_token_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".rekey-token"))
}

/// Splits `tenant/name` for a URL path, checking the shape here for a clearer message.
pub(crate) fn cred_path(cred: &str) -> Result<String> {
    let r = rekey_types::CredRef::parse(cred).with_context(|| format!("{cred:?} is not tenant/name"))?;
    Ok(format!("/v1/tenants/{}/credentials/{}", r.tenant, r.name))
}

/// An error answered by the server.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiFailure {
    pub code: String,
    pub message: String,
    pub request_id: String,
    #[serde(skip)]
    pub status: u16,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, HTTP {}, request {})", self.message, self.code, self.status, self.request_id)
    }
}

impl std::error::Error for ApiFailure {}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Zeroizing<String>>,
}

impl Client {
    pub(crate) fn new(global: &Global) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("rekey-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &global.cacert {
            let pem = std::fs::read(path).with_context(|| format!("reading --cacert {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let token = match (&global.token, &global.token_file) {
            (Some(t), _) => Some(Zeroizing::new(t.trim().to_owned())),
            (None, Some(path)) => Some(Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?
                    .trim()
                    .to_owned(),
            )),
            // The token file `rekey login` writes, if there is one.
            (None, None) => default_token_file()
                .and_then(|path| std::fs::read_to_string(path).ok())
                .map(|t| Zeroizing::new(t.trim().to_owned()))
                .filter(|t| !t.is_empty()),
        };
        let base = global.addr.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--addr / REKEY_ADDR must start with http:// or https://, got {base:?}");
        }
        Ok(Self { http: builder.build().context("building the HTTP client")?, base, token })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t.as_str());
        }
        r
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send(self.request(Method::GET, path).query(query)).await
    }

    pub(crate) async fn json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send(self.request(method, path).json(body)).await
    }

    pub(crate) async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let bytes = self.send_raw(request).await?;
        serde_json::from_slice(&bytes).context("the server's answer is not what this client expects")
    }

    /// Sends and returns the body of a successful answer; an error answer becomes [`ApiFailure`].
    pub(crate) async fn send_raw(&self, request: RequestBuilder) -> Result<Zeroizing<Vec<u8>>> {
        let response = request.send().await.with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let bytes = Zeroizing::new(response.bytes().await.context("reading the server's answer")?.to_vec());
        if status.is_success() {
            return Ok(bytes);
        }
        #[derive(Deserialize)]
        struct VaultErrors {
            errors: Vec<String>,
        }
        match serde_json::from_slice::<ApiFailure>(&bytes) {
            Ok(mut failure) => {
                failure.status = status.as_u16();
                Err(failure.into())
            }
            // The Vault-compatible routes answer in Vault's shape.
            Err(_) => match serde_json::from_slice::<VaultErrors>(&bytes) {
                Ok(v) => anyhow::bail!("{} (HTTP {status})", v.errors.join("; ")),
                Err(_) => anyhow::bail!("the server answered HTTP {status} without an error body"),
            },
        }
    }
}
