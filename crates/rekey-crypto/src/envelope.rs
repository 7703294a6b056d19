//! Envelope encryption and the ciphertext format. (Over 600 lines with its tests: the tampering
//! and swapping cases sit beside the format they check; the code itself is about 450 lines.)
//!
//! Every sealed blob (a payload, a wrapped DEK, a wrapped KEK) is
//!
//! ```text
//! "RK" | format | alg=1 (AES-256-GCM) | purpose | key id (16) | key version (u32 BE) | nonce (12) | ciphertext+tag
//! ```
//!
//! The header names the key that opens the blob (compare Tink's key-id prefix), so decryption
//! picks one key and the format can evolve. The associated data is the header followed by the
//! blob's slot (tenant, credential, version, kind): a blob copied to any other slot, or a header
//! edited to point elsewhere, fails to decrypt.
//!
//! Format 2 (payloads only) adds the version's [`TargetBinding`] to the payload's associated
//! data: a digest of the credential's name and of the target fields the secret was stored for.
//! A secret can then be decrypted for use against a target only with the very fields it was
//! stored with; fields changed in the database, or a name swapped between two credentials, make
//! the payload fail to open. Format 1 payloads (stored before target binding) open only through
//! [`open_legacy_payload`], which reveal and the format migration use, never a connector.
//!
//! Nonces are random (96 bits). A DEK encrypts one payload only; a KEK wraps one DEK per
//! credential version, far below the 2^32 messages per key that random GCM nonces allow.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use std::collections::BTreeMap;

use aes_gcm::{Aes256Gcm, Nonce};
use rekey_types::{CredentialId, CredentialKind, Secret, TenantId};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::{Dek, Kek};
use crate::CryptoError;

const MAGIC: &[u8; 2] = b"RK";
const FORMAT_V1: u8 = 1;
/// Payloads bound to their target (see [`TargetBinding`]).
const FORMAT_V2: u8 = 2;
const ALG_AES256GCM: u8 = 1;
pub(crate) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the header, nonce included.
pub const HEADER_LEN: usize = 2 + 1 + 1 + 1 + 16 + 4 + NONCE_LEN;

/// What a blob is; part of the header, so a wrapped key cannot pass for a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// A credential version's secret, under its DEK.
    Payload = 1,
    /// A DEK, under a tenant KEK.
    WrappedDek = 2,
    /// A tenant KEK, under a root key.
    WrappedKek = 3,
    /// A system key (audit, integrity), under a root key.
    WrappedSystemKey = 4,
    /// A seal's root keyring, encrypted under the key that Shamir shares rebuild.
    Keyring = 5,
}

/// The parsed header of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the blob is.
    pub purpose: Purpose,
    /// Which key opens it (see `docs/crypto.md`).
    pub key_id: [u8; 16],
    /// That key's version.
    pub key_version: u32,
}

impl Header {
    /// The header of `blob`, checked for format and algorithm.
    pub fn parse(blob: &[u8]) -> Result<Self, CryptoError> {
        if blob.len() < HEADER_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("too short"));
        }
        if &blob[..2] != MAGIC {
            return Err(CryptoError::Malformed("not a Rekey ciphertext"));
        }
        if blob[2] != FORMAT_V1 && blob[2] != FORMAT_V2 {
            return Err(CryptoError::Malformed("unknown format version"));
        }
        if blob[3] != ALG_AES256GCM {
            return Err(CryptoError::Malformed("unknown algorithm"));
        }
        let purpose = match blob[4] {
            1 => Purpose::Payload,
            2 => Purpose::WrappedDek,
            3 => Purpose::WrappedKek,
            4 => Purpose::WrappedSystemKey,
            5 => Purpose::Keyring,
            _ => return Err(CryptoError::Malformed("unknown purpose")),
        };
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&blob[5..21]);
        let key_version = u32::from_be_bytes(blob[21..25].try_into().expect("slice of 4 bytes"));
        Ok(Self { purpose, key_id, key_version })
    }
}

/// A random 96-bit nonce from the operating system's generator, drawn from a per-thread buffer
/// refilled 4 KiB at a time: one system call per 341 nonces instead of one each (a rewrap of a
/// million DEKs makes a million nonces). Only nonces come from the buffer, never key bytes.
fn fresh_nonce() -> Result<[u8; NONCE_LEN], CryptoError> {
    use std::cell::RefCell;
    const POOL: usize = 4092;
    thread_local! {
        static NONCES: RefCell<(Box<[u8; POOL]>, usize)> = RefCell::new((Box::new([0u8; POOL]), POOL));
    }
    NONCES.with(|cell| {
        let (pool, used) = &mut *cell.borrow_mut();
        if *used + NONCE_LEN > POOL {
            getrandom::fill(&mut pool[..]).map_err(|_| CryptoError::Random)?;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pool[*used..*used + NONCE_LEN]);
        // Each nonce is handed out once: wipe it from the pool.
        pool[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// Encrypts `plaintext` under `key` with a fresh nonce; `context` is the slot's associated data.
pub(crate) fn seal_blob(
    key: &[u8; 32],
    header: Header,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_blob_format(key, FORMAT_V1, header, context, plaintext)
}

fn seal_blob_format(
    key: &[u8; 32],
    format: u8,
    header: Header,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_any(format, header, context, plaintext, |nonce, aad, plaintext| {
        Aes256Gcm::new(key.into())
            .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| CryptoError::Decrypt)
    })
}

/// [`seal_blob`] with the AES-256-GCM encryption done by `encrypt(nonce, aad, plaintext)`, which
/// returns ciphertext and tag: how an HSM seal encrypts inside the HSM.
pub(crate) fn seal_blob_with(
    header: Header,
    context: &[u8],
    plaintext: &[u8],
    encrypt: impl FnOnce(&[u8; NONCE_LEN], &[u8], &[u8]) -> Result<Vec<u8>, CryptoError>,
) -> Result<Vec<u8>, CryptoError> {
    seal_any(FORMAT_V1, header, context, plaintext, encrypt)
}

fn seal_any(
    format: u8,
    header: Header,
    context: &[u8],
    plaintext: &[u8],
    encrypt: impl FnOnce(&[u8; NONCE_LEN], &[u8], &[u8]) -> Result<Vec<u8>, CryptoError>,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.push(format);
    out.push(ALG_AES256GCM);
    out.push(header.purpose as u8);
    out.extend_from_slice(&header.key_id);
    out.extend_from_slice(&header.key_version.to_be_bytes());
    let nonce = fresh_nonce()?;
    out.extend_from_slice(&nonce);
    let aad = [&out[..HEADER_LEN], context].concat();
    let ct = encrypt(&nonce, &aad, plaintext)?;
    if ct.len() != plaintext.len() + TAG_LEN {
        return Err(CryptoError::Malformed("the cipher returned an unexpected length"));
    }
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a blob made by [`seal_blob`], checking that its header says what the caller expects.
pub(crate) fn open_blob(
    key: &[u8; 32],
    expected: Header,
    context: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open_blob_format(key, FORMAT_V1, expected, context, blob)
}

fn open_blob_format(
    key: &[u8; 32],
    format: u8,
    expected: Header,
    context: &[u8],
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open_any(format, expected, context, blob, |nonce, aad, ct| {
        Aes256Gcm::new(key.into())
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    })
}

/// [`open_blob`] with the decryption done by `decrypt(nonce, aad, ciphertext_and_tag)`.
pub(crate) fn open_blob_with(
    expected: Header,
    context: &[u8],
    blob: &[u8],
    decrypt: impl FnOnce(&[u8], &[u8], &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open_any(FORMAT_V1, expected, context, blob, decrypt)
}

/// Opens a blob of format `format` (another format is refused, as a changed header would be).
fn open_any(
    format: u8,
    expected: Header,
    context: &[u8],
    blob: &[u8],
    decrypt: impl FnOnce(&[u8], &[u8], &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let header = Header::parse(blob)?;
    if blob[2] != format {
        return Err(CryptoError::Decrypt);
    }
    if header.purpose != expected.purpose || header.key_id != expected.key_id {
        return Err(CryptoError::Decrypt);
    }
    if header.key_version != expected.key_version {
        return Err(CryptoError::WrongKeyVersion { found: header.key_version, expected: expected.key_version });
    }
    let aad = [&blob[..HEADER_LEN], context].concat();
    decrypt(&blob[HEADER_LEN - NONCE_LEN..HEADER_LEN], &aad, &blob[HEADER_LEN..])
}

pub(crate) fn to_key(bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if bytes.len() != 32 {
        return Err(CryptoError::Malformed("wrapped key is not 256 bits"));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The slot a credential version's payload lives in; bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSlot {
    /// The tenant.
    pub tenant: TenantId,
    /// The credential.
    pub credential: CredentialId,
    /// The version.
    pub version: u32,
    /// The credential's kind.
    pub kind: CredentialKind,
}

impl PayloadSlot {
    fn payload_context(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(64);
        c.extend_from_slice(b"rekey/payload/v1");
        c.extend_from_slice(self.tenant.as_bytes());
        c.extend_from_slice(self.credential.as_bytes());
        c.extend_from_slice(&self.version.to_be_bytes());
        c.extend_from_slice(self.kind.as_str().as_bytes());
        c
    }

    fn bound_payload_context(&self, binding: &TargetBinding) -> Vec<u8> {
        let mut c = Vec::with_capacity(96);
        c.extend_from_slice(b"rekey/payload/v2");
        c.extend_from_slice(self.tenant.as_bytes());
        c.extend_from_slice(self.credential.as_bytes());
        c.extend_from_slice(&self.version.to_be_bytes());
        c.extend_from_slice(self.kind.as_str().as_bytes());
        c.extend_from_slice(&binding.0);
        c
    }

    fn dek_context(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(64);
        c.extend_from_slice(b"rekey/dek/v1");
        c.extend_from_slice(self.tenant.as_bytes());
        c.extend_from_slice(self.credential.as_bytes());
        c.extend_from_slice(&self.version.to_be_bytes());
        c
    }

    fn payload_header(&self) -> Header {
        Header { purpose: Purpose::Payload, key_id: *self.credential.as_bytes(), key_version: self.version }
    }

    fn dek_header(&self, kek_version: u32) -> Header {
        Header { purpose: Purpose::WrappedDek, key_id: *self.tenant.as_bytes(), key_version: kek_version }
    }
}

/// What a secret was stored for: SHA-256 over the credential's name and every one of the
/// version's target fields, in a length-prefixed canonical encoding. Bound into the payload's
/// associated data (format 2), so the payload opens only for this name and these fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TargetBinding([u8; 32]);

impl TargetBinding {
    /// The binding of a secret stored for credential `name` with target `fields`.
    pub fn of(name: &str, fields: &BTreeMap<String, String>) -> Self {
        let mut h = Sha256::new();
        h.update(b"rekey/target/v1");
        let mut put = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        put(name.as_bytes());
        for (k, v) in fields {
            put(k.as_bytes());
            put(v.as_bytes());
        }
        Self(h.finalize().into())
    }

    /// The digest as stored beside the version (it decides nothing on its own: a connector
    /// always recomputes it from the fields it is about to use).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A credential version as stored: the DEK wrapped by the tenant KEK, and the payload.
pub struct SealedPayload {
    /// The version's DEK, wrapped by the tenant KEK.
    pub wrapped_dek: Vec<u8>,
    /// The secret, under the DEK.
    pub ciphertext: Vec<u8>,
}

/// Encrypts a secret into its slot, bound to its target, under a fresh DEK, and wraps the DEK
/// under `kek`.
pub fn seal_payload(
    kek: &Kek,
    kek_version: u32,
    slot: &PayloadSlot,
    binding: &TargetBinding,
    plaintext: &[u8],
) -> Result<SealedPayload, CryptoError> {
    let dek = Dek::generate()?;
    let ciphertext = seal_blob_format(
        dek.bytes(),
        FORMAT_V2,
        slot.payload_header(),
        &slot.bound_payload_context(binding),
        plaintext,
    )?;
    let wrapped_dek = seal_blob(kek.bytes(), slot.dek_header(kek_version), &slot.dek_context(), dek.bytes())?;
    Ok(SealedPayload { wrapped_dek, ciphertext })
}

/// Decrypts a credential version stored for `binding`. Fails if either blob was changed or
/// belongs to another slot, if the binding differs from the one it was stored with, and for a
/// format 1 payload (stored before target binding: it cannot say where it may go).
pub fn open_payload(
    kek: &Kek,
    kek_version: u32,
    slot: &PayloadSlot,
    binding: &TargetBinding,
    wrapped_dek: &[u8],
    ciphertext: &[u8],
) -> Result<Secret, CryptoError> {
    if is_legacy_payload(ciphertext) {
        return Err(CryptoError::Unbound);
    }
    let dek = unwrap_dek(kek, kek_version, slot, wrapped_dek)?;
    let plain = open_blob_format(
        dek.bytes(),
        FORMAT_V2,
        slot.payload_header(),
        &slot.bound_payload_context(binding),
        ciphertext,
    )?;
    Ok(Secret::new(plain.to_vec()))
}

/// Encrypts a secret in format 1, as releases before target binding did, under a fresh DEK.
/// Only for building such stores in migration tests and benchmarks.
#[cfg(feature = "legacy-format")]
pub fn seal_legacy_payload(
    kek: &Kek,
    kek_version: u32,
    slot: &PayloadSlot,
    plaintext: &[u8],
) -> Result<SealedPayload, CryptoError> {
    let dek = Dek::generate()?;
    let ciphertext = seal_blob(dek.bytes(), slot.payload_header(), &slot.payload_context(), plaintext)?;
    let wrapped_dek = seal_blob(kek.bytes(), slot.dek_header(kek_version), &slot.dek_context(), dek.bytes())?;
    Ok(SealedPayload { wrapped_dek, ciphertext })
}

/// Whether a payload is in format 1 (stored before target binding).
pub fn is_legacy_payload(ciphertext: &[u8]) -> bool {
    ciphertext.len() > 2 && ciphertext[2] == FORMAT_V1
}

/// Decrypts a format 1 payload. Only for callers that never send the secret anywhere but to an
/// authorized reader (reveal) and for the migration to format 2.
pub fn open_legacy_payload(
    kek: &Kek,
    kek_version: u32,
    slot: &PayloadSlot,
    wrapped_dek: &[u8],
    ciphertext: &[u8],
) -> Result<Secret, CryptoError> {
    let dek = unwrap_dek(kek, kek_version, slot, wrapped_dek)?;
    let plain = open_blob_format(dek.bytes(), FORMAT_V1, slot.payload_header(), &slot.payload_context(), ciphertext)?;
    Ok(Secret::new(plain.to_vec()))
}

/// Moves a format 1 payload to format 2 under the same DEK (fresh nonce), bound to `binding`;
/// returns the new ciphertext and the secret (for its fingerprint). The wrapped DEK is kept.
pub fn bind_legacy_payload(
    kek: &Kek,
    kek_version: u32,
    slot: &PayloadSlot,
    binding: &TargetBinding,
    wrapped_dek: &[u8],
    ciphertext: &[u8],
) -> Result<(Vec<u8>, Secret), CryptoError> {
    let dek = unwrap_dek(kek, kek_version, slot, wrapped_dek)?;
    let plain = open_blob_format(dek.bytes(), FORMAT_V1, slot.payload_header(), &slot.payload_context(), ciphertext)?;
    let bound =
        seal_blob_format(dek.bytes(), FORMAT_V2, slot.payload_header(), &slot.bound_payload_context(binding), &plain)?;
    Ok((bound, Secret::new(plain.to_vec())))
}

fn unwrap_dek(kek: &Kek, kek_version: u32, slot: &PayloadSlot, wrapped: &[u8]) -> Result<Dek, CryptoError> {
    let bytes = open_blob(kek.bytes(), slot.dek_header(kek_version), &slot.dek_context(), wrapped)?;
    Ok(Dek::from_bytes(to_key(bytes)?))
}

/// Moves a wrapped DEK from one KEK version to another without touching the payload.
pub fn rewrap_dek(
    old: (&Kek, u32),
    new: (&Kek, u32),
    slot: &PayloadSlot,
    wrapped: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let dek = unwrap_dek(old.0, old.1, slot, wrapped)?;
    seal_blob(new.0.bytes(), slot.dek_header(new.1), &slot.dek_context(), dek.bytes())
}

/// The KEK version a wrapped DEK was made with, read from its header.
pub fn kek_version_of(wrapped_dek: &[u8]) -> Result<u32, CryptoError> {
    Ok(Header::parse(wrapped_dek)?.key_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bind() -> TargetBinding {
        TargetBinding::of("db", &BTreeMap::from([("url".to_string(), "ldaps://dc1".to_string())]))
    }

    fn slot() -> PayloadSlot {
        PayloadSlot {
            tenant: TenantId::generate(),
            credential: CredentialId::generate(),
            version: 1,
            kind: CredentialKind::Ldap,
        }
    }

    #[test]
    fn nonces_are_never_repeated() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            assert!(seen.insert(fresh_nonce().unwrap()), "a nonce repeated");
        }
    }

    #[test]
    fn round_trip() {
        let kek = Kek::generate().unwrap();
        let s = slot();
        let sealed = seal_payload(&kek, 1, &s, &bind(), b"hunter2").unwrap();
        let out = open_payload(&kek, 1, &s, &bind(), &sealed.wrapped_dek, &sealed.ciphertext).unwrap();
        assert_eq!(out.expose(), b"hunter2");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn every_flipped_bit_fails() {
        let kek = Kek::generate().unwrap();
        let s = slot();
        let sealed = seal_payload(&kek, 1, &s, &bind(), b"secret value").unwrap();
        for i in 0..sealed.ciphertext.len() * 8 {
            let mut ct = sealed.ciphertext.clone();
            ct[i / 8] ^= 1 << (i % 8);
            assert!(open_payload(&kek, 1, &s, &bind(), &sealed.wrapped_dek, &ct).is_err(), "bit {i}");
        }
        for i in 0..sealed.wrapped_dek.len() * 8 {
            let mut w = sealed.wrapped_dek.clone();
            w[i / 8] ^= 1 << (i % 8);
            assert!(open_payload(&kek, 1, &s, &bind(), &w, &sealed.ciphertext).is_err(), "bit {i}");
        }
    }

    #[test]
    fn truncation_fails() {
        let kek = Kek::generate().unwrap();
        let s = slot();
        let sealed = seal_payload(&kek, 1, &s, &bind(), b"secret value").unwrap();
        for len in 0..sealed.ciphertext.len() {
            let r = open_payload(&kek, 1, &s, &bind(), &sealed.wrapped_dek, &sealed.ciphertext[..len]);
            assert!(r.is_err(), "len {len}");
        }
        let mut extended = sealed.ciphertext.clone();
        extended.push(0);
        assert!(open_payload(&kek, 1, &s, &bind(), &sealed.wrapped_dek, &extended).is_err());
    }

    #[test]
    fn swapped_between_slots_fails() {
        let kek = Kek::generate().unwrap();
        let a = slot();
        let sealed = seal_payload(&kek, 1, &a, &bind(), b"tenant a").unwrap();
        let other_tenant = PayloadSlot { tenant: TenantId::generate(), ..a };
        let other_cred = PayloadSlot { credential: CredentialId::generate(), ..a };
        let other_version = PayloadSlot { version: 2, ..a };
        let other_kind = PayloadSlot { kind: CredentialKind::Smtp, ..a };
        for b in [other_tenant, other_cred, other_version, other_kind] {
            assert!(matches!(
                open_payload(&kek, 1, &b, &bind(), &sealed.wrapped_dek, &sealed.ciphertext),
                Err(CryptoError::Decrypt)
            ));
        }
        // A payload swapped with another of the same tenant, each with its own wrapped DEK.
        let b = PayloadSlot { credential: CredentialId::generate(), ..a };
        let sealed_b = seal_payload(&kek, 1, &b, &bind(), b"tenant a, other cred").unwrap();
        assert!(open_payload(&kek, 1, &a, &bind(), &sealed.wrapped_dek, &sealed_b.ciphertext).is_err());
        assert!(open_payload(&kek, 1, &a, &bind(), &sealed_b.wrapped_dek, &sealed.ciphertext).is_err());
    }

    #[test]
    fn another_target_fails_to_open() {
        let kek = Kek::generate().unwrap();
        let s = slot();
        let fields = BTreeMap::from([("url".to_string(), "ldaps://dc1".to_string())]);
        let sealed = seal_payload(&kek, 1, &s, &TargetBinding::of("db", &fields), b"bound").unwrap();
        let mut moved = fields.clone();
        moved.insert("url".into(), "ldap://attacker".into());
        let mut added = fields.clone();
        added.insert("tls".into(), "none".into());
        for (name, f) in [("db", &moved), ("db", &added), ("other", &fields), ("db", &BTreeMap::new())] {
            let b = TargetBinding::of(name, f);
            assert!(matches!(
                open_payload(&kek, 1, &s, &b, &sealed.wrapped_dek, &sealed.ciphertext),
                Err(CryptoError::Decrypt)
            ));
        }
        // Fields and name are length-prefixed: moving bytes between them changes the binding.
        let a = TargetBinding::of("ab", &BTreeMap::from([("c".to_string(), "d".to_string())]));
        let b = TargetBinding::of("a", &BTreeMap::from([("bc".to_string(), "d".to_string())]));
        assert!(a != b);
        let out = open_payload(&kek, 1, &s, &TargetBinding::of("db", &fields), &sealed.wrapped_dek, &sealed.ciphertext);
        assert_eq!(out.unwrap().expose(), b"bound");
    }

    #[test]
    fn legacy_payloads_open_only_by_the_legacy_path_and_migrate() {
        let kek = Kek::generate().unwrap();
        let s = slot();
        // A format 1 payload, as stored before target binding.
        let dek = Dek::generate().unwrap();
        let ct = seal_blob(dek.bytes(), s.payload_header(), &s.payload_context(), b"old").unwrap();
        let wrapped = seal_blob(kek.bytes(), s.dek_header(1), &s.dek_context(), dek.bytes()).unwrap();
        assert!(is_legacy_payload(&ct));
        assert!(matches!(open_payload(&kek, 1, &s, &bind(), &wrapped, &ct), Err(CryptoError::Unbound)));
        assert_eq!(open_legacy_payload(&kek, 1, &s, &wrapped, &ct).unwrap().expose(), b"old");
        let (bound, secret) = bind_legacy_payload(&kek, 1, &s, &bind(), &wrapped, &ct).unwrap();
        assert_eq!(secret.expose(), b"old");
        assert!(!is_legacy_payload(&bound));
        assert_eq!(open_payload(&kek, 1, &s, &bind(), &wrapped, &bound).unwrap().expose(), b"old");
        // A format 2 payload is not opened by the legacy path, nor one whose format byte was
        // edited back to 1.
        assert!(open_legacy_payload(&kek, 1, &s, &wrapped, &bound).is_err());
        let mut edited = bound.clone();
        edited[2] = 1;
        assert!(open_legacy_payload(&kek, 1, &s, &wrapped, &edited).is_err());
    }

    #[test]
    fn wrong_kek_fails() {
        let s = slot();
        let sealed = seal_payload(&Kek::generate().unwrap(), 1, &s, &bind(), b"x").unwrap();
        let other = Kek::generate().unwrap();
        assert!(open_payload(&other, 1, &s, &bind(), &sealed.wrapped_dek, &sealed.ciphertext).is_err());
        assert!(matches!(
            open_payload(&other, 2, &s, &bind(), &sealed.wrapped_dek, &sealed.ciphertext),
            Err(CryptoError::WrongKeyVersion { found: 1, expected: 2 })
        ));
    }

    #[test]
    fn rewrap_keeps_payload() {
        let s = slot();
        let k1 = Kek::generate().unwrap();
        let k2 = Kek::generate().unwrap();
        let sealed = seal_payload(&k1, 1, &s, &bind(), b"stay").unwrap();
        let rewrapped = rewrap_dek((&k1, 1), (&k2, 2), &s, &sealed.wrapped_dek).unwrap();
        assert_eq!(kek_version_of(&rewrapped).unwrap(), 2);
        let out = open_payload(&k2, 2, &s, &bind(), &rewrapped, &sealed.ciphertext).unwrap();
        assert_eq!(out.expose(), b"stay");
    }

    /// AES-256-GCM known-answer test (NIST GCM test vectors, gcmEncryptExtIV256, Count 0 with a
    /// 128-bit message): checks that the primitive under the envelope is the real one.
    #[test]
    fn aes_256_gcm_known_answer() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").unwrap();
        let nonce = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let pt = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad }).unwrap();
        assert_eq!(
            hex::encode(&ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
    }

    proptest! {
        #[test]
        fn round_trip_any_secret(secret in proptest::collection::vec(any::<u8>(), 0..2048), version in 1u32..1000) {
            let kek = Kek::generate().unwrap();
            let s = PayloadSlot { version, ..slot() };
            let sealed = seal_payload(&kek, 7, &s, &bind(), &secret).unwrap();
            let out = open_payload(&kek, 7, &s, &bind(), &sealed.wrapped_dek, &sealed.ciphertext).unwrap();
            prop_assert_eq!(out.expose(), &secret[..]);
        }

        #[test]
        fn garbage_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..200)) {
            let kek = Kek::generate().unwrap();
            let s = slot();
            prop_assert!(open_payload(&kek, 1, &s, &bind(), &blob, &blob).is_err());
        }
    }
}
