use rekey_crypto::CryptoError;
use rekey_store::StoreError;
use rekey_types::{ErrorCode, FieldError, NameError};

/// Errors of the use cases. Each maps to exactly one [`ErrorCode`]. Messages are safe to show to
/// the caller: they never contain a secret, and internal detail stays in the `#[source]` chain,
/// which only the server log sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    #[error("missing, invalid, expired or revoked token")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A denial answered as "not found", so that it does not confirm the resource exists. The
    /// message is identical to a real `NotFound`; only the audit event says "denied".
    #[error("{0} not found")]
    Hidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the audit log cannot be written; the request was refused")]
    AuditUnavailable,
    #[error("the vault is sealed")]
    Sealed,
    #[error(transparent)]
    InvalidShare(rekey_crypto::ShareError),
    #[error("{0}")]
    KeyCompromised(String),
    #[error("{0}")]
    KeyDestroyed(String),
    #[error("{0}")]
    KeyInUse(String),
    #[error("{0}")]
    NotRotatable(String),
    #[error("{0}")]
    Frozen(String),
    /// A version's payload does not open for the target fields stored beside it.
    #[error("{0}")]
    TargetMismatch(String),
    #[error("{0}")]
    RotationInProgress(String),
    #[error("{0}")]
    LinkGone(String),
    /// A source whose failed attempts spent its allowance; the seconds it should wait.
    #[error("too many failed attempts from this address; try again in {0} s")]
    TooManyAttempts(u64),
    #[error("the seal failed: {0}")]
    Seal(#[source] CryptoError),
    #[error("the stored secret cannot be decrypted")]
    Decrypt(#[source] CryptoError),
    #[error("storage failed")]
    Store(#[source] StoreError),
    #[error("key operation failed")]
    Crypto(#[source] CryptoError),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadRequest(_) => ErrorCode::BadRequest,
            CoreError::InvalidName(_) => ErrorCode::InvalidName,
            CoreError::InvalidField(_) => ErrorCode::InvalidField,
            CoreError::Unauthenticated => ErrorCode::Unauthenticated,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::NotFound(_) | CoreError::Hidden(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::AuditUnavailable => ErrorCode::AuditUnavailable,
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
            CoreError::TooManyAttempts(_) => ErrorCode::TooManyRequests,
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
            | CoreError::Forbidden(_)
            | CoreError::Hidden(_)
            | CoreError::TooManyAttempts(_) => rekey_types::AuditOutcome::Denied,
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
