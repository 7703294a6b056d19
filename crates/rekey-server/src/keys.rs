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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InitBody {
    /// How many shares to make, 2 to 255.
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 2, maximum = 255)]
    shares: u8,
    /// How many shares unseal, 2 to `shares` (a rule between two fields this document cannot
    /// state; the server refuses a larger one).
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 2, maximum = 255)]
    threshold: u8,
}

#[derive(Serialize, utoipa::ToSchema)]
struct InitAnswer<'a> {
    /// Each share is shown once, here; Rekey keeps none of them.
    shares: Vec<&'a str>,
    threshold: u8,
}

/// Unauthenticated, like the unseal: there is no token before the first unseal. It works once
/// per store; afterwards it answers `409 conflict`.
#[utoipa::path(
    post,
    path = "/v1/sys/init",
    operation_id = "init_seal",
    tag = "sys",
    summary = "Shamir seal: create the root key and split it into shares (once per store)",
    request_body = InitBody,
    responses((status = 200, description = "OK", body = InitAnswer), crate::openapi::ApiErrors),
    security(())
)]
pub(crate) async fn init(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let b: InitBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    let outcome = s.keeper.init(b.shares, b.threshold).await.map_err(core(&ctx))?;
    let answer =
        InitAnswer { shares: outcome.shares.iter().map(|s| s.as_str()).collect(), threshold: outcome.threshold };
    json_no_store(&answer, &ctx)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UnsealBody {
    /// One share, `rekey-share-…` (a reset, too, takes one: only a share holder may reset).
    share: SecretText,
    /// Forget the shares given so far (with one of them, which does not count).
    #[serde(default)]
    reset: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct UnsealAnswer {
    sealed: bool,
    progress: u8,
    threshold: u8,
    /// The root operator token, only when this unseal opened a fresh store. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    root_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/sys/unseal",
    operation_id = "unseal",
    tag = "sys",
    summary = "Shamir seal: give one share, or reset with one; the vault opens at the threshold",
    request_body = UnsealBody,
    responses((status = 200, description = "OK", body = UnsealAnswer), crate::openapi::ApiErrors),
    security(())
)]
pub(crate) async fn unseal(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let b: UnsealBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
    let share = b.share;
    if b.reset {
        // Only a share holder may forget the shares given so far: the reset carries a share
        // (which does not count toward the threshold).
        let threshold = s.keeper.unseal_reset(share.expose(), ctx.source).await.map_err(core(&ctx))?;
        let status = s.keeper.seal_status().await.map_err(core(&ctx))?;
        let answer = UnsealAnswer { sealed: status.sealed, progress: 0, threshold, root_token: None };
        return json_no_store(&answer, &ctx);
    }
    let outcome = s.keeper.unseal(share.expose(), ctx.source).await.map_err(core(&ctx))?;
    let answer = UnsealAnswer {
        sealed: outcome.sealed,
        progress: outcome.progress,
        threshold: outcome.threshold,
        root_token: outcome.root_token.as_ref().map(|t| t.expose().to_owned()),
    };
    json_no_store(&answer, &ctx)
}

#[utoipa::path(
    post,
    path = "/v1/sys/seal",
    operation_id = "seal",
    tag = "sys",
    summary = "Seal the vault: key material leaves memory",
    responses((status = 200, description = "OK", body = crate::answers::Sealed), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn seal(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<crate::answers::Sealed>> {
    let session = s.session(&ctx, AuditAction::SysSeal, "seal".into()).await?;
    s.keeper.seal(&session.caller).await.map_err(core(&ctx))?;
    Ok(Json(crate::answers::Sealed { sealed: true }))
}

// ---- keys ---------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyListQuery {
    /// Only this tenant's keys (and the root's).
    #[param(value_type = Option<TenantName>)]
    tenant: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    summary = "Root key and tenant key versions, their state and what each wraps",
    params(KeyListQuery),
    responses((status = 200, description = "OK", body = KeyListView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// Rotate this tenant's key.
    #[serde(default)]
    #[schema(value_type = Option<TenantName>)]
    tenant: Option<String>,
    /// Rotate every tenant's key.
    #[serde(default)]
    all: bool,
    /// Rotate the root key.
    #[serde(default)]
    root: bool,
    /// Shamir root rotation: the new split's shares, 2 to 255.
    #[serde(default, deserialize_with = "crate::extract::whole_number_opt")]
    #[schema(minimum = 2, maximum = 255)]
    shares: Option<u8>,
    /// Shamir root rotation: the new split's threshold, 2 to `shares`.
    #[serde(default, deserialize_with = "crate::extract::whole_number_opt")]
    #[schema(minimum = 2, maximum = 255)]
    threshold: Option<u8>,
}

/// Starts a rotation and answers with its job; a Shamir root rotation answers with the new
/// shares instead, and starts only at `/v1/keys/rotate/commit`.
#[utoipa::path(
    post,
    path = "/v1/keys/rotate",
    operation_id = "rotate_keys",
    tag = "keys",
    summary = "Rotate a tenant key, every tenant key, or the root key",
    request_body = RotateBody,
    responses((status = 200, description = "OK", body = crate::answers::RotateAnswer), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn rotate(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::KeyRotate, String::new()).await?;
    let caller = &session.caller;
    let parsed = (|| {
        let b: RotateBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        for (name, value) in [("shares", b.shares), ("threshold", b.threshold)] {
            if value.is_some_and(|v| v < 2) {
                return Err(ApiError::new(ErrorCode::BadRequest, format!("{name}: 2 to 255"), ctx.request_id));
            }
        }
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
        return json_no_store(&crate::answers::RotateAnswer::Split(split), &ctx);
    }
    let job = vault.rotate(caller, scope).await.map_err(core(&ctx))?;
    json_no_store(&crate::answers::RotateAnswer::Job(job), &ctx)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    /// The key set id the first step answered: 16 hex digits.
    #[schema(pattern = "^[0-9a-fA-F]{16}$")]
    set_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/keys/rotate/commit",
    tag = "keys",
    summary = "Shamir root rotation, step two: switch to the new shares and rewrap every tenant key",
    request_body = CommitBody,
    responses((status = 200, description = "OK", body = JobView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn rotate_commit(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Json<JobView>> {
    let session = s.session(&ctx, AuditAction::KeyRotate, "root".into()).await?;
    let parsed = body_bytes(body, ctx.request_id).and_then(|b| parse_json::<CommitBody>(&b, ctx.request_id));
    let b = session.input(parsed).await?;
    Ok(Json(session.vault.commit_root_split(&session.caller, &b.set_id).await.map_err(core(&ctx))?))
}

fn key_ref(raw: &str, ctx: &ReqCtx) -> ApiResult<KeyRef> {
    KeyRef::from_str(raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string(), ctx.request_id))
}

#[utoipa::path(
    get,
    path = "/v1/keys/{key}",
    tag = "keys",
    summary = "What a key version wraps",
    params(crate::openapi::KeyPath),
    responses((status = 200, description = "OK", body = WrappedByView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
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

#[utoipa::path(
    post,
    path = "/v1/keys/{key}/compromise",
    tag = "keys",
    summary = "Mark a key version compromised and rotate off it",
    params(crate::openapi::KeyPath),
    responses((status = 200, description = "OK", body = JobView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DestroyQuery {
    /// Destroy it even though it still wraps data, which becomes unrecoverable.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(
    delete,
    path = "/v1/keys/{key}",
    tag = "keys",
    summary = "Destroy a key version",
    params(crate::openapi::KeyPath, DestroyQuery),
    responses((status = 200, description = "OK", body = DestroyedView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/shred",
    tag = "keys",
    summary = "Destroy every key of a tenant (crypto-shredding); its audit history stays",
    params(crate::openapi::TenantPath),
    responses((status = 200, description = "OK", body = ShreddedView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[utoipa::path(
    get,
    path = "/v1/keys/jobs",
    tag = "keys",
    summary = "Key jobs, newest first",
    responses((status = 200, description = "OK", body = Vec<JobView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn list_jobs(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<JobView>>> {
    let session = s.session(&ctx, AuditAction::KeyJobs, String::new()).await?;
    Ok(Json(session.vault.jobs(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/keys/jobs/{id}",
    tag = "keys",
    summary = "One key job and its progress",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = JobView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    /// Lifetime, 1 hour to 2 years, e.g. `90d` (the default).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::duration)]
    lifetime: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/credentials/{name}/certificate",
    tag = "certificates",
    summary = "Issue a certificate for an entra-app credential; its key becomes the pending version",
    params(crate::openapi::CredentialPath),
    request_body = IssueBody,
    responses((status = 200, description = "OK", body = CertificateView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertListQuery {
    /// Only certificates that expire within this time, e.g. `30d`.
    #[param(schema_with = crate::openapi::duration_param)]
    expiring: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/certificates",
    tag = "certificates",
    summary = "The certificate inventory",
    params(CertListQuery),
    responses((status = 200, description = "OK", body = Vec<CertificateView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
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

#[utoipa::path(
    post,
    path = "/v1/certificates/{thumbprint}/revoke",
    tag = "certificates",
    summary = "Mark a certificate revoked",
    params(crate::openapi::ThumbprintPath),
    responses((status = 200, description = "OK", body = CertificateView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn revoke_certificate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(thumbprint): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    let resource = audit_resource(&format!("cert:{thumbprint}"));
    let session = s.session(&ctx, AuditAction::CertRevoke, resource).await?;
    Ok(Json(session.vault.revoke_certificate(&session.caller, &thumbprint).await.map_err(core(&ctx))?))
}
