//! Web UI sign-ins: a password check that yields a random session id (kept only in the browser's
//! cookie; the database holds its SHA-256, like tokens) and a per-session CSRF token that every
//! state-changing form must echo. Sessions expire; a deleted user's sessions stop working.

use subtle::ConstantTimeEq;

use super::{Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::storage::records::Session;
use crate::storage::{accounts, sessions};
use crate::util::{fill_random, now_unix, sha256_hex};

/// How long a sign-in lasts.
pub const SESSION_TTL_SECS: i64 = 14 * 24 * 3600;

/// A signed-in browser: who it is and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user.
    pub principal: Principal,
    /// The session's CSRF token.
    pub csrf: String,
}

/// A new random secret (128 bits, hex) for session ids and CSRF tokens.
pub fn new_secret() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    hex::encode(b)
}

/// Compares a presented CSRF token with the expected one in constant time.
pub fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(p) if !expected.is_empty() => bool::from(p.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// Checks a username and password and opens a session. Returns the session id for the cookie.
/// Unknown users and wrong passwords get the same answer (and the same argon2 cost).
/// Refused with `TooManyRequests` (before argon2 runs) while the account or the client address
/// is locked out after failures.
pub async fn sign_in(
    core: &Core,
    username: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> DomainResult<String> {
    let name = username.trim().to_owned();
    let user = super::account::check_password(core, &name, password.to_owned(), client).await?;
    if user.is_none() {
        return Err(DomainError::Unauthenticated(
            "incorrect username or password".into(),
        ));
    }
    let secret = new_secret();
    let hash = sha256_hex(secret.as_bytes());
    let now = now_unix();
    let session = Session {
        username: name,
        csrf: new_secret(),
        created_at: now,
        expires_at: now + SESSION_TTL_SECS,
    };
    core.db
        .write(move |txn| {
            // Sign-ins are rare: sweeping expired sessions here keeps the table bounded.
            sessions::purge_expired(txn, now)?;
            sessions::insert(txn, &hash, &session)?;
            Ok::<_, DomainError>(())
        })
        .await?;
    Ok(secret)
}

/// Resolves a session id from a cookie. Unknown, expired or orphaned sessions are anonymous.
pub async fn resolve(core: &Core, secret: &str) -> DomainResult<Option<SignedIn>> {
    if secret.is_empty() || secret.len() > 128 {
        return Ok(None);
    }
    let hash = sha256_hex(secret.as_bytes());
    core.db
        .read(move |txn| {
            let Some(s) = sessions::get(txn, &hash)? else {
                return Ok(None);
            };
            if s.expires_at <= now_unix() {
                return Ok(None);
            }
            let Some(u) = accounts::user(txn, &s.username)? else {
                return Ok(None);
            };
            Ok::<_, DomainError>(Some(SignedIn {
                principal: Principal {
                    username: u.username,
                    admin: u.admin,
                },
                csrf: s.csrf,
            }))
        })
        .await
}

/// Ends a session (sign out). Unknown ids are fine: the browser forgets its cookie either way.
pub async fn sign_out(core: &Core, secret: &str) -> DomainResult<()> {
    let hash = sha256_hex(secret.as_bytes());
    core.db
        .write(move |txn| {
            sessions::remove(txn, &hash)?;
            Ok::<_, DomainError>(())
        })
        .await
}
