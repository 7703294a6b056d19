//! Where the connector peers that `scripts/peers/connectors.sh` starts on loopback listen
//! (OpenLDAP, Dovecot POP3 and submission, the SMTP sink, the OpenID provider with the Graph
//! stand-in), read from the `REKEY_TEST_*` variables the script prints. One reader for the
//! connector tests, the CLI tests and the benchmarks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

/// The test directory's administrator (`scripts/peers/connectors.sh`), who may add and change
/// accounts.
pub const LDAP_ADMIN_DN: &str = "cn=admin,dc=rekey,dc=test";
/// The administrator's password as the script sets it.
pub const LDAP_ADMIN_PASSWORD: &str = "admin-initial-pw";

/// The peers' addresses and the files they share with the tests.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The peers' folder (`REKEY_TEST_PEERS`).
    pub dir: String,
    /// The test CA that signed every peer's certificate, as a path and as PEM.
    pub ca_path: String,
    /// The test CA, PEM.
    pub ca_pem: String,
    /// OpenLDAP's plain LDAP port (StartTLS offered).
    pub ldap: u16,
    /// OpenLDAP's LDAPS port.
    pub ldaps: u16,
    /// Dovecot's POP3 port (STLS offered).
    pub pop3: u16,
    /// Dovecot's POP3S port.
    pub pop3s: u16,
    /// Dovecot's submission port (STARTTLS offered).
    pub submission: u16,
    /// Dovecot's submissions port.
    pub submissions: u16,
    /// The OpenID provider's base URL (`http://127.0.0.1:PORT`).
    pub oidc: String,
    /// The SMTP sink Dovecot's submission relays to, and the Maildir it delivers into.
    pub sink: u16,
    /// The Maildir the sink delivers into.
    pub maildir: String,
    /// Dovecot's password file, where tests add mail accounts.
    pub dovecot_users: String,
}

/// A variable the script sets is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not set or not valid (start the peers with scripts/peers/connectors.sh)", self.0)
    }
}

impl std::error::Error for Missing {}

impl Peers {
    /// The peers, as the environment describes them.
    pub fn from_env() -> Result<Self, Missing> {
        let var = |name: &str| std::env::var(name).map_err(|_| Missing(name.to_owned()));
        let port = |name: &str| var(name)?.parse::<u16>().map_err(|_| Missing(name.to_owned()));
        let dir = var("REKEY_TEST_PEERS")?;
        let ca_path = format!("{dir}/tls/ca.pem");
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(|_| Missing(format!("{ca_path} (the test CA)")))?;
        Ok(Self {
            ca_pem,
            ca_path,
            ldap: port("REKEY_TEST_LDAP_PORT")?,
            ldaps: port("REKEY_TEST_LDAPS_PORT")?,
            pop3: port("REKEY_TEST_POP3_PORT")?,
            pop3s: port("REKEY_TEST_POP3S_PORT")?,
            submission: port("REKEY_TEST_SUBMISSION_PORT")?,
            submissions: port("REKEY_TEST_SUBMISSIONS_PORT")?,
            oidc: var("REKEY_TEST_OIDC_URL")?,
            sink: port("REKEY_TEST_SINK_PORT")?,
            maildir: var("REKEY_TEST_SINK_MAILDIR")?,
            dovecot_users: var("REKEY_TEST_DOVECOT_USERS")?,
            dir,
        })
    }

    /// For a test: the peers, or `None` with a note when they are not running (run the tests
    /// through `scripts/test.sh`). Under CI (`CI` set) their absence fails the test instead, so
    /// that a missing install step cannot pass as a skip.
    pub fn or_skip() -> Option<Self> {
        if std::env::var_os("REKEY_TEST_PEERS").is_none() {
            assert!(std::env::var_os("CI").is_none(), "REKEY_TEST_PEERS must be set under CI (scripts/test.sh)");
            eprintln!("SKIPPED: no connector peers (run scripts/test.sh)");
            return None;
        }
        match Self::from_env() {
            Ok(p) => Some(p),
            Err(e) => panic!("{e}"),
        }
    }
}
