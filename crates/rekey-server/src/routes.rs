//! Handlers for `/v1` (sys, tenants, import, tokens, audit; credentials in `credentials.rs`, keys,
//! incidents and campaigns in their own files), and the input helpers they share. Each opens a
//! [`Session`](crate::session::Session) first (so that every request is audited, even a
//! malformed one), then parses its input, then calls one use case.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipnet::IpNet;
use rekey_core::import::{ImportLine, ImportMode, ImportOptions};
use rekey_core::tenants::NewTenant;
use rekey_core::tokens::{Expiry, TokenSpec, DEFAULT_TTL_SECS};
use rekey_core::views::*;
use rekey_core::CoreError;
use rekey_types::{AuditAction, CredRef, CredentialName, ErrorCode, Region, Role, TenantName, TokenId};
use serde::{Deserialize, Serialize};

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
pub(crate) use crate::state::AppState;
use crate::ApiError;

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A resource name as it goes into the audit log: raw user input, so cut short and stripped of
/// anything unprintable.
pub(crate) fn audit_resource(raw: &str) -> String {
    raw.chars().take(160).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

pub(crate) fn core(ctx: &ReqCtx) -> impl FnOnce(CoreError) -> ApiError + '_ {
    move |e| ApiError::from_core(e, ctx.request_id)
}

pub(crate) fn bad(code: ErrorCode, ctx: &ReqCtx) -> impl Fn(String) -> ApiError + '_ {
    move |m| ApiError::new(code, m, ctx.request_id)
}

pub(crate) fn name_error(ctx: &ReqCtx) -> impl Fn(rekey_types::NameError) -> ApiError + '_ {
    move |e| ApiError::new(ErrorCode::InvalidName, e.to_string(), ctx.request_id)
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>, ctx: &ReqCtx) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid query: {}", e.body_text()), ctx.request_id))
}

pub(crate) fn cred_ref(tenant: &str, name: &str, ctx: &ReqCtx) -> ApiResult<CredRef> {
    Ok(CredRef {
        tenant: TenantName::parse(tenant).map_err(name_error(ctx))?,
        name: CredentialName::parse(name).map_err(name_error(ctx))?,
    })
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- sys ----------------------------------------------------------------------------------

#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
    sealed: bool,
    version: &'static str,
}

pub(crate) async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", sealed: s.keeper.is_sealed(), version: env!("CARGO_PKG_VERSION") })
}

/// While sealed, answers without a token (there is no way to check one) with the seal's state
/// only; once unsealed, it is an authenticated, audited read like any other.
pub(crate) async fn status(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<StatusView>> {
    if s.keeper.is_sealed() {
        return Ok(Json(StatusView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            seal: s.keeper.seal_status().await.map_err(core(&ctx))?,
            store: s.keeper.store_backend().to_owned(),
            counts: None,
            audit_head_seq: None,
            integrity_failures: None,
        }));
    }
    let session = s.session(&ctx, AuditAction::SysStatus, String::new()).await?;
    Ok(Json(session.vault.status(&session.caller).await.map_err(core(&ctx))?))
}

pub(crate) async fn openapi() -> Response {
    let mut r = Json(crate::openapi::document()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    // A failure to read it leaves the last value: metrics answer even when the store does not.
    let lag = s.keeper.audit_index_lag().await.ok().flatten();
    let body = s.metrics.render(lag);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

// ---- tenants ------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenantBody {
    name: String,
    region: String,
    #[serde(default)]
    contacts: Vec<String>,
}

pub(crate) async fn create_tenant(
    State(s): State<AppState>,
    ctx: ReqCtx,
    body: RawBody,
) -> ApiResult<Json<TenantView>> {
    let session = s.session(&ctx, AuditAction::TenantCreate, String::new()).await?;
    let parsed = async {
        let b: CreateTenantBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        Ok(NewTenant {
            name: TenantName::parse(&b.name).map_err(name_error(&ctx))?,
            region: Region::parse(&b.region).map_err(name_error(&ctx))?,
            contacts: b.contacts,
        })
    }
    .await;
    let new = session.input(parsed).await?;
    Ok(Json(session.vault.create_tenant(&session.caller, new).await.map_err(core(&ctx))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListTenantsQuery {
    region: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list_tenants(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<ListTenantsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<TenantView>>> {
    let session = s.session(&ctx, AuditAction::TenantList, String::new()).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let region = q.region.as_deref().map(Region::parse).transpose().map_err(name_error(&ctx))?;
        let after = q.after.as_deref().map(TenantName::parse).transpose().map_err(name_error(&ctx))?;
        Ok((region, after, q.limit.unwrap_or(1000)))
    })();
    let (region, after, limit) = session.input(parsed).await?;
    Ok(Json(session.vault.list_tenants(&session.caller, region, after, limit).await.map_err(core(&ctx))?))
}

pub(crate) async fn show_tenant(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let resource = audit_resource(&tenant);
    let session = s.session(&ctx, AuditAction::TenantShow, resource).await?;
    let name = session.input(TenantName::parse(&tenant).map_err(name_error(&ctx))).await?;
    Ok(Json(session.vault.show_tenant(&session.caller, &name).await.map_err(core(&ctx))?))
}

// ---- import -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    create_tenants: bool,
    mode: Option<ImportMode>,
    /// The number, in the client's file, of this chunk's first line.
    first_line: Option<u64>,
}

pub(crate) async fn import(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<ImportQuery>, QueryRejection>,
    body: RawBody,
) -> ApiResult<Json<rekey_core::import::ImportReport>> {
    let session = s.session(&ctx, AuditAction::CredImport, String::new()).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let bytes = body_bytes(body, ctx.request_id)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "the body is not UTF-8", ctx.request_id))?;
        let first = q.first_line.unwrap_or(1);
        let lines: Vec<(u64, Result<ImportLine, String>)> = text
            .split('\n')
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let parsed = serde_json::from_str::<ImportLine>(l).map_err(|e| crate::extract::sanitize_json_error(&e));
                (first + i as u64, parsed)
            })
            .collect();
        let options = ImportOptions {
            dry_run: q.dry_run,
            create_tenants: q.create_tenants,
            mode: q.mode.unwrap_or(ImportMode::Atomic),
        };
        Ok((lines, options))
    })();
    let (lines, options) = session.input(parsed).await?;
    Ok(Json(session.vault.import_chunk(&session.caller, lines, options).await.map_err(core(&ctx))?))
}

// ---- tokens -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    role: String,
    tenant: Option<String>,
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    /// `30m`, `1h`, `7d`… or `never`. Default 30 days.
    ttl: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Serialize)]
struct CreatedToken<'a> {
    token: TokenView,
    /// The bearer token. Shown once; only its hash is stored.
    secret: &'a str,
}

pub(crate) async fn create_token(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::TokenCreate, String::new()).await?;
    let parsed = (|| {
        let b: TokenBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let role =
            Role::from_str(&b.role).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string(), ctx.request_id))?;
        let tenant = b.tenant.as_deref().map(TenantName::parse).transpose().map_err(name_error(&ctx))?;
        let credentials = b
            .credentials
            .iter()
            .map(|c| CredentialName::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(name_error(&ctx))?;
        let cidrs = b
            .cidrs
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad(ErrorCode::BadRequest, &ctx))?;
        let expiry = match b.ttl.as_deref() {
            None => Expiry::After(DEFAULT_TTL_SECS),
            Some("never") => Expiry::Never,
            Some(t) => {
                Expiry::After(rekey_types::time::parse_duration_secs(t).map_err(bad(ErrorCode::BadRequest, &ctx))?)
            }
        };
        Ok(TokenSpec { role, tenant, credentials, cidrs, expiry, description: b.description })
    })();
    let spec = session.input(parsed).await?;
    let (view, issued) = session.vault.create_token(&session.caller, spec).await.map_err(core(&ctx))?;
    let body = CreatedToken { token: view, secret: issued.expose() };
    let json =
        serde_json::to_vec(&body).map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()))
}

/// `10.0.0.0/8`, or a bare address meaning just that host.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address", s.chars().take(64).collect::<String>())
    })
}

pub(crate) async fn list_tokens(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<TokenView>>> {
    let session = s.session(&ctx, AuditAction::TokenList, String::new()).await?;
    Ok(Json(session.vault.list_tokens(&session.caller).await.map_err(core(&ctx))?))
}

pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let resource = audit_resource(&format!("token:{id}"));
    let session = s.session(&ctx, AuditAction::TokenRevoke, resource).await?;
    let parsed = TokenId::from_str(&id)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a token id is a UUID", ctx.request_id));
    let id = session.input(parsed).await?;
    session.vault.revoke_token(&session.caller, id).await.map_err(core(&ctx))?;
    Ok(Json(serde_json::json!({ "revoked": id.to_string() })))
}

// ---- audit --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    n: Option<u32>,
    after: Option<i64>,
}

pub(crate) async fn audit_events(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEventView>>> {
    let session = s.session(&ctx, AuditAction::AuditRead, String::new()).await?;
    let q = session.input(query(q, &ctx)).await?;
    Ok(Json(session.vault.audit_events(&session.caller, q.n.unwrap_or(50), q.after).await.map_err(core(&ctx))?))
}

pub(crate) async fn audit_verify(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<VerifyReport>> {
    let session = s.session(&ctx, AuditAction::AuditVerify, String::new()).await?;
    Ok(Json(session.vault.audit_verify(&session.caller).await.map_err(core(&ctx))?))
}

// ---- fallbacks ----------------------------------------------------------------------------

pub(crate) async fn not_found(ctx: ReqCtx) -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route; see /v1/openapi.json", ctx.request_id)
}

pub(crate) async fn method_not_allowed(ctx: ReqCtx) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method; see /v1/openapi.json",
        ctx.request_id,
    )
}
