//! The account store: USERS, ORGS, ORG_MEMBERS, TOKENS, REPOS and COLLABORATORS. The keys of
//! these tables (names, `(org, user)` and `("owner/repo", user)` pairs, token hashes) and the
//! role byte encoding are written only here; token and repository ids are allocated here.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use subtle::ConstantTimeEq;

use super::records::{Org, Repo, Token, User};
use super::{codec, tables, Reads, StorageError};
use crate::ids::{RepoPath, Role};

/// The id sequence of tokens in META.
const TOKEN_SEQUENCE: &str = "token";

/// The id sequence of repositories in META.
const REPO_SEQUENCE: &str = "repo";

// ---- users and organizations ----

/// A user's row.
pub fn user<R: Reads>(txn: &R, username: &str) -> Result<Option<User>, StorageError> {
    match txn.table(tables::USERS)?.get(username)? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Whether a user of that name exists.
pub fn user_exists<R: Reads>(txn: &R, username: &str) -> Result<bool, StorageError> {
    Ok(txn.table(tables::USERS)?.get(username)?.is_some())
}

/// Whether any user exists at all (an empty database gets a bootstrap admin).
pub fn has_users<R: Reads>(txn: &R) -> Result<bool, StorageError> {
    Ok(!txn.table(tables::USERS)?.is_empty()?)
}

/// Records a user. The caller has checked that the name is free (`owner_exists`).
pub fn insert_user(txn: &WriteTransaction, user: &User) -> Result<(), StorageError> {
    txn.open_table(tables::USERS)?
        .insert(user.username.as_str(), codec::encode(user)?.as_slice())?;
    Ok(())
}

/// Whether an organization of that name exists.
pub fn org_exists<R: Reads>(txn: &R, name: &str) -> Result<bool, StorageError> {
    Ok(txn.table(tables::ORGS)?.get(name)?.is_some())
}

/// Whether a user or an organization has that name (they share one namespace).
pub fn owner_exists<R: Reads>(txn: &R, name: &str) -> Result<bool, StorageError> {
    Ok(user_exists(txn, name)? || org_exists(txn, name)?)
}

/// Records an organization. The caller has checked that the name is free (`owner_exists`).
pub fn insert_org(txn: &WriteTransaction, org: &Org) -> Result<(), StorageError> {
    txn.open_table(tables::ORGS)?
        .insert(org.name.as_str(), codec::encode(org)?.as_slice())?;
    Ok(())
}

/// A user's role in an organization (applies to all its repositories).
pub fn org_role<R: Reads>(
    txn: &R,
    org: &str,
    username: &str,
) -> Result<Option<Role>, StorageError> {
    Ok(txn
        .table(tables::ORG_MEMBERS)?
        .get((org, username))?
        .and_then(|v| Role::from_byte(v.value())))
}

/// Sets (or with `None` removes) a user's role in an organization.
pub fn set_org_role(
    txn: &WriteTransaction,
    org: &str,
    username: &str,
    role: Option<Role>,
) -> Result<(), StorageError> {
    let mut members = txn.open_table(tables::ORG_MEMBERS)?;
    match role {
        Some(r) => {
            members.insert((org, username), r.to_byte())?;
        }
        None => {
            members.remove((org, username))?;
        }
    }
    Ok(())
}

/// Every user, by username (the site admin's user list).
pub fn all_users<R: Reads>(txn: &R) -> Result<Vec<User>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::USERS)?.iter()? {
        out.push(codec::decode(row?.1.value())?);
    }
    Ok(out)
}

/// How many users are site admins (the last one may be neither deleted nor demoted).
pub fn admin_count<R: Reads>(txn: &R) -> Result<usize, StorageError> {
    Ok(all_users(txn)?.iter().filter(|u| u.admin).count())
}

/// Rewrites an existing user's row (password, admin flag); the caller read it in the same
/// transaction.
pub fn update_user(txn: &WriteTransaction, user: &User) -> Result<(), StorageError> {
    insert_user(txn, user)
}

/// Removes a user's row with everything keyed by the name: tokens, org memberships and
/// collaborator roles (web sessions have a store of their own). A user later created under
/// the same name inherits none of it.
pub fn remove_user(txn: &WriteTransaction, username: &str) -> Result<(), StorageError> {
    txn.open_table(tables::USERS)?.remove(username)?;
    let mut tokens = txn.open_table(tables::TOKENS)?;
    let mut bad = None;
    tokens.retain(|_, v| match codec::decode::<Token>(v) {
        Ok(t) => t.username != username,
        Err(e) => {
            bad.get_or_insert(e);
            true
        }
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    txn.open_table(tables::ORG_MEMBERS)?
        .retain(|(_, user), _| user != username)?;
    txn.open_table(tables::COLLABORATORS)?
        .retain(|(_, user), _| user != username)?;
    Ok(())
}

/// The members of an organization and their roles, by username.
pub fn org_members<R: Reads>(txn: &R, org: &str) -> Result<Vec<(String, Role)>, StorageError> {
    let t = txn.table(tables::ORG_MEMBERS)?;
    let mut out = Vec::new();
    for row in t.range((org, "")..)? {
        let (k, v) = row?;
        let (o, user) = k.value();
        if o != org {
            break;
        }
        if let Some(role) = Role::from_byte(v.value()) {
            out.push((user.to_owned(), role));
        }
    }
    Ok(out)
}

// ---- tokens ----

/// Records a new token under the hash of its secret, allocating its id.
pub fn insert_token(
    txn: &WriteTransaction,
    hash: &str,
    username: &str,
    name: &str,
    created_at: i64,
) -> Result<Token, StorageError> {
    let token = Token {
        id: super::next_id(txn, TOKEN_SEQUENCE)?,
        username: username.to_owned(),
        name: name.to_owned(),
        created_at,
    };
    txn.open_table(tables::TOKENS)?
        .insert(hash, codec::encode(&token)?.as_slice())?;
    Ok(token)
}

/// The token stored under `hash` (the hex SHA-256 of its secret). The lookup is by hash (so
/// timing reveals nothing about the secret), and the stored key is compared again in constant
/// time (defence in depth against a lookup that matched a different key, e.g. after a future
/// change of key encoding).
pub fn token_by_hash<R: Reads>(txn: &R, hash: &str) -> Result<Option<Token>, StorageError> {
    let tokens = txn.table(tables::TOKENS)?;
    let Some(entry) = tokens.get(hash)? else {
        return Ok(None);
    };
    let token: Token = codec::decode(entry.value())?;
    let mut found = None;
    for row in tokens.range(hash..=hash)? {
        let (k, _) = row?;
        found = Some(k.value().to_owned());
    }
    let same = found.is_some_and(|k| bool::from(k.as_bytes().ct_eq(hash.as_bytes())));
    Ok(same.then_some(token))
}

/// Removes token `id` if `may_revoke` allows it; `false` when there is no such token or it
/// may not be revoked by this caller.
pub fn revoke_token(
    txn: &WriteTransaction,
    id: u64,
    may_revoke: impl Fn(&Token) -> bool,
) -> Result<bool, StorageError> {
    let mut tokens = txn.open_table(tables::TOKENS)?;
    let mut victim = None;
    for row in tokens.iter()? {
        let (k, v) = row?;
        let t: Token = codec::decode(v.value())?;
        if t.id == id && may_revoke(&t) {
            victim = Some(k.value().to_owned());
            break;
        }
    }
    match victim {
        Some(key) => {
            tokens.remove(key.as_str())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

// ---- repositories and collaborators ----

/// A repository by its full name `owner/repo`.
pub fn repo<R: Reads>(txn: &R, full_name: &str) -> Result<Option<Repo>, StorageError> {
    match txn.table(tables::REPOS)?.get(full_name)? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Whether the repository exists.
pub fn repo_exists<R: Reads>(txn: &R, path: &RepoPath) -> Result<bool, StorageError> {
    Ok(txn
        .table(tables::REPOS)?
        .get(path.key().as_str())?
        .is_some())
}

/// Every repository, by full name.
pub fn all_repos<R: Reads>(txn: &R) -> Result<Vec<Repo>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::REPOS)?.iter()? {
        out.push(codec::decode(row?.1.value())?);
    }
    Ok(out)
}

/// The full names of the repositories `owner` owns (a user who still owns some cannot be
/// deleted).
pub fn repos_of_owner<R: Reads>(txn: &R, owner: &str) -> Result<Vec<String>, StorageError> {
    let prefix = format!("{owner}/");
    let mut out = Vec::new();
    for row in txn.table(tables::REPOS)?.range(prefix.as_str()..)? {
        let (k, _) = row?;
        let key = k.value();
        if !key.starts_with(&prefix) {
            break;
        }
        out.push(key.to_owned());
    }
    Ok(out)
}

/// Records a new repository, allocating its id. The caller has checked that it does not exist
/// and created its bare git repository.
pub fn insert_repo(
    txn: &WriteTransaction,
    path: &RepoPath,
    private: bool,
    description: String,
    created_at: i64,
) -> Result<Repo, StorageError> {
    let repo = Repo {
        id: super::next_id(txn, REPO_SEQUENCE)?,
        owner: path.owner.to_string(),
        name: path.name.to_string(),
        private,
        description,
        created_at,
    };
    txn.open_table(tables::REPOS)?
        .insert(path.key().as_str(), codec::encode(&repo)?.as_slice())?;
    Ok(repo)
}

/// Removes a repository's row and its collaborators (its releases and rules have stores of
/// their own).
pub fn remove_repo(txn: &WriteTransaction, path: &RepoPath) -> Result<(), StorageError> {
    let key = path.key();
    txn.open_table(tables::REPOS)?.remove(key.as_str())?;
    txn.open_table(tables::COLLABORATORS)?
        .retain(|(repo, _), _| repo != key.as_str())?;
    Ok(())
}

/// A user's collaborator role on the repository `owner/repo`.
pub fn collaborator_role<R: Reads>(
    txn: &R,
    full_name: &str,
    username: &str,
) -> Result<Option<Role>, StorageError> {
    Ok(txn
        .table(tables::COLLABORATORS)?
        .get((full_name, username))?
        .and_then(|v| Role::from_byte(v.value())))
}

/// A repository's collaborators and their roles, by username.
pub fn collaborators<R: Reads>(
    txn: &R,
    path: &RepoPath,
) -> Result<Vec<(String, Role)>, StorageError> {
    let key = path.key();
    let t = txn.table(tables::COLLABORATORS)?;
    let mut out = Vec::new();
    for row in t.range((key.as_str(), "")..)? {
        let (k, v) = row?;
        let (repo, user) = k.value();
        if repo != key {
            break;
        }
        if let Some(role) = Role::from_byte(v.value()) {
            out.push((user.to_owned(), role));
        }
    }
    Ok(out)
}

/// Sets (or with `None` removes) a collaborator's role on a repository.
pub fn set_collaborator(
    txn: &WriteTransaction,
    path: &RepoPath,
    username: &str,
    role: Option<Role>,
) -> Result<(), StorageError> {
    let key = path.key();
    let mut t = txn.open_table(tables::COLLABORATORS)?;
    match role {
        Some(r) => {
            t.insert((key.as_str(), username), r.to_byte())?;
        }
        None => {
            t.remove((key.as_str(), username))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn path(s: &str) -> RepoPath {
        RepoPath::parse_key(s).unwrap()
    }

    /// Deleting `o/r` must not take the collaborators of `o/r2` (a prefix of the key) with it.
    #[tokio::test]
    async fn a_deleted_repository_takes_only_its_own_collaborators() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        db.write(|txn| {
            for p in ["o/r", "o/r2"] {
                insert_repo(txn, &path(p), false, String::new(), 0)?;
                set_collaborator(txn, &path(p), "u", Some(Role::Write))?;
            }
            remove_repo(txn, &path("o/r"))
        })
        .await
        .unwrap();
        let (gone, kept, rows) = db
            .read(|txn| {
                Ok::<_, StorageError>((
                    repo(txn, "o/r")?.is_none(),
                    collaborators(txn, &path("o/r2"))?,
                    collaborators(txn, &path("o/r"))?,
                ))
            })
            .await
            .unwrap();
        assert!(gone);
        assert_eq!(kept, vec![("u".to_owned(), Role::Write)]);
        assert!(rows.is_empty());
    }

    /// Deleting `bob` takes bob's tokens, memberships and roles, and nothing of `bobby` (whose
    /// name bob's is a prefix of); `bob`'s repositories are those under `bob/` only.
    #[tokio::test]
    async fn removing_a_user_takes_only_rows_keyed_by_that_exact_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        let user = |name: &str| User {
            username: name.to_owned(),
            email: String::new(),
            password_hash: String::new(),
            admin: false,
            created_at: 0,
        };
        let (bob, bobby) = (user("bob"), user("bobby"));
        let owned = db
            .write(move |txn| {
                for (i, u) in [&bob, &bobby].into_iter().enumerate() {
                    insert_user(txn, u)?;
                    insert_token(txn, &format!("h{i}"), &u.username, "t", 0)?;
                    set_org_role(txn, "acme", &u.username, Some(Role::Write))?;
                    set_collaborator(txn, &path("acme/app"), &u.username, Some(Role::Read))?;
                }
                insert_repo(txn, &path("bobby/tool"), false, String::new(), 0)?;
                let owned = (repos_of_owner(txn, "bob")?, repos_of_owner(txn, "bobby")?);
                remove_user(txn, "bob")?;
                Ok::<_, StorageError>(owned)
            })
            .await
            .unwrap();
        assert_eq!(owned, (vec![], vec!["bobby/tool".to_owned()]));
        let left = db
            .read(|txn| {
                Ok::<_, StorageError>((
                    all_users(txn)?
                        .into_iter()
                        .map(|u| u.username)
                        .collect::<Vec<_>>(),
                    token_by_hash(txn, "h0")?.is_none(),
                    token_by_hash(txn, "h1")?.map(|t| t.username),
                    org_members(txn, "acme")?,
                    collaborators(txn, &path("acme/app"))?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(left.0, vec!["bobby"]);
        assert!(left.1);
        assert_eq!(left.2.as_deref(), Some("bobby"));
        assert_eq!(left.3, vec![("bobby".to_owned(), Role::Write)]);
        assert_eq!(left.4, vec![("bobby".to_owned(), Role::Read)]);
    }

    /// A token is found only under its own hash, and revoked only when the rule allows it.
    #[tokio::test]
    async fn tokens_are_found_by_hash_and_revoked_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        let t = db
            .write(|txn| insert_token(txn, "aa", "u", "ci", 0))
            .await
            .unwrap();
        let refused = db
            .write(move |txn| revoke_token(txn, t.id, |_| false))
            .await
            .unwrap();
        assert!(!refused);
        let (found, other) = db
            .read(|txn| {
                Ok::<_, StorageError>((token_by_hash(txn, "aa")?, token_by_hash(txn, "ab")?))
            })
            .await
            .unwrap();
        assert_eq!(found.map(|f| f.id), Some(t.id));
        assert!(other.is_none());
        let revoked = db
            .write(move |txn| revoke_token(txn, t.id, |tok| tok.username == "u"))
            .await
            .unwrap();
        assert!(revoked);
        let after = db.read(|txn| token_by_hash(txn, "aa")).await.unwrap();
        assert!(after.is_none());
    }
}
