//! Published releases as read-only OCI artifacts at `<owner>/<repo>/releases:<tag>`, so any OCI
//! client (`oras pull`, `skopeo copy`, a mirroring registry) can fetch a release's assets.
//!
//! Nothing is stored for them: the manifest is built from the release's metadata on every
//! request, byte-for-byte the same for the same release (typed structs in a fixed field order,
//! annotations in a `BTreeMap`, layers sorted by file name), so its digest is stable across
//! requests and restarts; its layers are the asset files themselves (digest = the asset's
//! SHA-256), served from the asset store. A release with an attestation also has a referrer: an
//! artifact manifest whose `subject` is the release manifest and whose one layer is the DSSE
//! envelope. The image name `releases` is reserved under every repository: nothing can be
//! pushed to or deleted from it. Drafts are invisible (to everyone, admins included: an OCI
//! pull is a consumer's view); visibility is otherwise the repository's read access, exactly as
//! for asset downloads.
//!
//! Lookups by digest (a manifest, a blob, the referrers of a manifest) scan the repository's
//! published releases in one read transaction: no index is kept, so nothing can go stale and no
//! schema step is needed; the cost is linear in the repository's published releases and assets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::registry::{self, manifest::OCI_EMPTY_CONFIG, manifest::OCI_MANIFEST};
use super::{Core, DomainError, DomainResult};
use crate::attest::PREDICATE_TYPE;
use crate::auth::Principal;
use crate::ids::{AssetName, Digest, OciName, OciTag, Reference, RepoPath, Role};
use crate::storage::files::AssetKey;
use crate::storage::mmap::Mapped;
use crate::storage::records::{Asset, Release};
use crate::storage::{assets, attestations, releases, Reads};
use crate::util::rfc3339;

/// The image name, under a repository, that serves its releases (`<owner>/<repo>/releases`).
pub const IMAGE: &str = "releases";
/// `artifactType` of a release manifest: tells OCI tools this is a pfai release, not an image.
pub const ARTIFACT_TYPE: &str = "application/vnd.pfai.release.v1";
/// `artifactType` of the attestation referrer and media type of its one layer: the layer is the
/// signed DSSE envelope itself (not a bare in-toto statement, which
/// `application/vnd.in-toto+json` would announce), so a verifier needs nothing else.
pub const ATTESTATION_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The content of the empty descriptor (the config of every artifact manifest here).
pub const EMPTY_JSON: &[u8] = b"{}";
/// The tag that names the repository's Latest release (what OCI clients pull when no tag is
/// given; no release can have this tag, it is reserved for the latest-release link).
pub const LATEST: &str = "latest";
/// Layer media type of an asset whose content type is not a valid OCI media type.
const OCTET_STREAM: &str = "application/octet-stream";

/// Annotation keys on a release manifest (besides the `org.opencontainers.image.*` ones).
pub const ANNOTATION_TAG: &str = "dev.pfai.release.tag";
/// The release's title.
pub const ANNOTATION_NAME: &str = "dev.pfai.release.name";
/// The forge repository `owner/repo`.
pub const ANNOTATION_REPOSITORY: &str = "dev.pfai.release.repository";
/// The file name of a layer (what `oras pull` writes it as).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// Whether `name` is the reserved release-artifact name of its repository.
pub fn is_release_name(name: &OciName) -> bool {
    let mut parts = name.as_str().split('/');
    parts.nth(2) == Some(IMAGE) && parts.next().is_none()
}

/// The refusal of any write to the reserved name (`DENIED`, or the challenge for an anonymous
/// caller so that clients retry with credentials and then read the reason).
pub fn refuse_write(who: Option<&Principal>, name: &OciName) -> DomainError {
    match who {
        None => DomainError::Unauthenticated("authentication required".into()),
        Some(_) => DomainError::Forbidden(format!(
            "{name} is reserved: it serves the published releases of {} read-only; \
             push images under another name",
            name.repo()
        )),
    }
}

/// An OCI content descriptor, in the field order the manifest bytes use.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The empty descriptor (`{}`), the spec's config for artifacts without one.
    fn empty() -> Descriptor {
        Descriptor {
            media_type: OCI_EMPTY_CONFIG.into(),
            digest: Digest::sha256_of(EMPTY_JSON).to_string(),
            size: EMPTY_JSON.len() as u64,
            annotations: None,
        }
    }
}

/// An OCI image manifest (image-spec v1.1) used as an artifact manifest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

/// A generated manifest: its exact bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `sha256:` of `bytes`.
    pub digest: Digest,
    /// The manifest JSON (always `application/vnd.oci.image.manifest.v1+json`).
    pub bytes: Vec<u8>,
}

impl Generated {
    fn of(m: &ArtifactManifest) -> DomainResult<Generated> {
        let bytes = serde_json::to_vec(m)
            .map_err(|e| DomainError::internal_from("cannot serialize a release manifest", e))?;
        Ok(Generated {
            digest: Digest::sha256_of(&bytes),
            bytes,
        })
    }

    /// The media type the manifest is served as.
    pub fn media_type(&self) -> &'static str {
        OCI_MANIFEST
    }
}

/// Whether `s` is a restricted name of RFC 6838 (what the image-spec allows on each side of a
/// media type's `/`).
fn restricted_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 127
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(c))
}

/// An asset's layer media type: its content type without parameters when that is a valid OCI
/// media type (`type/subtype`), else `application/octet-stream`.
pub fn layer_media_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((t, s)) if restricted_name(t) && restricted_name(s) => essence.to_owned(),
        _ => OCTET_STREAM.to_owned(),
    }
}

fn insert_nonempty(m: &mut BTreeMap<String, String>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.to_owned(), v.to_owned());
    }
}

/// The release's publication time as the manifests state it.
fn created(release: &Release) -> String {
    rfc3339(release.published_at.unwrap_or(release.created_at))
}

/// The manifest of a release: the empty config, one layer per asset (sorted by file name; the
/// empty descriptor alone when there is none, as the spec advises), the release's annotations.
pub fn release_manifest(release: &Release, assets: &[Asset]) -> DomainResult<Generated> {
    let mut sorted: Vec<&Asset> = assets.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut layers: Vec<Descriptor> = sorted
        .into_iter()
        .map(|a| Descriptor {
            media_type: layer_media_type(&a.content_type),
            digest: format!("sha256:{}", a.sha256),
            size: a.size,
            annotations: Some(BTreeMap::from([(
                ANNOTATION_TITLE.to_owned(),
                a.name.clone(),
            )])),
        })
        .collect();
    if layers.is_empty() {
        layers.push(Descriptor::empty());
    }
    let mut annotations = BTreeMap::new();
    insert_nonempty(
        &mut annotations,
        "org.opencontainers.image.created",
        &created(release),
    );
    insert_nonempty(
        &mut annotations,
        "org.opencontainers.image.version",
        &release.tag_name,
    );
    insert_nonempty(
        &mut annotations,
        "org.opencontainers.image.revision",
        &release.commit_sha,
    );
    insert_nonempty(&mut annotations, ANNOTATION_TAG, &release.tag_name);
    insert_nonempty(&mut annotations, ANNOTATION_NAME, &release.name);
    insert_nonempty(&mut annotations, ANNOTATION_REPOSITORY, &release.repo);
    Generated::of(&ArtifactManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: ARTIFACT_TYPE,
        config: Descriptor::empty(),
        layers,
        subject: None,
        annotations,
    })
}

/// The annotations of the attestation referrer (also listed in the referrers response).
fn attestation_annotations(release: &Release) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "org.opencontainers.image.created".to_owned(),
            created(release),
        ),
        (
            "in-toto.io/predicate-type".to_owned(),
            PREDICATE_TYPE.to_owned(),
        ),
    ])
}

/// The referrer manifest carrying a release's attestation: `subject` = the release manifest,
/// one layer = the DSSE envelope bytes.
pub fn attestation_manifest(
    release: &Release,
    subject: &Generated,
    envelope: &[u8],
) -> DomainResult<Generated> {
    Generated::of(&ArtifactManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: ATTESTATION_TYPE,
        config: Descriptor::empty(),
        layers: vec![Descriptor {
            media_type: ATTESTATION_TYPE.into(),
            digest: Digest::sha256_of(envelope).to_string(),
            size: envelope.len() as u64,
            annotations: None,
        }],
        subject: Some(Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: subject.digest.to_string(),
            size: subject.bytes.len() as u64,
            annotations: None,
        }),
        annotations: attestation_annotations(release),
    })
}

/// A published release as the artifact views need it.
struct Published {
    release: Release,
    assets: Vec<Asset>,
    envelope: Option<Vec<u8>>,
}

impl Published {
    fn load<R: Reads>(txn: &R, release: Release) -> DomainResult<Published> {
        Ok(Published {
            assets: assets::of_release(txn, release.id)?,
            envelope: attestations::get(txn, release.id)?,
            release,
        })
    }

    fn manifest(&self) -> DomainResult<Generated> {
        release_manifest(&self.release, &self.assets)
    }

    /// The attestation referrer, when the release has an attestation.
    fn referrer(&self, subject: &Generated) -> DomainResult<Option<Generated>> {
        self.envelope
            .as_deref()
            .map(|e| attestation_manifest(&self.release, subject, e))
            .transpose()
    }
}

/// Checks read access to the name's repository (the registry's rule: an anonymous caller who
/// cannot see it is asked to authenticate) and loads what `pick` selects among its published
/// releases, in one read transaction.
async fn with_published<T: Send + 'static>(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    pick: impl FnOnce(&redb::ReadTransaction, &RepoPath) -> DomainResult<T> + Send + 'static,
) -> DomainResult<T> {
    let (w, n) = (who.cloned(), name.clone());
    core.db
        .read(move |txn| {
            registry::access_txn(txn, w.as_ref(), &n, Role::Read)?;
            pick(txn, &n.repo())
        })
        .await
}

/// Every published release of the repository, with assets and envelopes.
fn all_published<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<Vec<Published>> {
    releases::published(txn, repo)?
        .into_iter()
        .filter(|r| !r.draft)
        .map(|r| Published::load(txn, r))
        .collect()
}

/// `GET /v2/<owner>/<repo>/releases/manifests/<reference>`: the release manifest by tag (`latest`:
/// the Latest release) or digest, or the attestation referrer by digest.
pub async fn manifest(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    reference: &Reference,
) -> DomainResult<Generated> {
    match reference.clone() {
        Reference::Tag(t) => {
            let found = with_published(core, who, name, move |txn, repo| {
                let release = if t.as_str() == LATEST {
                    super::latest::latest_txn(txn, repo)?
                } else {
                    releases::by_tag(txn, repo, t.as_str())?
                };
                match release {
                    Some(r) if !r.draft => Ok(Some(Published::load(txn, r)?)),
                    _ => Ok(None),
                }
            })
            .await?;
            found.ok_or(DomainError::ManifestUnknown)?.manifest()
        }
        Reference::Digest(d) => {
            let all = with_published(core, who, name, all_published).await?;
            for p in &all {
                let m = p.manifest()?;
                if m.digest == d {
                    return Ok(m);
                }
                if let Some(a) = p.referrer(&m)? {
                    if a.digest == d {
                        return Ok(a);
                    }
                }
            }
            Err(DomainError::ManifestUnknown)
        }
    }
}

/// One page of the tags of published releases that are valid OCI tags (a release tag such as
/// `release/1.0` is reachable by digest only), plus `latest` when the repository has a Latest
/// release, in lexical order after `last`.
pub async fn tags(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    n: Option<usize>,
    last: Option<String>,
) -> DomainResult<(Vec<String>, bool)> {
    let limit = n.unwrap_or(registry::MAX_PAGE).min(registry::MAX_PAGE);
    let mut all: Vec<String> = with_published(core, who, name, |txn, repo| {
        let mut tags: Vec<String> = releases::published(txn, repo)?
            .into_iter()
            .filter(|r| !r.draft && OciTag::parse(&r.tag_name).is_ok())
            .map(|r| r.tag_name)
            .collect();
        if super::latest::latest_txn(txn, repo)?.is_some() {
            tags.push(LATEST.to_owned());
        }
        Ok(tags)
    })
    .await?;
    all.sort();
    all.dedup();
    let start = match &last {
        Some(l) => all.partition_point(|t| t <= l),
        None => 0,
    };
    let rest = &all[start..];
    let more = rest.len() > limit;
    Ok((rest.iter().take(limit).cloned().collect(), more))
}

/// The referrers of a release manifest: its attestation, when it has one (an empty list for
/// any other digest, as the spec wants for unknown subjects).
pub async fn referrers(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
    artifact_type: Option<String>,
) -> DomainResult<Vec<registry::ReferrerDescriptor>> {
    let all = with_published(core, who, name, all_published).await?;
    let mut out = Vec::new();
    for p in &all {
        if p.envelope.is_none() {
            continue;
        }
        let m = p.manifest()?;
        if &m.digest != digest {
            continue;
        }
        if let Some(a) = p.referrer(&m)? {
            if artifact_type
                .as_deref()
                .is_none_or(|t| t == ATTESTATION_TYPE)
            {
                out.push(registry::ReferrerDescriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: a.digest.to_string(),
                    size: a.bytes.len() as u64,
                    artifact_type: Some(ATTESTATION_TYPE.into()),
                    annotations: Some(attestation_annotations(&p.release)),
                });
            }
        }
    }
    Ok(out)
}

/// A blob of the release artifacts, ready to serve.
pub struct ArtifactBlob {
    /// Its bytes: the asset file itself (mapped), or the small generated content.
    pub data: Mapped,
    /// Its digest.
    pub digest: Digest,
    /// The asset it is, so a full download is counted like one from the release page.
    pub asset_id: Option<u64>,
}

/// What a blob digest names among the releases.
enum Found {
    Asset(RepoPath, Box<Asset>),
    Bytes(Vec<u8>),
}

/// `GET /v2/<owner>/<repo>/releases/blobs/<digest>`: an asset of a published release (its own
/// file), an attestation envelope, or the empty config.
pub async fn open_blob(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
) -> DomainResult<ArtifactBlob> {
    let want = digest.clone();
    let found = with_published(core, who, name, move |txn, repo| {
        if want == Digest::sha256_of(EMPTY_JSON) {
            return Ok(Some(Found::Bytes(EMPTY_JSON.to_vec())));
        }
        let hex = want.to_string();
        let Some(hex) = hex.strip_prefix("sha256:") else {
            return Ok(None);
        };
        for p in all_published(txn, repo)? {
            if let Some(a) = p.assets.into_iter().find(|a| a.sha256 == hex) {
                return Ok(Some(Found::Asset(repo.clone(), Box::new(a))));
            }
            if let Some(e) = p.envelope {
                if Digest::sha256_of(&e) == want {
                    return Ok(Some(Found::Bytes(e)));
                }
            }
        }
        Ok(None)
    })
    .await?;
    match found.ok_or(DomainError::BlobUnknown)? {
        Found::Bytes(b) => Ok(ArtifactBlob {
            data: Mapped::Owned(b.into()),
            digest: digest.clone(),
            asset_id: None,
        }),
        Found::Asset(repo, a) => {
            let key = AssetKey {
                repo,
                release: a.release_id,
                asset: a.id,
                name: AssetName::parse(&a.name)?,
            };
            let files = core.assets.clone();
            let data = tokio::task::spawn_blocking(move || files.open_asset(&key))
                .await
                .map_err(DomainError::from)?
                .map_err(|e| DomainError::internal_from("asset file unreadable", e))?;
            if data.len() != a.size {
                tracing::error!(
                    asset = a.id,
                    "stored asset has the wrong size; run pfai fsck"
                );
                return Err(DomainError::BlobUnknown);
            }
            Ok(ArtifactBlob {
                data,
                digest: digest.clone(),
                asset_id: Some(a.id),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            id: 7,
            repo: "acme/app".into(),
            tag_name: "v1.2.3".into(),
            name: "One two three".into(),
            body: "notes".into(),
            draft: false,
            prerelease: false,
            author: "admin".into(),
            target_commit: "main".into(),
            commit_sha: "a".repeat(40),
            created_at: 1_700_000_000,
            published_at: Some(1_700_000_100),
        }
    }

    fn asset(id: u64, name: &str, ct: &str, data: &[u8]) -> Asset {
        Asset {
            id,
            release_id: 7,
            repo: "acme/app".into(),
            name: name.into(),
            label: String::new(),
            content_type: ct.into(),
            size: data.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)),
            uploader: "admin".into(),
            created_at: 1,
            download_count: id * 10,
            blake3: None,
        }
    }

    #[test]
    fn the_same_release_gives_the_same_manifest_bytes_whatever_the_asset_order_or_counts() {
        let a = asset(1, "b.tar.gz", "application/gzip", b"bbb");
        let b = asset(2, "a.txt", "text/plain; charset=utf-8", b"aa");
        let m1 = release_manifest(&release(), &[a.clone(), b.clone()]).unwrap();
        let mut b2 = b.clone();
        b2.download_count = 999;
        let m2 = release_manifest(&release(), &[b2, a]).unwrap();
        assert_eq!(m1, m2);
        assert_eq!(m1.digest, Digest::sha256_of(&m1.bytes));
        let v: serde_json::Value = serde_json::from_slice(&m1.bytes).unwrap();
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], OCI_EMPTY_CONFIG);
        assert_eq!(v["config"]["size"], 2);
        assert_eq!(v["layers"][0]["annotations"][ANNOTATION_TITLE], "a.txt");
        assert_eq!(v["layers"][0]["mediaType"], "text/plain");
        assert_eq!(v["layers"][1]["mediaType"], "application/gzip");
        assert_eq!(
            v["annotations"]["org.opencontainers.image.version"],
            "v1.2.3"
        );
        assert_eq!(
            v["annotations"]["org.opencontainers.image.created"],
            "2023-11-14T22:15:00Z"
        );
        // Something a client sees changes the digest.
        let mut renamed = release();
        renamed.name = "other".into();
        assert_ne!(release_manifest(&renamed, &[]).unwrap(), m1);
    }

    #[test]
    fn a_release_without_assets_has_the_empty_layer_and_a_referrer_names_its_subject() {
        let m = release_manifest(&release(), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        assert_eq!(v["layers"].as_array().unwrap().len(), 1);
        assert_eq!(v["layers"][0]["mediaType"], OCI_EMPTY_CONFIG);
        let a = attestation_manifest(&release(), &m, b"{\"payload\":\"x\"}").unwrap();
        let av: serde_json::Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(av["subject"]["digest"], m.digest.to_string());
        assert_eq!(av["subject"]["size"], m.bytes.len());
        assert_eq!(av["artifactType"], ATTESTATION_TYPE);
        assert_eq!(av["layers"][0]["mediaType"], ATTESTATION_TYPE);
        // The generated manifests pass the registry's own validation.
        for g in [&m, &a] {
            registry::manifest::parse(Some(OCI_MANIFEST), &g.bytes).unwrap();
        }
    }

    #[test]
    fn content_types_that_are_not_oci_media_types_become_octet_stream() {
        assert_eq!(layer_media_type("application/x-tar"), "application/x-tar");
        assert_eq!(layer_media_type("text/plain;charset=utf-8"), "text/plain");
        for bad in ["", "text", "text/", "/x", "te xt/plain", "a/b/c", "ü/x"] {
            assert_eq!(layer_media_type(bad), OCTET_STREAM, "{bad}");
        }
    }

    #[test]
    fn only_the_third_component_releases_is_reserved() {
        let p = |s: &str| OciName::parse(s).unwrap();
        assert!(is_release_name(&p("acme/app/releases")));
        assert!(!is_release_name(&p("acme/releases")));
        assert!(!is_release_name(&p("acme/app/releases/x")));
        assert!(!is_release_name(&p("acme/app/releases2")));
        assert!(!is_release_name(&p("acme/app/x/releases")));
    }
}
