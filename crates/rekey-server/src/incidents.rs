//! Incident routes: open, list, show, the credentials in scope, contain, close.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use rekey_core::incidents::{ContainReport, IncidentItemView, IncidentReport, IncidentView, OpenIncident};
use rekey_core::response::share::ShareOptions;
use rekey_core::stix::bundle::Tlp;
use rekey_types::{AuditAction, CredRef, ErrorCode, IncidentId, Timestamp};
use serde::Deserialize;

use crate::extract::{body_bytes, parse_json, RawBody, ReqCtx};
use crate::routes::{audit_resource, core, query, ApiResult, AppState};
use crate::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    /// One line, 1 to 200 characters.
    #[schema(schema_with = crate::openapi::title)]
    title: String,
    /// Selectors (docs/incidents.md): `key:K`, `cert:THUMBPRINT`, `token:ID`, `region:R,…`,
    /// `tenant:T,…`, `kind:K,…`, `cred:T/N`; 1 to 100 of them.
    #[schema(schema_with = crate::openapi::scope)]
    scope: Vec<String>,
    /// When the exposure began, RFC 3339, e.g. `2026-01-12T00:00:00Z`.
    #[serde(default)]
    #[schema(value_type = Option<Timestamp>)]
    since: Option<String>,
}

fn incident_id(id: &str, ctx: &ReqCtx) -> ApiResult<IncidentId> {
    IncidentId::from_str(id)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "an incident id is a UUID", ctx.request_id))
}

#[utoipa::path(
    post,
    path = "/v1/incidents",
    operation_id = "open_incident",
    tag = "incidents",
    summary = "Open an incident: its scope and since; computes and stores the blast radius",
    request_body = OpenBody,
    responses((status = 200, description = "OK", body = IncidentReport), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn open(State(s): State<AppState>, ctx: ReqCtx, body: RawBody) -> ApiResult<Json<IncidentReport>> {
    let session = s.session(&ctx, AuditAction::IncidentOpen, String::new()).await?;
    let parsed = (|| {
        let b: OpenBody = parse_json(&body_bytes(body, ctx.request_id)?, ctx.request_id)?;
        let since = b
            .since
            .as_deref()
            .map(Timestamp::parse_rfc3339)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("since: {e}"), ctx.request_id))?;
        Ok(OpenIncident { title: b.title, scope: b.scope, since })
    })();
    let input = session.input(parsed).await?;
    Ok(Json(session.vault.open_incident(&session.caller, input).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/incidents",
    operation_id = "list_incidents",
    tag = "incidents",
    summary = "List incidents, newest first",
    responses((status = 200, description = "OK", body = Vec<IncidentView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn list(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Json<Vec<IncidentView>>> {
    let session = s.session(&ctx, AuditAction::IncidentList, String::new()).await?;
    Ok(Json(session.vault.list_incidents(&session.caller).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    get,
    path = "/v1/incidents/{id}",
    operation_id = "show_incident",
    tag = "incidents",
    summary = "An incident: counts by region, tenant and kind, reveals since, timeline",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = IncidentReport), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn show(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentReport>> {
    let resource = audit_resource(&format!("incident:{id}"));
    let session = s.session(&ctx, AuditAction::IncidentShow, resource).await?;
    let id = session.input(incident_id(&id, &ctx)).await?;
    Ok(Json(session.vault.show_incident(&session.caller, id).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemsQuery {
    /// `tenant/name` to continue after.
    #[param(value_type = Option<CredRef>)]
    after: Option<String>,
    /// Items per page, 1 to 10,000; default 1,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/incidents/{id}/items",
    operation_id = "incident_items",
    tag = "incidents",
    summary = "The credentials in scope, with reasons and reveals since",
    params(crate::openapi::IdPath, ItemsQuery),
    responses((status = 200, description = "OK", body = Vec<IncidentItemView>), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn items(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    q: Result<Query<ItemsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<IncidentItemView>>> {
    let resource = audit_resource(&format!("incident:{id}"));
    let session = s.session(&ctx, AuditAction::IncidentItems, resource).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let after = q
            .after
            .as_deref()
            .map(CredRef::parse)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("after: {e}"), ctx.request_id))?;
        Ok((incident_id(&id, &ctx)?, after, crate::routes::page("limit", q.limit, 1000, &ctx)?))
    })();
    let (id, after, limit) = session.input(parsed).await?;
    Ok(Json(session.vault.incident_items(&session.caller, id, after, limit).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ContainBody {
    /// Also freeze reveals of every credential in scope until it is rotated.
    #[serde(default)]
    freeze: bool,
    /// Say what would be done, do nothing.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/v1/incidents/{id}/contain",
    operation_id = "contain_incident",
    tag = "incidents",
    summary = "Compromise the key versions, revoke the tokens and certificates in scope, freeze reveals",
    params(crate::openapi::IdPath),
    request_body = ContainBody,
    responses((status = 200, description = "OK", body = ContainReport), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn contain(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<Json<ContainReport>> {
    let resource = audit_resource(&format!("incident:{id}"));
    let session = s.session(&ctx, AuditAction::IncidentContain, resource).await?;
    let parsed = (|| {
        let bytes = body_bytes(body, ctx.request_id)?;
        let b: ContainBody =
            if bytes.is_empty() { ContainBody::default() } else { parse_json(&bytes, ctx.request_id)? };
        Ok((incident_id(&id, &ctx)?, b))
    })();
    let (id, b) = session.input(parsed).await?;
    Ok(Json(session.vault.contain_incident(&session.caller, id, b.freeze, b.dry_run).await.map_err(core(&ctx))?))
}

#[utoipa::path(
    post,
    path = "/v1/incidents/{id}/close",
    operation_id = "close_incident",
    tag = "incidents",
    summary = "Close an incident",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "OK", body = IncidentView), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator"])))
)]
pub(crate) async fn close(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentView>> {
    let resource = audit_resource(&format!("incident:{id}"));
    let session = s.session(&ctx, AuditAction::IncidentClose, resource).await?;
    let id = session.input(incident_id(&id, &ctx)).await?;
    Ok(Json(session.vault.close_incident(&session.caller, id).await.map_err(core(&ctx))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareQuery {
    /// The TLP 2.0 marking: `clear`, `green`, `amber` (the default), `amber+strict` or `red`.
    #[param(pattern = "^(clear|green|amber|amber\\+strict|red)$")]
    tlp: Option<String>,
    /// Name the tenants (default false: the bundle gives counts only).
    name_tenants: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/v1/incidents/{id}/stix",
    operation_id = "share_incident",
    tag = "incidents",
    summary = "The incident as a STIX 2.1 bundle to share: sources, stolen certificates, sightings, timeline; TLP 2.0",
    params(crate::openapi::IdPath, ShareQuery),
    responses((status = 200, description = "A STIX 2.1 bundle", body = Object), crate::openapi::ApiErrors),
    security(("bearer" = [])),
    extensions(("x-rekey-roles" = json!(["operator", "auditor"])))
)]
pub(crate) async fn share(
    State(s): State<AppState>,
    ctx: ReqCtx,
    Path(id): Path<String>,
    q: Result<Query<ShareQuery>, QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let resource = audit_resource(&format!("incident:{id}"));
    let session = s.session(&ctx, AuditAction::IncidentShare, resource).await?;
    let parsed = (|| {
        let q = query(q, &ctx)?;
        let tlp = match q.tlp.as_deref() {
            None => Tlp::Amber,
            Some(t) => Tlp::parse(t).ok_or_else(|| {
                ApiError::new(ErrorCode::BadRequest, "tlp is clear, green, amber, amber+strict or red", ctx.request_id)
            })?,
        };
        Ok((incident_id(&id, &ctx)?, ShareOptions { tlp, name_tenants: q.name_tenants.unwrap_or(false) }))
    })();
    let (id, options) = session.input(parsed).await?;
    Ok(Json(session.vault.share_incident(&session.caller, id, options).await.map_err(core(&ctx))?))
}
