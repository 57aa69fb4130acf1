//! Moving a site's blob and asset bytes between backends while it serves
//! (`pfai storage migrate`).
//!
//! The switch is a restart: the operator starts the server with `--storage s3` on the same
//! data directory (or, moving back, `--storage local` with the bucket still configured). From
//! then on new objects go to the new backend, and every read of an object not there yet falls
//! through to the previous one (`storage::tiered::ReadThrough`). `migrate` then moves the
//! previous backend's objects one by one — copy, re-hash the copy, remove the original — while
//! the server keeps serving, so at no moment is an object in neither place.

use crate::api::StorageMigration;
use crate::auth::Principal;
use crate::domain::{Core, DomainError, DomainResult};

/// Moves every blob and asset of the previous backend into the one the server now writes to,
/// `to` (site admins): `s3` on a server started with `--storage s3` (the local files move into
/// the bucket), `local` on one started with `--storage local` and the bucket still configured
/// (the bucket's objects move back to local files). Anything else is refused with what to do.
pub async fn migrate(
    core: &Core,
    who: Option<&Principal>,
    to: &str,
) -> DomainResult<StorageMigration> {
    let p = super::account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden(
            "only site admins can migrate storage".into(),
        ));
    }
    if to != "s3" && to != "local" {
        return Err(DomainError::BadRequest(format!(
            "cannot migrate to `{to}`: the backends are `s3` and `local`"
        )));
    }
    let now = core.blobs.kind();
    if now != to {
        return Err(DomainError::Conflict(format!(
            "the server stores new objects in `{now}`: restart it with --storage {to} (and the \
             --s3-* settings) first; it reads the other backend through until the move is done"
        )));
    }
    let (blobs, assets) = (core.blobs.clone(), core.assets.clone());
    let (b, a) = tokio::task::spawn_blocking(move || {
        let b = blobs.absorb_previous()?;
        let a = assets.absorb_previous()?;
        Ok::<_, std::io::Error>((b, a))
    })
    .await
    .map_err(DomainError::from)?
    .map_err(|e| DomainError::internal_from("moving objects into the bucket", e))?;
    match (b, a) {
        (Some(b), Some(a)) => Ok(StorageMigration {
            to: to.to_owned(),
            blobs: b.objects,
            blob_bytes: b.bytes,
            assets: a.objects,
            asset_bytes: a.bytes,
        }),
        _ => Err(DomainError::Conflict(
            "there is nothing to move from: to move back from a bucket, start the server with \
             --storage local and the bucket's --s3-* settings"
                .into(),
        )),
    }
}
