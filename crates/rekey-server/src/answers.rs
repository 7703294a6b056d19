//! The small JSON answers that are not a view of the core: what a delete, a revocation, the seal
//! or a key rotation answer.

use rekey_core::views::{JobView, RootSplitView};
use serde::Serialize;
use utoipa::ToSchema;

/// A credential deleted.
#[derive(Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// `tenant/name`.
    pub(crate) deleted: String,
}

/// A token revoked.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    /// The token's id.
    #[schema(format = "uuid")]
    pub(crate) revoked: String,
}

/// The vault sealed.
#[derive(Serialize, ToSchema)]
pub(crate) struct Sealed {
    /// Always true.
    pub(crate) sealed: bool,
}

/// A key rotation started (its job), or, for a Shamir root, the new shares to commit.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum RotateAnswer {
    /// The rotation's job.
    Job(JobView),
    /// A Shamir root rotation's new shares; nothing changes until they are committed.
    Split(RootSplitView),
}
