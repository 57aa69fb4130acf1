//! The REST wire model: every JSON body `/api/v1/` accepts or returns, in one place, deriving
//! both `Serialize` and `Deserialize` so the server (which builds and reads them) and the CLI
//! (which sends and reads them) share one definition — renaming a field breaks the build, not a
//! user.
//!
//! Conventions: request bodies are `deny_unknown_fields` (a typo in a client is a 400, not a
//! silently ignored field) and skip absent optional fields when serialized; response bodies
//! tolerate unknown fields, so an older CLI keeps working against a newer server. Field order is
//! the wire order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Role;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The REST error body, `{"error":{"code","message"}}`, for every failure outside `/v2/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The failure.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable snake_case code (`not_found`, `forbidden`, …).
    pub code: String,
    /// A sentence for the user.
    pub message: String,
}

/// The OCI error body under `/v2/` (`{"errors":[{"code","message","detail"}]}`), as far as a
/// client reads it: the CLI falls back to its first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciErrorBody {
    /// The errors, most relevant first.
    pub errors: Vec<OciErrorDetail>,
}

/// One OCI error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciErrorDetail {
    /// Upper-case OCI code (`BLOB_UNKNOWN`, …).
    pub code: String,
    /// A sentence for the user.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Releases and assets
// ---------------------------------------------------------------------------------------------

/// The author of a release (the seed's ForgeUser).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgeUser {
    /// Username.
    pub username: String,
}

/// An asset as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    /// Id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Label.
    pub label: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// The canonical download link.
    pub download_url: String,
    /// Full downloads.
    pub download_count: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Hex BLAKE3 (absent for an asset stored before pfai computed it, until `fsck --repair`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A release as the API shows it: the seed's schema plus `createdAt`, `latest`, `tagExists`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// Id.
    pub id: u64,
    /// Tag.
    pub tag_name: String,
    /// Title.
    pub name: String,
    /// Markdown notes.
    pub body: String,
    /// Draft.
    pub draft: bool,
    /// Pre-release.
    pub prerelease: bool,
    /// Creator.
    pub author: ForgeUser,
    /// The commit SHA the release was anchored at.
    pub target_commit: String,
    /// RFC 3339 or null.
    pub published_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The release the UI marks Latest.
    pub latest: bool,
    /// False once the tag was deleted (the release is unanchored).
    pub tag_exists: bool,
    /// The commit the tag points at now, when it differs from `targetCommit` the tag was moved.
    pub tag_commit: Option<String>,
    /// Assets, by name.
    pub assets: Vec<AssetView>,
    /// The release's web page (`/{owner}/{repo}/releases/tag/{tag}`), what the CLI prints.
    #[serde(default)]
    pub html_url: String,
    /// "Source code (tar.gz)": the tag's archive (`/{owner}/{repo}/archive/refs/tags/{tag}.tar.gz`);
    /// null while the tag does not exist.
    #[serde(default)]
    pub tarball_url: Option<String>,
    /// "Source code (zip)", like `tarballUrl`.
    #[serde(default)]
    pub zipball_url: Option<String>,
    /// Published while the repository's `immutableReleases` setting was on: its tag, assets and
    /// publication are locked; only name and notes can change.
    #[serde(default)]
    pub immutable: bool,
}

/// The JSON body of `POST /releases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRelease {
    /// Tag to anchor on.
    pub tag_name: String,
    /// Branch or SHA, needed when the tag does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_commit: Option<String>,
    /// Title (defaults to the tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Draft.
    #[serde(default)]
    pub draft: bool,
    /// Pre-release.
    #[serde(default)]
    pub prerelease: bool,
    /// Prepend notes generated from the git history (as `generate-notes` makes them) to `body`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate_notes: bool,
    /// Whether the release becomes Latest (GitHub's field; `"true"` when absent and published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make_latest: Option<MakeLatest>,
}

/// The JSON body of `PATCH /releases/{tag}`: absent or null fields are unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRelease {
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    /// Pre-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerelease: Option<bool>,
    /// Whether the release becomes Latest; `"true"` when absent and this patch publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make_latest: Option<MakeLatest>,
    /// Moves the release to another tag (GitHub's `tag_name`); a tag that does not exist yet
    /// is made at `targetCommit`, else at the release's commit, when the release is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_name: Option<String>,
    /// The branch or commit a tag that does not exist yet will be made at (GitHub's
    /// `target_commitish`); refused when the release's tag already exists elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_commit: Option<String>,
}

impl UpdateRelease {
    /// True when the patch changes nothing (the CLI refuses to send it).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.body.is_none()
            && self.draft.is_none()
            && self.prerelease.is_none()
            && self.make_latest.is_none()
            && self.tag_name.is_none()
            && self.target_commit.is_none()
    }
}

/// GitHub's `make_latest`: which release the repository's Latest is. Sent as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MakeLatest {
    /// This release becomes Latest (drafts and pre-releases cannot).
    #[serde(rename = "true")]
    True,
    /// This release does not become Latest; the current one stays.
    #[serde(rename = "false")]
    False,
    /// Latest is computed: the highest tag in semver-aware order among published
    /// non-prereleases (publication time does not matter, so a backfill never takes it).
    #[serde(rename = "legacy")]
    Legacy,
}

/// The JSON body of `POST /releases/generate-notes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateNotes {
    /// The tag of the release the notes are for (it need not exist yet).
    pub tag_name: String,
    /// Branch or SHA the notes run up to when the tag does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_commit: Option<String>,
    /// The tag the notes start after (default: the nearest earlier published release's tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_tag_name: Option<String>,
}

/// What `generate-notes` returns: a title and Markdown notes, like GitHub's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratedNotes {
    /// Suggested release title (the tag).
    pub name: String,
    /// Markdown notes.
    pub body: String,
}

// ---------------------------------------------------------------------------------------------
// Git tags and protection rules
// ---------------------------------------------------------------------------------------------

/// A tag as the API shows it (lightweight tags: empty message, no tagger).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagView {
    /// Short name.
    pub name: String,
    /// The commit it peels to.
    pub commit: String,
    /// The tag object id for annotated tags, else the commit.
    pub id: String,
    /// Annotated message, or empty.
    pub message: String,
    /// Annotated tagger, or null.
    pub tagger: Option<TaggerView>,
    /// Whether a protection rule matches it.
    pub protected: bool,
    /// Whether an immutable protection rule matches it: nobody, admins included, can move or
    /// delete it.
    #[serde(default)]
    pub immutable: bool,
}

/// Tagger of an annotated tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaggerView {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// RFC 3339.
    pub date: String,
}

/// The JSON body of `POST /tags`: annotated when `message` is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTag {
    /// Tag name.
    pub tag_name: String,
    /// Branch, tag or commit SHA to tag.
    pub target: String,
    /// Message (makes an annotated tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    /// Id.
    pub id: u64,
    /// Glob.
    pub pattern: String,
    /// Creator.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// Which tags the rule protects: git tags, registry tags or both (older servers: git).
    #[serde(default)]
    pub target: RuleTarget,
    /// Whether nobody, admins included, may move or delete a matching tag (of its targets).
    #[serde(default)]
    pub immutable: bool,
}

/// What a tag-protection rule applies to, so one rule model covers git tags and the registry's
/// tags (a `v*` release may want both, a `latest` image tag only the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    /// Git tags only (what every rule was before targets existed).
    #[default]
    Git,
    /// Registry (OCI) tags only.
    Registry,
    /// Both.
    Both,
}

impl RuleTarget {
    /// Whether the rule protects git tags.
    pub fn git(self) -> bool {
        matches!(self, RuleTarget::Git | RuleTarget::Both)
    }

    /// Whether the rule protects registry tags.
    pub fn registry(self) -> bool {
        matches!(self, RuleTarget::Registry | RuleTarget::Both)
    }

    /// The wire name (`git`, `registry`, `both`), for tables and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleTarget::Git => "git",
            RuleTarget::Registry => "registry",
            RuleTarget::Both => "both",
        }
    }

    /// Parses the wire name (forms send it as text).
    pub fn parse(s: &str) -> Option<RuleTarget> {
        match s {
            "git" => Some(RuleTarget::Git),
            "registry" => Some(RuleTarget::Registry),
            "both" => Some(RuleTarget::Both),
            _ => None,
        }
    }
}

/// The JSON body of `POST /tag-protections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Glob over tag names.
    pub pattern: String,
    /// What the rule protects; absent means `git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RuleTarget>,
    /// Refuse moves and deletes of matching tags (git and/or registry, per `target`) to admins
    /// too; absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
}

// ---------------------------------------------------------------------------------------------
// Accounts: users, orgs, tokens, repositories, collaborators
// ---------------------------------------------------------------------------------------------

/// An organization as the API shows it (the reply of `POST /orgs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    /// The org's name (an owner name, like a username).
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// Numeric-free identity: the username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Site admin.
    pub admin: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// The JSON body of `POST /users` (site admins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Username.
    pub username: String,
    /// Password (8 characters or more).
    pub password: String,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Site admin.
    #[serde(default)]
    pub admin: bool,
}

/// The JSON body of `POST /orgs` and `POST /user/tokens`: just a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewName {
    /// The organization's name, or the token's label.
    pub name: String,
}

/// The JSON body of the membership and collaborator `PUT`s.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// `read`, `write` or `admin` (parsed by the handler, so a bad value is a 422 with a
    /// message rather than a serde error).
    pub role: String,
}

/// A freshly minted token: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// Id (for revoking).
    pub id: u64,
    /// Label.
    pub name: String,
    /// The secret.
    pub token: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A repository as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoView {
    /// Id.
    pub id: u64,
    /// Owner.
    pub owner: String,
    /// Name.
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    /// Private.
    pub private: bool,
    /// Description.
    pub description: String,
    /// The caller's role.
    pub permission: Option<Role>,
    /// RFC 3339.
    pub created_at: String,
}

/// The JSON body of `POST /forge/repos`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRepo {
    /// User or organization.
    pub owner: String,
    /// Repository name.
    pub name: String,
    /// Private (invisible to non-members).
    #[serde(default)]
    pub private: bool,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A collaborator of a repository and their role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollaboratorView {
    /// Username.
    pub username: String,
    /// Role on the repository (org roles are not listed here).
    pub role: Role,
}

/// A member of an organization and their role (`GET /orgs/{org}/members`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    /// Username.
    pub username: String,
    /// Role on every repository of the organization.
    pub role: Role,
}

/// The JSON body of `PATCH /admin/users/{username}` (site admins): what to change; absent
/// fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditUser {
    /// A new password (8 characters or more); the user's web sessions end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Grant or revoke site admin (the last site admin cannot be demoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Registry: the Packages tab, GC, fsck
// ---------------------------------------------------------------------------------------------

/// An image of a repository, for the Packages tab.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    /// Full OCI name (`owner/repo[/path]`).
    pub name: String,
    /// Number of tags.
    pub tag_count: u64,
    /// Bytes of the blobs the tagged images reference, each blob counted once.
    pub total_size: u64,
    /// RFC 3339 of the newest manifest push.
    pub last_push: Option<String>,
    /// `docker pull` line for the newest tag (host left to the client).
    pub pull: String,
}

/// A tag of an image, for the Packages tab.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageTagView {
    /// Tag.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Declared size of config and layers (images) or of the children (indexes).
    pub size: u64,
    /// `os/arch` of each child, for indexes.
    pub platforms: Vec<String>,
    /// RFC 3339.
    pub pushed_at: String,
    /// Whether a registry-target protection rule matches the tag (the Packages tab's lock).
    #[serde(default)]
    pub protected: bool,
}

/// What a GC run found or removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// Whether anything was removed.
    pub dry_run: bool,
    /// Blobs no manifest references, older than the grace period.
    pub blobs: Vec<String>,
    /// Their total size.
    pub bytes: u64,
    /// Upload sessions purged as stale.
    pub uploads: Vec<String>,
    /// Tags and untagged manifests removed by repositories' retention policies (before the
    /// blobs: blobs they alone held are removed by the same run once past the grace period;
    /// a dry run lists these but cannot count those blobs).
    #[serde(default)]
    pub retention: Vec<RetentionAction>,
}

/// One removal by a retention policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionAction {
    /// The image (`owner/repo/...`).
    pub name: String,
    /// The tag removed; absent when an untagged manifest was removed.
    pub tag: Option<String>,
    /// The manifest the tag pointed at, or the manifest removed.
    pub digest: String,
    /// Why, in words.
    pub reason: String,
}

/// A repository's registry retention policy, as set (`PUT .../retention`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSpec {
    /// Tag rules: per image, a tag matching a rule stays while it is among that rule's
    /// `newest` (by the push time of the manifest it points at); a tag no rule matches stays.
    #[serde(default)]
    pub keep: Vec<KeepSpec>,
    /// Untagged manifests pushed longer ago than this are removed (unless an index lists them
    /// or they are referrers of a manifest still stored).
    #[serde(default)]
    pub untagged_older_than_seconds: Option<u64>,
}

/// Keep the newest `newest` tags matching `pattern`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeepSpec {
    /// A glob, as in tag protection (`v*`, `nightly-*`).
    pub pattern: String,
    /// How many matching tags stay.
    pub newest: u32,
}

/// A repository's retention policy (`GET .../retention`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionView {
    /// The tag rules.
    pub keep: Vec<KeepSpec>,
    /// The age past which untagged manifests go.
    pub untagged_older_than_seconds: Option<u64>,
    /// Who set it.
    pub updated_by: String,
    /// When (RFC 3339).
    pub updated_at: String,
}

/// What the blob part of fsck found (`registry::fsck`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobFsckReport {
    /// Blobs checked.
    pub checked: u64,
    /// Blobs whose content no longer matches their digest.
    pub corrupt: Vec<String>,
    /// Blob rows without a file.
    pub missing: Vec<String>,
    /// Images (`name@digest`) whose manifests reference a damaged or missing blob.
    pub affected_manifests: Vec<String>,
}

/// What kind of inconsistency a finding is (snake_case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An asset row whose file is gone or unreadable.
    AssetMissing,
    /// An asset file whose SHA-256 differs from its row.
    AssetCorrupt,
    /// A file under the asset base that no asset row points at.
    OrphanAssetFile,
    /// A file in `uploads/` without an upload session.
    OrphanUploadFile,
    /// A blob file without a blob row (GC was killed between its commit and the unlink).
    OrphanBlobFile,
    /// A git tag pfai created for a release that was never recorded.
    OrphanReleaseTag,
    /// A pending-tag record left over: its tag is gone or was moved by a push since, or its
    /// release was recorded after all.
    StalePendingTag,
    /// The running totals of the blob or asset store (`/metrics`) differ from a recount.
    StoreTotals,
    /// An owner's stored storage usage differs from a recount of its assets and blobs.
    QuotaUsageWrong,
    /// An asset stored before pfai recorded BLAKE3 (schema 3); `--repair` records it.
    AssetBlake3Missing,
}

impl FindingKind {
    /// The wire name (`asset_missing`, …), for printing.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::AssetMissing => "asset_missing",
            FindingKind::AssetCorrupt => "asset_corrupt",
            FindingKind::OrphanAssetFile => "orphan_asset_file",
            FindingKind::OrphanUploadFile => "orphan_upload_file",
            FindingKind::OrphanBlobFile => "orphan_blob_file",
            FindingKind::OrphanReleaseTag => "orphan_release_tag",
            FindingKind::StalePendingTag => "stale_pending_tag",
            FindingKind::StoreTotals => "store_totals",
            FindingKind::QuotaUsageWrong => "quota_usage_wrong",
            FindingKind::AssetBlake3Missing => "asset_blake3_missing",
        }
    }
}

/// One inconsistency, with what it concerns and what `--repair` did about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// `owner/repo`, when known.
    pub repository: Option<String>,
    /// The release (its tag name, or its id for files of unknown releases).
    pub release: Option<String>,
    /// The asset name (or the file name of an orphan file).
    pub asset: Option<String>,
    /// The git tag.
    pub tag: Option<String>,
    /// The file concerned, relative to the asset base or the data dir's `uploads/`.
    pub path: Option<String>,
    /// A human sentence.
    pub detail: String,
    /// What `--repair` did; absent when nothing was done (not asked, or not safe).
    pub repaired: Option<String>,
}

/// The whole fsck report: the blob part (unchanged fields) plus the findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsckReport {
    /// Blob checks (`checked`, `corrupt`, `missing`, `affectedManifests`).
    #[serde(flatten)]
    pub blobs: BlobFsckReport,
    /// Release assets re-hashed.
    pub assets_checked: u64,
    /// Everything else found.
    pub findings: Vec<Finding>,
    /// Problems this run leaves behind (damaged blobs plus findings not repaired); the CLI
    /// exits non-zero when it is not 0.
    pub problems: usize,
}

/// What a file of a backup holds, so a restore knows where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupFileKind {
    /// The metadata snapshot (a redb file).
    Database,
    /// A registry blob (content-addressed: its path names its digest).
    Blob,
    /// A release asset file.
    Asset,
    /// A git bundle of one repository's refs at snapshot time.
    Bundle,
    /// A release attestation key file (`key-<keyid>.pk8`, the private key, or its public
    /// record `key-<keyid>.json`): a restored server must keep signing with the same key and
    /// listing every old one, or its attestations could no longer be checked against it.
    #[serde(rename = "attestation-key")]
    AttestationKey,
}

/// One file of a backup: where it lies in the backup directory, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupFile {
    /// `/`-separated path relative to the backup directory.
    pub path: String,
    /// What it is.
    pub kind: BackupFileKind,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// One git repository of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRepo {
    /// `owner/repo`.
    pub repo: String,
    /// What `HEAD` pointed at (`refs/heads/main`).
    pub head: Option<String>,
    /// The path of its bundle (`None`: the repository had no refs).
    pub bundle: Option<String>,
    /// How many refs the bundle holds.
    pub refs: u64,
}

/// The manifest of a backup (`manifest.json`, written last): every file with its SHA-256 and
/// size, and the repositories. Also the answer of `POST /api/v1/admin/backups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupManifest {
    /// Format of the backup directory (1).
    pub format: u32,
    /// The snapshot's id (names its directory under `snapshots/`).
    pub id: String,
    /// When the snapshot was taken (RFC 3339).
    pub created_at: String,
    /// The schema version of the database snapshot.
    pub schema_version: u32,
    /// Every file.
    pub files: Vec<BackupFile>,
    /// Every repository.
    pub repos: Vec<BackupRepo>,
}

/// What `pfai backup --json` reports: what was copied and what an earlier backup already had.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// The snapshot's id.
    pub id: String,
    /// Files in the backup.
    pub files: u64,
    /// Paths copied this time.
    pub copied: Vec<String>,
    /// Files already present from an earlier backup (not copied again).
    pub reused: u64,
    /// Bytes copied this time.
    pub bytes_copied: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_kind_names_match_serde() {
        for k in [
            FindingKind::AssetMissing,
            FindingKind::AssetCorrupt,
            FindingKind::OrphanAssetFile,
            FindingKind::OrphanUploadFile,
            FindingKind::OrphanBlobFile,
            FindingKind::OrphanReleaseTag,
            FindingKind::StalePendingTag,
            FindingKind::StoreTotals,
            FindingKind::QuotaUsageWrong,
            FindingKind::AssetBlake3Missing,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
    }

    #[test]
    fn requests_skip_absent_options_and_refuse_unknown_fields() {
        let c = CreateRelease {
            tag_name: "v1".into(),
            target_commit: None,
            name: None,
            body: None,
            draft: false,
            prerelease: true,
            generate_notes: false,
            make_latest: None,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"tagName":"v1","draft":false,"prerelease":true}"#
        );
        assert_eq!(
            serde_json::to_string(&UpdateRelease::default()).unwrap(),
            "{}"
        );
        assert!(UpdateRelease::default().is_empty());
        assert!(serde_json::from_str::<NewRule>(r#"{"pattern":"v*","x":1}"#).is_err());
    }

    #[test]
    fn responses_tolerate_unknown_fields_and_round_trip() {
        let v: RuleView = serde_json::from_str(
            r#"{"id":3,"pattern":"v*","createdBy":"a","createdAt":"t","future":true}"#,
        )
        .unwrap();
        assert_eq!(v.id, 3);
        let r = FsckReport {
            blobs: BlobFsckReport {
                checked: 2,
                ..BlobFsckReport::default()
            },
            assets_checked: 1,
            findings: vec![],
            problems: 0,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"checked":2,"corrupt":[],"missing":[],"affectedManifests":[],"assetsChecked":1,"findings":[],"problems":0}"#
        );
        let back: FsckReport = serde_json::from_str(&s).unwrap();
        assert_eq!(back.blobs.checked, 2);
        let e: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"not_found","message":"m"}}"#).unwrap();
        assert_eq!(e.error.code, "not_found");
    }
}

// ---------------------------------------------------------------------------------------------
// Storage quotas
// ---------------------------------------------------------------------------------------------

/// The body of `PUT /api/v1/admin/quotas/{owner}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSet {
    /// The most bytes the owner's assets and registry blobs may take.
    pub limit_bytes: u64,
}

/// An owner's storage quota and usage (`GET /api/v1/admin/quotas/{owner}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaView {
    /// The user or org.
    pub owner: String,
    /// The quota in bytes; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// Bytes used: asset bytes plus the distinct blobs linked in the owner's repositories.
    pub used_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Release attestations
// ---------------------------------------------------------------------------------------------

/// One entry of `GET /api/v1/attestation/keys`: a public key that signs (or signed) release
/// attestations, in the forms a verifier may want.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationKeyView {
    /// Hex SHA-256 of the raw public key (the DSSE `keyid`).
    pub keyid: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Standard base64 of the raw 32-byte public key.
    pub public_key: String,
    /// The same key as a SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// RFC 3339 time of its generation.
    pub created_at: String,
    /// Whether it signs new attestations (older keys stay listed after a rotation).
    pub current: bool,
}

// ---------------------------------------------------------------------------------------------
// Immutable releases
// ---------------------------------------------------------------------------------------------

/// A repository's settings (`GET|PATCH /api/v1/forge/{owner}/{repo}/settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSettingsView {
    /// Whether publishing a release makes it immutable (the repository's own value, else the
    /// organization's default, else false).
    pub immutable_releases: bool,
    /// Where `immutableReleases` comes from: `repository`, `organization` or `default`.
    pub immutable_releases_source: String,
}

/// The body of `PATCH /api/v1/forge/{owner}/{repo}/settings`: an absent field is unchanged, a
/// null one goes back to inheriting the organization's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditRepoSettings {
    /// `true`/`false` sets it on the repository; `null` inherits.
    #[serde(default, with = "double_option")]
    pub immutable_releases: Option<Option<bool>>,
}

/// An organization's defaults for its repositories (`GET|PATCH /api/v1/orgs/{org}/settings`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgSettings {
    /// Default of `immutableReleases` for repositories that do not set it.
    pub immutable_releases: bool,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<bool>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<bool>>, D::Error> {
        Option::<bool>::deserialize(d).map(Some)
    }
}

/// A new upstream registry mirror (`POST /api/v1/forge/{owner}/{repo}/mirrors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMirror {
    /// Upstream image: `https://registry.example/library/alpine` (`http://` for plain HTTP).
    pub upstream: String,
    /// Target image in this repository: `owner/repo/image`.
    pub image: String,
    /// Glob the upstream tags must match (as in tag protection); absent: every tag.
    #[serde(default)]
    pub tags: Option<String>,
    /// Run periodically, every this many seconds (at least 60); absent: only on request.
    #[serde(default)]
    pub every_seconds: Option<u64>,
    /// Upstream username (Basic, or for the Bearer token request).
    #[serde(default)]
    pub username: Option<String>,
    /// Upstream password or token: stored, never returned.
    #[serde(default)]
    pub password: Option<String>,
}

/// A mirror as the API shows it: never its password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorView {
    /// Id, for `run` and `remove`.
    pub id: u64,
    /// Upstream image URL.
    pub upstream: String,
    /// Target image.
    pub image: String,
    /// Tag glob, if any.
    pub tags: Option<String>,
    /// Period in seconds, if any.
    pub every_seconds: Option<u64>,
    /// Upstream username, if any.
    pub username: Option<String>,
    /// Whether a password is stored.
    pub has_password: bool,
    /// Who created it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// The last run's report, if it ran.
    pub last_run: Option<MirrorReport>,
}

/// What one mirror run changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MirrorReport {
    /// The mirror's id.
    pub id: u64,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Tags that did not exist here and now do.
    pub tags_created: Vec<String>,
    /// Tags that pointed at another manifest and were re-pointed.
    pub tags_moved: Vec<String>,
    /// Tags already pointing at the upstream manifest.
    pub tags_unchanged: Vec<String>,
    /// Tags that moved upstream but are protected here by a registry rule: left as they were.
    pub tags_protected: Vec<String>,
    /// Manifests (images, indexes, platform images, referrers) stored by this run.
    pub manifests_copied: u64,
    /// Referrers (signatures, SBOMs) among them.
    pub referrers_copied: u64,
    /// Blobs downloaded and stored.
    pub blobs_copied: u64,
    /// Blobs already here, not downloaded.
    pub blobs_skipped: u64,
    /// Bytes of the blobs downloaded.
    pub bytes_copied: u64,
    /// Why the run stopped early (what was copied stays; the next run resumes), if it did.
    pub error: Option<String>,
}

/// What `pfai storage migrate --to s3` moved from local files into the bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StorageMigration {
    /// The target backend (`s3`).
    pub to: String,
    /// Blobs copied, verified and removed locally.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Release assets copied, verified and removed locally.
    pub assets: u64,
    /// Their bytes.
    pub asset_bytes: u64,
}

/// The body of `POST /api/v1/bundles/export`: what to put in an air-gap bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleExport {
    /// `owner/repo` of every repository to carry (git refs, tag rules, releases, images).
    pub repos: Vec<String>,
    /// Only images whose `NAME:TAG` matches this glob (absent: every image of the repositories).
    #[serde(default)]
    pub images: Option<String>,
    /// Only releases whose tag matches this glob (absent: every release the caller can read).
    #[serde(default)]
    pub releases: Option<String>,
    /// What an earlier bundle already holds (`--since`): only the rest is written.
    #[serde(default)]
    pub since: Option<BundleSince>,
}

/// What an earlier bundle holds, read from its file by the CLI for an incremental export.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSince {
    /// Every blob digest in the earlier bundle (`sha256:…`, `blake3:…`).
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Per `owner/repo`, the git refs the earlier bundle carried: `[refname, oid]`.
    #[serde(default)]
    pub refs: BTreeMap<String, Vec<(String, String)>>,
}

/// One item an import looked at and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleItem {
    /// `repo`, `rule`, `ref`, `release` or `image`.
    pub kind: String,
    /// What it is: `owner/repo`, a ref name, a release tag, `NAME:TAG`.
    pub name: String,
    /// `created`, `updated`, `unchanged` or `refused`.
    pub outcome: String,
    /// Why it was refused, or what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What `POST /api/v1/bundles/import` did, item by item.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleImportReport {
    /// Every item, in the order applied.
    pub items: Vec<BundleItem>,
    /// Blobs in the file (all verified before anything was applied).
    pub blobs_verified: u64,
    /// Their bytes.
    pub bytes_verified: u64,
}
