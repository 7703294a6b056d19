//! The dev seal: the root key in a file next to the database.
//!
//! FOR THE QUICKSTART ONLY. Anyone who can read the data folder can read every credential; the
//! point of a seal is that a stolen database is worthless, and a key file beside it defeats that.
//! The file is created with mode 0600 and says so in its first line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KeyContext, Seal};
use crate::envelope::{open_blob, seal_blob, to_key, Header, Purpose};
use crate::keys::{random_32, Kek, SystemKey};
use crate::CryptoError;

const BANNER: &str =
    "# REKEY DEV SEAL ROOT KEY - NOT FOR PRODUCTION: anyone who reads this file reads every credential";

pub struct DevSeal {
    key: Zeroizing<[u8; 32]>,
    key_id: [u8; 16],
    path: PathBuf,
}

impl DevSeal {
    /// Opens the key file at `path`, creating it (mode 0600) with a fresh key if it is missing.
    pub fn open_or_create(path: &Path) -> Result<Self, CryptoError> {
        let file_err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        let key = if path.exists() {
            let text = Zeroizing::new(fs::read_to_string(path).map_err(file_err)?);
            let hex_line = text
                .lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                .ok_or_else(|| CryptoError::Seal(format!("{}: no key in the file", path.display())))?;
            let bytes = Zeroizing::new(
                hex::decode(hex_line.trim())
                    .map_err(|_| CryptoError::Seal(format!("{}: the key is not hex", path.display())))?,
            );
            to_key(bytes).map_err(|_| CryptoError::Seal(format!("{}: the key is not 256 bits", path.display())))?
        } else {
            let key = random_32()?;
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(file_err)?;
            let hex_key = Zeroizing::new(hex::encode(key.as_ref()));
            file.write_all(format!("{BANNER}\n").as_bytes()).map_err(file_err)?;
            file.write_all(hex_key.as_bytes()).map_err(file_err)?;
            file.write_all(b"\n").map_err(file_err)?;
            file.sync_all().map_err(file_err)?;
            key
        };
        let digest = Sha256::new().chain_update(b"rekey-root-key-id").chain_update(key.as_ref()).finalize();
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&digest[..16]);
        Ok(Self { key, key_id, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header(&self, purpose: Purpose) -> Header {
        Header { purpose, key_id: self.key_id, key_version: 1 }
    }

    fn wrap(&self, purpose: Purpose, ctx: KeyContext<'_>, key: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        seal_blob(&self.key, self.header(purpose), &ctx.bytes(), key)
    }

    fn unwrap(
        &self,
        purpose: Purpose,
        ctx: KeyContext<'_>,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        to_key(open_blob(&self.key, self.header(purpose), &ctx.bytes(), wrapped)?)
    }
}

impl Seal for DevSeal {
    fn kind(&self) -> &'static str {
        "dev"
    }

    fn is_unsealed(&self) -> bool {
        true
    }

    fn root_version(&self) -> u32 {
        1
    }

    fn wrap_kek(&self, ctx: KeyContext<'_>, key: &Kek) -> Result<Vec<u8>, CryptoError> {
        self.wrap(Purpose::WrappedKek, ctx, key.bytes())
    }

    fn unwrap_kek(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<Kek, CryptoError> {
        self.unwrap(Purpose::WrappedKek, ctx, wrapped).map(Kek::from_bytes)
    }

    fn wrap_system_key(&self, ctx: KeyContext<'_>, key: &SystemKey) -> Result<Vec<u8>, CryptoError> {
        self.wrap(Purpose::WrappedSystemKey, ctx, key.bytes())
    }

    fn unwrap_system_key(&self, ctx: KeyContext<'_>, wrapped: &[u8]) -> Result<SystemKey, CryptoError> {
        self.unwrap(Purpose::WrappedSystemKey, ctx, wrapped).map(SystemKey::from_bytes)
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
    }
}
