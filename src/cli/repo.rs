//! Which repository a command is about: `-R owner/repo`, else the `origin` remote of the git
//! checkout the command runs in (like `gh`).

use super::client::{CliError, CliResult};

/// Parses `owner/repo` out of a remote URL: `http(s)://[cred@]host[:port]/owner/repo(.git)`,
/// `ssh://git@host/owner/repo.git` or `git@host:owner/repo.git`.
pub fn from_remote_url(url: &str) -> Option<String> {
    let url = url.trim();
    let path = if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        rest.split_once('/').map(|(_, p)| p)?
    } else {
        url.split_once(':').map(|(_, p)| p)?
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit('/');
    let repo = parts.next()?;
    let owner = parts.next()?;
    if owner.is_empty() || repo.is_empty() {
        return None;
    }
    Some(format!("{owner}/{repo}"))
}

/// Resolves the repository for a command.
pub fn resolve(flag: Option<&str>) -> CliResult<String> {
    if let Some(r) = flag {
        return validate(r);
    }
    let out = std::process::Command::new("git")
        .args(["remote", "get-url", "origin"])
        .output()
        .map_err(|_| {
            CliError::Msg(
                "no repository: pass -R owner/repo (git is not available to infer it)".into(),
            )
        })?;
    if !out.status.success() {
        return Err(CliError::Msg(
            "no repository: pass -R owner/repo, or run inside a git checkout whose origin is on this server".into(),
        ));
    }
    let url = String::from_utf8_lossy(&out.stdout);
    from_remote_url(&url).ok_or_else(|| {
        CliError::Msg(format!(
            "cannot tell owner/repo from the origin remote {:?}; pass -R owner/repo",
            url.trim()
        ))
    })
}

fn validate(r: &str) -> CliResult<String> {
    crate::ids::RepoPath::parse_key(r)
        .map(|p| p.key())
        .map_err(|e| CliError::Msg(format!("-R {r:?}: {e} (expected owner/repo)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_forms() {
        for u in [
            "http://127.0.0.1:3000/acme/app.git",
            "https://x:tok@pfai.example.com/acme/app",
            "ssh://git@host/acme/app.git",
            "git@host:acme/app.git",
            "http://host/prefix/acme/app.git/",
        ] {
            assert_eq!(from_remote_url(u).as_deref(), Some("acme/app"), "{u}");
        }
        assert_eq!(from_remote_url("nonsense"), None);
    }
}
