//! Git tags through the API: listing, creating (lightweight or annotated) and deleting, the last
//! gated by tag protection. Also the decision about pushes that touch protected tags.

pub use crate::api::{TagView, TaggerView};

use super::{protection, Core, DomainError, DomainResult, Page, Paged};
use crate::auth::Principal;
use crate::git::http_backend::RefUpdate;
use crate::git::revs::ShortSha;
use crate::git::TagInfo;
use crate::ids::{GitTagName, RepoPath, Role};
use crate::util::rfc3339;

fn view(t: TagInfo, rules: &protection::RuleSet) -> TagView {
    let hit = rules.hit(&t.name);
    TagView {
        protected: hit.is_some(),
        immutable: hit.is_some_and(|h| h.immutable),
        name: t.name,
        commit: t.commit_sha,
        id: t.ref_target,
        message: t.message,
        tagger: t.tagger.map(|g| TaggerView {
            name: g.name,
            email: g.email,
            date: rfc3339(g.time),
        }),
    }
}

/// Lists tags, newest name last (sorted by name), paginated.
pub async fn list(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    page: Page,
) -> DomainResult<Paged<TagView>> {
    core.repo_access(who, repo, Role::Read).await?;
    let rules = protection::rules(core, repo).await?;
    let r = repo.clone();
    let tags = core.git(move |g| g.list_tags(&r)).await?;
    let all: Vec<TagView> = tags.into_iter().map(|t| view(t, &rules)).collect();
    Ok(Paged::from_vec(all, page))
}

/// Branch names of a repository (read), for choosing where a new tag goes.
pub async fn branches(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<Vec<String>> {
    core.repo_access(who, repo, Role::Read).await?;
    let r = repo.clone();
    core.git(move |g| g.list_branches(&r)).await
}

/// Reads one tag.
pub async fn get(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
) -> DomainResult<TagView> {
    core.repo_access(who, repo, Role::Read).await?;
    let name = GitTagName::parse(tag)
        .map_err(|_| DomainError::NotFound(format!("tag {tag} not found")))?;
    let rules = protection::rules(core, repo).await?;
    let r = repo.clone();
    let n2 = name.clone();
    core.git(move |g| g.find_tag(&r, &n2))
        .await?
        .map(|t| view(t, &rules))
        .ok_or_else(|| DomainError::NotFound(format!("tag {name} not found")))
}

/// Resolves a branch, tag or full SHA to a commit, 422 when it does not resolve to a commit.
pub async fn resolve_target(core: &Core, repo: &RepoPath, target: &str) -> DomainResult<String> {
    let t = target.trim().to_owned();
    if t.is_empty() || t.starts_with('-') || t.len() > 255 {
        return Err(DomainError::Invalid(format!(
            "target {target:?} is not a branch or commit"
        )));
    }
    let r = repo.clone();
    let t2 = t.clone();
    if let Some(c) = core.git(move |g| g.resolve_commit(&r, &t2)).await? {
        return Ok(c);
    }
    // Not a branch, tag or full SHA: an abbreviated SHA, when it names exactly one commit.
    let (r, t2) = (repo.clone(), t.clone());
    match core.git(move |g| g.resolve_short_sha(&r, &t2)).await? {
        ShortSha::One(c) => Ok(c),
        ShortSha::Ambiguous => Err(DomainError::Invalid(format!(
            "target {t:?} is an ambiguous short SHA in {repo}: give more of its digits"
        ))),
        ShortSha::None => Err(DomainError::Invalid(format!(
            "target {t:?} does not resolve to a commit in {repo} (give a branch name or a commit SHA)"
        ))),
    }
}

/// The repository's default branch (what its `HEAD` names), when it has a commit.
pub async fn default_branch(core: &Core, repo: &RepoPath) -> DomainResult<Option<String>> {
    let r = repo.clone();
    core.git(move |g| g.default_branch(&r)).await
}

/// Creates a tag at `target` (write). Annotated when `message` is given. 409 if it exists.
pub async fn create(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    target: &str,
    message: Option<&str>,
) -> DomainResult<TagView> {
    core.repo_access(who, repo, Role::Write).await?;
    let name = GitTagName::parse(tag)?;
    super::immutable::check_tag(core, repo, name.as_str(), "reused").await?;
    let commit = resolve_target(core, repo, target).await?;
    create_at(core, who, repo, &name, &commit, message).await?;
    get(core, who, repo, name.as_str()).await
}

/// Creates a tag at a resolved commit, without access checks (callers have checked `write`).
pub async fn create_at(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    name: &GitTagName,
    commit: &str,
    message: Option<&str>,
) -> DomainResult<()> {
    let tagger = who
        .map(|p| p.username.clone())
        .unwrap_or_else(|| "pfai".into());
    let email = format!("{tagger}@pfai.invalid");
    let (r, n, c, m) = (
        repo.clone(),
        name.clone(),
        commit.to_owned(),
        message.map(str::to_owned),
    );
    core.git(move |g| g.create_tag(&r, &n, &c, m.as_deref(), (&tagger, &email)))
        .await
}

/// Deletes a tag. Protected tags need `admin`; others `write`. Releases anchored on it stay.
pub async fn delete(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
) -> DomainResult<()> {
    let (_, role) = core.repo_access(who, repo, Role::Write).await?;
    let name = GitTagName::parse(tag)
        .map_err(|_| DomainError::NotFound(format!("tag {tag} not found")))?;
    // No role deletes the tag of an immutable release.
    super::immutable::check_tag(core, repo, name.as_str(), "deleted").await?;
    protection::rules(core, repo)
        .await?
        .check(role, name.as_str(), "delete")?;
    let (r, n) = (repo.clone(), name.clone());
    let info = core
        .git(move |g| g.find_tag(&r, &n))
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("tag {name} not found")))?;
    let (r, n) = (repo.clone(), name.clone());
    core.git(move |g| g.delete_tag(&r, &n, &info.ref_target))
        .await
}

/// The null object id of either hash (git writes 40 or 64 zeros for "no ref").
fn is_zero(oid: &str) -> bool {
    !oid.is_empty() && oid.bytes().all(|b| b == b'0')
}

/// Judges the ref updates of a push: `Some(message)` refuses the whole push. A `write` user may
/// create protected tags but not delete or move them; an `admin` may, except tags of immutable
/// rules, which nobody moves or deletes.
pub fn judge_push(
    rules: &protection::RuleSet,
    role: Role,
    updates: &[RefUpdate],
) -> Option<String> {
    for u in updates {
        let Some(tag) = u.name.strip_prefix("refs/tags/") else {
            continue;
        };
        // Only a real creation (no old value, a new one) is free. A zero new value deletes
        // whatever `old` claims: git deletes a ref whose claimed old value is the null id
        // without comparing ("allowing deletion of corrupt ref").
        if is_zero(&u.old) && !is_zero(&u.new) {
            continue;
        }
        let what = if is_zero(&u.new) { "delete" } else { "move" };
        if let Some(m) = rules.refusal(role, tag, what) {
            return Some(format!("pfai: refusing the whole push: {m}"));
        }
    }
    None
}

/// What the pre-receive hook is given: the server's hand-over (role, protection patterns) from
/// the environment, git's push-certificate marker, and the updates git will apply (stdin).
#[derive(Debug, Default)]
pub struct HookInput<'a> {
    /// The pusher's role (`PFAI_HOOK_ROLE`).
    pub role: Option<&'a str>,
    /// The git-target rules as a JSON array of `protection::HookRule` (`PFAI_HOOK_RULES`).
    pub rules_json: Option<&'a str>,
    /// `GIT_PUSH_CERT`: non-empty when the push carried a certificate.
    pub push_cert: Option<&'a str>,
    /// Standard input: one `old new ref` line per update.
    pub updates: &'a str,
    /// The tombstoned tag names as a JSON array (`PFAI_HOOK_IMMUTABLE`).
    pub immutable_json: Option<&'a str>,
}

/// The pre-receive decision: `Err(message)` refuses the whole push and the message reaches the
/// client as `remote:` lines. Anything the hook cannot read is a refusal, never a pass: a missing
/// hand-over, a pattern that does not compile, a line that is not an update.
pub fn pre_receive(input: &HookInput<'_>) -> Result<(), String> {
    const PREFIX: &str = "pfai: refusing the whole push:";
    if input.push_cert.is_some_and(|c| !c.is_empty()) {
        return Err(format!(
            "{PREFIX} signed pushes (push certificates) are not accepted; this server does not verify them. Push without --signed"
        ));
    }
    let (Some(role), Some(rules_json), Some(immutable_json)) =
        (input.role, input.rules_json, input.immutable_json)
    else {
        return Err(format!("{PREFIX} it did not come through the pfai server"));
    };
    let role = Role::parse(role).map_err(|_| format!("{PREFIX} unknown role {role:?}"))?;
    let hand_over: Vec<protection::HookRule> = serde_json::from_str(rules_json)
        .map_err(|e| format!("{PREFIX} cannot read the protection rules: {e}"))?;
    let rules = protection::RuleSet::from_hook_rules(hand_over)
        .map_err(|e| format!("{PREFIX} cannot read the protection rules: {e}"))?;
    let mut updates = Vec::new();
    for line in input.updates.lines().filter(|l| !l.is_empty()) {
        updates.push(
            RefUpdate::parse(line)
                .ok_or_else(|| format!("{PREFIX} unrecognised ref update {line:?}"))?,
        );
    }
    let locked: std::collections::HashSet<String> = serde_json::from_str(immutable_json)
        .map_err(|e| format!("{PREFIX} cannot read the immutable release tags: {e}"))?;
    if let Some(msg) = super::immutable::judge_push("this repository", &locked, &updates) {
        return Err(msg);
    }
    match judge_push(&rules, role, &updates) {
        Some(msg) => Err(msg),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(role: &'a str, updates: &'a str) -> HookInput<'a> {
        HookInput {
            role: Some(role),
            rules_json: Some(r#"["v*"]"#),
            push_cert: None,
            updates,
            immutable_json: Some("[]"),
        }
    }

    #[test]
    fn hook_refuses_what_it_cannot_read_and_protected_changes_by_writers() {
        let (a, b, z) = ("a".repeat(40), "b".repeat(40), "0".repeat(40));
        let delete = format!("{a} {z} refs/tags/v1\n");
        let moved = format!("{a} {b} refs/tags/v1\n");
        let create = format!("{z} {a} refs/tags/v2\n{a} {b} refs/heads/main\n");
        assert!(pre_receive(&input("write", &delete)).is_err());
        assert!(pre_receive(&input("write", &moved)).is_err());
        assert!(pre_receive(&input("write", &create)).is_ok());
        assert!(pre_receive(&input("admin", &delete)).is_ok());
        // A delete that claims the tag did not exist is still a delete.
        let null_delete = format!("{z} {z} refs/tags/v1\n");
        assert!(pre_receive(&input("write", &null_delete)).is_err());
        // A refusal names the rule.
        let msg = pre_receive(&input("write", &moved)).unwrap_err();
        assert!(msg.contains("v1") && msg.contains("\"v*\""), "{msg}");
        // Fail closed: no hand-over, bad role, bad rules, bad lines, certificates.
        let none = HookInput {
            updates: &create,
            ..HookInput::default()
        };
        assert!(pre_receive(&none).is_err());
        assert!(pre_receive(&input("owner", &create)).is_err());
        let mut bad_rules = input("admin", &create);
        bad_rules.rules_json = Some("[\"a[\"]");
        assert!(pre_receive(&bad_rules).is_err());
        assert!(pre_receive(&input("admin", "garbage\n")).is_err());
        // An immutable rule: creation is free, a move or delete is refused to admins too.
        let mut locked = input("admin", &delete);
        locked.rules_json = Some(r#"[{"pattern":"v*","immutable":true}]"#);
        let msg = pre_receive(&locked).unwrap_err();
        assert!(msg.contains("immutable") && msg.contains("v1"), "{msg}");
        locked.updates = &moved;
        assert!(pre_receive(&locked).is_err());
        locked.updates = &null_delete;
        assert!(pre_receive(&locked).is_err());
        locked.updates = &create;
        assert!(pre_receive(&locked).is_ok());
        let mut cert = input("admin", &create);
        cert.push_cert = Some("0123");
        assert!(pre_receive(&cert)
            .unwrap_err()
            .contains("push certificates"));
    }
}
