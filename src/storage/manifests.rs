//! The manifest store: MANIFESTS (byte-exact manifests per image name), the registry tags
//! OCI_TAGS, the REFERRERS index and MANIFEST_REFS (how many indexes of a repository list a
//! child manifest). Storing or removing a manifest updates its indexes, the child counts and,
//! through `blob_refs::change_refs`, the reference counts of its blobs in the same transaction.
//! The tuple keys `(name, digest)`, `(name, tag)` and `(name, subject, referrer)` and their
//! range bounds are written only here.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use redb::{ReadableTable, WriteTransaction};

use super::blob_refs::{self, RefChange};
use super::records::ManifestMeta;
use super::{codec, tables, Reads, StorageError};
use crate::ids::{OciName, OciTag, RepoPath};

/// The manifest `digest` of `name`.
pub fn get<R: Reads>(
    txn: &R,
    name: &OciName,
    digest: &str,
) -> Result<Option<ManifestMeta>, StorageError> {
    txn.table(tables::MANIFESTS)?
        .get((name.as_str(), digest))?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Whether `name` has the manifest `digest`.
pub fn exists<R: Reads>(txn: &R, name: &OciName, digest: &str) -> Result<bool, StorageError> {
    Ok(txn
        .table(tables::MANIFESTS)?
        .get((name.as_str(), digest))?
        .is_some())
}

/// The manifest digest `tag` points at in `name`.
pub fn tagged<R: Reads>(
    txn: &R,
    name: &OciName,
    tag: &str,
) -> Result<Option<String>, StorageError> {
    Ok(txn
        .table(tables::OCI_TAGS)?
        .get((name.as_str(), tag))?
        .map(|v| v.value().to_owned()))
}

/// Changes by one the count of indexes in `name` that list each of `children`. The only
/// writer of MANIFEST_REFS; a count that reaches zero is removed.
fn change_child_refs(
    txn: &WriteTransaction,
    name: &OciName,
    children: &[String],
    change: RefChange,
) -> Result<(), StorageError> {
    let mut refs = txn.open_table(tables::MANIFEST_REFS)?;
    for c in children {
        let k = (name.as_str(), c.as_str());
        let current = refs.get(k)?.map(|v| v.value()).unwrap_or(0);
        match change {
            RefChange::Add => {
                refs.insert(k, current + 1)?;
            }
            RefChange::Remove if current <= 1 => {
                refs.remove(k)?;
            }
            RefChange::Remove => {
                refs.insert(k, current - 1)?;
            }
        }
    }
    Ok(())
}

/// Stores the manifest `digest` of `name`. When it is new, the reference counts of its blobs
/// and children go up and it is indexed as a referrer of its subject; storing the same digest
/// again only rewrites the row. The caller has checked that its blobs and children exist.
pub fn put(
    txn: &WriteTransaction,
    name: &OciName,
    digest: &str,
    meta: &ManifestMeta,
) -> Result<(), StorageError> {
    let existed = {
        let mut manifests = txn.open_table(tables::MANIFESTS)?;
        let existed = manifests.get((name.as_str(), digest))?.is_some();
        manifests.insert((name.as_str(), digest), codec::encode(meta)?.as_slice())?;
        existed
    };
    if !existed {
        blob_refs::change_refs(txn, &meta.blobs, RefChange::Add)?;
        change_child_refs(txn, name, &meta.children, RefChange::Add)?;
        if let Some(s) = &meta.subject {
            txn.open_table(tables::REFERRERS)?
                .insert((name.as_str(), s.as_str(), digest), ())?;
        }
    }
    Ok(())
}

/// Points each of `tags` in `name` at `digest` (a manifest of `name`).
pub fn set_tags(
    txn: &WriteTransaction,
    name: &OciName,
    digest: &str,
    tags: &[OciTag],
) -> Result<(), StorageError> {
    let mut t = txn.open_table(tables::OCI_TAGS)?;
    for tag in tags {
        t.insert((name.as_str(), tag.as_str()), digest)?;
    }
    Ok(())
}

/// Removes `tag` from `name`; `false` when there was no such tag.
pub fn remove_tag(txn: &WriteTransaction, name: &OciName, tag: &str) -> Result<bool, StorageError> {
    Ok(txn
        .open_table(tables::OCI_TAGS)?
        .remove((name.as_str(), tag))?
        .is_some())
}

/// The tags of `name` that point at `digest` (what deleting the manifest would take away).
pub fn tags_pointing_at<R: Reads>(
    txn: &R,
    name: &OciName,
    digest: &str,
) -> Result<Vec<String>, StorageError> {
    let n = name.as_str();
    let mut out = Vec::new();
    for row in txn.table(tables::OCI_TAGS)?.range((n, "")..)? {
        let (k, v) = row?;
        let (rn, tag) = k.value();
        if rn != n {
            break;
        }
        if v.value() == digest {
            out.push(tag.to_owned());
        }
    }
    Ok(out)
}

/// How many indexes of `name` list the manifest `digest`.
pub fn listed_by_indexes<R: Reads>(
    txn: &R,
    name: &OciName,
    digest: &str,
) -> Result<u64, StorageError> {
    Ok(txn
        .table(tables::MANIFEST_REFS)?
        .get((name.as_str(), digest))?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Removes the manifest `digest` of `name`: the row, the reference counts it held on its blobs
/// and children, its referrer entry and every tag pointing at it. `None` when it was not
/// stored.
pub fn remove(
    txn: &WriteTransaction,
    name: &OciName,
    digest: &str,
) -> Result<Option<ManifestMeta>, StorageError> {
    let meta: ManifestMeta = {
        let mut manifests = txn.open_table(tables::MANIFESTS)?;
        let Some(v) = manifests.remove((name.as_str(), digest))? else {
            return Ok(None);
        };
        codec::decode(v.value())?
    };
    blob_refs::change_refs(txn, &meta.blobs, RefChange::Remove)?;
    change_child_refs(txn, name, &meta.children, RefChange::Remove)?;
    if let Some(s) = &meta.subject {
        txn.open_table(tables::REFERRERS)?
            .remove((name.as_str(), s.as_str(), digest))?;
    }
    txn.open_table(tables::OCI_TAGS)?
        .retain(|(n, _), d| !(n == name.as_str() && d == digest))?;
    Ok(Some(meta))
}

/// One page of the tags of `name` in lexical order: those after `after`, at most `limit`, and
/// whether more follow.
pub fn tags_page<R: Reads>(
    txn: &R,
    name: &OciName,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, bool), StorageError> {
    let t = txn.table(tables::OCI_TAGS)?;
    let start = after.unwrap_or_default();
    let mut out = Vec::new();
    let mut more = false;
    for row in t.range((name.as_str(), start)..)? {
        let (k, _) = row?;
        let (n, tag) = k.value();
        if n != name.as_str() {
            break;
        }
        if after == Some(tag) {
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(tag.to_owned());
    }
    Ok((out, more))
}

/// Whether `name` has a tag or a manifest (it was pushed to and not emptied).
pub fn has_tags_or_manifests<R: Reads>(txn: &R, name: &OciName) -> Result<bool, StorageError> {
    let n = name.as_str();
    let tagged = match txn.table(tables::OCI_TAGS)?.range((n, "")..)?.next() {
        Some(row) => row?.0.value().0 == n,
        None => false,
    };
    if tagged {
        return Ok(true);
    }
    Ok(
        match txn.table(tables::MANIFESTS)?.range((n, "")..)?.next() {
            Some(row) => row?.0.value().0 == n,
            None => false,
        },
    )
}

/// Hands every image name with a manifest to `visit`, in lexical order, each once, starting
/// after `after`, until it breaks.
pub fn scan_names<R: Reads>(
    txn: &R,
    after: Option<&str>,
    mut visit: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<(), StorageError> {
    let manifests = txn.table(tables::MANIFESTS)?;
    let start = after.unwrap_or_default();
    let mut previous: Option<String> = None;
    for row in manifests.range((start, "")..)? {
        let (k, _) = row?;
        let name = k.value().0;
        if after == Some(name) || previous.as_deref() == Some(name) {
            continue;
        }
        previous = Some(name.to_owned());
        if visit(name).is_break() {
            break;
        }
    }
    Ok(())
}

/// The image names with a manifest under the forge repository `repo` (`owner/repo` itself and
/// `owner/repo/...`).
pub fn names_of_repo<R: Reads>(txn: &R, repo: &RepoPath) -> Result<BTreeSet<String>, StorageError> {
    let key = repo.key();
    let prefix = format!("{key}/");
    let mut names = BTreeSet::new();
    let table = txn.table(tables::MANIFESTS)?;
    // Two ranges, not one: names of other repositories sort between `key` and `key/…`
    // (`acme/app-x/img` comes before `acme/app/img`: `-` sorts before `/`).
    if let Some(row) = table.range((key.as_str(), "")..)?.next() {
        let (k, _) = row?;
        if k.value().0 == key {
            names.insert(key.clone());
        }
    }
    for row in table.range((prefix.as_str(), "")..)? {
        let (k, _) = row?;
        let name = k.value().0;
        if !name.starts_with(&prefix) {
            break;
        }
        names.insert(name.to_owned());
    }
    Ok(names)
}

/// The tags of `name` (lexical order) with the digest each points at and its manifest; tags
/// whose manifest is gone are left out.
pub fn tags_with_manifests<R: Reads>(
    txn: &R,
    name: &OciName,
) -> Result<Vec<(String, String, ManifestMeta)>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::OCI_TAGS)?.range((name.as_str(), "")..)? {
        let (k, v) = row?;
        let (n, tag) = k.value();
        if n != name.as_str() {
            break;
        }
        let digest = v.value().to_owned();
        if let Some(m) = get(txn, name, &digest)? {
            out.push((tag.to_owned(), digest, m));
        }
    }
    Ok(out)
}

/// The manifests of `name` whose subject is `subject`, as `(digest, manifest)` in digest order.
pub fn referrers_of<R: Reads>(
    txn: &R,
    name: &OciName,
    subject: &str,
) -> Result<Vec<(String, ManifestMeta)>, StorageError> {
    let refs = txn.table(tables::REFERRERS)?;
    let mut out = Vec::new();
    for row in refs.range((name.as_str(), subject, "")..)? {
        let (k, _) = row?;
        let (n, s, referrer) = k.value();
        if n != name.as_str() || s != subject {
            break;
        }
        if let Some(m) = get(txn, name, referrer)? {
            out.push((referrer.to_owned(), m));
        }
    }
    Ok(out)
}

/// `name@digest` of every stored manifest that lists a blob `bad` accepts.
pub fn listing_blobs<R: Reads>(
    txn: &R,
    bad: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::MANIFESTS)?.iter()? {
        let (k, v) = row?;
        let m: ManifestMeta = codec::decode(v.value())?;
        if m.blobs.iter().any(|b| bad(b)) {
            out.push(format!("{}@{}", k.value().0, k.value().1));
        }
    }
    Ok(out)
}

/// Every manifest of `name` with its digest, in digest order.
pub fn all_of<R: Reads>(
    txn: &R,
    name: &OciName,
) -> Result<Vec<(String, ManifestMeta)>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::MANIFESTS)?.range((name.as_str(), "")..)? {
        let (k, v) = row?;
        let (n, digest) = k.value();
        if n != name.as_str() {
            break;
        }
        out.push((digest.to_owned(), codec::decode(v.value())?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn meta() -> ManifestMeta {
        ManifestMeta {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: None,
            blobs: Vec::new(),
            children: Vec::new(),
            platforms: Vec::new(),
            total_size: 0,
            annotations_json: String::new(),
            pushed_at: 0,
            bytes: Vec::new(),
        }
    }

    /// `acme/app-x/img` sorts between `acme/app` and `acme/app/img`: the images of
    /// `acme/app` must not end at the first name of another repository.
    #[tokio::test]
    async fn names_of_a_repo_skip_a_sibling_repo_that_sorts_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        let names = db
            .write(|txn| {
                for n in ["acme/app", "acme/app-x/img", "acme/app/img", "acme/apps/z"] {
                    put(txn, &OciName::parse(n).unwrap(), "sha256:00", &meta())?;
                }
                names_of_repo(txn, &RepoPath::new("acme", "app").unwrap())
            })
            .await
            .unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["acme/app", "acme/app/img"]
        );
    }
}
