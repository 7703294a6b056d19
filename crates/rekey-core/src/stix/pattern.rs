//! The part of the STIX 2.1 patterning language that threat feeds use for addresses and
//! certificates, parsed by hand (the grammar below is a few lines; a full STIX pattern engine is
//! a dependency of its own for no use here): one or more observation expressions joined by `OR`,
//! each one or more comparisons joined by `OR`, each `PATH = 'VALUE'` with PATH one of
//!
//! - `ipv4-addr:value`, `ipv6-addr:value` (an address or a CIDR block),
//! - `network-traffic:src_ref.value`, `network-traffic:dst_ref.value` (likewise),
//! - `x509-certificate:hashes.'SHA-256'`, `x509-certificate:hashes.'SHA-1'` (hex; the key may
//!   also be written bare, `hashes.SHA256`).
//!
//! Anything else (`AND`, `FOLLOWEDBY`, qualifiers, other operators, other paths) is refused with
//! the reason: such an indicator is not taken, and counted as not understood.

use ipnet::IpNet;

/// What an indicator's pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Observable {
    /// A source address, or a block of them.
    Address(IpNet),
    /// A certificate by its SHA-256 (64 hex digits) or SHA-1 (40) thumbprint, lowercase.
    Certificate(String),
}

/// Parses a pattern into the observables it matches (any of them).
pub fn parse(pattern: &str) -> Result<Vec<Observable>, String> {
    let mut p = Parser { rest: pattern.trim() };
    let mut out = Vec::new();
    loop {
        p.expect("[")?;
        loop {
            out.push(p.comparison()?);
            if !p.keyword("OR") {
                break;
            }
        }
        p.expect("]")?;
        if p.rest.is_empty() {
            return Ok(out);
        }
        if !p.keyword("OR") {
            return Err(format!("only OR may join observations, not {:?}", p.word()));
        }
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        self.skip();
        match self.rest.strip_prefix(token) {
            Some(r) => {
                self.rest = r;
                Ok(())
            }
            None => Err(format!("expected {token:?} at {:?}", self.word())),
        }
    }

    /// Takes `word` if it comes next, as a whole word.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip();
        match self.rest.strip_prefix(word) {
            Some(r) if r.starts_with(|c: char| c.is_whitespace() || c == '[') => {
                self.rest = r;
                true
            }
            _ => false,
        }
    }

    fn word(&self) -> String {
        self.rest.chars().take(24).collect()
    }

    fn comparison(&mut self) -> Result<Observable, String> {
        self.skip();
        let end = self.rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(self.rest.len());
        let path = &self.rest[..end];
        self.rest = &self.rest[end..];
        self.expect("=")?;
        let value = self.string()?;
        let hash = |want: &[&str], len: usize| -> Result<Observable, String> {
            let v = value.to_ascii_lowercase();
            if want.iter().any(|w| path.eq_ignore_ascii_case(w))
                && v.len() == len
                && v.bytes().all(|b| b.is_ascii_hexdigit())
            {
                Ok(Observable::Certificate(v))
            } else {
                Err(format!("{path}: expected {len} hex digits"))
            }
        };
        match path {
            "ipv4-addr:value"
            | "ipv6-addr:value"
            | "network-traffic:src_ref.value"
            | "network-traffic:dst_ref.value" => {
                let net = match value.parse::<IpNet>() {
                    Ok(n) => n.trunc(),
                    Err(_) => IpNet::from(
                        value.parse::<std::net::IpAddr>().map_err(|_| format!("not an address: {value:?}"))?,
                    ),
                };
                let v4 = matches!(net, IpNet::V4(_));
                if (path.starts_with("ipv4") && !v4) || (path.starts_with("ipv6") && v4) {
                    return Err(format!("{path} does not take {value:?}"));
                }
                Ok(Observable::Address(net))
            }
            p if p.starts_with("x509-certificate:hashes.") => {
                let key = p.trim_start_matches("x509-certificate:hashes.").trim_matches('\'').to_ascii_uppercase();
                match key.as_str() {
                    "SHA-256" | "SHA256" => hash(&[p], 64),
                    "SHA-1" | "SHA1" => hash(&[p], 40),
                    _ => Err(format!("certificate hashes are SHA-256 or SHA-1, not {key}")),
                }
            }
            other => Err(format!("not an address or certificate path: {other:?}")),
        }
    }

    /// A quoted string: `'…'` with `\'` and `\\` escapes.
    fn string(&mut self) -> Result<String, String> {
        self.skip();
        let mut chars = self.rest.char_indices();
        if chars.next().map(|(_, c)| c) != Some('\'') {
            return Err(format!("expected a quoted value at {:?}", self.word()));
        }
        let mut out = String::new();
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '\'') => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(out);
                }
                (_, c) => {
                    escaped = false;
                    out.push(c);
                }
            }
        }
        Err("a quoted value does not end".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Observable {
        Observable::Address(s.parse().unwrap())
    }

    #[test]
    fn addresses_blocks_and_certificates_joined_by_or() {
        assert_eq!(parse("[ipv4-addr:value = '198.51.100.7']").unwrap(), [net("198.51.100.7/32")]);
        assert_eq!(parse("[ipv4-addr:value = '198.51.100.9/24']").unwrap(), [net("198.51.100.0/24")]);
        assert_eq!(
            parse("[ipv6-addr:value = '2001:db8::1'] OR [network-traffic:src_ref.value = '203.0.113.5' OR ipv4-addr:value='192.0.2.1']")
                .unwrap(),
            [net("2001:db8::1/128"), net("203.0.113.5/32"), net("192.0.2.1/32")]
        );
        let sha = "A".repeat(64);
        assert_eq!(
            parse(&format!("[x509-certificate:hashes.'SHA-256' = '{sha}']")).unwrap(),
            [Observable::Certificate("a".repeat(64))]
        );
        assert_eq!(
            parse(&format!("[x509-certificate:hashes.SHA1 = '{}']", "b".repeat(40))).unwrap(),
            [Observable::Certificate("b".repeat(40))]
        );
    }

    #[test]
    fn what_is_not_understood_is_refused_with_why() {
        for bad in [
            "[ipv4-addr:value = '198.51.100.7' AND ipv4-addr:value = '1.2.3.4']",
            "[ipv4-addr:value = '198.51.100.7'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.4']",
            "[ipv4-addr:value = '198.51.100.7'] WITHIN 5 SECONDS",
            "[ipv4-addr:value != '198.51.100.7']",
            "[domain-name:value = 'evil.example']",
            "[ipv4-addr:value = '2001:db8::1']",
            "[ipv4-addr:value = 'not an address']",
            "[x509-certificate:hashes.'MD5' = 'abcd']",
            "[x509-certificate:hashes.'SHA-256' = 'abcd']",
            "[ipv4-addr:value = '198.51.100.7'",
            "ipv4-addr:value = '198.51.100.7'",
            "[ipv4-addr:value = '198.51.100.7]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
