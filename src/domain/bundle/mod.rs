//! Air-gap bundles: one file that carries repositories (git refs and objects, tag rules),
//! releases with their assets, and images from one pfai to another, verified on arrival.
//!
//! The file is an OCI image layout in a tar (`oci-layout`, `blobs/<alg>/<hex>`, `index.json`
//! last), so any OCI tool reads its images (`skopeo copy oci-archive:F.tar:NAME:TAG …`), every
//! item is content-addressed (a blob shared by two images is stored once), and the writer
//! streams it in one pass while the reader has verified every blob before it reads the index.
//! `index.json` lists: each image tag (with `org.opencontainers.image.ref.name` = `NAME:TAG`)
//! and each referrer; per repository an artifact manifest ([`REPO_ARTIFACT`]) whose layers are
//! the repository's JSON, its tag rules and a git bundle; per release an artifact manifest
//! ([`RELEASE_ARTIFACT`]) whose first layer is the release's JSON and the others its assets.
//!
//! `export` runs in the server and streams the tar; `import` stages and verifies the whole
//! file before applying anything (see `import.rs`).

mod export;
mod import;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::api::{BundleExport, BundleImportReport, BundleItem, BundleSince};
pub use export::{export, Export};
pub use import::import;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use import::read_and_plan;

use crate::api::RuleTarget;

/// The `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// `artifactType` of a repository's manifest in a bundle.
pub const REPO_ARTIFACT: &str = "application/vnd.pfai.bundle.repo.v1";
/// `artifactType` of a release's manifest in a bundle.
pub const RELEASE_ARTIFACT: &str = "application/vnd.pfai.bundle.release.v1";
/// Media type of a repository's JSON layer ([`RepoMeta`]).
pub const REPO_JSON: &str = "application/vnd.pfai.bundle.repo.v1+json";
/// Media type of a repository's tag rules layer ([`RuleMeta`] list).
pub const RULES_JSON: &str = "application/vnd.pfai.bundle.rules.v1+json";
/// Media type of a release's JSON layer ([`ReleaseMeta`]).
pub const RELEASE_JSON: &str = "application/vnd.pfai.bundle.release.v1+json";
/// Media type of a git bundle layer (`git clone x.bundle` works on a full one).
pub const GIT_BUNDLE: &str = "application/vnd.pfai.git.bundle.v2";
/// The OCI empty config (`{}`), the config of the artifact manifests.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// `index.json` annotation: what a descriptor is (`repo`, `release`, `image`, `manifest`).
pub const KIND: &str = "vnd.pfai.kind";
/// `index.json` annotation: the `owner/repo` of a repository or release.
pub const REPO: &str = "vnd.pfai.repo";
/// `index.json` annotation: the git refs a repository manifest carries, as JSON
/// (`[[ref, oid], …]`), read back by `pfai bundle export --since`.
pub const REFS: &str = "vnd.pfai.git.refs";
/// `index.json` annotation: a release's tag.
pub const RELEASE_TAG: &str = "vnd.pfai.release.tag";
/// `index.json` annotation: `true` on the release that was its repository's Latest (kept out of
/// the release's manifest, so that a new Latest elsewhere does not change an old release's
/// digest and make `--since` carry it again).
pub const LATEST: &str = "vnd.pfai.release.latest";
/// `index.json` annotation: an image's OCI name.
pub const IMAGE: &str = "vnd.pfai.image";
/// `index.json` annotation: an image's tag.
pub const TAG: &str = "vnd.pfai.tag";
/// The OCI annotation naming a tag in an image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The OCI annotation naming a layer's file.
pub const TITLE: &str = "org.opencontainers.image.title";
/// Largest `index.json` or manifest read into memory.
pub const MAX_DOC: u64 = 64 << 20;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Desc {
    /// Media type of what it points at.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// For artifact manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations (sorted, so the bytes are a function of the content).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The image index media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// What the bundle holds.
    pub manifests: Vec<Desc>,
}

/// A repository's or release's manifest in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The image manifest media type.
    pub media_type: String,
    /// [`REPO_ARTIFACT`] or [`RELEASE_ARTIFACT`].
    pub artifact_type: String,
    /// The empty config.
    pub config: Desc,
    /// The layers.
    pub layers: Vec<Desc>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A repository in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepoMeta {
    /// `owner/repo`.
    pub repo: String,
    /// Hidden from those without a role.
    pub private: bool,
    /// Free text.
    pub description: String,
    /// `HEAD`'s branch.
    pub head: Option<String>,
    /// Every ref at export time, `[ref, oid]`.
    pub refs: Vec<(String, String)>,
}

/// A tag protection rule in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleMeta {
    /// The glob.
    pub pattern: String,
    /// Git tags, registry tags or both.
    pub target: RuleTarget,
    /// No admin override.
    pub immutable: bool,
}

/// A release in a bundle: everything but ids and download counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseMeta {
    /// Its git tag.
    pub tag: String,
    /// Title.
    pub name: String,
    /// Notes (Markdown).
    pub body: String,
    /// Draft.
    pub draft: bool,
    /// Pre-release.
    pub prerelease: bool,
    /// Who created it.
    pub author: String,
    /// What its creator asked the tag to be made on.
    pub target_commit: String,
    /// The commit it was anchored at.
    pub commit_sha: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub published_at: Option<i64>,
    /// Its assets, by name.
    pub assets: Vec<AssetMeta>,
}

/// A release asset in a bundle (its bytes are the blob `sha256:<sha256>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssetMeta {
    /// File name.
    pub name: String,
    /// Label.
    pub label: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Hex BLAKE3, when known.
    pub blake3: Option<String>,
    /// Uploader.
    pub uploader: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// The descriptor of the empty config.
fn empty_config() -> Desc {
    Desc {
        media_type: "application/vnd.oci.empty.v1+json".into(),
        digest: crate::ids::Digest::sha256_of(EMPTY_CONFIG).to_string(),
        size: EMPTY_CONFIG.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// The tar path of a blob.
pub fn blob_path(d: &crate::ids::Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// The digest a tar path names (`blobs/<alg>/<hex>`), if it is one.
pub fn path_digest(path: &str) -> Option<crate::ids::Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    crate::ids::Digest::parse(&format!("{alg}:{hex}")).ok()
}
