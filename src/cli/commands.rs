//! The smaller client commands: login, tags, protection rules, repositories, orgs, tokens,
//! packages, GC and fsck.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{self, CliError, CliResult, Client, Saved};
use super::{print_json, print_rows, print_table, repo};
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
    ///
    /// Example: pfai protected-tag create 'v*'
    Create {
        /// Glob.
        pattern: String,
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
    let me = c.call(Method::GET, "/api/v1/user", None).await?;
    let path = client::save(&Saved {
        url: Some(c.url.clone()),
        token: Some(token),
    })?;
    eprintln!(
        "logged in to {} as {} (saved in {})",
        c.url,
        me["username"].as_str().unwrap_or("?"),
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
        TagCmd::List { json, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let tags = c
                .list_all(&format!("/api/v1/forge/{repo}/tags"), usize::MAX)
                .await?;
            if json {
                print_json(&Value::Array(tags));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tags
                .iter()
                .map(|t| {
                    vec![
                        t["name"].as_str().unwrap_or("").to_owned(),
                        t["commit"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(12)
                            .collect(),
                        if t["protected"] == true {
                            "protected"
                        } else {
                            ""
                        }
                        .to_owned(),
                        t["message"]
                            .as_str()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    ]
                })
                .collect();
            print_table(&["TAG", "COMMIT", "", "MESSAGE"], &rows);
            Ok(())
        }
        TagCmd::Create {
            name,
            target,
            message,
            repo,
        } => {
            let repo = repo::resolve(repo.as_deref())?;
            let mut body = json!({"tagName": name, "target": target});
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/forge/{repo}/tags"),
                    Some(&body),
                )
                .await?;
            eprintln!(
                "created tag {} at {}",
                name,
                v["commit"].as_str().unwrap_or("")
            );
            Ok(())
        }
        TagCmd::Delete { name, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            match c
                .call(
                    Method::DELETE,
                    &format!("/api/v1/forge/{repo}/tags/{}", seg(&name)),
                    None,
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
    }
}

/// `pfai protected-tag ...`.
pub async fn protected_tag(cmd: ProtectedTagCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        ProtectedTagCmd::List { json, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let v = c
                .call(
                    Method::GET,
                    &format!("/api/v1/forge/{repo}/tag-protections"),
                    None,
                )
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            print_rows(&["ID", "PATTERN", "CREATED BY"], &v, |r| {
                vec![
                    r["id"].to_string(),
                    r["pattern"].as_str().unwrap_or("").to_owned(),
                    r["createdBy"].as_str().unwrap_or("").to_owned(),
                ]
            });
            Ok(())
        }
        ProtectedTagCmd::Create { pattern, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/forge/{repo}/tag-protections"),
                    Some(&json!({"pattern": pattern})),
                )
                .await?;
            eprintln!("protected {pattern} (rule {})", v["id"]);
            Ok(())
        }
        ProtectedTagCmd::Delete { rule, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let rules = c
                .call(
                    Method::GET,
                    &format!("/api/v1/forge/{repo}/tag-protections"),
                    None,
                )
                .await?;
            let found = rules.as_array().and_then(|rs| {
                rs.iter()
                    .find(|r| {
                        r["id"].as_u64().is_some_and(|i| i.to_string() == rule)
                            || r["pattern"] == rule.as_str()
                    })
                    .cloned()
            });
            let r = found
                .ok_or_else(|| CliError::Msg(format!("no protection rule {rule:?} in {repo}")))?;
            c.call(
                Method::DELETE,
                &format!("/api/v1/forge/{repo}/tag-protections/{}", r["id"]),
                None,
            )
            .await?;
            eprintln!("removed rule {}", r["pattern"].as_str().unwrap_or(""));
            Ok(())
        }
    }
}

/// `pfai repo ...`.
pub async fn repo(cmd: RepoCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        RepoCmd::Create {
            name,
            private,
            description,
        } => {
            let path = repo::resolve(Some(&name))?;
            let (owner, n) = path.split_once('/').unwrap_or_default();
            c.call(
                Method::POST,
                "/api/v1/forge/repos",
                Some(&json!({"owner": owner, "name": n, "private": private, "description": description})),
            )
            .await?;
            println!("{}/{path}.git", c.url);
            Ok(())
        }
        RepoCmd::View { name, json } => {
            let path = repo::resolve(name.as_deref())?;
            let v = c
                .get_or(&format!("/api/v1/forge/{path}"), || {
                    format!("repository {path} not found (or not visible to you)")
                })
                .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "{}{}",
                    v["fullName"].as_str().unwrap_or(""),
                    if v["private"] == true {
                        "  (private)"
                    } else {
                        ""
                    }
                );
                if let Some(d) = v["description"].as_str().filter(|d| !d.is_empty()) {
                    println!("{d}");
                }
                println!("clone:      {}/{path}.git", c.url);
                println!("permission: {}", v["permission"].as_str().unwrap_or("-"));
            }
            Ok(())
        }
        RepoCmd::Delete { name, yes } => {
            let path = repo::resolve(Some(&name))?;
            if !yes
                && !super::release::confirm(&format!(
                    "delete repository {path} with its releases?"
                ))?
            {
                return Err(CliError::Msg(
                    "not deleted (pass --yes to skip the question)".into(),
                ));
            }
            c.call(Method::DELETE, &format!("/api/v1/forge/{path}"), None)
                .await?;
            eprintln!("deleted {path}");
            Ok(())
        }
    }
}

/// `pfai org ...`.
pub async fn org(cmd: OrgCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        OrgCmd::Create { name } => {
            c.call(Method::POST, "/api/v1/orgs", Some(&json!({"name": name})))
                .await?;
            eprintln!("created organization {name}");
            Ok(())
        }
    }
}

/// `pfai token ...`.
pub async fn token(cmd: TokenCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        TokenCmd::Create { name, json } => {
            c.token()?;
            let v = c
                .call(
                    Method::POST,
                    "/api/v1/user/tokens",
                    Some(&json!({"name": name})),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                println!("{}", v["token"].as_str().unwrap_or(""));
                eprintln!("token {} ({name}) created; it is shown only once", v["id"]);
            }
            Ok(())
        }
    }
}

/// `pfai packages ...`.
pub async fn packages(cmd: PackagesCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        PackagesCmd::List { json, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let v = c
                .call(Method::GET, &format!("/api/v1/forge/{repo}/packages"), None)
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            print_rows(&["IMAGE", "TAGS", "SIZE", "LAST PUSH"], &v, |p| {
                vec![
                    p["name"].as_str().unwrap_or("").to_owned(),
                    p["tagCount"].to_string(),
                    p["totalSize"].to_string(),
                    p["lastPush"].as_str().unwrap_or("-").to_owned(),
                ]
            });
            Ok(())
        }
        PackagesCmd::Tags { image, json, repo } => {
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
            print_rows(&["TAG", "DIGEST", "SIZE", "PLATFORMS", "PUSHED"], &v, |t| {
                vec![
                    t["tag"].as_str().unwrap_or("").to_owned(),
                    t["digest"].as_str().unwrap_or("").to_owned(),
                    t["size"].to_string(),
                    t["platforms"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                    t["pushedAt"].as_str().unwrap_or("").to_owned(),
                ]
            });
            Ok(())
        }
    }
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
        .call(Method::POST, &format!("/api/v1/admin/gc{q}"), None)
        .await?;
    if json {
        print_json(&v);
    } else {
        let n = v["blobs"].as_array().map(|a| a.len()).unwrap_or(0);
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} {n} blob(s), {} bytes; {} upload session(s) purged",
            v["bytes"],
            v["uploads"].as_array().map(|a| a.len()).unwrap_or(0)
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
    let v = c.call(Method::POST, path, None).await?;
    if json {
        print_json(&v);
    } else {
        println!(
            "checked {} blob(s), {} asset(s)",
            v["checked"], v["assetsChecked"]
        );
        for d in v["corrupt"].as_array().cloned().unwrap_or_default() {
            println!("corrupt blob: {}", d.as_str().unwrap_or(""));
        }
        for d in v["missing"].as_array().cloned().unwrap_or_default() {
            println!("missing blob: {}", d.as_str().unwrap_or(""));
        }
        for m in v["affectedManifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            println!("affected: {}", m.as_str().unwrap_or(""));
        }
        for f in v["findings"].as_array().cloned().unwrap_or_default() {
            let mut what = Vec::new();
            for (key, label) in [
                ("repository", "repository"),
                ("release", "release"),
                ("asset", "asset"),
                ("tag", "tag"),
                ("path", "file"),
            ] {
                if let Some(s) = f[key].as_str() {
                    what.push(format!("{label} {s}"));
                }
            }
            let done = match f["repaired"].as_str() {
                Some(r) => format!(" [repaired: {r}]"),
                None => String::new(),
            };
            println!(
                "{}: {}: {}{done}",
                f["kind"].as_str().unwrap_or("?"),
                what.join(", "),
                f["detail"].as_str().unwrap_or("")
            );
        }
    }
    let problems = v["problems"].as_u64().unwrap_or(0);
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
