//! The tag-protection rule store: TAG_PROTECTIONS rows and their per-repository index
//! PROTECTIONS_BY_REPO. The keys of both tables are written only here.

use std::ops::RangeInclusive;

use redb::{ReadableTable, WriteTransaction};

use super::records::ProtectionRule;
use super::{codec, tables, Reads, StorageError};
use crate::ids::RepoPath;

/// The id sequence of rules in META.
const SEQUENCE: &str = "protection";

/// The index range of one repository's rules.
fn repo_range(repo: &str) -> RangeInclusive<(&str, u64)> {
    (repo, 0)..=(repo, u64::MAX)
}

/// What a rule applies to, stored beside it in PROTECTION_SCOPES (a rule without a row is
/// the git-only, mutable rule of before targets existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Protects git tags.
    pub git: bool,
    /// Protects registry tags.
    pub registry: bool,
    /// No admin override (registry tags).
    pub immutable: bool,
}

impl Scope {
    /// The scope of a rule stored without one.
    pub const LEGACY: Scope = Scope {
        git: true,
        registry: false,
        immutable: false,
    };

    fn bits(self) -> u8 {
        u8::from(self.git) | (u8::from(self.registry) << 1) | (u8::from(self.immutable) << 2)
    }

    fn from_bits(b: u8) -> Scope {
        Scope {
            git: b & 1 != 0,
            registry: b & 2 != 0,
            immutable: b & 4 != 0,
        }
    }
}

/// Ids of a repository's rules, oldest first.
fn ids_of_repo<R: Reads>(txn: &R, repo: &str) -> Result<Vec<u64>, StorageError> {
    let idx = txn.table(tables::PROTECTIONS_BY_REPO)?;
    let mut ids = Vec::new();
    for row in idx.range(repo_range(repo))? {
        ids.push(row?.0.value().1);
    }
    Ok(ids)
}

/// Allocates the id of a new rule.
pub fn next_id(txn: &WriteTransaction) -> Result<u64, StorageError> {
    super::next_id(txn, SEQUENCE)
}

/// A repository's rules with their scopes, oldest first.
pub fn of_repo<R: Reads>(
    txn: &R,
    repo: &RepoPath,
) -> Result<Vec<(ProtectionRule, Scope)>, StorageError> {
    let ids = ids_of_repo(txn, &repo.key())?;
    let rules = txn.table(tables::TAG_PROTECTIONS)?;
    let scopes = txn.table(tables::PROTECTION_SCOPES)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = rules.get(id)? {
            let scope = scopes
                .get(id)?
                .map(|b| Scope::from_bits(b.value()))
                .unwrap_or(Scope::LEGACY);
            out.push((codec::decode(v.value())?, scope));
        }
    }
    Ok(out)
}

/// Records a rule (its id from `next_id`) with its scope under its repository.
pub fn insert(
    txn: &WriteTransaction,
    rule: &ProtectionRule,
    scope: Scope,
) -> Result<(), StorageError> {
    txn.open_table(tables::TAG_PROTECTIONS)?
        .insert(rule.id, codec::encode(rule)?.as_slice())?;
    txn.open_table(tables::PROTECTIONS_BY_REPO)?
        .insert((rule.repo.as_str(), rule.id), ())?;
    if scope != Scope::LEGACY {
        txn.open_table(tables::PROTECTION_SCOPES)?
            .insert(rule.id, scope.bits())?;
    }
    Ok(())
}

/// Removes rule `id` of `repo`; `false` when the repository has no such rule (an id of
/// another repository is not touched).
pub fn remove(txn: &WriteTransaction, repo: &RepoPath, id: u64) -> Result<bool, StorageError> {
    let key = repo.key();
    if txn
        .open_table(tables::PROTECTIONS_BY_REPO)?
        .remove((key.as_str(), id))?
        .is_none()
    {
        return Ok(false);
    }
    txn.open_table(tables::TAG_PROTECTIONS)?.remove(id)?;
    txn.open_table(tables::PROTECTION_SCOPES)?.remove(id)?;
    Ok(true)
}

/// Removes every rule of a repository. Used when the repository itself is deleted.
pub fn remove_all_of_repo(txn: &WriteTransaction, repo: &RepoPath) -> Result<(), StorageError> {
    let key = repo.key();
    let ids = ids_of_repo(txn, &key)?;
    let mut rules = txn.open_table(tables::TAG_PROTECTIONS)?;
    let mut idx = txn.open_table(tables::PROTECTIONS_BY_REPO)?;
    let mut scopes = txn.open_table(tables::PROTECTION_SCOPES)?;
    for id in ids {
        rules.remove(id)?;
        idx.remove((key.as_str(), id))?;
        scopes.remove(id)?;
    }
    Ok(())
}
