//! Authentication and authorization: credentials become a `Principal`; a principal and a
//! repository give a role. No HTTP types here; the http layer hands over header strings.

use base64::Engine as _;

use crate::ids::Role;
use crate::storage::records::{Repo, Token};
use crate::storage::{accounts, Reads, StorageError};
use crate::util::sha256_hex;

/// Credentials as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Bearer <token>`.
    Bearer(String),
    /// `Basic base64(user:password)`; the password is a token (or a password where allowed).
    Basic {
        /// The username (not trusted when the password is a token).
        user: String,
        /// The secret.
        password: String,
    },
    /// Something unparseable, which is an authentication failure, not anonymity.
    Malformed,
}

impl Credentials {
    /// Parses an `Authorization` header value.
    pub fn parse(header: Option<&str>) -> Credentials {
        let Some(h) = header else {
            return Credentials::None;
        };
        let h = h.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
            if rest.is_empty() {
                return Credentials::Malformed;
            }
            return Credentials::Bearer(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return Credentials::Malformed;
            };
            let Ok(s) = String::from_utf8(raw) else {
                return Credentials::Malformed;
            };
            let Some((user, password)) = s.split_once(':') else {
                return Credentials::Malformed;
            };
            // Some clients (containers/image) send `Basic base64(":")` when they have nothing.
            if user.is_empty() && password.is_empty() {
                return Credentials::None;
            }
            return Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            };
        }
        Credentials::Malformed
    }

    /// The token candidate: the bearer token or the Basic password.
    pub fn token(&self) -> Option<&str> {
        match self {
            Credentials::Bearer(t) => Some(t),
            Credentials::Basic { password, .. } => Some(password),
            _ => None,
        }
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Username.
    pub username: String,
    /// Site admin.
    pub admin: bool,
}

/// The prefix of every token, so that leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "pfai_";

/// A new token secret: 160 random bits, hex.
pub fn new_token_secret() -> String {
    let mut b = [0u8; 20];
    crate::util::fill_random(&mut b);
    format!("{TOKEN_PREFIX}{}", hex::encode(b))
}

/// Looks a token up by the hash of its secret (`accounts::token_by_hash` compares the stored
/// key again in constant time), with the principal it authenticates: none once its user is gone.
pub fn token_principal<R: Reads>(
    txn: &R,
    secret: &str,
) -> Result<Option<(Principal, Token)>, StorageError> {
    let hash = sha256_hex(secret.as_bytes());
    let Some(token) = accounts::token_by_hash(txn, &hash)? else {
        return Ok(None);
    };
    let Some(user) = accounts::user(txn, &token.username)? else {
        return Ok(None);
    };
    Ok(Some((
        Principal {
            username: user.username,
            admin: user.admin,
        },
        token,
    )))
}

/// Hashes a password with argon2id and a random salt. The error is argon2's own, so a caller
/// can keep it as the cause of its failure.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    crate::util::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// A real argon2 hash of a throwaway password, so that checking an unknown user costs as much as
/// checking a known one (timing does not reveal which usernames exist).
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("pfai-dummy-password").unwrap_or_default())
}

/// Checks a password against a stored argon2 hash (constant time inside argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    if hash.is_empty() {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The caller's role on a repository: site admins and the owning user are admin; otherwise the
/// highest of org membership, collaborator role, and `read` for public repositories.
pub fn role_on<R: Reads>(
    txn: &R,
    who: Option<&Principal>,
    repo: &Repo,
) -> Result<Option<Role>, StorageError> {
    let public = if repo.private { None } else { Some(Role::Read) };
    let Some(p) = who else {
        return Ok(public);
    };
    if p.admin || p.username == repo.owner {
        return Ok(Some(Role::Admin));
    }
    let key = format!("{}/{}", repo.owner, repo.name);
    let collab = accounts::collaborator_role(txn, &key, &p.username)?;
    let org = accounts::org_role(txn, &repo.owner, &p.username)?;
    Ok([public, collab, org].into_iter().flatten().max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials() {
        assert_eq!(Credentials::parse(None), Credentials::None);
        assert_eq!(
            Credentials::parse(Some("Bearer abc")),
            Credentials::Bearer("abc".into())
        );
        let b = base64::engine::general_purpose::STANDARD.encode("u:p:q");
        assert_eq!(
            Credentials::parse(Some(&format!("Basic {b}"))),
            Credentials::Basic {
                user: "u".into(),
                password: "p:q".into()
            }
        );
        assert_eq!(
            Credentials::parse(Some("Basic !!!")),
            Credentials::Malformed
        );
        assert_eq!(Credentials::parse(Some("Digest x")), Credentials::Malformed);
        assert_eq!(Credentials::parse(Some("Bearer ")), Credentials::Malformed);
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "nope"));
        assert!(!verify_password("", ""));
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = new_token_secret();
        assert!(a.len() >= TOKEN_PREFIX.len() + 32);
        assert_ne!(a, new_token_secret());
    }
}
