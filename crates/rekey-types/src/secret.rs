//! The one type that carries a credential's secret value in clear.

use zeroize::Zeroizing;

/// A secret value in clear (a password, a client secret, a private key).
///
/// Zeroized on drop. Deliberately no `Debug`, `Display`, `Clone` or `Serialize`: a secret can only
/// leave this type through [`Secret::expose`], which is easy to find in a review.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The largest secret Rekey stores: generous for a PEM certificate chain plus private key.
    pub const MAX_LEN: usize = 64 * 1024;

    /// Takes ownership of the bytes; they are zeroed when the secret is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes, for the one place that must use them (encryption, a connector).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
