//! Every redb table of pfai, in one place. Values are `codec`-encoded records from `records.rs`
//! unless stated otherwise. Writers are named so that each invariant has one owner.

use redb::TableDefinition;

/// `key -> bytes`: `"schema_version"` (u32 LE), id sequences `"seq:<kind>"` (u64 LE),
/// `"write_probe"` (i64 LE unix seconds of the last write tried to see whether writes succeed
/// again after a disk failure) and the store totals `"total:<what>"` (u64 LE). Writers:
/// `Db::open` (and its upgrade steps), `Db::recheck`, `next_id`, `storage::totals`.
/// Invariant: the totals equal a recount of BLOBS and ASSETS.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// `username -> User`. Invariant: a name is in at most one of USERS and ORGS.
/// Writer: `storage::accounts`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// `org name -> Org`. Writer: `storage::accounts`.
pub const ORGS: TableDefinition<&str, &[u8]> = TableDefinition::new("orgs");

/// `(org, username) -> role byte` (1 read, 2 write, 3 admin): the role applies to every repo
/// of the org. Writer: `storage::accounts`.
pub const ORG_MEMBERS: TableDefinition<(&str, &str), u8> = TableDefinition::new("org_members");

/// `hex(sha256(token)) -> Token`. The secret itself is never stored. Writer: `storage::accounts`.
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

/// `hex(sha256(session id)) -> Session`: web UI sign-ins. The id lives only in the browser's
/// cookie. Writer: `storage::sessions`.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// `"owner/repo" -> Repo`. Invariant: the bare git repository exists on disk before the row.
/// Writer: `storage::accounts`.
pub const REPOS: TableDefinition<&str, &[u8]> = TableDefinition::new("repos");

/// `("owner/repo", username) -> role byte`. Writer: `storage::accounts`.
pub const COLLABORATORS: TableDefinition<(&str, &str), u8> = TableDefinition::new("collaborators");

/// `release id -> Release`. Writer: `storage::releases`.
pub const RELEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("releases");

/// `("owner/repo", tag name) -> release id`. Invariant: at most one release per tag; exactly the
/// releases in RELEASES. Writer: `storage::releases`.
pub const RELEASES_BY_TAG: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("releases_by_tag");

/// `("owner/repo", order, u64::MAX - id) -> ()`: list order. `order` is 0 for unpublished drafts
/// and `u64::MAX - publishedAt` otherwise, so a forward range scan is the API's sort.
/// Invariant: one entry per release, rewritten whenever `publishedAt` changes.
/// Writer: `storage::releases`.
pub const RELEASE_ORDER: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("release_order");

/// `asset id -> Asset`. Invariant: the file exists (fsynced) before the row is committed.
/// Writer: `storage::assets` (rows, download counts), `storage::releases` (removal with the
/// release).
pub const ASSETS: TableDefinition<u64, &[u8]> = TableDefinition::new("assets");

/// `(release id, asset name) -> asset id`: names unique per release. Writer: `storage::assets`.
pub const ASSETS_BY_RELEASE: TableDefinition<(u64, &str), u64> =
    TableDefinition::new("assets_by_release");

/// `rule id -> ProtectionRule`. Writer: `storage::rules`.
pub const TAG_PROTECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("tag_protections");

/// `("owner/repo", rule id) -> ()`. Writer: `storage::rules`.
pub const PROTECTIONS_BY_REPO: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("protections_by_repo");

/// `digest -> BlobMeta`: blobs present in the content-addressed store. Invariant: the file at
/// `blobs/<alg>/<2 hex>/<hex>` is complete and fsynced before the row exists.
/// Writer: `storage::blob_refs`.
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

/// `(oci name, digest) -> linked at (unix s)`: which repositories may read a blob.
/// Invariant: the digest is in BLOBS. Writer: `storage::blob_refs`.
pub const REPO_BLOBS: TableDefinition<(&str, &str), i64> = TableDefinition::new("repo_blobs");

/// `(digest, oci name) -> ()`: the reverse of REPO_BLOBS, for GC. Writer: `storage::blob_refs`.
pub const BLOB_LINKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blob_links");

/// `digest -> count` of stored manifests (in any repository) that reference the blob.
/// Invariant: updated in the same transaction as the manifest rows. Writer:
/// `storage::blob_refs::change_refs` alone (called by `storage::manifests`).
pub const BLOB_REFS: TableDefinition<&str, u64> = TableDefinition::new("blob_refs");

/// `(oci name, manifest digest) -> ManifestMeta` (the raw bytes included, byte-exact).
/// Writer: `storage::manifests`.
pub const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");

/// `(oci name, tag) -> manifest digest`. Invariant: the manifest is in MANIFESTS.
/// Writer: `storage::manifests`.
pub const OCI_TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("oci_tags");

/// `(oci name, subject digest, referrer digest) -> ()`. Writer: `storage::manifests`.
pub const REFERRERS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("referrers");

/// `(oci name, child digest) -> count` of index manifests in that repository that list the
/// child; a child with a count is not deletable. Writer: `storage::manifests`.
pub const MANIFEST_REFS: TableDefinition<(&str, &str), u64> = TableDefinition::new("manifest_refs");

/// `("owner/repo", tag name) -> commit SHA`: a lightweight git tag that `domain::release` is
/// about to create for a release (on create, or when a draft is published). Written before the
/// tag is created, removed in the transaction that records the release (or when the tag is
/// rolled back). A record that outlives its request marks a tag made for a release that was
/// never recorded (a kill between the two stores), so `fsck` can tell it from a tag a user
/// pushed. Writers: `storage::releases` (insert, remove), `storage::audit` (remove on fsck repair).
pub const PENDING_RELEASE_TAGS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("pending_release_tags");

/// `upload id -> UploadSession`. Invariant: the session file exists while the row does
/// (created first, removed after). Writer: `storage::uploads`.
pub const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// `"owner/repo" -> RetentionPolicy`: which registry tags and untagged manifests of the
/// repository's images GC removes. Invariant: at most one policy per repository, removed with
/// it. Writer: `storage::retention`.
pub const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");
/// `owner -> limit in bytes`: storage quotas set by a site admin; no row means unlimited.
/// Writer: `storage::quota`.
pub const QUOTAS: TableDefinition<&str, u64> = TableDefinition::new("quotas");

/// `owner -> bytes used`: asset bytes plus the bytes of every distinct blob linked in one of the
/// owner's OCI repositories. Invariant: equal to a recount from ASSETS, OWNER_BLOBS and BLOBS
/// (fsck checks it); changed in the transactions that insert/remove assets and link/unlink
/// blobs. Writer: `storage::quota`.
pub const OWNER_USAGE: TableDefinition<&str, u64> = TableDefinition::new("owner_usage");

/// `(owner, digest) -> number of the owner's repositories linking the blob` (REPO_BLOBS rows
/// whose name starts with `owner/`), so a blob in two repositories of one owner counts once.
/// Writer: `storage::quota` (called by `storage::blob_refs`).
pub const OWNER_BLOBS: TableDefinition<(&str, &str), u64> = TableDefinition::new("owner_blobs");

/// `rule id -> scope bits` of a TAG_PROTECTIONS rule: 1 = git tags, 2 = registry tags,
/// 4 = immutable (no admin override). No row means git only, not immutable (every rule made
/// before targets existed), so rules need no schema step. Invariant: a row only exists with its
/// rule. Writer: `storage::rules`.
pub const PROTECTION_SCOPES: TableDefinition<u64, u8> = TableDefinition::new("protection_scopes");

/// `release id -> DSSE envelope JSON` (raw bytes, not a codec record): the signed attestation
/// of an immutable release (`crate::attest`). Invariant: written in the transaction that
/// publishes the release and marks it immutable (IMMUTABLE_RELEASES), never changed afterwards,
/// removed with the release. Writer: `storage::attestations` (called by `domain::attestation`).
pub const ATTESTATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("attestations");

/// `"owner/repo" -> RepoSettings`: per-repository settings kept apart from the `Repo` record
/// (whose encoding stays as it is). No row: every setting inherits. Removed with the repository.
/// Writer: `storage::immutable`.
pub const REPO_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("repo_settings");

/// `org -> OwnerSettings`: defaults an organization's repositories inherit unless set per
/// repository. Writer: `storage::immutable`.
pub const OWNER_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("owner_settings");

/// `release id -> ImmutableMark`: releases made immutable when published. Invariant: the
/// release exists and is published; the row goes only with the release, which the domain
/// deletes only with its repository. Writer: `storage::immutable` (and `storage::releases`
/// on removal).
pub const IMMUTABLE_RELEASES: TableDefinition<u64, &[u8]> =
    TableDefinition::new("immutable_releases");

/// `("owner/repo", tag name) -> TagTombstone`: tag names an immutable release used. Never
/// removed, not even with the repository, so a repository created again under the same name
/// cannot reuse them. Writer: `storage::immutable`.
pub const TAG_TOMBSTONES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("tag_tombstones");
/// The release a repository's owner marked Latest (`makeLatest: "true"`), by repository key;
/// 0 marks "no release is Latest" after a `makeLatest: "false"` with no other candidate. A
/// missing row, or one naming a release that can no longer be Latest, means the Latest is
/// computed (semver-aware tag order, see `domain::latest`). Writer: `storage::releases`.
pub const LATEST_RELEASE: TableDefinition<&str, u64> = TableDefinition::new("latest_release");

/// `mirror id -> MirrorRow`: upstream registry mirrors, each copying tags of one upstream
/// image into one image of a repository. Ids are never reused while the table has a higher
/// one; rows go with their repository or on request. Writer: `storage::mirrors`.
pub const MIRRORS: TableDefinition<u64, &[u8]> = TableDefinition::new("mirrors");
