//! Detection routes (operators only): alerts (list, show, acknowledge, escalate) and decoys
//! (plant, list). See docs/detection.md.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use rekey_core::detect::alerts::{AlertView, Escalation};
use rekey_core::detect::decoys::{DecoyView, PlantDecoys};
use rekey_types::{AlertId, AlertState, AuditAction, CredentialKind, ErrorCode, TenantName};
use serde::Deserialize;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, core, name_error, page, query, ApiResult, AppState};
use crate::ApiError;

fn alert_id(id: &str, ctx: &ReqCtx) -> ApiResult<AlertId> {
    AlertId::from_str(id).map_err(|_| ApiError::new(ErrorCode::BadRequest, "an alert id is a UUID", ctx.request_id))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsQuery {
    /// Only alerts in this state.
    #[param(value_type = Option<AlertState>)]
    state: Option<String>,
    /// Alerts per answer, newest first, 1 to 10,000; default 100.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/alerts",
    operation_id = "list_alerts",
    tag = "detection",
    summary = "List alerts, newest first",
    params(AlertsQuery),
    responses((status = 200, description = "OK", body = Vec<AlertView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn list(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AlertView>>> {
    let session = s.session(&ctx, AuditAction::AlertList, String::new()).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let state = q
            .state
            .as_deref()
            .map(AlertState::from_str)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string(), ctx.request_id))?;
        Ok((state, page("limit", q.limit, 100, &ctx)?))
    })();
    let (state, limit) = session.input(parsed).await?;
    Ok(Json(session.vault.list_alerts(&session.caller, state, limit).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/alerts/{id}",
    operation_id = "show_alert",
    tag = "detection",
    summary = "An alert: its rule, principal, source, the credentials it saw, and what was done",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = AlertView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn show(State(s): State<AppState>, ctx: ReqCtx, Path(id): Path<String>) -> ApiResult<Json<AlertView>> {
    let session = s.session(&ctx, AuditAction::AlertShow, audit_resource(&format!("alert:{id}"))).await?;
    let id = session.input(alert_id(&id, &ctx)).await?;
    Ok(Json(session.vault.show_alert(&session.caller, id).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Why it needs nothing more (a false positive, dealt with): one line, 1 to 500 characters.
    #[schema(schema_with = crate::openapi::note)]
    note: String,
}

#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/ack",
    operation_id = "ack_alert",
    tag = "detection",
    summary = "Acknowledge an open alert, with a note",
    params(crate::openapi::IdPath),
    request_body = AckBody,
    responses((status = 200, description = "OK", body = AlertView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn ack(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<Json<AlertView>> {
    let session = s.session(&ctx, AuditAction::AlertAck, audit_resource(&format!("alert:{id}"))).await?;
    let parsed = (|| {
        let b: AckBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        Ok((alert_id(&id, &ctx)?, b.note))
    })();
    let (id, note) = session.input(parsed).await?;
    Ok(Json(session.vault.ack_alert(&session.caller, id, note).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/escalate",
    operation_id = "escalate_alert",
    tag = "detection",
    summary = "Open an incident from an open alert: its token, the credentials it read, since the first sign",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = Escalation), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn escalate(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<Escalation>> {
    let session = s.session(&ctx, AuditAction::AlertEscalate, audit_resource(&format!("alert:{id}"))).await?;
    let id = session.input(alert_id(&id, &ctx)).await?;
    Ok(Json(session.vault.escalate_alert(&session.caller, id).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PlantBody {
    /// The kind of the decoys; default the tenant's most common kind.
    #[serde(default)]
    #[schema(value_type = Option<CredentialKind>)]
    kind: Option<String>,
    /// How many, 1 to 20; default 1.
    #[serde(default, deserialize_with = "crate::extract::whole_number_opt")]
    #[schema(minimum = 1, maximum = 20)]
    count: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/decoys",
    operation_id = "plant_decoys",
    tag = "detection",
    summary = "Plant decoy credentials in a tenant: any sight of one raises a critical alert",
    params(crate::openapi::TenantPath),
    request_body = PlantBody,
    responses((status = 200, description = "OK", body = Vec<DecoyView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn plant(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(tenant): Path<String>,
    body: RawBody,
) -> ApiResult<Json<Vec<DecoyView>>> {
    let session = s.session(&ctx, AuditAction::DecoyPlant, audit_resource(&format!("tenant:{tenant}"))).await?;
    let parsed = (|| {
        let b: PlantBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let tenant = TenantName::parse(&tenant).map_err(name_error(&ctx))?;
        let kind = b
            .kind
            .as_deref()
            .map(CredentialKind::from_str)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, e.to_string(), ctx.request_id))?;
        Ok(PlantDecoys { tenant, kind, count: b.count.unwrap_or(1) })
    })();
    let input = session.input(parsed).await?;
    Ok(Json(session.vault.plant_decoys(&session.caller, input).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecoysQuery {
    /// Only this tenant's.
    #[param(value_type = Option<TenantName>)]
    tenant: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/decoys",
    operation_id = "list_decoys",
    tag = "detection",
    summary = "List decoy credentials, by tenant and name",
    params(DecoysQuery),
    responses((status = 200, description = "OK", body = Vec<DecoyView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn list_decoys(
    State(s): State<AppState>,
    ctx: ReqCtx,
    q: Result<Query<DecoysQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<DecoyView>>> {
    let session = s.session(&ctx, AuditAction::DecoyList, String::new()).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        q.tenant.as_deref().map(TenantName::parse).transpose().map_err(name_error(&ctx))
    })();
    let tenant = session.input(parsed).await?;
    Ok(Json(session.vault.list_decoys(&session.caller, tenant).await.map_err(core(&ctx))?))
}
