//! The root key's versions: registered with the store at start, added, split across new Shamir
//! shares, and destroyed in the seal.

use std::collections::BTreeMap;

use rekey_store::{RootKeyRow, WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, KeyState, RequestId, Timestamp};

use crate::custody::keeper::{keyring_of, keyring_row};
use crate::kernel::policy::Action;
use crate::kernel::record;
use crate::views::{JobView, RootSplitView};
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// Records root key versions the seal holds but the store does not know yet (a first start,
    /// or a root rotation interrupted between the seal and the store), and finishes destroying
    /// versions the store marked destroyed while the seal still holds them.
    pub(crate) async fn register_root_versions(&self, registered: &[RootKeyRow]) -> Result<(), CoreError> {
        let known: BTreeMap<u32, KeyState> = registered.iter().map(|r| (r.version, r.state)).collect();
        for v in self.seal().root_versions() {
            if known.get(&v) == Some(&KeyState::Destroyed) {
                self.destroy_in_seal(v).await?;
            }
        }
        let held = self.seal().root_versions();
        let newest = self.seal().root_version();
        let now = Timestamp::now();
        let mut ops = Vec::new();
        for v in held.iter().filter(|v| !known.contains_key(v)) {
            let state = if Some(*v) == newest { KeyState::Active } else { KeyState::Retired };
            ops.push(WriteOp::InsertRootKey(RootKeyRow { version: *v, state, created_at: now, changed_at: now }));
        }
        if ops.is_empty() {
            return Ok(());
        }
        for r in registered.iter().filter(|r| r.state == KeyState::Active && Some(r.version) != newest) {
            ops.push(WriteOp::SetRootKeyState { version: r.version, state: KeyState::Retired, at: now });
        }
        let detail = format!(
            "registered root key versions held by the {} seal; active root@{}",
            self.seal().kind(),
            newest.unwrap_or(0)
        );
        let audit = record(
            "system",
            "",
            &RequestId::generate(),
            AuditAction::KeyRegister,
            "root",
            AuditOutcome::Success,
            &detail,
        );
        self.submit(WriteRequest { op: Some(WriteOp::All(ops)), audit }).await?;
        self.keks().forget_roots();
        Ok(())
    }

    pub(super) async fn destroy_in_seal(&self, version: u32) -> Result<(), CoreError> {
        self.seal().destroy_root_version(version).map_err(CoreError::from_seal)?;
        if let Some(shamir) = self.seal().as_shamir() {
            let sealed = shamir.export().map_err(CoreError::from_seal)?;
            let op = WriteOp::ReplaceKeyring(keyring_row("active", &sealed));
            let audit = record(
                "system",
                "",
                &RequestId::generate(),
                AuditAction::KeyDestroy,
                &format!("root@{version}"),
                AuditOutcome::Success,
                "removed from the Shamir keyring",
            );
            self.submit(WriteRequest { op: Some(op), audit }).await?;
        }
        Ok(())
    }

    /// A new root key version in a dev or PKCS#11 seal, registered as the active one.
    pub(super) async fn add_root_version(&self, caller: &Caller) -> Result<u32, CoreError> {
        let version = self.seal().add_root_version().map_err(CoreError::from_seal)?;
        let now = Timestamp::now();
        let mut ops = vec![WriteOp::InsertRootKey(RootKeyRow {
            version,
            state: KeyState::Active,
            created_at: now,
            changed_at: now,
        })];
        for r in self.store().root_keys().await? {
            if r.state == KeyState::Active {
                ops.push(WriteOp::SetRootKeyState { version: r.version, state: KeyState::Retired, at: now });
            }
        }
        let resource = format!("root@{version}");
        self.commit(caller, AuditAction::KeyCreate, &resource, WriteOp::All(ops), "new root key version").await?;
        self.keks().forget_roots();
        Ok(version)
    }

    /// Shamir root rotation, step one: the keyring plus a new root version, under a new unseal
    /// key split into new shares. Stored as pending; the current shares keep working.
    pub async fn prepare_root_split(
        &self,
        caller: &Caller,
        shares: u8,
        threshold: u8,
    ) -> Result<RootSplitView, CoreError> {
        let result = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            let shamir = self
                .seal()
                .as_shamir()
                .ok_or_else(|| CoreError::Conflict(format!("the {} seal has no shares", self.seal().kind())))?;
            let split = shamir.prepare_split(shares, threshold).map_err(CoreError::from_seal)?;
            self.store().put_seal_keyring(&keyring_row("pending", &split.sealed)).await?;
            Ok(RootSplitView {
                set_id: hex::encode(split.sealed.set_id),
                threshold,
                shares: split.shares.iter().map(|s| s.to_string()).collect(),
            })
        }
        .await;
        // The shares never go into the audit log; the key set id does.
        self.finish_with(caller, AuditAction::KeyRotatePrepare, "root", result, |v| {
            format!("pending key set {}", v.set_id)
        })
        .await
    }

    /// Shamir root rotation, step two (after the new shares were handed out): the pending
    /// keyring becomes the stored one, its new root version becomes active, and every KEK is
    /// rewrapped under it. The old shares stop working.
    pub async fn commit_root_split(&self, caller: &Caller, set_id_hex: &str) -> Result<JobView, CoreError> {
        let prepared = async {
            self.authorize(caller, Action::ManageKeys, "keys")?;
            let shamir = self
                .seal()
                .as_shamir()
                .ok_or_else(|| CoreError::Conflict(format!("the {} seal has no shares", self.seal().kind())))?;
            let set_id = hex::decode(set_id_hex)
                .ok()
                .filter(|b| b.len() == 8)
                .ok_or_else(|| CoreError::BadRequest("set_id must be 16 hex digits".into()))?;
            let pending = self
                .store()
                .seal_keyring("pending")
                .await?
                .filter(|p| p.set_id == set_id)
                .ok_or_else(|| CoreError::NotFound(format!("pending root rotation {set_id_hex}")))?;
            if shamir.pending_set().map(|s| s.to_vec()) != Some(set_id.clone()) {
                return Err(CoreError::Conflict(
                    "this server no longer holds that pending rotation (it restarted); start the root rotation again"
                        .into(),
                ));
            }
            let new_version = self.seal().root_version().unwrap_or(0) + 1;
            let total = self.store().keks(None).await?.len() as i64;
            Ok((pending, set_id, new_version, self.new_job(caller, "root", None, "rotate", total)))
        }
        .await;
        let (pending, set_id, new_version, job) = match prepared {
            Ok(p) => p,
            Err(e) => return self.finish(caller, AuditAction::KeyRotate, "root", Err(e)).await,
        };
        let now = Timestamp::now();
        let mut ops = vec![
            WriteOp::CommitKeyring { set_id },
            WriteOp::InsertRootKey(RootKeyRow {
                version: new_version,
                state: KeyState::Active,
                created_at: now,
                changed_at: now,
            }),
        ];
        for r in self.store().root_keys().await? {
            if r.state == KeyState::Active {
                ops.push(WriteOp::SetRootKeyState { version: r.version, state: KeyState::Retired, at: now });
            }
        }
        ops.push(WriteOp::CreateJob(job.clone()));
        let detail = format!("new shares (key set {set_id_hex}); root@{new_version}; job {}", job.id);
        self.commit(caller, AuditAction::KeyRotate, "root", WriteOp::All(ops), &detail).await?;
        let sealed = keyring_of(&pending)?;
        let shamir = self.seal().as_shamir().expect("checked above");
        shamir.commit_split(&sealed).map_err(CoreError::from_seal)?;
        self.keks().forget_roots();
        self.jobs_wake().notify_one();
        Ok(JobView::new(job, None))
    }
}
