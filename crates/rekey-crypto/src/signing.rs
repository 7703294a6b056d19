//! Ed25519 signing keys: the audit checkpoint key (a system key the seal wraps, whose 32 bytes
//! are the Ed25519 seed) and a witness's cosigning key (a seed in a file of its own).
//!
//! The private half never leaves this type: it signs, and it gives its public half. No
//! `Debug`, `Clone` or `Serialize`; the seed is zeroized on drop.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::keys::{random_32, SystemKey};
use crate::CryptoError;

/// An Ed25519 signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: Zeroizing<[u8; 32]>,
}

impl SigningKey {
    /// The name the audit checkpoint key is stored under among the system keys.
    pub const CHECKPOINT_PURPOSE: &'static str = "audit-checkpoint";

    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_seed(random_32()?)
    }

    /// The key whose seed is this system key's bytes.
    pub fn from_system_key(key: &SystemKey) -> Result<Self, CryptoError> {
        Self::from_seed(Zeroizing::new(*key.bytes()))
    }

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| CryptoError::Malformed("not an Ed25519 seed"))?;
        Ok(Self { pair, seed })
    }

    /// Reads a seed file: 64 hex digits (surrounding whitespace ignored).
    pub fn from_seed_hex(text: &str) -> Result<Self, CryptoError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| CryptoError::Malformed("a signing key file holds 64 hex digits"))?;
        Self::from_seed(seed)
    }

    /// The seed as 64 hex digits, to be written to a key file (mode 0600).
    pub fn seed_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.seed.as_ref()))
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        self.pair.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes")
    }

    /// The signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.pair.sign(message).as_ref().try_into().expect("an Ed25519 signature is 64 bytes")
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};

    use super::*;

    #[test]
    fn signs_verifiably_and_survives_its_seed_file() {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"checkpoint");
        UnparsedPublicKey::new(&ED25519, key.public()).verify(b"checkpoint", &sig).unwrap();
        let again = SigningKey::from_seed_hex(&format!("{}\n", key.seed_hex().as_str())).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(SigningKey::from_seed_hex("00").is_err());
        assert!(SigningKey::from_seed_hex(&"zz".repeat(32)).is_err());
    }

    /// RFC 8032 §7.1, test 1: the seed gives the published public key and signature.
    #[test]
    fn rfc8032_test_1() {
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_seed(Zeroizing::new(seed)).unwrap();
        assert_eq!(hex::encode(key.public()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(
            hex::encode(key.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
