//! The Vault-compatible read path: what existing Vault and OpenBao clients (the `bao`/`vault`
//! CLI and agent, consul-template, hvac) call to read a secret, answered from Rekey's own use
//! cases, so that a read through it is authorized, audited and refused exactly as a native
//! reveal is. `docs/vault-api.md` lists every route and where it differs from Vault.
//!
//! - `GET /v1/<mount>/data/<tenant>/<name>`: the credential as a KV v2 secret ([`kv`]).
//! - `GET /v1/sys/internal/ui/mounts/<path>` and `GET /v1/sys/mounts`: the one KV v2 mount, as
//!   the clients discover it before a read ([`mounts`]).
//! - `GET /v1/auth/token/lookup-self`: the caller's own token ([`token`]).
//! - `POST /v1/auth/jwt/login`, `POST /v1/auth/token/renew-self`, `POST
//!   /v1/auth/token/revoke-self`: workload login and the token holder's own renewal and
//!   revocation ([`auth`]).
//!
//! Answers carry Vault's envelope ([`envelope`]); errors carry Vault's `{"errors": [...]}`
//! ([`vault_errors`], applied by the request middleware to these routes only).
//!
//! Must never: answer a read that a native reveal of the same credential by the same token
//! would refuse, or before its audit event is durable; write a credential.

mod auth;
mod envelope;
mod kv;
mod mounts;
mod token;

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::error::ShownError;
use crate::state::AppState;

/// Top-level segments of `/v1/` that Rekey's own API or Vault's (`sys`, `auth`) use: a mount
/// may not take one.
pub(crate) const RESERVED: [&str; 14] = [
    "sys",
    "auth",
    "identity",
    "tenants",
    "credentials",
    "tokens",
    "incidents",
    "campaigns",
    "audit",
    "keys",
    "import",
    "openapi.json",
    "cubbyhole",
    "jwt-roles",
];

/// The routes, for a KV v2 mount at `mount`.
pub(crate) fn routes(mount: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("/v1/{mount}/data/{{tenant}}/{{name}}"), get(kv::read))
        .route("/v1/sys/internal/ui/mounts/{*path}", get(mounts::ui_mount))
        .route("/v1/sys/mounts", get(mounts::list))
        .route("/v1/auth/token/lookup-self", get(token::lookup_self))
        .route("/v1/auth/token/renew-self", post(auth::renew_self).put(auth::renew_self))
        .route("/v1/auth/token/revoke-self", post(auth::revoke_self).put(auth::revoke_self))
        .route("/v1/auth/jwt/login", post(auth::login).put(auth::login))
        .route("/v1/auth/oidc/oidc/auth_url", post(auth::oidc_auth_url).put(auth::oidc_auth_url))
        .route("/v1/auth/oidc/oidc/callback", get(auth::oidc_callback))
}

/// Whether a matched route (its template) is one of these, for a mount at `mount`.
pub(crate) fn is_vault_route(route: &str, mount: &str) -> bool {
    route.strip_prefix("/v1/").is_some_and(|rest| {
        rest.strip_prefix(mount).is_some_and(|r| r.starts_with('/'))
            || rest.starts_with("sys/internal/ui/mounts/")
            || rest == "sys/mounts"
            || rest.starts_with("auth/")
    })
}

#[derive(serde::Serialize)]
struct Errors<'a> {
    errors: [&'a str; 1],
}

/// An error answer in Vault's shape, `{"errors": ["message"]}`, with the same status and
/// headers (`Retry-After`, `WWW-Authenticate`); any other answer unchanged.
pub(crate) fn vault_errors(response: Response) -> Response {
    let Some(shown) = response.extensions().get::<ShownError>().cloned() else { return response };
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&Errors { errors: [&shown.message] }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::is_vault_route;

    #[test]
    fn only_the_mount_and_vaults_own_paths_are_vault_routes() {
        for route in [
            "/v1/kv/data/{tenant}/{name}",
            "/v1/sys/internal/ui/mounts/{*path}",
            "/v1/sys/mounts",
            "/v1/auth/token/lookup-self",
        ] {
            assert!(is_vault_route(route, "kv"), "{route}");
        }
        for route in
            ["/v1/kvx/data/{tenant}/{name}", "/v1/credentials/{tenant}/{name}/reveal", "/v1/sys/health", "/r/{link}"]
        {
            assert!(!is_vault_route(route, "kv"), "{route}");
        }
    }
}
