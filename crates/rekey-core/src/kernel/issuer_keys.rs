//! Issuers' keys (for workload login, `workloads`), kept for ten minutes and fetched again sooner only when a token names a key id
//! the set does not hold (an issuer rotated its keys), at most once every ten seconds per
//! source: a flood of tokens with made-up key ids costs the issuer one request per ten seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rekey_connect::Limits;
use rekey_crypto::jws::JwkSet;

/// Where an issuer's keys are fetched from.
pub(crate) enum KeyLocation<'a> {
    /// Discovery at this URL, then the key set it names.
    Discovery(&'a str),
    /// The key set at this URL.
    Url(&'a str),
}

/// How long a fetched key set is used before it is fetched again.
pub(crate) const FRESH: Duration = Duration::from_secs(600);
/// The least time between two fetches of one source.
pub(crate) const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Sources kept (one per distinct URL); beyond, the cache starts over.
const MOST: usize = 1024;

struct Entry {
    keys: Option<Arc<JwkSet>>,
    fetched: Option<Instant>,
    tried: Instant,
}

/// Key sets by source URL.
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    /// The keys of `source`; `refresh` asks for a fetch now (a key id was not found), which is
    /// honoured at most once per [`REFETCH_AFTER`].
    pub(crate) async fn keys(
        &self,
        source: KeyLocation<'_>,
        refresh: bool,
        limits: &Limits,
    ) -> Result<Arc<JwkSet>, String> {
        let url = match source {
            KeyLocation::Discovery(u) | KeyLocation::Url(u) => u.to_owned(),
        };
        {
            let mut entries = self.entries.lock().expect("key cache lock is never poisoned");
            if entries.len() >= MOST && !entries.contains_key(&url) {
                entries.clear();
            }
            let now = Instant::now();
            let entry = entries.entry(url.clone()).or_insert(Entry {
                keys: None,
                fetched: None,
                tried: now.checked_sub(REFETCH_AFTER).unwrap_or(now),
            });
            let fresh = entry.fetched.is_some_and(|at| at.elapsed() < FRESH);
            let may_fetch = entry.tried.elapsed() >= REFETCH_AFTER;
            match (&entry.keys, fresh && !refresh, may_fetch) {
                (Some(keys), true, _) | (Some(keys), _, false) => return Ok(keys.clone()),
                (None, _, false) => return Err("the issuer's keys could not be fetched; try again shortly".into()),
                _ => entry.tried = now,
            }
        }
        let fetched = async {
            let (jwks_url, discovered) = match source {
                KeyLocation::Discovery(d) => (rekey_connect::oidc::discover(d, limits).await?.jwks_uri, true),
                KeyLocation::Url(u) => (u.to_owned(), false),
            };
            rekey_connect::jwks::fetch(&jwks_url, discovered, limits).await
        }
        .await
        .map_err(|e| format!("the issuer's keys: {e}"))?;
        let keys = Arc::new(fetched);
        let mut entries = self.entries.lock().expect("key cache lock is never poisoned");
        if let Some(e) = entries.get_mut(&url) {
            e.keys = Some(keys.clone());
            e.fetched = Some(Instant::now());
        }
        Ok(keys)
    }
}
