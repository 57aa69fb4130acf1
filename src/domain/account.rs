//! Users, organizations, tokens, repositories and memberships.

use std::path::Path;

pub use crate::api::{
    CollaboratorView, EditUser, MemberView, NewToken, OrgView, RepoView, UserView,
};

use super::{Core, DomainError, DomainResult};
use crate::auth::{self, Credentials, Principal};
use crate::ids::{RepoPath, Role, Slug};
use crate::storage::records::{Org, Repo, Token, User};
use crate::storage::{self, accounts};
use crate::util::{now_unix, sha256_hex};

/// Resolves credentials to a principal. `allow_password` lets Basic carry a real password
/// (only for minting tokens); elsewhere the Basic password must be a token.
pub async fn authenticate(
    core: &Core,
    creds: Credentials,
    allow_password: bool,
) -> DomainResult<Option<Principal>> {
    authenticate_from(core, creds, allow_password, None).await
}

/// `authenticate`, with the client's address for the sign-in backoff: a Basic password is
/// refused (before argon2 runs) while its account or `client` is locked out after failures.
pub async fn authenticate_from(
    core: &Core,
    creds: Credentials,
    allow_password: bool,
    client: Option<std::net::IpAddr>,
) -> DomainResult<Option<Principal>> {
    let bad = || DomainError::Unauthenticated("invalid or revoked credentials".into());
    match creds {
        Credentials::None => Ok(None),
        Credentials::Malformed => Err(DomainError::Unauthenticated(
            "malformed Authorization header".into(),
        )),
        creds => {
            let secret = creds.token().unwrap_or_default().to_owned();
            let by_token = core
                .db
                .read(move |txn| auth::token_principal(txn, &secret).map_err(DomainError::from))
                .await?;
            if let Some((p, _)) = by_token {
                return Ok(Some(p));
            }
            if let (true, Credentials::Basic { user, password }) = (allow_password, creds) {
                if let Some(u) = check_password(core, &user, password, client).await? {
                    return Ok(Some(Principal {
                        username: u.username,
                        admin: u.admin,
                    }));
                }
            }
            Err(bad())
        }
    }
}

/// Argon2 verifications running at once (each takes ~19 MiB and a core for a moment): a flood
/// of sign-ins queues here instead of exhausting memory and the blocking pool.
fn argon2_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores * 2)
    })
}

/// The one password check (web sign-in and Basic credentials): the sign-in backoff first
/// (`TooManyRequests` while locked out, before argon2 runs), then the password. The user if
/// `password` is theirs.
pub async fn check_password(
    core: &Core,
    username: &str,
    password: String,
    client: Option<std::net::IpAddr>,
) -> DomainResult<Option<User>> {
    core.sign_in
        .attempt(username, client)
        .map_err(DomainError::locked_out)?;
    let found = find_user(core, username).await?;
    let verified = password_matches(found, password).await?;
    if verified.is_some() {
        core.sign_in.success(username, client);
    }
    Ok(verified)
}

/// The user if `password` is theirs. Unknown users and users without a password (the
/// bootstrap admin) cost the same argon2 time, so timing does not reveal which names exist.
/// argon2 is deliberately slow: it runs on the blocking pool, a few at a time.
async fn password_matches(user: Option<User>, password: String) -> DomainResult<Option<User>> {
    let _slot = argon2_slots()
        .acquire()
        .await
        .map_err(|e| DomainError::internal_from("argon2 slots", e))?;
    tokio::task::spawn_blocking(move || match user {
        Some(u) if !u.password_hash.is_empty() => {
            auth::verify_password(&u.password_hash, &password).then_some(u)
        }
        _ => {
            let _ = auth::verify_password(auth::dummy_password_hash(), &password);
            None
        }
    })
    .await
    .map_err(DomainError::from)
}

/// A user's row, if the user exists (for password checks).
pub async fn find_user(core: &Core, username: &str) -> DomainResult<Option<User>> {
    let name = username.to_owned();
    core.db
        .read(move |txn| Ok(accounts::user(txn, &name)?))
        .await
}

/// Requires an authenticated caller.
pub fn require(who: Option<&Principal>) -> DomainResult<&Principal> {
    who.ok_or_else(|| DomainError::Unauthenticated("authentication required".into()))
}

/// On an empty database, creates site admin `admin` with a token, written to
/// `$DATA_DIR/initial-admin-token` (mode 0600). Returns the file path when it did so.
pub async fn bootstrap_admin(
    core: &Core,
    data_dir: &Path,
) -> DomainResult<Option<std::path::PathBuf>> {
    let secret = auth::new_token_secret();
    let hash = sha256_hex(secret.as_bytes());
    let created = core
        .db
        .write(move |txn| {
            if accounts::has_users(txn)? {
                return Ok::<_, DomainError>(false);
            }
            accounts::insert_user(txn, &new_user("admin", "", "", true))?;
            accounts::insert_token(txn, &hash, "admin", "initial admin token", now_unix())?;
            Ok(true)
        })
        .await?;
    if !created {
        return Ok(None);
    }
    let path = data_dir.join("initial-admin-token");
    write_secret_file(&path, &secret)?;
    Ok(Some(path))
}

fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}

/// Top-level paths of the web UI and the APIs: an owner with one of these names would be
/// shadowed by them.
pub const RESERVED_OWNER_NAMES: &[&str] = &[
    "api", "v2", "login", "logout", "static", "settings", "healthz", "readyz", "metrics",
];

fn owner_slug(name: &str) -> DomainResult<Slug> {
    let slug = Slug::parse(name)?;
    if RESERVED_OWNER_NAMES.contains(&slug.as_str()) {
        return Err(DomainError::Invalid(format!(
            "the name {slug} is reserved by pfai's own pages"
        )));
    }
    Ok(slug)
}

/// A new user row (its name checked to be free by the caller).
fn new_user(username: &str, password_hash: &str, email: &str, admin: bool) -> User {
    User {
        username: username.to_owned(),
        email: email.to_owned(),
        password_hash: password_hash.to_owned(),
        admin,
        created_at: now_unix(),
    }
}

/// Creates a user (site admins only).
pub async fn create_user(
    core: &Core,
    who: Option<&Principal>,
    username: &str,
    password: &str,
    email: &str,
    admin: bool,
) -> DomainResult<UserView> {
    let who = require(who)?;
    if !who.admin {
        return Err(DomainError::Forbidden(
            "only site admins can create users".into(),
        ));
    }
    let name = owner_slug(username)?;
    let hash = hash_new_password(password).await?;
    let email = email.to_owned();
    core.db
        .write(move |txn| {
            if accounts::owner_exists(txn, name.as_str())? {
                return Err(DomainError::Conflict(format!("the name {name} is taken")));
            }
            accounts::insert_user(txn, &new_user(name.as_str(), &hash, &email, admin))?;
            Ok(UserView {
                username: name.to_string(),
                email,
                admin,
                created_at: crate::util::rfc3339(now_unix()),
            })
        })
        .await
}

/// The caller.
pub async fn whoami(core: &Core, who: Option<&Principal>) -> DomainResult<UserView> {
    let who = require(who)?.clone();
    core.db
        .read(move |txn| {
            let u = accounts::user(txn, &who.username)?
                .ok_or_else(|| DomainError::Unauthenticated("user no longer exists".into()))?;
            Ok(UserView {
                username: u.username,
                email: u.email,
                admin: u.admin,
                created_at: crate::util::rfc3339(u.created_at),
            })
        })
        .await
}

/// Mints a token for the caller.
pub async fn mint_token(
    core: &Core,
    who: Option<&Principal>,
    name: &str,
) -> DomainResult<NewToken> {
    let who = require(who)?.clone();
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "token name must be 1 to 100 printable characters".into(),
        ));
    }
    let secret = auth::new_token_secret();
    let hash = sha256_hex(secret.as_bytes());
    let token = core
        .db
        .write(move |txn| {
            let created = now_unix();
            Ok::<_, DomainError>(accounts::insert_token(
                txn,
                &hash,
                &who.username,
                &name,
                created,
            )?)
        })
        .await?;
    Ok(NewToken {
        id: token.id,
        name: token.name,
        token: secret,
        created_at: crate::util::rfc3339(token.created_at),
    })
}

/// Revokes one of the caller's tokens by id (site admins: anyone's).
pub async fn revoke_token(core: &Core, who: Option<&Principal>, id: u64) -> DomainResult<()> {
    let who = require(who)?.clone();
    core.db
        .write(move |txn| {
            let mine = |t: &Token| t.username == who.username || who.admin;
            if !accounts::revoke_token(txn, id, mine)? {
                return Err(DomainError::NotFound(format!("token {id} not found")));
            }
            Ok(())
        })
        .await
}

/// Creates an organization; the creator becomes its admin.
pub async fn create_org(core: &Core, who: Option<&Principal>, name: &str) -> DomainResult<OrgView> {
    let who = require(who)?.clone();
    let name = owner_slug(name)?;
    core.db
        .write(move |txn| {
            if accounts::owner_exists(txn, name.as_str())? {
                return Err(DomainError::Conflict(format!("the name {name} is taken")));
            }
            let org = Org {
                name: name.to_string(),
                created_by: who.username.clone(),
                created_at: now_unix(),
            };
            accounts::insert_org(txn, &org)?;
            accounts::set_org_role(txn, name.as_str(), &who.username, Some(Role::Admin))?;
            Ok(OrgView {
                created_at: crate::util::rfc3339(org.created_at),
                name: org.name,
            })
        })
        .await
}

/// Sets (or with `None` removes) a user's role in an org; needs org admin or site admin.
pub async fn set_org_member(
    core: &Core,
    who: Option<&Principal>,
    org: &str,
    user: &str,
    role: Option<Role>,
) -> DomainResult<()> {
    let who = require(who)?.clone();
    let (org, user) = (org.to_owned(), user.to_owned());
    core.db
        .write(move |txn| {
            if !accounts::org_exists(txn, &org)? {
                return Err(DomainError::NotFound(format!(
                    "organization {org} not found"
                )));
            }
            let my_role = accounts::org_role(txn, &org, &who.username)?;
            if !who.admin && my_role != Some(Role::Admin) {
                return Err(DomainError::Forbidden(format!(
                    "you are not an admin of {org}"
                )));
            }
            if !accounts::user_exists(txn, &user)? {
                return Err(DomainError::Invalid(format!("user {user} does not exist")));
            }
            accounts::set_org_role(txn, &org, &user, role)?;
            Ok(())
        })
        .await
}

impl RepoView {
    /// Renders a row for a caller with `role`.
    pub fn new(r: &Repo, role: Option<Role>) -> Self {
        RepoView {
            id: r.id,
            owner: r.owner.clone(),
            name: r.name.clone(),
            full_name: format!("{}/{}", r.owner, r.name),
            private: r.private,
            description: r.description.clone(),
            permission: role,
            created_at: crate::util::rfc3339(r.created_at),
        }
    }
}

/// Creates a repository (and its bare git repo). The caller must be the owner, an org member
/// with `write` or more, or a site admin.
pub async fn create_repo(
    core: &Core,
    who: Option<&Principal>,
    owner: &str,
    name: &str,
    private: bool,
    description: &str,
) -> DomainResult<RepoView> {
    let who = require(who)?.clone();
    let path = RepoPath::new_repo(owner, name)?;
    if description.len() > 4096 {
        return Err(DomainError::Invalid(
            "description is limited to 4096 bytes".into(),
        ));
    }
    // Authorize and check for existence before touching the disk.
    let (p2, w2) = (path.clone(), who.clone());
    core.db
        .read(move |txn| {
            let owner = p2.owner.as_str();
            let is_user = accounts::user_exists(txn, owner)?;
            let is_org = accounts::org_exists(txn, owner)?;
            if !is_user && !is_org {
                return Err(DomainError::Invalid(format!(
                    "owner {owner} does not exist"
                )));
            }
            let allowed = w2.admin
                || w2.username == owner
                || (is_org
                    && accounts::org_role(txn, owner, &w2.username)?
                        .is_some_and(|r| r >= Role::Write));
            if !allowed {
                return Err(DomainError::Forbidden(format!(
                    "you cannot create repositories in {owner}"
                )));
            }
            if accounts::repo_exists(txn, &p2)? {
                return Err(DomainError::Conflict(format!(
                    "repository {} already exists",
                    p2
                )));
            }
            Ok(())
        })
        .await?;
    let (p3, p4) = (path.clone(), path.clone());
    core.git(move |g| g.init(&p3)).await?;
    let description = description.to_owned();
    core.db
        .write(move |txn| {
            if accounts::repo_exists(txn, &path)? {
                return Err(DomainError::Conflict(format!(
                    "repository {path} already exists"
                )));
            }
            accounts::insert_repo(txn, &path, private, description, now_unix())?;
            Ok::<_, DomainError>(())
        })
        .await?;
    // The creator's permission is what GET will report (an org `write` member stays `write`),
    // so it is computed the same way rather than assumed.
    get_repo(core, Some(&who), &p4).await
}

/// Reads a repository (404 when invisible).
pub async fn get_repo(
    core: &Core,
    who: Option<&Principal>,
    path: &RepoPath,
) -> DomainResult<RepoView> {
    let (repo, role) = core.repo_access(who, path, Role::Read).await?;
    Ok(RepoView::new(&repo, Some(role)))
}

/// Every repository the caller can read, sorted by name.
pub async fn list_repos(core: &Core, who: Option<&Principal>) -> DomainResult<Vec<RepoView>> {
    let who = who.cloned();
    core.db
        .read(move |txn| {
            let mut out = Vec::new();
            for repo in accounts::all_repos(txn)? {
                if let Ok(Some(role)) = auth::role_on(txn, who.as_ref(), &repo) {
                    out.push(RepoView::new(&repo, Some(role)));
                }
            }
            Ok(out)
        })
        .await
}

/// Whether a user or organization of that name exists (owner pages of unknown names are 404).
pub async fn owner_exists(core: &Core, owner: &str) -> DomainResult<bool> {
    let owner = owner.to_owned();
    core.db
        .read(move |txn| Ok(accounts::owner_exists(txn, &owner)?))
        .await
}

/// Lists a repository's collaborators (repo admin), sorted by username.
pub async fn list_collaborators(
    core: &Core,
    who: Option<&Principal>,
    path: &RepoPath,
) -> DomainResult<Vec<CollaboratorView>> {
    core.repo_access(who, path, Role::Admin).await?;
    let path = path.clone();
    let rows = core
        .db
        .read(move |txn| Ok::<_, DomainError>(accounts::collaborators(txn, &path)?))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(username, role)| CollaboratorView { username, role })
        .collect())
}

/// Deletes a repository with its releases, assets, rules and memberships (admin).
pub async fn delete_repo(
    core: &Core,
    who: Option<&Principal>,
    path: &RepoPath,
) -> DomainResult<()> {
    core.repo_access(who, path, Role::Admin).await?;
    // A backup links the files and bundles the repositories of its snapshot while holding
    // this exclusively.
    let _gate = core.backup_gate.clone().read_owned().await;
    let p = path.clone();
    let release_ids = core
        .db
        .write(move |txn| {
            accounts::remove_repo(txn, &p)?;
            storage::rules::remove_all_of_repo(txn, &p)?;
            storage::retention::remove(txn, &p)?;
            storage::immutable::remove_repo_settings(txn, &p)?;
            storage::mirrors::remove_all_of_repo(txn, &p.key())?;
            Ok::<_, DomainError>(storage::releases::remove_all_of_repo(txn, &p)?)
        })
        .await?;
    for id in release_ids {
        core.assets.remove_release(path, id)?;
    }
    let p = path.clone();
    core.git(move |g| g.remove(&p)).await?;
    Ok(())
}

/// Sets (or with `None` removes) a collaborator's role (repo admin).
pub async fn set_collaborator(
    core: &Core,
    who: Option<&Principal>,
    path: &RepoPath,
    user: &str,
    role: Option<Role>,
) -> DomainResult<()> {
    core.repo_access(who, path, Role::Admin).await?;
    let (path, user) = (path.clone(), user.to_owned());
    core.db
        .write(move |txn| {
            if !accounts::user_exists(txn, &user)? {
                return Err(DomainError::NotFound(format!("user {user} not found")));
            }
            accounts::set_collaborator(txn, &path, &user, role)?;
            Ok(())
        })
        .await
}

/// Checks a new password's rules and hashes it (argon2, on the blocking pool).
async fn hash_new_password(password: &str) -> DomainResult<String> {
    if password.len() < 8 {
        return Err(DomainError::Invalid(
            "password must be at least 8 characters".into(),
        ));
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await?
        .map_err(|e| DomainError::internal_from("hashing the password", e))
}

/// Requires a site admin for `what` (the user administration endpoints).
fn require_site_admin<'a>(who: Option<&'a Principal>, what: &str) -> DomainResult<&'a Principal> {
    let who = require(who)?;
    if !who.admin {
        return Err(DomainError::Forbidden(format!(
            "only site admins can {what}"
        )));
    }
    Ok(who)
}

fn user_view(u: &User) -> UserView {
    UserView {
        username: u.username.clone(),
        email: u.email.clone(),
        admin: u.admin,
        created_at: crate::util::rfc3339(u.created_at),
    }
}

/// Every user, by username (site admins).
pub async fn list_users(core: &Core, who: Option<&Principal>) -> DomainResult<Vec<UserView>> {
    require_site_admin(who, "list users")?;
    core.db
        .read(|txn| Ok(accounts::all_users(txn)?.iter().map(user_view).collect()))
        .await
}

/// Changes a user's password and/or site-admin flag (site admins). A new password ends the
/// user's web sessions (their API tokens stay valid: revoke those separately). Demoting the
/// last site admin is refused, so the site always keeps one.
pub async fn edit_user(
    core: &Core,
    who: Option<&Principal>,
    username: &str,
    edit: EditUser,
) -> DomainResult<UserView> {
    require_site_admin(who, "change users")?;
    if edit.password.is_none() && edit.admin.is_none() {
        return Err(DomainError::Invalid(
            "nothing to change: give a password or admin".into(),
        ));
    }
    let hash = match &edit.password {
        Some(p) => Some(hash_new_password(p).await?),
        None => None,
    };
    apply_user_edit(core, username, hash, edit.admin).await
}

/// Sets a user's password directly on a stopped server's data directory (`pfai admin
/// set-password --data-dir`): whoever can open the database file is trusted already, so no
/// principal is checked. This is how the bootstrap admin gets a web password without curl.
pub async fn set_password_offline(
    core: &Core,
    username: &str,
    password: &str,
) -> DomainResult<UserView> {
    let hash = hash_new_password(password).await?;
    apply_user_edit(core, username, Some(hash), None).await
}

/// One transaction: the user must exist; the last site admin stays one; a new password hash
/// ends the user's sessions.
async fn apply_user_edit(
    core: &Core,
    username: &str,
    password_hash: Option<String>,
    admin: Option<bool>,
) -> DomainResult<UserView> {
    let name = username.to_owned();
    core.db
        .write(move |txn| {
            let mut u = accounts::user(txn, &name)?
                .ok_or_else(|| DomainError::NotFound(format!("user {name} not found")))?;
            if admin == Some(false) && u.admin && accounts::admin_count(txn)? <= 1 {
                return Err(DomainError::Conflict(format!(
                    "{name} is the last site admin: make another user admin first"
                )));
            }
            if let Some(a) = admin {
                u.admin = a;
            }
            if let Some(h) = password_hash {
                u.password_hash = h;
                storage::sessions::remove_all_of(txn, &name)?;
            }
            accounts::update_user(txn, &u)?;
            Ok(user_view(&u))
        })
        .await
}

/// Deletes a user (site admins), in one transaction with their API tokens, web sessions, org
/// memberships and collaborator roles, so a user created later under the same name inherits
/// nothing. Refused (like GitHub and Gitea) while the user still owns repositories (delete or
/// move them first: their releases and images would be orphaned) and for the last site admin.
/// Organizations the user created or administered stay; site admins still manage them.
pub async fn delete_user(core: &Core, who: Option<&Principal>, username: &str) -> DomainResult<()> {
    require_site_admin(who, "delete users")?;
    let name = username.to_owned();
    core.db
        .write(move |txn| {
            let u = accounts::user(txn, &name)?
                .ok_or_else(|| DomainError::NotFound(format!("user {name} not found")))?;
            if u.admin && accounts::admin_count(txn)? <= 1 {
                return Err(DomainError::Conflict(format!(
                    "{name} is the last site admin and cannot be deleted"
                )));
            }
            let owned = accounts::repos_of_owner(txn, &name)?;
            if !owned.is_empty() {
                return Err(DomainError::Conflict(format!(
                    "{name} still owns {} repositor{} ({}): delete them first",
                    owned.len(),
                    if owned.len() == 1 { "y" } else { "ies" },
                    owned.join(", ")
                )));
            }
            accounts::remove_user(txn, &name)?;
            storage::sessions::remove_all_of(txn, &name)?;
            Ok(())
        })
        .await
}

/// Lists an organization's members (its members and site admins), sorted by username.
pub async fn list_org_members(
    core: &Core,
    who: Option<&Principal>,
    org: &str,
) -> DomainResult<Vec<MemberView>> {
    let who = require(who)?.clone();
    let org = org.to_owned();
    core.db
        .read(move |txn| {
            if !accounts::org_exists(txn, &org)? {
                return Err(DomainError::NotFound(format!(
                    "organization {org} not found"
                )));
            }
            if !who.admin && accounts::org_role(txn, &org, &who.username)?.is_none() {
                return Err(DomainError::Forbidden(format!(
                    "you are not a member of {org}"
                )));
            }
            Ok(accounts::org_members(txn, &org)?
                .into_iter()
                .map(|(username, role)| MemberView { username, role })
                .collect())
        })
        .await
}
