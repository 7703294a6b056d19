/// Why a cryptographic operation failed. Never carries key material or a secret.
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
    /// A blob that is not in Rekey's format (too short, unknown version or algorithm).
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    #[error("ciphertext was made with key version {found}, expected {expected}")]
    /// A blob made under another key version than the one given to open it.
    WrongKeyVersion {
        /// The version in the blob's header.
        found: u32,
        /// The version given.
        expected: u32,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The seal holds no root key now.
    #[error("the vault is sealed")]
    Sealed,
    /// A root key version the seal does not hold.
    #[error("the seal holds no root key version {0}")]
    RootVersionMissing(u32),
    /// An unseal share was refused.
    #[error(transparent)]
    Share(#[from] crate::seal::shamir::ShareError),
    /// A certificate could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The PKCS#11 token refused or failed.
    #[error("HSM: {0}")]
    Hsm(String),
    /// The seal cannot do what was asked (wrong seal for this store, no shares, …).
    #[error("seal: {0}")]
    Seal(String),
    /// The dev seal's key file could not be read or written.
    #[error("seal key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
