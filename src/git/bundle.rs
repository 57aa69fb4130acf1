//! Repository copies for backups: the refs of a repository captured at one moment, a git
//! bundle of exactly those refs, and a repository rebuilt from such a bundle.
//!
//! `git bundle create` resolves ref names when it runs, so a push between capture and bundle
//! would slip in. The bundle is written by hand instead (format v2: a header naming each
//! captured `<oid> <ref>`, then a pack of everything they reach, from `git pack-objects
//! --revs`). Git objects are never rewritten, so packing after the capture still finds every
//! object the captured refs reach.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use super::{GitError, GitStore};
use crate::ids::RepoPath;

/// The refs of a repository at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    /// What `HEAD` points at (`refs/heads/main`), when it is symbolic.
    pub head: Option<String>,
    /// `(full ref name, object id)`, sorted by name.
    pub refs: Vec<(String, String)>,
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitStore {
    /// Every ref of `repo` and its symbolic `HEAD`, read now.
    pub fn capture_refs(&self, repo: &RepoPath) -> Result<Refs, GitError> {
        let dir = self.repo_dir(repo);
        if !dir.is_dir() {
            return Err(GitError::RepoMissing);
        }
        let mut c = self.git(&dir);
        c.args(["for-each-ref", "--format=%(objectname) %(refname)"]);
        let listing = Self::run(c)?;
        let mut refs = Vec::new();
        for line in listing.lines() {
            if let Some((oid, name)) = line.split_once(' ') {
                if is_oid(oid) && name.starts_with("refs/") {
                    refs.push((name.to_owned(), oid.to_owned()));
                }
            }
        }
        refs.sort();
        let mut c = self.git(&dir);
        c.args(["symbolic-ref", "-q", "HEAD"]);
        let head = Self::run(c).ok().filter(|h| h.starts_with("refs/heads/"));
        Ok(Refs { head, refs })
    }

    /// Writes a bundle of exactly `refs` (fsynced) to `out`. Nothing is written for a
    /// repository without refs (`false`): a bundle cannot be empty.
    pub fn write_bundle(&self, repo: &RepoPath, refs: &Refs, out: &Path) -> Result<bool, GitError> {
        if refs.refs.is_empty() {
            return Ok(false);
        }
        let dir = self.repo_dir(repo);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create_new(out)?;
        let mut header = String::from("# v2 git bundle\n");
        for (name, oid) in &refs.refs {
            header.push_str(&format!("{oid} {name}\n"));
        }
        header.push('\n');
        file.write_all(header.as_bytes())?;
        file.flush()?;
        let wanted: Vec<String> = refs.refs.iter().map(|(_, oid)| oid.clone()).collect();
        self.pack_into(&dir, &file, &wanted)?;
        file.sync_all()?;
        Ok(true)
    }

    /// Creates `repo` (which must not exist) from a bundle written by `write_bundle` (or
    /// empty, without one), with every ref of the bundle and `head` as its `HEAD`.
    pub fn restore_from_bundle(
        &self,
        repo: &RepoPath,
        bundle: Option<&Path>,
        head: Option<&str>,
    ) -> Result<(), GitError> {
        let dir = self.repo_dir(repo);
        if dir.exists() {
            return Err(GitError::AlreadyExists(repo.key()));
        }
        self.init(repo)?;
        if let Some(bundle) = bundle {
            let mut c = self.git(&dir);
            c.args([
                "fetch",
                "--quiet",
                "--update-head-ok",
                "--no-write-fetch-head",
            ])
            .arg("--end-of-options")
            .arg(bundle)
            .arg("+refs/*:refs/*");
            Self::run(c)?;
        }
        if let Some(h) = head.filter(|h| h.starts_with("refs/heads/")) {
            let mut c = self.git(&dir);
            c.args(["symbolic-ref", "HEAD", h]);
            Self::run(c)?;
        }
        Ok(())
    }
}

impl GitStore {
    /// Appends to `file` a pack of everything the `wanted` revisions reach (`oid`, or `^oid`
    /// for what to leave out), from `git pack-objects --revs`: the body of every bundle we write.
    pub(super) fn pack_into(
        &self,
        dir: &Path,
        file: &std::fs::File,
        wanted: &[String],
    ) -> Result<(), GitError> {
        let mut c = self.git(dir);
        c.args([
            "pack-objects",
            "--stdout",
            "--revs",
            "--delta-base-offset",
            "-q",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        {
            let mut input = String::new();
            for w in wanted {
                input.push_str(w);
                input.push('\n');
            }
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| GitError::Command("pack-objects has no stdin".into()))?;
            stdin.write_all(input.as_bytes())?;
        }
        let done = child.wait_with_output()?;
        if !done.status.success() {
            return Err(GitError::Command(format!(
                "pack-objects: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            )));
        }
        Ok(())
    }
}
