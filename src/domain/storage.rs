//! Moving a site's blob and asset bytes between backends while it serves
//! (`pfai storage migrate`).
//!
//! The switch is a restart: the operator starts the server with `--storage s3` on the same
//! data directory. From then on new objects go to the bucket, and every read of an object not
//! in the bucket yet falls through to the local file (the S3 backend reads its local
//! predecessor through). `migrate` then moves the local objects one by one — upload, re-hash
//! the bucket's copy, remove the local file — while the server keeps serving, so at no moment
//! is an object in neither place.

use crate::api::StorageMigration;
use crate::auth::Principal;
use crate::domain::{Core, DomainError, DomainResult};

/// Moves every local blob and asset into the bucket (site admins). Refused unless the server
/// runs with `--storage s3`; `to` must be `s3` (the way back is not built yet).
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
    if to != "s3" {
        return Err(DomainError::BadRequest(format!(
            "cannot migrate to `{to}`: only `--to s3` is supported"
        )));
    }
    let (blobs, assets) = (core.blobs.clone(), core.assets.clone());
    let (b, a) = tokio::task::spawn_blocking(move || {
        let b = blobs.absorb_local()?;
        let a = assets.absorb_local()?;
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
            "the server stores objects locally: restart it with --storage s3 and the --s3-* \
             settings first (it reads the local files through until they are moved)"
                .into(),
        )),
    }
}
