//! The README of a repository's default branch, for the overview page: read in-process with gix
//! from the bare repository (no checkout, no `git` child), and capped in size so a huge file in
//! the tree cannot make the overview page slow or large.

use super::{read_err, GitError, GitStore};
use crate::ids::RepoPath;

/// File names looked for at the root of the default branch's tree, in this order.
pub const README_NAMES: [&str; 4] = ["README.md", "README", "readme.md", "Readme.md"];

/// Largest README shown; a bigger one is reported as too large instead of read.
pub const README_MAX: u64 = 512 * 1024;

/// A README found at the tree root of the default branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readme {
    /// Its file name (`README.md`, ...).
    pub name: String,
    /// The branch it was read from.
    pub branch: String,
    /// Its text, or `None` when it is larger than [`README_MAX`] (`size` says how large).
    pub text: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

impl GitStore {
    /// The README at the root of the default branch (`HEAD`, else `main`, else `master`);
    /// `None` when the repository has no commits or no README.
    pub fn readme(&self, repo: &RepoPath) -> Result<Option<Readme>, GitError> {
        let r = self.open_repo(repo)?;
        let mut candidates = Vec::new();
        if let Ok(Some(name)) = r.head_name() {
            candidates.push(name.as_bstr().to_string());
        }
        candidates.push("refs/heads/main".into());
        candidates.push("refs/heads/master".into());
        let mut found = None;
        for full in candidates {
            if let Some(mut reference) = r.try_find_reference(full.as_str()).map_err(read_err)? {
                let id = reference.peel_to_id().map_err(read_err)?.detach();
                let branch = full.trim_start_matches("refs/heads/").to_owned();
                found = Some((branch, id));
                break;
            }
        }
        let Some((branch, id)) = found else {
            return Ok(None);
        };
        let Some(commit_id) = super::peel_to_commit(&r, id)? else {
            return Ok(None);
        };
        let commit_id = gix::ObjectId::from_hex(commit_id.as_bytes()).map_err(read_err)?;
        let commit = r
            .find_object(commit_id)
            .map_err(read_err)?
            .try_into_commit()
            .map_err(read_err)?;
        let tree = commit.tree().map_err(read_err)?;
        for name in README_NAMES {
            let Some(entry) = tree.find_entry(name) else {
                continue;
            };
            if !entry.mode().is_blob() {
                continue;
            }
            let oid = entry.object_id();
            let size = r.find_header(oid).map_err(read_err)?.size();
            let text = if size > README_MAX {
                None
            } else {
                let obj = r.find_object(oid).map_err(read_err)?;
                Some(String::from_utf8_lossy(&obj.data).into_owned())
            };
            return Ok(Some(Readme {
                name: name.to_owned(),
                branch,
                text,
                size,
            }));
        }
        Ok(None)
    }
}
