//! `pfai release ...`: the seed's release commands, shaped like `gh release`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{CliError, CliResult, Client};
use super::{print_json, print_table, read_body, repo};

/// Release subcommands.
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Create a release (and its tag at --target when the tag does not exist), then upload assets.
    ///
    /// Example: pfai release create v1.2.3 --target main --title "v1.2.3" --body-file CHANGELOG.md dist/*.tar.gz
    Create {
        /// Tag name.
        tag: String,
        /// Branch or commit SHA to tag when the tag does not exist yet.
        #[arg(long)]
        target: Option<String>,
        /// Title (defaults to the tag).
        #[arg(long)]
        title: Option<String>,
        /// Release notes.
        #[arg(long)]
        body: Option<String>,
        /// Read the notes from a file (`-` for standard input).
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Save as a draft (visible to maintainers only; its tag is created when published).
        #[arg(long)]
        draft: bool,
        /// Mark as a pre-release (never Latest).
        #[arg(long)]
        prerelease: bool,
        /// Files to upload as assets.
        assets: Vec<PathBuf>,
        /// owner/repo (default: from the origin remote).
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// List releases, newest first, with Latest / Draft / Pre-release markers.
    ///
    /// Example: pfai release list --limit 10
    List {
        /// How many.
        #[arg(long, default_value_t = 30)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Show one release (a tag, or `latest`).
    ///
    /// Example: pfai release view latest
    View {
        /// Tag, or `latest`.
        tag: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Change a release's title, notes, draft or pre-release flag (only what you pass).
    ///
    /// Example: pfai release edit v1.2.3 --draft=false
    Edit {
        /// Tag.
        tag: String,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New notes.
        #[arg(long)]
        body: Option<String>,
        /// Read new notes from a file (`-` for standard input).
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Draft (`--draft=false` publishes).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        draft: Option<bool>,
        /// Pre-release.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        prerelease: Option<bool>,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Delete a release and its assets (the git tag stays).
    ///
    /// Example: pfai release delete v1.2.3 --yes
    Delete {
        /// Tag.
        tag: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Upload assets to a release.
    ///
    /// Example: pfai release upload v1.2.3 dist/app-linux-amd64.tar.gz --clobber
    Upload {
        /// Tag.
        tag: String,
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Replace assets of the same name.
        #[arg(long)]
        clobber: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Download assets (each verified against its sha256).
    ///
    /// Example: pfai release download latest --pattern '*.tar.gz' --dir dist
    Download {
        /// Tag, or `latest`.
        tag: String,
        /// Only assets whose name matches this glob.
        #[arg(long)]
        pattern: Option<String>,
        /// Directory to write to.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Skip files that already exist.
        #[arg(long)]
        skip_existing: bool,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Delete one asset by name.
    ///
    /// Example: pfai release delete-asset v1.2.3 dist-linux-amd64.tar.gz
    DeleteAsset {
        /// Tag.
        tag: String,
        /// Asset name.
        name: String,
        /// owner/repo.
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

fn seg(s: &str) -> String {
    crate::domain::release::url_segment(s)
}

async fn get_release(c: &Client, repo: &str, tag: &str) -> CliResult<Value> {
    let t = if tag == "latest" {
        "latest".to_owned()
    } else {
        seg(tag)
    };
    c.get_or(&format!("/api/v1/forge/{repo}/releases/{t}"), || {
        if tag == "latest" {
            format!("{repo} has no published release yet")
        } else {
            format!("release {tag} not found in {repo}")
        }
    })
    .await
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        pb.set_style(style);
    }
    pb.set_message(what.to_owned());
    pb
}

/// Streams one file as an asset.
pub async fn upload_file(c: &Client, repo: &str, tag: &str, path: &Path) -> CliResult<Value> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::Msg(format!("{} is not a file", path.display())))?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Msg(format!("cannot open {}: {e}", path.display())))?;
    let len = file.metadata().await?.len();
    let pb = progress(len, &name);
    let pb2 = pb.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            pb2.inc(c.len() as u64);
        }
    });
    let mime = mime_guess::from_path(path)
        .first_or_octet_stream()
        .to_string();
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name.clone())
            .mime_str(&mime)
            .map_err(|e| CliError::Msg(e.to_string()))?;
    let req = c
        .request(
            Method::POST,
            &format!("/api/v1/forge/{repo}/releases/{}/assets", seg(tag)),
        )
        .multipart(reqwest::multipart::Form::new().part("file", part));
    let resp = c.send(req).await;
    pb.finish_and_clear();
    let v: Value = resp?
        .json()
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    eprintln!(
        "uploaded {name} ({} bytes, sha256 {})",
        v["size"],
        v["sha256"].as_str().unwrap_or("")
    );
    Ok(v)
}

async fn download_asset(c: &Client, asset: &Value, dir: &Path) -> CliResult<PathBuf> {
    let name = asset["name"].as_str().unwrap_or_default();
    let safe = crate::ids::AssetName::parse(name)
        .map_err(|e| CliError::Msg(format!("refusing asset name {name:?}: {e}")))?;
    let dst = dir.join(safe.as_str());
    let url = asset["downloadUrl"].as_str().unwrap_or_default();
    let path = url
        .strip_prefix(&c.url)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // The server may know itself under another host name: keep only the path.
            url.split_once("/api/")
                .map(|(_, p)| format!("/api/{p}"))
                .unwrap_or_default()
        });
    let resp = c.send(c.request(Method::GET, &path)).await?;
    let len = resp.content_length().unwrap_or(0);
    let pb = progress(len, name);
    let tmp = dir.join(format!(".{}.part", safe.as_str()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    use sha2::Digest as _;
    use tokio::io::AsyncWriteExt;
    let mut h = sha2::Sha256::new();
    let mut stream = resp.bytes_stream();
    let result: CliResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| CliError::Msg(format!("download of {name} failed: {e}")))?;
            h.update(&chunk);
            file.write_all(&chunk).await?;
            pb.inc(chunk.len() as u64);
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    pb.finish_and_clear();
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let got = hex::encode(h.finalize());
    if Some(got.as_str()) != asset["sha256"].as_str() {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(CliError::Msg(format!(
            "{name}: sha256 mismatch (got {got}); the download was discarded"
        )));
    }
    tokio::fs::rename(&tmp, &dst).await?;
    Ok(dst)
}

fn kind(r: &Value) -> &'static str {
    if r["draft"] == true {
        "Draft"
    } else if r["latest"] == true {
        "Latest"
    } else if r["prerelease"] == true {
        "Pre-release"
    } else {
        ""
    }
}

/// Runs a release subcommand.
pub async fn run(cmd: ReleaseCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        ReleaseCmd::Create {
            tag,
            target,
            title,
            body,
            body_file,
            draft,
            prerelease,
            assets,
            repo,
        } => {
            let repo = repo::resolve(repo.as_deref())?;
            c.token()?;
            for a in &assets {
                if !a.is_file() {
                    return Err(CliError::Msg(format!(
                        "{} is not a file; nothing was created",
                        a.display()
                    )));
                }
            }
            let body = read_body(body, body_file)?;
            let mut req = json!({"tagName": tag, "draft": draft, "prerelease": prerelease});
            if let Some(t) = target {
                req["targetCommit"] = json!(t);
            }
            if let Some(t) = title {
                req["name"] = json!(t);
            }
            if let Some(b) = body {
                req["body"] = json!(b);
            }
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/forge/{repo}/releases"),
                    Some(&req),
                )
                .await?;
            for a in &assets {
                upload_file(&c, &repo, &tag, a).await?;
            }
            println!("{}", release_url(&c, &repo, &v));
            Ok(())
        }
        ReleaseCmd::List { limit, json, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let list = c
                .list_all(&format!("/api/v1/forge/{repo}/releases"), limit)
                .await?;
            if json {
                print_json(&Value::Array(list));
                return Ok(());
            }
            if list.is_empty() {
                eprintln!("no releases in {repo}");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r["name"].as_str().unwrap_or("").to_owned(),
                        kind(r).to_owned(),
                        r["tagName"].as_str().unwrap_or("").to_owned(),
                        r["publishedAt"].as_str().unwrap_or("-").to_owned(),
                    ]
                })
                .collect();
            print_table(&["TITLE", "TYPE", "TAG", "PUBLISHED"], &rows);
            Ok(())
        }
        ReleaseCmd::View { tag, json, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let r = get_release(&c, &repo, &tag).await?;
            if json {
                print_json(&r);
                return Ok(());
            }
            let k = kind(&r);
            println!(
                "{}{}",
                r["name"].as_str().unwrap_or(""),
                if k.is_empty() {
                    String::new()
                } else {
                    format!("  [{k}]")
                }
            );
            println!(
                "tag:       {}{}",
                r["tagName"].as_str().unwrap_or(""),
                if r["tagExists"] == false {
                    " (tag deleted)"
                } else {
                    ""
                }
            );
            println!("commit:    {}", r["targetCommit"].as_str().unwrap_or(""));
            println!(
                "author:    {}",
                r["author"]["username"].as_str().unwrap_or("")
            );
            println!("published: {}", r["publishedAt"].as_str().unwrap_or("-"));
            if let Some(b) = r["body"].as_str().filter(|b| !b.is_empty()) {
                println!("\n{b}");
            }
            let assets = r["assets"].as_array().cloned().unwrap_or_default();
            if !assets.is_empty() {
                println!("\nassets:");
                for a in assets {
                    println!(
                        "  {}  {} bytes  {} downloads  sha256:{}",
                        a["name"].as_str().unwrap_or(""),
                        a["size"],
                        a["downloadCount"],
                        a["sha256"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        ReleaseCmd::Edit {
            tag,
            title,
            body,
            body_file,
            draft,
            prerelease,
            repo,
        } => {
            let repo = repo::resolve(repo.as_deref())?;
            let body = read_body(body, body_file)?;
            let mut patch = json!({});
            if let Some(t) = title {
                patch["name"] = json!(t);
            }
            if let Some(b) = body {
                patch["body"] = json!(b);
            }
            if let Some(d) = draft {
                patch["draft"] = json!(d);
            }
            if let Some(p) = prerelease {
                patch["prerelease"] = json!(p);
            }
            if patch.as_object().is_some_and(|o| o.is_empty()) {
                return Err(CliError::Msg(
                    "nothing to change: pass --title, --body, --draft or --prerelease".into(),
                ));
            }
            get_release(&c, &repo, &tag).await?;
            let v = c
                .call(
                    Method::PATCH,
                    &format!("/api/v1/forge/{repo}/releases/{}", seg(&tag)),
                    Some(&patch),
                )
                .await?;
            println!("{}", release_url(&c, &repo, &v));
            Ok(())
        }
        ReleaseCmd::Delete { tag, yes, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            get_release(&c, &repo, &tag).await?;
            if !yes && !confirm(&format!("delete release {tag} of {repo} and its assets?"))? {
                return Err(CliError::Msg(
                    "not deleted (pass --yes to skip the question)".into(),
                ));
            }
            c.call(
                Method::DELETE,
                &format!("/api/v1/forge/{repo}/releases/{}", seg(&tag)),
                None,
            )
            .await?;
            eprintln!("deleted release {tag} (the tag stays)");
            Ok(())
        }
        ReleaseCmd::Upload {
            tag,
            files,
            clobber,
            repo,
        } => {
            let repo = repo::resolve(repo.as_deref())?;
            let r = get_release(&c, &repo, &tag).await?;
            let existing = r["assets"].as_array().cloned().unwrap_or_default();
            for f in &files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(a) = existing.iter().find(|a| a["name"] == name.as_str()) {
                    if !clobber {
                        return Err(CliError::Msg(format!(
                            "release {tag} already has {name}; pass --clobber to replace it"
                        )));
                    }
                    delete_asset_by_id(&c, &repo, &tag, &a["id"]).await?;
                }
                upload_file(&c, &repo, &tag, f).await?;
            }
            Ok(())
        }
        ReleaseCmd::Download {
            tag,
            pattern,
            dir,
            skip_existing,
            repo,
        } => {
            let repo = repo::resolve(repo.as_deref())?;
            let r = get_release(&c, &repo, &tag).await?;
            let matcher = match &pattern {
                Some(p) => Some(
                    globset::Glob::new(p)
                        .map_err(|e| CliError::Msg(format!("--pattern {p:?}: {e}")))?
                        .compile_matcher(),
                ),
                None => None,
            };
            std::fs::create_dir_all(&dir)?;
            let mut n = 0;
            for a in r["assets"].as_array().cloned().unwrap_or_default() {
                let name = a["name"].as_str().unwrap_or_default();
                if matcher.as_ref().is_some_and(|m| !m.is_match(name)) {
                    continue;
                }
                n += 1;
                if skip_existing && dir.join(name).exists() {
                    eprintln!("skipped {name} (exists)");
                    continue;
                }
                let p = download_asset(&c, &a, &dir).await?;
                eprintln!("downloaded {} (sha256 verified)", p.display());
            }
            if n == 0 {
                return Err(CliError::Msg(match pattern {
                    Some(p) => format!("no asset of {tag} matches {p:?}"),
                    None => format!("release {tag} has no assets"),
                }));
            }
            Ok(())
        }
        ReleaseCmd::DeleteAsset { tag, name, repo } => {
            let repo = repo::resolve(repo.as_deref())?;
            let r = get_release(&c, &repo, &tag).await?;
            let a = r["assets"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == name.as_str()).cloned())
                .ok_or_else(|| CliError::Msg(format!("release {tag} has no asset named {name}")))?;
            delete_asset_by_id(&c, &repo, &tag, &a["id"]).await?;
            eprintln!("deleted {name} from {tag}");
            Ok(())
        }
    }
}

async fn delete_asset_by_id(c: &Client, repo: &str, tag: &str, id: &Value) -> CliResult<()> {
    let path = format!("/api/v1/forge/{repo}/releases/{}/assets/{id}", seg(tag));
    c.call(Method::DELETE, &path, None).await.map(|_| ())
}

fn release_url(c: &Client, repo: &str, v: &Value) -> String {
    format!(
        "{}/api/v1/forge/{repo}/releases/{}",
        c.url,
        seg(v["tagName"].as_str().unwrap_or(""))
    )
}

/// Asks a yes/no question on a terminal; without one, the answer is no.
pub fn confirm(question: &str) -> CliResult<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
