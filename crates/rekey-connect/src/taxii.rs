//! A TAXII 2.1 collection, read a page at a time (`GET …/objects/` with `added_after` and
//! `next`) for the threat feeds, with HTTP basic authentication (`reqwest`), under the egress
//! policy. Its address and credentials come from the server's configuration; nothing Rekey
//! holds is ever sent to it.

use std::sync::Arc;
use std::time::Duration;

use crate::egress::EgressPolicy;

/// The TAXII 2.1 media type, asked for and sent.
pub const MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// Why a page was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaxiiError {
    /// A setting is wrong.
    #[error("bad TAXII setting: {0}")]
    Config(String),
    /// The server could not be reached, refused, or answered something else than an envelope.
    #[error("the TAXII server failed: {0}")]
    Failed(String),
}

/// One page of a collection's objects.
#[derive(Debug, Default)]
pub struct Page {
    /// The STIX objects.
    pub objects: Vec<serde_json::Value>,
    /// More objects wait after these.
    pub more: bool,
    /// The `next` to ask for them with, if the server paginates so.
    pub next: Option<String>,
    /// The `date_added` of the last object (`X-TAXII-Date-Added-Last`): where to resume.
    pub added_last: Option<String>,
}

/// A collection of a TAXII 2.1 API root. No `Debug`: it holds the password.
#[derive(Clone)]
pub struct Collection {
    objects_url: reqwest::Url,
    user: String,
    password: Arc<zeroize::Zeroizing<String>>,
    client: reqwest::Client,
}

impl Collection {
    /// Collection `id` of the API root at `api_root` (e.g. `https://taxii.example/api1/`).
    pub fn new(
        api_root: &str,
        id: &str,
        user: String,
        password: String,
        timeout: Duration,
        egress: Arc<EgressPolicy>,
    ) -> Result<Self, TaxiiError> {
        let mut root: reqwest::Url =
            api_root.parse().map_err(|_| TaxiiError::Config("the API root URL does not parse".into()))?;
        if !matches!(root.scheme(), "https" | "http") {
            return Err(TaxiiError::Config("the API root must be http or https".into()));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || id.is_empty() || id.len() > 128 {
            return Err(TaxiiError::Config("a collection id is letters, digits and hyphens".into()));
        }
        egress.check_url(&root, false).map_err(|d| TaxiiError::Config(format!("the API root: {d}")))?;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let objects_url = root
            .join(&format!("collections/{id}/objects/"))
            .map_err(|_| TaxiiError::Config("the collection URL".into()))?;
        let tls = crate::tls::public_config().map_err(|_| TaxiiError::Config("the TLS configuration".into()))?;
        let client = crate::http::client(&tls, timeout, timeout, Some(egress))
            .map_err(|e| TaxiiError::Config(e.without_url().to_string()))?;
        Ok(Self { objects_url, user, password: Arc::new(zeroize::Zeroizing::new(password)), client })
    }

    /// The objects added after `added_after` (all, if `None`), from `next` if a page before
    /// said so, at most `limit`.
    pub async fn page(&self, added_after: Option<&str>, next: Option<&str>, limit: u32) -> Result<Page, TaxiiError> {
        let mut url = self.objects_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &limit.to_string());
            if let Some(a) = added_after {
                q.append_pair("added_after", a);
            }
            if let Some(n) = next {
                q.append_pair("next", n);
            }
        }
        let response = self
            .client
            .get(url)
            .header("accept", MEDIA_TYPE)
            .basic_auth(&self.user, Some(self.password.as_str()))
            .send()
            .await
            .map_err(|e| TaxiiError::Failed(crate::http::failure_text(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(TaxiiError::Failed(format!("answered {status}")));
        }
        let added_last =
            response.headers().get("x-taxii-date-added-last").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = capped(response).await?;
        let envelope: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| TaxiiError::Failed("the answer is not a JSON envelope".into()))?;
        let objects = match envelope.get("objects") {
            Some(serde_json::Value::Array(a)) => a.clone(),
            None => Vec::new(),
            Some(_) => return Err(TaxiiError::Failed("the envelope's objects is not a list".into())),
        };
        Ok(Page {
            objects,
            more: envelope.get("more").and_then(serde_json::Value::as_bool).unwrap_or(false),
            next: envelope.get("next").and_then(serde_json::Value::as_str).map(str::to_owned),
            added_last,
        })
    }
}

/// An envelope's bytes, at most [`MAX_ENVELOPE`].
async fn capped(mut response: reqwest::Response) -> Result<Vec<u8>, TaxiiError> {
    let too_large = || TaxiiError::Failed(format!("an envelope larger than {} MiB", MAX_ENVELOPE >> 20));
    if response.content_length().is_some_and(|n| n > MAX_ENVELOPE as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| TaxiiError::Failed(crate::http::failure_text(e)))? {
        if body.len() + chunk.len() > MAX_ENVELOPE {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The largest envelope read.
pub const MAX_ENVELOPE: usize = 64 << 20;
