//! An incident as a STIX 2.1 bundle, to share: the publisher's `identity`, the `incident`, an
//! `indicator` for each address that used a stolen token and each stolen certificate, a
//! `sighting` of each address indicator with its counts and first and last times, the
//! `observed-data` of the reads it made, the `relationship`s between them, a `note` with the
//! timeline, and the TLP 2.0 marking on every object. Pure: the caller gathers the facts and
//! decides what may be named ([`Facts`] holds no tenant name unless asked, and never a secret).

use rekey_types::Timestamp;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// TLP 2.0, as the OASIS TLP 2.0 marking definitions (an extension of STIX 2.1) name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlp {
    /// TLP:CLEAR.
    Clear,
    /// TLP:GREEN.
    Green,
    /// TLP:AMBER.
    Amber,
    /// TLP:AMBER+STRICT.
    AmberStrict,
    /// TLP:RED.
    Red,
}

/// The TLP 2.0 marking extension's id.
const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

impl Tlp {
    /// `clear`, `green`, `amber`, `amber+strict` or `red`.
    pub fn parse(s: &str) -> Option<Tlp> {
        Some(match s {
            "clear" => Tlp::Clear,
            "green" => Tlp::Green,
            "amber" => Tlp::Amber,
            "amber+strict" => Tlp::AmberStrict,
            "red" => Tlp::Red,
            _ => return None,
        })
    }

    /// The word of the extension (`amber+strict`).
    pub fn word(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Red => "red",
        }
    }

    /// The marking definition's fixed id.
    pub fn id(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        }
    }

    /// The marking definition object, as the TLP 2.0 extension defines it.
    pub fn object(self) -> Value {
        json!({
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": self.id(),
            "created": "2022-10-01T00:00:00.000Z",
            "name": format!("TLP:{}", self.word().to_ascii_uppercase()),
            "extensions": { TLP2_EXTENSION: { "extension_type": "property-extension", "tlp_2_0": self.word() } },
        })
    }
}

/// One address that used a stolen token.
#[derive(Debug, Clone)]
pub struct Source {
    /// The address.
    pub address: std::net::IpAddr,
    /// Its events (any request the token made from it).
    pub events: i64,
    /// Its successful reveals.
    pub reveals: i64,
    /// The distinct credentials those read.
    pub credentials: i64,
    /// First and last events.
    pub first: Timestamp,
    /// See `first`.
    pub last: Timestamp,
}

/// What a shared incident says; the caller decides what may be in it.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The publisher's name.
    pub publisher: String,
    /// Makes the ids: the same incident shared again keeps its objects' ids.
    pub incident_id: String,
    /// The incident's name.
    pub name: String,
    /// Its description (counts; tenant names only if asked).
    pub description: String,
    /// When it was opened, and when the exposure began.
    pub opened: Timestamp,
    /// See `opened`.
    pub since: Option<Timestamp>,
    /// Addresses that used its stolen tokens.
    pub sources: Vec<Source>,
    /// Its stolen certificates' thumbprints (hex; 64 digits SHA-256, 40 SHA-1).
    pub certificates: Vec<String>,
    /// The timeline, one line per step.
    pub timeline: Vec<String>,
    /// When the bundle is written.
    pub now: Timestamp,
}

/// STIX's timestamp: RFC 3339, UTC, milliseconds.
fn stamp(t: Timestamp) -> String {
    // `Timestamp` prints microseconds (…:SS.ffffffZ) or whole seconds (…:SSZ).
    let text = t.to_string();
    let body = text.trim_end_matches('Z');
    match body.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{frac:0<3.3}Z"),
        None => format!("{body}.000Z"),
    }
}

/// A UUID made from `parts` (the same parts, the same id), shaped as version 4: the objects
/// Rekey publishes keep their ids when shared again.
fn made_id(kind: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("{kind}--{}", uuid_text(&b))
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A cyber observable's id, as STIX 2.1 makes it: UUIDv5 in the SCO namespace over the
/// canonical JSON of its id-contributing properties (`{"value":"…"}` for an address).
fn observable_id(kind: &str, value: &str) -> String {
    const NAMESPACE: [u8; 16] =
        [0x00, 0xab, 0xed, 0xb4, 0xaa, 0x42, 0x46, 0x6c, 0x9c, 0x01, 0xfe, 0xd2, 0x33, 0x15, 0xa9, 0xb7];
    let name = json!({ "value": value }).to_string();
    let digest = sha1_digest(&[&NAMESPACE, name.as_bytes()]);
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 of 20 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("{kind}--{}", uuid_text(&b))
}

fn sha1_digest(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = sha1::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The bundle.
pub fn bundle(f: &Facts, tlp: Tlp) -> Value {
    let marking = tlp.id();
    let now = stamp(f.now);
    let identity = made_id("identity", &["publisher", &f.publisher]);
    let incident = made_id("incident", &["incident", &f.incident_id]);
    let common = |id: &str, created: &str| {
        json!({
            "spec_version": "2.1",
            "id": id,
            "created": created,
            "modified": now,
            "created_by_ref": identity,
            "object_marking_refs": [marking],
        })
    };
    let with = |mut base: Value, more: Value| {
        if let (Some(b), Value::Object(m)) = (base.as_object_mut(), more) {
            b.extend(m);
        }
        base
    };
    let opened = stamp(f.opened);
    let mut objects = vec![
        tlp.object(),
        json!({
            "type": "identity", "spec_version": "2.1", "id": identity, "created": opened, "modified": now,
            "name": f.publisher, "identity_class": "organization", "object_marking_refs": [marking],
        }),
        with(common(&incident, &opened), json!({ "type": "incident", "name": f.name, "description": f.description })),
    ];
    for s in &f.sources {
        let (kind, value) = match s.address {
            std::net::IpAddr::V4(a) => ("ipv4-addr", a.to_string()),
            std::net::IpAddr::V6(a) => ("ipv6-addr", a.to_string()),
        };
        let sco = observable_id(kind, &value);
        let indicator = made_id("indicator", &["source", &f.incident_id, &value]);
        let observed = made_id("observed-data", &["source", &f.incident_id, &value]);
        let sighting = made_id("sighting", &["source", &f.incident_id, &value]);
        let (first, last) = (stamp(s.first), stamp(s.last));
        objects.push(json!({
            "type": kind, "spec_version": "2.1", "id": sco, "value": value, "object_marking_refs": [marking],
        }));
        objects.push(with(
            common(&indicator, &first),
            json!({
                "type": "indicator",
                "name": format!("{value}: used a stolen credential token"),
                "description": format!(
                    "{} requests with a token stolen from a credential vault, {} of them reads of {} credentials, from {first} to {last}.",
                    s.events, s.reveals, s.credentials
                ),
                "indicator_types": ["malicious-activity"],
                "pattern": format!("[{kind}:value = '{value}']"),
                "pattern_type": "stix",
                "valid_from": first,
            }),
        ));
        objects.push(with(
            common(&observed, &first),
            json!({
                "type": "observed-data",
                "first_observed": first,
                "last_observed": last,
                "number_observed": s.events.clamp(1, 999_999_999),
                "object_refs": [sco],
            }),
        ));
        objects.push(with(
            common(&sighting, &first),
            json!({
                "type": "sighting",
                "sighting_of_ref": indicator,
                "count": s.events.clamp(0, 999_999_999),
                "first_seen": first,
                "last_seen": last,
                "observed_data_refs": [observed],
                "where_sighted_refs": [identity],
            }),
        ));
        for (rel, target) in [("related-to", &incident), ("based-on", &observed)] {
            let id = made_id("relationship", &[rel, &indicator, target]);
            objects.push(with(
                common(&id, &first),
                json!({ "type": "relationship", "relationship_type": rel, "source_ref": indicator, "target_ref": target }),
            ));
        }
    }
    for hash in &f.certificates {
        let algorithm = if hash.len() == 64 { "SHA-256" } else { "SHA-1" };
        let indicator = made_id("indicator", &["certificate", &f.incident_id, hash]);
        objects.push(with(
            common(&indicator, &opened),
            json!({
                "type": "indicator",
                "name": format!("stolen certificate {hash}"),
                "description": "A certificate an application authenticated with, taken in this incident: refuse it.",
                "indicator_types": ["compromised"],
                "pattern": format!("[x509-certificate:hashes.'{algorithm}' = '{hash}']"),
                "pattern_type": "stix",
                "valid_from": f.since.map(stamp).unwrap_or_else(|| opened.clone()),
            }),
        ));
        let id = made_id("relationship", &["related-to", &indicator, &incident]);
        objects.push(with(
            common(&id, &opened),
            json!({ "type": "relationship", "relationship_type": "related-to", "source_ref": indicator, "target_ref": incident }),
        ));
    }
    if !f.timeline.is_empty() {
        let note = made_id("note", &["timeline", &f.incident_id]);
        objects.push(with(
            common(&note, &opened),
            json!({
                "type": "note",
                "abstract": "Timeline",
                "content": f.timeline.join("\n"),
                "object_refs": [incident],
            }),
        ));
    }
    json!({ "type": "bundle", "id": made_id("bundle", &["bundle", &f.incident_id, &now]), "objects": objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stix_times_have_milliseconds_and_ids_are_stable_uuids() {
        let t = Timestamp::parse_rfc3339("2026-01-12T03:04:05.123456Z").unwrap();
        assert_eq!(stamp(t), "2026-01-12T03:04:05.123Z");
        let t = Timestamp::parse_rfc3339("2026-01-12T03:04:05Z").unwrap();
        assert_eq!(stamp(t), "2026-01-12T03:04:05.000Z");
        assert_eq!(made_id("identity", &["a"]), made_id("identity", &["a"]));
        assert_ne!(made_id("identity", &["a", "b"]), made_id("identity", &["ab"]));
        let id = made_id("incident", &["x"]);
        assert_eq!(id.len(), "incident--".len() + 36);
        assert_eq!(&id["incident--".len() + 14..][..1], "4");
        // As Python's uuid.uuid5 makes it from the SCO namespace and {"value":"198.51.100.3"}.
        assert_eq!(observable_id("ipv4-addr", "198.51.100.3"), "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4");
    }

    #[test]
    fn every_tlp_has_its_fixed_marking() {
        for (word, name) in [("clear", "TLP:CLEAR"), ("amber+strict", "TLP:AMBER+STRICT"), ("red", "TLP:RED")] {
            let tlp = Tlp::parse(word).unwrap();
            assert_eq!(tlp.object()["name"], name);
            assert_eq!(tlp.object()["id"], tlp.id());
        }
        assert!(Tlp::parse("white").is_none());
    }
}
