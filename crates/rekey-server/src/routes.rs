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
use rekey_types::{AuditAction, CredRef, CredentialName, ErrorCode, Region, Role, TenantName, Timestamp, TokenId};
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

/// The longest page a listing answers.
pub(crate) const MAX_PAGE: u32 = 10_000;

/// A page size (the query parameter `name`): 1 to [`MAX_PAGE`], `default` when not given.
pub(crate) fn page(name: &str, given: Option<u32>, default: u32, ctx: &ReqCtx) -> ApiResult<u32> {
    match given.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::new(ErrorCode::BadRequest, format!("{name}: 1 to {MAX_PAGE}"), ctx.request_id)),
    }
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- sys ----------------------------------------------------------------------------------

/// Vault's health answer, with Rekey's one-word `status` beside it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, `sealed` or `uninitialized`.
    status: &'static str,
    initialized: bool,
    sealed: bool,
    /// Always false: every Rekey server is active (several share PostgreSQL as equals).
    standby: bool,
    performance_standby: bool,
    replication_performance_mode: &'static str,
    replication_dr_mode: &'static str,
    /// Seconds since 1970, UTC.
    server_time_utc: i64,
    version: &'static str,
}

/// Vault's overrides of the answer's status code (a load balancer that wants `200` from a
/// sealed server asks `?sealedcode=200`). Codes are 200 to 599; parameters Rekey has no use for
/// (standby and replication) are accepted and have no effect, as are unknown ones. Not in the
/// API document (an override makes any code a documented answer): `docs/vault-api.md`.
#[derive(Deserialize)]
pub(crate) struct HealthQuery {
    /// The code when unsealed and serving; default 200.
    activecode: Option<String>,
    /// The code when sealed; default 503.
    sealedcode: Option<String>,
    /// The code before `rekey init` (Shamir seal); default 501.
    uninitcode: Option<String>,
}

fn status_code(name: &str, given: Option<&str>, default: u16, ctx: &ReqCtx) -> ApiResult<axum::http::StatusCode> {
    let bad = || ApiError::new(ErrorCode::BadRequest, format!("{name}: a status code from 200 to 599"), ctx.request_id);
    match given {
        None => Ok(axum::http::StatusCode::from_u16(default).expect("default codes are valid")),
        Some(text) => match text.parse::<u16>() {
            Ok(n @ 200..=599) => axum::http::StatusCode::from_u16(n).map_err(|_| bad()),
            _ => Err(bad()),
        },
    }
}

/// How long a client should wait before asking a sealed server again.
const SEALED_RETRY_SECS: u64 = 5;

#[utoipa::path(
    get,
    path = "/v1/sys/health",
    operation_id = "sys_health",
    tag = "sys",
    summary = "The seal, for a load balancer, with Vault's status codes: 200 unsealed, 503 sealed, 501 not initialized (and Vault's overrides, see docs/vault-api.md); no token, not audited",
    responses(
        (status = 200, description = "Unsealed and serving", body = Health),
        (status = 501, description = "Not initialized (`rekey init`)", body = Health),
        (status = 503, description = "Sealed; `Retry-After` says when to ask again", body = Health),
        crate::openapi::ApiErrors
    ),
    security(())
)]
pub(crate) async fn health(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<HealthQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q, &ctx)?;
    let active = status_code("activecode", q.activecode.as_deref(), 200, &ctx)?;
    let sealed_code = status_code("sealedcode", q.sealedcode.as_deref(), 503, &ctx)?;
    let uninit_code = status_code("uninitcode", q.uninitcode.as_deref(), 501, &ctx)?;
    let sealed = s.keeper.is_sealed();
    let initialized = !sealed || s.keeper.seal_status().await.map_err(core(&ctx))?.initialized.unwrap_or(true);
    let (status, code) = match (initialized, sealed) {
        (false, _) => ("uninitialized", uninit_code),
        (true, true) => ("sealed", sealed_code),
        (true, false) => ("ok", active),
    };
    let body = Health {
        status,
        initialized,
        sealed,
        standby: false,
        performance_standby: false,
        replication_performance_mode: "disabled",
        replication_dr_mode: "disabled",
        server_time_utc: Timestamp::now().as_micros().div_euclid(1_000_000),
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut response = (code, Json(body)).into_response();
    if sealed {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(SEALED_RETRY_SECS));
    }
    Ok(response)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/sys/ready",
    operation_id = "sys_ready",
    tag = "sys",
    summary = "Readiness for an orchestrator: 200 only when unsealed, the store answers and writes are accepted; no token, not audited",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready; `reason` says why, `Retry-After` when to ask again", body = Ready),
        crate::openapi::ApiErrors
    ),
    security(())
)]
pub(crate) async fn ready(State(s): State<AppState>) -> Response {
    match s.keeper.readiness().await {
        Ok(()) => Json(Ready { ready: true, reason: None }).into_response(),
        Err(reason) => {
            let mut r =
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(Ready { ready: false, reason: Some(reason) }))
                    .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(SEALED_RETRY_SECS));
            r
        }
    }
}

/// While sealed, answers without a token (there is no way to check one) with the seal's state
/// only; once unsealed, it is an authenticated, audited read like any other.
#[utoipa::path(
    get,
    path = "/v1/sys/status",
    operation_id = "sys_status",
    tag = "sys",
    summary = "The seal, the store and counts (the seal only, without a token, while sealed)",
    responses((status = 200, description = "OK", body = StatusView), crate::openapi::ApiErrors),
    security((), ("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn status(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<StatusView>> {
    if s.keeper.is_sealed() {
        return Ok(Json(StatusView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            seal: s.keeper.seal_status().await.map_err(core(&ctx))?,
            store: s.keeper.store_backend().to_owned(),
            counts: None,
            audit_head_seq: None,
            integrity_failures: None,
            audit_rollback: None,
        }));
    }
    let session = s.session(&ctx, AuditAction::SysStatus, String::new()).await?;
    Ok(Json(session.vault.status(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "sys",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object), crate::openapi::ApiErrors),
    security(())
)]
pub(crate) async fn openapi(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Response> {
    // `app::router` sets it before it serves anything.
    let doc = s.openapi.get().ok_or_else(|| ApiError::new(ErrorCode::Internal, "no document", ctx.request_id))?;
    let body = axum::body::Bytes::from_owner(doc.0.clone());
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "sys",
    summary = "Prometheus metrics (OpenMetrics text); no token",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), crate::openapi::ApiErrors),
    security(())
)]
pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    // A failure to read it leaves the last value: metrics answer even when the store does not.
    let lag = s.keeper.audit_index_lag().await.ok().flatten();
    let body = s.metrics.render(lag);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

// ---- tenants ------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenantBody {
    /// Not `root`, which names the root key.
    #[schema(value_type = TenantName)]
    name: String,
    #[schema(value_type = Region)]
    region: String,
    /// E-mail addresses for the tenant's notices.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::contacts)]
    contacts: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    summary = "Create a tenant and its first key",
    request_body = CreateTenantBody,
    responses((status = 200, description = "OK", body = TenantView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListTenantsQuery {
    /// Only tenants of this region.
    #[param(value_type = Option<Region>)]
    region: Option<String>,
    /// The name to continue after (the last one of the previous page).
    #[param(value_type = Option<TenantName>)]
    after: Option<String>,
    /// Tenants per page, 1 to 10,000; default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    summary = "List tenants, by name",
    params(ListTenantsQuery),
    responses((status = 200, description = "OK", body = Vec<TenantView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
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
        Ok((region, after, page("limit", q.limit, 1000, &ctx)?))
    })();
    let (region, after, limit) = session.input(parsed).await?;
    Ok(Json(session.vault.list_tenants(&session.caller, region, after, limit).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    summary = "Show a tenant",
    params(crate::openapi::TenantPath),
    responses((status = 200, description = "OK", body = TenantView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor", "tenant-admin"])))
)]
pub(crate) async fn show_tenant(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let resource = audit_resource(&format!("tenant:{tenant}"));
    let session = s.session(&ctx, AuditAction::TenantShow, resource).await?;
    let name = session.input(TenantName::parse(&tenant).map_err(name_error(&ctx))).await?;
    Ok(Json(session.vault.show_tenant(&session.caller, &name).await.map_err(core(&ctx))?))
}

// ---- import -------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    /// Check every line, write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Create the tenants that do not exist (each line then needs a region).
    #[serde(default)]
    create_tenants: bool,
    /// `atomic` (the default: all lines or none) or `continue-on-error`.
    mode: Option<ImportMode>,
    /// The number, in the client's file, of this chunk's first line (for the errors): 1 to
    /// 10^12; default 1.
    #[param(minimum = 1, maximum = 1000000000000_u64)]
    first_line: Option<u64>,
}

const MAX_FIRST_LINE: u64 = 1_000_000_000_000;

#[utoipa::path(
    post,
    path = "/v1/import",
    operation_id = "import",
    tag = "credentials",
    summary = "Import credentials: one JSON object per line",
    params(ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson", description = "One `{tenant, region?, name, kind, fields?, labels?, secret | secret_base64}` per line"),
    responses((status = 200, description = "OK", body = rekey_core::import::ImportReport), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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
        if bytes.is_empty() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "the body is empty: give one JSON object per line",
                ctx.request_id,
            ));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "the body is not UTF-8", ctx.request_id))?;
        let first = match q.first_line {
            None => 1,
            Some(n @ 1..=MAX_FIRST_LINE) => n,
            Some(_) => {
                return Err(ApiError::new(ErrorCode::BadRequest, "first_line: 1 to 10^12", ctx.request_id));
            }
        };
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    #[schema(value_type = Role)]
    role: String,
    /// The tenant of a `tenant-admin` or `connector` token; none for the others.
    #[schema(value_type = Option<TenantName>)]
    tenant: Option<String>,
    /// What a `connector` token may reveal (at least one); none for the others.
    #[serde(default)]
    #[schema(value_type = Vec<CredentialName>)]
    credentials: Vec<String>,
    /// Where the token may be used from: CIDRs or single addresses; none means anywhere.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::cidrs)]
    cidrs: Vec<String>,
    /// How long the token lives, e.g. `30m`, `1h`, `7d`, or `never`; default 1 day.
    #[schema(schema_with = crate::openapi::ttl)]
    ttl: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::description)]
    description: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken<'a> {
    token: TokenView,
    /// The bearer token. Shown once; only its hash is stored.
    secret: &'a str,
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    summary = "Create a token; its secret is shown once",
    request_body = TokenBody,
    responses((status = 200, description = "OK", body = CreatedToken), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    summary = "List tokens (never their secrets)",
    responses((status = 200, description = "OK", body = Vec<TokenView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn list_tokens(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<TokenView>>> {
    let session = s.session(&ctx, AuditAction::TokenList, String::new()).await?;
    Ok(Json(session.vault.list_tokens(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    summary = "Revoke a token",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = crate::answers::Revoked), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::answers::Revoked>> {
    let resource = audit_resource(&format!("token:{id}"));
    let session = s.session(&ctx, AuditAction::TokenRevoke, resource).await?;
    let parsed = TokenId::from_str(&id)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "a token id is a UUID", ctx.request_id));
    let id = session.input(parsed).await?;
    session.vault.revoke_token(&session.caller, id).await.map_err(core(&ctx))?;
    Ok(Json(crate::answers::Revoked { revoked: id.to_string() }))
}

// ---- audit --------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// How many events, 1 to 10,000; default 50.
    #[param(minimum = 1, maximum = 10000)]
    n: Option<u32>,
    /// The sequence number to continue after; without it, the last `n` events.
    after: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    summary = "Audit events: the last n, or n after a sequence number",
    params(AuditQuery),
    responses((status = 200, description = "OK", body = Vec<AuditEventView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn audit_events(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEventView>>> {
    let session = s.session(&ctx, AuditAction::AuditRead, String::new()).await?;
    let parsed = query(q, &ctx).and_then(|q| Ok((page("n", q.n, 50, &ctx)?, q.after)));
    let (n, after) = session.input(parsed).await?;
    Ok(Json(session.vault.audit_events(&session.caller, n, after).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    summary = "Verify the audit chain",
    responses((status = 200, description = "OK", body = VerifyReport), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn audit_verify(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<VerifyReport>> {
    let session = s.session(&ctx, AuditAction::AuditVerify, String::new()).await?;
    Ok(Json(session.vault.audit_verify(&session.caller).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TreeQuery {
    /// The tree of the first `size` events; all of them when absent.
    size: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/tree",
    operation_id = "audit_tree",
    tag = "audit",
    summary = "The head of the audit log's Merkle tree (RFC 6962; docs/audit.md)",
    params(TreeQuery),
    responses((status = 200, description = "OK", body = rekey_core::tree::TreeHeadView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn audit_tree(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<TreeQuery>, QueryRejection>,
) -> ApiResult<Json<rekey_core::tree::TreeHeadView>> {
    let session = s.session(&ctx, AuditAction::AuditTree, String::new()).await?;
    let q = session.input(query(q, &ctx)).await?;
    Ok(Json(session.vault.audit_tree(&session.caller, q.size).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    /// The event's sequence number.
    #[param(minimum = 1)]
    seq: i64,
    /// The tree of the first `size` events; all of them when absent.
    size: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/proof/inclusion",
    operation_id = "audit_inclusion",
    tag = "audit",
    summary = "The inclusion proof of one event in the audit log's tree",
    params(InclusionQuery),
    responses((status = 200, description = "OK", body = rekey_core::tree::InclusionView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn audit_inclusion(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> ApiResult<Json<rekey_core::tree::InclusionView>> {
    let session = s.session(&ctx, AuditAction::AuditProve, String::new()).await?;
    let q = session.input(query(q, &ctx)).await?;
    Ok(Json(session.vault.audit_inclusion(&session.caller, q.seq, q.size).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    /// The older tree's size, 1 to `new`.
    #[param(minimum = 1)]
    old: u64,
    /// The newer tree's size; the whole log when absent.
    new: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/proof/consistency",
    operation_id = "audit_consistency",
    tag = "audit",
    summary = "The proof that an older tree of the audit log is a prefix of a newer one",
    params(ConsistencyQuery),
    responses((status = 200, description = "OK", body = rekey_core::tree::ConsistencyView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn audit_consistency(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> ApiResult<Json<rekey_core::tree::ConsistencyView>> {
    let session = s.session(&ctx, AuditAction::AuditProve, String::new()).await?;
    let q = session.input(query(q, &ctx)).await?;
    Ok(Json(session.vault.audit_consistency(&session.caller, q.old, q.new).await.map_err(core(&ctx))?))
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
