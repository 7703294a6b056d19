//! Building the application from a [`Config`] and serving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rekey_core::Keeper;
use rekey_crypto::token::IssuedToken;
use rekey_crypto::{DevSeal, Pkcs11Options, Pkcs11Seal, Seal, ShamirSeal};
use rekey_store::{SqlStore, StoreOptions};
use rekey_types::RequestId;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Config, ConfigError};
use crate::incidents;
use crate::keys;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use crate::{campaigns, checkpoints, credentials, pages};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open the store")]
    Store(#[source] rekey_store::StoreError),
    #[error("cannot open the seal")]
    Seal(#[source] rekey_crypto::CryptoError),
    #[error("cannot read the HSM PIN from {from}")]
    Pin { from: String, source: Option<std::io::Error> },
    #[error("cannot open the vault")]
    Vault(#[source] rekey_core::CoreError),
    #[error("cannot load the TLS certificate or key")]
    Tls(#[source] std::io::Error),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A server built from its configuration: the store opened, the seal ready, the vault open
/// unless the seal starts sealed.
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// The seal and, while unsealed, the vault.
    pub keeper: Arc<Keeper>,
    state: AppState,
    /// The root operator token, when this start created it; shown once.
    pub root_token: Option<IssuedToken>,
    /// The base of reset links, filled in at bind time unless configured.
    public_url: Arc<std::sync::OnceLock<String>>,
}

impl App {
    /// Checks the configuration, opens the store and the seal, and opens the vault if the seal
    /// is unsealed at start.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        config.validate()?;
        ensure_private_dir(&config.data_dir)?;
        let store = SqlStore::open(&StoreOptions {
            url: config.store_url(),
            max_connections: config.store.max_connections.unwrap_or(8),
        })
        .await
        .map_err(BuildError::Store)?;
        if let Some(mb) = config.store.reveal_cache_mb {
            store.set_reveal_cache_bytes(mb.saturating_mul(1024 * 1024));
        }
        let seal = open_seal(&config)?;
        let options = config.vault_options()?;
        let public_url = options.campaign.public_url.clone();
        let (keeper, root_token) = Keeper::start(Arc::new(store), seal, options).await.map_err(BuildError::Vault)?;
        if keeper.is_sealed() {
            tracing::warn!(
                seal = %keeper.seal_kind(),
                "the vault is sealed: unseal it with `rekey unseal` (or initialize it with `rekey init`)"
            );
        }
        let keeper = Arc::new(keeper);
        let metrics = Arc::new(Metrics::new(
            keeper.writer_stats().clone(),
            keeper.connector_stats().clone(),
            keeper.store_backend() == "sqlite",
            {
                let keeper = keeper.clone();
                Box::new(move || keeper.reveal_cache())
            },
            {
                let keeper = keeper.clone();
                Box::new(move || keeper.is_sealed())
            },
        ));
        let pages = crate::state::PageState::new(config.tls.is_some()).map_err(BuildError::Vault)?;
        let guard = crate::guard::Guard::new(config.guard_limits().map_err(BuildError::Config)?);
        let state = AppState::new(crate::state::Shared {
            keeper: keeper.clone(),
            metrics,
            pages,
            guard,
            proxies: std::sync::Arc::new(crate::proxy::TrustedProxies::new(
                config.server.proxies().map_err(BuildError::Config)?,
            )),
            proxy_protocol: config.server.proxy_protocol,
            vault_api: crate::state::VaultApiState {
                enabled: config.vault_api.enabled,
                mount: config.vault_api.mount.clone(),
            },
            openapi: Default::default(),
        });
        Ok(Self { config, keeper, state, root_token, public_url })
    }

    /// The router with every route and the guard in front of them.
    pub fn router(&self) -> Router {
        router(self.state.clone(), &self.config)
    }

    /// Binds and serves in the background; returns the bound address. Stops when `shutdown`
    /// completes.
    pub async fn start(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Started, BuildError> {
        let addr = self.config.listen;
        let router = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let listener = std::net::TcpListener::bind(addr).map_err(|source| BuildError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| BuildError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| BuildError::Bind { addr, source })?;
        let scheme = if self.config.tls.is_some() { "https" } else { "http" };
        let _ = self.public_url.set(format!("{scheme}://{local}"));
        let proxy = self
            .config
            .server
            .proxy_protocol
            .then(|| crate::proxy::ProxyAcceptor { trusted: self.state.proxies.clone() });
        let task = match (&self.config.tls, proxy) {
            (None, Some(proxy)) => {
                // Plain HTTP whose trusted peers send a PROXY header first.
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
                });
                let server = axum_server::from_tcp(listener).acceptor(proxy).handle(handle);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(router).await {
                        tracing::error!(error = %e, "server stopped");
                    }
                })
            }
            (None, None) => {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|source| BuildError::Bind { addr, source })?;
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                        tracing::error!(error = %e, "server stopped");
                    }
                })
            }
            (Some(tls), proxy) => {
                rekey_connect::install_crypto_provider();
                let rustls_config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
                    .await
                    .map_err(BuildError::Tls)?;
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
                });
                let server = axum_server::from_tcp_rustls(listener, rustls_config).handle(handle);
                match proxy {
                    // The PROXY header comes before the TLS handshake.
                    Some(proxy) => {
                        let server = server.map(|tls| tls.acceptor(proxy));
                        tokio::spawn(async move {
                            if let Err(e) = server.serve(router).await {
                                tracing::error!(error = %e, "server stopped");
                            }
                        })
                    }
                    None => tokio::spawn(async move {
                        if let Err(e) = server.serve(router).await {
                            tracing::error!(error = %e, "server stopped");
                        }
                    }),
                }
            }
        };
        Ok(Started { addr: local, task, keeper: self.keeper })
    }
}

/// A server listening.
pub struct Started {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The task serving it; ends when the server stops.
    pub task: tokio::task::JoinHandle<()>,
    /// Its keeper.
    pub keeper: Arc<Keeper>,
}

fn open_seal(config: &Config) -> Result<Arc<dyn Seal>, BuildError> {
    match config.seal.kind.as_str() {
        "shamir" => Ok(Arc::new(ShamirSeal::new())),
        "pkcs11" => {
            let s = &config.seal;
            let pin = match (&s.pin_env, &s.pin_file) {
                (Some(var), _) => zeroize::Zeroizing::new(
                    std::env::var(var)
                        .map_err(|_| BuildError::Pin { from: format!("environment variable {var}"), source: None })?,
                ),
                (None, Some(path)) => {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(path)
                            .map_err(|e| BuildError::Pin { from: path.display().to_string(), source: Some(e) })?,
                    );
                    zeroize::Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned())
                }
                (None, None) => {
                    return Err(BuildError::Pin { from: "the config (pin_env or pin_file)".into(), source: None })
                }
            };
            let options = Pkcs11Options {
                module: s.module.clone().unwrap_or_default(),
                token_label: s.token_label.clone().unwrap_or_default(),
                key_label: s.key_label.clone().unwrap_or_else(|| "rekey-root".into()),
            };
            tracing::info!(module = %options.module.display(), token = %options.token_label, key = %options.key_label, "opening the PKCS#11 seal");
            Ok(Arc::new(Pkcs11Seal::open(options, pin).map_err(BuildError::Seal)?))
        }
        _ => {
            let seal = DevSeal::open_or_create(&config.seal_key_file()).map_err(BuildError::Seal)?;
            tracing::warn!(key_file = %seal.path().display(), "dev seal in use: the root key is a file beside the data; never use this in production");
            Ok(Arc::new(seal))
        }
    }
}

fn ensure_private_dir(path: &std::path::Path) -> Result<(), BuildError> {
    let err = |source| BuildError::DataDir { path: path.display().to_string(), source };
    if !path.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(path).map_err(err)?;
    }
    Ok(())
}

/// Every API route, each registered through its `#[utoipa::path]`, so that the router and the
/// document (`openapi::document`) are one list. `max_body` limits the API's bodies; the import
/// has its own, larger limit, `max_import`.
pub(crate) fn api_routes(max_body: usize, max_import: usize) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::with_openapi(crate::openapi::Head::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::ready))
        .routes(routes!(routes::status))
        .routes(routes!(routes::openapi))
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::create_tenant, routes::list_tenants))
        .routes(routes!(routes::show_tenant))
        .routes(routes!(credentials::put_credential, credentials::show_credential, credentials::delete_credential))
        .routes(routes!(credentials::reveal))
        .routes(routes!(credentials::versions))
        .routes(routes!(credentials::rollback))
        .routes(routes!(credentials::promote))
        .routes(routes!(credentials::retarget))
        .routes(routes!(credentials::verify))
        .routes(routes!(credentials::rotate))
        .routes(routes!(credentials::rotations))
        .routes(routes!(credentials::list_credentials))
        .routes(routes!(routes::create_token, routes::list_tokens))
        .routes(routes!(routes::revoke_token))
        .routes(routes!(crate::jwt_roles::list))
        .routes(routes!(crate::jwt_roles::show, crate::jwt_roles::put, crate::jwt_roles::delete))
        .routes(routes!(incidents::open, incidents::list))
        .routes(routes!(incidents::show))
        .routes(routes!(incidents::items))
        .routes(routes!(incidents::contain))
        .routes(routes!(incidents::close))
        .routes(routes!(incidents::share))
        .routes(routes!(crate::alerts::list))
        .routes(routes!(crate::alerts::show))
        .routes(routes!(crate::alerts::ack))
        .routes(routes!(crate::alerts::escalate))
        .routes(routes!(crate::alerts::plant))
        .routes(routes!(crate::alerts::list_decoys))
        .routes(routes!(campaigns::start, campaigns::list))
        .routes(routes!(campaigns::status))
        .routes(routes!(campaigns::items))
        .routes(routes!(campaigns::waive))
        .routes(routes!(campaigns::link))
        .routes(routes!(campaigns::report))
        .routes(routes!(routes::audit_events))
        .routes(routes!(routes::audit_verify))
        .routes(routes!(routes::audit_tree))
        .routes(routes!(routes::audit_inclusion))
        .routes(routes!(routes::audit_consistency))
        .routes(routes!(checkpoints::latest, checkpoints::sign))
        .routes(routes!(checkpoints::accept))
        .routes(routes!(checkpoints::evidence))
        .routes(routes!(keys::init))
        .routes(routes!(keys::unseal))
        .routes(routes!(keys::seal))
        .routes(routes!(keys::list_keys))
        .routes(routes!(keys::rotate))
        .routes(routes!(keys::rotate_commit))
        .routes(routes!(keys::list_jobs))
        .routes(routes!(keys::show_job))
        .routes(routes!(keys::show_key, keys::destroy_key))
        .routes(routes!(keys::compromise_key))
        .routes(routes!(keys::shred_tenant))
        .routes(routes!(keys::issue_certificate))
        .routes(routes!(keys::list_certificates))
        .routes(routes!(keys::revoke_certificate))
        .layer(DefaultBodyLimit::max(max_body));
    let import = OpenApiRouter::new().routes(routes!(routes::import)).layer(DefaultBodyLimit::max(max_import));
    api.merge(import)
}

/// The router, with request ids, metrics, logging and body limits. Exposed so tests can drive
/// it without a socket.
pub fn router(state: AppState, config: &Config) -> Router {
    let (api, doc) = api_routes(config.limits.max_body_bytes, config.limits.max_import_bytes).split_for_parts();
    // Every router built from this state collects the same document; the first one keeps it.
    let _ = state.openapi.set(crate::openapi::Document::new(doc));
    // Tenant self-service pages: HTML, not the JSON API (so not in the document); forms are small.
    let pages = Router::new()
        .route("/r/{link}", get(pages::show).post(pages::submit))
        .route("/assets/reset.css", get(pages::stylesheet))
        .layer(DefaultBodyLimit::max(crate::guard::PAGE_BODY_BYTES));

    let api = if state.vault_api.enabled { api.merge(crate::vault_api::routes(&state.vault_api.mount)) } else { api };
    api.merge(pages)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Gives every request an id (returned as `x-request-id`), logs one line per request (method,
/// route template, status, latency; never a body, a query or a header value), and counts it.
async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::generate();
    req.extensions_mut().insert(request_id);
    // Who the client is: the TCP peer, or whom a trusted proxy forwards for (see `proxy`).
    let client = match crate::extract::peer_of(req.extensions()) {
        Some(peer) => match req.extensions().get::<crate::proxy::ProxiedClient>() {
            Some(proxied) => Ok(Some(proxied.0.ip())),
            None if state.proxy_protocol => Ok(Some(peer)),
            None => state.proxies.client(peer, req.headers()).map(Some),
        },
        None => Ok(None),
    };
    let refused = match client {
        Ok(Some(ip)) => {
            req.extensions_mut().insert(crate::proxy::ClientAddr(ip));
            None
        }
        Ok(None) => None,
        Err(why) => Some(crate::ApiError::new(rekey_types::ErrorCode::BadRequest, why, request_id).into_response()),
    };
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Limits before work (concurrency, the token before the body, the body's deadline).
    let mut response = match refused {
        Some(response) => response,
        None => crate::guard::guard(&state.guard, &state.keeper, req, next, request_id).await,
    };
    if state.vault_api.enabled && crate::vault_api::is_vault_route(&route, &state.vault_api.mount) {
        response = crate::vault_api::vault_errors(response);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    tracing::info!(request_id = %request_id, method = %method, route = %route, status, latency_us = elapsed.as_micros() as u64, "request");
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        headers.insert("x-request-id", v);
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}
