//! The smaller client commands: login, tags, protection rules, repositories, orgs, tokens,
//! packages, GC and fsck.

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::{self, decode, CliError, CliResult, Client, Saved};
use super::{print_json, print_rows, repo};
use crate::api::{
    FsckReport, GcReport, NewName, NewRepo, NewRule, NewTag, NewToken, OrgView, PackageTagView,
    PackageView, RepoView, RuleTarget, RuleView, TagView, UserView,
};
use crate::domain::release::url_segment as seg;

/// Tag subcommands.
#[derive(Debug, Subcommand)]
pub enum TagCmd {
    /// List tags.
    ///
    /// Example: pfai tag list
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Create a tag (annotated when --message is given).
    ///
    /// Example: pfai tag create v1.2.3 --target main --message "Release 1.2.3"
    Create {
        /// Tag name.
        name: String,
        /// Branch, tag or commit SHA.
        #[arg(long, default_value = "main")]
        target: String,
        /// Message (makes an annotated tag).
        #[arg(long, short = 'm')]
        message: Option<String>,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Delete a tag (protected tags: admins only).
    ///
    /// Example: pfai tag delete v1.2.3
    Delete {
        /// Tag name.
        name: String,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

/// Protection-rule subcommands.
#[derive(Debug, Subcommand)]
pub enum ProtectedTagCmd {
    /// List rules.
    ///
    /// Example: pfai protected-tag list
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Add a rule (admin). `v*` matches v1.2.3 and also version2; `v[0-9]*` only versions.
    /// Without `--git`/`--registry` the rule protects git tags; give both for both.
    ///
    /// Example: pfai protected-tag create 'v*' --registry --immutable
    Create {
        /// Glob.
        pattern: String,
        /// Protect git tags (the default when neither flag is given).
        #[arg(long)]
        git: bool,
        /// Protect registry (OCI) tags of the repository's images.
        #[arg(long)]
        registry: bool,
        /// Nobody, admins included, may move or delete a matching tag (git or registry, per
        /// the rule's targets); git tags can still be created.
        #[arg(long)]
        immutable: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Remove a rule by id or by pattern (admin).
    ///
    /// Example: pfai protected-tag delete 'v*'
    Delete {
        /// Rule id or pattern.
        rule: String,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

/// Repository subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Create a repository.
    ///
    /// Example: pfai repo create acme/app --private
    Create {
        /// owner/name.
        name: String,
        /// Private (invisible to non-members).
        #[arg(long)]
        private: bool,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show a repository (default: the current checkout's).
    ///
    /// Example: pfai repo view acme/app --json
    View {
        /// owner/name.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a repository with its releases (admin).
    ///
    /// Example: pfai repo delete acme/app --yes
    Delete {
        /// owner/name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The registry retention policy (which image tags and untagged manifests GC removes).
    ///
    /// Example: pfai repo retention set -R acme/app --keep 'v*=10' --untagged-older-than 7d
    #[command(subcommand)]
    Retention(super::retention::RetentionCmd),
    /// A repository's collaborators (repository admins).
    ///
    /// Example: pfai repo collaborator add alice --role write -R acme/app
    #[command(subcommand)]
    Collaborator(super::admin::CollaboratorCmd),
    /// Change a repository's settings (admin); without flags, show them.
    ///
    /// Example: pfai repo edit acme/app --immutable-releases=true
    Edit {
        /// owner/name (default: the current checkout's).
        name: Option<String>,
        /// Publishing a release makes it immutable: `true`, `false`, or `inherit` (the
        /// organization's default).
        #[arg(long, value_name = "true|false|inherit", value_parser = ["true", "false", "inherit"])]
        immutable_releases: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Organization subcommands.
#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Create an organization (you become its admin).
    ///
    /// Example: pfai org create acme
    Create {
        /// Name.
        name: String,
    },
    /// An organization's members and their roles.
    ///
    /// Example: pfai org member add acme alice --role write
    #[command(subcommand)]
    Member(super::admin::MemberCmd),
    /// An organization's members and its storage: used of its quota (members and site admins).
    ///
    /// Example: pfai org view acme
    View {
        /// The organization.
        org: String,
        /// Print JSON (`{name, members, storage}`).
        #[arg(long)]
        json: bool,
    },
    /// Change an organization's defaults for its repositories (org admin); without flags, show
    /// them.
    ///
    /// Example: pfai org edit acme --immutable-releases=true
    Edit {
        /// The organization.
        org: String,
        /// Default of `immutableReleases` for repositories that do not set it.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        immutable_releases: Option<bool>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Mint a token for scripts and CI (printed once).
    ///
    /// Example: pfai token create ci-publisher
    Create {
        /// Label.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Packages subcommands.
#[derive(Debug, Subcommand)]
pub enum PackagesCmd {
    /// List the repository's container images.
    ///
    /// Example: pfai packages list
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// List an image's tags (image: full name or path below the repository).
    ///
    /// Example: pfai packages tags web
    Tags {
        /// Image.
        image: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

/// `pfai login`.
pub async fn login(url: Option<String>, token_stdin: bool) -> CliResult<()> {
    let url = url
        .or_else(|| std::env::var("PFAI_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| client::DEFAULT_URL.into());
    let token = if token_stdin {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        s.trim().to_owned()
    } else {
        std::env::var("PFAI_TOKEN").unwrap_or_default()
    };
    if token.is_empty() {
        return Err(CliError::Msg(
            "no token given: pipe one into `pfai login --token-stdin` or set PFAI_TOKEN".into(),
        ));
    }
    let c = Client::new(&url, Some(token.clone()));
    let me: UserView = decode(c.call(Method::GET, "/api/v1/user").await?)?;
    let path = client::save(&Saved {
        url: Some(c.url.clone()),
        token: Some(token),
    })?;
    eprintln!(
        "logged in to {} as {} (saved in {})",
        c.url,
        me.username,
        path.display()
    );
    Ok(())
}

/// `pfai logout`.
pub fn logout() -> CliResult<()> {
    if let Some(p) = client::config_path() {
        match std::fs::remove_file(&p) {
            Ok(()) => eprintln!("logged out (removed {})", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("not logged in"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `pfai tag ...`.
pub async fn tag(cmd: TagCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        TagCmd::List { json, repo } => tag_list(&c, repo, json).await,
        TagCmd::Create {
            name,
            target,
            message,
            repo,
        } => {
            let body = NewTag {
                tag_name: name,
                target,
                message,
            };
            tag_create(&c, repo, body).await
        }
        TagCmd::Delete { name, repo } => tag_delete(&c, repo, name).await,
    }
}

/// `pfai tag list`: name, short commit, protection, first line of the message.
async fn tag_list(c: &Client, repo: Option<String>, json: bool) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let tags = c
        .list_all(&format!("/api/v1/forge/{repo}/tags"), usize::MAX)
        .await?;
    if json {
        print_json(&Value::Array(tags));
        return Ok(());
    }
    let tags: Vec<TagView> = decode(Value::Array(tags))?;
    print_rows(&["TAG", "COMMIT", "", "MESSAGE"], &tags, |t| {
        vec![
            t.name.clone(),
            t.commit.chars().take(12).collect(),
            if t.immutable {
                "immutable"
            } else if t.protected {
                "protected"
            } else {
                ""
            }
            .to_owned(),
            t.message.lines().next().unwrap_or("").to_owned(),
        ]
    });
    Ok(())
}

/// `pfai tag create`.
async fn tag_create(c: &Client, repo: Option<String>, body: NewTag) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let v: TagView = c
        .call_as(Method::POST, &format!("/api/v1/forge/{repo}/tags"), &body)
        .await?;
    eprintln!("created tag {} at {}", body.tag_name, v.commit);
    Ok(())
}

/// `pfai tag delete`.
async fn tag_delete(c: &Client, repo: Option<String>, name: String) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    match c
        .call(
            Method::DELETE,
            &format!("/api/v1/forge/{repo}/tags/{}", seg(&name)),
        )
        .await
    {
        Err(CliError::Api { status: 404, .. }) => {
            Err(CliError::Msg(format!("tag {name} not found in {repo}")))
        }
        Err(e) => Err(e),
        Ok(_) => {
            eprintln!("deleted tag {name}");
            Ok(())
        }
    }
}

/// `pfai protected-tag ...`.
pub async fn protected_tag(cmd: ProtectedTagCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        ProtectedTagCmd::List { json, repo } => rule_list(&c, repo, json).await,
        ProtectedTagCmd::Create {
            pattern,
            git,
            registry,
            immutable,
            repo,
        } => {
            let target = match (git, registry) {
                (true, true) => RuleTarget::Both,
                (false, true) => RuleTarget::Registry,
                _ => RuleTarget::Git,
            };
            rule_create(&c, repo, pattern, target, immutable).await
        }
        ProtectedTagCmd::Delete { rule, repo } => rule_delete(&c, repo, rule).await,
    }
}

/// `pfai protected-tag list`.
async fn rule_list(c: &Client, repo: Option<String>, json: bool) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let v = c
        .call(
            Method::GET,
            &format!("/api/v1/forge/{repo}/tag-protections"),
        )
        .await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let rules: Vec<RuleView> = decode(v)?;
    print_rows(
        &["ID", "PATTERN", "TARGET", "IMMUTABLE", "CREATED BY"],
        &rules,
        |r| {
            vec![
                r.id.to_string(),
                r.pattern.clone(),
                r.target.as_str().to_owned(),
                if r.immutable { "yes" } else { "no" }.to_owned(),
                r.created_by.clone(),
            ]
        },
    );
    Ok(())
}

/// `pfai protected-tag create`.
async fn rule_create(
    c: &Client,
    repo: Option<String>,
    pattern: String,
    target: RuleTarget,
    immutable: bool,
) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let v: RuleView = c
        .call_as(
            Method::POST,
            &format!("/api/v1/forge/{repo}/tag-protections"),
            &NewRule {
                pattern: pattern.clone(),
                target: Some(target),
                immutable,
            },
        )
        .await?;
    let imm = if v.immutable { ", immutable" } else { "" };
    eprintln!(
        "protected {pattern} (rule {}, {} tags{imm})",
        v.id,
        v.target.as_str()
    );
    Ok(())
}

/// `pfai protected-tag delete`: by id or by pattern.
async fn rule_delete(c: &Client, repo: Option<String>, rule: String) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let rules: Vec<RuleView> = decode(
        c.call(
            Method::GET,
            &format!("/api/v1/forge/{repo}/tag-protections"),
        )
        .await?,
    )?;
    let r = rules
        .into_iter()
        .find(|r| r.id.to_string() == rule || r.pattern == rule)
        .ok_or_else(|| CliError::Msg(format!("no protection rule {rule:?} in {repo}")))?;
    c.call(
        Method::DELETE,
        &format!("/api/v1/forge/{repo}/tag-protections/{}", r.id),
    )
    .await?;
    eprintln!("removed rule {}", r.pattern);
    Ok(())
}

/// `pfai repo ...`.
pub async fn repo(cmd: RepoCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        RepoCmd::Create {
            name,
            private,
            description,
        } => repo_create(&c, name, private, description).await,
        RepoCmd::View { name, json } => repo_view(&c, name, json).await,
        RepoCmd::Delete { name, yes } => repo_delete(&c, name, yes).await,
        RepoCmd::Retention(cmd) => super::retention::run(cmd).await,
        RepoCmd::Collaborator(cmd) => super::admin::collaborator(cmd).await,
        RepoCmd::Edit {
            name,
            immutable_releases,
            json,
        } => super::settings::repo_edit(name, immutable_releases, json).await,
    }
}

/// `pfai repo create`: prints the clone URL.
async fn repo_create(
    c: &Client,
    name: String,
    private: bool,
    description: String,
) -> CliResult<()> {
    let path = repo::resolve(Some(&name))?;
    let (owner, n) = path.split_once('/').unwrap_or_default();
    let body = NewRepo {
        owner: owner.to_owned(),
        name: n.to_owned(),
        private,
        description,
    };
    c.call_with(Method::POST, "/api/v1/forge/repos", &body)
        .await?;
    println!("{}/{path}.git", c.url);
    Ok(())
}

/// `pfai repo view`.
async fn repo_view(c: &Client, name: Option<String>, json: bool) -> CliResult<()> {
    let path = repo::resolve(name.as_deref())?;
    let v = c
        .get_or(&format!("/api/v1/forge/{path}"), || {
            format!("repository {path} not found (or not visible to you)")
        })
        .await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let v: RepoView = decode(v)?;
    println!(
        "{}{}",
        v.full_name,
        if v.private { "  (private)" } else { "" }
    );
    if !v.description.is_empty() {
        println!("{}", v.description);
    }
    println!("clone:      {}/{path}.git", c.url);
    println!(
        "permission: {}",
        v.permission.map(|r| r.as_str()).unwrap_or("-")
    );
    Ok(())
}

/// `pfai repo delete`: asks first unless `--yes`.
async fn repo_delete(c: &Client, name: String, yes: bool) -> CliResult<()> {
    let path = repo::resolve(Some(&name))?;
    if !yes && !super::release::confirm(&format!("delete repository {path} with its releases?"))? {
        return Err(CliError::Msg(
            "not deleted (pass --yes to skip the question)".into(),
        ));
    }
    c.call(Method::DELETE, &format!("/api/v1/forge/{path}"))
        .await?;
    eprintln!("deleted {path}");
    Ok(())
}

/// `pfai org ...`.
pub async fn org(cmd: OrgCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        OrgCmd::Create { name } => {
            let org: OrgView = decode(
                c.call_with(
                    Method::POST,
                    "/api/v1/orgs",
                    &NewName { name: name.clone() },
                )
                .await?,
            )?;
            eprintln!("created organization {}", org.name);
            Ok(())
        }
        OrgCmd::Member(cmd) => super::admin::member(cmd).await,
        OrgCmd::View { org, json } => org_view(&c, org, json).await,
        OrgCmd::Edit {
            org,
            immutable_releases,
            json,
        } => super::settings::org_edit(org, immutable_releases, json).await,
    }
}

/// `pfai org view ORG`: the members with their roles and the storage used of the quota.
async fn org_view(c: &Client, org: String, json: bool) -> CliResult<()> {
    let org = seg(&org);
    let members = c
        .call(Method::GET, &format!("/api/v1/orgs/{org}/members"))
        .await?;
    let storage = c
        .call(Method::GET, &format!("/api/v1/admin/quotas/{org}"))
        .await?;
    if json {
        print_json(&serde_json::json!({"name": org, "members": members, "storage": storage}));
        return Ok(());
    }
    let members: Vec<crate::api::MemberView> = decode(members)?;
    let storage: crate::api::QuotaView = decode(storage)?;
    let human = crate::domain::quota::human;
    println!("{org}");
    println!(
        "storage: {} used of {}",
        human(storage.used_bytes),
        storage
            .limit_bytes
            .map(human)
            .unwrap_or_else(|| "no quota".into())
    );
    print_rows(&["MEMBER", "ROLE"], &members, |m| {
        vec![m.username.clone(), m.role.as_str().to_owned()]
    });
    Ok(())
}

/// `pfai token ...`.
pub async fn token(cmd: TokenCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        TokenCmd::Create { name, json } => {
            c.token()?;
            let v = c
                .call_with(
                    Method::POST,
                    "/api/v1/user/tokens",
                    &NewName { name: name.clone() },
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                let t: NewToken = decode(v)?;
                println!("{}", t.token);
                eprintln!("token {} ({name}) created; it is shown only once", t.id);
            }
            Ok(())
        }
    }
}

/// `pfai packages ...`.
pub async fn packages(cmd: PackagesCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        PackagesCmd::List { json, repo } => packages_list(&c, repo, json).await,
        PackagesCmd::Tags { image, json, repo } => packages_tags(&c, repo, image, json).await,
    }
}

/// `pfai packages list`.
async fn packages_list(c: &Client, repo: Option<String>, json: bool) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let v = c
        .call(Method::GET, &format!("/api/v1/forge/{repo}/packages"))
        .await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let images: Vec<PackageView> = decode(v)?;
    print_rows(&["IMAGE", "TAGS", "SIZE", "LAST PUSH"], &images, |p| {
        vec![
            p.name.clone(),
            p.tag_count.to_string(),
            p.total_size.to_string(),
            p.last_push.clone().unwrap_or_else(|| "-".into()),
        ]
    });
    Ok(())
}

/// `pfai packages tags`.
async fn packages_tags(
    c: &Client,
    repo: Option<String>,
    image: String,
    json: bool,
) -> CliResult<()> {
    let repo = repo::resolve(repo.as_deref())?;
    let v = c
        .get_or(
            &format!("/api/v1/forge/{repo}/packages/{}/tags", seg(&image)),
            || format!("image {image} not found in {repo}"),
        )
        .await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let tags: Vec<PackageTagView> = decode(v)?;
    print_rows(
        &["TAG", "DIGEST", "SIZE", "PLATFORMS", "PUSHED"],
        &tags,
        |t| {
            vec![
                t.tag.clone(),
                t.digest.clone(),
                t.size.to_string(),
                t.platforms.join(","),
                t.pushed_at.clone(),
            ]
        },
    );
    Ok(())
}

/// `pfai gc`.
pub async fn gc(dry_run: bool, grace: Option<u64>, json: bool) -> CliResult<()> {
    let c = Client::from_env();
    c.token()?;
    let mut q = format!("?dryRun={dry_run}");
    if let Some(g) = grace {
        q.push_str(&format!("&graceSeconds={g}"));
    }
    let v = c
        .call(Method::POST, &format!("/api/v1/admin/gc{q}"))
        .await?;
    if json {
        print_json(&v);
    } else {
        let r: GcReport = decode(v)?;
        let verb = if dry_run { "would remove" } else { "removed" };
        for a in &r.retention {
            match &a.tag {
                Some(t) => println!("{verb} tag {}:{t} ({}): {}", a.name, a.digest, a.reason),
                None => println!("{verb} manifest {}@{}: {}", a.name, a.digest, a.reason),
            }
        }
        println!(
            "{verb} {} blob(s), {} bytes; {} upload session(s) purged",
            r.blobs.len(),
            r.bytes,
            r.uploads.len()
        );
    }
    Ok(())
}

/// `pfai fsck [--repair]`: prints every finding with what it concerns and what repair did;
/// fails (exit 1) while problems remain.
pub async fn fsck(repair: bool, json: bool) -> CliResult<()> {
    let c = Client::from_env();
    c.token()?;
    let path = if repair {
        "/api/v1/admin/fsck?repair=true"
    } else {
        "/api/v1/admin/fsck"
    };
    let v = c.call(Method::POST, path).await?;
    let problems = if json {
        // The count is read through the type even when the report is passed through.
        let problems = decode::<FsckReport>(v.clone())?.problems;
        print_json(&v);
        problems
    } else {
        let r: FsckReport = decode(v)?;
        print_fsck(&r);
        r.problems
    };
    if problems > 0 {
        return Err(CliError::Msg(format!(
            "fsck: {problems} problem(s) remain (listed above){}",
            if repair {
                ""
            } else {
                "; `pfai fsck --repair` fixes orphans, re-push or re-upload damaged content"
            }
        )));
    }
    Ok(())
}

fn print_fsck(r: &FsckReport) {
    println!(
        "checked {} blob(s), {} asset(s)",
        r.blobs.checked, r.assets_checked
    );
    for d in &r.blobs.corrupt {
        println!("corrupt blob: {d}");
    }
    for d in &r.blobs.missing {
        println!("missing blob: {d}");
    }
    for m in &r.blobs.affected_manifests {
        println!("affected: {m}");
    }
    for f in &r.findings {
        let what: Vec<String> = [
            (&f.repository, "repository"),
            (&f.release, "release"),
            (&f.asset, "asset"),
            (&f.tag, "tag"),
            (&f.path, "file"),
        ]
        .into_iter()
        .filter_map(|(v, label)| v.as_ref().map(|s| format!("{label} {s}")))
        .collect();
        let done = match &f.repaired {
            Some(r) => format!(" [repaired: {r}]"),
            None => String::new(),
        };
        println!(
            "{}: {}: {}{done}",
            f.kind.as_str(),
            what.join(", "),
            f.detail
        );
    }
}
