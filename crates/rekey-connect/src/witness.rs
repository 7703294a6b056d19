//! The client side of the C2SP witness protocol (`c2sp.org/tlog-witness`): a signed checkpoint
//! and its consistency proof are posted to `<url>/add-checkpoint`, and the witness answers its
//! cosignature lines (`reqwest`).
//!
//! A witness's URL and key come from the server's configuration, so the operator has approved
//! where checkpoints go; a checkpoint carries no secret (an origin, a size and a hash). Redirects
//! are not followed, no proxy is used, and an answer longer than 64 KiB is refused.

use std::time::Duration;

use rekey_tlog::cosignature::{verify_lines, AddCheckpoint};
use rekey_tlog::VerifierKey;

/// The longest answer read from a witness.
const MAX_ANSWER: usize = 64 << 10;

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// A setting is wrong (the URL, the key).
    #[error("bad witness setting: {0}")]
    Config(String),
    /// The witness last cosigned a checkpoint of another size (`409`, `text/x.tlog.size`): the
    /// request is to be made again from that size.
    #[error("the witness last cosigned a tree of {0} events")]
    Conflict(u64),
    /// The witness refused the checkpoint: the consistency proof does not verify (`422`), the
    /// same size with another root (`409` without a size), or the log is unknown to it (`404`),
    /// or it does not trust the signature (`403`).
    #[error("the witness refused the checkpoint: {0}")]
    Refused(String),
    /// No answer, or an answer that is not a cosignature of the witness's key.
    #[error("the witness failed: {0}")]
    Failed(String),
}

/// A witness reached over HTTP.
#[derive(Clone)]
pub struct HttpWitness {
    url: reqwest::Url,
    key: VerifierKey,
    client: reqwest::Client,
}

impl HttpWitness {
    /// The witness at `url` (its submission prefix: `add-checkpoint` is appended) whose
    /// cosignatures verify with `key` (a verifier key of type `0x04`).
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<Self, WitnessError> {
        let mut url: reqwest::Url =
            url.parse().map_err(|_| WitnessError::Config("the witness URL does not parse".into()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(WitnessError::Config("the witness URL must be http or https".into()));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let url = url.join("add-checkpoint").map_err(|_| WitnessError::Config("the witness URL".into()))?;
        let key = VerifierKey::parse(key).map_err(|e| WitnessError::Config(e.to_string()))?;
        if key.kind != rekey_tlog::KeyKind::Cosignature {
            return Err(WitnessError::Config("a witness's key is a cosignature key (type 0x04)".into()));
        }
        let tls = crate::tls::public_config()
            .map_err(|_| WitnessError::Config("the TLS configuration could not be built".into()))?;
        let client = crate::http::client(&tls, timeout, timeout, None)
            .map_err(|e| WitnessError::Config(e.without_url().to_string()))?;
        Ok(Self { url, key, client })
    }

    /// The witness's name (its key's).
    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// The witness's key.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// Posts the request; answers the witness's cosignature line of the checkpoint `text` and
    /// the time it states, verified with the witness's key.
    pub async fn add_checkpoint(&self, request: &AddCheckpoint, text: &str) -> Result<(String, u64), WitnessError> {
        let failed = |e: reqwest::Error| {
            WitnessError::Failed(if e.is_timeout() {
                "no answer in time".into()
            } else {
                crate::error::one_line(&e.without_url().to_string())
            })
        };
        let mut response = self.client.post(self.url.clone()).body(request.body()).send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let is_size = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/x.tlog.size"));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(WitnessError::Failed("the answer is longer than 64 KiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(body).map_err(|_| WitnessError::Failed("the answer is not UTF-8".into()))?;
        match status {
            200 => {
                let found = verify_lines(text, &body, std::slice::from_ref(&self.key))
                    .map_err(|e| WitnessError::Failed(format!("its answer: {e}")))?;
                let (_, time) =
                    found.into_iter().next().ok_or_else(|| WitnessError::Failed("no cosignature of its key".into()))?;
                let line = body
                    .lines()
                    .find(|l| {
                        l.strip_prefix("\u{2014} ")
                            .and_then(|r| r.split_once(' '))
                            .is_some_and(|(n, _)| n == self.key.name)
                    })
                    .map(|l| format!("{l}\n"))
                    .ok_or_else(|| WitnessError::Failed("no cosignature of its key".into()))?;
                Ok((line, time))
            }
            409 if is_size => body
                .trim_end_matches('\n')
                .parse()
                .map(WitnessError::Conflict)
                .map(Err)
                .unwrap_or_else(|_| Err(WitnessError::Failed("a 409 answer whose size does not parse".into()))),
            409 => Err(WitnessError::Refused("it holds a checkpoint of the same size with another root".into())),
            422 => Err(WitnessError::Refused("the consistency proof does not verify against what it holds".into())),
            404 => Err(WitnessError::Refused("it does not know this log's origin".into())),
            403 => Err(WitnessError::Refused("it does not trust this log's signature".into())),
            other => Err(WitnessError::Failed(format!("answered {other}"))),
        }
    }
}
