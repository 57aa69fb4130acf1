//! Git for air-gap bundles (`domain::bundle`): a bundle of a repository's refs that may leave
//! out what an earlier bundle carried (`-<oid>` prerequisites, `^oid` to `pack-objects`), the
//! objects of a bundle brought into a repository without touching a ref, and one ref set with
//! an expected old value.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use super::bundle::Refs;
use super::{GitError, GitStore, ZERO_OID};
use crate::ids::RepoPath;

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitStore {
    /// Which of `oids` name objects of `repo`, in one `git cat-file --batch-check` (an
    /// incremental export may list every ref of an earlier bundle: one process, not one each).
    pub fn existing_objects(
        &self,
        repo: &RepoPath,
        oids: &[String],
    ) -> Result<Vec<String>, GitError> {
        let wanted: Vec<&String> = oids.iter().filter(|o| is_oid(o)).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.git(&self.repo_dir(repo));
        c.args(["cat-file", "--batch-check=%(objectname)"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| GitError::Command("cat-file has no stdin".into()))?;
        let input: String = wanted.iter().map(|o| format!("{o}\n")).collect();
        // Written from a thread: git answers as it reads, so a long list would fill both pipes.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(GitError::Command(format!(
                "cat-file: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // Found objects come back as their id; missing ones as `<oid> missing`.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| is_oid(l))
            .map(str::to_owned)
            .collect())
    }

    /// Whether `oid` names an object of `repo` (a prerequisite must be one).
    pub fn has_object(&self, repo: &RepoPath, oid: &str) -> Result<bool, GitError> {
        if !is_oid(oid) {
            return Ok(false);
        }
        let mut c = self.git(&self.repo_dir(repo));
        c.args(["cat-file", "-e", "--end-of-options"]).arg(oid);
        Ok(c.output()?.status.success())
    }

    /// Writes a bundle (fsynced) of `refs` to `out` that leaves out everything `prerequisites`
    /// reach: a plain, clonable bundle when there are none. Objects of the repository only.
    pub fn write_bundle_since(
        &self,
        repo: &RepoPath,
        refs: &Refs,
        prerequisites: &[String],
        out: &Path,
    ) -> Result<(), GitError> {
        let dir = self.repo_dir(repo);
        let mut file = std::fs::File::create_new(out)?;
        let mut header = String::from("# v2 git bundle\n");
        for p in prerequisites {
            if !is_oid(p) {
                return Err(GitError::Command(format!("not an object id: {p}")));
            }
            header.push_str(&format!("-{p}\n"));
        }
        for (name, oid) in &refs.refs {
            header.push_str(&format!("{oid} {name}\n"));
        }
        // `HEAD` too, so `git clone x.bundle` checks its branch out (`unbundle` callers skip it).
        if let Some((_, oid)) = refs
            .head
            .as_ref()
            .and_then(|h| refs.refs.iter().find(|(n, _)| n == h))
        {
            header.push_str(&format!("{oid} HEAD\n"));
        }
        header.push('\n');
        file.write_all(header.as_bytes())?;
        file.flush()?;
        let mut wanted: Vec<String> = refs.refs.iter().map(|(_, oid)| oid.clone()).collect();
        wanted.extend(prerequisites.iter().map(|p| format!("^{p}")));
        self.pack_into(&dir, &file, &wanted)?;
        file.sync_all()?;
        Ok(())
    }

    /// Stores the objects of `bundle` in `repo` (which must have its prerequisites) without
    /// changing a ref, and returns the bundle's `(ref, oid)` list. Until a ref points at them
    /// the new objects are invisible to clients.
    pub fn unbundle(
        &self,
        repo: &RepoPath,
        bundle: &Path,
    ) -> Result<Vec<(String, String)>, GitError> {
        let mut c = self.git(&self.repo_dir(repo));
        c.args(["bundle", "unbundle", "--end-of-options"])
            .arg(bundle);
        let listing = Self::run(c)?;
        let mut out = Vec::new();
        for line in listing.lines() {
            if let Some((oid, name)) = line.split_once(' ') {
                if is_oid(oid) && name.starts_with("refs/") {
                    out.push((name.to_owned(), oid.to_owned()));
                }
            }
        }
        Ok(out)
    }

    /// Points `name` at `new`, only if it is still at `old` (`None`: only if it does not exist).
    pub fn set_ref(
        &self,
        repo: &RepoPath,
        name: &str,
        new: &str,
        old: Option<&str>,
    ) -> Result<(), GitError> {
        if !is_oid(new) {
            return Err(GitError::Command(format!("not an object id: {new}")));
        }
        // What receive-pack checks before it moves a ref: everything `new` reaches is here
        // (objects the existing refs reach are taken as complete). A bundle whose pack lacks a
        // tree or a parent must not leave a ref that breaks every clone.
        let mut c = self.git(&self.repo_dir(repo));
        // `new` is checked hex above, so no `--end-of-options` (it would make `--not --all`
        // revisions).
        c.args(["rev-list", "--objects", "--quiet", new, "--not", "--all"]);
        if Self::run(c).is_err() {
            return Err(GitError::Command(format!(
                "{name}: {new} reaches objects that are in neither the bundle nor the repository"
            )));
        }
        let mut c = self.git(&self.repo_dir(repo));
        c.args([
            "update-ref",
            "-m",
            "pfai: bundle import",
            "--end-of-options",
        ])
        .arg(name)
        .arg(new)
        .arg(old.unwrap_or(ZERO_OID));
        Self::run(c).map(|_| ())
    }

    /// Whether commit `old` is an ancestor of `new` (a branch moving from one to the other is a
    /// fast-forward).
    pub fn is_ancestor(&self, repo: &RepoPath, old: &str, new: &str) -> Result<bool, GitError> {
        if !is_oid(old) || !is_oid(new) {
            return Ok(false);
        }
        let mut c = self.git(&self.repo_dir(repo));
        c.args(["merge-base", "--is-ancestor", "--end-of-options", old, new]);
        Ok(c.output()?.status.success())
    }

    /// Points `HEAD` at `branch` (`refs/heads/…`).
    pub fn set_head(&self, repo: &RepoPath, branch: &str) -> Result<(), GitError> {
        if !branch.starts_with("refs/heads/") {
            return Ok(());
        }
        let mut c = self.git(&self.repo_dir(repo));
        c.args(["symbolic-ref", "HEAD", branch]);
        Self::run(c).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A bundle's pack may hold a commit without its tree; receive-pack would refuse to point a
    /// ref at it, and so must an import, or every later clone fails.
    #[test]
    fn a_ref_is_not_pointed_at_a_commit_whose_tree_is_missing_nor_moved_backwards() {
        let data = tempfile::tempdir().unwrap();
        let store = GitStore::open(data.path()).unwrap();
        let repo = RepoPath::new("acme", "app").unwrap();
        store.init(&repo).unwrap();
        let dir = store.repo_dir(&repo);
        let tree = git(&dir, &["mktree"]);
        let env = [
            ("GIT_AUTHOR_NAME", "t"),
            ("GIT_AUTHOR_EMAIL", "t@e"),
            ("GIT_COMMITTER_NAME", "t"),
            ("GIT_COMMITTER_EMAIL", "t@e"),
        ];
        let commit = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(args)
                .envs(env)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let c1 = commit(&["commit-tree", &tree, "-m", "one"]);
        let c2 = commit(&["commit-tree", &tree, "-p", &c1, "-m", "two"]);
        store.set_ref(&repo, "refs/heads/main", &c2, None).unwrap();
        assert!(store.is_ancestor(&repo, &c1, &c2).unwrap());
        assert!(!store.is_ancestor(&repo, &c2, &c1).unwrap());

        // A commit naming a tree that is not in the repository.
        let body = format!(
            "tree {}\nauthor t <t@e> 0 +0000\ncommitter t <t@e> 0 +0000\n\nghost\n",
            "1".repeat(40)
        );
        let f = data.path().join("commit.txt");
        std::fs::write(&f, body).unwrap();
        let ghost = git(
            &dir,
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--literally",
                f.to_str().unwrap(),
            ],
        );
        let err = store
            .set_ref(&repo, "refs/heads/broken", &ghost, None)
            .unwrap_err();
        assert!(err.to_string().contains("neither the bundle nor"), "{err}");
        assert!(git(&dir, &["for-each-ref", "refs/heads/broken"]).is_empty());
    }
}
