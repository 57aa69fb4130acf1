//! Tag-protection rules: globs over tag names. A tag that matches any rule of its repository can
//! only be deleted or moved by an `admin`, on every path (REST, git push, force push).
//!
//! Semantics (globset, `literal_separator` off): `*` matches any run of characters including
//! `/`, `?` one character, `[0-9]` a class, `{a,b}` alternatives; matching is case-sensitive and
//! anchored at both ends. So `v*` matches `v1`, `v1.2.3` and also `version2`; `v[0-9]*` does not
//! match `version2`.

pub use crate::api::RuleView;
use globset::{Glob, GlobMatcher};

use super::{Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::ids::{RepoPath, Role};
use crate::storage::records::ProtectionRule;
use crate::storage::rules as store;
use crate::util::{now_unix, rfc3339};

/// Compiles a pattern, refusing empty or oversized ones.
pub fn compile(pattern: &str) -> DomainResult<GlobMatcher> {
    if pattern.is_empty() || pattern.len() > 255 || pattern.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "pattern must be 1 to 255 printable characters".into(),
        ));
    }
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| DomainError::Invalid(format!("invalid glob: {e}")))
}

/// Most rules one repository may have. The set travels to the pre-receive hook in one
/// environment variable, which Linux caps at 128 KiB; 100 patterns of 255 bytes stay far below.
pub const MAX_RULES_PER_REPO: usize = 100;

/// The compiled rules of one repository.
pub struct RuleSet {
    rules: Vec<(String, GlobMatcher)>,
}

impl RuleSet {
    /// Compiles patterns handed over as text (the pre-receive hook's input). Unlike loading
    /// from the database, an invalid pattern is an error: the caller must refuse, not guess.
    pub fn from_patterns<I, S>(patterns: I) -> DomainResult<RuleSet>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut rules = Vec::new();
        for p in patterns {
            let p = p.into();
            let m = compile(&p)?;
            rules.push((p, m));
        }
        Ok(RuleSet { rules })
    }

    /// The patterns, in rule order (what `from_patterns` takes back).
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(p, _)| p.as_str())
    }

    /// The first pattern protecting `tag`, if any.
    pub fn protecting(&self, tag: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(_, m)| m.is_match(tag))
            .map(|(p, _)| p.as_str())
    }
}

/// Loads a repository's rules. A stored pattern that no longer compiles protects nothing
/// (patterns are checked when a rule is created).
pub async fn rules(core: &Core, repo: &RepoPath) -> DomainResult<RuleSet> {
    let repo = repo.clone();
    let stored = core.db.read(move |txn| store::of_repo(txn, &repo)).await?;
    let rules = stored
        .into_iter()
        .filter_map(|r| compile(&r.pattern).ok().map(|m| (r.pattern, m)))
        .collect();
    Ok(RuleSet { rules })
}

impl From<ProtectionRule> for RuleView {
    fn from(r: ProtectionRule) -> Self {
        RuleView {
            id: r.id,
            pattern: r.pattern,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Lists the rules (readable by anyone who can read the repository).
pub async fn list(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<Vec<RuleView>> {
    core.repo_access(who, repo, Role::Read).await?;
    let repo = repo.clone();
    let rules = core.db.read(move |txn| store::of_repo(txn, &repo)).await?;
    Ok(rules.into_iter().map(RuleView::from).collect())
}

/// Adds a rule (admin). A duplicate pattern is a conflict.
pub async fn create(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    pattern: &str,
) -> DomainResult<RuleView> {
    core.repo_access(who, repo, Role::Admin).await?;
    compile(pattern)?;
    let repo = repo.clone();
    let pattern = pattern.to_owned();
    let by = who.map(|p| p.username.clone()).unwrap_or_default();
    core.db
        .write(move |txn| {
            let existing = store::of_repo(txn, &repo)?;
            if existing.len() >= MAX_RULES_PER_REPO {
                return Err(DomainError::Invalid(format!(
                    "a repository can have at most {MAX_RULES_PER_REPO} tag-protection rules"
                )));
            }
            if existing.iter().any(|r| r.pattern == pattern) {
                return Err(DomainError::Conflict(format!(
                    "rule {pattern:?} already exists"
                )));
            }
            let rule = ProtectionRule {
                id: store::next_id(txn)?,
                repo: repo.key(),
                pattern,
                created_by: by,
                created_at: now_unix(),
            };
            store::insert(txn, &rule)?;
            Ok(RuleView::from(rule))
        })
        .await
}

/// Removes a rule (admin). The id must belong to this repository.
pub async fn delete(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    id: u64,
) -> DomainResult<()> {
    core.repo_access(who, repo, Role::Admin).await?;
    let repo = repo.clone();
    core.db
        .write(move |txn| {
            if store::remove(txn, &repo, id)? {
                Ok(())
            } else {
                Err(DomainError::NotFound(format!("rule {id} not found")))
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> RuleSet {
        RuleSet::from_patterns(patterns.iter().copied()).unwrap()
    }

    #[test]
    fn documented_semantics() {
        let s = set(&["v*"]);
        assert!(s.protecting("v1.2.3").is_some());
        assert!(
            s.protecting("version2").is_some(),
            "v* also matches version2"
        );
        assert!(s.protecting("release-1").is_none());
        assert!(s.protecting("V1").is_none(), "case-sensitive");
        assert!(s.protecting("xv1").is_none(), "anchored");
        let s = set(&["v[0-9]*"]);
        assert!(s.protecting("v2").is_some());
        assert!(s.protecting("version2").is_none());
        let s = set(&["release-*"]);
        assert!(s.protecting("release-2024/x").is_some(), "* crosses /");
        assert!(compile("").is_err());
        assert!(compile("a[").is_err());
    }
}
