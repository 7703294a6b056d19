//! The only way anything reaches the audit log, and through it the store: an event per outcome,
//! committed with the write it describes, durable before the answer (fail closed).

use rekey_store::{WriteOp, WriteRequest};
use rekey_types::{AuditAction, AuditOutcome, AuditRecord, RequestId, Timestamp};

use super::Vault;
use crate::{Caller, CoreError};

/// Who a step is recorded as: a caller, or the server's own scheduler.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub name: String,
    pub source: String,
    pub request: RequestId,
    /// The scheduler keeps an unfinished rotation for later instead of failing it when the
    /// target cannot be reached.
    pub patient: bool,
    /// Picking up a rotation that an earlier run (perhaps one that crashed) left unfinished: a
    /// pending rotation first asks the target whether it already took the new secret, so that
    /// the target is never told twice.
    pub recovering: bool,
    /// Retire the old version as soon as the new one is promoted, whatever the grace period
    /// (a campaign: the old secret is the stolen one).
    pub retire_at_once: bool,
}

impl Actor {
    /// An audit event of this actor's.
    pub(crate) fn event(
        &self,
        action: AuditAction,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> AuditRecord {
        record(&self.name, &self.source, &self.request, action, resource, outcome, detail)
    }

    pub(crate) fn of(caller: &Caller) -> Self {
        Self {
            name: caller.principal.audit_name(),
            source: caller.audit_source(),
            request: caller.request_id,
            patient: false,
            recovering: false,
            retire_at_once: false,
        }
    }

    pub(crate) fn scheduler() -> Self {
        Self::system("system:scheduler")
    }

    /// The server's own background work, under a name of its own.
    pub(crate) fn system(name: &str) -> Self {
        Self {
            name: name.into(),
            source: String::new(),
            request: RequestId::generate(),
            patient: true,
            recovering: false,
            retire_at_once: false,
        }
    }
}

impl Vault {
    pub(crate) fn event(
        &self,
        caller: &Caller,
        action: AuditAction,
        resource: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> AuditRecord {
        record(
            &caller.principal.audit_name(),
            &caller.audit_source(),
            &caller.request_id,
            action,
            resource,
            outcome,
            detail,
        )
    }

    pub(crate) async fn submit(&self, request: WriteRequest) -> Result<(), CoreError> {
        self.refuse_writes(&request)?;
        let touch = self.put_hints.before(&request.op);
        match self.writer.submit(request).await {
            Ok(Ok(_)) => {
                self.put_hints.after(touch);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(CoreError::AuditUnavailable),
        }
    }

    /// Several writes in order, usually in one commit; each one's own result.
    pub(crate) async fn submit_all(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<Result<(), CoreError>>, CoreError> {
        for request in &requests {
            self.refuse_writes(request)?;
        }
        let touches: Vec<_> = requests.iter().map(|r| self.put_hints.before(&r.op)).collect();
        match self.writer.submit_all(requests).await {
            Ok(results) => Ok(results
                .into_iter()
                .zip(touches)
                .map(|(r, touch)| {
                    if r.is_ok() {
                        self.put_hints.after(touch);
                    }
                    r.map(drop).map_err(CoreError::from)
                })
                .collect()),
            Err(_) => Err(CoreError::AuditUnavailable),
        }
    }

    /// While the log is known to be rolled back, only the events of reading the audit log, of
    /// the status, and of the decision about it are written: every other request is refused
    /// with `audit_rollback`, before it does anything.
    fn refuse_writes(&self, request: &WriteRequest) -> Result<(), CoreError> {
        let Some(reason) = self.log_guard().reason() else { return Ok(()) };
        const STILL_ALLOWED: &[AuditAction] = &[
            AuditAction::AuditRead,
            AuditAction::AuditVerify,
            AuditAction::AuditTree,
            AuditAction::AuditProve,
            AuditAction::AuditCheckpoint,
            AuditAction::AuditRollback,
            AuditAction::AuditAccept,
            AuditAction::SysStatus,
        ];
        if request.op.is_none() && STILL_ALLOWED.iter().any(|a| a.as_str() == request.audit.action) {
            return Ok(());
        }
        Err(CoreError::AuditRollback(reason))
    }

    pub(crate) async fn audit_event(&self, event: AuditRecord) -> Result<(), CoreError> {
        self.submit(WriteRequest { op: None, audit: event }).await
    }

    /// Records the outcome of a request that changed nothing (a read, or a failure before any
    /// write) and passes the result through. If the event cannot be written, the result is
    /// dropped and the request fails: nothing leaves without its audit event.
    pub(crate) async fn finish<T>(
        &self,
        caller: &Caller,
        action: AuditAction,
        resource: &str,
        result: Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        self.finish_with(caller, action, resource, result, |_| String::new()).await
    }

    /// [`Vault::finish`] with a detail (never a secret) taken from a successful result.
    pub(crate) async fn finish_with<T>(
        &self,
        caller: &Caller,
        action: AuditAction,
        resource: &str,
        result: Result<T, CoreError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, CoreError> {
        let event = match &result {
            Ok(value) => self.event(caller, action, resource, AuditOutcome::Success, &detail(value)),
            Err(e) => self.event(caller, action, resource, e.audit_outcome(), e.code().as_str()),
        };
        self.audit_event(event).await?;
        result
    }

    /// Commits `op` together with its audit event. A failed operation is recorded as failed.
    pub(crate) async fn commit(
        &self,
        caller: &Caller,
        action: AuditAction,
        resource: &str,
        op: WriteOp,
        detail: &str,
    ) -> Result<(), CoreError> {
        let audit = self.event(caller, action, resource, AuditOutcome::Success, detail);
        self.submit(WriteRequest { op: Some(op), audit }).await
    }

    /// Records a request refused for bad input before it reached a use case (a body that is not
    /// JSON, an invalid name), so that it too leaves an audit event.
    pub async fn record_rejection(
        &self,
        caller: &Caller,
        action: AuditAction,
        resource: &str,
        code: rekey_types::ErrorCode,
    ) -> Result<(), CoreError> {
        self.audit_event(self.event(caller, action, resource, AuditOutcome::Error, code.as_str())).await
    }
}

pub(crate) fn record(
    principal: &str,
    source: &str,
    request_id: &RequestId,
    action: AuditAction,
    resource: &str,
    outcome: AuditOutcome,
    detail: &str,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time: Timestamp::now(),
        principal: principal.to_owned(),
        action: action.as_str().to_owned(),
        resource: resource.to_owned(),
        outcome,
        source: source.to_owned(),
        request_id: request_id.to_string(),
        detail: detail.to_owned(),
    }
}
