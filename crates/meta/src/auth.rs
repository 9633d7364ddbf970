//! Users and sessions as the state machine keeps them, and password hashing.
//!
//! One redb table, `auth` (byte keys, records in the usual versioned
//! encoding), so that snapshots carry it as one list of rows:
//! - `user/NAME` -> [`User`]
//! - `sess/HASH` -> [`Session`], HASH = BLAKE3 of the bearer token (the
//!   token itself is never stored or logged)
//! - `exp/EXPIRES_MS(be)HASH` -> empty: sessions by expiry, to forget them
//! - `usess/NAME\0HASH` -> empty: a user's sessions, to end them all
//!
//! Passwords are hashed with argon2id (salted, PHC string) on the leader
//! before the command is proposed: the log and the tables hold only hashes.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::perm::Principal;
use crate::state::{decode, StateError};

pub const AUTH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth");

/// The most sessions one user keeps; a login beyond it ends their oldest.
pub const MAX_SESSIONS_PER_USER: usize = 64;
/// The most users a cluster keeps (a user record is ~200 bytes).
pub const MAX_USERS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// argon2id PHC string (algorithm, parameters, salt and hash).
    pub password_hash: String,
    /// The first is the user's own group, named after them.
    pub groups: Vec<String>,
    pub admin: bool,
    pub created_ms: u64,
    /// Bumped when the password changes: a login verified against an older
    /// password does not open a session.
    pub version: u64,
}

impl User {
    pub fn principal(&self, name: &str) -> Principal {
        Principal {
            name: name.to_string(),
            groups: self.groups.clone(),
            admin: self.admin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

pub type TokenHash = [u8; 32];

pub fn user_key(name: &str) -> Vec<u8> {
    [b"user/".as_slice(), name.as_bytes()].concat()
}

pub fn session_key(hash: &TokenHash) -> Vec<u8> {
    [b"sess/".as_slice(), hash].concat()
}

pub fn expiry_key(expires_ms: u64, hash: &TokenHash) -> Vec<u8> {
    [b"exp/".as_slice(), &expires_ms.to_be_bytes(), hash].concat()
}

pub fn user_sessions_prefix(name: &str) -> Vec<u8> {
    [b"usess/".as_slice(), name.as_bytes(), b"\0"].concat()
}

pub fn user_session_key(name: &str, hash: &TokenHash) -> Vec<u8> {
    [user_sessions_prefix(name).as_slice(), hash].concat()
}

pub const USER_PREFIX: &[u8] = b"user/";
pub const EXPIRY_PREFIX: &[u8] = b"exp/";

/// The end of a prefix range: the prefix with its last byte + 1 (every
/// prefix here ends in `/` or NUL, so the byte never overflows).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("prefixes are not empty");
    *last += 1;
    end
}

pub fn get_user(
    auth: &impl ReadableTable<&'static [u8], &'static [u8]>,
    name: &str,
) -> Result<Option<User>, StateError> {
    match auth.get(user_key(name).as_slice())? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

pub fn get_session(
    auth: &impl ReadableTable<&'static [u8], &'static [u8]>,
    hash: &TokenHash,
) -> Result<Option<Session>, StateError> {
    match auth.get(session_key(hash).as_slice())? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

/// Every user, by name.
pub fn list_users(
    auth: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<(String, User)>, StateError> {
    let mut out = Vec::new();
    let end = prefix_end(USER_PREFIX);
    for row in auth.range(USER_PREFIX..end.as_slice())? {
        let (key, value) = row?;
        let name = String::from_utf8_lossy(&key.value()[USER_PREFIX.len()..]).into_owned();
        out.push((name, decode(value.value())?));
    }
    Ok(out)
}

/// The token hashes of a user's sessions.
pub fn user_sessions(
    auth: &impl ReadableTable<&'static [u8], &'static [u8]>,
    name: &str,
) -> Result<Vec<TokenHash>, StateError> {
    let prefix = user_sessions_prefix(name);
    let end = prefix_end(&prefix);
    let mut out = Vec::new();
    for row in auth.range(prefix.as_slice()..end.as_slice())? {
        let (key, _) = row?;
        let hash: TokenHash = key.value()[prefix.len()..]
            .try_into()
            .map_err(|_| StateError::Corrupt("user session key of the wrong length".into()))?;
        out.push(hash);
    }
    Ok(out)
}

pub fn has_users(
    auth: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<bool, StateError> {
    let end = prefix_end(USER_PREFIX);
    Ok(auth.range(USER_PREFIX..end.as_slice())?.next().is_some())
}

// ---- tokens and passwords (on the leader, outside the state machine) ----

/// A new bearer token: 32 random bytes as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn token_hash(token: &str) -> TokenHash {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A new random password for the first admin: 24 characters from an
/// alphabet without look-alikes (~137 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: the
/// OWASP minimum), salted with 16 random bytes. ~30 ms on one core.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_a_fresh_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsf", &a));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_and_passwords_are_random() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 64);
        assert_eq!(new_password().len(), 24);
        assert_ne!(new_password(), new_password());
    }
}
