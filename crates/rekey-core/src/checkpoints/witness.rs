//! Where checkpoints go once signed: the append-only directories (one new file per checkpoint,
//! never one rewritten) and the HTTP witnesses (C2SP `tlog-witness`), whose cosignatures are
//! stored beside the checkpoint.
//!
//! A witness's refusal is logged and left at that: it is the witness's word, not evidence the
//! server can check (see docs/audit.md for what does refuse writes).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rekey_connect::witness::{HttpWitness, WitnessError};
use rekey_store::{with_tree_nodes, CheckpointRow, CosignatureRow, NewCheckpoint};
use rekey_tlog::tree::consistency_proof;
use rekey_tlog::AddCheckpoint;

use crate::{CoreError, Vault};

/// The file a checkpoint is written to in a directory: its signing time in microseconds
/// (20 digits, so that names sort in time order), then its size.
pub(super) fn file_name(checkpoint: &NewCheckpoint) -> String {
    format!("{:020}-{}.checkpoint", checkpoint.signed_at.as_micros().max(0), checkpoint.size)
}

/// Writes a new file and syncs it and its directory; never replaces one.
fn write_new(dir: &Path, name: &str, note: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join(name))?;
    file.write_all(note.as_bytes())?;
    file.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// The newest checkpoint file in `dir` (by name) and its text; `None` for a missing or empty
/// directory.
pub(super) fn newest_in(dir: &Path) -> std::io::Result<Option<(PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut newest: Option<PathBuf> = None;
    for entry in entries {
        let path = entry?.path();
        let is_checkpoint = path.extension().is_some_and(|e| e == "checkpoint");
        if is_checkpoint && newest.as_ref().is_none_or(|n| path.file_name() > n.file_name()) {
            newest = Some(path);
        }
    }
    let Some(path) = newest else { return Ok(None) };
    // A checkpoint is a few hundred bytes; a huge file is not one.
    if std::fs::metadata(&path)?.len() > 64 << 10 {
        return Err(std::io::Error::other(format!("{} is larger than a checkpoint", path.display())));
    }
    let text = std::fs::read_to_string(&path)?;
    Ok(Some((path, text)))
}

impl Vault {
    /// Writes the checkpoint to each configured directory; a failure is logged.
    pub(super) async fn write_to_dirs(&self, checkpoint: &NewCheckpoint) {
        let dirs = self.options().checkpoints.dirs.clone();
        if dirs.is_empty() {
            return;
        }
        let name = file_name(checkpoint);
        let note = checkpoint.note.clone();
        let written = tokio::task::spawn_blocking(move || {
            dirs.into_iter().map(|d| (write_new(&d, &name, &note), d)).collect::<Vec<_>>()
        })
        .await;
        for (result, dir) in written.unwrap_or_default() {
            if let Err(e) = result {
                tracing::error!(dir = %dir.display(), error = %e, "could not write the audit checkpoint to its directory");
            }
        }
    }

    /// Sends the checkpoint to each witness that has not cosigned it, with a consistency proof
    /// from the size it last cosigned, and stores the cosignatures. `sizes` is what this server
    /// knows of each witness's last size (0 at first: the witness's `409` then says it).
    pub(super) async fn send_to_witnesses(
        &self,
        row: &CheckpointRow,
        sizes: &mut HashMap<String, u64>,
    ) -> Result<(), CoreError> {
        let (text, _) = rekey_tlog::note::parse(&row.checkpoint.note)
            .map_err(|e| CoreError::Store(rekey_store::StoreError::Corrupt(e.to_string())))?;
        let text = text.to_owned();
        for witness in &self.options().checkpoints.witnesses {
            if row.cosignatures.iter().any(|c| c.witness == witness.name()) {
                continue;
            }
            match self.cosign_at(witness, row, &text, sizes).await? {
                Ok((line, time)) => {
                    sizes.insert(witness.name().to_owned(), row.checkpoint.size);
                    let cosignature = CosignatureRow { witness: witness.name().to_owned(), line, time };
                    self.store().add_cosignature(row.id, &cosignature).await?;
                }
                Err(e) => {
                    self.writer_stats().witness_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(witness = witness.name(), size = row.checkpoint.size, error = %e,
                        "the witness did not cosign the audit checkpoint");
                }
            }
        }
        Ok(())
    }

    /// One witness's cosignature: a request from the size it is believed to hold, and once
    /// more from the size it answers if that was wrong.
    async fn cosign_at(
        &self,
        witness: &HttpWitness,
        row: &CheckpointRow,
        text: &str,
        sizes: &HashMap<String, u64>,
    ) -> Result<Result<(String, u64), WitnessError>, CoreError> {
        let size = row.checkpoint.size;
        let mut old = sizes.get(witness.name()).copied().unwrap_or(0);
        for _ in 0..2 {
            if old > size {
                return Ok(Err(WitnessError::Refused(format!(
                    "it holds a checkpoint of {old} events, more than the {size} of this log"
                ))));
            }
            let proof = if old == 0 || old == size {
                vec![]
            } else {
                with_tree_nodes(self.store().as_ref(), |src| consistency_proof(old, size, src))
                    .await?
                    .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("a consistency proof".into())))?
            };
            let request = AddCheckpoint { old, proof, note: row.checkpoint.note.clone() };
            match witness.add_checkpoint(&request, text).await {
                Err(WitnessError::Conflict(held)) if held != old => old = held,
                other => return Ok(other),
            }
        }
        Ok(Err(WitnessError::Failed("its answers disagree about the size it holds".into())))
    }
}
