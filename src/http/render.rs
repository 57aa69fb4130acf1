//! Release and asset views for the wire: the domain hands over records without URLs, and the
//! links (which depend on the address the client used) are built here, from the base URL, the
//! repository, the tag and the asset id. REST and the web UI render through the same functions.

use crate::domain::release::{
    url_segment, AssetDetail, AssetView, ForgeUser, ReleaseDetail, ReleaseView,
};
use crate::domain::Paged;
use crate::ids::RepoPath;
use crate::storage::records::Asset;
use crate::util::rfc3339;

/// The canonical download link of an asset: the REST route under the release's tag.
pub fn asset_download_url(base_url: &str, repo: &RepoPath, tag: &str, asset_id: u64) -> String {
    format!(
        "{}/api/v1/forge/{}/{}/releases/{}/assets/{}",
        base_url,
        repo.owner,
        repo.name,
        url_segment(tag),
        asset_id
    )
}

/// An asset of the release tagged `tag`, as the API shows it.
fn asset_of(base_url: &str, repo: &RepoPath, tag: &str, a: &Asset) -> AssetView {
    AssetView {
        id: a.id,
        name: a.name.clone(),
        label: a.label.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        download_url: asset_download_url(base_url, repo, tag, a.id),
        download_count: a.download_count,
        sha256: a.sha256.clone(),
        blake3: a.blake3.clone(),
        created_at: rfc3339(a.created_at),
    }
}

/// An asset as the API shows it.
pub fn asset(base_url: &str, repo: &RepoPath, d: &AssetDetail) -> AssetView {
    asset_of(base_url, repo, &d.tag_name, &d.asset)
}

/// A release as the API shows it.
pub fn release(base_url: &str, repo: &RepoPath, d: &ReleaseDetail) -> ReleaseView {
    let r = &d.release;
    ReleaseView {
        id: r.id,
        tag_name: r.tag_name.clone(),
        name: r.name.clone(),
        body: r.body.clone(),
        draft: r.draft,
        prerelease: r.prerelease,
        author: ForgeUser {
            username: r.author.clone(),
        },
        target_commit: r.commit_sha.clone(),
        published_at: r.published_at.map(rfc3339),
        created_at: rfc3339(r.created_at),
        latest: d.latest,
        tag_exists: d.tag_commit.is_some(),
        tag_commit: d.tag_commit.clone(),
        assets: d
            .assets
            .iter()
            .map(|a| asset_of(base_url, repo, &r.tag_name, a))
            .collect(),
        immutable: d.immutable,
    }
}

/// A page of releases as the API shows it.
pub fn releases(
    base_url: &str,
    repo: &RepoPath,
    list: &Paged<ReleaseDetail>,
) -> Paged<ReleaseView> {
    Paged {
        items: list
            .items
            .iter()
            .map(|d| release(base_url, repo, d))
            .collect(),
        page: list.page,
        has_next: list.has_next,
    }
}
