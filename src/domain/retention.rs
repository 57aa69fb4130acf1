//! Registry retention: per repository, which tags and untagged manifests of its images GC
//! removes. The rules (Harbor's and zot's, minus what surprised their users):
//! - a tag matched by a keep rule stays while it is among that rule's `newest` tags of its image,
//!   newest by the push time of the manifest it points at (ties: the greater tag name); a tag
//!   matched by several rules stays if any keeps it; a tag no rule matches is never touched;
//! - a tag matching one of the repository's registry-target tag-protection rules is never
//!   touched;
//! - an untagged manifest pushed longer ago than `untagged_older_than` goes, unless an index of
//!   the image lists it (delete the index first: its children go in a later run) or it is a
//!   referrer (signature, SBOM) of a manifest still stored.
//!
//! GC applies the policies in the transaction that then finds unreferenced blobs, so blobs held
//! only by what retention removed go in the same run once past the grace period.

use std::collections::HashSet;

use globset::GlobMatcher;

use super::{protection, Core, DomainError, DomainResult};
pub use crate::api::{KeepSpec, RetentionAction, RetentionSpec, RetentionView};
use crate::auth::Principal;
use crate::ids::{OciName, RepoPath, Role};
use crate::storage::records::{KeepRule, RetentionPolicy};
use crate::storage::{manifests, retention as store, rules, Reads};
use crate::util::{now_unix, rfc3339};
use redb::WriteTransaction;

/// Most keep rules one policy may have.
pub const MAX_KEEP_RULES: usize = 20;

fn view(p: RetentionPolicy) -> RetentionView {
    RetentionView {
        keep: p
            .keep
            .into_iter()
            .map(|k| KeepSpec {
                pattern: k.pattern,
                newest: k.newest,
            })
            .collect(),
        untagged_older_than_seconds: p.untagged_older_than_secs,
        updated_by: p.updated_by,
        updated_at: rfc3339(p.updated_at),
    }
}

/// The policy of a repository (readers of the repository may see it); 404 when it has none.
pub async fn get(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<RetentionView> {
    core.repo_access(who, repo, Role::Read).await?;
    let r = repo.clone();
    match core.db.read(move |txn| store::get(txn, &r)).await? {
        Some(p) => Ok(view(p)),
        None => Err(DomainError::NotFound(format!(
            "{repo} has no retention policy"
        ))),
    }
}

/// Sets a repository's policy (repository admins).
pub async fn set(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    spec: RetentionSpec,
) -> DomainResult<RetentionView> {
    core.repo_access(who, repo, Role::Admin).await?;
    if spec.keep.len() > MAX_KEEP_RULES {
        return Err(DomainError::Invalid(format!(
            "at most {MAX_KEEP_RULES} keep rules"
        )));
    }
    for k in &spec.keep {
        protection::compile(&k.pattern)?;
    }
    let policy = RetentionPolicy {
        keep: spec
            .keep
            .into_iter()
            .map(|k| KeepRule {
                pattern: k.pattern,
                newest: k.newest,
            })
            .collect(),
        untagged_older_than_secs: spec.untagged_older_than_seconds,
        updated_by: who.map(|p| p.username.clone()).unwrap_or_default(),
        updated_at: now_unix(),
    };
    let (r, p) = (repo.clone(), policy.clone());
    core.db
        .write(move |txn| Ok::<_, DomainError>(store::put(txn, &r, &p)?))
        .await?;
    Ok(view(policy))
}

/// Removes a repository's policy (repository admins); 404 when it had none.
pub async fn clear(core: &Core, who: Option<&Principal>, repo: &RepoPath) -> DomainResult<()> {
    core.repo_access(who, repo, Role::Admin).await?;
    let r = repo.clone();
    let removed = core
        .db
        .write(move |txn| Ok::<_, DomainError>(store::remove(txn, &r)?))
        .await?;
    if removed {
        Ok(())
    } else {
        Err(DomainError::NotFound(format!(
            "{repo} has no retention policy"
        )))
    }
}

/// What every policy would remove now (GC applies it; a dry run reports it).
pub(crate) fn plan<R: Reads>(txn: &R, now: i64) -> DomainResult<Vec<RetentionAction>> {
    let mut out = Vec::new();
    for (key, policy) in store::all(txn)? {
        let Ok(repo) = RepoPath::parse_key(&key) else {
            continue;
        };
        let protected: Vec<GlobMatcher> = rules::of_repo(txn, &repo)?
            .into_iter()
            .filter(|(_, scope)| scope.registry)
            .filter_map(|(r, _)| protection::compile(&r.pattern).ok())
            .collect();
        let keep: Vec<(&KeepRule, GlobMatcher)> = policy
            .keep
            .iter()
            .filter_map(|k| protection::compile(&k.pattern).ok().map(|m| (k, m)))
            .collect();
        for name in manifests::names_of_repo(txn, &repo)? {
            let Ok(name) = OciName::parse(&name) else {
                continue;
            };
            plan_image(txn, &name, &policy, &keep, &protected, now, &mut out)?;
        }
    }
    Ok(out)
}

fn plan_image<R: Reads>(
    txn: &R,
    name: &OciName,
    policy: &RetentionPolicy,
    keep: &[(&KeepRule, GlobMatcher)],
    protected: &[GlobMatcher],
    now: i64,
    out: &mut Vec<RetentionAction>,
) -> DomainResult<()> {
    let tags = manifests::tags_with_manifests(txn, name)?;
    let unprotected = |tag: &str| !protected.iter().any(|m| m.is_match(tag));
    let mut kept: HashSet<&str> = HashSet::new();
    let mut matched: HashSet<&str> = HashSet::new();
    for (rule, m) in keep {
        let mut hits: Vec<&(String, String, crate::storage::records::ManifestMeta)> = tags
            .iter()
            .filter(|(t, _, _)| m.is_match(t) && unprotected(t))
            .collect();
        hits.sort_by(|a, b| b.2.pushed_at.cmp(&a.2.pushed_at).then(b.0.cmp(&a.0)));
        for (i, (t, _, _)) in hits.iter().enumerate() {
            matched.insert(t);
            if i < rule.newest as usize {
                kept.insert(t);
            }
        }
    }
    let mut still_tagged: HashSet<&str> = HashSet::new();
    for (tag, digest, _) in &tags {
        if matched.contains(tag.as_str()) && !kept.contains(tag.as_str()) {
            out.push(RetentionAction {
                name: name.to_string(),
                tag: Some(tag.clone()),
                digest: digest.clone(),
                reason: "not among the newest tags a keep rule keeps".into(),
            });
        } else {
            still_tagged.insert(digest);
        }
    }
    let Some(age) = policy.untagged_older_than_secs else {
        return Ok(());
    };
    let age = i64::try_from(age).unwrap_or(i64::MAX);
    for (digest, m) in manifests::all_of(txn, name)? {
        if still_tagged.contains(digest.as_str())
            || now.saturating_sub(m.pushed_at) < age
            || manifests::listed_by_indexes(txn, name, &digest)? > 0
        {
            continue;
        }
        if let Some(subject) = &m.subject {
            if manifests::exists(txn, name, subject)? {
                continue;
            }
        }
        out.push(RetentionAction {
            name: name.to_string(),
            tag: None,
            digest,
            reason: format!("untagged for longer than {age} s"),
        });
    }
    Ok(())
}

/// Applies a plan made in the same transaction.
pub(crate) fn apply(txn: &WriteTransaction, plan: &[RetentionAction]) -> DomainResult<()> {
    for a in plan {
        let Ok(name) = OciName::parse(&a.name) else {
            continue;
        };
        match &a.tag {
            Some(tag) => {
                manifests::remove_tag(txn, &name, tag)?;
            }
            None => {
                if manifests::listed_by_indexes(txn, &name, &a.digest)? == 0 {
                    manifests::remove(txn, &name, &a.digest)?;
                }
            }
        }
    }
    Ok(())
}
