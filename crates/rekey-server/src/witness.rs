//! `rekey witness serve`: a witness for other logs (C2SP `tlog-witness`), to run on a machine
//! that does not trust the Rekey it watches. For each log it is told of (a verifier key whose
//! name is the log's origin) it keeps the latest checkpoint it cosigned, one file per log in its
//! state directory, and cosigns a new checkpoint only if it is signed by the log's key and
//! a consistency proof shows it extends that one.
//!
//! `POST /add-checkpoint` answers, as the protocol says: `200` with a cosignature line; `400`
//! for a malformed body or an old size above the new; `403` when the log's signature is missing
//! or wrong; `404` for an unknown origin; `409` with `text/x.tlog.size` and the size held when
//! the old size is not it, and `409` alone for the same size with another root; `422` when the
//! consistency proof does not verify. Every refusal of a correctly signed checkpoint is logged
//! at `warn`: it may be the proof of a log's misbehaviour.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
pub use rekey_crypto::SigningKey;
use rekey_tlog::cosignature::{cosign, AddCheckpoint};
use rekey_tlog::tree::verify_consistency;
use rekey_tlog::{note, Checkpoint, NoteError, VerifierKey};
use sha2::{Digest, Sha256};

/// The largest request body: a checkpoint, 63 hashes and a few signatures fit well within.
const MAX_BODY: usize = 64 << 10;

/// What a witness needs to run.
pub struct WitnessOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The witness's key name, e.g. `witness.example/w1`.
    pub name: String,
    /// The witness's signing key.
    pub key: SigningKey,
    /// The logs it witnesses: their verifier keys (name = origin).
    pub logs: Vec<VerifierKey>,
    /// Where the latest checkpoint of each log is kept.
    pub state_dir: PathBuf,
}

struct Witness {
    key: SigningKey,
    verifier: VerifierKey,
    logs: Vec<VerifierKey>,
    state_dir: PathBuf,
    /// Held from reading a log's state to writing the new one, so that two requests cannot
    /// both pass the check and roll the state back.
    lock: tokio::sync::Mutex<()>,
}

/// The witness's cosignature verifier key, as logs are configured with it.
pub fn verifier_key(name: &str, key: &SigningKey) -> Result<VerifierKey, NoteError> {
    VerifierKey::cosigner(name, key.public())
}

/// Runs the witness until the process is stopped.
pub async fn serve(options: WitnessOptions) -> std::io::Result<()> {
    let verifier = verifier_key(&options.name, &options.key).map_err(std::io::Error::other)?;
    if options.logs.iter().any(|l| l.kind != rekey_tlog::KeyKind::Ed25519) {
        return Err(std::io::Error::other("a log's key is a note-signing key (type 0x01)"));
    }
    std::fs::create_dir_all(&options.state_dir)?;
    tracing::info!(witness = %verifier, logs = options.logs.len(), listen = %options.listen, "witness listening");
    let witness = Arc::new(Witness {
        key: options.key,
        verifier,
        logs: options.logs,
        state_dir: options.state_dir,
        lock: Default::default(),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(witness);
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    axum::serve(listener, app).await
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.into()).into_response()
}

/// The file holding a log's latest cosigned checkpoint.
fn state_file(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!("{}.checkpoint", hex::encode(Sha256::digest(origin.as_bytes()))))
}

/// Writes the state through a temporary file, synced, renamed over the old one, the directory
/// synced: a crash leaves the old state or the new one.
fn persist(dir: &Path, origin: &str, note: &str) -> std::io::Result<()> {
    let path = state_file(dir, origin);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(note.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let request = match AddCheckpoint::parse(body) {
        Ok(r) => r,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let origin = request.note.split('\n').next().unwrap_or_default().to_owned();
    let Some(log) = w.logs.iter().find(|l| l.name == origin) else {
        return answer(StatusCode::NOT_FOUND, "unknown log");
    };
    let text = match note::open(&request.note, log) {
        Ok((text, _)) => text.to_owned(),
        Err(e) => return answer(StatusCode::FORBIDDEN, e.to_string()),
    };
    let checkpoint = match Checkpoint::parse(&text) {
        Ok(c) => c,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if request.old > checkpoint.size {
        return answer(StatusCode::BAD_REQUEST, "the old size is above the checkpoint's");
    }
    let _held = w.lock.lock().await;
    let held = match read_state(&w.state_dir, log) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(log = %origin, error = %e, "cannot read the witness state");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "the witness state cannot be read");
        }
    };
    let held_size = held.as_ref().map_or(0, |c| c.size);
    if request.old != held_size {
        return (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{held_size}\n"))
            .into_response();
    }
    let consistent = match &held {
        None => request.proof.is_empty(),
        Some(h) if h.size == checkpoint.size => {
            if h.root != checkpoint.root {
                tracing::warn!(log = %origin, size = h.size, "a signed checkpoint of the held size with another root: the log forked");
                return answer(StatusCode::CONFLICT, "a different root for the size held");
            }
            request.proof.is_empty()
        }
        Some(h) => verify_consistency(h.size, checkpoint.size, &h.root, &checkpoint.root, &request.proof),
    };
    if !consistent {
        tracing::warn!(log = %origin, old = held_size, new = checkpoint.size,
            "a signed checkpoint that does not extend the one held: refused");
        return answer(StatusCode::UNPROCESSABLE_ENTITY, "the consistency proof does not verify");
    }
    if let Err(e) = persist(&w.state_dir, &origin, &request.note) {
        tracing::error!(log = %origin, error = %e, "cannot write the witness state");
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "the witness state cannot be written");
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1).max(1);
    match cosign(&text, &w.verifier, now, |m| w.key.sign(m)) {
        Ok(line) => answer(StatusCode::OK, line),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The checkpoint held for a log: the stored note, opened again with the log's key.
fn read_state(dir: &Path, log: &VerifierKey) -> std::io::Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(state_file(dir, &log.name)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (body, _) = note::open(&text, log).map_err(std::io::Error::other)?;
    Checkpoint::parse(body).map(Some).map_err(std::io::Error::other)
}
