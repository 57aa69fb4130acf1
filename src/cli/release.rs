//! `pfai release ...`: the seed's release commands, shaped like `gh release`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::client::{decode, CliError, CliResult, Client};
use super::{print_json, print_table, read_body, repo};
use crate::api::{AssetView, CreateRelease, ReleaseView, UpdateRelease};

/// Release subcommands.
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Create a release (and its tag at --target when the tag does not exist), then upload assets.
    ///
    /// Example: pfai release create v1.2.3 --target main --title "v1.2.3" --body-file CHANGELOG.md dist/*.tar.gz
    Create(CreateArgs),
    /// List releases, newest first, with Latest / Draft / Pre-release markers.
    ///
    /// Example: pfai release list --limit 10
    List(ListArgs),
    /// Show one release (a tag, or `latest`).
    ///
    /// Example: pfai release view latest
    View(ViewArgs),
    /// Change a release's title, notes, draft or pre-release flag (only what you pass).
    ///
    /// Example: pfai release edit v1.2.3 --draft=false
    Edit(EditArgs),
    /// Delete a release and its assets (the git tag stays).
    ///
    /// Example: pfai release delete v1.2.3 --yes
    Delete(DeleteArgs),
    /// Upload assets to a release.
    ///
    /// Example: pfai release upload v1.2.3 dist/app-linux-amd64.tar.gz --clobber
    Upload(UploadArgs),
    /// Download assets (each verified against its sha256).
    ///
    /// Example: pfai release download latest --pattern '*.tar.gz' --dir dist
    Download(DownloadArgs),
    /// Delete one asset by name.
    ///
    /// Example: pfai release delete-asset v1.2.3 dist-linux-amd64.tar.gz
    DeleteAsset(DeleteAssetArgs),
    /// Check a release's signed attestation: its signature, its assets against the release the
    /// server reports, its commit against the tag. Offline with --attestation FILE --key FILE.
    ///
    /// Example: pfai release verify v1.2.3 --key pfai-attestation.pem
    Verify(super::verify::VerifyArgs),
    /// Check a local file against the sha256 the release's attestation records for its name.
    ///
    /// Example: pfai release verify-asset v1.2.3 dist/app.tar.gz --attestation att.json --key key.pem
    VerifyAsset(super::verify::VerifyAssetArgs),
}

/// The arguments of `pfai release create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Tag name.
    pub tag: String,
    /// Branch or commit SHA to tag when the tag does not exist yet.
    #[arg(long)]
    pub target: Option<String>,
    /// Title (defaults to the tag).
    #[arg(long)]
    pub title: Option<String>,
    /// Release notes.
    #[arg(long)]
    pub body: Option<String>,
    /// Read the notes from a file (`-` for standard input).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Save as a draft (visible to maintainers only; its tag is created when published).
    #[arg(long)]
    pub draft: bool,
    /// Mark as a pre-release (never Latest).
    #[arg(long)]
    pub prerelease: bool,
    /// Files to upload as assets.
    pub assets: Vec<PathBuf>,
    /// owner/repo (default: from the origin remote).
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release view`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// Tag, or `latest`.
    pub tag: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// Tag.
    pub tag: String,
    /// New title.
    #[arg(long)]
    pub title: Option<String>,
    /// New notes.
    #[arg(long)]
    pub body: Option<String>,
    /// Read new notes from a file (`-` for standard input).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Draft (`--draft=false` publishes).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub draft: Option<bool>,
    /// Pre-release.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub prerelease: Option<bool>,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Tag.
    pub tag: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Tag.
    pub tag: String,
    /// Files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Replace assets of the same name.
    #[arg(long)]
    pub clobber: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release download`.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// Tag, or `latest`.
    pub tag: String,
    /// Only assets whose name matches this glob.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Directory to write to.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Skip files that already exist.
    #[arg(long)]
    pub skip_existing: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release delete-asset`.
#[derive(Debug, clap::Args)]
pub struct DeleteAssetArgs {
    /// Tag.
    pub tag: String,
    /// Asset name.
    pub name: String,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}
fn seg(s: &str) -> String {
    crate::domain::release::url_segment(s)
}

/// The release as the server sent it (for `--json`), and read as its type.
async fn get_release_raw(c: &Client, repo: &str, tag: &str) -> CliResult<Value> {
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

async fn get_release(c: &Client, repo: &str, tag: &str) -> CliResult<ReleaseView> {
    decode(get_release_raw(c, repo, tag).await?)
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
pub async fn upload_file(c: &Client, repo: &str, tag: &str, path: &Path) -> CliResult<AssetView> {
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
    let v: AssetView = resp?
        .json()
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    eprintln!("uploaded {name} ({} bytes, sha256 {})", v.size, v.sha256);
    Ok(v)
}

async fn download_asset(c: &Client, asset: &AssetView, dir: &Path) -> CliResult<PathBuf> {
    let name = asset.name.as_str();
    let safe = crate::ids::AssetName::parse(name)
        .map_err(|e| CliError::Msg(format!("refusing asset name {name:?}: {e}")))?;
    let dst = dir.join(safe.as_str());
    let url = asset.download_url.as_str();
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
    if got != asset.sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(CliError::Msg(format!(
            "{name}: sha256 mismatch (got {got}); the download was discarded"
        )));
    }
    tokio::fs::rename(&tmp, &dst).await?;
    Ok(dst)
}

fn kind(r: &ReleaseView) -> &'static str {
    if r.draft {
        "Draft"
    } else if r.latest {
        "Latest"
    } else if r.prerelease {
        "Pre-release"
    } else {
        ""
    }
}

/// Runs a release subcommand.
pub async fn run(cmd: ReleaseCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        ReleaseCmd::Create(a) => create(&c, a).await,
        ReleaseCmd::List(a) => list(&c, a).await,
        ReleaseCmd::View(a) => view(&c, a).await,
        ReleaseCmd::Edit(a) => edit(&c, a).await,
        ReleaseCmd::Delete(a) => delete(&c, a).await,
        ReleaseCmd::Upload(a) => upload(&c, a).await,
        ReleaseCmd::Download(a) => download(&c, a).await,
        ReleaseCmd::DeleteAsset(a) => delete_asset(&c, a).await,
        ReleaseCmd::Verify(a) => super::verify::verify(&c, a).await,
        ReleaseCmd::VerifyAsset(a) => super::verify::verify_asset(&c, a).await,
    }
}

/// `pfai release create`: refuses missing files before anything is created, then creates the
/// release and uploads the assets.
async fn create(c: &Client, a: CreateArgs) -> CliResult<()> {
    let repo = repo::resolve(a.repo.as_deref())?;
    c.token()?;
    for f in &a.assets {
        if !f.is_file() {
            return Err(CliError::Msg(format!(
                "{} is not a file; nothing was created",
                f.display()
            )));
        }
    }
    let req = CreateRelease {
        body: read_body(a.body, a.body_file)?,
        tag_name: a.tag,
        target_commit: a.target,
        name: a.title,
        draft: a.draft,
        prerelease: a.prerelease,
    };
    let v: ReleaseView = c
        .call_as(
            Method::POST,
            &format!("/api/v1/forge/{repo}/releases"),
            &req,
        )
        .await?;
    for f in &a.assets {
        upload_file(c, &repo, &req.tag_name, f).await?;
    }
    println!("{}", release_url(c, &repo, &v));
    Ok(())
}

/// `pfai release list`.
async fn list(c: &Client, a: ListArgs) -> CliResult<()> {
    let repo = repo::resolve(a.repo.as_deref())?;
    let list = c
        .list_all(&format!("/api/v1/forge/{repo}/releases"), a.limit)
        .await?;
    if a.json {
        print_json(&Value::Array(list));
        return Ok(());
    }
    let list: Vec<ReleaseView> = decode(Value::Array(list))?;
    if list.is_empty() {
        eprintln!("no releases in {repo}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                kind(r).to_owned(),
                r.tag_name.clone(),
                r.published_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["TITLE", "TYPE", "TAG", "PUBLISHED"], &rows);
    Ok(())
}

/// `pfai release view`.
async fn view(c: &Client, a: ViewArgs) -> CliResult<()> {
    let repo = repo::resolve(a.repo.as_deref())?;
    let raw = get_release_raw(c, &repo, &a.tag).await?;
    if a.json {
        print_json(&raw);
        return Ok(());
    }
    let r: ReleaseView = decode(raw)?;
    let k = kind(&r);
    println!(
        "{}{}",
        r.name,
        if k.is_empty() {
            String::new()
        } else {
            format!("  [{k}]")
        }
    );
    println!(
        "tag:       {}{}",
        r.tag_name,
        if r.tag_exists { "" } else { " (tag deleted)" }
    );
    println!("commit:    {}", r.target_commit);
    println!("author:    {}", r.author.username);
    println!("published: {}", r.published_at.as_deref().unwrap_or("-"));
    if !r.body.is_empty() {
        println!("\n{}", r.body);
    }
    if !r.assets.is_empty() {
        println!("\nassets:");
        for a in &r.assets {
            println!(
                "  {}  {} bytes  {} downloads  sha256:{}",
                a.name, a.size, a.download_count, a.sha256
            );
        }
    }
    Ok(())
}

/// `pfai release edit`: sends only what was passed.
async fn edit(c: &Client, a: EditArgs) -> CliResult<()> {
    let repo = repo::resolve(a.repo.as_deref())?;
    let patch = UpdateRelease {
        name: a.title,
        body: read_body(a.body, a.body_file)?,
        draft: a.draft,
        prerelease: a.prerelease,
    };
    if patch.is_empty() {
        return Err(CliError::Msg(
            "nothing to change: pass --title, --body, --draft or --prerelease".into(),
        ));
    }
    get_release(c, &repo, &a.tag).await?;
    let v: ReleaseView = c
        .call_as(
            Method::PATCH,
            &format!("/api/v1/forge/{repo}/releases/{}", seg(&a.tag)),
            &patch,
        )
        .await?;
    println!("{}", release_url(c, &repo, &v));
    Ok(())
}

/// `pfai release delete`: asks first unless `--yes`.
async fn delete(c: &Client, a: DeleteArgs) -> CliResult<()> {
    let (tag, repo) = (a.tag, repo::resolve(a.repo.as_deref())?);
    get_release(c, &repo, &tag).await?;
    if !a.yes && !confirm(&format!("delete release {tag} of {repo} and its assets?"))? {
        return Err(CliError::Msg(
            "not deleted (pass --yes to skip the question)".into(),
        ));
    }
    c.call(
        Method::DELETE,
        &format!("/api/v1/forge/{repo}/releases/{}", seg(&tag)),
    )
    .await?;
    eprintln!("deleted release {tag} (the tag stays)");
    Ok(())
}

/// `pfai release upload`: an existing asset of the same name is an error unless `--clobber`.
async fn upload(c: &Client, a: UploadArgs) -> CliResult<()> {
    let (tag, repo) = (a.tag, repo::resolve(a.repo.as_deref())?);
    let r = get_release(c, &repo, &tag).await?;
    for f in &a.files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(existing) = r.assets.iter().find(|x| x.name == name) {
            if !a.clobber {
                return Err(CliError::Msg(format!(
                    "release {tag} already has {name}; pass --clobber to replace it"
                )));
            }
            delete_asset_by_id(c, &repo, &tag, existing.id).await?;
        }
        upload_file(c, &repo, &tag, f).await?;
    }
    Ok(())
}

/// `pfai release download`: every asset (or those matching `--pattern`), each verified.
async fn download(c: &Client, a: DownloadArgs) -> CliResult<()> {
    let (tag, dir) = (a.tag, a.dir);
    let repo = repo::resolve(a.repo.as_deref())?;
    let r = get_release(c, &repo, &tag).await?;
    let matcher = match &a.pattern {
        Some(p) => Some(
            globset::Glob::new(p)
                .map_err(|e| CliError::Msg(format!("--pattern {p:?}: {e}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for asset in &r.assets {
        let name = asset.name.as_str();
        if matcher.as_ref().is_some_and(|m| !m.is_match(name)) {
            continue;
        }
        n += 1;
        if a.skip_existing && dir.join(name).exists() {
            eprintln!("skipped {name} (exists)");
            continue;
        }
        let p = download_asset(c, asset, &dir).await?;
        eprintln!("downloaded {} (sha256 verified)", p.display());
    }
    if n == 0 {
        return Err(CliError::Msg(match a.pattern {
            Some(p) => format!("no asset of {tag} matches {p:?}"),
            None => format!("release {tag} has no assets"),
        }));
    }
    Ok(())
}

/// `pfai release delete-asset`.
async fn delete_asset(c: &Client, a: DeleteAssetArgs) -> CliResult<()> {
    let (tag, name) = (a.tag, a.name);
    let repo = repo::resolve(a.repo.as_deref())?;
    let r = get_release(c, &repo, &tag).await?;
    let asset = r
        .assets
        .iter()
        .find(|x| x.name == name)
        .ok_or_else(|| CliError::Msg(format!("release {tag} has no asset named {name}")))?;
    delete_asset_by_id(c, &repo, &tag, asset.id).await?;
    eprintln!("deleted {name} from {tag}");
    Ok(())
}

async fn delete_asset_by_id(c: &Client, repo: &str, tag: &str, id: u64) -> CliResult<()> {
    let path = format!("/api/v1/forge/{repo}/releases/{}/assets/{id}", seg(tag));
    c.call(Method::DELETE, &path).await.map(|_| ())
}

fn release_url(c: &Client, repo: &str, v: &ReleaseView) -> String {
    format!(
        "{}/api/v1/forge/{repo}/releases/{}",
        c.url,
        seg(&v.tag_name)
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
