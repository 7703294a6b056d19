//! Seals: where the root key lives.
//!
//! A seal never hands out the root key; it wraps and unwraps the keys one level down (tenant
//! KEKs and system keys). That is what lets an HSM seal keep the root key inside the HSM.

use rekey_types::TenantId;

use crate::keys::{Kek, SystemKey};
use crate::CryptoError;

/// The slot a wrapped key belongs to; bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyContext<'a> {
    /// Version `version` of `tenant`'s key-encryption key.
    TenantKek {
        /// The tenant.
        tenant: TenantId,
        /// The KEK version.
        version: u32,
    },
    /// A key the server uses for itself, e.g. `audit-chain`.
    System {
        /// What the key is for (`audit-chain`, `integrity`).
        purpose: &'a str,
        /// Its version.
        version: u32,
    },
}

impl KeyContext<'_> {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(48);
        match self {
            KeyContext::TenantKek { tenant, version } => {
                c.extend_from_slice(b"rekey/kek/v1");
                c.extend_from_slice(tenant.as_bytes());
                c.extend_from_slice(&version.to_be_bytes());
            }
            KeyContext::System { purpose, version } => {
                c.extend_from_slice(b"rekey/system/v1");
                c.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
                c.extend_from_slice(purpose.as_bytes());
                c.extend_from_slice(&version.to_be_bytes());
            }
        }
        c
    }
}

/// The four key methods of [`Seal`], written once: each wraps or unwraps with its own purpose
/// through `wrap(purpose, ctx, key)` / `unwrap(purpose, ctx, blob)` of `self` (or of the named
/// field), so no seal can mix up a KEK and a system key.
macro_rules! seal_key_methods {
    ($($field:ident)?) => {
        fn wrap_kek(&self, ctx: KeyContext<'_>, key: &Kek) -> Result<Vec<u8>, CryptoError> {
            self$(.$field)?.wrap(Purpose::WrappedKek, ctx, key.bytes())
        }

        fn unwrap_kek(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<Kek, CryptoError> {
            self$(.$field)?.unwrap(Purpose::WrappedKek, ctx, wrapped).map(Kek::from_bytes)
        }

        fn wrap_system_key(&self, ctx: KeyContext<'_>, key: &SystemKey) -> Result<Vec<u8>, CryptoError> {
            self$(.$field)?.wrap(Purpose::WrappedSystemKey, ctx, key.bytes())
        }

        fn unwrap_system_key(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<SystemKey, CryptoError> {
            self$(.$field)?.unwrap(Purpose::WrappedSystemKey, ctx, wrapped).map(SystemKey::from_bytes)
        }
    };
}
pub(crate) use seal_key_methods;

pub mod dev;
pub mod keyring;
pub mod pkcs11;
pub mod shamir;

/// Something that holds the root key and wraps keys under it.
///
/// Root keys are versioned. New wraps use the newest version; an unwrap uses the version named in
/// the blob's header, so blobs made under an older root key open until a root rotation has moved
/// them and the old version is destroyed.
pub trait Seal: Send + Sync {
    /// `dev`, `shamir`, `pkcs11`.
    fn kind(&self) -> rekey_types::SealKind;

    /// Whether the root key is available now.
    fn is_unsealed(&self) -> bool;

    /// The root key version that new wraps use; `None` while sealed.
    fn root_version(&self) -> Option<u32>;

    /// Every root key version the seal holds now (empty while sealed).
    fn root_versions(&self) -> Vec<u32>;

    /// Wraps a tenant KEK under the active root key version, bound to `ctx`.
    fn wrap_kek(&self, ctx: KeyContext<'_>, key: &Kek) -> Result<Vec<u8>, CryptoError>;
    /// Unwraps a tenant KEK, checking it belongs to `ctx`.
    fn unwrap_kek(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<Kek, CryptoError>;
    /// Wraps a system key under the active root key version, bound to `ctx`.
    fn wrap_system_key(&self, ctx: KeyContext<'_>, key: &SystemKey) -> Result<Vec<u8>, CryptoError>;
    /// Unwraps a system key, checking it belongs to `ctx`.
    fn unwrap_system_key(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<SystemKey, CryptoError>;

    /// Creates a new root key version, durably, and makes it the one new wraps use.
    fn add_root_version(&self) -> Result<u32, CryptoError>;

    /// Destroys a root key version for good. Blobs wrapped under it become unrecoverable.
    fn destroy_root_version(&self, version: u32) -> Result<(), CryptoError>;

    /// Forgets every key held in memory; the seal is sealed afterwards.
    fn seal(&self);

    /// The Shamir seal, whose keyring is kept in the store and rotated in two steps.
    fn as_shamir(&self) -> Option<&shamir::ShamirSeal> {
        None
    }
}
