//! Handlers for the seal (`/v1/sys/init`, `unseal`, `seal`), keys (`/v1/keys…`), tenant
//! shredding and certificates.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_core::custody::RotateScope;
use rekey_core::import::SecretText;
use rekey_core::views::*;
use rekey_types::{AuditAction, ErrorCode, JobId, KeyRef, TenantName};
use serde::{Deserialize, Serialize};

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, bad, core, cred_ref, name_error, no_store, query, ApiResult, AppState};
use crate::ApiError;

fn json_no_store<T: Serialize>(value: &T, ctx: &ReqCtx) -> ApiResult<Response> {
    let body =
        serde_json::to_vec(value).map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    Ok(no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response()))
}

// ---- seal ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitBody {
    shares: u8,
    threshold: u8,
}

#[derive(Serialize)]
struct InitAnswer<'a> {
    /// Each share is shown once, here; Rekey keeps none of them.
    shares: Vec<&'a str>,
    threshold: u8,
}

/// Unauthenticated, like the unseal: there is no token before the first unseal. It works once
/// per store; afterwards it answers `409 conflict`.
pub(crate) async fn init(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let b: InitBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    let outcome = s.keeper.init(b.shares, b.threshold).await.map_err(core(&ctx))?;
    let answer =
        InitAnswer { shares: outcome.shares.iter().map(|s| s.as_str()).collect(), threshold: outcome.threshold };
    json_no_store(&answer, &ctx)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsealBody {
    #[serde(default)]
    share: Option<SecretText>,
    #[serde(default)]
    reset: bool,
}

#[derive(Serialize)]
struct UnsealAnswer {
    sealed: bool,
    progress: u8,
    threshold: u8,
    /// The root operator token, only when this unseal opened a fresh store. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    root_token: Option<String>,
}

pub(crate) async fn unseal(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let b: UnsealBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    if b.reset {
        // Only a share holder may forget the shares given so far: the reset carries a share.
        let share = b.share.ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "a reset needs one of the current shares (it does not count toward the threshold)",
                ctx.request_id,
            )
        })?;
        let threshold = s.keeper.unseal_reset(share.expose(), ctx.source).await.map_err(core(&ctx))?;
        let status = s.keeper.seal_status().await.map_err(core(&ctx))?;
        let answer = UnsealAnswer { sealed: status.sealed, progress: 0, threshold, root_token: None };
        return json_no_store(&answer, &ctx);
    }
    let share =
        b.share.ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "give a share, or reset", ctx.request_id))?;
    let outcome = s.keeper.unseal(share.expose(), ctx.source).await.map_err(core(&ctx))?;
    let answer = UnsealAnswer {
        sealed: outcome.sealed,
        progress: outcome.progress,
        threshold: outcome.threshold,
        root_token: outcome.root_token.as_ref().map(|t| t.expose().to_owned()),
    };
    json_no_store(&answer, &ctx)
}

pub(crate) async fn seal(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<serde_json::Value>> {
    let session = s.session(&ctx, AuditAction::SysSeal, "seal".into()).await?;
    s.keeper.seal(&session.caller).await.map_err(core(&ctx))?;
    Ok(Json(serde_json::json!({ "sealed": true })))
}

// ---- keys ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyListQuery {
    tenant: Option<String>,
}

pub(crate) async fn list_keys(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<KeyListQuery>, QueryRejection>,
) -> ApiResult<Json<KeyListView>> {
    let session = s.session(&ctx, AuditAction::KeyList, String::new()).await?;
    let parsed =
        query(q, &ctx).and_then(|q| q.tenant.as_deref().map(TenantName::parse).transpose().map_err(name_error(&ctx)));
    let tenant = session.input(parsed).await?;
    Ok(Json(session.vault.key_list(&session.caller, tenant).await.map_err(core(&ctx))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    root: bool,
    /// Shamir root rotation: the new split.
    #[serde(default)]
    shares: Option<u8>,
    #[serde(default)]
    threshold: Option<u8>,
}

/// Starts a rotation and answers with its job; a Shamir root rotation answers with the new
/// shares instead, and starts only at `/v1/keys/rotate/commit`.
pub(crate) async fn rotate(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::KeyRotate, String::new()).await?;
    let caller = &session.caller;
    let parsed = (|| {
        let b: RotateBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let chosen = usize::from(b.tenant.is_some()) + usize::from(b.all) + usize::from(b.root);
        if chosen != 1 {
            return Err(ApiError::new(ErrorCode::BadRequest, "give exactly one of tenant, all, root", ctx.request_id));
        }
        let scope = match (&b.tenant, b.all) {
            (Some(t), _) => RotateScope::Tenant(TenantName::parse(t).map_err(name_error(&ctx))?),
            (None, true) => RotateScope::All,
            _ => RotateScope::Root,
        };
        Ok((scope, b.shares, b.threshold))
    })();
    let (scope, shares, threshold) = session.input(parsed).await?;
    let vault = &session.vault;
    if matches!(scope, RotateScope::Root) && s.keeper.seal_kind() == rekey_types::SealKind::Shamir {
        let (Some(n), Some(k)) = (shares, threshold) else {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "a Shamir root rotation makes new shares: give shares and threshold",
                ctx.request_id,
            ));
        };
        let split = vault.prepare_root_split(caller, n, k).await.map_err(core(&ctx))?;
        return json_no_store(&split, &ctx);
    }
    let job = vault.rotate(caller, scope).await.map_err(core(&ctx))?;
    json_no_store(&job, &ctx)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    set_id: String,
}

pub(crate) async fn rotate_commit(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Json<JobView>> {
    let session = s.session(&ctx, AuditAction::KeyRotate, "root".into()).await?;
    let parsed = body_bytes(body, ctx.request_id).and_then(|b| parse_json::<CommitBody>(&b, ctx.request_id));
    let b = session.input(parsed).await?;
    Ok(Json(session.vault.commit_root_split(&session.caller, &b.set_id).await.map_err(core(&ctx))?))
}

fn key_ref(raw: &str, ctx: &ReqCtx) -> ApiResult<KeyRef> {
    KeyRef::from_str(raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string(), ctx.request_id))
}

pub(crate) async fn show_key(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(key): Path<String>,
) -> ApiResult<Json<WrappedByView>> {
    let resource = audit_resource(&key);
    let session = s.session(&ctx, AuditAction::KeyShow, resource).await?;
    let key = session.input(key_ref(&key, &ctx)).await?;
    Ok(Json(session.vault.wrapped_by(&session.caller, &key).await.map_err(core(&ctx))?))
}

pub(crate) async fn compromise_key(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(key): Path<String>,
) -> ApiResult<Json<JobView>> {
    let resource = audit_resource(&key);
    let session = s.session(&ctx, AuditAction::KeyCompromise, resource).await?;
    let key = session.input(key_ref(&key, &ctx)).await?;
    Ok(Json(session.vault.compromise(&session.caller, &key).await.map_err(core(&ctx))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DestroyQuery {
    #[serde(default)]
    force: bool,
}

pub(crate) async fn destroy_key(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(key): Path<String>,
    q: Result<Query<DestroyQuery>, QueryRejection>,
) -> ApiResult<Json<DestroyedView>> {
    let resource = audit_resource(&key);
    let session = s.session(&ctx, AuditAction::KeyDestroy, resource).await?;
    let parsed = key_ref(&key, &ctx).and_then(|k| query(q, &ctx).map(|q| (k, q.force)));
    let (key, force) = session.input(parsed).await?;
    Ok(Json(session.vault.destroy(&session.caller, &key, force).await.map_err(core(&ctx))?))
}

pub(crate) async fn shred_tenant(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<ShreddedView>> {
    let resource = audit_resource(&format!("tenant:{tenant}"));
    let session = s.session(&ctx, AuditAction::TenantShred, resource).await?;
    let name = session.input(TenantName::parse(&tenant).map_err(name_error(&ctx))).await?;
    Ok(Json(session.vault.shred_tenant(&session.caller, &name).await.map_err(core(&ctx))?))
}

pub(crate) async fn list_jobs(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<JobView>>> {
    let session = s.session(&ctx, AuditAction::KeyJobs, String::new()).await?;
    Ok(Json(session.vault.jobs(&session.caller).await.map_err(core(&ctx))?))
}

pub(crate) async fn show_job(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let resource = audit_resource(&format!("job:{id}"));
    let session = s.session(&ctx, AuditAction::KeyJob, resource).await?;
    let parsed =
        JobId::from_str(&id).map_err(|_| ApiError::new(ErrorCode::BadRequest, "a job id is a UUID", ctx.request_id));
    let id = session.input(parsed).await?;
    Ok(Json(session.vault.job(&session.caller, id).await.map_err(core(&ctx))?))
}

// ---- certificates -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    /// Lifetime, e.g. `90d` (the default).
    #[serde(default)]
    lifetime: Option<String>,
}

pub(crate) async fn issue_certificate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path((tenant, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<CertificateView>> {
    let resource = audit_resource(&format!("{tenant}/{name}"));
    let session = s.session(&ctx, AuditAction::CertIssue, resource).await?;
    let parsed = (|| {
        let cref = cred_ref(&tenant, &name, &ctx)?;
        let bytes = body_bytes(body, ctx.request_id)?;
        let b: IssueBody = if bytes.is_empty() { IssueBody::default() } else { parse_json(&bytes, ctx.request_id)? };
        let lifetime = b
            .lifetime
            .as_deref()
            .map(rekey_types::time::parse_duration_secs)
            .transpose()
            .map_err(bad(ErrorCode::BadRequest, &ctx))?
            .map(|secs| secs.unsigned_abs());
        Ok((cref, lifetime))
    })();
    let (cref, lifetime) = session.input(parsed).await?;
    Ok(Json(session.vault.issue_certificate(&session.caller, &cref, lifetime).await.map_err(core(&ctx))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertListQuery {
    /// Only certificates that expire within this time, e.g. `30d`.
    expiring: Option<String>,
}

pub(crate) async fn list_certificates(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<CertListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<CertificateView>>> {
    let session = s.session(&ctx, AuditAction::CertList, String::new()).await?;
    let parsed = query(q, &ctx).and_then(|q| {
        q.expiring
            .as_deref()
            .map(rekey_types::time::parse_duration_secs)
            .transpose()
            .map(|d| d.map(i64::unsigned_abs))
            .map_err(bad(ErrorCode::BadRequest, &ctx))
    });
    let expiring = session.input(parsed).await?;
    Ok(Json(session.vault.list_certificates(&session.caller, expiring).await.map_err(core(&ctx))?))
}

pub(crate) async fn revoke_certificate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(thumbprint): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    let resource = audit_resource(&format!("cert:{thumbprint}"));
    let session = s.session(&ctx, AuditAction::CertRevoke, resource).await?;
    Ok(Json(session.vault.revoke_certificate(&session.caller, &thumbprint).await.map_err(core(&ctx))?))
}
