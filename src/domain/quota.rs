//! Storage quotas per owner: who may set and read them, and the checks that refuse an upload,
//! a blob push or a mount that would take an owner over its quota. The counters themselves live
//! in `storage::quota` and change with the rows they count.

use redb::WriteTransaction;

use crate::api::QuotaView;
use crate::auth::Principal;
use crate::domain::{account, Core, DomainError, DomainResult};
use crate::storage::{accounts, quota, Reads};

/// The refusal: names the quota, the usage and the size asked for.
fn exceeded(owner: &str, limit: u64, used: u64, extra: u64) -> DomainError {
    DomainError::QuotaExceeded(format!(
        "storage quota exceeded for {owner}: quota {limit} bytes ({}), {used} bytes ({}) used, \
         this needs {extra} bytes more",
        human(limit),
        human(used)
    ))
}

/// Bytes in binary units, for messages.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What an owner may still store, read once before a transfer so the stream can be cut as
/// soon as it passes the quota (the commit checks again).
#[derive(Debug, Clone)]
pub struct Budget {
    owner: String,
    limit: Option<u64>,
    used: u64,
}

impl Budget {
    /// The budget of `owner` now.
    pub async fn of(core: &Core, owner: &str) -> DomainResult<Budget> {
        let o = owner.to_owned();
        core.db.read(move |txn| Budget::read(txn, &o)).await
    }

    /// `of` inside a read transaction the caller goes on using (one trip to the blocking pool).
    pub fn read<R: Reads>(txn: &R, owner: &str) -> DomainResult<Budget> {
        Ok(Budget {
            owner: owner.to_owned(),
            limit: quota::limit(txn, owner)?,
            used: quota::usage(txn, owner)?,
        })
    }

    /// No limit: for a blob the owner already has, which costs nothing however many bytes
    /// are sent again.
    pub fn unlimited() -> Budget {
        Budget {
            owner: String::new(),
            limit: None,
            used: 0,
        }
    }

    /// The budget for sending the blob `digest` to `owner`: unlimited if the owner has it.
    pub async fn for_blob(core: &Core, owner: &str, digest: &str) -> DomainResult<Budget> {
        if blob_cost(core, owner, digest, 1).await? == 0 {
            return Ok(Budget::unlimited());
        }
        Budget::of(core, owner).await
    }

    /// Refuses when `extra` more bytes would pass the quota.
    pub fn admit(&self, extra: u64) -> DomainResult<()> {
        match self.limit {
            Some(l) if self.used.saturating_add(extra) > l => {
                Err(exceeded(&self.owner, l, self.used, extra))
            }
            _ => Ok(()),
        }
    }
}

/// Inside a write transaction: refuses when `extra` more bytes would take `owner` over its quota.
pub fn check_in(txn: &WriteTransaction, owner: &str, extra: u64) -> DomainResult<()> {
    if extra == 0 {
        return Ok(());
    }
    if let Some(l) = quota::limit(txn, owner)? {
        let used = quota::usage(txn, owner)?;
        if used.saturating_add(extra) > l {
            return Err(exceeded(owner, l, used, extra));
        }
    }
    Ok(())
}

/// Inside a write transaction: refuses linking `digest` (`size` bytes) into a repository of
/// `owner` if that would pass its quota; a blob the owner already has costs nothing.
pub fn check_blob_in(
    txn: &WriteTransaction,
    owner: &str,
    digest: &str,
    size: u64,
) -> DomainResult<()> {
    if quota::owner_has_blob(txn, owner, digest)? {
        return Ok(());
    }
    check_in(txn, owner, size)
}

/// The additional bytes linking `digest` (`size` bytes) would cost `owner` (0 if it has it).
pub async fn blob_cost(core: &Core, owner: &str, digest: &str, size: u64) -> DomainResult<u64> {
    let (o, d) = (owner.to_owned(), digest.to_owned());
    let has = core
        .db
        .read(move |txn| quota::owner_has_blob(txn, &o, &d).map_err(DomainError::from))
        .await?;
    Ok(if has { 0 } else { size })
}

fn view<R: Reads>(txn: &R, owner: &str) -> DomainResult<QuotaView> {
    Ok(QuotaView {
        owner: owner.to_owned(),
        limit_bytes: quota::limit(txn, owner)?,
        used_bytes: quota::usage(txn, owner)?,
    })
}

/// Sets (`Some`) or removes (`None`) the quota of `owner` (site admins only). Usage above a new
/// quota is allowed to stay; only new bytes are refused.
pub async fn set(
    core: &Core,
    who: Option<&Principal>,
    owner: &str,
    limit: Option<u64>,
) -> DomainResult<QuotaView> {
    let p = account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden(
            "only site admins can set storage quotas".into(),
        ));
    }
    let o = owner.to_owned();
    core.db
        .write(move |txn| {
            if !accounts::owner_exists(txn, &o)? {
                return Err(DomainError::NotFound(format!("no user or org named {o}")));
            }
            quota::set_limit(txn, &o, limit)?;
            view(txn, &o)
        })
        .await
}

/// The quota and usage of `owner`: visible to site admins, the user itself and the members of
/// the org.
pub async fn get(core: &Core, who: Option<&Principal>, owner: &str) -> DomainResult<QuotaView> {
    let p = account::require(who)?.clone();
    let o = owner.to_owned();
    core.db
        .read(move |txn| {
            if !accounts::owner_exists(txn, &o)? {
                return Err(DomainError::NotFound(format!("no user or org named {o}")));
            }
            let allowed =
                p.admin || p.username == o || accounts::org_role(txn, &o, &p.username)?.is_some();
            if !allowed {
                return Err(DomainError::NotFound(format!("no user or org named {o}")));
            }
            view(txn, &o)
        })
        .await
}

/// Every owner with a quota or usage (site admins only).
pub async fn list(core: &Core, who: Option<&Principal>) -> DomainResult<Vec<QuotaView>> {
    let p = account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden(
            "only site admins can list storage quotas".into(),
        ));
    }
    let rows = core.db.read(quota::all).await?;
    Ok(rows
        .into_iter()
        .map(|(owner, limit_bytes, used_bytes)| QuotaView {
            owner,
            limit_bytes,
            used_bytes,
        })
        .collect())
}
