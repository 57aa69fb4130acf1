//! `pfai repo retention view|set|clear`: a repository's registry retention policy, applied by
//! `pfai gc` (`pfai gc --dry-run` lists what it would remove).

use clap::Subcommand;
use reqwest::Method;

use super::client::{decode, Client};
use super::{print_json, repo, CliError, CliResult};
use crate::api::{KeepSpec, RetentionSpec, RetentionView};

/// Retention subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Show the policy.
    ///
    /// Example: pfai repo retention view -R acme/app
    View {
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the policy (repository admins); GC applies it.
    ///
    /// Example: pfai repo retention set -R acme/app --keep 'v*=10' --keep 'nightly-*=3' --untagged-older-than 7d
    Set {
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Keep the newest N tags matching PATTERN, per image (repeatable); tags no rule
        /// matches, and tags protected by a tag-protection rule, are never removed.
        #[arg(long = "keep", value_name = "PATTERN=N", value_parser = parse_keep)]
        keep: Vec<KeepSpec>,
        /// Remove untagged manifests pushed longer ago than this (`90s`, `30m`, `12h`, `7d`,
        /// `2w`, or seconds).
        #[arg(long, value_parser = parse_age)]
        untagged_older_than: Option<u64>,
    },
    /// Remove the policy.
    ///
    /// Example: pfai repo retention clear -R acme/app
    Clear {
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

/// `v*=10`.
fn parse_keep(s: &str) -> Result<KeepSpec, String> {
    let (pattern, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected PATTERN=N, got {s:?}"))?;
    let newest = n
        .parse()
        .map_err(|_| format!("not a count: {n:?} (in {s:?})"))?;
    if pattern.is_empty() {
        return Err(format!("empty pattern in {s:?}"));
    }
    Ok(KeepSpec {
        pattern: pattern.to_owned(),
        newest,
    })
}

/// `7d` and friends, in seconds.
fn parse_age(s: &str) -> Result<u64, String> {
    let bad = || format!("not a duration: {s:?} (use e.g. 7d, 12h, 30m, 90s)");
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

/// Runs a retention subcommand.
pub async fn run(cmd: RetentionCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        RetentionCmd::View { repo, json } => {
            let path = repo::resolve(repo.as_deref())?;
            let v = c
                .get_or(&format!("/api/v1/forge/{path}/retention"), || {
                    format!("{path} has no retention policy (or is not visible to you)")
                })
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            print_view(&decode(v)?);
            Ok(())
        }
        RetentionCmd::Set {
            repo,
            keep,
            untagged_older_than,
        } => {
            if keep.is_empty() && untagged_older_than.is_none() {
                return Err(CliError::Msg(
                    "give --keep PATTERN=N and/or --untagged-older-than (or use `clear`)".into(),
                ));
            }
            let path = repo::resolve(repo.as_deref())?;
            let spec = RetentionSpec {
                keep,
                untagged_older_than_seconds: untagged_older_than,
            };
            let v = c
                .call_with(
                    Method::PUT,
                    &format!("/api/v1/forge/{path}/retention"),
                    &spec,
                )
                .await?;
            print_view(&decode(v)?);
            Ok(())
        }
        RetentionCmd::Clear { repo } => {
            let path = repo::resolve(repo.as_deref())?;
            c.call(Method::DELETE, &format!("/api/v1/forge/{path}/retention"))
                .await?;
            println!("removed the retention policy of {path}");
            Ok(())
        }
    }
}

fn print_view(v: &RetentionView) {
    for k in &v.keep {
        println!("keep the newest {} tag(s) matching {}", k.newest, k.pattern);
    }
    match v.untagged_older_than_seconds {
        Some(s) => println!("remove untagged manifests older than {s} s"),
        None => println!("keep untagged manifests"),
    }
    println!("set by {} at {}", v.updated_by, v.updated_at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_and_age_arguments_parse_and_refuse_what_they_should() {
        assert_eq!(parse_keep("v*=10").unwrap().newest, 10);
        assert_eq!(parse_keep("a=b=2").unwrap().pattern, "a=b");
        assert!(parse_keep("v*").is_err() && parse_keep("=3").is_err());
        assert_eq!(parse_age("7d"), Ok(604_800));
        assert_eq!(parse_age("90"), Ok(90));
        assert!(parse_age("7y").is_err() && parse_age("d").is_err());
    }
}
