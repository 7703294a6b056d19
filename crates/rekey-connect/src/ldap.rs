//! LDAP (`ldap3`): simple bind over StartTLS (`ldap://`) or LDAPS (`ldaps://`), confirmed with
//! who-am-I (RFC 4532), and password change with the password-modify extended operation
//! (RFC 3062), either as the account itself or as a rotator account (an administrator bind).
//!
//! `ldap://` uses StartTLS unless the credential says `tls=none`; a bind never goes out in clear
//! otherwise.

use std::time::Instant;

use ldap3::exop::{PasswordModify, WhoAmI};
use ldap3::{LdapConnAsync, LdapConnSettings, LdapError};
use rekey_types::fields::TlsMode;
use rekey_types::{Fields, Secret};

use crate::capped::{self, AnswerTooLarge, Cut};
use crate::error::{one_line, tls_reason};
use crate::{conclude, secret_text, tls, ConnectError, Failure, Limits, Outcome, Status};

/// LDAP result code 49: invalid credentials.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code 50: insufficient access rights.
const INSUFFICIENT_ACCESS: u32 = 50;

pub(crate) async fn verify(fields: &Fields, secret: &Secret, limits: &Limits) -> Result<String, Failure> {
    let bind_dn = field(fields, "bind_dn")?;
    let mut conn = open(fields, limits).await?;
    bind(&mut conn, bind_dn, secret).await?;
    let who = who_am_i(&mut conn).await?;
    let _ = conn.ldap.unbind().await;
    if !same_dn(who.strip_prefix("dn:").unwrap_or(&who), bind_dn) {
        return Err(Failure::protocol(format!("bound, but the server says the identity is {who:?}")));
    }
    Ok(format!("bound as {bind_dn}"))
}

/// Who changes the password: the account itself, or another credential of the tenant.
pub enum Changer<'a> {
    /// The account, with its current password.
    Itself {
        /// The account's current password.
        current: &'a Secret,
    },
    /// An administrator account (its own `url` and `bind_dn`, and its password).
    Rotator {
        /// The administrator credential's fields.
        fields: &'a Fields,
        /// Its password.
        secret: &'a Secret,
    },
}

/// What a password change did: the change itself, and (when the change went through and the
/// connection was to the account's own directory) a bind as the account with the new password
/// on that same connection, followed by who-am-I: proof that the directory takes it.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The password-modify operation.
    pub changed: Outcome,
    /// The bind with the new password and who-am-I, when made on the same connection.
    pub proof: Option<Outcome>,
}

/// Sets the account's password to `new` at the directory (RFC 3062 password modify), then
/// binds as the account with it on the same connection. A directory behind a load balancer may
/// not yet have replicated the change to the server a fresh connection reaches; the caller's
/// later checks cover that.
pub async fn change_password(
    fields: &Fields,
    changer: Changer<'_>,
    new: &Secret,
    limits: &Limits,
) -> Result<Changed, ConnectError> {
    let started = Instant::now();
    let same_directory = match &changer {
        Changer::Itself { .. } => true,
        Changer::Rotator { fields: admin, .. } => admin.get("url") == fields.get("url"),
    };
    let mut proof = None;
    // Every secret this exchange sends, masked out of whatever the directory answers.
    let sent: Vec<&Secret> = match &changer {
        Changer::Itself { current } => vec![*current, new],
        Changer::Rotator { secret, .. } => vec![*secret, new],
    };
    let attempt = async {
        let bind_dn = field(fields, "bind_dn")?;
        let new_text = secret_text(new)?;
        let (mut conn, old) = match changer {
            Changer::Itself { current } => {
                let mut conn = open(fields, limits).await?;
                bind(&mut conn, bind_dn, current).await?;
                (conn, Some(secret_text(current)?))
            }
            Changer::Rotator { fields: admin, secret } => {
                let mut conn = open(admin, limits).await?;
                bind(&mut conn, field(admin, "bind_dn")?, secret).await?;
                (conn, None)
            }
        };
        let request = PasswordModify { user_id: Some(bind_dn), old_pass: old, new_pass: Some(new_text) };
        let result = match conn.ldap.extended(request).await {
            Ok(r) => r,
            Err(e) => return Err(conn.failure(e, "password modify")),
        };
        let changed = match result.1.rc {
            0 => Ok(format!("password of {bind_dn} changed")),
            INVALID_CREDENTIALS => Err(Failure::auth("the directory refused the old password (49)")),
            INSUFFICIENT_ACCESS => {
                Err(Failure::auth("the directory does not allow this account to change the password (50)"))
            }
            rc => Err(Failure::protocol(format!("password modify failed: {} ({rc})", one_line(&result.1.text)))),
        };
        if changed.is_ok() && same_directory {
            let check_started = Instant::now();
            let proven = async {
                bind(&mut conn, bind_dn, new).await?;
                let who = who_am_i(&mut conn).await?;
                if !same_dn(who.strip_prefix("dn:").unwrap_or(&who), bind_dn) {
                    return Err(Failure::protocol(format!("bound, but the server says the identity is {who:?}")));
                }
                Ok(format!("bound as {bind_dn} with the new password"))
            }
            .await;
            proof = Some(conclude(proven, check_started, &sent));
        }
        let _ = conn.ldap.unbind().await;
        changed
    };
    let result = match tokio::time::timeout(limits.overall, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(Status::Timeout, format!("no complete answer within {:?}", limits.overall))),
    };
    let changed = conclude(result, started, &sent)?;
    let proof = match proof {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    Ok(Changed { changed, proof })
}

fn field<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, Failure> {
    fields.get(name).ok_or_else(|| Failure::Config(format!("the credential has no {name}")))
}

/// A connection to a directory, and whether its answers were cut at the cap (`capped`).
struct Conn {
    ldap: ldap3::Ldap,
    cut: Cut,
}

impl Conn {
    /// The failure of an operation: the cap, if the directory's answer was cut, else `err`'s.
    fn failure(&self, err: LdapError, doing: &str) -> Failure {
        if self.cut.happened() {
            return AnswerTooLarge.into();
        }
        failure(err, doing)
    }
}

async fn open(fields: &Fields, limits: &Limits) -> Result<Conn, Failure> {
    let url = field(fields, "url")?;
    let implicit = url.starts_with("ldaps://");
    let mode = match fields.get("tls") {
        Some(t) => t.parse::<TlsMode>().map_err(Failure::Config)?,
        None if implicit => TlsMode::Implicit,
        None => TlsMode::StartTls,
    };
    let mut settings = LdapConnSettings::new().set_conn_timeout(limits.connect);
    if mode != TlsMode::None {
        settings = settings.set_config(tls::client_config(fields)?);
    }
    if mode == TlsMode::StartTls {
        settings = settings.set_starttls(true);
    }
    // The TCP connection is opened here (each resolved address the egress policy allows in
    // turn, within the connect timeout, with Nagle's algorithm off: LDAP requests are small and
    // answered at once), and ldap3, which would otherwise open it itself, gets a capped pipe to
    // it (`capped::pipe`).
    let parsed = url::Url::parse(url).map_err(|e| Failure::Config(format!("url: {e}")))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).unwrap_or("localhost").to_owned();
    let port = parsed.port().unwrap_or(if implicit { 636 } else { 389 });
    let stream = limits.egress.connect(&host, port, limits.connect).await?;
    let (stream, cut) = stream
        .set_nodelay(true)
        .and_then(|()| capped::pipe(stream))
        .map_err(|e| Failure::from_transport(&e, Status::Unreachable, "connecting"))?;
    settings = settings.set_std_stream(ldap3::StdStream::Tcp(stream));
    let (driver, ldap) = match LdapConnAsync::with_settings(settings, url).await {
        Ok(pair) => pair,
        Err(_) if cut.happened() => return Err(AnswerTooLarge.into()),
        Err(e) => return Err(failure(e, "connecting")),
    };
    tokio::spawn(async move {
        let _ = driver.drive().await;
    });
    Ok(Conn { ldap, cut })
}

async fn bind(conn: &mut Conn, dn: &str, secret: &Secret) -> Result<(), Failure> {
    // An empty password is an unauthenticated bind, which "succeeds" on many servers.
    let password = secret_text(secret)?;
    let result = match conn.ldap.simple_bind(dn, password).await {
        Ok(r) => r,
        Err(e) => return Err(conn.failure(e, "bind")),
    };
    match result.rc {
        0 => Ok(()),
        INVALID_CREDENTIALS => Err(Failure::auth(format!("invalid credentials for {dn} (49)"))),
        rc => Err(Failure::protocol(format!("bind failed: {} ({rc})", one_line(&result.text)))),
    }
}

async fn who_am_i(conn: &mut Conn) -> Result<String, Failure> {
    let ldap3::result::ExopResult(exop, result) = match conn.ldap.extended(WhoAmI).await {
        Ok(r) => r,
        Err(e) => return Err(conn.failure(e, "who-am-I")),
    };
    if result.rc != 0 {
        return Err(Failure::protocol(format!("who-am-I failed: {} ({})", one_line(&result.text), result.rc)));
    }
    Ok(exop.val.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default())
}

/// Compares two DNs the way a directory would for this purpose: attribute names and values
/// case-insensitively, spaces around separators ignored.
fn same_dn(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|rdn| rdn.split('=').map(|p| p.trim().to_ascii_lowercase()).collect::<Vec<_>>().join("="))
            .collect()
    };
    norm(a) == norm(b)
}

fn failure(err: LdapError, doing: &str) -> Failure {
    match &err {
        LdapError::Timeout { .. } => Failure::new(Status::Timeout, format!("{doing}: no answer in time")),
        LdapError::Rustls { source } => Failure::new(Status::TlsFailed, tls_reason(source)),
        LdapError::LdapResult { result } if doing == "connecting" => {
            Failure::new(Status::TlsFailed, format!("StartTLS refused: {} ({})", one_line(&result.text), result.rc))
        }
        LdapError::LdapResult { result } => {
            Failure::protocol(format!("{doing}: {} ({})", one_line(&result.text), result.rc))
        }
        LdapError::Io { source } => Failure::from_transport(source, Status::Unreachable, doing),
        _ => Failure::from_transport(&err, Status::ProtocolError, doing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_comparison() {
        assert!(same_dn("uid=svc,ou=Services,dc=x", "UID=svc, ou=services , dc=X"));
        assert!(!same_dn("uid=svc,ou=services,dc=x", "uid=other,ou=services,dc=x"));
    }
}
