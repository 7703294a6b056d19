//! The audit log's signed checkpoints: the latest (`GET`), one signed now (`POST`), and an
//! operator's acceptance of a rolled-back log (docs/audit.md).

use axum::extract::State;
use axum::Json;
use rekey_core::checkpoints::{AcceptLog, CheckpointView};
use rekey_types::AuditAction;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{core, ApiResult, AppState};

#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint",
    operation_id = "audit_checkpoint",
    tag = "audit",
    summary = "The latest signed checkpoint of the audit log, with the witnesses' cosignatures",
    responses((status = 200, description = "OK", body = CheckpointView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn latest(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<CheckpointView>> {
    let session = s.session(&ctx, AuditAction::AuditCheckpoint, String::new()).await?;
    Ok(Json(session.vault.audit_checkpoint(&session.caller, false).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/audit/checkpoint",
    operation_id = "sign_checkpoint",
    tag = "audit",
    summary = "Sign a checkpoint of the audit log as it is now, and send it to the witnesses",
    responses((status = 200, description = "OK", body = CheckpointView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn sign(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<CheckpointView>> {
    let session = s.session(&ctx, AuditAction::AuditCheckpoint, String::new()).await?;
    Ok(Json(session.vault.audit_checkpoint(&session.caller, true).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/audit/accept",
    operation_id = "accept_audit_log",
    tag = "audit",
    summary = "Accept the audit log as it is after it was found rolled back; writes resume",
    request_body = AcceptLog,
    responses((status = 200, description = "OK", body = CheckpointView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn accept(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Json<CheckpointView>> {
    let session = s.session(&ctx, AuditAction::AuditAccept, String::new()).await?;
    let input = session
        .input(body_bytes(body, ctx.request_id).and_then(|b| parse_json::<AcceptLog>(&b, ctx.request_id)))
        .await?;
    Ok(Json(session.vault.accept_audit_log(&session.caller, input).await.map_err(core(&ctx))?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvidenceQuery {
    /// The tenant.
    #[param(value_type = rekey_types::TenantName)]
    tenant: String,
    /// Events recorded at or after this time (RFC 3339); all of them when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit/evidence",
    operation_id = "audit_evidence",
    tag = "audit",
    summary = "A tenant's audit events since a time, each with its inclusion proof against a checkpoint signed now",
    params(EvidenceQuery),
    responses((status = 200, description = "OK", body = rekey_core::checkpoints::EvidenceView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn evidence(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<axum::extract::Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<rekey_core::checkpoints::EvidenceView>> {
    let session = s.session(&ctx, AuditAction::AuditProve, String::new()).await?;
    let parsed = crate::routes::query(q, &ctx).and_then(|q| {
        let tenant = rekey_types::TenantName::parse(&q.tenant)
            .map_err(|e| crate::ApiError::new(rekey_types::ErrorCode::InvalidName, e.to_string(), ctx.request_id))?;
        let since = match q.since.as_deref() {
            Some(t) => rekey_types::Timestamp::parse_rfc3339(t).map_err(|e| {
                crate::ApiError::new(rekey_types::ErrorCode::BadRequest, format!("since: {e}"), ctx.request_id)
            })?,
            None => rekey_types::Timestamp::from_micros(0),
        };
        Ok((tenant, since))
    });
    let (tenant, since) = session.input(parsed).await?;
    Ok(Json(session.vault.audit_evidence(&session.caller, &tenant, since).await.map_err(core(&ctx))?))
}
