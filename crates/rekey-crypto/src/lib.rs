//! Seals, the Rekey key hierarchy and envelope encryption.
//!
//! This is the only crate that touches key bytes. The hierarchy (DESIGN.md):
//!
//! ```text
//! root key   held by a Seal (dev key file now; Shamir shares or an HSM later)
//!  └ tenant KEK   one per tenant and version, stored wrapped by the root key
//!     └ DEK       one per credential version, random, stored wrapped by the tenant KEK
//!        └ payload   AES-256-GCM, associated data binding tenant, credential, version, kind
//!                    and (format 2) the name and target fields the secret was stored for
//! ```
//!
//! Every ciphertext and wrapped key starts with a versioned header (see [`envelope`]) that names
//! the key that opens it, and the header is itself authenticated. No primitive is written here:
//! AES-256-GCM comes from RustCrypto's `aes-gcm`, HMAC and SHA-256 from `hmac` and `sha2`.
//!
//! Must never: log, format or serialize a key; hand key bytes out of this crate except to a seal.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit_mac;
pub mod cert;
pub mod envelope;
mod error;
pub mod integrity;
pub mod jws;
pub mod jwt;
pub mod keys;
pub mod link;
pub mod password;
pub mod seal;
pub mod signing;
pub mod token;

pub use audit_mac::AuditKey;
#[cfg(feature = "legacy-format")]
pub use envelope::seal_legacy_payload;
pub use envelope::{
    bind_legacy_payload, is_legacy_payload, kek_version_of, open_legacy_payload, open_payload, rewrap_dek,
    seal_payload, PayloadSlot, SealedPayload, TargetBinding,
};
pub use error::CryptoError;
pub use integrity::{Fingerprint, IntegrityKey};
pub use keys::{Dek, Kek, SystemKey};
pub use seal::dev::DevSeal;
pub use seal::pkcs11::{Pkcs11Options, Pkcs11Seal};
pub use seal::shamir::{NewSplit, SealedKeyring, ShamirSeal, Share, ShareCommitment, ShareError};
pub use seal::{KeyContext, Seal};
pub use signing::SigningKey;
