//! Indicators out of STIX 2.1 objects (a bundle's, or a TAXII collection's page): each
//! `indicator` with `pattern_type` `stix` whose pattern [`pattern`](super::pattern) understands,
//! with its validity window. A revoked indicator is a removal; other object types are skipped.

use rekey_types::Timestamp;
use serde_json::Value;

use super::pattern::{self, Observable};

/// One observable of one indicator, as a feed lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The indicator's id (`indicator--…`).
    pub stix_id: String,
    /// Its `modified` (or `created`) time: a later version replaces an earlier one.
    pub modified: Timestamp,
    /// Its name, or its id.
    pub name: String,
    /// What it matches.
    pub observable: Observable,
    /// From when it holds.
    pub valid_from: Timestamp,
    /// Until when, if it says.
    pub valid_until: Option<Timestamp>,
}

/// What a set of objects says.
#[derive(Debug, Default)]
pub struct Read {
    /// The observables of the indicators taken.
    pub listed: Vec<Listed>,
    /// Indicators revoked (their earlier versions are dropped), with their `modified` times.
    pub revoked: Vec<(String, Timestamp)>,
    /// Indicators not taken (another pattern language, a pattern not understood, a missing or
    /// bad field), with why (at most the first 20).
    pub refused: Vec<(String, String)>,
    /// Indicators not taken, in all.
    pub refused_count: usize,
}

fn time(v: &Value, field: &str) -> Result<Option<Timestamp>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s).map(Some).map_err(|e| format!("{field}: {e}")),
        Some(_) => Err(format!("{field} is not a timestamp")),
    }
}

/// Reads the indicators of `objects`.
pub fn read(objects: &[Value]) -> Read {
    let mut out = Read::default();
    for o in objects {
        if o.get("type").and_then(Value::as_str) != Some("indicator") {
            continue;
        }
        let id = o.get("id").and_then(Value::as_str).unwrap_or("indicator--?").to_owned();
        match one(o, &id) {
            Ok(Taken::Listed(listed)) => out.listed.extend(listed),
            Ok(Taken::Revoked(modified)) => out.revoked.push((id, modified)),
            Err(why) => {
                out.refused_count += 1;
                if out.refused.len() < 20 {
                    out.refused.push((id, why));
                }
            }
        }
    }
    out
}

/// What one indicator says.
enum Taken {
    /// Its observables, each with its validity.
    Listed(Vec<Listed>),
    /// It was revoked at this `modified` time.
    Revoked(Timestamp),
}

fn one(o: &Value, id: &str) -> Result<Taken, String> {
    if !id.starts_with("indicator--") {
        return Err("an indicator's id begins with indicator--".into());
    }
    let modified = time(o, "modified")?.or(time(o, "created")?).ok_or("no modified or created time")?;
    if o.get("revoked").and_then(Value::as_bool) == Some(true) {
        return Ok(Taken::Revoked(modified));
    }
    match o.get("pattern_type").and_then(Value::as_str) {
        Some("stix") => {}
        Some(other) => return Err(format!("pattern_type {other} is not stix")),
        None => return Err("no pattern_type".into()),
    }
    let pattern = o.get("pattern").and_then(Value::as_str).ok_or("no pattern")?;
    let observables = pattern::parse(pattern)?;
    let valid_from = time(o, "valid_from")?.ok_or("no valid_from")?;
    let valid_until = time(o, "valid_until")?;
    if valid_until.is_some_and(|u| u <= valid_from) {
        return Err("valid_until is not after valid_from".into());
    }
    let name: String = o.get("name").and_then(Value::as_str).unwrap_or(id).chars().take(200).collect();
    let listed = observables
        .into_iter()
        .map(|observable| Listed {
            stix_id: id.to_owned(),
            modified,
            name: name.clone(),
            observable,
            valid_from,
            valid_until,
        })
        .collect();
    Ok(Taken::Listed(listed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indicators_are_taken_revoked_or_refused_with_why() {
        let objects = vec![
            json!({"type": "identity", "id": "identity--1"}),
            json!({"type": "indicator", "id": "indicator--a", "created": "2026-01-01T00:00:00Z",
                   "modified": "2026-01-02T00:00:00Z", "name": "C2", "pattern_type": "stix",
                   "pattern": "[ipv4-addr:value = '198.51.100.7'] OR [ipv6-addr:value = '2001:db8::/32']",
                   "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}),
            json!({"type": "indicator", "id": "indicator--b", "modified": "2026-01-03T00:00:00Z", "revoked": true,
                   "pattern_type": "stix", "pattern": "[ipv4-addr:value = '192.0.2.1']", "valid_from": "2026-01-01T00:00:00Z"}),
            json!({"type": "indicator", "id": "indicator--c", "modified": "2026-01-03T00:00:00Z",
                   "pattern_type": "sigma", "pattern": "x", "valid_from": "2026-01-01T00:00:00Z"}),
            json!({"type": "indicator", "id": "indicator--d", "modified": "2026-01-03T00:00:00Z",
                   "pattern_type": "stix", "pattern": "[domain-name:value = 'x.example']", "valid_from": "2026-01-01T00:00:00Z"}),
            json!({"type": "indicator", "id": "indicator--e", "modified": "2026-01-03T00:00:00Z",
                   "pattern_type": "stix", "pattern": "[ipv4-addr:value = '192.0.2.9']"}),
        ];
        let r = read(&objects);
        assert_eq!(r.listed.len(), 2);
        assert_eq!(r.listed[0].name, "C2");
        assert_eq!(r.listed[1].observable, Observable::Address("2001:db8::/32".parse().unwrap()));
        assert!(r.listed[0].valid_until.is_some());
        assert_eq!(r.revoked.len(), 1);
        assert_eq!(r.refused_count, 3);
        assert!(r.refused.iter().any(|(id, why)| id == "indicator--e" && why.contains("valid_from")));
    }
}
