//! The OpenAPI 3.1 document served at `/v1/openapi.json`, built from [`ROUTES`]. A test checks
//! that every route listed here is served by the router, and that the router serves no more.
//! (Over 600 lines: it is the whole document, written by hand route by route and schema by
//! schema.)

use serde_json::{json, Map, Value};

/// One documented operation.
pub struct Route {
    /// `get`, `post`, `put` or `delete`.
    pub method: &'static str,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Roles allowed (empty: no token needed).
    pub roles: &'static [&'static str],
    /// Request body schema name in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// Response schema name, or a JSON-schema literal for simple shapes.
    pub response: &'static str,
}

const OPERATOR: &[&str] = &["operator"];
const READERS: &[&str] = &["operator", "auditor"];
const TENANT: &[&str] = &["operator", "auditor", "tenant-admin"];
const WRITERS: &[&str] = &["operator", "tenant-admin"];

/// Every route the server serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/v1/sys/health",
        summary: "Liveness; no token needed, not audited",
        roles: &[],
        body: None,
        response: "Health",
    },
    Route {
        method: "get",
        path: "/v1/sys/status",
        summary: "Seal, store and counts",
        roles: READERS,
        body: None,
        response: "Status",
    },
    Route {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document",
        roles: &[],
        body: None,
        response: "object",
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (OpenMetrics text); no token needed",
        roles: &[],
        body: None,
        response: "text",
    },
    Route {
        method: "post",
        path: "/v1/tenants",
        summary: "Create a tenant and its first key",
        roles: OPERATOR,
        body: Some("CreateTenant"),
        response: "Tenant",
    },
    Route {
        method: "get",
        path: "/v1/tenants",
        summary: "List tenants (query: region, after, limit)",
        roles: READERS,
        body: None,
        response: "TenantList",
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}",
        summary: "Show a tenant",
        roles: TENANT,
        body: None,
        response: "Tenant",
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/credentials/{name}",
        summary: "Store a new version of a credential (creates it if new)",
        roles: WRITERS,
        body: Some("PutCredential"),
        response: "Credential",
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/credentials/{name}",
        summary: "Show a credential's metadata (never the secret)",
        roles: TENANT,
        body: None,
        response: "Credential",
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/credentials/{name}",
        summary: "Soft-delete a credential",
        roles: OPERATOR,
        body: None,
        response: "object",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/reveal",
        summary: "Reveal the secret (query: version, operators only); audited",
        roles: &["operator", "connector"],
        body: None,
        response: "Revealed",
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/credentials/{name}/versions",
        summary: "List versions",
        roles: TENANT,
        body: None,
        response: "VersionList",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/rollback",
        summary: "Make an old version current again, as a new version",
        roles: WRITERS,
        body: Some("Rollback"),
        response: "Credential",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/retarget",
        summary: "Send the current secret to another target: a new version with changed fields and the same secret (operators only; audited with the old and new target)",
        roles: OPERATOR,
        body: Some("Retarget"),
        response: "Credential",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/promote",
        summary: "Make the pending version current (e.g. a certificate once registered with the provider)",
        roles: WRITERS,
        body: None,
        response: "Credential",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/verify",
        summary: "Check the current version against its target (the secret stays in the server); audited",
        roles: WRITERS,
        body: None,
        response: "CheckResult",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/rotate",
        summary: "Rotate at the target: pending, applied, verified, promoted (ldap, entra-app)",
        roles: WRITERS,
        body: None,
        response: "Rotation",
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/credentials/{name}/rotations",
        summary: "The credential's rotations, newest first",
        roles: TENANT,
        body: None,
        response: "RotationList",
    },
    Route {
        method: "post",
        path: "/v1/incidents",
        summary: "Open an incident: its scope selectors and since; computes and stores the blast radius",
        roles: OPERATOR,
        body: Some("OpenIncident"),
        response: "IncidentReport",
    },
    Route {
        method: "get",
        path: "/v1/incidents",
        summary: "List incidents, newest first",
        roles: READERS,
        body: None,
        response: "IncidentList",
    },
    Route {
        method: "get",
        path: "/v1/incidents/{id}",
        summary: "An incident: counts by region, tenant and kind, reveals since, timeline",
        roles: READERS,
        body: None,
        response: "IncidentReport",
    },
    Route {
        method: "get",
        path: "/v1/incidents/{id}/items",
        summary: "The credentials in scope, with reasons and reveals since (query: after=tenant/name, limit)",
        roles: READERS,
        body: None,
        response: "IncidentItemList",
    },
    Route {
        method: "post",
        path: "/v1/incidents/{id}/contain",
        summary: "Compromise the key versions, revoke the tokens and certificates in scope; freeze reveals",
        roles: OPERATOR,
        body: Some("Contain"),
        response: "ContainReport",
    },
    Route {
        method: "post",
        path: "/v1/incidents/{id}/close",
        summary: "Close an incident",
        roles: OPERATOR,
        body: None,
        response: "Incident",
    },
    Route {
        method: "post",
        path: "/v1/campaigns",
        summary: "Start a rotation campaign for an open incident: one item per credential in scope",
        roles: OPERATOR,
        body: Some("StartCampaign"),
        response: "Campaign",
    },
    Route {
        method: "get",
        path: "/v1/campaigns",
        summary: "List campaigns, newest first",
        roles: READERS,
        body: None,
        response: "CampaignList",
    },
    Route {
        method: "get",
        path: "/v1/campaigns/{id}",
        summary: "A campaign's progress: items by state, overall and per tenant; notices",
        roles: READERS,
        body: None,
        response: "CampaignStatus",
    },
    Route {
        method: "get",
        path: "/v1/campaigns/{id}/items",
        summary: "A campaign's items (query: tenant, state, after=tenant/name, limit)",
        roles: READERS,
        body: None,
        response: "CampaignItemList",
    },
    Route {
        method: "post",
        path: "/v1/campaigns/{id}/waive",
        summary: "Waive an item: it will not be rotated, for the reason given",
        roles: OPERATOR,
        body: Some("Waive"),
        response: "CampaignItem",
    },
    Route {
        method: "post",
        path: "/v1/campaigns/{id}/links",
        summary: "A single-use reset link for one tenant's self-service items, for the operator to pass on",
        roles: OPERATOR,
        body: Some("IssueLink"),
        response: "ResetLink",
    },
    Route {
        method: "get",
        path: "/v1/campaigns/{id}/report",
        summary: "The campaign report per tenant (query: format=json|csv|html)",
        roles: READERS,
        body: None,
        response: "CampaignReport",
    },
    Route {
        method: "get",
        path: "/v1/credentials",
        summary: "List credentials (query: tenant, kind, region, after=tenant/name, limit)",
        roles: TENANT,
        body: None,
        response: "CredentialList",
    },
    Route {
        method: "post",
        path: "/v1/import",
        summary:
            "Import a chunk of JSON lines (query: dry_run, create_tenants, mode=atomic|continue-on-error, first_line)",
        roles: OPERATOR,
        body: Some("ImportLines"),
        response: "ImportReport",
    },
    Route {
        method: "post",
        path: "/v1/tokens",
        summary: "Create a token; its secret is shown once",
        roles: OPERATOR,
        body: Some("CreateToken"),
        response: "CreatedToken",
    },
    Route {
        method: "get",
        path: "/v1/tokens",
        summary: "List tokens (never their secrets)",
        roles: READERS,
        body: None,
        response: "TokenList",
    },
    Route {
        method: "delete",
        path: "/v1/tokens/{id}",
        summary: "Revoke a token",
        roles: OPERATOR,
        body: None,
        response: "object",
    },
    Route {
        method: "get",
        path: "/v1/audit/events",
        summary: "Audit events: the last n, or n after a sequence number (query: n, after)",
        roles: READERS,
        body: None,
        response: "AuditEventList",
    },
    Route {
        method: "get",
        path: "/v1/audit/verify",
        summary: "Verify the audit hash chain",
        roles: READERS,
        body: None,
        response: "VerifyReport",
    },
    Route {
        method: "post",
        path: "/v1/sys/init",
        summary: "Shamir seal: create the root keyring and split it into shares (once per store; no token)",
        roles: &[],
        body: Some("Init"),
        response: "InitAnswer",
    },
    Route {
        method: "post",
        path: "/v1/sys/unseal",
        summary: "Shamir seal: give one share (or reset, with a share that does not count); the vault opens at the threshold (no token)",
        roles: &[],
        body: Some("Unseal"),
        response: "UnsealAnswer",
    },
    Route {
        method: "post",
        path: "/v1/sys/seal",
        summary: "Seal the vault: key material is dropped from memory",
        roles: OPERATOR,
        body: None,
        response: "object",
    },
    Route {
        method: "get",
        path: "/v1/keys",
        summary: "Root key and tenant KEK versions with state and what each wraps (query: tenant)",
        roles: READERS,
        body: None,
        response: "KeyList",
    },
    Route {
        method: "post",
        path: "/v1/keys/rotate",
        summary:
            "Rotate one tenant's KEK, all tenants', or the root key; answers with the job (Shamir root: the new shares)",
        roles: OPERATOR,
        body: Some("Rotate"),
        response: "Job",
    },
    Route {
        method: "post",
        path: "/v1/keys/rotate/commit",
        summary: "Shamir root rotation, step two: switch to the new shares and rewrap every KEK",
        roles: OPERATOR,
        body: Some("RotateCommit"),
        response: "Job",
    },
    Route {
        method: "get",
        path: "/v1/keys/jobs",
        summary: "Key jobs (rotations), newest first",
        roles: READERS,
        body: None,
        response: "JobList",
    },
    Route {
        method: "get",
        path: "/v1/keys/jobs/{id}",
        summary: "One key job and its progress",
        roles: READERS,
        body: None,
        response: "Job",
    },
    Route {
        method: "get",
        path: "/v1/keys/{key}",
        summary: "What a key version (root@N or TENANT@N) wraps",
        roles: READERS,
        body: None,
        response: "WrappedBy",
    },
    Route {
        method: "delete",
        path: "/v1/keys/{key}",
        summary: "Destroy a key version (query: force, needed if it still wraps data)",
        roles: OPERATOR,
        body: None,
        response: "Destroyed",
    },
    Route {
        method: "post",
        path: "/v1/keys/{key}/compromise",
        summary: "Mark a key version compromised and rotate off it",
        roles: OPERATOR,
        body: None,
        response: "Job",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/shred",
        summary: "Destroy every key of a tenant (crypto-shredding); its audit history stays",
        roles: OPERATOR,
        body: None,
        response: "Shredded",
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/credentials/{name}/certificate",
        summary: "Issue a certificate for an entra-app credential; its key becomes the pending version",
        roles: OPERATOR,
        body: Some("IssueCertificate"),
        response: "Certificate",
    },
    Route {
        method: "get",
        path: "/v1/certificates",
        summary: "The certificate inventory (query: expiring, e.g. 30d)",
        roles: READERS,
        body: None,
        response: "CertificateList",
    },
    Route {
        method: "post",
        path: "/v1/certificates/{thumbprint}/revoke",
        summary: "Mark a certificate revoked (SHA-1 or SHA-256 thumbprint, hex)",
        roles: OPERATOR,
        body: None,
        response: "Certificate",
    },
];

fn schema_ref(name: &str) -> Value {
    match name {
        "object" => json!({ "type": "object" }),
        "text" => json!({ "type": "string" }),
        list if list.ends_with("List") => {
            json!({ "type": "array", "items": { "$ref": format!("#/components/schemas/{}", &list[..list.len() - 4]) } })
        }
        other => json!({ "$ref": format!("#/components/schemas/{other}") }),
    }
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

fn schemas() -> Value {
    let ts = json!({ "type": "string", "format": "date-time" });
    let s = json!({ "type": "string" });
    let n = json!({ "type": "integer" });
    let kind = json!({ "type": "string", "enum": ["ldap", "entra-app", "pop3", "smtp", "generic"] });
    let role = json!({ "type": "string", "enum": ["operator", "auditor", "tenant-admin", "connector"] });
    let vault = json!({
        "Error": { "type": "object", "required": ["code", "message", "request_id"], "properties": {
            "code": { "type": "string", "enum": rekey_types::ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>() },
            "message": s, "request_id": s } },
        "Health": { "type": "object", "properties": { "status": s, "sealed": { "type": "boolean" }, "version": s } },
        "Status": { "type": "object", "properties": { "version": s, "store": s, "audit_head_seq": n, "integrity_failures": n,
            "seal": { "type": "object", "properties": { "kind": { "type": "string", "enum": ["dev", "shamir", "pkcs11"] },
                "sealed": { "type": "boolean" }, "initialized": { "type": "boolean" }, "unseal_progress": n, "threshold": n,
                "shares": n, "root_key_version": n, "root_key_versions": { "type": "array", "items": n }, "warning": s } },
            "counts": { "type": "object", "properties": { "tenants": n, "credentials": n, "versions": n, "active_tokens": n } } } },
        "CreateTenant": { "type": "object", "required": ["name", "region"], "additionalProperties": false, "properties": {
            "name": s, "region": s, "contacts": { "type": "array", "items": s } } },
        "Tenant": { "type": "object", "properties": { "id": s, "name": s, "region": s, "contacts": { "type": "array", "items": s }, "state": s, "created_at": ts } },
        "PutCredential": { "type": "object", "required": ["kind"], "additionalProperties": false,
            "description": "Exactly one of: secret, secret_base64, or certificate_pem with private_key_pem (entra-app).",
            "properties": { "kind": kind, "fields": string_map(), "labels": string_map(), "secret": s, "secret_base64": s,
                "certificate_pem": s, "private_key_pem": s } },
        "Credential": { "type": "object", "properties": { "id": s, "tenant": s, "region": s, "name": s, "kind": kind,
            "fields": string_map(), "labels": string_map(), "current_version": n, "latest_version": n, "created_at": ts, "updated_at": ts,
            "health": { "$ref": "#/components/schemas/CheckResult" }, "rotation": { "$ref": "#/components/schemas/Rotation" } } },
        "CheckResult": { "type": "object", "properties": { "tenant": s, "name": s, "kind": kind, "version": n,
            "status": { "type": "string", "enum": ["ok", "auth-failed", "unreachable", "tls-failed", "protocol-error", "timeout", "egress-denied"] },
            "detail": s, "elapsed_ms": n, "checked_at": ts } },
        "Rotation": { "type": "object", "properties": { "id": s, "tenant": s, "name": s, "from_version": n, "to_version": n,
            "state": { "type": "string", "enum": ["pending", "applied", "promoted", "retired", "failed"] }, "error": s,
            "created_by": s, "created_at": ts, "changed_at": ts, "retire_after": ts } },
        "Revealed": { "type": "object", "properties": { "tenant": s, "name": s, "kind": kind, "version": n,
            "secret": { "type": "string", "description": "set when the secret is UTF-8" },
            "secret_base64": { "type": "string", "description": "set otherwise" } } },
        "Version": { "type": "object", "properties": { "version": n, "stage": s, "kek_version": n, "created_by": s, "created_at": ts } },
        "Rollback": { "type": "object", "required": ["to"], "additionalProperties": false, "properties": { "to": n } },
        "Retarget": { "type": "object", "additionalProperties": false, "properties": {
            "set": { "type": "object", "additionalProperties": s }, "unset": { "type": "array", "items": s } } },
        "ImportLines": { "type": "string", "description": "application/x-ndjson: one {tenant, region?, name, kind, fields?, labels?, secret | secret_base64} per line" },
        "ImportReport": { "type": "object", "properties": { "lines": n, "written": n, "tenants_created": { "type": "array", "items": s },
            "errors": { "type": "array", "items": { "type": "object", "properties": { "line": n, "reason": s } } } } },
        "CreateToken": { "type": "object", "required": ["role"], "additionalProperties": false, "properties": {
            "role": role, "tenant": s, "credentials": { "type": "array", "items": s }, "cidrs": { "type": "array", "items": s },
            "ttl": { "type": "string", "description": "e.g. 30m, 1h, 7d, or never; default 30d" }, "description": s } },
        "Token": { "type": "object", "properties": { "id": s, "role": role, "tenant": s, "credentials": { "type": "array", "items": s },
            "cidrs": { "type": "array", "items": s }, "description": s, "created_by": s, "created_at": ts, "expires_at": ts, "revoked_at": ts,
            "state": { "type": "string", "enum": ["active", "expired", "revoked"] } } },
        "CreatedToken": { "type": "object", "properties": { "token": { "$ref": "#/components/schemas/Token" },
            "secret": { "type": "string", "description": "the bearer token; shown once" } } },
        "AuditEvent": { "type": "object", "properties": { "seq": n, "time": ts, "principal": s, "action": s, "resource": s,
            "outcome": { "type": "string", "enum": ["success", "denied", "error"] }, "source": s, "request_id": s, "detail": s, "mac": s } },
    });
    let keys = json!({
        "Init": { "type": "object", "required": ["shares", "threshold"], "additionalProperties": false,
            "properties": { "shares": n, "threshold": n } },
        "InitAnswer": { "type": "object", "properties": { "shares": { "type": "array", "items": s, "description": "shown once" }, "threshold": n } },
        "Unseal": { "type": "object", "additionalProperties": false, "properties": { "share": s, "reset": { "type": "boolean" } } },
        "UnsealAnswer": { "type": "object", "properties": { "sealed": { "type": "boolean" }, "progress": n, "threshold": n,
            "root_token": { "type": "string", "description": "only when this unseal opened a fresh store; shown once" } } },
        "KeyList": { "type": "object", "properties": {
            "root": { "type": "array", "items": { "type": "object", "properties": { "key": s, "version": n, "state": s, "keks": n, "created_at": ts } } },
            "tenants": { "type": "array", "items": { "type": "object", "properties": { "tenant": s, "region": s, "state": s,
                "versions": { "type": "array", "items": { "type": "object", "properties": { "key": s, "version": n, "state": s,
                    "root_version": n, "deks": n, "created_at": ts } } } } } } } },
        "Rotate": { "type": "object", "additionalProperties": false, "description": "Exactly one of tenant, all, root; shares and threshold for a Shamir root.",
            "properties": { "tenant": s, "all": { "type": "boolean" }, "root": { "type": "boolean" }, "shares": n, "threshold": n } },
        "RotateCommit": { "type": "object", "required": ["set_id"], "additionalProperties": false, "properties": { "set_id": s } },
        "Job": { "type": "object", "properties": { "id": s, "scope": { "type": "string", "enum": ["tenant", "all", "root"] }, "tenant": s,
            "reason": s, "state": { "type": "string", "enum": ["running", "done", "failed"] }, "total": n, "done": n,
            "created_by": s, "created_at": ts, "finished_at": ts, "error": s } },
        "WrappedBy": { "type": "object", "properties": { "key": s, "total": n, "items": { "type": "array", "items": s } } },
        "Destroyed": { "type": "object", "properties": { "key": s, "unrecoverable": n } },
        "Shredded": { "type": "object", "properties": { "tenant": s, "keys_destroyed": n, "versions_unrecoverable": n } },
        "IssueCertificate": { "type": "object", "additionalProperties": false, "properties": { "lifetime": { "type": "string", "description": "default 90d" } } },
        "Certificate": { "type": "object", "properties": { "tenant": s, "credential": s, "credential_version": n, "subject": s,
            "sha1": s, "sha256": s, "x5t": s, "not_before": ts, "not_after": ts, "state": { "type": "string", "enum": ["active", "revoked"] }, "pem": s } },
        "OpenIncident": { "type": "object", "required": ["title", "scope"], "additionalProperties": false, "properties": {
            "title": s, "scope": { "type": "array", "items": s, "description": "key:K, cert:THUMBPRINT, token:ID, region:R,…, tenant:T,…, kind:K,…, cred:T/N" },
            "since": ts } },
        "Incident": { "type": "object", "properties": { "id": s, "title": s, "scope": { "type": "array", "items": s }, "since": ts,
            "state": { "type": "string", "enum": ["open", "closed"] }, "frozen": { "type": "boolean" }, "affected": n,
            "created_by": s, "created_at": ts, "contained_at": ts, "closed_at": ts } },
        "IncidentReport": { "type": "object", "properties": { "incident": { "$ref": "#/components/schemas/Incident" },
            "by_region": { "type": "object", "additionalProperties": n }, "by_kind": { "type": "object", "additionalProperties": n },
            "by_tenant": { "type": "array", "items": { "type": "array", "items": {} } },
            "reveals_since": { "type": "object", "properties": { "reveals": n, "credentials": n } },
            "timeline": { "type": "array", "items": { "$ref": "#/components/schemas/AuditEvent" } } } },
        "IncidentItem": { "type": "object", "properties": { "tenant": s, "region": s, "name": s, "kind": s, "reasons": s, "reveals_since": n } },
        "Contain": { "type": "object", "additionalProperties": false, "properties": { "freeze": { "type": "boolean" }, "dry_run": { "type": "boolean" } } },
        "ContainReport": { "type": "object", "properties": { "incident": s, "dry_run": { "type": "boolean" },
            "actions": { "type": "array", "items": { "type": "object", "properties": { "action": s, "target": s,
                "outcome": { "type": "string", "enum": ["planned", "done", "skipped", "failed"] }, "detail": s } } } } },
        "VerifyReport": { "type": "object", "properties": { "ok": { "type": "boolean" }, "checked": n, "head_seq": n, "server_head_seq": n,
            "problems": { "type": "array", "items": { "type": "object", "properties": { "seq": n, "kind": s, "message": s } } } } },
    });
    let campaigns = json!({
        "StartCampaign": { "type": "object", "required": ["incident"], "additionalProperties": false, "properties": {
            "incident": s, "deadline": { "type": "string", "description": "from now, e.g. 7d (default), 36h" },
            "notify": { "type": "array", "items": { "type": "string", "enum": ["email", "webhook"] } } } },
        "Campaign": { "type": "object", "properties": { "id": s, "incident": s, "state": { "type": "string", "enum": ["running", "finished"] },
            "notify": { "type": "array", "items": s }, "deadline": ts, "remind_at": ts, "items": n, "created_by": s, "created_at": ts,
            "finished_at": ts } },
        "CampaignItem": { "type": "object", "properties": { "tenant": s, "region": s, "name": s, "kind": s,
            "mode": { "type": "string", "enum": ["automatic", "self-service", "manual"] },
            "state": { "type": "string", "enum": ["pending", "rotating", "notified", "rotated", "verified", "retired", "failed", "waived"] },
            "attempts": n, "error": s, "done_by": s, "note": s, "next_attempt": ts, "notified_at": ts, "rotated_at": ts,
            "verified_at": ts, "retired_at": ts, "changed_at": ts } },
        "CampaignStatus": { "type": "object", "properties": { "campaign": { "$ref": "#/components/schemas/Campaign" },
            "counts": { "type": "object", "additionalProperties": n }, "done": n, "open": n, "failed": n, "overdue": { "type": "boolean" },
            "tenants": { "type": "array", "items": { "type": "object", "properties": { "tenant": s, "total": n, "done": n,
                "counts": { "type": "object", "additionalProperties": n } } } },
            "notices": { "type": "object", "additionalProperties": n, "description": "by channel/state" } } },
        "Waive": { "type": "object", "required": ["credential", "reason"], "additionalProperties": false, "properties": {
            "credential": { "type": "string", "description": "tenant/name" }, "reason": s } },
        "IssueLink": { "type": "object", "required": ["tenant"], "additionalProperties": false, "properties": { "tenant": s } },
        "ResetLink": { "type": "object", "properties": { "id": s, "tenant": s, "url": { "type": "string", "description": "shown once" },
            "expires_at": ts, "credentials": { "type": "array", "items": s } } },
        "CampaignReport": { "type": "object", "description": "format=csv answers text/csv, format=html one HTML page", "properties": {
            "generated_at": ts, "incident": { "$ref": "#/components/schemas/Incident" }, "campaign": { "$ref": "#/components/schemas/Campaign" },
            "done": n, "open": n, "tenants": { "type": "array", "items": { "type": "object", "properties": { "tenant": s, "region": s,
                "items": { "type": "array", "items": { "$ref": "#/components/schemas/CampaignItem" } },
                "notices": { "type": "array", "items": { "type": "object", "properties": { "channel": s, "purpose": s, "state": s,
                    "attempts": n, "error": s, "sent_at": ts } } } } } } } },
    });
    let mut all = vault;
    let map = all.as_object_mut().expect("schemas are an object");
    for more in [keys, campaigns] {
        for (k, v) in more.as_object().expect("schemas are an object") {
            map.insert(k.clone(), v.clone());
        }
    }
    all
}

/// The document, as JSON.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut op = json!({
            "summary": r.summary,
            "responses": {
                "200": { "description": "OK", "content": { "application/json": { "schema": schema_ref(r.response) } } },
                "default": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if !r.roles.is_empty() {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-rekey-roles"] = json!(r.roles);
        } else {
            op["security"] = json!([]);
        }
        if let Some(body) = r.body {
            let media = if body == "ImportLines" { "application/x-ndjson" } else { "application/json" };
            op["requestBody"] = json!({ "required": true, "content": { media: { "schema": schema_ref(body) } } });
        }
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        paths
            .entry(r.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(r.method.to_owned(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Rekey", "version": env!("CARGO_PKG_VERSION"),
            "description": "Breach-ready vault for the credentials a multi-tenant service holds for its customers.",
            "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" } },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "rk_<id>_<secret>" } }
        }
    })
}
