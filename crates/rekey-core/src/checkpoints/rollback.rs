//! At open: the log is checked against the last checkpoint it signed, as the store holds it and
//! as each append-only directory does. A log shorter than either, or whose prefix does not hash
//! to its root, refuses writes until an operator accepts it; so does a checkpoint, in the store
//! or a directory, that this server's key did not sign.

use rekey_store::NewCheckpoint;

use super::opened;
use super::witness::newest_in;
use crate::{CoreError, Vault};

impl Vault {
    /// Checks the log against the signed checkpoints it can find; on a finding, refuses writes
    /// and records it. A directory that cannot be read is logged, not a finding.
    pub(crate) async fn check_rollback(&self) -> Result<(), CoreError> {
        let mut references: Vec<(String, NewCheckpoint)> = Vec::new();
        if let Some(row) = self.store().latest_checkpoint().await? {
            references.push(("the store's last checkpoint".into(), row.checkpoint));
        }
        if let Some(row) = self.store().latest_cosigned_checkpoint().await? {
            references.push(("the store's last cosigned checkpoint".into(), row.checkpoint));
        }
        for dir in self.options().checkpoints.dirs.clone() {
            let read = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || newest_in(&dir)
            })
            .await
            .map_err(|_| CoreError::Store(rekey_store::StoreError::Corrupt("a checkpoint directory read".into())))?;
            match read {
                Ok(Some((path, note))) => match from_note(&note) {
                    Some(checkpoint) => references.push((format!("{}", path.display()), checkpoint)),
                    None => {
                        return self.refuse(format!("{} is not a checkpoint of this log", path.display())).await;
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::error!(dir = %dir.display(), error = %e, "could not read the checkpoint directory"),
            }
        }
        for (whence, checkpoint) in references {
            if let Err(why) = opened(&checkpoint, self.log_key().public) {
                return self.refuse(format!("{whence} does not verify with this log's key: {why}")).await;
            }
            if let Err(finding) = self.prefix_matches(checkpoint.size, &checkpoint.root).await? {
                return self.refuse(format!("{finding} ({whence})")).await;
            }
        }
        Ok(())
    }

    async fn refuse(&self, finding: String) -> Result<(), CoreError> {
        self.found_rollback(finding).await;
        Ok(())
    }
}

/// A checkpoint as a directory holds it: the note, whose size and root are read from its text
/// (the signature is checked by the caller).
fn from_note(note: &str) -> Option<NewCheckpoint> {
    let (text, _) = rekey_tlog::note::parse(note).ok()?;
    let checkpoint = rekey_tlog::Checkpoint::parse(text).ok()?;
    Some(NewCheckpoint {
        size: checkpoint.size,
        root: checkpoint.root,
        note: note.to_owned(),
        signed_at: rekey_types::Timestamp::now(),
        accepted: None,
    })
}
