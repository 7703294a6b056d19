use rekey_crypto::CryptoError;
use rekey_store::StoreError;
use rekey_types::{ErrorCode, FieldError, NameError};

/// Errors of the use cases. Each maps to exactly one [`ErrorCode`]. Messages are safe to show to
/// the caller: they never contain a secret, and internal detail stays in the `#[source]` chain,
/// which only the server log sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Malformed input, or a rule of the request broken; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// A name is not a valid slug.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A credential's fields do not fit its kind.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// No token, or an unknown, expired or revoked one (one message for all).
    #[error("missing, invalid, expired or revoked token")]
    Unauthenticated,
    /// A workload's login was refused; the reason names what failed (never a claim's value).
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(String),
    /// A denial answered as "not found", so that it does not confirm the resource exists. The
    /// message is identical to a real `NotFound`; only the audit event says "denied".
    #[error("{0} not found")]
    Hidden(String),
    /// It exists already, a concurrent update won, or its state does not allow the request.
    #[error("{0}")]
    Conflict(String),
    /// The audit event could not be written durably, so nothing was done or sent.
    #[error("the audit log cannot be written; the request was refused")]
    AuditUnavailable,
    /// The audit log is shorter than, or inconsistent with, a signed checkpoint (the finding,
    /// for the server log; callers are shown it by `audit checkpoint`, not in the error):
    /// writes are refused until an operator accepts the log.
    #[error(
        "the audit log is shorter than, or inconsistent with, a checkpoint this server signed: writes are refused \
         until an operator accepts it (`rekey audit checkpoint` shows the finding, `rekey audit accept` resumes)"
    )]
    AuditRollback(String),
    /// The vault is sealed.
    #[error("the vault is sealed")]
    Sealed,
    /// An unseal share that does not count.
    #[error(transparent)]
    InvalidShare(rekey_crypto::ShareError),
    /// The data is wrapped under a key version marked compromised.
    #[error("{0}")]
    KeyCompromised(String),
    /// The key that wrapped the data was destroyed.
    #[error("{0}")]
    KeyDestroyed(String),
    /// The key version still wraps data.
    #[error("{0}")]
    KeyInUse(String),
    /// Rekey cannot rotate this credential; the message says why.
    #[error("{0}")]
    NotRotatable(String),
    /// An incident froze this credential.
    #[error("{0}")]
    Frozen(String),
    /// A version's payload does not open for the target fields stored beside it.
    #[error("{0}")]
    TargetMismatch(String),
    /// The credential already has an unfinished rotation.
    #[error("{0}")]
    RotationInProgress(String),
    /// A reset link used, revoked or expired.
    #[error("{0}")]
    LinkGone(String),
    /// A source whose failed attempts spent its allowance; the seconds it should wait.
    #[error("too many failed attempts from this address; try again in {0} s")]
    TooManyAttempts(u64),
    /// A token over its role's request rate; the seconds it should wait.
    #[error("this token is over its role's request rate; try again in {0} s")]
    RateLimited(u64),
    /// The seal failed (the HSM, the dev key file).
    #[error("the seal failed: {0}")]
    Seal(#[source] CryptoError),
    /// A stored ciphertext does not decrypt.
    #[error("the stored secret cannot be decrypted")]
    Decrypt(#[source] CryptoError),
    /// The store failed.
    #[error("storage failed")]
    Store(#[source] StoreError),
    /// A key operation failed.
    #[error("key operation failed")]
    Crypto(#[source] CryptoError),
}

impl CoreError {
    /// The error code (and so the HTTP status) the API answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadRequest(_) => ErrorCode::BadRequest,
            CoreError::InvalidName(_) => ErrorCode::InvalidName,
            CoreError::InvalidField(_) => ErrorCode::InvalidField,
            CoreError::Unauthenticated | CoreError::LoginRefused(_) => ErrorCode::Unauthenticated,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::NotFound(_) | CoreError::Hidden(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::AuditUnavailable => ErrorCode::AuditUnavailable,
            CoreError::AuditRollback(_) => ErrorCode::AuditRollback,
            CoreError::Sealed => ErrorCode::Sealed,
            CoreError::InvalidShare(_) => ErrorCode::InvalidShare,
            CoreError::KeyCompromised(_) => ErrorCode::KeyCompromised,
            CoreError::KeyDestroyed(_) => ErrorCode::KeyDestroyed,
            CoreError::KeyInUse(_) => ErrorCode::KeyInUse,
            CoreError::NotRotatable(_) => ErrorCode::NotRotatable,
            CoreError::Frozen(_) => ErrorCode::Frozen,
            CoreError::TargetMismatch(_) => ErrorCode::TargetMismatch,
            CoreError::RotationInProgress(_) => ErrorCode::RotationInProgress,
            CoreError::LinkGone(_) => ErrorCode::LinkGone,
            CoreError::TooManyAttempts(_) | CoreError::RateLimited(_) => ErrorCode::TooManyRequests,
            CoreError::Seal(_) => ErrorCode::Internal,
            CoreError::Decrypt(_) => ErrorCode::DecryptFailed,
            CoreError::Store(_) | CoreError::Crypto(_) => ErrorCode::Internal,
        }
    }
}

impl CoreError {
    /// How the audit log records a request that failed with this error.
    pub fn audit_outcome(&self) -> rekey_types::AuditOutcome {
        match self {
            CoreError::Unauthenticated
            | CoreError::LoginRefused(_)
            | CoreError::Forbidden(_)
            | CoreError::Hidden(_)
            | CoreError::TooManyAttempts(_)
            | CoreError::RateLimited(_) => rekey_types::AuditOutcome::Denied,
            _ => rekey_types::AuditOutcome::Error,
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => CoreError::NotFound(format!("{entity} {id}")),
            StoreError::AlreadyExists { entity, id } => CoreError::Conflict(format!("{entity} {id} already exists")),
            StoreError::Conflict => CoreError::Conflict("a concurrent update won; try again".into()),
            other => CoreError::Store(other),
        }
    }
}

impl CoreError {
    /// A failure of the seal: sealed, a share problem, a missing root version, or an HSM error.
    pub fn from_seal(e: CryptoError) -> Self {
        match e {
            CryptoError::Sealed => CoreError::Sealed,
            CryptoError::Share(s) => CoreError::InvalidShare(s),
            CryptoError::RootVersionMissing(v) => {
                CoreError::KeyDestroyed(format!("root key version root@{v} is gone; what it wrapped is unrecoverable"))
            }
            other => CoreError::Seal(other),
        }
    }
}
