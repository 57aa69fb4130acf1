//! `pfai repo edit` and `pfai org edit`: the `immutableReleases` setting of a repository and the
//! default an organization gives its repositories.

use reqwest::Method;

use super::client::{decode, Client};
use super::{print_json, repo, CliError, CliResult};
use crate::api::{EditRepoSettings, OrgSettings, RepoSettingsView};

/// `true`, `false`, or `inherit` (the organization's default).
fn parse_setting(s: &str) -> CliResult<Option<bool>> {
    match s {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "inherit" => Ok(None),
        _ => Err(CliError::Msg(format!(
            "expected true, false or inherit, got {s:?}"
        ))),
    }
}

/// `pfai repo edit [OWNER/REPO] [--immutable-releases=true|false|inherit]`: changes what is
/// given, then prints the settings in effect.
pub async fn repo_edit(
    name: Option<String>,
    immutable_releases: Option<String>,
    json: bool,
) -> CliResult<()> {
    let c = Client::from_env();
    let immutable_releases = immutable_releases
        .as_deref()
        .map(parse_setting)
        .transpose()?;
    let path = repo::resolve(name.as_deref())?;
    let url = format!("/api/v1/forge/{path}/settings");
    let v = match immutable_releases {
        Some(v) => {
            let body = EditRepoSettings {
                immutable_releases: Some(v),
            };
            c.call_with(Method::PATCH, &url, &body).await?
        }
        None => c.call(Method::GET, &url).await?,
    };
    if json {
        print_json(&v);
        return Ok(());
    }
    let s: RepoSettingsView = decode(v)?;
    println!(
        "{path}: immutableReleases {} (from the {})",
        s.immutable_releases, s.immutable_releases_source
    );
    Ok(())
}

/// `pfai org edit ORG [--immutable-releases=true|false]`: the organization's default.
pub async fn org_edit(org: String, immutable_releases: Option<bool>, json: bool) -> CliResult<()> {
    let c = Client::from_env();
    if org.is_empty() || org.contains('/') {
        return Err(CliError::Msg(format!(
            "{org:?} is not an organization name"
        )));
    }
    let url = format!("/api/v1/orgs/{org}/settings");
    let v = match immutable_releases {
        Some(v) => {
            let body = OrgSettings {
                immutable_releases: v,
            };
            c.call_with(Method::PATCH, &url, &body).await?
        }
        None => c.call(Method::GET, &url).await?,
    };
    if json {
        print_json(&v);
        return Ok(());
    }
    let s: OrgSettings = decode(v)?;
    println!(
        "{org}: immutableReleases default {} for its repositories that do not set it",
        s.immutable_releases
    );
    Ok(())
}
