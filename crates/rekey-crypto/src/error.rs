#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The ciphertext or wrapped key was modified, truncated, moved to another slot, or is
    /// opened with the wrong key. Deliberately one error: telling these apart helps an attacker.
    #[error("decryption failed: the data was tampered with, moved from its slot, or the key is wrong")]
    Decrypt,
    /// A format 1 payload asked for by a caller that would send the secret to a target: it was
    /// stored before target binding and cannot say where it may go.
    #[error("the version was stored before target binding and is not yet migrated; it is not sent to any target")]
    Unbound,
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    #[error("ciphertext was made with key version {found}, expected {expected}")]
    WrongKeyVersion { found: u32, expected: u32 },
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the vault is sealed")]
    Sealed,
    #[error("the seal holds no root key version {0}")]
    RootVersionMissing(u32),
    #[error(transparent)]
    Share(#[from] crate::seal::shamir::ShareError),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("HSM: {0}")]
    Hsm(String),
    #[error("seal: {0}")]
    Seal(String),
    #[error("seal key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
