//! The dev seal: the root key in a file next to the database.
//!
//! FOR THE QUICKSTART ONLY. Anyone who can read the data folder can read every credential; the
//! point of a seal is that a stolen database is worthless, and a key file beside it defeats that.
//! The file is created with mode 0600 and says so in its first line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::keyring::{MemorySeal, RootKeyring};
use super::{KeyContext, Seal};
use crate::envelope::{to_key, Purpose};
use crate::keys::{Kek, SystemKey};
use crate::CryptoError;

const BANNER: &str =
    "# REKEY DEV SEAL ROOT KEY - NOT FOR PRODUCTION: anyone who reads this file reads every credential";

/// The dev seal. The key file holds one line per root key version, `VERSION:HEX`; a bare hex
/// line is version 1.
pub struct DevSeal {
    inner: MemorySeal,
    path: PathBuf,
    /// Serializes changes to the key file.
    file: std::sync::Mutex<()>,
}

impl DevSeal {
    /// Opens the key file at `path`, creating it (mode 0600) with a fresh key if it is missing.
    pub fn open_or_create(path: &Path) -> Result<Self, CryptoError> {
        let seal = Self { inner: MemorySeal::default(), path: path.to_owned(), file: Default::default() };
        let ring = if path.exists() {
            seal.read()?
        } else {
            let mut ring = RootKeyring::default();
            ring.add_new()?;
            seal.write(&ring)?;
            ring
        };
        seal.inner.install(ring);
        Ok(seal)
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_err(&self) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
        |source| CryptoError::KeyFile { path: self.path.display().to_string(), source }
    }

    fn read(&self) -> Result<RootKeyring, CryptoError> {
        let path = self.path.display();
        let text = Zeroizing::new(fs::read_to_string(&self.path).map_err(self.file_err())?);
        let mut ring = RootKeyring::default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (version, hex_key) = match line.split_once(':') {
                Some((v, k)) => {
                    let v = v.parse::<u32>().ok().filter(|v| *v > 0);
                    (v.ok_or_else(|| CryptoError::Seal(format!("{path}: a key line has no valid version")))?, k)
                }
                None => (1, line),
            };
            let bytes = Zeroizing::new(
                hex::decode(hex_key).map_err(|_| CryptoError::Seal(format!("{path}: a key is not hex")))?,
            );
            let key = to_key(bytes).map_err(|_| CryptoError::Seal(format!("{path}: a key is not 256 bits")))?;
            ring.insert(version, key);
        }
        if ring.active().is_none() {
            return Err(CryptoError::Seal(format!("{path}: no key in the file")));
        }
        Ok(ring)
    }

    /// Replaces the key file atomically: a private temporary file, synced, renamed over it.
    fn write(&self, ring: &RootKeyring) -> Result<(), CryptoError> {
        let tmp = self.path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(self.file_err())?;
        let mut text = Zeroizing::new(format!("{BANNER}\n"));
        for version in ring.versions() {
            let key = ring.get(version).expect("listed versions are present");
            text.push_str(&format!("{version}:{}\n", Zeroizing::new(hex::encode(key)).as_str()));
        }
        file.write_all(text.as_bytes()).map_err(self.file_err())?;
        file.sync_all().map_err(self.file_err())?;
        fs::rename(&tmp, &self.path).map_err(self.file_err())?;
        if let Some(dir) = self.path.parent().and_then(|d| fs::File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Seal for DevSeal {
    fn kind(&self) -> rekey_types::SealKind {
        rekey_types::SealKind::Dev
    }

    fn is_unsealed(&self) -> bool {
        self.inner.is_unsealed()
    }

    fn root_version(&self) -> Option<u32> {
        self.inner.active()
    }

    fn root_versions(&self) -> Vec<u32> {
        self.inner.versions()
    }

    super::seal_key_methods!(inner);

    fn add_root_version(&self) -> Result<u32, CryptoError> {
        let _file = self.file.lock().expect("key file lock is never poisoned");
        self.inner.with_mut(|ring| {
            let mut next = ring.duplicate();
            let version = next.add_new()?;
            self.write(&next)?;
            *ring = next;
            Ok(version)
        })
    }

    fn destroy_root_version(&self, version: u32) -> Result<(), CryptoError> {
        let _file = self.file.lock().expect("key file lock is never poisoned");
        self.inner.with_mut(|ring| {
            let mut next = ring.duplicate();
            if !next.remove(version) {
                return Err(CryptoError::RootVersionMissing(version));
            }
            self.write(&next)?;
            *ring = next;
            Ok(())
        })
    }

    fn seal(&self) {
        self.inner.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_types::TenantId;

    #[test]
    fn creates_a_private_key_file_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let seal = DevSeal::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(fs::read_to_string(&path).unwrap().contains("NOT FOR PRODUCTION"));
        let tenant = TenantId::generate();
        let ctx = KeyContext::TenantKek { tenant, version: 1 };
        let kek = Kek::generate().unwrap();
        let wrapped = seal.wrap_kek(ctx, &kek).unwrap();
        let again = DevSeal::open_or_create(&path).unwrap();
        let back = again.unwrap_kek(ctx, &wrapped).unwrap();
        assert_eq!(back.bytes(), kek.bytes());
        // Bound to its slot.
        let other = KeyContext::TenantKek { tenant, version: 2 };
        assert!(again.unwrap_kek(other, &wrapped).is_err());
        let other = KeyContext::TenantKek { tenant: TenantId::generate(), version: 1 };
        assert!(again.unwrap_kek(other, &wrapped).is_err());
        // A key of another seal does not open it.
        let foreign = DevSeal::open_or_create(&dir.path().join("other.key")).unwrap();
        assert!(foreign.unwrap_kek(ctx, &wrapped).is_err());
    }

    #[test]
    fn rejects_a_damaged_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        fs::write(&path, "# header\nnot-hex\n").unwrap();
        assert!(DevSeal::open_or_create(&path).is_err());
        fs::write(&path, "abcd\n").unwrap();
        assert!(DevSeal::open_or_create(&path).is_err());
        fs::write(&path, format!("0:{}\n", "00".repeat(32))).unwrap();
        assert!(DevSeal::open_or_create(&path).is_err());
    }

    #[test]
    fn new_root_versions_persist_and_old_blobs_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let seal = DevSeal::open_or_create(&path).unwrap();
        let ctx = KeyContext::TenantKek { tenant: TenantId::generate(), version: 1 };
        let kek = Kek::generate().unwrap();
        let old = seal.wrap_kek(ctx, &kek).unwrap();
        assert_eq!(seal.add_root_version().unwrap(), 2);
        let new = seal.wrap_kek(ctx, &kek).unwrap();
        let again = DevSeal::open_or_create(&path).unwrap();
        assert_eq!(again.root_versions(), vec![1, 2]);
        assert_eq!(again.root_version(), Some(2));
        assert_eq!(again.unwrap_kek(ctx, &old).unwrap().bytes(), kek.bytes());
        assert_eq!(again.unwrap_kek(ctx, &new).unwrap().bytes(), kek.bytes());
        again.destroy_root_version(1).unwrap();
        let third = DevSeal::open_or_create(&path).unwrap();
        assert!(third.unwrap_kek(ctx, &old).is_err());
        assert!(third.unwrap_kek(ctx, &new).is_ok());
        assert!(third.destroy_root_version(7).is_err());
    }
}
