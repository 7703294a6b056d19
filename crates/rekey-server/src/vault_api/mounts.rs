//! The one KV v2 mount, as Vault clients discover it: `bao kv get` and consul-template ask
//! `sys/internal/ui/mounts/<path>` for the mount and engine version of a path before they read
//! it; `sys/mounts` lists it. Any token may read either (they name the mount, nothing stored);
//! each read is audited (`sys.mounts`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_types::{AuditAction, ErrorCode};
use serde::Serialize;

use super::envelope::Envelope;
use crate::extract::ReqCtx;
use crate::routes::{core, ApiResult, AppState};
use crate::ApiError;

#[derive(Serialize)]
struct Options {
    version: &'static str,
}

#[derive(Serialize)]
struct Config {
    default_lease_ttl: u64,
    max_lease_ttl: u64,
    force_no_cache: bool,
}

/// A mount as `sys/mounts` describes one.
#[derive(Serialize)]
struct Mount {
    #[serde(rename = "type")]
    kind: &'static str,
    description: &'static str,
    accessor: String,
    config: Config,
    options: Options,
    local: bool,
    seal_wrap: bool,
    external_entropy_access: bool,
}

fn mount(name: &str) -> Mount {
    Mount {
        kind: "kv",
        description: "Rekey credentials, read-only: <tenant>/<credential>",
        accessor: format!("kv_rekey_{name}"),
        config: Config { default_lease_ttl: 0, max_lease_ttl: 0, force_no_cache: false },
        options: Options { version: "2" },
        local: false,
        seal_wrap: false,
        external_entropy_access: false,
    }
}

#[derive(Serialize)]
struct WithPath {
    #[serde(flatten)]
    mount: Mount,
    path: String,
}

/// `GET /v1/sys/internal/ui/mounts/<path>`: the mount of `path` when it is inside the KV
/// mount; `404` otherwise (a client then takes the path for KV version 1 and reads it as it is,
/// which answers `404` too).
pub(super) async fn ui_mount(State(s): State<AppState>, ctx: ReqCtx, Path(path): Path<String>) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::SysMounts, String::new()).await?;
    session.vault.read_mounts(&session.caller).await.map_err(core(&ctx))?;
    let name = &s.vault_api.mount;
    let path = path.trim_start_matches('/');
    let inside = path.strip_prefix(name.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !inside {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no mount at {path}; the KV mount is {name}/"),
            ctx.request_id,
        ));
    }
    let data = WithPath { mount: mount(name), path: format!("{name}/") };
    Ok(Json(Envelope::new(ctx.request_id, "system", data)).into_response())
}

/// `GET /v1/sys/mounts`: the KV mount, keyed by its path (under `data`, and at the top level
/// too, as Vault answers for older clients).
pub(super) async fn list(State(s): State<AppState>, ctx: ReqCtx) -> ApiResult<Response> {
    let session = s.session(&ctx, AuditAction::SysMounts, String::new()).await?;
    session.vault.read_mounts(&session.caller).await.map_err(core(&ctx))?;
    let key = format!("{}/", s.vault_api.mount);
    let data = std::collections::BTreeMap::from([(key.clone(), mount(&s.vault_api.mount))]);
    let mut body = serde_json::to_value(Envelope::new(ctx.request_id, "system", data))
        .map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed", ctx.request_id))?;
    if let Some(top) = body.as_object_mut() {
        top.insert(key, serde_json::to_value(mount(&s.vault_api.mount)).unwrap_or_default());
    }
    Ok(Json(body).into_response())
}
