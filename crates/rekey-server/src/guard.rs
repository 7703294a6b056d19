//! Limits before work: what a request may cost the server before anyone knows who sent it.
//!
//! For every request (run by the request middleware, `app::track`), in this order:
//!
//! 1. **Concurrency.** At most `limits.max_concurrent` requests in the server at once (beyond
//!    that `503 overloaded`) and `limits.max_concurrent_per_source` from one address (beyond
//!    that `429 too_many_requests`), both with `Retry-After: 1`.
//! 2. **The token before the body.** A request with a body to a route that needs a token is
//!    authenticated from its headers first; without a valid token it is answered `401` (and
//!    audited, as every failed authentication is) before one byte of its body is read. The
//!    caller found is handed to the handler, which does not look the token up again.
//! 3. **The body under a deadline.** The body is read up to the route's own limit (413 beyond)
//!    within `limits.body_timeout` (408 after it), so a client that trickles a body holds a
//!    connection, not the server's memory.
//!
//! Must never: read a body before the token of a route that needs one was checked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rekey_core::Keeper;
use rekey_types::{AuditAction, ErrorCode, RequestId};

use crate::ApiError;

/// The limits, as configured.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    pub max_concurrent: usize,
    pub max_concurrent_per_source: usize,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_import_bytes: usize,
}

/// Slots of the per-source counts: addresses are counted in the slot their hash picks, so two
/// addresses share a count only when they share a slot (1 in 4,096), and then the limit holds
/// for the two together. No lock on the path of every request.
const SLOTS: usize = 4096;

/// Requests in flight, in all and per source address.
pub struct Guard {
    limits: GuardLimits,
    in_flight: AtomicUsize,
    per_source: Box<[AtomicUsize]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The largest form a reset page takes.
pub(crate) const PAGE_BODY_BYTES: usize = 64 * 1024;

/// Routes under `/v1/` that answer without a token (they authenticate otherwise, or not at all).
const ANONYMOUS: [&str; 8] = [
    "/v1/sys/health",
    "/v1/sys/ready",
    "/v1/sys/status",
    "/v1/openapi.json",
    "/v1/sys/init",
    "/v1/sys/unseal",
    "/v1/auth/jwt/login",
    "/v1/auth/oidc/oidc/auth_url",
];

impl Guard {
    pub fn new(limits: GuardLimits) -> Self {
        Self {
            limits,
            in_flight: AtomicUsize::new(0),
            per_source: (0..SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    /// A place among the requests in flight, or the answer that refuses one.
    fn admit(&self, source: IpAddr) -> Result<Admitted<'_>, (ErrorCode, &'static str)> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limits.max_concurrent {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((ErrorCode::Overloaded, "the server is at its limit of requests in flight"));
        }
        let slot = (std::hash::BuildHasher::hash_one(&self.hasher, source) as usize) % SLOTS;
        if self.per_source[slot].fetch_add(1, Ordering::AcqRel) >= self.limits.max_concurrent_per_source {
            self.per_source[slot].fetch_sub(1, Ordering::AcqRel);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((ErrorCode::TooManyRequests, "too many requests from this address at once"));
        }
        Ok(Admitted { guard: self, slot })
    }
}

/// A request in flight; leaving frees its place.
struct Admitted<'a> {
    guard: &'a Guard,
    slot: usize,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.guard.per_source[self.slot].fetch_sub(1, Ordering::AcqRel);
        self.guard.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn refusal(code: ErrorCode, message: &str, request_id: RequestId) -> Response {
    let error = ApiError::new(code, message, request_id);
    match code {
        ErrorCode::TooManyRequests | ErrorCode::Overloaded => error.retry_after(1),
        _ => error,
    }
    .into_response()
}

/// Whether a body may follow: a length above zero, or none known (chunked).
fn has_body(req: &Request) -> bool {
    axum::body::HttpBody::size_hint(req.body()).exact() != Some(0)
}

/// Runs `next` within the limits; see the module documentation. Called by the request
/// middleware (`app::track`), so that it costs no layer of its own.
pub(crate) async fn guard(guard: &Guard, keeper: &Keeper, req: Request, next: Next, request_id: RequestId) -> Response {
    let Some(source) = crate::extract::source_of(req.extensions()) else {
        return refusal(ErrorCode::Internal, "no client address", request_id);
    };
    let _admitted = match guard.admit(source) {
        Ok(a) => a,
        Err((code, message)) => return refusal(code, message, request_id),
    };
    if !has_body(&req) || req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    // The token first, from the headers, for a route that needs one.
    let needs_token = route.starts_with("/v1/") && !ANONYMOUS.contains(&route.as_str());
    let mut req = req;
    if needs_token {
        // Sealed: refused as every such route is, without reading the body.
        let vault = match keeper.vault() {
            Ok(v) => v,
            Err(e) => return ApiError::from_core(e, request_id).into_response(),
        };
        let bearer = crate::extract::bearer_of(req.headers());
        // Audited as any failed authentication, under the route (the body, which names the
        // resource, is not read for a caller without a token).
        match vault
            .authenticate(bearer.as_deref().map(String::as_str), source, request_id, AuditAction::HttpAuth, &route)
            .await
        {
            Ok(caller) => {
                req.extensions_mut().insert(crate::extract::Authenticated { vault, caller });
            }
            Err(e) => return ApiError::from_core(e, request_id).into_response(),
        }
    }
    // Then the body, up to the route's limit, within the deadline.
    let limits = guard.limits;
    let limit = match route.as_str() {
        "/v1/import" => limits.max_import_bytes,
        // The reset pages' forms (the same limit as their router's).
        r if r.starts_with("/r/") => PAGE_BODY_BYTES,
        _ => limits.max_body_bytes,
    };
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return refusal(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than this server accepts, or was cut off",
                request_id,
            )
        }
        Err(_) => return refusal(ErrorCode::RequestTimeout, "the request body did not arrive in time", request_id),
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
