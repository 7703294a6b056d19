//! Vault's auth paths: `auth/jwt/login` (a workload's JWT for a short-lived token, see
//! `rekey_core::workloads`), and the token holder's own `auth/token/renew-self` and
//! `auth/token/revoke-self`. Answers carry Vault's `auth` block (`client_token`,
//! `lease_duration`, `renewable`, `policies`), which the `bao` CLI and agent read.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rekey_core::views::TokenView;
use rekey_types::{AuditAction, ErrorCode};
use serde::{Deserialize, Serialize};

use super::envelope::Envelope;
use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{core, no_store, ApiResult, AppState};
use crate::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    role: String,
    jwt: rekey_core::import::SecretText,
}

/// Vault's `auth` block.
#[derive(Serialize)]
struct Auth<'a> {
    client_token: &'a str,
    accessor: String,
    policies: [String; 1],
    token_policies: [String; 1],
    metadata: BTreeMap<&'static str, String>,
    lease_duration: i64,
    renewable: bool,
    entity_id: &'static str,
    token_type: &'static str,
    orphan: bool,
    num_uses: u32,
}

impl<'a> Auth<'a> {
    fn new(client_token: &'a str, view: &TokenView, ttl: i64, auth_role: Option<&str>) -> Self {
        let role = view.role.to_string();
        let mut metadata = BTreeMap::from([("role", role.clone())]);
        if let Some(t) = &view.tenant {
            metadata.insert("tenant", t.clone());
        }
        if let Some(r) = auth_role {
            metadata.insert("auth_role", r.to_owned());
        }
        Self {
            client_token,
            accessor: view.id.clone(),
            policies: [role.clone()],
            token_policies: [role],
            metadata,
            lease_duration: ttl,
            renewable: true,
            entity_id: "",
            token_type: "service",
            orphan: true,
            num_uses: 0,
        }
    }
}

fn answer(ctx: &ReqCtx, auth: Auth<'_>) -> ApiResult<Response> {
    let json = serde_json::to_vec(&Envelope::auth(ctx.request_id, auth))
        .map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()))
}

/// `POST|PUT /v1/auth/jwt/login` with `{"role", "jwt"}`. No token: the JWT is the credential.
pub(super) async fn login(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let vault = s.keeper.vault().map_err(core(&ctx))?;
    let b: LoginBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    let logged = vault.login_jwt(&b.role, b.jwt.expose(), ctx.source, ctx.request_id).await.map_err(core(&ctx))?;
    answer(&ctx, Auth::new(logged.token.expose(), &logged.view, logged.ttl, Some(&logged.auth_role)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    /// Seconds, or a duration (`30m`); `0` or absent: the token's own lifetime.
    #[serde(default)]
    increment: Option<serde_json::Value>,
}

fn increment(b: &RenewBody, ctx: &ReqCtx) -> ApiResult<Option<i64>> {
    let bad = || ApiError::new(ErrorCode::BadRequest, "increment: seconds, or a duration such as 30m", ctx.request_id);
    match &b.increment {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(None),
            Some(s) if s > 0 => Ok(Some(s)),
            _ => Err(bad()),
        },
        Some(serde_json::Value::String(t)) => rekey_types::time::parse_duration_secs(t).map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// `POST|PUT /v1/auth/token/renew-self`.
pub(super) async fn renew_self(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::TokenRenew, String::new()).await?;
    let parsed = (|| {
        let bytes = body_bytes(body, ctx.request_id)?;
        let b: RenewBody = if bytes.is_empty() { RenewBody::default() } else { parse_json(&bytes, ctx.request_id)? };
        increment(&b, &ctx)
    })();
    let increment = session.input(parsed).await?;
    let (view, ttl) = session.vault.renew_self(&session.caller, increment).await.map_err(core(&ctx))?;
    let token = ctx.bearer.as_deref().map(String::as_str).unwrap_or_default();
    answer(&ctx, Auth::new(token, &view, ttl, None))
}

/// `POST|PUT /v1/auth/token/revoke-self`: `204`.
pub(super) async fn revoke_self(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<StatusCode> {
    let session = s.session(&ctx, AuditAction::TokenRevokeSelf, String::new()).await?;
    session.vault.revoke_self(&session.caller).await.map_err(core(&ctx))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthUrlBody {
    /// `operator` or `auditor`; absent or empty: the most the user's groups grant.
    #[serde(default)]
    role: Option<String>,
    redirect_uri: String,
    client_nonce: String,
}

#[derive(Serialize)]
struct AuthUrl {
    auth_url: String,
}

/// `POST|PUT /v1/auth/oidc/oidc/auth_url`: where the operator's browser signs in. No token.
pub(super) async fn oidc_auth_url(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let vault = s.keeper.vault().map_err(core(&ctx))?;
    let b: AuthUrlBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    let role = match b.role.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(
            r.parse::<rekey_types::Role>()
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string(), ctx.request_id))?,
        ),
    };
    let auth_url = vault.oidc_auth_url(role, &b.redirect_uri, &b.client_nonce).await.map_err(core(&ctx))?;
    let json = serde_json::to_vec(&Envelope::new(ctx.request_id, "oidc", AuthUrl { auth_url }))
        .map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    state: String,
    code: String,
    #[serde(default)]
    client_nonce: String,
}

/// `GET /v1/auth/oidc/oidc/callback?state&code&client_nonce`: the code the provider sent the
/// CLI's listener, for a token (Vault's `auth` block). No token.
pub(super) async fn oidc_callback(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<axum::extract::Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let vault = s.keeper.vault().map_err(core(&ctx))?;
    let q = crate::routes::query(q, &ctx)?;
    let logged = vault
        .oidc_callback(&q.state, &q.code, &q.client_nonce, ctx.source, ctx.request_id)
        .await
        .map_err(core(&ctx))?;
    let mut auth = Auth::new(logged.token.expose(), &logged.view, logged.ttl, None);
    auth.renewable = false;
    answer(&ctx, auth)
}
