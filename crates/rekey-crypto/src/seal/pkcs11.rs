//! The PKCS#11 seal: each root key version is a non-extractable AES-256 secret key inside an
//! HSM, found by its label, with its version as the object's `CKA_ID` (big-endian). Tenant KEKs
//! and system keys are encrypted and decrypted inside the HSM (AES-256-GCM, `CKM_AES_GCM`) under
//! the Rekey header; the root key never reaches this process. Uses the `cryptoki` crate.
//!
//! The PIN comes from the caller (the server reads it from an environment variable or a file)
//! and is used once to log in; it is not kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KeyContext, Seal};
use crate::envelope::{open_blob_with, seal_blob_with, to_key, Header, Purpose};
use crate::keys::{Kek, SystemKey};
use crate::CryptoError;

/// Where the root key is: module, token and key label. The PIN is passed separately.
#[derive(Debug, Clone)]
pub struct Pkcs11Options {
    /// The PKCS#11 module (a `.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The label of the root key objects.
    pub key_label: String,
}

struct Open {
    session: Session,
    keys: BTreeMap<u32, ObjectHandle>,
}

/// The PKCS#11 seal: the root key versions are secret keys inside the token.
pub struct Pkcs11Seal {
    options: Pkcs11Options,
    /// Kept so the module stays loaded and initialized while the seal lives.
    _context: Pkcs11,
    /// `None` once sealed. A PKCS#11 session is not `Sync`; every HSM call goes through this lock.
    open: Mutex<Option<Open>>,
}

fn hsm(what: &str) -> impl FnOnce(P11Error) -> CryptoError + '_ {
    move |e| match e {
        P11Error::Pkcs11(RvError::PinIncorrect, _) => CryptoError::Hsm("the HSM refused the PIN".into()),
        P11Error::Pkcs11(RvError::PinLocked, _) => CryptoError::Hsm("the token's PIN is locked".into()),
        other => CryptoError::Hsm(format!("{what}: {other}")),
    }
}

impl Pkcs11Seal {
    /// Loads the module, finds the token, logs in with `pin` and finds the root key versions.
    /// A token without any key under the label opens with no versions; the caller decides
    /// whether to create version 1 (only for an empty store).
    pub fn open(options: Pkcs11Options, pin: Zeroizing<String>) -> Result<Self, CryptoError> {
        if !Path::new(&options.module).exists() {
            return Err(CryptoError::Hsm(format!("no PKCS#11 module at {}", options.module.display())));
        }
        let context = Pkcs11::new(&options.module).map_err(hsm("cannot load the PKCS#11 module"))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(hsm("cannot initialize the PKCS#11 module")(e)),
        }
        let mut slot = None;
        for s in context.get_slots_with_token().map_err(hsm("cannot list slots"))? {
            let info = context.get_token_info(s).map_err(hsm("cannot read token info"))?;
            if info.label().trim_end() == options.token_label {
                slot = Some(s);
                break;
            }
        }
        let slot = slot.ok_or_else(|| CryptoError::Hsm(format!("no token labelled {:?}", options.token_label)))?;
        let session = context.open_rw_session(slot).map_err(hsm("cannot open a session"))?;
        let pin = AuthPin::new(pin.as_str().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(hsm("cannot log in")(e)),
        }
        let keys = find_keys(&session, &options.key_label)?;
        Ok(Self { options, _context: context, open: Mutex::new(Some(Open { session, keys })) })
    }

    fn key_id(&self, version: u32) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(b"rekey-hsm-key-id")
            .chain_update(self.options.token_label.as_bytes())
            .chain_update([0])
            .chain_update(self.options.key_label.as_bytes())
            .chain_update(version.to_be_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    fn with<T>(&self, f: impl FnOnce(&mut Open) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        match &mut *self.open.lock().expect("HSM lock is never poisoned") {
            Some(open) => f(open),
            None => Err(CryptoError::Sealed),
        }
    }

    fn wrap(&self, purpose: Purpose, ctx: KeyContext<'_>, key: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        self.with(|open| {
            let (&version, &handle) = open.keys.iter().next_back().ok_or(CryptoError::Sealed)?;
            let header = Header { purpose, key_id: self.key_id(version), key_version: version };
            seal_blob_with(header, &ctx.bytes(), key, |nonce, aad, plaintext| {
                let mut iv = *nonce;
                let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(hsm("GCM parameters"))?;
                open.session.encrypt(&Mechanism::AesGcm(params), handle, plaintext).map_err(hsm("encrypt"))
            })
        })
    }

    fn unwrap(
        &self,
        purpose: Purpose,
        ctx: KeyContext<'_>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let version = Header::parse(wrapped)?.key_version;
        self.with(|open| {
            let handle = *open.keys.get(&version).ok_or(CryptoError::RootVersionMissing(version))?;
            let header = Header { purpose, key_id: self.key_id(version), key_version: version };
            let plain = open_blob_with(header, &ctx.bytes(), wrapped, |nonce, aad, ct| {
                let mut iv = nonce.to_vec();
                let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(hsm("GCM parameters"))?;
                // The HSM reports a failed tag check as an error: the same answer as any tampering.
                open.session
                    .decrypt(&Mechanism::AesGcm(params), handle, ct)
                    .map(Zeroizing::new)
                    .map_err(|_| CryptoError::Decrypt)
            })?;
            to_key(plain)
        })
    }
}

fn find_keys(session: &Session, label: &str) -> Result<BTreeMap<u32, ObjectHandle>, CryptoError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mut keys = BTreeMap::new();
    for handle in session.find_objects(&template).map_err(hsm("cannot search the token"))? {
        let attrs = session.get_attributes(handle, &[AttributeType::Id]).map_err(hsm("cannot read a key's id"))?;
        let id = attrs.iter().find_map(|a| match a {
            Attribute::Id(id) => Some(id.clone()),
            _ => None,
        });
        let version = match id {
            Some(id) if !id.is_empty() && id.len() <= 4 => id.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)),
            _ => return Err(CryptoError::Hsm(format!("a key labelled {label:?} has no usable CKA_ID (its version)"))),
        };
        if version == 0 || keys.insert(version, handle).is_some() {
            return Err(CryptoError::Hsm(format!("keys labelled {label:?} have a zero or repeated CKA_ID")));
        }
    }
    Ok(keys)
}

impl Seal for Pkcs11Seal {
    fn kind(&self) -> rekey_types::SealKind {
        rekey_types::SealKind::Pkcs11
    }

    fn is_unsealed(&self) -> bool {
        self.open.lock().expect("HSM lock is never poisoned").is_some()
    }

    fn root_version(&self) -> Option<u32> {
        self.with(|open| Ok(open.keys.keys().next_back().copied())).ok().flatten()
    }

    fn root_versions(&self) -> Vec<u32> {
        self.with(|open| Ok(open.keys.keys().copied().collect())).unwrap_or_default()
    }

    super::seal_key_methods!();

    /// Generates the next version inside the HSM: AES-256, token object, sensitive, never
    /// extractable, for encrypt and decrypt only.
    fn add_root_version(&self) -> Result<u32, CryptoError> {
        self.with(|open| {
            let version = open.keys.keys().next_back().copied().unwrap_or(0) + 1;
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(self.options.key_label.as_bytes().to_vec()),
                Attribute::Id(version.to_be_bytes().to_vec()),
            ];
            let handle =
                open.session.generate_key(&Mechanism::AesKeyGen, &template).map_err(hsm("cannot generate a key"))?;
            open.keys.insert(version, handle);
            Ok(version)
        })
    }

    fn destroy_root_version(&self, version: u32) -> Result<(), CryptoError> {
        self.with(|open| {
            let handle = *open.keys.get(&version).ok_or(CryptoError::RootVersionMissing(version))?;
            open.session.destroy_object(handle).map_err(hsm("cannot destroy the key"))?;
            open.keys.remove(&version);
            Ok(())
        })
    }

    /// Logs out and closes the session. Only a restart (which logs in again) unseals.
    fn seal(&self) {
        if let Some(open) = self.open.lock().expect("HSM lock is never poisoned").take() {
            let _ = open.session.logout();
        }
    }
}
