//! The claims of a JWT whose signature checked, against its role: issuer, audience, time, and
//! the bound subject and claims. Pure, so each refusal is tested on its own. A refusal names
//! what failed, never the value a token carried (which the workload's platform chose, and
//! which may be anything).

use serde_json::{Map, Value};

use super::role::JwtRole;

/// What a login was accepted on, for its audit event: the claims that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `sub`, if present.
    pub subject: Option<String>,
    /// The audience that matched.
    pub audience: String,
    /// `exp`, seconds since 1970.
    pub expires: i64,
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = value.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn matches(value: &Value, patterns: &[String]) -> bool {
    let one = |v: &Value| match v {
        Value::String(s) => patterns.iter().any(|p| glob(p, s)),
        Value::Number(n) => patterns.iter().any(|p| glob(p, &n.to_string())),
        Value::Bool(b) => patterns.iter().any(|p| glob(p, if *b { "true" } else { "false" })),
        _ => false,
    };
    match value {
        Value::Array(items) => items.iter().any(one),
        v => one(v),
    }
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).map(Some).ok_or(format!("{name} is not a number"))
        }
    }
}

/// Checks `claims` against `role` at `now` (seconds since 1970).
pub fn check(role: &JwtRole, claims: &Map<String, Value>, now: i64) -> Result<Accepted, String> {
    if claims.get("iss").and_then(Value::as_str) != Some(role.spec.issuer.as_str()) {
        return Err("the token's issuer (iss) is not the role's".into());
    }
    let audience = match claims.get("aud") {
        Some(Value::String(a)) => role.spec.audiences.iter().find(|x| *x == a),
        Some(Value::Array(list)) => {
            role.spec.audiences.iter().find(|x| list.iter().any(|a| a.as_str() == Some(x.as_str())))
        }
        _ => None,
    }
    .ok_or("the token is not for an audience (aud) of the role")?;
    let expires = seconds(claims, "exp")?.ok_or("the token has no expiry (exp)")?;
    if expires + role.skew <= now {
        return Err("the token expired (exp)".into());
    }
    if seconds(claims, "nbf")?.is_some_and(|nbf| nbf - role.skew > now) {
        return Err("the token is not valid yet (nbf)".into());
    }
    if seconds(claims, "iat")?.is_some_and(|iat| iat - role.skew > now) {
        return Err("the token was issued in the future (iat)".into());
    }
    let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
    if let Some(bound) = &role.spec.bound_subject {
        if !subject.as_deref().is_some_and(|s| glob(bound, s)) {
            return Err("the token's subject (sub) is not the role's".into());
        }
    }
    for (name, patterns) in &role.spec.bound_claims {
        let value = if name.starts_with('/') {
            Value::Object(claims.clone()).pointer(name).cloned()
        } else {
            claims.get(name).cloned()
        };
        if !value.is_some_and(|v| matches(&v, patterns)) {
            return Err(format!("claim {name} does not match the role's bound claims"));
        }
    }
    Ok(Accepted { subject, audience: audience.clone(), expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, v, ok) in [
            ("a", "a", true),
            ("a", "ab", false),
            ("*", "", true),
            ("repo:acme/*:ref:refs/heads/main", "repo:acme/mail:ref:refs/heads/main", true),
            ("repo:acme/*:ref:refs/heads/main", "repo:acme/mail:ref:refs/heads/dev", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*a", "a", false),
            ("*x", "x", true),
            ("x*", "y", false),
        ] {
            assert_eq!(glob(p, v), ok, "{p} {v}");
        }
    }

    fn role() -> JwtRole {
        let spec = serde_json::from_value(serde_json::json!({
            "issuer": "https://k8s.example", "jwks_url": "https://k8s.example/keys", "audiences": ["rekey", "other"],
            "bound_subject": "system:serviceaccount:mail:*",
            "bound_claims": {"/kubernetes.io/namespace": ["mail"], "groups": ["fetchers"]},
            "role": "auditor",
        }))
        .unwrap();
        JwtRole::check("k8s", spec).unwrap()
    }

    fn claims(change: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
        let mut c = serde_json::json!({
            "iss": "https://k8s.example", "aud": ["x", "rekey"], "sub": "system:serviceaccount:mail:fetcher",
            "exp": 1_000_100, "nbf": 999_990, "iat": 999_990,
            "kubernetes.io": {"namespace": "mail"}, "groups": ["readers", "fetchers"],
        })
        .as_object()
        .unwrap()
        .clone();
        change(&mut c);
        c
    }

    #[test]
    fn each_claim_is_checked_with_its_own_reason() {
        let r = role();
        let ok = check(&r, &claims(|_| {}), 1_000_000).unwrap();
        assert_eq!(
            (ok.audience.as_str(), ok.subject.as_deref()),
            ("rekey", Some("system:serviceaccount:mail:fetcher"))
        );
        type Change = Box<dyn FnOnce(&mut Map<String, Value>)>;
        let cases: Vec<(Change, i64, &str)> = vec![
            (Box::new(|c| drop(c.insert("iss".into(), "https://evil.example".into()))), 1_000_000, "issuer"),
            (Box::new(|c| drop(c.remove("iss"))), 1_000_000, "issuer"),
            (Box::new(|c| drop(c.insert("aud".into(), "rekeyx".into()))), 1_000_000, "audience"),
            (Box::new(|c| drop(c.insert("aud".into(), serde_json::json!(["x"])))), 1_000_000, "audience"),
            (Box::new(|c| drop(c.remove("exp"))), 1_000_000, "no expiry"),
            (Box::new(|_| {}), 1_000_130, "expired"),
            (Box::new(|c| drop(c.insert("nbf".into(), 1_000_031.into()))), 1_000_000, "not valid yet"),
            (Box::new(|c| drop(c.insert("iat".into(), 1_000_031.into()))), 1_000_000, "in the future"),
            (Box::new(|c| drop(c.insert("sub".into(), "system:serviceaccount:web:x".into()))), 1_000_000, "subject"),
            (Box::new(|c| drop(c.remove("sub"))), 1_000_000, "subject"),
            (
                Box::new(|c| drop(c.insert("kubernetes.io".into(), serde_json::json!({"namespace": "web"})))),
                1_000_000,
                "kubernetes.io/namespace",
            ),
            (Box::new(|c| drop(c.insert("groups".into(), serde_json::json!(["readers"])))), 1_000_000, "groups"),
            (Box::new(|c| drop(c.insert("exp".into(), "soon".into()))), 1_000_000, "not a number"),
        ];
        for (change, now, says) in cases {
            let err = check(&r, &claims(change), now).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
        // The skew: 30 s either way, no more.
        assert!(check(&r, &claims(|_| {}), 1_000_129).is_ok());
        assert!(check(&r, &claims(|c| drop(c.insert("nbf".into(), 1_000_030.into()))), 1_000_000).is_ok());
    }
}
