//! Bulk import: a chunk of JSON lines, each one credential, validated and written together.
//!
//! The client sends a file in chunks. With `dry_run` nothing is written and every line is checked
//! as it would be written; the CLI's default all-or-nothing import first dry-runs the whole file,
//! then writes it. In `Atomic` mode a chunk with any bad line writes nothing; in `ContinueOnError`
//! mode the good lines of a chunk are written and the bad ones reported. A chunk's writes (new
//! tenants and credential versions) commit in one transaction with one audit event.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use rekey_store::{CredentialRow, WriteOp};
use rekey_types::{AuditAction, CredentialKind, CredentialName, Region, Secret, TenantId, TenantName};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credentials::{prepare, NextVersion, PutInput, PutSecret};
use crate::kernel::policy::Action;
use crate::tenants::NewTenant;
use crate::{Caller, CoreError, Vault};

/// Most lines in one chunk.
pub const MAX_CHUNK_LINES: usize = 10_000;

/// One line of an import file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    /// The tenant's name.
    pub tenant: String,
    /// The tenant's region, needed when the import creates the tenant.
    #[serde(default)]
    pub region: Option<String>,
    /// The credential's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its target, as the kind takes it.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The secret, when it is UTF-8 text.
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// The secret, base64, when it is not.
    #[serde(default)]
    pub secret_base64: Option<SecretText>,
}

/// A secret as read from JSON; zeroized on drop, no `Debug`.
pub struct SecretText(Zeroizing<String>);

impl utoipa::PartialSchema for SecretText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
            .write_only(true)
            .description(Some("A secret; never returned, logged or audited"))
            .into()
    }
}

impl utoipa::ToSchema for SecretText {}

impl SecretText {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretText(Zeroizing::new(s)))
    }
}

/// What an import does when a line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ImportMode {
    /// All lines or none.
    Atomic,
    /// Every good line, and a report of the others.
    ContinueOnError,
}

/// How to import a chunk.
pub struct ImportOptions {
    /// Check every line, write nothing.
    pub dry_run: bool,
    /// Create the tenants that do not exist.
    pub create_tenants: bool,
    /// All or nothing, or the good lines.
    pub mode: ImportMode,
}

/// A refused line.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineError {
    /// Its number in the client's file.
    pub line: u64,
    /// Why it was refused (never a secret).
    pub reason: String,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Lines read.
    pub lines: u64,
    /// Lines written (or, in a dry run, that would be).
    pub written: u64,
    /// Tenants it created.
    pub tenants_created: Vec<String>,
    /// The refused lines.
    pub errors: Vec<LineError>,
}

/// A line that passed validation.
struct GoodLine {
    tenant: TenantName,
    region: Option<Region>,
    name: CredentialName,
    input: PutInput,
}

fn parse_line(line: Result<ImportLine, String>) -> Result<GoodLine, String> {
    let line = line?;
    let tenant = TenantName::parse(&line.tenant).map_err(|e| e.to_string())?;
    let name = CredentialName::parse(&line.name).map_err(|e| e.to_string())?;
    let region = line.region.as_deref().map(Region::parse).transpose().map_err(|e| e.to_string())?;
    let kind: CredentialKind = line.kind.parse().map_err(|e: rekey_types::FieldError| e.to_string())?;
    let secret = match (line.secret, line.secret_base64) {
        (Some(s), None) => Secret::new(s.0.as_bytes().to_vec()),
        (None, Some(b)) => Secret::new(
            base64::engine::general_purpose::STANDARD
                .decode(b.0.as_bytes())
                .map_err(|_| "secret_base64 is not valid base64".to_owned())?,
        ),
        (None, None) => return Err("missing secret (or secret_base64)".into()),
        (Some(_), Some(_)) => return Err("give secret or secret_base64, not both".into()),
    };
    Ok(GoodLine {
        tenant,
        region,
        name,
        input: PutInput { kind, fields: line.fields, labels: line.labels, secret: PutSecret::Opaque(secret) },
    })
}

struct TenantSlot {
    id: TenantId,
    region: String,
    /// This chunk creates the tenant (its write, if any, is in `tenant_ops`).
    created: bool,
}

impl Vault {
    /// Imports one chunk. `lines` holds each line's number and its parsed JSON (or why it failed
    /// to parse).
    pub async fn import_chunk(
        &self,
        caller: &Caller,
        lines: Vec<(u64, Result<ImportLine, String>)>,
        options: ImportOptions,
    ) -> Result<ImportReport, CoreError> {
        let first = lines.first().map_or(0, |l| l.0);
        let last = lines.last().map_or(0, |l| l.0);
        let resource = format!("lines {first}-{last}");
        if let Err(e) = self.authorize(caller, Action::Import, "import") {
            return self.finish(caller, AuditAction::CredImport, &resource, Err(e)).await;
        }
        if lines.len() > MAX_CHUNK_LINES {
            let e = CoreError::BadRequest(format!("at most {MAX_CHUNK_LINES} lines per import request"));
            return self.finish(caller, AuditAction::CredImport, &resource, Err(e)).await;
        }
        let prepared = self.prepare_chunk(caller, lines, &options).await;
        let (mut report, ops) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::CredImport, &resource, Err(e)).await,
        };
        let nothing_to_write = ops.is_empty() || options.dry_run;
        let refused = options.mode == ImportMode::Atomic && !report.errors.is_empty();
        if nothing_to_write || refused {
            if refused {
                report.written = 0;
                report.tenants_created.clear();
            }
            let detail =
                format!("dry_run={}; written={}; errors={}", options.dry_run, report.written, report.errors.len());
            return self.finish_with(caller, AuditAction::CredImport, &resource, Ok(report), |_| detail).await;
        }
        let detail = format!(
            "written={}; tenants_created={}; errors={}",
            report.written,
            report.tenants_created.len(),
            report.errors.len()
        );
        self.commit(caller, AuditAction::CredImport, &resource, WriteOp::All(ops), &detail).await?;
        Ok(report)
    }

    async fn prepare_chunk(
        &self,
        caller: &Caller,
        lines: Vec<(u64, Result<ImportLine, String>)>,
        options: &ImportOptions,
    ) -> Result<(ImportReport, Vec<WriteOp>), CoreError> {
        let mut report = ImportReport { lines: lines.len() as u64, ..Default::default() };
        let mut tenants: HashMap<TenantName, TenantSlot> = HashMap::new();
        // Credentials as they will be after the lines before, so a name repeated in one chunk
        // becomes consecutive versions.
        let mut credentials: HashMap<(TenantId, String), Option<CredentialRow>> = HashMap::new();
        let mut puts = Vec::new();
        // New tenants first: the puts of the same chunk wrap their keys under them.
        let mut tenant_ops = Vec::new();
        let created_by = caller.principal.audit_name();
        let lines: Vec<(u64, Result<GoodLine, String>)> = lines.into_iter().map(|(n, l)| (n, parse_line(l))).collect();
        // Existing tenants and their credentials named in the chunk, a few reads per tenant
        // rather than one per line.
        let mut wanted: HashMap<&TenantName, Vec<String>> = HashMap::new();
        for good in lines.iter().filter_map(|(_, l)| l.as_ref().ok()) {
            wanted.entry(&good.tenant).or_default().push(good.name.to_string());
        }
        for (name, mut names) in wanted {
            let Some(t) = self.store().tenant_by_name(name).await? else { continue };
            names.sort();
            names.dedup();
            let mut found: HashMap<String, CredentialRow> = self
                .store()
                .credentials_named(t.id, names.clone())
                .await?
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect();
            for n in names {
                let row = found.remove(&n);
                credentials.insert((t.id, n), row);
            }
            tenants.insert(name.clone(), TenantSlot { id: t.id, region: t.region, created: false });
        }
        for (number, line) in lines {
            let good = match line {
                Ok(g) => g,
                Err(reason) => {
                    report.errors.push(LineError { line: number, reason });
                    continue;
                }
            };
            let outcome = async {
                // Every tenant that exists is in `tenants` already (read above): one missing
                // here does not exist.
                if !tenants.contains_key(&good.tenant) {
                    if !options.create_tenants {
                        return Err(CoreError::NotFound(format!(
                            "tenant {} (use --create-tenants to create it)",
                            good.tenant
                        )));
                    }
                    let region = good.region.clone().ok_or_else(|| {
                        CoreError::BadRequest(format!(
                            "tenant {} does not exist and the line has no region",
                            good.tenant
                        ))
                    })?;
                    let new = NewTenant { name: good.tenant.clone(), region: region.clone(), contacts: vec![] };
                    let id = if options.dry_run {
                        TenantId::generate()
                    } else {
                        let (tenant, kek) = self.new_tenant_rows(&new)?;
                        let id = tenant.id;
                        tenant_ops.push(WriteOp::CreateTenant { tenant, kek });
                        id
                    };
                    report.tenants_created.push(good.tenant.to_string());
                    tenants.insert(good.tenant.clone(), TenantSlot { id, region: region.to_string(), created: true });
                }
                let slot = &tenants[&good.tenant];
                if let Some(region) = &good.region {
                    if region.as_str() != slot.region {
                        return Err(CoreError::BadRequest(format!(
                            "tenant {} is in region {}, the line says {region}",
                            good.tenant, slot.region
                        )));
                    }
                }
                let tenant_id = slot.id;
                let new_tenant_kek = slot.created.then_some(1);
                let kind = good.input.kind;
                let crate::credentials::Prepared { fields, labels, secret, certificate } = prepare(good.input)?;
                let key = (tenant_id, good.name.to_string());
                if !credentials.contains_key(&key) {
                    let existing = if slot.created {
                        None
                    } else {
                        self.store().credential(tenant_id, good.name.as_str()).await?
                    };
                    credentials.insert(key.clone(), existing);
                }
                let existing = credentials[&key].clone();
                if options.dry_run {
                    if let Some(e) = &existing {
                        if e.kind != kind {
                            return Err(CoreError::Conflict(format!(
                                "credential {} is of kind {}; delete it first to store a {kind}",
                                good.name, e.kind
                            )));
                        }
                    }
                    return Ok(None);
                }
                let (op, row) = self
                    .sealed_version(
                        NextVersion {
                            tenant: tenant_id,
                            name: good.name.as_str(),
                            kind,
                            fields,
                            labels,
                            existing: existing.as_ref(),
                            created_by: &created_by,
                            kek_version: new_tenant_kek,
                            pending: false,
                        },
                        &secret,
                    )
                    .await?;
                let op = self.with_certificate(op, &row, certificate.as_ref()).await?;
                credentials.insert(key, Some(row));
                Ok(Some(op))
            }
            .await;
            match outcome {
                Ok(op) => {
                    report.written += 1;
                    puts.extend(op);
                }
                Err(CoreError::Store(e)) => return Err(CoreError::Store(e)),
                Err(e) => report.errors.push(LineError { line: number, reason: e.to_string() }),
            }
        }
        report.tenants_created.sort();
        tenant_ops.extend(puts);
        Ok((report, tenant_ops))
    }
}
