//! Key types. Each is 256 random bits, zeroized on drop, and has no `Debug`, `Display`, `Clone`
//! or `Serialize`: a key cannot be printed by accident.

use zeroize::Zeroizing;

use crate::CryptoError;

/// Fills a fresh zeroizing buffer from the operating system's generator.
pub(crate) fn random_32() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// 128 random bits from the operating system's generator, not a key (an identifier, the random
/// part of a login flow's state).
pub fn random_16() -> Result<[u8; 16], CryptoError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(pub(crate) Zeroizing<[u8; 32]>);

        impl $name {
            /// A fresh random key from the operating system's generator.
            pub fn generate() -> Result<Self, CryptoError> {
                random_32().map(Self)
            }

            pub(crate) fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
                Self(bytes)
            }

            pub(crate) fn bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
    };
}

key_type!(
    /// A tenant key-encryption key: wraps the DEKs of one tenant. Zeroized on drop.
    Kek
);
key_type!(
    /// A data-encryption key: encrypts exactly one credential version. Zeroized on drop.
    Dek
);
key_type!(
    /// Any key the seal wraps that is not a tenant KEK (the audit chain key). Zeroized on drop.
    SystemKey
);
