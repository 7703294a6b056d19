//! Whether a credential can be rotated by the server, and the new secret it gets.

use rekey_store::CredentialRow;
use rekey_types::{CredentialKind, Secret};

use super::DEFAULT_PASSWORD_LENGTH;
use crate::CoreError;

/// Refuses what Rekey cannot rotate, saying what to do instead.
pub(crate) fn rotation_plan(credential: &CredentialRow, cref: &str) -> Result<(), CoreError> {
    match credential.kind {
        CredentialKind::Ldap => Ok(()),
        CredentialKind::EntraApp => {
            if !credential.fields.contains_key("app_object_id") {
                return Err(CoreError::NotRotatable(format!(
                    "{cref} has no app_object_id: set it to the application's object id (not its client id) so \
                     Rekey can register the new certificate with Microsoft Graph"
                )));
            }
            Ok(())
        }
        CredentialKind::Pop3 | CredentialKind::Smtp => Err(CoreError::NotRotatable(format!(
            "{cref} is a {} credential: mail servers offer no protocol to change a password, so the customer \
             rotates it. Have the tenant's administrator set a new password, then store it with `rekey cred put` \
             (`rekey cred verify` checks it)",
            credential.kind
        ))),
        CredentialKind::Generic => {
            Err(CoreError::NotRotatable(format!("{cref} is a generic credential: Rekey does not know its target")))
        }
    }
}

/// A new password from the credential's policy (`password_length`, `password_alphabet`).
pub(super) fn new_password(fields: &std::collections::BTreeMap<String, String>) -> Result<Secret, CoreError> {
    let length = fields.get("password_length").and_then(|l| l.parse().ok()).unwrap_or(DEFAULT_PASSWORD_LENGTH);
    let alphabet = match fields.get("password_alphabet").map(String::as_str) {
        Some("alnum-symbols") => rekey_crypto::password::ALNUM_SYMBOLS,
        _ => rekey_crypto::password::ALNUM,
    };
    let password = rekey_crypto::password::generate(length, alphabet).map_err(CoreError::Crypto)?;
    Ok(Secret::new(password.to_vec()))
}
