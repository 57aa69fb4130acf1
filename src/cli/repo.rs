//! Which repository a command is about: `-R owner/repo`, else the git remote of the checkout
//! the command runs in whose host is the server's (any remote name, `origin` preferred).

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

/// The `host[:port]` of a remote URL (`http(s)://`, `ssh://`, or scp-like `git@host:path`).
pub fn remote_host(url: &str) -> Option<String> {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next()?;
        let host = authority.rsplit('@').next()?;
        // ssh ports are not the server's HTTP port: compare ssh remotes by host only.
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            return Some(host.to_ascii_lowercase());
        }
        return Some(strip_port(host).to_ascii_lowercase());
    }
    let (authority, _) = url.split_once(':')?;
    Some(authority.rsplit('@').next()?.to_ascii_lowercase())
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        // A bare IPv6 address without brackets has no port to strip.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => host,
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The server's `host:port` as remotes spell it (default ports made explicit both ways).
fn server_host(server: &str) -> Option<(String, String)> {
    let u = reqwest::Url::parse(server).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let port = u.port_or_known_default()?;
    Some((host.clone(), format!("{host}:{port}")))
}

/// Whether a remote's host is the server's: same host and port (an omitted port is the
/// scheme's default), or the same host for ssh remotes.
fn same_server(remote_url: &str, server: &str) -> bool {
    let (Some(remote), Some((host, host_port))) = (remote_host(remote_url), server_host(server))
    else {
        return false;
    };
    let lower = remote_url.trim().to_ascii_lowercase();
    let is_http = lower.starts_with("http://") || lower.starts_with("https://");
    if !is_http {
        return remote == host;
    }
    let remote_with_port = if strip_port(&remote) == remote {
        let port = if lower.starts_with("https://") {
            443
        } else {
            80
        };
        format!("{remote}:{port}")
    } else {
        remote
    };
    remote_with_port == host_port
}

/// Every remote of the checkout in the current directory: `(name, url)`, or why there are none.
fn remotes() -> Result<Vec<(String, String)>, String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get-regexp", r"^remote\..*\.url$"])
        .output()
        .map_err(|_| "git is not available to infer it".to_owned())?;
    let inside = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !inside {
        return Err("this directory is not a git checkout".into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut list: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let (key, url) = l.split_once(' ')?;
            let name = key.strip_prefix("remote.")?.strip_suffix(".url")?;
            Some((name.to_owned(), url.trim().to_owned()))
        })
        .collect();
    if list.is_empty() {
        return Err("this git checkout has no remotes".into());
    }
    // `origin` first, then by name: the choice is stable.
    list.sort_by_key(|(n, _)| (n != "origin", n.clone()));
    Ok(list)
}

/// Picks the remote on `server` among `remotes`, or explains why none is.
fn pick(remotes: &[(String, String)], server: &str) -> Result<(String, String), String> {
    let on_server: Vec<&(String, String)> = remotes
        .iter()
        .filter(|(_, u)| same_server(u, server))
        .collect();
    let Some((name, url)) = on_server.first() else {
        let seen: Vec<String> = remotes
            .iter()
            .map(|(n, u)| format!("{n} → {}", remote_host(u).unwrap_or_else(|| u.clone())))
            .collect();
        let want = server_host(server)
            .map(|(_, hp)| hp)
            .unwrap_or_else(|| server.to_owned());
        return Err(format!(
            "no git remote is on the server {want} (PFAI_URL): {}",
            seen.join(", ")
        ));
    };
    let repo = from_remote_url(url)
        .ok_or_else(|| format!("cannot tell owner/repo from the remote {name} ({url})"))?;
    Ok((name.clone(), repo))
}

/// Resolves the repository for a command.
pub fn resolve(flag: Option<&str>) -> CliResult<String> {
    if let Some(r) = flag {
        return validate(r);
    }
    let server = super::client::server_url();
    let why =
        |reason: String| CliError::Msg(format!("no repository: pass -R owner/repo ({reason})"));
    let list = remotes().map_err(why)?;
    let (name, repo) = pick(&list, &server).map_err(why)?;
    if name != "origin" {
        eprintln!("using {repo} from git remote {name}");
    }
    validate(&repo)
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

    #[test]
    fn the_remote_on_the_server_is_picked_whatever_its_name() {
        let remotes = vec![
            (
                "origin".to_owned(),
                "git@github.com:acme/app.git".to_owned(),
            ),
            (
                "pfai".to_owned(),
                "http://127.0.0.1:3000/acme/app.git".to_owned(),
            ),
        ];
        assert_eq!(
            pick(&remotes, "http://127.0.0.1:3000"),
            Ok(("pfai".to_owned(), "acme/app".to_owned()))
        );
        let err = pick(&remotes, "http://127.0.0.1:4000").unwrap_err();
        assert!(
            err.contains("127.0.0.1:4000") && err.contains("origin → github.com"),
            "{err}"
        );
        assert!(same_server(
            "https://x:t@pfai.example.com/a/b",
            "https://pfai.example.com:443/"
        ));
        assert!(!same_server(
            "http://pfai.example.com:3001/a/b",
            "http://pfai.example.com:3000"
        ));
        assert!(same_server(
            "ssh://git@pfai.example.com:2222/a/b",
            "https://pfai.example.com"
        ));
    }
}
