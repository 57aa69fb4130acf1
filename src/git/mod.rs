//! Git repositories on disk: the only module that names gix or runs the system `git`.
//! Reads (refs, tags, commits) go through gix in-process; writes of refs and the pack protocol
//! use the system `git`, always with validated arguments behind `--end-of-options`.
//! Every function here is synchronous: callers run them on the blocking pool.

pub mod archive;
pub mod bundle;
pub mod changelog;
pub mod hook;
pub mod http_backend;
pub mod readme;
pub mod revs;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ids::{GitTagName, RepoPath};

/// Errors of the git layer; gix's own error types stay inside this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The repository directory does not exist.
    #[error("repository not found on disk")]
    RepoMissing,
    /// A ref that must not exist already does.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A ref changed between the check and the update (lost a race).
    #[error("{0} was changed concurrently")]
    Conflict(String),
    /// gix failed to read something.
    #[error("git read: {0}")]
    Read(String),
    /// The system git failed.
    #[error("git command: {0}")]
    Command(String),
    /// I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Too much work already running (source archives being made); try again shortly.
    #[error("busy: {0}")]
    Busy(String),
}

fn read_err(e: impl std::fmt::Display) -> GitError {
    GitError::Read(e.to_string())
}

/// Who made an annotated tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagger {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Unix seconds.
    pub time: i64,
}

/// A tag as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// Short name.
    pub name: String,
    /// The commit the tag peels to (empty when it points at a non-commit).
    pub commit_sha: String,
    /// What `refs/tags/<name>` stores: the tag object for annotated tags, else the commit.
    pub ref_target: String,
    /// Annotated tags: message; lightweight: empty.
    pub message: String,
    /// Annotated tags: tagger; lightweight: none.
    pub tagger: Option<Tagger>,
}

/// All bare repositories under `$DATA_DIR/repos`.
#[derive(Clone)]
pub struct GitStore {
    root: PathBuf,
    hooks_dir: PathBuf,
    hook_exe: Option<PathBuf>,
    archive_jobs: archive::Jobs,
}

/// The all-zero object id git uses for "no ref" in updates.
pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

impl GitStore {
    /// Opens the store and writes the pre-receive hook shared by every repository.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("repos");
        let hooks_dir = data_dir.join("git-hooks");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&hooks_dir)?;
        hook::install(&hooks_dir)?;
        let hook_exe = hook::find_exe();
        if hook_exe.is_none() {
            tracing::warn!("cannot find the pfai executable: every git push will be refused");
        }
        Ok(GitStore {
            root,
            hooks_dir,
            hook_exe,
            archive_jobs: archive::Jobs::default(),
        })
    }

    /// The root directory (`GIT_PROJECT_ROOT` for http-backend).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `pfai` executable the pre-receive hook runs (`None`: pushes are refused).
    pub fn hook_exe(&self) -> Option<&Path> {
        self.hook_exe.as_deref()
    }

    /// The hooks directory passed as `core.hooksPath`.
    pub fn hooks_dir(&self) -> &Path {
        &self.hooks_dir
    }

    /// `repos/<owner>/<repo>.git`.
    pub fn repo_dir(&self, repo: &RepoPath) -> PathBuf {
        self.root
            .join(repo.owner.as_str())
            .join(format!("{}.git", repo.name.as_str()))
    }

    fn git(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.arg("-C").arg(dir);
        c.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        c
    }

    fn run(mut cmd: Command) -> Result<String, GitError> {
        let out = cmd.output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(GitError::Command(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }

    /// Creates an empty bare repository (idempotent when it is already there).
    pub fn init(&self, repo: &RepoPath) -> Result<(), GitError> {
        let dir = self.repo_dir(repo);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut c = Command::new("git");
        c.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args([
                "init",
                "--bare",
                "--quiet",
                "--initial-branch=main",
                "--end-of-options",
            ])
            .arg(&dir);
        Self::run(c)?;
        let mut c = self.git(&dir);
        c.args(["config", "receive.denyNonFastForwards", "false"]);
        Self::run(c)?;
        if let Some(parent) = dir.parent() {
            crate::storage::fsync_dir(parent)?;
        }
        Ok(())
    }

    /// Removes a repository's directory.
    pub fn remove(&self, repo: &RepoPath) -> Result<(), GitError> {
        self.remove_archives(repo)?;
        match std::fs::remove_dir_all(self.repo_dir(repo)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn open_repo(&self, repo: &RepoPath) -> Result<gix::Repository, GitError> {
        let dir = self.repo_dir(repo);
        if !dir.is_dir() {
            return Err(GitError::RepoMissing);
        }
        gix::open_opts(dir, gix::open::Options::isolated()).map_err(read_err)
    }

    /// Every tag, sorted by name.
    pub fn list_tags(&self, repo: &RepoPath) -> Result<Vec<TagInfo>, GitError> {
        let r = self.open_repo(repo)?;
        let platform = r.references().map_err(read_err)?;
        let mut out = Vec::new();
        for reference in platform.tags().map_err(read_err)? {
            let reference = reference.map_err(read_err)?;
            let name = reference.name().shorten().to_string();
            if let Some(info) = describe(&r, name, reference)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Branch names, sorted (for the UI's "target branch" choices).
    pub fn list_branches(&self, repo: &RepoPath) -> Result<Vec<String>, GitError> {
        let r = self.open_repo(repo)?;
        let platform = r.references().map_err(read_err)?;
        let mut out = Vec::new();
        for reference in platform.local_branches().map_err(read_err)? {
            let reference = reference.map_err(read_err)?;
            out.push(reference.name().shorten().to_string());
        }
        out.sort();
        Ok(out)
    }

    /// One tag, if it exists.
    pub fn find_tag(&self, repo: &RepoPath, tag: &GitTagName) -> Result<Option<TagInfo>, GitError> {
        let r = self.open_repo(repo)?;
        let full = tag.full_ref();
        match r.try_find_reference(full.as_str()).map_err(read_err)? {
            Some(reference) => describe(&r, tag.as_str().to_owned(), reference),
            None => Ok(None),
        }
    }

    /// The commit each of `names` points at, for those that exist: one repository open and one
    /// ref lookup per name, so a release page costs O(page), not O(tags in the repository).
    pub fn tag_commits(
        &self,
        repo: &RepoPath,
        names: &[String],
    ) -> Result<Vec<(String, String)>, GitError> {
        let r = self.open_repo(repo)?;
        let mut out = Vec::new();
        for name in names {
            // A stored release tag was validated when the release was made; skip anything else.
            let Ok(tag) = GitTagName::parse(name) else {
                continue;
            };
            if let Some(reference) = r
                .try_find_reference(tag.full_ref().as_str())
                .map_err(read_err)?
            {
                if let Some(info) = describe(&r, name.clone(), reference)? {
                    out.push((info.name, info.commit_sha));
                }
            }
        }
        Ok(out)
    }

    /// Resolves a branch name, tag name or full 40-hex SHA to a commit SHA. `None` when it does
    /// not resolve or resolves to something that is not a commit (a tree, a blob).
    pub fn resolve_commit(&self, repo: &RepoPath, rev: &str) -> Result<Option<String>, GitError> {
        let r = self.open_repo(repo)?;
        let is_sha = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
        let start: Option<gix::ObjectId> = if is_sha {
            gix::ObjectId::from_hex(rev.to_ascii_lowercase().as_bytes()).ok()
        } else {
            let mut found = None;
            for prefix in ["refs/heads/", "refs/tags/"] {
                let full = format!("{prefix}{rev}");
                if gix::refs::FullName::try_from(full.as_str()).is_err() {
                    return Ok(None);
                }
                if let Some(mut reference) =
                    r.try_find_reference(full.as_str()).map_err(read_err)?
                {
                    found = Some(reference.peel_to_id().map_err(read_err)?.detach());
                    break;
                }
            }
            found
        };
        let Some(id) = start else { return Ok(None) };
        peel_to_commit(&r, id)
    }

    /// Creates `refs/tags/<tag>` at `commit` — annotated when `message` is given — failing with
    /// `AlreadyExists` if the tag exists (atomic: git's ref lock decides races).
    pub fn create_tag(
        &self,
        repo: &RepoPath,
        tag: &GitTagName,
        commit: &str,
        message: Option<&str>,
        tagger: (&str, &str),
    ) -> Result<(), GitError> {
        let dir = self.repo_dir(repo);
        if !is_full_sha(commit) {
            return Err(GitError::Command("target must be a full commit id".into()));
        }
        let target = match message {
            Some(msg) => {
                let body = format!(
                    "object {commit}\ntype commit\ntag {}\ntagger {} <{}> {} +0000\n\n{}\n",
                    tag.as_str(),
                    sanitize_ident(tagger.0),
                    sanitize_ident(tagger.1),
                    crate::util::now_unix(),
                    msg.trim_end()
                );
                let mut c = self.git(&dir);
                c.args(["mktag"]);
                run_with_stdin(c, body.as_bytes())?
            }
            None => commit.to_owned(),
        };
        let mut c = self.git(&dir);
        c.args(["update-ref", "-m", "pfai: create tag", "--end-of-options"])
            .arg(tag.full_ref())
            .arg(&target)
            .arg(ZERO_OID);
        match Self::run(c) {
            Ok(_) => Ok(()),
            Err(GitError::Command(msg))
                if msg.contains("exists")
                    || msg.contains("unable to lock")
                    || msg.contains("cannot lock") =>
            {
                Err(GitError::AlreadyExists(tag.full_ref()))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes `refs/tags/<tag>` only if it still points at `expected` (what was checked).
    pub fn delete_tag(
        &self,
        repo: &RepoPath,
        tag: &GitTagName,
        expected: &str,
    ) -> Result<(), GitError> {
        let mut c = self.git(&self.repo_dir(repo));
        c.args([
            "update-ref",
            "-d",
            "-m",
            "pfai: delete tag",
            "--end-of-options",
        ])
        .arg(tag.full_ref())
        .arg(expected);
        Self::run(c).map(|_| ()).map_err(|e| match e {
            GitError::Command(_) => GitError::Conflict(tag.full_ref()),
            other => other,
        })
    }
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sanitize_ident(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>'))
        .collect()
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Result<String, GitError> {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(GitError::Command(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

fn peel_to_commit(r: &gix::Repository, mut id: gix::ObjectId) -> Result<Option<String>, GitError> {
    for _ in 0..16 {
        let Some(obj) = r.try_find_object(id).map_err(read_err)? else {
            return Ok(None);
        };
        match obj.kind {
            gix::object::Kind::Commit => return Ok(Some(id.to_string())),
            gix::object::Kind::Tag => {
                let tag = obj.try_into_tag().map_err(read_err)?;
                let decoded = tag.decode().map_err(read_err)?;
                id = gix::ObjectId::from_hex(decoded.target).map_err(read_err)?;
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

fn describe(
    r: &gix::Repository,
    name: String,
    reference: gix::Reference<'_>,
) -> Result<Option<TagInfo>, GitError> {
    let Some(direct) = reference.target().try_id().map(|id| id.to_owned()) else {
        return Ok(None);
    };
    let mut info = TagInfo {
        name,
        commit_sha: String::new(),
        ref_target: direct.to_string(),
        message: String::new(),
        tagger: None,
    };
    if let Some(obj) = r.try_find_object(direct).map_err(read_err)? {
        if obj.kind == gix::object::Kind::Tag {
            let tag = obj.try_into_tag().map_err(read_err)?;
            let decoded = tag.decode().map_err(read_err)?;
            info.message = decoded.message.to_string();
            if let Ok(Some(sig)) = decoded.tagger() {
                info.tagger = Some(Tagger {
                    name: sig.name.to_string().trim().to_owned(),
                    email: sig.email.to_string().trim().to_owned(),
                    time: sig.seconds(),
                });
            }
        }
    }
    info.commit_sha = peel_to_commit(r, direct)?.unwrap_or_default();
    Ok(Some(info))
}
