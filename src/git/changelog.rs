//! The commits of a release, read in-process with gix for generated release notes: the range
//! between a previous release's commit and the new one, the nearest earlier release by
//! ancestry, and who had committed before the range (to name new contributors).

use std::collections::{HashMap, HashSet};

use gix::revision::walk::Sorting;
use gix::traverse::commit::simple::CommitTimeOrder;

use super::{read_err, GitError, GitStore};
use crate::ids::RepoPath;

/// Walks stop after this many commits, so a huge history cannot hold a blocking thread for
/// long; the notes then cover the newest commits of the range.
const MAX_WALK: usize = 100_000;

/// One commit of the range, as the notes show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCommit {
    /// Full hex id.
    pub sha: String,
    /// The whole message (subject, body, footers).
    pub message: String,
    /// Author name.
    pub author_name: String,
    /// Author email (who counts as one contributor).
    pub author_email: String,
}

/// Where the range starts.
#[derive(Debug, Clone)]
pub enum Since {
    /// After this commit (a `previousTagName` the caller resolved).
    Commit(String),
    /// After the nearest of these `(tag, commit)` pairs that is an ancestor of the tip (the
    /// published releases); from the root when none is.
    NearestOf(Vec<(String, String)>),
}

/// The commits between a previous release and a tip.
#[derive(Debug, Clone, Default)]
pub struct Changelog {
    /// The tags of the nearest commit chosen from `Since::NearestOf` (empty when given a
    /// commit, or when none is an ancestor); the caller picks one when several share it.
    pub previous_tags: Vec<String>,
    /// The commits reachable from the tip but not from the start, newest first.
    pub commits: Vec<RangeCommit>,
    /// Emails of the authors of commits reachable from the start (not new contributors).
    pub earlier_authors: HashSet<String>,
}

fn oid(hex: &str) -> Result<gix::ObjectId, GitError> {
    gix::ObjectId::from_hex(hex.as_bytes()).map_err(read_err)
}

impl GitStore {
    /// Reads the range of a release's notes: from `since` (exclusive) to `tip` (a full commit
    /// id), newest first, with the authors who committed before it.
    pub fn changelog(
        &self,
        repo: &RepoPath,
        tip: &str,
        since: Since,
    ) -> Result<Changelog, GitError> {
        let r = self.open_repo(repo)?;
        let tip = oid(tip)?;
        let (start, previous_tags) = match since {
            Since::Commit(c) => (Some(oid(&c)?), Vec::new()),
            Since::NearestOf(candidates) => match nearest(&r, tip, &candidates)? {
                Some((tags, id)) => (Some(id), tags),
                None => (None, Vec::new()),
            },
        };
        let mut walk = r
            .rev_walk([tip])
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst));
        if let Some(s) = start {
            walk = walk.with_hidden([s]);
        }
        let mut commits = Vec::new();
        for info in walk.all().map_err(read_err)?.take(MAX_WALK) {
            let info = info.map_err(read_err)?;
            let commit = info.object().map_err(read_err)?;
            let author = commit.author().map_err(read_err)?;
            commits.push(RangeCommit {
                sha: info.id.to_string(),
                message: commit.message_raw_sloppy().to_string(),
                author_name: author.name.to_string().trim().to_owned(),
                author_email: author.email.to_string().trim().to_ascii_lowercase(),
            });
        }
        let mut earlier_authors = HashSet::new();
        if let Some(s) = start {
            for info in r.rev_walk([s]).all().map_err(read_err)?.take(MAX_WALK) {
                let info = info.map_err(read_err)?;
                let commit = info.object().map_err(read_err)?;
                let author = commit.author().map_err(read_err)?;
                earlier_authors.insert(author.email.to_string().trim().to_ascii_lowercase());
            }
        }
        Ok(Changelog {
            previous_tags,
            commits,
            earlier_authors,
        })
    }
}

/// The candidate nearest to `tip` by ancestry (breadth first from the tip, the tip itself not
/// counted), with every candidate tag on that commit.
fn nearest(
    r: &gix::Repository,
    tip: gix::ObjectId,
    candidates: &[(String, String)],
) -> Result<Option<(Vec<String>, gix::ObjectId)>, GitError> {
    let mut by_commit: HashMap<gix::ObjectId, Vec<String>> = HashMap::new();
    for (tag, commit) in candidates {
        if let Ok(id) = oid(commit) {
            if id != tip {
                by_commit.entry(id).or_default().push(tag.clone());
            }
        }
    }
    if by_commit.is_empty() {
        return Ok(None);
    }
    for info in r.rev_walk([tip]).all().map_err(read_err)?.take(MAX_WALK) {
        let info = info.map_err(read_err)?;
        if let Some(tags) = by_commit.remove(&info.id) {
            return Ok(Some((tags, info.id)));
        }
    }
    Ok(None)
}
