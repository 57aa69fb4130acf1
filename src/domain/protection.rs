//! Tag-protection rules: globs over tag names, each with a target — git tags, registry tags or
//! both. A git tag that matches a git-target rule of its repository can only be deleted or moved
//! by an `admin`, on every path (REST, UI, git push, force push) — and by nobody when the rule
//! is `immutable`: such a tag can be created, then never moved or deleted. A registry tag (of
//! any image under the repository, `/v2/<owner>/<repo>/…`) that matches a registry-target rule
//! cannot be moved to another digest or deleted (by tag, or by deleting the manifest it points
//! to) except by an `admin` — and by nobody when the rule is `immutable`. When several rules
//! match a tag, an immutable one decides.
//!
//! Semantics (globset, `literal_separator` off): `*` matches any run of characters including
//! `/`, `?` one character, `[0-9]` a class, `{a,b}` alternatives; matching is case-sensitive and
//! anchored at both ends. So `v*` matches `v1`, `v1.2.3` and also `version2`; `v[0-9]*` does not
//! match `version2`.

pub use crate::api::{RuleTarget, RuleView};
use globset::{Glob, GlobMatcher};

use super::{Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::ids::{RepoPath, Role};
use crate::storage::records::ProtectionRule;
use crate::storage::rules::{self as store, Scope};
use crate::storage::Reads;
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

/// The compiled git-target rules of one repository.
pub struct RuleSet {
    rules: Vec<(String, GlobMatcher, bool)>,
}

/// One git-target rule as the pre-receive hook receives it (`PFAI_HOOK_RULES` is a JSON array
/// of these): a bare pattern is a mutable rule (the hand-over's first form), an object says
/// whether it is immutable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum HookRule {
    /// A pattern whose tags admins may still move and delete.
    Pattern(String),
    /// A pattern and whether no one, admins included, may move or delete its tags.
    Rule {
        /// The glob.
        pattern: String,
        /// No admin override.
        immutable: bool,
    },
}

impl RuleSet {
    /// Compiles mutable patterns (tests).
    #[cfg(test)]
    pub fn from_patterns<I, S>(patterns: I) -> DomainResult<RuleSet>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::from_hook_rules(patterns.into_iter().map(|p| HookRule::Pattern(p.into())))
    }

    /// Compiles the rules handed over to the pre-receive hook; an invalid pattern is an error.
    pub fn from_hook_rules<I: IntoIterator<Item = HookRule>>(rules: I) -> DomainResult<RuleSet> {
        let mut out = Vec::new();
        for r in rules {
            let (p, immutable) = match r {
                HookRule::Pattern(p) => (p, false),
                HookRule::Rule { pattern, immutable } => (pattern, immutable),
            };
            let m = compile(&p)?;
            out.push((p, m, immutable));
        }
        Ok(RuleSet { rules: out })
    }

    /// The rules in the form [`RuleSet::from_hook_rules`] takes back.
    pub fn hook_rules(&self) -> Vec<HookRule> {
        self.rules
            .iter()
            .map(|(p, _, immutable)| HookRule::Rule {
                pattern: p.clone(),
                immutable: *immutable,
            })
            .collect()
    }

    /// The rule protecting `tag`, preferring an immutable one (the stricter rule decides).
    pub fn hit(&self, tag: &str) -> Option<RuleHit<'_>> {
        let mut hits = self.rules.iter().filter(|(_, m, _)| m.is_match(tag));
        let first = hits.next()?;
        let pick = if first.2 {
            first
        } else {
            hits.find(|(_, _, imm)| *imm).unwrap_or(first)
        };
        Some(RuleHit {
            pattern: &pick.0,
            immutable: pick.2,
        })
    }

    /// Refuses (`Forbidden`, 403) `what` ("delete", "move") of git tag `tag` when a rule
    /// protects it: for everyone when the rule is immutable, else for callers below `admin`.
    pub fn check(&self, role: Role, tag: &str, what: &str) -> DomainResult<()> {
        match self.refusal(role, tag, what) {
            Some(m) => Err(DomainError::Forbidden(m)),
            None => Ok(()),
        }
    }

    /// The refusal message of [`RuleSet::check`], shared with the pre-receive hook.
    pub fn refusal(&self, role: Role, tag: &str, what: &str) -> Option<String> {
        let hit = self.hit(tag)?;
        if hit.immutable {
            return Some(format!(
                "tag {tag} is immutable (protection rule {:?}); nobody can {what} it, admins included",
                hit.pattern
            ));
        }
        (role < Role::Admin).then(|| {
            format!(
                "tag {tag} is protected by rule {:?}; only repository admins can {what} it",
                hit.pattern
            )
        })
    }
}

/// Loads a repository's git-target rules (what git tags and the pre-receive hook obey). A stored
/// pattern that no longer compiles protects nothing (patterns are checked when a rule is
/// created).
pub async fn rules(core: &Core, repo: &RepoPath) -> DomainResult<RuleSet> {
    let repo = repo.clone();
    let stored = core.db.read(move |txn| store::of_repo(txn, &repo)).await?;
    let rules = stored
        .into_iter()
        .filter(|(_, s)| s.git)
        .filter_map(|(r, s)| {
            compile(&r.pattern)
                .ok()
                .map(|m| (r.pattern, m, s.immutable))
        })
        .collect();
    Ok(RuleSet { rules })
}

/// The registry-target rules of one repository, read inside the caller's transaction so a
/// manifest push or delete is judged against the rules of the state it changes.
pub struct RegistryRules {
    rules: Vec<(String, GlobMatcher, bool)>,
}

/// A rule that protects a (registry or git) tag: its pattern and whether it is immutable.
pub struct RuleHit<'a> {
    /// The matching pattern (named in refusals).
    pub pattern: &'a str,
    /// No admin override.
    pub immutable: bool,
}

impl RegistryRules {
    /// Loads `repo`'s registry-target rules within `txn`.
    pub fn load<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<RegistryRules> {
        let rules = store::of_repo(txn, repo)?
            .into_iter()
            .filter(|(_, s)| s.registry)
            .filter_map(|(r, s)| {
                compile(&r.pattern)
                    .ok()
                    .map(|m| (r.pattern, m, s.immutable))
            })
            .collect();
        Ok(RegistryRules { rules })
    }

    /// The rule protecting registry tag `tag`, preferring an immutable one (the stricter rule
    /// decides).
    pub fn protecting(&self, tag: &str) -> Option<RuleHit<'_>> {
        let mut hits = self.rules.iter().filter(|(_, m, _)| m.is_match(tag));
        let first = hits.next()?;
        let pick = if first.2 {
            first
        } else {
            hits.find(|(_, _, imm)| *imm).unwrap_or(first)
        };
        Some(RuleHit {
            pattern: &pick.0,
            immutable: pick.2,
        })
    }

    /// Refuses (`Forbidden`, OCI `DENIED` 403) `what` — moving or deleting registry tag `tag` of
    /// image `image` — when a rule protects it: for everyone when the rule is immutable, else
    /// for callers below `admin`.
    pub fn check(&self, role: Role, image: &str, tag: &str, what: &str) -> DomainResult<()> {
        let Some(hit) = self.protecting(tag) else {
            return Ok(());
        };
        if hit.immutable {
            return Err(DomainError::Forbidden(format!(
                "tag {image}:{tag} is immutable (protection rule {:?}); nobody can {what} it",
                hit.pattern
            )));
        }
        if role < Role::Admin {
            return Err(DomainError::Forbidden(format!(
                "tag {image}:{tag} is protected by rule {:?}; only repository admins can {what} it",
                hit.pattern
            )));
        }
        Ok(())
    }
}

fn target_of(s: Scope) -> RuleTarget {
    match (s.git, s.registry) {
        (true, true) => RuleTarget::Both,
        (false, true) => RuleTarget::Registry,
        _ => RuleTarget::Git,
    }
}

fn view(r: ProtectionRule, s: Scope) -> RuleView {
    RuleView {
        id: r.id,
        pattern: r.pattern,
        created_by: r.created_by,
        created_at: rfc3339(r.created_at),
        target: target_of(s),
        immutable: s.immutable,
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
    Ok(rules.into_iter().map(|(r, s)| view(r, s)).collect())
}

/// Adds a rule (admin) for `target`. A duplicate pattern is a conflict. `immutable` removes the
/// admin override for every target the rule has.
pub async fn create(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    pattern: &str,
    target: RuleTarget,
    immutable: bool,
) -> DomainResult<RuleView> {
    core.repo_access(who, repo, Role::Admin).await?;
    compile(pattern)?;
    let scope = Scope {
        git: target.git(),
        registry: target.registry(),
        immutable,
    };
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
            if existing.iter().any(|(r, _)| r.pattern == pattern) {
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
            store::insert(txn, &rule, scope)?;
            Ok(view(rule, scope))
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
        assert!(s.hit("v1.2.3").is_some());
        assert!(s.hit("version2").is_some(), "v* also matches version2");
        assert!(s.hit("release-1").is_none());
        assert!(s.hit("V1").is_none(), "case-sensitive");
        assert!(s.hit("xv1").is_none(), "anchored");
        let s = set(&["v[0-9]*"]);
        assert!(s.hit("v2").is_some());
        assert!(s.hit("version2").is_none());
        let s = set(&["release-*"]);
        assert!(s.hit("release-2024/x").is_some(), "* crosses /");
        assert!(compile("").is_err());
        assert!(compile("a[").is_err());
    }
}

#[cfg(test)]
mod immutable_git_rules {
    use super::*;

    fn rule(pattern: &str, immutable: bool) -> HookRule {
        HookRule::Rule {
            pattern: pattern.into(),
            immutable,
        }
    }

    #[test]
    fn an_immutable_git_rule_refuses_admins_and_the_stricter_rule_decides() {
        let s = RuleSet::from_hook_rules([rule("v*", false), rule("v1*", true)]).unwrap();
        assert!(s.check(Role::Admin, "v2", "delete").is_ok());
        assert!(s.check(Role::Write, "v2", "delete").is_err());
        let e = s
            .check(Role::Admin, "v1.0", "move")
            .unwrap_err()
            .to_string();
        assert!(e.contains("immutable") && e.contains("\"v1*\""), "{e}");
        assert!(s.check(Role::Admin, "x", "delete").is_ok());
        // The hand-over round-trips, and a bare pattern (the first form) is mutable.
        let json = serde_json::to_string(&s.hook_rules()).unwrap();
        let back: Vec<HookRule> = serde_json::from_str(&json).unwrap();
        let t = RuleSet::from_hook_rules(back).unwrap();
        assert!(t.check(Role::Admin, "v1.0", "delete").is_err());
        let bare: Vec<HookRule> = serde_json::from_str(r#"["v*"]"#).unwrap();
        let u = RuleSet::from_hook_rules(bare).unwrap();
        assert!(u.check(Role::Admin, "v1", "delete").is_ok());
    }
}
