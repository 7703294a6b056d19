//! The staged rotation (see the module documentation of `connectors`): start, drive, advance
//! (apply, verify, promote), retire, fail.

use rekey_connect::ldap::Changer;
use rekey_connect::{Outcome, Status};
use rekey_store::{CredentialRow, RotationRow, TenantRow, WriteOp};
use rekey_types::{
    AuditAction, AuditOutcome, CredRef, CredentialKind, Fields, ItemState, RotationId, RotationState, Secret, Stage,
    Timestamp,
};

use super::entra::is_secret_app;
use super::plan::{new_password, rotation_plan};
use super::retire::retire_op;
use super::{ConnectorStats, RotationView, VERIFY_ATTEMPTS};
use crate::kernel::policy::Action;
use crate::kernel::Actor;
use crate::{Caller, CoreError, Vault};

impl Vault {
    /// `rekey cred rotations`: the rotations of a credential, newest first.
    pub async fn rotations(&self, caller: &Caller, cref: &CredRef) -> Result<Vec<RotationView>, CoreError> {
        let resource = cref.to_string();
        let result = async {
            self.authorize(caller, Action::ReadCredentialMeta(&cref.tenant), &format!("credential {cref}"))?;
            let (_, credential) = self.tenant_credential(cref).await?;
            Ok(self.store().rotations_of(credential.id, 100).await?.iter().map(RotationView::from).collect())
        }
        .await;
        self.finish(caller, AuditAction::CredRotations, &resource, result).await
    }

    /// `rekey cred rotate`: runs a staged rotation as far as it goes now (usually to `promoted`).
    pub async fn rotate_credential(&self, caller: &Caller, cref: &CredRef) -> Result<RotationView, CoreError> {
        let resource = cref.to_string();
        let actor = Actor::of(caller);
        let loaded = async {
            self.authorize(caller, Action::UseConnector(&cref.tenant), &format!("credential {cref}"))?;
            let (tenant, credential) = self.tenant_credential(cref).await?;
            rotation_plan(&credential, &resource)?;
            Ok((tenant, credential))
        }
        .await;
        let (tenant, credential) = match loaded {
            Ok(l) => l,
            Err(e) => return self.finish(caller, AuditAction::CredRotateStart, &resource, Err(e)).await,
        };
        let rotation = self.start_rotation(&actor, &tenant, &credential, None).await?;
        let rotation = self.drive(&actor, rotation).await?;
        Ok(RotationView::from(&rotation))
    }

    /// Stores the new secret as a pending version beside a new rotation row (and `with`, an
    /// operation that must happen in the same transaction, given the rotation's id).
    pub(crate) async fn start_rotation(
        &self,
        actor: &Actor,
        tenant: &TenantRow,
        credential: &CredentialRow,
        with: Option<&(dyn Fn(RotationId) -> WriteOp + Send + Sync)>,
    ) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", tenant.name, credential.name);
        // A promoted rotation still in its grace period retires now: its old version goes.
        for previous in self.store().rotations_of(credential.id, 5).await? {
            if previous.state == RotationState::Promoted {
                self.retire(actor, previous, true).await?;
            }
        }
        let _turn = self.credential_locks().lock(tenant.id, &credential.name).await;
        let prepared = async {
            let credential = self
                .store()
                .credential(tenant.id, &credential.name)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("credential {resource}")))?;
            if let Some(open) = self
                .store()
                .rotations_of(credential.id, 1)
                .await?
                .into_iter()
                .find(|r| RotationState::UNFINISHED.contains(&r.state))
            {
                return Err(CoreError::RotationInProgress(format!(
                    "rotation {} of {resource} is {}; the server finishes or recovers it",
                    open.id, open.state
                )));
            }
            let now = Timestamp::now();
            let mut row = RotationRow {
                id: RotationId::generate(),
                credential_id: credential.id,
                tenant_id: tenant.id,
                from_version: credential.current_version,
                to_version: credential.latest_version + 1,
                state: RotationState::Pending,
                created_by: actor.name.clone(),
                created_at: now,
                changed_at: now,
                retire_after: None,
                error: None,
                target_ref: None,
                tenant: tenant.name.clone(),
                credential: credential.name.clone(),
                kind: Some(credential.kind),
            };
            let extra = with.map(|f| f(row.id));
            if is_secret_app(&credential) {
                // Graph makes the new secret at the apply step; it is stored the moment it exists.
                let mut ops = vec![WriteOp::InsertRotation(row.clone())];
                ops.extend(extra);
                return Ok((WriteOp::All(ops), row));
            }
            let (secret, certificate) = match credential.kind {
                CredentialKind::Ldap => (new_password(&credential.fields)?, None),
                _ => {
                    let (secret, info) = self.new_certificate_secret(&tenant.name, &credential.name, None).await?;
                    (secret, Some(info))
                }
            };
            let next = crate::credentials::NextVersion {
                tenant: tenant.id,
                name: &credential.name,
                kind: credential.kind,
                fields: self.current_fields(&credential).await?,
                labels: credential.labels.clone(),
                existing: Some(&credential),
                created_by: &actor.name,
                kek_version: None,
                pending: true,
            };
            let (op, updated) = self.sealed_version(next, &secret).await?;
            let op = self.with_certificate(op, &updated, certificate.as_ref()).await?;
            row.to_version = updated.latest_version;
            let mut ops = vec![op, WriteOp::InsertRotation(row.clone())];
            ops.extend(extra);
            Ok((WriteOp::All(ops), row))
        }
        .await;
        let (op, row) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.write(actor, AuditAction::CredRotateStart, &resource, None, e.audit_outcome(), e.code().as_str())
                    .await?;
                return Err(e);
            }
        };
        let detail = format!("rotation={}; from={}; to={}", row.id, row.from_version, row.to_version);
        self.write(actor, AuditAction::CredRotateStart, &resource, Some(op), AuditOutcome::Success, &detail).await?;
        ConnectorStats::count(&self.stats().rotations, credential.kind, "started");
        Ok(row)
    }

    /// Takes a rotation through its remaining steps, as far as they can go now.
    pub(crate) async fn drive(&self, actor: &Actor, mut rotation: RotationRow) -> Result<RotationRow, CoreError> {
        loop {
            rotation = match rotation.state {
                RotationState::Pending | RotationState::Applied => {
                    let next = match self.advance(actor, rotation.clone()).await {
                        Ok(next) => next,
                        // What cannot work however often it is tried (a rotator that is not an
                        // ldap credential, a secret the protocol cannot carry) fails the rotation.
                        Err(CoreError::NotRotatable(why) | CoreError::BadRequest(why)) => {
                            return self.fail(actor, rotation, &why).await;
                        }
                        Err(e) => return Err(e),
                    };
                    if next.state == rotation.state {
                        return Ok(next);
                    }
                    next
                }
                RotationState::Promoted => {
                    let due = rotation.retire_after.is_none_or(|t| t <= Timestamp::now());
                    return if due { self.retire(actor, rotation, false).await } else { Ok(rotation) };
                }
                _ => return Ok(rotation),
            };
        }
    }

    /// One step of an unfinished rotation: pending → applied, or applied → promoted.
    async fn advance(&self, actor: &Actor, rotation: RotationRow) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let _turn = self.credential_locks().lock(rotation.tenant_id, &rotation.credential).await;
        // Another driver (the scheduler, a campaign worker) may have taken this step meanwhile.
        match self.store().rotation(rotation.id).await? {
            Some(now) if now.state != rotation.state => return Ok(now),
            None => return Err(CoreError::NotFound(format!("rotation {}", rotation.id))),
            Some(_) => {}
        }
        let Some(credential) = self
            .store()
            .credential(rotation.tenant_id, &rotation.credential)
            .await?
            .filter(|c| c.id == rotation.credential_id)
        else {
            return self.fail(actor, rotation, "the credential was deleted").await;
        };
        // A secret-based Entra app gets its new secret from Graph at this step.
        let awaiting_secret = rotation.state == RotationState::Pending
            && is_secret_app(&credential)
            && credential.latest_version + 1 == rotation.to_version;
        let pending_ok = awaiting_secret
            || self
                .store()
                .version(credential.id, Some(rotation.to_version))
                .await?
                .is_some_and(|v| v.stage == Stage::Pending);
        let superseded = credential.current_version != rotation.from_version
            || (!awaiting_secret && credential.latest_version != rotation.to_version)
            || !pending_ok;
        if superseded {
            return self.fail(actor, rotation, "superseded: the credential changed while the rotation ran").await;
        }
        let (fields, current) =
            self.secret_for_target(actor, &rotation.tenant, &credential, rotation.from_version, "rotate").await?;
        if awaiting_secret {
            return self.add_client_secret(actor, rotation, &credential, &fields, &current).await;
        }
        let (new_fields, new) =
            self.secret_for_target(actor, &rotation.tenant, &credential, rotation.to_version, "rotate").await?;
        if new_fields != fields {
            return self.fail(actor, rotation, "the new version is bound to another target than the current one").await;
        }

        if rotation.state == RotationState::Pending {
            let taken = actor.recovering && self.probe(credential.kind, &fields, &new).await?.is_ok();
            let (applied, proof) = if taken {
                let o = Outcome {
                    status: Status::Ok,
                    detail: "the target already took it".into(),
                    elapsed: Default::default(),
                };
                (o, None)
            } else {
                self.apply(actor, &rotation.tenant, &credential, &fields, &current, &new).await?
            };
            if !applied.is_ok() {
                // Did the target take it anyway (a lost answer, or an earlier attempt)?
                if !self.probe(credential.kind, &fields, &new).await?.is_ok() {
                    return self.apply_failed(actor, rotation, &applied).await;
                }
            }
            let detail = format!("rotation={}; {}", rotation.id, applied.detail);
            let op = set_rotation(&rotation, &[RotationState::Pending], RotationState::Applied, None, None);
            let apply =
                self.request(actor, AuditAction::CredRotateApply, &resource, Some(op), AuditOutcome::Success, &detail);
            let applied_row =
                RotationRow { state: RotationState::Applied, error: None, changed_at: Timestamp::now(), ..rotation };
            let Some(check) = proof.filter(Outcome::is_ok) else {
                self.submit(apply).await?;
                ConnectorStats::count(&self.stats().rotations, credential.kind, "applied");
                return Ok(applied_row);
            };
            // The directory took the new password on the connection that changed it: promote in
            // the same commit, and with no grace period retire the old version too (an LDAP
            // retirement is local). Each step keeps its own audit event.
            let (promote_op, promoted, detail) = self.promote_op(applied_row, &credential, &new_fields, &new, &check);
            let promote = self.request(
                actor,
                AuditAction::CredRotatePromote,
                &resource,
                Some(promote_op),
                AuditOutcome::Success,
                &detail,
            );
            let mut requests = vec![apply, promote];
            let retire_now = (self.options().connect.grace_secs == 0 || actor.retire_at_once)
                && credential.kind == CredentialKind::Ldap;
            if retire_now {
                let (retire_op, detail) = retire_op(&promoted, None);
                requests.push(self.request(
                    actor,
                    AuditAction::CredRotateRetire,
                    &resource,
                    Some(retire_op),
                    AuditOutcome::Success,
                    &detail,
                ));
            }
            let results = self.submit_all(requests).await?;
            let steps = ["applied", "promoted", "retired"];
            for (result, step) in results.iter().zip(steps) {
                if result.is_ok() {
                    ConnectorStats::count(&self.stats().rotations, credential.kind, step);
                }
            }
            if results.iter().all(Result::is_ok) {
                let state = if retire_now { RotationState::Retired } else { RotationState::Promoted };
                return Ok(RotationRow { state, changed_at: Timestamp::now(), ..promoted });
            }
            // A step lost to a concurrent driver: carry on from where the rotation is now.
            return self
                .store()
                .rotation(promoted.id)
                .await?
                .ok_or_else(|| CoreError::NotFound(format!("rotation {}", promoted.id)));
        }

        // Applied: the new secret must work before it is served.
        let mut check = self.probe(credential.kind, &fields, &new).await?;
        let mut attempt = 1;
        while !check.is_ok() && check.status == Status::AuthFailed && attempt < VERIFY_ATTEMPTS {
            tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
            check = self.probe(credential.kind, &fields, &new).await?;
            attempt += 1;
        }
        if !check.is_ok() {
            let old = self.probe(credential.kind, &fields, &current).await?;
            let why = format!("verify: {}: {}", check.status, check.detail);
            if old.is_ok() && check.status == Status::AuthFailed {
                return self.fail(actor, rotation, &format!("{why}; the target still takes the old secret")).await;
            }
            return self.note(actor, rotation, &why).await;
        }
        self.promote_proven(actor, rotation, &credential, &new_fields, &new, &check).await
    }

    /// Makes the proven new version current (the old one `previous`, retired after the grace).
    async fn promote_proven(
        &self,
        actor: &Actor,
        rotation: RotationRow,
        credential: &CredentialRow,
        fields: &Fields,
        new: &Secret,
        check: &Outcome,
    ) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let (op, promoted, detail) = self.promote_op(rotation, credential, fields, new, check);
        self.write(actor, AuditAction::CredRotatePromote, &resource, Some(op), AuditOutcome::Success, &detail).await?;
        ConnectorStats::count(&self.stats().rotations, credential.kind, "promoted");
        Ok(promoted)
    }

    /// The write that promotes an applied rotation whose new secret passed `check`, the rotation
    /// as it will be, and the audit detail of that step.
    fn promote_op(
        &self,
        rotation: RotationRow,
        credential: &CredentialRow,
        fields: &Fields,
        new: &Secret,
        check: &Outcome,
    ) -> (WriteOp, RotationRow, String) {
        // The new version serves the target it was stored (and proven) for.
        let promoted_fields = fields.as_map().clone();
        let now = Timestamp::now();
        let retire_after = Timestamp::from_micros(now.as_micros().saturating_add(
            i64::try_from(self.options().connect.grace_secs).unwrap_or(i64::MAX / 2).saturating_mul(1_000_000),
        ));
        let mut ops = vec![
            WriteOp::PromotePending {
                credential: credential.id,
                version: rotation.to_version,
                fields: promoted_fields,
                at: now,
            },
            set_rotation(&rotation, &[RotationState::Applied], RotationState::Promoted, None, Some(retire_after)),
        ];
        if credential.frozen_by.is_some() {
            // Proven at the target; a fresh secret (checked by the store) ends the freeze.
            let fingerprint = self.fingerprint(credential.id, new).0.to_vec();
            ops.push(WriteOp::LiftFreeze {
                credential: credential.id,
                fresh: Some((rotation.to_version, fingerprint)),
            });
        }
        let op = WriteOp::All(ops);
        let promoted = RotationRow {
            state: RotationState::Promoted,
            error: None,
            retire_after: Some(retire_after),
            changed_at: now,
            ..rotation
        };
        let detail = format!("rotation={}; version={}; {}", promoted.id, promoted.to_version, check.detail);
        (op, promoted, detail)
    }

    /// A failed apply step: a timeout (the target may have acted) waits for the scheduler; a
    /// refusal fails the rotation.
    pub(super) async fn apply_failed(
        &self,
        actor: &Actor,
        rotation: RotationRow,
        outcome: &Outcome,
    ) -> Result<RotationRow, CoreError> {
        let why = format!("apply: {}: {}", outcome.status, outcome.detail);
        let ambiguous = outcome.status == Status::Timeout || (actor.patient && outcome.status == Status::Unreachable);
        if ambiguous {
            self.note(actor, rotation, &why).await
        } else {
            self.fail(actor, rotation, &why).await
        }
    }

    /// Tells the target the new secret; with it, where the protocol allows, proof from that
    /// same exchange that the target takes it.
    async fn apply(
        &self,
        actor: &Actor,
        tenant: &str,
        credential: &CredentialRow,
        fields: &Fields,
        current: &Secret,
        new: &Secret,
    ) -> Result<(Outcome, Option<Outcome>), CoreError> {
        let limits = &self.options().connect.limits;
        let _permit = self.host_permit(credential.kind, fields).await;
        let outcome = match credential.kind {
            CredentialKind::Ldap => match fields.get("rotator") {
                Some(rotator) => {
                    let admin = self
                        .store()
                        .credential(credential.tenant_id, rotator)
                        .await?
                        .filter(|c| c.kind == CredentialKind::Ldap)
                        .ok_or_else(|| {
                            CoreError::NotRotatable(format!(
                                "the rotator {rotator} is not an ldap credential of this tenant"
                            ))
                        })?;
                    // The rotator resets only accounts inside the subtrees an operator gave it:
                    // checked before its secret is even decrypted, and again with the fields that
                    // secret is bound to.
                    let bind_dn = fields.get("bind_dn").unwrap_or_default();
                    crate::kernel::target::may_reset(rotator, &Fields::from_stored(admin.fields.clone()), bind_dn)?;
                    let (admin_fields, admin_secret) =
                        self.secret_for_target(actor, tenant, &admin, admin.current_version, "rotator").await?;
                    crate::kernel::target::may_reset(rotator, &admin_fields, bind_dn)?;
                    rekey_connect::ldap::change_password(
                        fields,
                        Changer::Rotator { fields: &admin_fields, secret: &admin_secret },
                        new,
                        limits,
                    )
                    .await
                }
                None => rekey_connect::ldap::change_password(fields, Changer::Itself { current }, new, limits).await,
            }
            .map(|c| (c.changed, c.proof)),
            CredentialKind::EntraApp => {
                rekey_connect::graph::add_certificate(fields, current, new, limits).await.map(|o| (o, None))
            }
            other => return Err(CoreError::NotRotatable(format!("{other} credentials are rotated by the customer"))),
        };
        outcome.map_err(not_rotatable)
    }

    /// Fails an unfinished rotation: the pending version is marked `failed`; current serves on.
    pub(super) async fn fail(&self, actor: &Actor, rotation: RotationRow, why: &str) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let op = WriteOp::All(vec![
            WriteOp::SetVersionStage {
                credential: rotation.credential_id,
                version: rotation.to_version,
                from: Stage::Pending,
                stage: Stage::Failed,
            },
            set_rotation(&rotation, &RotationState::UNFINISHED, RotationState::Failed, Some(why.to_owned()), None),
        ]);
        let detail = format!("rotation={}; {why}", rotation.id);
        self.write(actor, AuditAction::CredRotateFail, &resource, Some(op), AuditOutcome::Error, &detail).await?;
        if let Some(kind) = rotation.kind {
            ConnectorStats::count(&self.stats().rotations, kind, "failed");
        }
        Ok(RotationRow {
            state: RotationState::Failed,
            error: Some(why.to_owned()),
            changed_at: Timestamp::now(),
            ..rotation
        })
    }

    /// Records why a rotation waits, without moving it: the scheduler tries again.
    pub(super) async fn note(&self, actor: &Actor, rotation: RotationRow, why: &str) -> Result<RotationRow, CoreError> {
        let resource = format!("{}/{}", rotation.tenant, rotation.credential);
        let state: RotationState = match rotation.state {
            RotationState::Pending => RotationState::Pending,
            RotationState::Applied => RotationState::Applied,
            _ => RotationState::Promoted,
        };
        let states: &'static [RotationState] = match state {
            RotationState::Pending => &[RotationState::Pending],
            RotationState::Applied => &[RotationState::Applied],
            _ => &[RotationState::Promoted],
        };
        let op = set_rotation(&rotation, states, state, Some(why.to_owned()), rotation.retire_after);
        let detail = format!("rotation={}; waiting: {why}", rotation.id);
        self.write(actor, AuditAction::CredRotateWait, &resource, Some(op), AuditOutcome::Error, &detail).await?;
        Ok(RotationRow { error: Some(why.to_owned()), changed_at: Timestamp::now(), ..rotation })
    }
}

/// A connector that cannot even try (bad fields, a secret the protocol cannot carry): the
/// rotation cannot work however often it is tried.
pub(super) fn not_rotatable(e: rekey_connect::ConnectError) -> CoreError {
    CoreError::NotRotatable(e.to_string())
}

pub(super) fn set_rotation(
    rotation: &RotationRow,
    from: &'static [RotationState],
    state: RotationState,
    error: Option<String>,
    retire_after: Option<Timestamp>,
) -> WriteOp {
    with_item(WriteOp::SetRotation {
        id: rotation.id,
        from,
        state,
        error,
        retire_after,
        target_ref: None,
        at: Timestamp::now(),
    })
}

/// A rotation step, and the move of the campaign item that holds the rotation (if any) that
/// goes with it, in the same write.
pub(super) fn with_item(step: WriteOp) -> WriteOp {
    let WriteOp::SetRotation { id, state, error, at, .. } = &step else { return step };
    match ItemState::following(*state) {
        Some(item) => {
            let follow = WriteOp::FollowRotation { rotation: *id, state: item, error: error.clone(), at: *at };
            WriteOp::All(vec![step, follow])
        }
        None => step,
    }
}

/// The name a rotation gives the client secret it asks Graph for, so that one made by an attempt
/// that crashed before storing it can be found again.
pub(super) fn password_label(rotation: &RotationRow) -> String {
    format!("rekey rotation {}", rotation.id)
}
