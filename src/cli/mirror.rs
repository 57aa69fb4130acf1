//! `pfai mirror add|list|remove|run`: upstream registry mirrors of a repository. The server
//! keeps the definitions (and the upstream credentials, which it never returns) and does the
//! copying; `run` waits for it and prints what changed.

use clap::Subcommand;
use reqwest::Method;

use super::client::{decode, Client};
use super::{print_json, repo, CliError, CliResult};
use crate::api::{CreateMirror, MirrorReport, MirrorView};

/// Mirror subcommands.
#[derive(Debug, Subcommand)]
pub enum MirrorCmd {
    /// Define a mirror (repository admins): copy the tags of an upstream image into an image
    /// here. Nothing is copied until `pfai mirror run` (or the period passes).
    ///
    /// Example: pfai mirror add https://registry-1.docker.io/library/alpine --to acme/base/alpine --tags '3.*' --every 6h
    Add {
        /// Upstream image: http(s)://HOST[:PORT]/NAME.
        upstream: String,
        /// Target image here: OWNER/REPO/IMAGE.
        #[arg(long)]
        to: String,
        /// Only tags matching this glob (as in tag protection).
        #[arg(long)]
        tags: Option<String>,
        /// File holding the upstream credentials as one line `USER:PASSWORD` (or token).
        #[arg(long)]
        creds_file: Option<std::path::PathBuf>,
        /// Run periodically (`90m`, `6h`, `1d`, or seconds; at least 60 s).
        #[arg(long, value_parser = parse_duration)]
        every: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a repository's mirrors with their last run.
    ///
    /// Example: pfai mirror list -R acme/base
    List {
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a mirror (what it copied stays).
    ///
    /// Example: pfai mirror remove 3 -R acme/base
    Remove {
        /// Mirror id (from `pfai mirror list`).
        id: u64,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Run a mirror now (or every mirror of the repository) and print what changed. Exits 1
    /// when a run stopped early; running it again resumes.
    ///
    /// Example: pfai mirror run 3 -R acme/base
    Run {
        /// Mirror id; absent: every mirror of the repository.
        id: Option<u64>,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Print JSON (one report per line).
        #[arg(long)]
        json: bool,
    },
}

/// `6h` and friends, in seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("not a duration: {s:?} (use e.g. 30m, 6h, 1d, 3600)");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// `USER:PASSWORD` from the first line of a file.
fn read_creds(path: &std::path::Path) -> CliResult<(String, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Msg(format!("reading {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_owned(), p.to_owned())),
        _ => Err(CliError::Msg(format!(
            "{}: expected one line USER:PASSWORD",
            path.display()
        ))),
    }
}

/// `OWNER/REPO` of `OWNER/REPO/IMAGE`.
fn repo_of(image: &str) -> CliResult<String> {
    let mut parts = image.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(r), Some(i)) if !o.is_empty() && !r.is_empty() && !i.is_empty() => {
            Ok(format!("{o}/{r}"))
        }
        _ => Err(CliError::Msg(format!(
            "--to {image:?}: expected OWNER/REPO/IMAGE"
        ))),
    }
}

/// Runs a mirror subcommand.
pub async fn run(cmd: MirrorCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        MirrorCmd::Add {
            upstream,
            to,
            tags,
            creds_file,
            every,
            json,
        } => {
            let path = repo_of(&to)?;
            let (username, password) = match creds_file {
                Some(f) => {
                    let (u, p) = read_creds(&f)?;
                    (Some(u), Some(p))
                }
                None => (None, None),
            };
            let body = CreateMirror {
                upstream,
                image: to,
                tags,
                every_seconds: every,
                username,
                password,
            };
            let v = c
                .call_with(
                    Method::POST,
                    &format!("/api/v1/forge/{path}/mirrors"),
                    &body,
                )
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let m: MirrorView = decode(v)?;
            println!(
                "mirror {} added: {} -> {} (run it: pfai mirror run {} -R {path})",
                m.id, m.upstream, m.image, m.id
            );
            Ok(())
        }
        MirrorCmd::List { repo, json } => {
            let path = repo::resolve(repo.as_deref())?;
            let v = c
                .call(Method::GET, &format!("/api/v1/forge/{path}/mirrors"))
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let list: Vec<MirrorView> = decode(v)?;
            if list.is_empty() {
                println!("{path} has no mirrors");
            }
            for m in list {
                let mut line = format!("{}\t{} -> {}", m.id, m.upstream, m.image);
                if let Some(t) = &m.tags {
                    line.push_str(&format!("\ttags {t}"));
                }
                if let Some(e) = m.every_seconds {
                    line.push_str(&format!("\tevery {e}s"));
                }
                match &m.last_run {
                    Some(r) => line.push_str(&format!(
                        "\tlast run {}{}",
                        r.started_at,
                        if r.error.is_some() {
                            " (stopped early)"
                        } else {
                            ""
                        }
                    )),
                    None => line.push_str("\tnever ran"),
                }
                println!("{line}");
            }
            Ok(())
        }
        MirrorCmd::Remove { id, repo } => {
            let path = repo::resolve(repo.as_deref())?;
            c.call(
                Method::DELETE,
                &format!("/api/v1/forge/{path}/mirrors/{id}"),
            )
            .await?;
            println!("removed mirror {id} of {path}");
            Ok(())
        }
        MirrorCmd::Run { id, repo, json } => {
            let path = repo::resolve(repo.as_deref())?;
            let ids = match id {
                Some(id) => vec![id],
                None => {
                    let list: Vec<MirrorView> = decode(
                        c.call(Method::GET, &format!("/api/v1/forge/{path}/mirrors"))
                            .await?,
                    )?;
                    list.into_iter().map(|m| m.id).collect()
                }
            };
            let mut failed = Vec::new();
            for id in ids {
                let v = c
                    .call(
                        Method::POST,
                        &format!("/api/v1/forge/{path}/mirrors/{id}/run"),
                    )
                    .await?;
                if json {
                    println!("{}", serde_json::to_string(&v).unwrap_or_default());
                }
                let r: MirrorReport = decode(v)?;
                if !json {
                    print_report(&r);
                }
                if let Some(e) = r.error {
                    failed.push(format!("mirror {id}: {e}"));
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(CliError::Msg(format!(
                    "{} (run it again to resume)",
                    failed.join("; ")
                )))
            }
        }
    }
}

fn print_report(r: &MirrorReport) {
    println!("mirror {}:", r.id);
    let list = |label: &str, v: &[String]| {
        if !v.is_empty() {
            println!("  {label} ({}): {}", v.len(), v.join(", "));
        }
    };
    list("tags created", &r.tags_created);
    list("tags moved", &r.tags_moved);
    list("tags unchanged", &r.tags_unchanged);
    list("tags protected here, not moved", &r.tags_protected);
    println!(
        "  manifests copied: {} (referrers {}), blobs copied: {} ({} bytes), blobs already here: {}",
        r.manifests_copied, r.referrers_copied, r.blobs_copied, r.bytes_copied, r.blobs_skipped
    );
    if let Some(e) = &r.error {
        println!("  stopped early: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_must_name_an_image_inside_a_repository() {
        assert_eq!(
            repo_of("acme/base/alpine").ok().as_deref(),
            Some("acme/base")
        );
        assert_eq!(
            repo_of("acme/base/lib/x").ok().as_deref(),
            Some("acme/base")
        );
        assert!(repo_of("acme/base").is_err());
        assert!(repo_of("acme//x").is_err());
    }

    #[test]
    fn period_units_are_read() {
        assert_eq!(parse_duration("6h"), Ok(21_600));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("6x").is_err());
    }
}
