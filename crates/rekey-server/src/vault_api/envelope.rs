//! Vault's response envelope: every answer of its HTTP API has the same top-level keys, and the
//! clients read `data` (a secret) or `auth` (a login) from it.

use rekey_types::RequestId;
use serde::Serialize;

/// `{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings",
/// "auth", "mount_type"}`. Nothing Rekey serves is leased: the lease fields are always empty.
#[derive(Serialize)]
pub(super) struct Envelope<D: Serialize, A: Serialize = ()> {
    request_id: String,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: D,
    wrap_info: Option<()>,
    warnings: Option<()>,
    auth: Option<A>,
    mount_type: &'static str,
}

impl<A: Serialize> Envelope<Option<()>, A> {
    /// A login's answer: no `data`, the token under `auth`.
    pub(super) fn auth(request_id: RequestId, auth: A) -> Self {
        Self {
            request_id: request_id.to_string(),
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: None,
            wrap_info: None,
            warnings: None,
            auth: Some(auth),
            mount_type: "",
        }
    }
}

impl<D: Serialize> Envelope<D> {
    /// `data` under the request's id; `mount_type` as Vault names the engine that answered.
    pub(super) fn new(request_id: RequestId, mount_type: &'static str, data: D) -> Self {
        Self {
            request_id: request_id.to_string(),
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data,
            wrap_info: None,
            warnings: None,
            auth: None,
            mount_type,
        }
    }
}
