//! New passwords for rotation, drawn uniformly from an alphabet with the system's random source.

use zeroize::Zeroizing;

use crate::CryptoError;

/// Letters and digits: safe in every protocol, config file and shell a password may pass through.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Letters, digits and symbols that need no quoting in LDAP filters, URLs or JSON.
pub const ALNUM_SYMBOLS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!@#%^+=:,";

/// A password of `len` characters from `alphabet` (at most 256 distinct bytes), each drawn
/// without modulo bias (rejection sampling).
pub fn generate(len: usize, alphabet: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256, "alphabet of 1 to 256 symbols");
    let limit = 256 - (256 % alphabet.len());
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    let mut pool = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        getrandom::fill(pool.as_mut()).map_err(|_| CryptoError::Random)?;
        for &b in pool.iter() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_alphabet_and_variety() {
        let a = generate(32, ALNUM).unwrap();
        let b = generate(32, ALNUM).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|c| ALNUM.contains(c)));
        assert_ne!(*a, *b);
        let s = generate(200, ALNUM_SYMBOLS).unwrap();
        assert!(s.iter().all(|c| ALNUM_SYMBOLS.contains(c)));
    }
}
