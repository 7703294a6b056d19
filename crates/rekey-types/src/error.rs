//! The table of error codes. Each code has exactly one HTTP status; the server maps errors to
//! codes in one place and the CLI prints them. Documented in `docs/errors.md`.

use serde::{Deserialize, Serialize};

/// An error code of the API (`{code, message, request_id}`), with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, wrong types, unknown fields, bad query parameters.
    BadRequest,
    /// A name (tenant, credential, region) is not a valid slug.
    InvalidName,
    /// A credential's fields do not fit its kind, or a value does not parse.
    InvalidField,
    /// No token, or a token that is unknown, expired or revoked.
    Unauthenticated,
    /// The token is valid but may not do this.
    Forbidden,
    /// The resource does not exist (or the caller may not learn that it does).
    NotFound,
    /// The resource already exists, or a concurrent update won.
    Conflict,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// The body is not `application/json` (or `application/x-ndjson` where that is expected).
    UnsupportedMediaType,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The seal is closed: no key material is available.
    Sealed,
    /// An unseal share is malformed, mistyped, repeated, or from another key set.
    InvalidShare,
    /// The data is wrapped under a key version marked compromised; it is served again only
    /// after a rotation has moved it off that key.
    KeyCompromised,
    /// The key that wrapped the data was destroyed; the data is unrecoverable.
    KeyDestroyed,
    /// The key version still wraps data; destroying it needs `force`.
    KeyInUse,
    /// The credential's kind cannot be rotated by Rekey (the customer changes it), or its fields
    /// lack what rotation needs.
    NotRotatable,
    /// A rotation of this credential is already under way.
    RotationInProgress,
    /// An incident froze this credential: connectors may not reveal it until it is rotated.
    Frozen,
    /// A self-service reset link that was already used, was revoked, or expired.
    LinkGone,
    /// The audit log cannot be written, so the request is refused (fail closed).
    AuditUnavailable,
    /// The audit log is shorter than, or inconsistent with, a checkpoint the server signed: it
    /// refuses writes until an operator accepts the log as it is (`rekey audit accept`).
    AuditRollback,
    /// The data cannot be decrypted: tampered, swapped, or its key is gone.
    DecryptFailed,
    /// A version's secret does not open for the target fields stored with it (they were
    /// changed outside Rekey): nothing was sent.
    TargetMismatch,
    /// The body did not arrive within the server's time limit.
    RequestTimeout,
    /// Too many requests from this address at once; `Retry-After` says when to try again.
    TooManyRequests,
    /// The server is at its limit of requests in flight; `Retry-After` says when to try again.
    Overloaded,
    /// Anything else. The detail is only in the server log, under the request id.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of `docs/errors.md`.
    pub const ALL: [ErrorCode; 27] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidName,
        ErrorCode::InvalidField,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Sealed,
        ErrorCode::InvalidShare,
        ErrorCode::KeyCompromised,
        ErrorCode::KeyDestroyed,
        ErrorCode::KeyInUse,
        ErrorCode::NotRotatable,
        ErrorCode::RotationInProgress,
        ErrorCode::Frozen,
        ErrorCode::LinkGone,
        ErrorCode::AuditUnavailable,
        ErrorCode::AuditRollback,
        ErrorCode::DecryptFailed,
        ErrorCode::TargetMismatch,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyRequests,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
    ];

    /// The code as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Sealed => "sealed",
            ErrorCode::InvalidShare => "invalid_share",
            ErrorCode::KeyCompromised => "key_compromised",
            ErrorCode::KeyDestroyed => "key_destroyed",
            ErrorCode::KeyInUse => "key_in_use",
            ErrorCode::NotRotatable => "not_rotatable",
            ErrorCode::RotationInProgress => "rotation_in_progress",
            ErrorCode::Frozen => "frozen",
            ErrorCode::LinkGone => "link_gone",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::AuditRollback => "audit_rollback",
            ErrorCode::DecryptFailed => "decrypt_failed",
            ErrorCode::TargetMismatch => "target_mismatch",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code is always sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidName | ErrorCode::InvalidField | ErrorCode::InvalidShare => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict
            | ErrorCode::KeyCompromised
            | ErrorCode::KeyInUse
            | ErrorCode::NotRotatable
            | ErrorCode::RotationInProgress
            | ErrorCode::TargetMismatch => 409,
            ErrorCode::KeyDestroyed | ErrorCode::LinkGone => 410,
            ErrorCode::Frozen => 423,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal | ErrorCode::DecryptFailed => 500,
            ErrorCode::Sealed | ErrorCode::AuditUnavailable | ErrorCode::AuditRollback | ErrorCode::Overloaded => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
