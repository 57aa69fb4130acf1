//! Manifest parsing and validation, pure (no storage): what `PUT /manifests` accepts. The digest
//! is computed over the received bytes, which are stored byte-exact; parsing only checks them.
//!
//! Accepted media types: OCI image manifest and index (image-spec v1.1), Docker manifest v2
//! schema 2 and manifest list. Documents are parsed into typed structs, so a duplicated known
//! field (`"layers"` twice, say) is an error rather than "last one wins", and serde_json's
//! recursion limit stops nesting bombs.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ids::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The config media type that marks an artifact using an empty config.
pub const OCI_EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The default image config type (not an artifact type).
const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Whether a media type names a manifest list / index.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Platform (index entries).
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Artifact type (index entries).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External URLs (non-distributable layers).
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

/// A platform of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `v8`.
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// What validation learned about a manifest.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The media type (from `Content-Type`, agreeing with the document).
    pub media_type: String,
    /// `artifactType`, or the config media type when it is not a plain image config.
    pub artifact_type: Option<String>,
    /// Blob digests (config and layers), deduplicated, in document order.
    pub blobs: Vec<Digest>,
    /// Child manifest digests (index entries).
    pub children: Vec<Digest>,
    /// `os/arch[/variant]` of each child.
    pub platforms: Vec<String>,
    /// The subject, if any.
    pub subject: Option<Digest>,
    /// Declared size of config + layers.
    pub total_size: u64,
    /// The annotations as JSON (`null` when absent).
    pub annotations_json: String,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// MANIFEST_INVALID.
    #[error("{0}")]
    Invalid(String),
    /// DIGEST_INVALID (a descriptor's digest is malformed).
    #[error("{0}")]
    Digest(String),
}

fn inv(s: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(s.into())
}

fn descriptor_digest(d: &Descriptor, what: &str) -> Result<Digest, ManifestError> {
    if d.size < 0 {
        return Err(inv(format!("{what}: size must not be negative")));
    }
    if d.media_type.is_empty() || d.media_type.len() > 255 {
        return Err(inv(format!("{what}: mediaType is required")));
    }
    Digest::parse(&d.digest).map_err(|e| ManifestError::Digest(format!("{what}: {e}")))
}

/// The config's media type of a stored (already validated) manifest, if it has a config: what
/// the referrers API reports as `artifactType` when the manifest sets none.
pub fn config_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "mediaType")]
        media_type: String,
    }
    #[derive(Deserialize)]
    struct WithConfig {
        config: Option<Config>,
    }
    serde_json::from_slice::<WithConfig>(bytes)
        .ok()?
        .config
        .map(|c| c.media_type)
}

/// Parses and validates `bytes` pushed with `content_type` (parameters ignored).
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Parsed, ManifestError> {
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| inv(format!("invalid manifest JSON: {e}")))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|c| !c.is_empty());
    let media_type = match (&ct, &doc.media_type) {
        (Some(c), Some(m)) if c != m => {
            return Err(inv(format!(
                "Content-Type {c} disagrees with the manifest's mediaType {m}"
            )))
        }
        (Some(c), _) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => return Err(inv("a manifest needs a Content-Type or a mediaType")),
    };
    if doc.schema_version != Some(2) {
        return Err(inv("schemaVersion must be 2"));
    }
    let mut blobs: Vec<Digest> = Vec::new();
    let mut children = Vec::new();
    let mut platforms = Vec::new();
    let mut total_size = 0u64;
    let mut artifact_type = doc.artifact_type.clone();
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if doc.manifests.is_some() {
                return Err(inv("an image manifest must not have \"manifests\""));
            }
            let config = doc
                .config
                .as_ref()
                .ok_or_else(|| inv("an image manifest needs a config"))?;
            let layers = doc
                .layers
                .as_ref()
                .ok_or_else(|| inv("an image manifest needs layers"))?;
            if media_type == DOCKER_MANIFEST && layers.is_empty() {
                return Err(inv("a Docker image manifest needs at least one layer"));
            }
            if layers.len() > 10_000 {
                return Err(inv("too many layers"));
            }
            let cd = descriptor_digest(config, "config")?;
            total_size = total_size.saturating_add(config.size as u64);
            blobs.push(cd);
            if artifact_type.is_none()
                && config.media_type != OCI_IMAGE_CONFIG
                && config.media_type != DOCKER_IMAGE_CONFIG
                && config.media_type != OCI_EMPTY_CONFIG
            {
                artifact_type = Some(config.media_type.clone());
            }
            for (i, l) in layers.iter().enumerate() {
                let d = descriptor_digest(l, &format!("layers[{i}]"))?;
                total_size = total_size.saturating_add(l.size as u64);
                // Non-distributable layers (with urls) need not be in the registry.
                if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    continue;
                }
                if !blobs.contains(&d) {
                    blobs.push(d);
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            if doc.config.is_some() || doc.layers.is_some() {
                return Err(inv("an index must not have config or layers"));
            }
            let manifests = doc
                .manifests
                .as_ref()
                .ok_or_else(|| inv("an index needs manifests"))?;
            if manifests.len() > 10_000 {
                return Err(inv("too many manifests"));
            }
            for (i, m) in manifests.iter().enumerate() {
                let d = descriptor_digest(m, &format!("manifests[{i}]"))?;
                if !children.contains(&d) {
                    children.push(d);
                }
                if let Some(p) = &m.platform {
                    let mut s = format!("{}/{}", p.os, p.architecture);
                    if let Some(v) = &p.variant {
                        s.push('/');
                        s.push_str(v);
                    }
                    platforms.push(s);
                }
            }
        }
        other => return Err(inv(format!("unsupported manifest media type {other:?}"))),
    }
    let subject = match &doc.subject {
        Some(s) => Some(descriptor_digest(s, "subject")?),
        None => None,
    };
    let annotations_json = match &doc.annotations {
        Some(a) => serde_json::to_string(a).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    };
    Ok(Parsed {
        media_type,
        artifact_type,
        blobs,
        children,
        platforms,
        subject,
        total_size,
        annotations_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(ct: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{ct}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10}}]}}"#,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn accepts_an_image() {
        let p = parse(Some(OCI_MANIFEST), image(OCI_MANIFEST).as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.total_size, 12);
        assert!(p.artifact_type.is_none());
    }

    #[test]
    fn refuses_disagreeing_or_unknown_types() {
        assert!(parse(Some(OCI_INDEX), image(OCI_MANIFEST).as_bytes()).is_err());
        assert!(parse(Some("text/plain"), image("text/plain").as_bytes()).is_err());
        assert!(parse(None, b"{\"schemaVersion\":2}").is_err());
    }

    #[test]
    fn refuses_duplicate_keys_and_bombs() {
        let dup = image(OCI_MANIFEST).replacen("\"layers\"", "\"layers\":[],\"layers\"", 1);
        assert!(parse(Some(OCI_MANIFEST), dup.as_bytes()).is_err());
        let bomb = "[".repeat(100_000);
        assert!(parse(Some(OCI_MANIFEST), bomb.as_bytes()).is_err());
    }

    fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data-fixtures/oci/manifests")
            .join(kind);
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_valid_fixture_parses() {
        let all = fixtures("valid");
        assert_eq!(all.len(), 7);
        for (name, bytes) in all {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let ct = v["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_owned();
            let p = parse(Some(&ct), &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            match name.as_str() {
                "artifact-subject.json" => {
                    assert_eq!(
                        p.artifact_type.as_deref(),
                        Some("application/vnd.example.sbom.v1")
                    );
                    assert!(p.subject.is_some());
                }
                "artifact-config-type.json" => {
                    assert_eq!(
                        p.artifact_type.as_deref(),
                        Some("application/vnd.cncf.helm.config.v1+json")
                    )
                }
                "oci-index.json" => assert_eq!(p.platforms, vec!["linux/amd64", "linux/arm64/v8"]),
                "docker-list.json" => assert_eq!(p.children.len(), 2),
                _ => assert!(p.artifact_type.is_none(), "{name}"),
            }
        }
    }

    #[test]
    fn every_invalid_fixture_is_refused() {
        let all = fixtures("invalid");
        assert_eq!(all.len(), 14);
        for (name, bytes) in all {
            assert!(
                parse(Some(OCI_MANIFEST), &bytes).is_err(),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn malformed_descriptor_digest_is_digest_invalid() {
        let bad = image(OCI_MANIFEST).replace(&d('b'), "sha256:../../x");
        assert!(matches!(
            parse(Some(OCI_MANIFEST), bad.as_bytes()),
            Err(ManifestError::Digest(_))
        ));
    }
}
