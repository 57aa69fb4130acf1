//! The records stored in redb values (see `tables.rs` for which table holds which). Plain data:
//! rules about them live in `domain`.

use serde::{Deserialize, Serialize};

/// A person who can sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Unique name (also a namespace).
    pub username: String,
    /// Contact address, not verified.
    pub email: String,
    /// argon2 PHC string; empty means password sign-in is disabled.
    pub password_hash: String,
    /// Site admin: admin on every repository.
    pub admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// An organization: a namespace whose members get a role on all its repositories.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    /// Unique name.
    pub name: String,
    /// Who created it (an admin member).
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// An API token; the table key is the hash of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// Public id, for listing and revoking.
    pub id: u64,
    /// Whose token.
    pub username: String,
    /// Label chosen by the user.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A web UI sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Who signed in.
    pub username: String,
    /// The CSRF token every state-changing form of this session must carry.
    pub csrf: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the session is refused (and purged).
    pub expires_at: i64,
}

/// A forge repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repo {
    /// Numeric id.
    pub id: u64,
    /// Owner (user or org).
    pub owner: String,
    /// Name within the owner.
    pub name: String,
    /// Hidden from those without a role.
    pub private: bool,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A release row (the seed's Release, minus assets, which have their own table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    /// Numeric id.
    pub id: u64,
    /// `owner/repo`.
    pub repo: String,
    /// The git tag this release points at.
    pub tag_name: String,
    /// Display title.
    pub name: String,
    /// Markdown notes.
    pub body: String,
    /// Not visible to non-maintainers.
    pub draft: bool,
    /// Never marked Latest.
    pub prerelease: bool,
    /// Username of the creator.
    pub author: String,
    /// What the creator asked for (branch or SHA), if the tag did not exist.
    pub target_commit: String,
    /// The commit SHA the tag resolved to when the release was anchored (created or published).
    pub commit_sha: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; set when created non-draft or when a draft is published.
    pub published_at: Option<i64>,
}

/// A release asset row; the file lives at `<base>/<owner>/<repo>/<release>/<id>-<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Asset {
    /// Numeric id.
    pub id: u64,
    /// Owning release.
    pub release_id: u64,
    /// `owner/repo`, joined into every lookup so ids cannot cross repositories.
    pub repo: String,
    /// File name shown and downloaded as.
    pub name: String,
    /// Optional display label.
    pub label: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content (also the ETag).
    pub sha256: String,
    /// Who uploaded it.
    pub uploader: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Full downloads counted so far (batched in memory, flushed periodically).
    pub download_count: u64,
    /// Hex BLAKE3 of the content (schema 3): computed with the SHA-256 in the same pass at
    /// upload, and re-verified by fsck at a fraction of SHA-256's cost. `None` for assets stored
    /// before schema 3 until `fsck --repair` computes it.
    pub blake3: Option<String>,
}

/// A tag-protection rule: a glob over tag names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtectionRule {
    /// Numeric id.
    pub id: u64,
    /// `owner/repo`.
    pub repo: String,
    /// The glob, as given.
    pub pattern: String,
    /// Who made it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A blob in the content-addressed store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Bytes.
    pub size: u64,
    /// Unix seconds of the first publication.
    pub created_at: i64,
    /// Unix seconds of the last upload, mount or link: GC's grace period counts from here.
    pub touched_at: i64,
}

/// A manifest stored in one repository, with its exact bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestMeta {
    /// The media type it was pushed with (and that its `mediaType` field agrees with).
    pub media_type: String,
    /// `artifactType`, or the config media type for artifacts that use it.
    pub artifact_type: Option<String>,
    /// The `subject` digest, when it refers to another manifest.
    pub subject: Option<String>,
    /// Blob digests referenced (config and layers).
    pub blobs: Vec<String>,
    /// Child manifest digests (for an index or manifest list).
    pub children: Vec<String>,
    /// Platforms of the children (`os/arch[/variant]`), for indexes.
    pub platforms: Vec<String>,
    /// Sum of the config and layer sizes (for images), as declared by descriptors.
    pub total_size: u64,
    /// `annotations` of the manifest, as JSON (for referrers responses).
    pub annotations_json: String,
    /// Unix seconds.
    pub pushed_at: i64,
    /// The exact bytes received.
    pub bytes: Vec<u8>,
}

/// An OCI blob upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadSession {
    /// The OCI name it was started in.
    pub name: String,
    /// Who started it.
    pub username: String,
    /// Digest algorithm to verify with.
    pub algorithm: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last received chunk (the purge leaves active sessions alone).
    pub updated_at: i64,
}

/// A repository's registry retention policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Tag rules: a tag matching a rule's pattern stays while it is among the rule's newest.
    pub keep: Vec<KeepRule>,
    /// Untagged manifests pushed longer ago than this are removed.
    pub untagged_older_than_secs: Option<u64>,
    /// Who set it.
    pub updated_by: String,
    /// When (unix seconds).
    pub updated_at: i64,
}

/// Keep the `newest` tags matching `pattern` (a tag-protection-style glob), per image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeepRule {
    /// The glob.
    pub pattern: String,
    /// How many of the matching tags stay, newest manifest push first.
    pub newest: u32,
}

/// A repository's own settings (REPO_SETTINGS); `None` inherits the owner's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSettings {
    /// `immutableReleases` set on the repository itself.
    pub immutable_releases: Option<bool>,
}

/// An organization's defaults for its repositories (OWNER_SETTINGS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSettings {
    /// Default of `immutableReleases` for repositories that do not set it.
    pub immutable_releases: bool,
}

/// Why and since when a release is immutable (IMMUTABLE_RELEASES).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableMark {
    /// Unix seconds of the publish that made it immutable.
    pub since: i64,
    /// Who published it.
    pub publisher: String,
}

/// A tag name an immutable release used (TAG_TOMBSTONES): kept after the repository is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagTombstone {
    /// The release's id (in the repository as it was then).
    pub release_id: u64,
    /// Unix seconds of the publish.
    pub since: i64,
    /// Who published it.
    pub publisher: String,
}
