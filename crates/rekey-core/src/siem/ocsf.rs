//! An audit event as an OCSF event: class API Activity (`class_uid` 6003, category Application
//! Activity, 6), schema version [`OCSF_VERSION`]. The mapping is in docs/audit.md ("SIEM export").

use rekey_types::{AuditOutcome, AuditRecord};
use serde_json::{json, Value};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// API Activity.
const CLASS_UID: u64 = 6003;
/// Application Activity.
const CATEGORY_UID: u64 = 6;

/// The OCSF activity of an action: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other, by the
/// action's verb (the part after the first dot).
pub fn activity(action: &str) -> (u64, &'static str) {
    let verb = action.split_once('.').map_or(action, |(_, v)| v);
    match verb {
        "create" | "put" | "open" | "issue" | "import" | "start" | "init" | "plant" => (1, "Create"),
        "reveal" | "show" | "list" | "read" | "status" | "verify" | "tree" | "prove" | "checkpoint" | "versions"
        | "report" | "items" => (2, "Read"),
        "update" | "retarget" | "rotate" | "rollback" | "promote" | "contain" | "close" | "waive" | "accept"
        | "rewrap" | "compromise" | "unseal" | "seal" | "commit" => (3, "Update"),
        "delete" | "revoke" | "destroy" | "shred" | "retire" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// The event as OCSF JSON. `origin` is the log's (the checkpoint origin), so that events of two
/// deployments are told apart.
pub fn event(record: &AuditRecord, origin: &str) -> Value {
    let (activity_id, activity_name) = activity(&record.action);
    let (status_id, status, severity_id, severity) = match record.outcome {
        AuditOutcome::Success => (1, "Success", 1, "Informational"),
        AuditOutcome::Denied => (2, "Failure", 3, "Medium"),
        AuditOutcome::Error => (2, "Failure", 2, "Low"),
    };
    let mut event = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
        "time": record.time.as_micros().div_euclid(1000),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "status_code": record.outcome.as_str(),
        "message": format!("{} {} {}", record.principal, record.action, record.resource),
        "actor": { "user": { "uid": record.principal, "name": record.principal } },
        "api": {
            "operation": record.action,
            "service": { "name": "rekey" },
            "request": { "uid": record.request_id },
        },
        "resources": [ { "uid": record.resource, "name": record.resource, "type": resource_type(&record.resource) } ],
        "src_endpoint": if record.source.is_empty() { json!({ "name": "rekey" }) } else { json!({ "ip": record.source }) },
        "cloud": { "provider": "rekey" },
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": "Rekey", "vendor_name": "Rekey", "version": env!("CARGO_PKG_VERSION") },
            "uid": format!("{origin}/{}", record.seq),
            "sequence": record.seq,
            "log_name": origin,
            "correlation_uid": record.request_id,
            "original_time": record.time.to_string(),
        },
    });
    if !record.detail.is_empty() {
        event["status_detail"] = json!(record.detail);
    }
    event
}

/// The kind of resource a name is: the text before its first `:` (`tenant`, `token`,
/// `incident`…), `credential` for `tenant/name`, `system` otherwise.
fn resource_type(resource: &str) -> &str {
    match resource.split_once(':') {
        Some((kind, _)) if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') => kind,
        _ if resource.contains('/') => "credential",
        _ => "system",
    }
}

#[cfg(test)]
mod tests {
    use rekey_types::Timestamp;

    use super::*;

    fn record(action: &str, outcome: AuditOutcome, source: &str) -> AuditRecord {
        AuditRecord {
            seq: 42,
            time: Timestamp::from_micros(1_700_000_000_123_456),
            principal: "token:0190".into(),
            action: action.into(),
            resource: "acme/ldap".into(),
            outcome,
            source: source.into(),
            request_id: "req-1".into(),
            detail: "version=3".into(),
        }
    }

    /// Every attribute OCSF 1.3.0 requires of API Activity is present, with the class's ids.
    #[test]
    fn an_event_carries_what_api_activity_requires() {
        let e = event(&record("cred.reveal", AuditOutcome::Success, "10.0.0.1"), "rekey/audit/x");
        for required in [
            "activity_id",
            "actor",
            "api",
            "category_uid",
            "class_uid",
            "cloud",
            "metadata",
            "severity_id",
            "src_endpoint",
            "time",
            "type_uid",
        ] {
            assert!(e.get(required).is_some(), "{required} missing: {e}");
        }
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["type_uid"], 600302);
        assert_eq!(e["time"], 1_700_000_000_123u64);
        assert_eq!(e["api"]["operation"], "cred.reveal");
        assert_eq!(e["metadata"]["version"], OCSF_VERSION);
        assert_eq!(e["metadata"]["uid"], "rekey/audit/x/42");
        assert_eq!(e["metadata"]["product"]["name"], "Rekey");
        assert_eq!(e["src_endpoint"]["ip"], "10.0.0.1");
        assert_eq!(e["resources"][0]["type"], "credential");
        let denied = event(&record("cred.reveal", AuditOutcome::Denied, ""), "o");
        assert_eq!((denied["status_id"].as_u64(), denied["severity_id"].as_u64()), (Some(2), Some(3)));
        assert_eq!(denied["src_endpoint"]["name"], "rekey");
    }

    #[test]
    fn every_action_has_an_activity() {
        for a in rekey_types::AuditAction::ALL {
            let (id, name) = activity(a.as_str());
            assert!([1, 2, 3, 4, 99].contains(&id) && !name.is_empty());
        }
        assert_eq!(activity("cred.reveal").0, 2);
        assert_eq!(activity("token.revoke").0, 4);
        assert_eq!(activity("tenant.create").0, 1);
        assert_eq!(activity("cred.retarget").0, 3);
    }
}
