//! What every handler shares: the keeper, the metrics, the reset pages' keys, the limits, and
//! the API document.
//! Its own module, below the handlers (`routes`, `pages`, …), so that none of them imports
//! another for it.

use std::sync::Arc;

use rekey_core::{CoreError, Keeper};
use rekey_crypto::link::CsrfKey;

use crate::guard::Guard;
use crate::metrics::Metrics;

/// Cloned for each request (axum's `State`), so it is one `Arc`: one reference count to move,
/// not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub keeper: Arc<Keeper>,
    pub metrics: Arc<Metrics>,
    pub pages: PageState,
    pub guard: Guard,
    /// The Vault-compatible read path's mount (see `vault_api`).
    pub vault_api: VaultApiState,
    /// Whose word on the client's address is taken (see `proxy`).
    pub proxies: std::sync::Arc<crate::proxy::TrustedProxies>,
    /// Whether trusted proxies speak the PROXY protocol (then `X-Forwarded-For` is ignored).
    pub proxy_protocol: bool,
    /// The API document, set when the router is built from the same annotations.
    pub(crate) openapi: std::sync::OnceLock<crate::openapi::Document>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The Vault-compatible read path as configured (`[vault_api]`).
#[derive(Clone)]
pub struct VaultApiState {
    /// Whether it is served.
    pub enabled: bool,
    /// Its KV v2 mount, e.g. `kv`.
    pub mount: String,
}

/// The reset pages' own state: the key of their CSRF tokens, and whether cookies are `Secure`.
pub struct PageState {
    pub(crate) csrf: CsrfKey,
    pub(crate) secure: bool,
}

impl PageState {
    pub fn new(secure: bool) -> Result<Self, CoreError> {
        Ok(Self { csrf: CsrfKey::generate().map_err(CoreError::Crypto)?, secure })
    }
}
