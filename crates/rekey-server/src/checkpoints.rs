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
