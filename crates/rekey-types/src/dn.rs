//! A validator for LDAP distinguished names (RFC 4514 string form).
//!
//! Hand-written because it is small: Rekey only needs to know that a bind DN is well formed before
//! storing it; it never rewrites or compares DNs. Accepts `type=value` RDNs separated by commas,
//! multi-valued RDNs joined by `+`, attribute types as names or dotted OIDs, values with `\`
//! escapes (a special character or two hex digits) or `#hex`.

/// Why a text is not a DN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid LDAP DN ({0}); expected e.g. cn=svc-mail,ou=svc,dc=acme,dc=example")]
pub struct DnError(&'static str);

const SPECIAL: &[u8] = b"\"+,;<>\\=# ";

/// Checks that `dn` is a distinguished name (RFC 4514 syntax, at most 1,024 characters).
pub fn validate_dn(dn: &str) -> Result<(), DnError> {
    if dn.trim().is_empty() {
        return Err(DnError("empty"));
    }
    if dn.len() > 1024 {
        return Err(DnError("longer than 1024 characters"));
    }
    let bytes = dn.as_bytes();
    let mut i = 0;
    loop {
        // One attribute type and value.
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b'.') {
            i += 1;
        }
        let attr = &dn[start..i];
        if attr.is_empty() {
            return Err(DnError("missing attribute type"));
        }
        let first = attr.as_bytes()[0];
        let attr_ok = if first.is_ascii_digit() {
            attr.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        } else {
            first.is_ascii_alphabetic() && !attr.contains('.')
        };
        if !attr_ok {
            return Err(DnError("bad attribute type"));
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(DnError("missing '=' after an attribute type"));
        }
        i += 1;
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'#' {
            i += 1;
            let hex_start = i;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            if (i - hex_start) == 0 || (i - hex_start) % 2 != 0 {
                return Err(DnError("bad #hex value"));
            }
        } else {
            while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'+' {
                match bytes[i] {
                    b'\\' => {
                        let next = bytes.get(i + 1).ok_or(DnError("dangling escape"))?;
                        if SPECIAL.contains(next) {
                            i += 2;
                        } else if next.is_ascii_hexdigit() && bytes.get(i + 2).is_some_and(|b| b.is_ascii_hexdigit()) {
                            i += 3;
                        } else {
                            return Err(DnError("bad escape"));
                        }
                    }
                    b'"' | b';' | b'<' | b'>' | b'=' => return Err(DnError("unescaped special character")),
                    0 => return Err(DnError("NUL character")),
                    _ => i += 1,
                }
            }
        }
        if dn[value_start..i].trim().is_empty() {
            return Err(DnError("empty attribute value"));
        }
        if i >= bytes.len() {
            return Ok(());
        }
        // A separator: ',' or '+'; something must follow it.
        i += 1;
        if i >= bytes.len() {
            return Err(DnError("trailing separator"));
        }
    }
}

/// The RDNs of a valid DN, most specific first, each normalized for comparison: split only on
/// unescaped commas (so `cn=a\,ou=x` is one RDN), escapes decoded (`\,` and `\2C` alike),
/// attribute types and values lowercased, spaces around separators dropped. `None` for a DN that
/// [`validate_dn`] refuses.
pub fn normalized_rdns(dn: &str) -> Option<Vec<String>> {
    validate_dn(dn).ok()?;
    let bytes = dn.as_bytes();
    let mut rdns = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = bytes[i + 1];
                if next.is_ascii_hexdigit() && bytes.get(i + 2).is_some_and(|b| b.is_ascii_hexdigit()) {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                    current.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                } else {
                    current.push(next);
                    i += 2;
                }
                // An escaped byte is part of the value, never a separator: mark it so that a
                // decoded comma, plus or equals sign cannot pass for one.
                current.push(0);
            }
            b',' => {
                rdns.push(normalize_rdn(&current));
                current.clear();
                i += 1;
            }
            b => {
                current.push(b);
                i += 1;
            }
        }
    }
    rdns.push(normalize_rdn(&current));
    Some(rdns)
}

fn normalize_rdn(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split('+')
        .map(|ava| ava.split('=').map(|p| p.trim().to_lowercase()).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join("+")
}

/// Whether `dn` is `base` or an entry below it, comparing normalized RDNs. False when either
/// is not a valid DN.
pub fn dn_within(dn: &str, base: &str) -> bool {
    match (normalized_rdns(dn), normalized_rdns(base)) {
        (Some(dn), Some(base)) => !base.is_empty() && dn.len() >= base.len() && dn[dn.len() - base.len()..] == base[..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_real_dns() {
        for dn in [
            "cn=svc-mail,ou=svc,dc=acme,dc=example",
            "uid=svc-app,ou=services,dc=example,dc=org",
            "CN=Mail Service,OU=Service Accounts,DC=corp,DC=acme,DC=com",
            "cn=Smith\\, John,dc=example",
            "cn=a+sn=b,dc=x",
            "2.5.4.3=#04024869,dc=x",
            "cn=caf\\C3\\A9,dc=x",
        ] {
            validate_dn(dn).unwrap_or_else(|e| panic!("{dn}: {e}"));
        }
    }

    #[test]
    fn subtrees_compare_rdns_not_text() {
        let base = "ou=people,dc=acme,dc=example";
        assert!(dn_within("cn=svc,ou=people,dc=acme,dc=example", base));
        assert!(dn_within("CN=svc, OU=People , dc=acme,dc=example", base));
        assert!(dn_within(base, base));
        assert!(!dn_within("cn=admin,dc=acme,dc=example", base));
        assert!(!dn_within("cn=x,ou=xpeople,dc=acme,dc=example", base));
        // An escaped comma is part of a value: this entry is directly under dc=acme.
        assert!(!dn_within("cn=evil\\,ou=people,dc=acme,dc=example", base));
        assert!(!dn_within("cn=evil\\2Cou=people,dc=acme,dc=example", base));
        assert!(!dn_within("cn=x", "not a dn"));
    }

    #[test]
    fn rejects_broken_dns() {
        for dn in ["", "cn", "cn=", "=x", "cn=a,", "cn=a,,dc=b", "cn=a\\", "cn=a;b", "c n=x", "1.=x", "cn=a\\zz"] {
            assert!(validate_dn(dn).is_err(), "{dn:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = validate_dn(&s);
        }
    }
}
