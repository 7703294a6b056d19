//! Names of key versions as users type them: `root@2` for a root key version, `acme@3` for
//! version 3 of tenant `acme`'s key-encryption key. (`root` is therefore not a tenant name.)

use std::fmt;
use std::str::FromStr;

use crate::{NameError, TenantName};

/// A key version by name: `root@N` or `TENANT@N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// Version N of the root key.
    Root(u32),
    /// Version N of a tenant's key-encryption key.
    Tenant(TenantName, u32),
}

/// Why a text names no key version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefError {
    /// Not `root@N` or `TENANT@N`.
    #[error("a key version is written root@N or TENANT@N, with N a version number from 1")]
    Shape,
    /// The tenant part is not a tenant name.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (owner, version) = s.split_once('@').ok_or(KeyRefError::Shape)?;
        // 1 to 9 digits, the first not 0 (so no sign, no leading zero, and it fits a u32).
        let digits = !version.is_empty()
            && version.len() <= 9
            && !version.starts_with('0')
            && version.bytes().all(|b| b.is_ascii_digit());
        let version: u32 = version.parse().ok().filter(|_| digits).ok_or(KeyRefError::Shape)?;
        if owner == "root" {
            return Ok(KeyRef::Root(version));
        }
        Ok(KeyRef::Tenant(TenantName::parse(owner)?, version))
    }
}

crate::schema::to_schema!(KeyRef, "KeyRef", crate::schema::key_ref());

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Root(v) => write!(f, "root@{v}"),
            KeyRef::Tenant(t, v) => write!(f, "{t}@{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("root@2".parse::<KeyRef>().unwrap(), KeyRef::Root(2));
        let k: KeyRef = "acme@3".parse().unwrap();
        assert_eq!(k.to_string(), "acme@3");
        for bad in
            ["root", "root@0", "acme@", "@1", "acme@-1", "Acme@1", "acme@1x", "acme@99999999999", "acme@+1", "acme@01"]
        {
            assert!(bad.parse::<KeyRef>().is_err(), "{bad}");
        }
    }
}
