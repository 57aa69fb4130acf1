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
use crate::api::{GenerateNotes, GeneratedNotes, MakeLatest};

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
    /// Delete a release and its assets (the git tag stays unless --cleanup-tag).
    ///
    /// Example: pfai release delete v1.2.3 --yes --cleanup-tag
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
    /// Branch, commit SHA (a short one too) or tag to tag when the tag does not exist yet
    /// (default: the repository's default branch).
    #[arg(long)]
    pub target: Option<String>,
    /// Title (defaults to the tag).
    #[arg(short = 't', long)]
    pub title: Option<String>,
    /// Release notes.
    #[arg(short = 'n', long = "notes", visible_alias = "body")]
    pub body: Option<String>,
    /// Read the notes from a file (`-` for standard input).
    #[arg(short = 'F', long = "notes-file", visible_alias = "body-file")]
    pub body_file: Option<PathBuf>,
    /// Save as a draft (visible to maintainers only; its tag is created when published).
    #[arg(short = 'd', long)]
    pub draft: bool,
    /// Mark as a pre-release (never Latest).
    #[arg(short = 'p', long)]
    pub prerelease: bool,
    /// Put notes generated from the git history (commits since the previous release, grouped
    /// by Conventional Commit type) before the notes given.
    #[arg(long)]
    pub generate_notes: bool,
    /// Start the generated notes after this tag (default: the nearest earlier release's tag).
    #[arg(long, value_name = "TAG", requires = "generate_notes")]
    pub notes_start_tag: Option<String>,
    /// Mark as Latest (`--latest=false`: leave Latest where it is). Default: a published
    /// release becomes Latest.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub latest: Option<bool>,
    /// Abort unless the tag already exists on the server (no tag is made).
    #[arg(long)]
    pub verify_tag: bool,
    /// Files to upload as assets; `file#label` sets the asset's display label.
    pub assets: Vec<String>,
    /// owner/repo (default: from the origin remote).
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many.
    #[arg(short = 'L', long, default_value_t = 30)]
    pub limit: usize,
    /// Leave drafts out.
    #[arg(long)]
    pub exclude_drafts: bool,
    /// Leave pre-releases out.
    #[arg(long)]
    pub exclude_pre_releases: bool,
    /// Print JSON: every field, or only the comma-separated FIELDS (`--json tagName,name`).
    #[arg(long, value_name = "FIELDS", num_args = 0..=1, default_missing_value = "")]
    pub json: Option<String>,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release view`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// Tag, or `latest`.
    pub tag: String,
    /// Print JSON: every field, or only the comma-separated FIELDS.
    #[arg(long, value_name = "FIELDS", num_args = 0..=1, default_missing_value = "")]
    pub json: Option<String>,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
    /// Print the release's web page URL (to open in a browser) instead of the release.
    #[arg(short = 'w', long)]
    pub web: bool,
}

/// The arguments of `pfai release edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// Tag.
    pub tag: String,
    /// New title.
    #[arg(short = 't', long)]
    pub title: Option<String>,
    /// New notes.
    #[arg(short = 'n', long = "notes", visible_alias = "body")]
    pub body: Option<String>,
    /// Read new notes from a file (`-` for standard input).
    #[arg(short = 'F', long = "notes-file", visible_alias = "body-file")]
    pub body_file: Option<PathBuf>,
    /// Draft (`--draft=false` publishes).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub draft: Option<bool>,
    /// Pre-release.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub prerelease: Option<bool>,
    /// Mark as Latest (`--latest=false`: it stops being Latest; the highest other version
    /// takes over).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub latest: Option<bool>,
    /// Move the release to this tag (made at `--target`, else at the release's commit, when it
    /// does not exist yet and the release is published; the old tag stays).
    #[arg(long = "tag", value_name = "TAG")]
    pub new_tag: Option<String>,
    /// The branch or commit SHA a tag that does not exist yet is made at.
    #[arg(long, value_name = "BRANCH_OR_SHA")]
    pub target: Option<String>,
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
    /// Also delete the git tag.
    #[arg(long)]
    pub cleanup_tag: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Tag.
    pub tag: String,
    /// Files; `file#label` sets the asset's display label.
    #[arg(required = true)]
    pub files: Vec<String>,
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
    /// Only assets whose name matches this glob (repeatable: any of them).
    #[arg(short = 'p', long)]
    pub pattern: Vec<String>,
    /// Directory to write to.
    #[arg(short = 'D', long, default_value = ".")]
    pub dir: PathBuf,
    /// Write the one matching asset to this file (`-`: standard output).
    #[arg(short = 'O', long)]
    pub output: Option<PathBuf>,
    /// Overwrite files that exist (otherwise an existing file is an error).
    #[arg(long, conflicts_with = "skip_existing")]
    pub clobber: bool,
    /// Skip files that already exist.
    #[arg(long)]
    pub skip_existing: bool,
    /// owner/repo.
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
    /// Download the source code archive of the tag (`tar.gz` or `zip`) instead of the assets.
    #[arg(short = 'A', long, value_name = "FORMAT", value_parser = ["tar.gz", "zip"])]
    pub archive: Option<String>,
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

/// Streams one file as an asset, with its display label when one was given (`file#label`).
pub async fn upload_file(
    c: &Client,
    repo: &str,
    tag: &str,
    path: &Path,
    label: Option<&str>,
) -> CliResult<AssetView> {
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
    let mut req = c.request(
        Method::POST,
        &format!("/api/v1/forge/{repo}/releases/{}/assets", seg(tag)),
    );
    if let Some(l) = label {
        req = req.query(&[("label", l)]);
    }
    let req = req.multipart(reqwest::multipart::Form::new().part("file", part));
    let resp = c.send(req).await;
    pb.finish_and_clear();
    let v: AssetView = resp?
        .json()
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    eprintln!("uploaded {name} ({} bytes, sha256 {})", v.size, v.sha256);
    Ok(v)
}

/// The asset's name, refused when it could escape the download directory.
fn safe_name(asset: &AssetView) -> CliResult<String> {
    let name = asset.name.as_str();
    crate::ids::AssetName::parse(name)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| CliError::Msg(format!("refusing asset name {name:?}: {e}")))
}

/// Starts the download of an asset (the server may know itself under another host name).
async fn fetch_asset(c: &Client, asset: &AssetView) -> CliResult<reqwest::Response> {
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
    c.send(c.request(Method::GET, &path)).await
}

/// Downloads an asset to `dst` through a temporary file beside it, renamed into place only
/// when its sha256 matches.
async fn download_asset(c: &Client, asset: &AssetView, dst: &Path) -> CliResult<PathBuf> {
    let name = asset.name.as_str();
    let resp = fetch_asset(c, asset).await?;
    let len = resp.content_length().unwrap_or(0);
    let pb = progress(len, name);
    let file_name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned());
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{file_name}.part"));
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
    tokio::fs::rename(&tmp, dst).await?;
    Ok(dst.to_path_buf())
}

/// `-O -`: streams an asset to standard output, checking its sha256 at the end (the bytes are
/// out already, so a mismatch is reported, not undone).
async fn download_to_stdout(c: &Client, asset: &AssetView) -> CliResult<()> {
    use sha2::Digest as _;
    use std::io::Write;
    let name = asset.name.as_str();
    let resp = fetch_asset(c, asset).await?;
    let mut out = std::io::stdout();
    let mut h = sha2::Sha256::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CliError::Msg(format!("download of {name} failed: {e}")))?;
        h.update(&chunk);
        out.write_all(&chunk)?;
    }
    out.flush()?;
    let got = hex::encode(h.finalize());
    if got != asset.sha256 {
        return Err(CliError::Msg(format!(
            "{name}: sha256 mismatch (got {got}, expected {}); the output is not the asset",
            asset.sha256
        )));
    }
    Ok(())
}

/// A file argument of `create` / `upload`: its path and the label after `#`, if any.
#[derive(Debug, PartialEq)]
struct AssetArg {
    path: PathBuf,
    label: Option<String>,
}

/// `file#label` like `gh`; a file whose own name contains `#` is taken whole.
fn parse_asset(arg: &str) -> AssetArg {
    if Path::new(arg).exists() {
        return AssetArg {
            path: arg.into(),
            label: None,
        };
    }
    match arg.split_once('#') {
        Some((p, l)) => AssetArg {
            path: p.into(),
            label: Some(l.to_owned()).filter(|l| !l.is_empty()),
        },
        None => AssetArg {
            path: arg.into(),
            label: None,
        },
    }
}

/// Checks every asset argument before anything is created or uploaded: each must be a
/// readable regular file, and no two may have the same name.
fn check_assets(args: &[String]) -> Result<Vec<(AssetArg, String)>, String> {
    let mut out: Vec<(AssetArg, String)> = Vec::new();
    for arg in args {
        let a = parse_asset(arg);
        let shown = a.path.display().to_string();
        let meta = std::fs::metadata(&a.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{shown} is not a file: no such file"),
            _ => format!("{shown}: {e}"),
        })?;
        if meta.is_dir() {
            return Err(format!("{shown} is a directory, not a file"));
        }
        if !meta.is_file() {
            return Err(format!("{shown} is not a regular file"));
        }
        let name = a
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{shown} is not a file"))?;
        if out.iter().any(|(_, n)| *n == name) {
            return Err(format!("two files are named {name}"));
        }
        out.push((a, name));
    }
    Ok(out)
}

/// `gh`'s `--json` field names for the fields pfai names differently.
fn json_field_alias(f: &str) -> &str {
    match f {
        "isDraft" => "draft",
        "isPrerelease" => "prerelease",
        "isLatest" => "latest",
        "isImmutable" => "immutable",
        other => other,
    }
}

/// `--json FIELDS`: only the named fields of a release, under the names asked for.
fn select_fields(v: &Value, fields: &str) -> CliResult<Value> {
    if fields.trim().is_empty() {
        return Ok(v.clone());
    }
    let mut out = serde_json::Map::new();
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match v.get(json_field_alias(f)) {
            Some(x) => {
                out.insert(f.to_owned(), x.clone());
            }
            None => {
                let mut known: Vec<&str> = v
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                known.sort_unstable();
                return Err(CliError::Msg(format!(
                    "unknown JSON field {f:?}; available fields: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Release notes (Markdown) as plain text for a terminal: headings, lists, code blocks and
/// links made readable without the markup.
pub fn render_notes(md: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut out = String::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut link: Vec<String> = Vec::new();
    let mut in_code = false;
    let mut quote = 0usize;
    let newline = |out: &mut String, quote: usize| {
        out.push('\n');
        for _ in 0..quote {
            out.push_str("│ ");
        }
    };
    for ev in Parser::new(md) {
        match ev {
            Event::Start(Tag::Heading { .. }) => {}
            Event::End(TagEnd::Heading(_)) => {
                newline(&mut out, quote);
                newline(&mut out, quote);
            }
            Event::Start(Tag::BlockQuote(_)) => {
                quote += 1;
                out.push_str("│ ");
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                quote = quote.saturating_sub(1);
                newline(&mut out, quote);
            }
            Event::End(TagEnd::Paragraph) => {
                newline(&mut out, quote);
                if lists.is_empty() {
                    newline(&mut out, quote);
                }
            }
            Event::Start(Tag::List(first)) => {
                if !lists.is_empty() && !out.ends_with('\n') {
                    newline(&mut out, quote);
                }
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    newline(&mut out, quote);
                }
            }
            Event::Start(Tag::Item) => {
                let depth = lists.len().saturating_sub(1);
                out.push_str(&"  ".repeat(depth + 1));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("• "),
                }
            }
            Event::End(TagEnd::Item) if !out.ends_with('\n') => newline(&mut out, quote),
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => {
                in_code = false;
                newline(&mut out, quote);
            }
            Event::Start(Tag::Link { dest_url, .. }) => link.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.pop() {
                    if !out.ends_with(url.as_str()) {
                        out.push_str(&format!(" ({url})"));
                    }
                }
            }
            Event::Text(t) if in_code => {
                for line in t.lines() {
                    out.push_str("    ");
                    out.push_str(line);
                    newline(&mut out, quote);
                }
            }
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                out.push_str(&t)
            }
            Event::SoftBreak | Event::HardBreak => newline(&mut out, quote),
            Event::Rule => {
                out.push_str("────────");
                newline(&mut out, quote);
                newline(&mut out, quote);
            }
            _ => {}
        }
    }
    out.trim_end().to_owned()
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

/// `--latest[=BOOL]` as the API's `makeLatest`.
fn make_latest(latest: bool) -> MakeLatest {
    if latest {
        MakeLatest::True
    } else {
        MakeLatest::False
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
    let assets =
        check_assets(&a.assets).map_err(|e| CliError::Msg(format!("{e}; nothing was created")))?;
    if a.verify_tag {
        let path = format!("/api/v1/forge/{repo}/tags/{}", seg(&a.tag));
        if let Err(CliError::Api { status: 404, .. }) = c.call(Method::GET, &path).await {
            return Err(CliError::Msg(format!(
                "tag {} does not exist in {repo} (--verify-tag); nothing was created",
                a.tag
            )));
        }
    }
    let mut body = read_body(a.body, a.body_file)?;
    let mut title = a.title;
    if a.generate_notes {
        // Like gh: ask for the notes first, then create with them.
        let req = GenerateNotes {
            tag_name: a.tag.clone(),
            target_commit: a.target.clone(),
            previous_tag_name: a.notes_start_tag,
        };
        let notes: GeneratedNotes = c
            .call_as(
                Method::POST,
                &format!("/api/v1/forge/{repo}/releases/generate-notes"),
                &req,
            )
            .await?;
        body = Some(match body.filter(|b| !b.trim().is_empty()) {
            Some(b) => format!("{}\n{b}", notes.body),
            None => notes.body,
        });
        title = title.or(Some(notes.name));
    }
    let req = CreateRelease {
        body,
        tag_name: a.tag,
        target_commit: a.target,
        name: title,
        draft: a.draft,
        prerelease: a.prerelease,
        generate_notes: false,
        make_latest: a.latest.map(make_latest),
    };
    let v: ReleaseView = c
        .call_as(
            Method::POST,
            &format!("/api/v1/forge/{repo}/releases"),
            &req,
        )
        .await
        .map_err(name_cli_flags)?;
    for (f, _) in &assets {
        upload_file(c, &repo, &req.tag_name, &f.path, f.label.as_deref()).await?;
    }
    println!("{}", release_url(c, &repo, &v));
    Ok(())
}

/// `pfai release list`.
async fn list(c: &Client, a: ListArgs) -> CliResult<()> {
    let repo = repo::resolve(a.repo.as_deref())?;
    let filtering = a.exclude_drafts || a.exclude_pre_releases;
    let raw = c
        .list_all(
            &format!("/api/v1/forge/{repo}/releases"),
            if filtering { usize::MAX } else { a.limit },
        )
        .await?;
    let views: Vec<ReleaseView> = decode(Value::Array(raw.clone()))?;
    let (raw, list): (Vec<Value>, Vec<ReleaseView>) = raw
        .into_iter()
        .zip(views)
        .filter(|(_, r)| {
            !((a.exclude_drafts && r.draft) || (a.exclude_pre_releases && r.prerelease))
        })
        .take(a.limit)
        .unzip();
    if let Some(fields) = &a.json {
        let picked = raw
            .iter()
            .map(|v| select_fields(v, fields))
            .collect::<CliResult<Vec<Value>>>()?;
        print_json(&Value::Array(picked));
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
    if let Some(fields) = &a.json {
        print_json(&select_fields(&raw, fields)?);
        return Ok(());
    }
    let r: ReleaseView = decode(raw)?;
    if a.web {
        println!("{}", release_url(c, &repo, &r));
        return Ok(());
    }
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
    println!("url:       {}", release_url(c, &repo, &r));
    if !r.body.is_empty() {
        // Rendered for people; piped, the Markdown as written (like `gh`).
        if std::io::stdout().is_terminal() {
            println!("\n{}", render_notes(&r.body));
        } else {
            println!("\n{}", r.body);
        }
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
        make_latest: a.latest.map(make_latest),
        tag_name: a.new_tag,
        target_commit: a.target,
    };
    if patch.is_empty() {
        return Err(CliError::Msg(
            "nothing to change: pass --title, --notes, --notes-file, --draft, --prerelease, \
             --latest, --tag or --target"
                .into(),
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
    if !a.yes {
        // Like `gh`: no question without a terminal to answer it.
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Msg(
                "--yes required when not running interactively; nothing was deleted".into(),
            ));
        }
        let what = if a.cleanup_tag {
            "its assets and its git tag"
        } else {
            "its assets"
        };
        if !confirm(&format!("delete release {tag} of {repo}, {what}?"))? {
            return Err(CliError::Msg(
                "not deleted (pass --yes to skip the question)".into(),
            ));
        }
    }
    c.call(
        Method::DELETE,
        &format!("/api/v1/forge/{repo}/releases/{}", seg(&tag)),
    )
    .await?;
    if !a.cleanup_tag {
        eprintln!("deleted release {tag} (the tag stays)");
        return Ok(());
    }
    let path = format!("/api/v1/forge/{repo}/tags/{}", seg(&tag));
    match c.call(Method::DELETE, &path).await {
        Ok(_) => eprintln!("deleted release {tag} and its tag"),
        Err(CliError::Api { status: 404, .. }) => {
            eprintln!("deleted release {tag} (its tag did not exist)")
        }
        Err(e) => {
            return Err(CliError::Msg(format!(
                "deleted release {tag}, but not its tag: {e}"
            )))
        }
    }
    Ok(())
}

/// `pfai release upload`: an existing asset of the same name is an error unless `--clobber`.
async fn upload(c: &Client, a: UploadArgs) -> CliResult<()> {
    let (tag, repo) = (a.tag, repo::resolve(a.repo.as_deref())?);
    let r = get_release(c, &repo, &tag).await?;
    // Every file is checked before any is uploaded: a typo in the last one uploads nothing.
    let files =
        check_assets(&a.files).map_err(|e| CliError::Msg(format!("{e}; nothing was uploaded")))?;
    if !a.clobber {
        if let Some((_, name)) = files
            .iter()
            .find(|(_, n)| r.assets.iter().any(|x| x.name == *n))
        {
            return Err(CliError::Msg(format!(
                "release {tag} already has {name}; pass --clobber to replace it (nothing was uploaded)"
            )));
        }
    }
    for (f, name) in &files {
        if let Some(existing) = r.assets.iter().find(|x| x.name == *name) {
            delete_asset_by_id(c, &repo, &tag, existing.id).await?;
        }
        upload_file(c, &repo, &tag, &f.path, f.label.as_deref()).await?;
    }
    Ok(())
}

/// `pfai release download`: every asset (or those matching `--pattern`), each verified.
async fn download(c: &Client, a: DownloadArgs) -> CliResult<()> {
    let (tag, dir) = (a.tag, a.dir);
    let repo = repo::resolve(a.repo.as_deref())?;
    let r = get_release(c, &repo, &tag).await?;
    if let Some(format) = &a.archive {
        let to = ArchiveTo {
            dir: &dir,
            output: a.output.as_deref(),
            clobber: a.clobber,
            skip_existing: a.skip_existing,
        };
        return download_archive(c, &repo, &r.tag_name, format, to).await;
    }
    let mut globs = globset::GlobSetBuilder::new();
    for p in &a.pattern {
        globs.add(
            globset::Glob::new(p).map_err(|e| CliError::Msg(format!("--pattern {p:?}: {e}")))?,
        );
    }
    let globs = globs
        .build()
        .map_err(|e| CliError::Msg(format!("--pattern: {e}")))?;
    let chosen: Vec<&AssetView> = r
        .assets
        .iter()
        .filter(|x| a.pattern.is_empty() || globs.is_match(&x.name))
        .collect();
    if chosen.is_empty() {
        return Err(CliError::Msg(if a.pattern.is_empty() {
            format!("release {tag} has no assets")
        } else {
            format!("no asset of {tag} matches {}", a.pattern.join(", "))
        }));
    }
    let targets: Vec<(&AssetView, PathBuf)> = match &a.output {
        Some(out) => {
            if chosen.len() != 1 {
                let names: Vec<&str> = chosen.iter().map(|x| x.name.as_str()).collect();
                return Err(CliError::Msg(format!(
                    "--output takes one asset, but {} match ({}); narrow it with --pattern",
                    chosen.len(),
                    names.join(", ")
                )));
            }
            if out.as_os_str() == "-" {
                return download_to_stdout(c, chosen[0]).await;
            }
            vec![(chosen[0], out.clone())]
        }
        None => chosen
            .iter()
            .map(|x| Ok((*x, dir.join(safe_name(x)?))))
            .collect::<CliResult<_>>()?,
    };
    // Decided for every file before anything is downloaded.
    if !a.clobber && !a.skip_existing {
        if let Some((_, p)) = targets.iter().find(|(_, p)| p.exists()) {
            return Err(CliError::Msg(format!(
                "{} already exists; pass --clobber to overwrite it or --skip-existing to keep it",
                p.display()
            )));
        }
    }
    if a.output.is_none() {
        std::fs::create_dir_all(&dir)?;
    }
    for (asset, dst) in targets {
        if dst.is_dir() {
            return Err(CliError::Msg(format!(
                "{} is a directory; nothing was written to it",
                dst.display()
            )));
        }
        if a.skip_existing && dst.exists() {
            eprintln!("skipped {} (exists)", dst.display());
            continue;
        }
        let p = download_asset(c, asset, &dst).await?;
        eprintln!("downloaded {} (sha256 verified)", p.display());
    }
    Ok(())
}

/// The server's wire names in its messages become the flags a CLI user types.
fn name_cli_flags(e: CliError) -> CliError {
    match e {
        CliError::Api { status, message } => CliError::Api {
            status,
            message: message.replace("targetCommit", "--target"),
        },
        other => other,
    }
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

/// The release's web page, what `create`, `edit` and `view` print (as `gh` does).
fn release_url(c: &Client, repo: &str, v: &ReleaseView) -> String {
    format!("{}/{repo}/releases/tag/{}", c.url, seg(&v.tag_name))
}

/// The file name in a `Content-Disposition` reply (`filename="…"`).
fn disposition_name(resp: &reqwest::Response) -> Option<String> {
    let h = resp
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let (_, rest) = h.split_once("filename=\"")?;
    rest.split_once('"').map(|(name, _)| name.to_owned())
}

/// Where `release download --archive` writes: `-O FILE` (`-`: standard output), else the
/// server's file name in `--dir`; an existing file is kept unless `--clobber`.
struct ArchiveTo<'a> {
    dir: &'a Path,
    output: Option<&'a Path>,
    clobber: bool,
    skip_existing: bool,
}

/// `release download --archive`: the tag's source archive, saved under the server's name
/// (`<repo>-<tag>.tar.gz`, like GitHub's) or `-O`'s, written to a scratch file beside it and
/// renamed when complete.
async fn download_archive(
    c: &Client,
    repo: &str,
    tag: &str,
    format: &str,
    to: ArchiveTo<'_>,
) -> CliResult<()> {
    let path = format!("/{repo}/archive/refs/tags/{}.{format}", seg(tag));
    let resp = c.send(c.request(Method::GET, &path)).await?;
    let fallback = format!("{}-{tag}.{format}", repo.rsplit('/').next().unwrap_or(repo));
    let name = disposition_name(&resp).unwrap_or(fallback);
    let len = resp.content_length().unwrap_or(0);
    let mut stream = resp.bytes_stream();
    use tokio::io::AsyncWriteExt;
    if to.output.is_some_and(|o| o.as_os_str() == "-") {
        use std::io::Write;
        let mut out = std::io::stdout();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| CliError::Msg(format!("download of {name} failed: {e}")))?;
            out.write_all(&chunk)?;
        }
        out.flush()?;
        return Ok(());
    }
    let dst = match to.output {
        Some(out) => out.to_path_buf(),
        None => {
            let safe = crate::ids::AssetName::parse(&name)
                .map_err(|e| CliError::Msg(format!("refusing archive name {name:?}: {e}")))?;
            std::fs::create_dir_all(to.dir)?;
            to.dir.join(safe.as_str())
        }
    };
    if dst.is_dir() {
        return Err(CliError::Msg(format!(
            "{} is a directory; nothing was written to it",
            dst.display()
        )));
    }
    if dst.exists() && !to.clobber {
        if to.skip_existing {
            eprintln!("skipped {} (it exists)", dst.display());
            return Ok(());
        }
        return Err(CliError::Msg(format!(
            "{} already exists; pass --clobber to overwrite it or --skip-existing to keep it",
            dst.display()
        )));
    }
    let file_name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    let tmp = dst.with_file_name(format!(".{file_name}.part"));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let pb = progress(len, &name);
    let result: CliResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| CliError::Msg(format!("download of {name} failed: {e}")))?;
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
    tokio::fs::rename(&tmp, &dst).await?;
    eprintln!("downloaded {}", dst.display());
    Ok(())
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
