//! Which release is a repository's Latest. An explicit choice (`makeLatest: "true"`, the default
//! for a newly published release, like GitHub) is kept in LATEST_RELEASE; without one — or when
//! the chosen release can no longer be Latest (deleted, turned into a draft or a pre-release) —
//! Latest is computed: the highest tag in semver-aware order among published non-prereleases,
//! so backfilling an old version never takes Latest from a newer one.

use std::cmp::Ordering;

use redb::WriteTransaction;

use super::{DomainError, DomainResult};
pub use crate::api::MakeLatest;
use crate::ids::RepoPath;
use crate::storage::records::Release;
use crate::storage::{releases, Reads};

/// Whether a release may be Latest at all: published, not a draft, not a pre-release.
pub fn is_candidate(r: &Release) -> bool {
    !r.draft && !r.prerelease && r.published_at.is_some()
}

/// A tag's version when it reads as one: `v`/`V` prefix optional, dot-separated numbers, then
/// an optional `-pre-release` (sorts below the plain version) and `+build` (ignored).
fn version_of(tag: &str) -> Option<(Vec<u64>, Option<&str>)> {
    let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let t = t.split_once('+').map_or(t, |(v, _)| v);
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let nums = core
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<u64>().ok()
            }
        })
        .collect::<Option<Vec<u64>>>()?;
    Some((nums, pre))
}

/// Orders tags by version (`v1.10.0` > `v1.9.2`, `v2.0.0` > `v2.0.0-rc.1`, `1.2` = `1.2.0`);
/// a tag that reads as a version sorts above one that does not; two that do not are equal
/// (callers break ties by publication).
pub fn cmp_tags(a: &str, b: &str) -> Ordering {
    match (version_of(a), version_of(b)) {
        (Some((x, xp)), Some((y, yp))) => {
            let len = x.len().max(y.len());
            for i in 0..len {
                let (p, q) = (
                    x.get(i).copied().unwrap_or(0),
                    y.get(i).copied().unwrap_or(0),
                );
                match p.cmp(&q) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            match (xp, yp) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(p), Some(q)) => p.cmp(q),
            }
        }
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// The computed ("legacy") Latest among `published`: the highest tag by `cmp_tags`, then the
/// newest publication, then the newest id.
pub fn pick_legacy<'a>(published: impl IntoIterator<Item = &'a Release>) -> Option<&'a Release> {
    published
        .into_iter()
        .filter(|r| is_candidate(r))
        .max_by(|a, b| {
            cmp_tags(&a.tag_name, &b.tag_name)
                .then(a.published_at.cmp(&b.published_at))
                .then(a.id.cmp(&b.id))
        })
}

/// The repository's Latest release: the explicit one while it can be Latest, else computed.
pub fn latest_txn<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<Option<Release>> {
    match releases::latest_pointer(txn, repo)? {
        Some(0) => return Ok(None),
        Some(id) => {
            if let Some(r) = releases::get(txn, id)? {
                if r.repo == repo.key() && is_candidate(&r) {
                    return Ok(Some(r));
                }
            }
        }
        None => {}
    }
    let published = releases::published(txn, repo)?;
    Ok(pick_legacy(&published).cloned())
}

/// Refuses an explicit `makeLatest: "true"` for a release that cannot be Latest, before
/// anything is changed.
pub fn check(choice: Option<MakeLatest>, prerelease: bool) -> DomainResult<()> {
    if choice == Some(MakeLatest::True) && prerelease {
        return Err(DomainError::Invalid(
            "a pre-release cannot be Latest; drop makeLatest or the pre-release flag".into(),
        ));
    }
    Ok(())
}

/// Applies `makeLatest` for `r` (as stored after the change) inside its transaction. Absent,
/// it means `"true"` when this change published the release and nothing otherwise; a draft's
/// Latest is decided when it is published.
pub fn apply(
    txn: &WriteTransaction,
    repo: &RepoPath,
    r: &Release,
    choice: Option<MakeLatest>,
    newly_published: bool,
) -> DomainResult<()> {
    let choice = match choice {
        Some(c) => c,
        None if newly_published => MakeLatest::True,
        None => return Ok(()),
    };
    if r.draft {
        return Ok(());
    }
    match choice {
        MakeLatest::True => {
            if is_candidate(r) {
                releases::set_latest_pointer(txn, repo, r.id)?;
            }
        }
        MakeLatest::False => {
            // Pin what is Latest without this release, so that it cannot become Latest by
            // the computed order either.
            let keep = match latest_txn(txn, repo)? {
                Some(l) if l.id != r.id => Some(l),
                _ => {
                    let published = releases::published(txn, repo)?;
                    pick_legacy(published.iter().filter(|p| p.id != r.id)).cloned()
                }
            };
            releases::set_latest_pointer(txn, repo, keep.map_or(0, |l| l.id))?;
        }
        MakeLatest::Legacy => releases::clear_latest_pointer(txn, repo)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(id: u64, tag: &str, published_at: i64, prerelease: bool) -> Release {
        Release {
            id,
            repo: "o/r".into(),
            tag_name: tag.into(),
            name: tag.into(),
            body: String::new(),
            draft: false,
            prerelease,
            author: "u".into(),
            target_commit: String::new(),
            commit_sha: String::new(),
            created_at: 0,
            published_at: Some(published_at),
        }
    }

    #[test]
    fn version_order_is_numeric_not_lexical() {
        assert_eq!(cmp_tags("v1.10.0", "v1.9.2"), Ordering::Greater);
        assert_eq!(cmp_tags("v2.0.0", "v2.0.0-rc.1"), Ordering::Greater);
        assert_eq!(cmp_tags("1.2", "v1.2.0"), Ordering::Equal);
        assert_eq!(cmp_tags("v0.9.0", "nightly"), Ordering::Greater);
        assert_eq!(cmp_tags("v1.0.0+build.5", "v1.0.0"), Ordering::Equal);
        assert_eq!(cmp_tags("release-a", "release-b"), Ordering::Equal);
    }

    #[test]
    fn backfilled_old_version_does_not_win_the_computed_latest() {
        let all = [
            rel(1, "v2.0.0", 10, false),
            rel(2, "v0.9.0", 20, false),
            rel(3, "v3.0.0-beta", 30, true),
        ];
        assert_eq!(pick_legacy(&all).map(|r| r.id), Some(1));
        let odd = [rel(1, "alpha", 10, false), rel(2, "beta", 20, false)];
        assert_eq!(
            pick_legacy(&odd).map(|r| r.id),
            Some(2),
            "non-version tags fall back to the newest publication"
        );
    }
}
