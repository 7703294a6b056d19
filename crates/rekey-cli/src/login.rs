//! `rekey login --oidc [--role R]`: an operator signs in with the organisation's OpenID provider
//! (authorization code with PKCE, run by the server) and the CLI keeps the short-lived token in a
//! token file (mode 0600), as `~/.vault-token` is kept. The provider sends the browser back to a
//! listener of this process on a loopback address (RFC 8252), which hands the code to the server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::Query;
use axum::response::Html;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::client::{default_token_file, Client};

/// How long the CLI waits for the browser to come back.
const WAIT: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

type Sender = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Result<(String, String), String>>>>>;

async fn callback(tx: Sender, Query(c): Query<Callback>) -> Html<&'static str> {
    let result = match (c.code, c.state, c.error) {
        (Some(code), Some(state), None) => Ok((code, state)),
        (_, _, Some(error)) => Err(format!("{error}: {}", c.error_description.unwrap_or_default())),
        _ => Err("the provider sent neither a code nor an error".into()),
    };
    let ok = result.is_ok();
    if let Some(tx) = tx.lock().expect("lock").take() {
        let _ = tx.send(result);
    }
    Html(if ok {
        "<!doctype html><title>Rekey</title><p>Signed in to Rekey. You may close this window."
    } else {
        "<!doctype html><title>Rekey</title><p>Sign-in failed; see the terminal."
    })
}

pub(crate) async fn oidc(c: &Client, role: Option<String>, token_file: Option<PathBuf>) -> Result<ExitCode> {
    let path = token_file.or_else(default_token_file).context("no token file: set HOME or --token-file")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("opening the loopback listener")?;
    let redirect_uri = format!("http://127.0.0.1:{}/oidc/callback", listener.local_addr()?.port());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx: Sender = Arc::new(Mutex::new(Some(tx)));
    let app = axum::Router::new().route("/oidc/callback", axum::routing::get(move |q| callback(tx.clone(), q)));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client_nonce = hex::encode(rekey_crypto::keys::random_16()?);
    let body = json!({ "role": role, "redirect_uri": redirect_uri, "client_nonce": client_nonce });
    let answer: Value = c.json(Method::POST, "/v1/auth/oidc/oidc/auth_url", &body).await?;
    let url = answer["data"]["auth_url"].as_str().context("the server sent no auth_url")?;
    eprintln!("Open this address in a browser to sign in (waiting up to {} minutes):", WAIT.as_secs() / 60);
    eprintln!("{url}");
    let came_back = tokio::time::timeout(WAIT, rx).await;
    server.abort();
    let (code, state) = match came_back {
        Ok(Ok(Ok(pair))) => pair,
        Ok(Ok(Err(why))) => bail!("the provider refused the sign-in: {why}"),
        _ => bail!("no sign-in came back within {} minutes", WAIT.as_secs() / 60),
    };
    let code = Zeroizing::new(code);
    let request = c.request(Method::GET, "/v1/auth/oidc/oidc/callback").query(&[
        ("state", state.as_str()),
        ("code", code.as_str()),
        ("client_nonce", client_nonce.as_str()),
    ]);
    let bytes = c.send_raw(request).await?;
    let answer: Value = serde_json::from_slice(&bytes).context("unexpected answer")?;
    let token = Zeroizing::new(answer["auth"]["client_token"].as_str().context("no token in the answer")?.to_owned());
    write_token(&path, &token)?;
    let granted = answer["auth"]["policies"][0].as_str().unwrap_or("?");
    let ttl = answer["auth"]["lease_duration"].as_i64().unwrap_or(0);
    eprintln!("Signed in as {granted} for {} minutes; the token is in {}.", ttl / 60, path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the token file with mode 0600 (replacing one that is there).
fn write_token(path: &Path, token: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}
