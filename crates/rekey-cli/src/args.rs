//! What the user typed. Turned into requests in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "rekey", version, about = "Breach-ready vault for the credentials you hold for your customers")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct Global {
    /// Server address.
    #[arg(long, env = "REKEY_ADDR", default_value = "http://127.0.0.1:8200", global = true)]
    pub addr: String,
    /// API token (prefer REKEY_TOKEN or --token-file: arguments are visible to other local users).
    #[arg(long, env = "REKEY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Read the API token from this file.
    #[arg(long, env = "REKEY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM file with the CA that signed the server's certificate (in addition to the system roots).
    #[arg(long, env = "REKEY_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Output format; default: table on a terminal, json otherwise. `csv` is for `incident show`.
    #[arg(long, short = 'o', value_enum, global = true)]
    pub output: Option<OutputArg>,
}

/// What `--output` takes.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OutputArg {
    Table,
    Json,
    Csv,
}

/// How a command prints (`csv` is handled by the one command that exports rows).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Seal, store and counts.
    Status,
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Credentials.
    #[command(subcommand)]
    Cred(CredCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Sign in as an operator (or auditor) with the organisation's OpenID provider; the
    /// short-lived token is kept in the token file (`--token-file`, default ~/.rekey-token).
    Login {
        /// Sign in with OpenID Connect (the only method).
        #[arg(long, required = true)]
        oidc: bool,
        /// Ask for `operator` or `auditor` (default: the most your groups grant).
        #[arg(long)]
        role: Option<String>,
    },
    /// Auth roles: which issuer's JWTs a workload may log in with, and what a login grants.
    #[command(subcommand, name = "jwt-role")]
    JwtRole(JwtRoleCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Incidents: blast radius and containment.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Rotation campaigns: every credential of an incident to a verified new secret.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Alerts the detection rules raised: list, show, acknowledge, escalate (operators).
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Decoy credentials: any sight of one raises a critical alert (operators).
    #[command(subcommand)]
    Decoy(DecoyCmd),
    /// Shamir seal: create the root key and print its unseal shares (once per store).
    Init {
        #[arg(long, default_value_t = 5)]
        shares: u8,
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// Shamir seal: give one unseal share, read from stdin (never an argument).
    Unseal {
        /// Forget the shares given so far instead (the share read proves a share holder asks;
        /// it does not count).
        #[arg(long)]
        reset: bool,
    },
    /// Seal the vault: every key is dropped from memory until the next unseal (operators).
    Seal,
    /// Root key and tenant key versions: list, rotate, compromise, destroy.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Per-tenant certificates for entra-app credentials.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Witness another Rekey's audit log: cosign its checkpoints while they stay consistent.
    #[command(subcommand)]
    Witness(WitnessCmd),
}

#[derive(Subcommand)]
pub(crate) enum WitnessCmd {
    /// Make a witness key: the seed goes to FILE (mode 0600), the verifier key logs are
    /// configured with is printed.
    Key {
        /// The witness's name, e.g. `witness.example/w1`.
        #[arg(long)]
        name: String,
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the C2SP tlog-witness protocol (`POST /add-checkpoint`).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8300")]
        listen: std::net::SocketAddr,
        /// The witness's name (as given to `witness key`).
        #[arg(long)]
        name: String,
        /// The witness key file (from `witness key`).
        #[arg(long)]
        key_file: PathBuf,
        /// A log to witness: its checkpoint verifier key (`rekey audit checkpoint` prints it).
        /// Repeat for several logs.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// Where the latest checkpoint of each log is kept.
        #[arg(long)]
        state: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyCmd {
    /// The root key and every tenant KEK, with versions, state and what each wraps.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Rotate: a new tenant KEK version (--tenant, --all) with every DEK rewrapped, or a new
    /// root key (--root) with every KEK rewrapped. Runs in the server; shows progress.
    Rotate {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        root: bool,
        /// Shamir root rotation: number of new shares.
        #[arg(long, requires = "root")]
        shares: Option<u8>,
        /// Shamir root rotation: shares needed to unseal.
        #[arg(long, requires = "root")]
        threshold: Option<u8>,
        /// Return once the job is started.
        #[arg(long)]
        no_wait: bool,
        /// Do not ask for confirmation (root rotation).
        #[arg(long)]
        yes: bool,
    },
    /// What a key version (root@N or TENANT@N) wraps.
    Show { key: String },
    /// Mark a key version compromised and rotate off it.
    Compromise {
        key: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Destroy a key version; --force if it still wraps data (which becomes unrecoverable).
    Destroy {
        key: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        yes: bool,
    },
    /// Key jobs (rotations).
    Jobs,
    /// One key job; --wait to follow it to the end.
    Job {
        id: String,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertCmd {
    /// Issue a key pair and certificate for an entra-app credential; the key becomes its pending version.
    Issue {
        /// tenant/name
        cred: String,
        /// Lifetime, e.g. 90d (the default), 1y is 365d.
        #[arg(long)]
        lifetime: Option<String>,
    },
    /// The certificate inventory.
    List {
        /// Only those expiring within this time, e.g. 30d.
        #[arg(long)]
        expiring: Option<String>,
    },
    /// Mark a certificate revoked (SHA-1 or SHA-256 thumbprint, hex).
    Revoke { thumbprint: String },
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Quickstart mode: SQLite and a dev seal in --data, plain HTTP on loopback. Not for production.
    #[arg(long)]
    pub dev: bool,
    /// Address to listen on (dev default 127.0.0.1:8200).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data folder (dev default ./data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long, env = "REKEY_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
    /// Create a tenant (and its first key).
    Create {
        name: String,
        #[arg(long)]
        region: String,
        /// An administrator's e-mail address; repeatable.
        #[arg(long = "contact")]
        contacts: Vec<String>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Continue after this tenant name.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one tenant.
    Show { name: String },
    /// Destroy every key of the tenant (crypto-shredding); its audit history stays.
    Shred {
        name: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
pub(crate) struct RotateArgs {
    /// tenant/name of one credential.
    #[arg(conflicts_with_all = ["tenant", "kind"], required_unless_present_any = ["tenant", "kind"])]
    pub cred: Option<String>,
    /// Every rotatable credential of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Every credential of this kind (ldap or entra-app), in every tenant unless --tenant.
    #[arg(long)]
    pub kind: Option<String>,
    /// Rotations in flight at once (the server also bounds connections per target host).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

#[derive(Subcommand)]
pub(crate) enum CredCmd {
    /// Store a new version of a credential (creating it if new). The secret comes from stdin or
    /// a file, never from an argument.
    Put(PutArgs),
    /// Show a credential's metadata (never the secret).
    Show { cred: String },
    /// Print the secret. Audited.
    Reveal {
        cred: String,
        /// A version other than the current one (operators only).
        #[arg(long)]
        version: Option<u32>,
    },
    /// List credentials.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Continue after this tenant/name.
        #[arg(long)]
        after: Option<String>,
    },
    /// List a credential's versions.
    Versions { cred: String },
    /// Make an old version current again (as a new version).
    Rollback {
        cred: String,
        #[arg(long)]
        to: u32,
    },
    /// Make the pending version current (a certificate from `cert issue`, once registered).
    Promote { cred: String },
    /// Send the current secret to another target (operators only): a new version with the
    /// changed fields and the same secret, audited with the old and the new target.
    Retarget {
        cred: String,
        /// A field to set, key=value; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A field to remove; repeatable.
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// Check the current version against its target (LDAP bind, POP3/SMTP login, OAuth token).
    /// The secret never leaves the server. Exits 3 if the check did not pass.
    Verify { cred: String },
    /// Rotate at the target (ldap: password modify; entra-app: new certificate via Microsoft
    /// Graph). One credential, or many with --tenant and/or --kind. Exits 3 if any failed.
    Rotate(RotateArgs),
    /// A credential's rotations, newest first.
    Rotations { cred: String },
    /// Delete a credential (soft: its history and audit trail stay).
    Delete { cred: String },
    /// Bulk-load credentials from a JSON-lines file (or - for stdin).
    Import(ImportArgs),
}

#[derive(Args)]
pub(crate) struct PutArgs {
    /// tenant/name
    pub cred: String,
    /// ldap, entra-app, pop3, smtp or generic.
    #[arg(long)]
    pub kind: String,
    /// A non-secret field, key=value; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
    /// A label, key=value; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Read the secret from standard input.
    #[arg(long, conflicts_with_all = ["secret_file", "cert_file"])]
    pub secret_stdin: bool,
    /// Read the secret from a file.
    #[arg(long, conflicts_with = "cert_file")]
    pub secret_file: Option<PathBuf>,
    /// entra-app: the certificate (PEM); needs --key-file.
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// entra-app: the certificate's private key (PEM).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Keep a trailing newline of the secret (by default one trailing newline is dropped).
    #[arg(long)]
    pub keep_newline: bool,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The file, or - for standard input.
    pub file: PathBuf,
    /// Write the good lines and list the bad ones (default: all or nothing).
    #[arg(long)]
    pub continue_on_error: bool,
    /// Create tenants named on a line that do not exist yet, in the line's region.
    #[arg(long)]
    pub create_tenants: bool,
    /// Lines per request.
    #[arg(long, default_value_t = 2000)]
    pub chunk: usize,
}

#[derive(Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token. Its secret is printed once.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// A credential (of --tenant) a connector may reveal; repeatable.
        #[arg(long = "cred")]
        creds: Vec<String>,
        /// A network the token may be used from (e.g. 10.0.0.0/8); repeatable. Default: anywhere.
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
        /// Lifetime, e.g. 30m, 1h, 7d, or never (warned against). Default 1d.
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub(crate) enum JwtRoleCmd {
    /// Write a role from a JSON specification (docs/workloads.md), replacing one of that name.
    Put {
        name: String,
        /// The specification, JSON; `-` reads stdin.
        #[arg(long)]
        file: PathBuf,
    },
    /// List roles.
    List,
    /// Show a role.
    Show { name: String },
    /// Delete a role (tokens it granted live until they expire).
    Delete { name: String },
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// The last events.
    Tail {
        /// How many, 1 to 10,000 (`audit export` reads any number).
        #[arg(short = 'n', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        n: u32,
    },
    /// Verify the hash chain on the server; or, with --export, an export offline with the log's
    /// public key alone. Exits 3 if anything is wrong.
    Verify {
        /// An export directory (from `audit export --proofs` or `audit evidence`), checked here
        /// without the server.
        #[arg(long, requires = "key")]
        export: Option<PathBuf>,
        /// The log's checkpoint verifier key you trust, or a file holding it.
        #[arg(long)]
        key: Option<String>,
        /// A witness's cosignature verifier key (or a file holding it) whose cosignature the
        /// checkpoint must carry. Repeat for several.
        #[arg(long = "witness", requires = "export")]
        witnesses: Vec<String>,
    },
    /// Every event after a sequence number, as JSON lines (for a SIEM); with --proofs, into a
    /// directory anyone can verify offline (`audit verify --export`).
    Export {
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Write `checkpoint.note`, `start.json` and `events.jsonl` to this new directory, the
        /// events up to a checkpoint signed now.
        #[arg(long)]
        proofs: Option<PathBuf>,
    },
    /// A tenant's events since a time, each with its inclusion proof against a checkpoint
    /// signed now, into a new directory (`checkpoint.note`, `evidence.jsonl`).
    Evidence {
        #[arg(long)]
        tenant: String,
        /// RFC 3339 time, e.g. 2026-01-12T00:00:00Z (default: all).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The head of the audit log's Merkle tree (RFC 6962; docs/audit.md).
    Tree {
        /// The tree of the first SIZE events (default: all of them).
        #[arg(long)]
        size: Option<u64>,
    },
    /// The inclusion proof of event SEQ against a signed checkpoint (the latest, or one signed
    /// now), proof and signature checked here before it is shown; exits 3 if either fails.
    Prove {
        seq: i64,
        /// Against the tree of the first SIZE events instead, unsigned.
        #[arg(long, conflicts_with = "key")]
        size: Option<u64>,
        /// The log's verifier key you trust (default: the one the server states).
        #[arg(long)]
        key: Option<String>,
    },
    /// The proof that the tree of OLD events is a prefix of the tree of NEW (default: all of
    /// them), checked here before it is shown; exits 3 if it fails.
    Consistency { old: u64, new: Option<u64> },
    /// The latest signed checkpoint with its cosignatures; its signature is checked here
    /// (against --key if given) and the command exits 3 if it does not verify.
    Checkpoint {
        /// Sign one of the log as it is now first.
        #[arg(long)]
        now: bool,
        /// The log's verifier key you trust (`<origin>+<key id>+<key>`); without it, the key
        /// the server states is used, which shows only that the server is self-consistent.
        #[arg(long)]
        key: Option<String>,
    },
    /// After the server found its log rolled back (`503 audit_rollback`): accept the log as it
    /// is, so that writes resume. Recorded with the reason (operators).
    Accept {
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum IncidentCmd {
    /// Record an incident and compute its blast radius: every credential in scope, with why.
    Open {
        #[arg(long)]
        title: String,
        /// key:root@N | key:TENANT@N | cert:THUMBPRINT | token:ID | region:R[,R] | tenant:T[,T] |
        /// kind:K[,K] | cred:T/N; repeat to add. `kind:` narrows the others.
        #[arg(long = "scope", required = true)]
        scope: Vec<String>,
        /// Count reveals of the credentials in scope from this time on (RFC 3339, or a duration
        /// back from now such as 14d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Incidents, newest first.
    List,
    /// Counts by region, tenant and kind, reveals since, timeline; -o json|csv exports every
    /// credential in scope.
    Show { id: String },
    /// Mark the key versions in scope compromised (rotating off them), revoke the tokens and
    /// certificates in scope; --freeze refuses the credentials to connectors until rotated.
    Contain {
        id: String,
        #[arg(long)]
        freeze: bool,
        /// Print what would be done, do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Close an incident.
    Close { id: String },
    /// Write the incident as a STIX 2.1 bundle to share: the addresses its stolen tokens were
    /// used from, its stolen certificates, sightings and the timeline, marked with TLP 2.0;
    /// tenants are not named unless --name-tenants. To a file, stdout, or a TAXII 2.1
    /// collection (basic auth from REKEY_TAXII_USER and REKEY_TAXII_PASSWORD).
    Share {
        id: String,
        /// clear, green, amber, amber+strict or red.
        #[arg(long, default_value = "amber")]
        tlp: String,
        /// Where to write the bundle (default: stdout, unless --taxii).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name the tenants in scope (they are the customers').
        #[arg(long)]
        name_tenants: bool,
        /// A TAXII 2.1 API root to publish to, e.g. https://taxii.example.org/api1/.
        #[arg(long, requires = "collection")]
        taxii: Option<String>,
        /// The collection's id.
        #[arg(long, requires = "taxii")]
        collection: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum AlertCmd {
    /// Alerts, newest first.
    List {
        /// Only alerts in this state: open, acknowledged, escalated.
        #[arg(long)]
        state: Option<String>,
        /// At most this many (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One alert: its rule, principal, source, the credentials it saw, and what was done.
    Show { id: String },
    /// Judge an open alert (a false positive, or dealt with), with a note.
    Ack {
        id: String,
        #[arg(long)]
        note: String,
    },
    /// Open an incident from an open alert: its token, the credentials it read, since the first
    /// sign; then `rekey incident contain`.
    Escalate { id: String },
}

#[derive(Subcommand)]
pub(crate) enum DecoyCmd {
    /// Store decoy credentials in a tenant, made to look like its real ones, bound to no
    /// connector; only operators can tell them apart.
    Plant {
        #[arg(long)]
        tenant: String,
        /// The kind (default: the tenant's most common).
        #[arg(long)]
        kind: Option<String>,
        /// How many, 1 to 20.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Decoys, by tenant and name.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum CampaignCmd {
    /// Start a campaign for an open incident: automatic rotation where Rekey holds the rights,
    /// a single-use reset link for the tenant's administrator elsewhere.
    Start {
        #[arg(long)]
        incident: String,
        /// Time from now until the deadline, e.g. 7d (default), 36h. Links expire then;
        /// reminders go out when three quarters of it have passed.
        #[arg(long)]
        deadline: Option<String>,
        /// Notify tenants with self-service credentials: email, webhook (comma-separated).
        #[arg(long, value_delimiter = ',')]
        notify: Vec<String>,
    },
    /// Campaigns, newest first.
    List,
    /// Progress overall and per tenant; --watch follows it live until the campaign finishes.
    Status {
        id: String,
        #[arg(long)]
        watch: bool,
    },
    /// The items, by tenant and name.
    Items {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        /// pending, rotating, notified, rotated, verified, retired, failed or waived.
        #[arg(long)]
        state: Option<String>,
    },
    /// Waive one item: it will not be rotated.
    Waive {
        id: String,
        /// TENANT/NAME
        credential: String,
        #[arg(long)]
        reason: String,
    },
    /// A single-use reset link for one tenant's self-service credentials, to pass on yourself.
    Link {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Per tenant: what was exposed, what was done, by whom and when.
    Report {
        id: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Html,
    Json,
    Csv,
}
