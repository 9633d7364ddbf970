//! Users, groups and sessions as the state keeps them, in one table,
//! `auth` (byte keys, versioned records), so that snapshots carry them as
//! one list of rows:
//! - `user/NAME` -> [`User`]; `uid/UID` -> [`IdName`] (UID: 4 bytes, big-endian)
//! - `group/NAME` -> [`Group`]; `gid/GID` -> [`IdName`]
//! - `sess/HASH` -> [`Session`], HASH = BLAKE3 of the bearer token (the
//!   token itself is never stored or logged)
//! - `exp/EXPIRES_MS(be)HASH` -> empty: sessions by expiry, to forget them
//! - `usess/NAME\0HASH` -> empty: a user's sessions, to end them all
//! - `akey/ID` -> [`AccessKey`]: an S3 access key, its secret sealed
//!   under a key derived from the cluster secret (`auth::SealingKey`)
//! - `uakey/NAME\0ID` -> empty: a user's access keys
//!
//! Ids are never reused: a removed user's files keep its uid, shown as a
//! number, and a new user never inherits them.

use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;
use crate::perm::Principal;
use crate::records::{decode, Initial, StateError, Versioned};

pub use crate::state::tables::{AuthRows, AUTH};

/// A user (format 2: numeric ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    /// argon2id PHC string (algorithm, parameters, salt and hash).
    pub password_hash: String,
    /// The user's groups; the first is their own group, named after them.
    pub gids: Vec<u32>,
    pub admin: bool,
    pub created_ns: u64,
    /// Bumped when the password changes: a login verified against an older
    /// password does not open a session.
    pub version: u64,
}

impl Versioned for User {
    const NAME: &'static str = "user";
    const FORMAT: u8 = 2;
    // Format 1 named groups by name and had no uid: numbering needs every
    // user, so it is upgraded with the whole state (`upgrade.rs`).
    type Previous = Initial;
    fn upgrade(previous: Initial) -> User {
        match previous {}
    }
}

impl User {
    pub fn principal(&self, name: &str) -> Principal {
        Principal {
            uid: self.uid,
            name: name.to_string(),
            gids: self.gids.clone(),
            admin: self.admin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub gid: u32,
    pub created_ns: u64,
}

impl Versioned for Group {
    const NAME: &'static str = "group";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> Group {
        match previous {}
    }
}

/// The name a uid or gid stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdName {
    pub name: String,
}

impl Versioned for IdName {
    const NAME: &'static str = "id name";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> IdName {
        match previous {}
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl Versioned for Session {
    const NAME: &'static str = "session";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> Session {
        match previous {}
    }
}

/// An S3 access key: who it acts for, and its secret, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub user: String,
    pub sealed_secret: Vec<u8>,
    pub created_ms: u64,
}

impl Versioned for AccessKey {
    const NAME: &'static str = "access key";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> AccessKey {
        match previous {}
    }
}

pub const USER_PREFIX: &[u8] = b"user/";
pub const ACCESS_KEY_PREFIX: &[u8] = b"akey/";
pub const GROUP_PREFIX: &[u8] = b"group/";
pub const EXPIRY_PREFIX: &[u8] = b"exp/";

pub fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

pub fn uid_key(uid: u32) -> Vec<u8> {
    [b"uid/".as_slice(), &uid.to_be_bytes()].concat()
}

pub fn group_key(name: &str) -> Vec<u8> {
    [GROUP_PREFIX, name.as_bytes()].concat()
}

pub fn gid_key(gid: u32) -> Vec<u8> {
    [b"gid/".as_slice(), &gid.to_be_bytes()].concat()
}

pub fn session_key(hash: &TokenHash) -> Vec<u8> {
    [b"sess/".as_slice(), hash].concat()
}

pub fn expiry_key(expires_ms: u64, hash: &TokenHash) -> Vec<u8> {
    [EXPIRY_PREFIX, &expires_ms.to_be_bytes(), hash].concat()
}

pub fn user_sessions_prefix(name: &str) -> Vec<u8> {
    [b"usess/".as_slice(), name.as_bytes(), b"\0"].concat()
}

pub fn user_session_key(name: &str, hash: &TokenHash) -> Vec<u8> {
    [user_sessions_prefix(name).as_slice(), hash].concat()
}

pub fn access_key_key(id: &str) -> Vec<u8> {
    [ACCESS_KEY_PREFIX, id.as_bytes()].concat()
}

pub fn user_access_keys_prefix(name: &str) -> Vec<u8> {
    [b"uakey/".as_slice(), name.as_bytes(), b"\0"].concat()
}

pub fn user_access_key_key(name: &str, id: &str) -> Vec<u8> {
    [user_access_keys_prefix(name).as_slice(), id.as_bytes()].concat()
}

/// The end of a prefix range: the prefix with its last byte + 1 (every
/// prefix here ends in `/` or NUL, so the byte never overflows).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("prefixes are not empty");
    *last += 1;
    end
}

fn get<T: Versioned>(auth: &impl AuthRows, key: &[u8]) -> Result<Option<T>, StateError> {
    match auth.get(key)? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

pub fn get_user(auth: &impl AuthRows, name: &str) -> Result<Option<User>, StateError> {
    get(auth, &user_key(name))
}

pub fn get_group(auth: &impl AuthRows, name: &str) -> Result<Option<Group>, StateError> {
    get(auth, &group_key(name))
}

/// The name of user `uid`, if one has it.
pub fn user_name(auth: &impl AuthRows, uid: u32) -> Result<Option<String>, StateError> {
    Ok(get::<IdName>(auth, &uid_key(uid))?.map(|n| n.name))
}

/// The name of group `gid`, if one has it.
pub fn group_name(auth: &impl AuthRows, gid: u32) -> Result<Option<String>, StateError> {
    Ok(get::<IdName>(auth, &gid_key(gid))?.map(|n| n.name))
}

pub fn get_session(auth: &impl AuthRows, hash: &TokenHash) -> Result<Option<Session>, StateError> {
    get(auth, &session_key(hash))
}

/// Up to `limit` users whose names sort after `after`, by name; and
/// whether more follow.
pub fn users_page(
    auth: &impl AuthRows,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<(String, User)>, bool), StateError> {
    let end = prefix_end(USER_PREFIX);
    let start = match after {
        // The smallest key after `user/AFTER`: append a NUL byte.
        Some(after) => [user_key(after), vec![0]].concat(),
        None => USER_PREFIX.to_vec(),
    };
    let mut out = Vec::new();
    for row in auth.range(start.as_slice()..end.as_slice())? {
        let (key, value) = row?;
        if out.len() == limit {
            return Ok((out, true));
        }
        let name = String::from_utf8_lossy(&key.value()[USER_PREFIX.len()..]).into_owned();
        out.push((name, decode(value.value())?));
    }
    Ok((out, false))
}

/// The token hashes of a user's sessions.
pub fn user_sessions(auth: &impl AuthRows, name: &str) -> Result<Vec<TokenHash>, StateError> {
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

pub fn get_access_key(auth: &impl AuthRows, id: &str) -> Result<Option<AccessKey>, StateError> {
    get(auth, &access_key_key(id))
}

/// The ids of a user's access keys, in order.
pub fn user_access_keys(auth: &impl AuthRows, name: &str) -> Result<Vec<String>, StateError> {
    let prefix = user_access_keys_prefix(name);
    let end = prefix_end(&prefix);
    let mut out = Vec::new();
    for row in auth.range(prefix.as_slice()..end.as_slice())? {
        let (key, _) = row?;
        out.push(String::from_utf8_lossy(&key.value()[prefix.len()..]).into_owned());
    }
    Ok(out)
}

/// Every access key, by id, at most `limit`.
pub fn all_access_keys(
    auth: &impl AuthRows,
    limit: usize,
) -> Result<Vec<(String, AccessKey)>, StateError> {
    let end = prefix_end(ACCESS_KEY_PREFIX);
    let mut out = Vec::new();
    for row in auth.range(ACCESS_KEY_PREFIX..end.as_slice())? {
        let (key, value) = row?;
        if out.len() == limit {
            break;
        }
        let id = String::from_utf8_lossy(&key.value()[ACCESS_KEY_PREFIX.len()..]).into_owned();
        out.push((id, decode(value.value())?));
    }
    Ok(out)
}

pub fn has_users(auth: &impl AuthRows) -> Result<bool, StateError> {
    let end = prefix_end(USER_PREFIX);
    Ok(auth.range(USER_PREFIX..end.as_slice())?.next().is_some())
}

/// The caller `name` as the state knows it, or `None` if no such user.
pub fn principal(auth: &impl AuthRows, name: &str) -> Result<Option<Principal>, StateError> {
    Ok(get_user(auth, name)?.map(|user| user.principal(name)))
}
