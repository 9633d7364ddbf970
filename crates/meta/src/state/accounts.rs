//! Commands on users, groups and sessions (records in `users.rs`).

use cairn_proto::api::{
    validate_access_key_id, validate_user_name, KeyInfo, UserResponse, MAX_ACCESS_KEYS_PER_USER,
    MAX_USER_GROUPS,
};
use cairn_proto::ids::ROOT_ID;
use cairn_proto::{ApiError, ErrorCode};

use crate::auth::TokenHash;
use crate::limits::{
    MAX_GROUPS, MAX_SESSIONS_FORGOTTEN_PER_COMMAND, MAX_SESSIONS_PER_USER, MAX_USERS,
};
use crate::perm::{Principal, ADMIN_USER, DIR_MODE, HOME_MODE, ROOT_GID, ROOT_UID};
use crate::records::{encode, StateError};
use crate::state::command::Output;
use crate::state::inode::Inode;
use crate::state::tables::{get_counter, get_counter_or_zero, keys, put_counter, Tables};
use crate::state::users::{self, AccessKey, Group, IdName, Session, User, EXPIRY_PREFIX};
use redb::ReadableTable;

/// Where home directories live.
pub const HOME_DIR: &str = "home";

pub fn home_of(name: &str) -> String {
    format!("/{HOME_DIR}/{name}")
}

pub fn require_admin(who: &Principal, doing: &str) -> Result<(), ApiError> {
    if who.admin {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: only an admin may {doing}, and {} is not one",
            who.name
        ),
    ))
}

impl Tables<'_> {
    pub fn bootstrap_admin(
        &mut self,
        password_hash: &str,
        now_ns: u64,
    ) -> Result<Output, StateError> {
        if users::has_users(&self.ns.auth)? {
            return Ok(Output::Nothing);
        }
        self.create_user(ADMIN_USER, password_hash, &[], true, now_ns, Some(ROOT_UID))
            .map(Output::User)
    }

    pub fn add_user(
        &mut self,
        who: &Principal,
        name: &str,
        password_hash: &str,
        groups: &[String],
        admin: bool,
        now_ns: u64,
    ) -> Result<UserResponse, StateError> {
        require_admin(who, "add users")?;
        self.create_user(name, password_hash, groups, admin, now_ns, None)
    }

    /// Creates user `name` with its own group, its further `groups` (made
    /// when new) and its home. `uid`: the first admin's 0; else the next.
    fn create_user(
        &mut self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        admin: bool,
        now_ns: u64,
        uid: Option<u32>,
    ) -> Result<UserResponse, StateError> {
        validate_user_name("user", name)?;
        if groups.len() > MAX_USER_GROUPS {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("a user may be in at most {MAX_USER_GROUPS} groups"),
            )
            .into());
        }
        for group in groups {
            validate_user_name("group", group)?;
        }
        if users::get_user(&self.ns.auth, name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("user {name} already exists; set a new password with `cairn user passwd {name}`"),
            )
            .into());
        }
        let user_count = get_counter_or_zero(&self.meta, keys::USER_COUNT)?;
        if user_count >= MAX_USERS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("the cluster has {MAX_USERS} users, the most it keeps"),
            )
            .into());
        }
        // The user's own group first, then the others, once each.
        let mut group_names = vec![name.to_string()];
        for group in groups {
            if !group_names.contains(group) {
                group_names.push(group.clone());
            }
        }
        let mut new_groups = 0;
        for group in &group_names {
            if users::get_group(&self.ns.auth, group)?.is_none() {
                new_groups += 1;
            }
        }
        if get_counter_or_zero(&self.meta, keys::GROUP_COUNT)? + new_groups > MAX_GROUPS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("the cluster has {MAX_GROUPS} groups, the most it keeps"),
            )
            .into());
        }
        // Only writes from here on.
        let uid = match uid {
            Some(uid) => uid,
            None => {
                let next = get_counter(&self.meta, keys::NEXT_UID)?;
                put_counter(&mut self.meta, keys::NEXT_UID, next + 1)?;
                u32::try_from(next).expect("uids stay below u32::MAX (MAX_USERS)")
            }
        };
        let mut gids = Vec::with_capacity(group_names.len());
        for (i, group) in group_names.iter().enumerate() {
            // The own group takes the uid as its gid when it can (as
            // useradd does); the first admin's group is 0.
            let preferred = match (i, uid) {
                (0, ROOT_UID) => Some(ROOT_GID),
                (0, uid) => Some(uid),
                _ => None,
            };
            gids.push(self.ensure_group(group, preferred, now_ns)?);
        }
        let user = User {
            uid,
            password_hash: password_hash.to_string(),
            gids,
            admin,
            created_ns: now_ns,
            version: 1,
        };
        self.save_user(name, &user)?;
        self.ns.auth.insert(
            users::uid_key(uid).as_slice(),
            encode(&IdName {
                name: name.to_string(),
            })
            .as_slice(),
        )?;
        put_counter(&mut self.meta, keys::USER_COUNT, user_count + 1)?;
        self.ensure_home(&user.principal(name), now_ns)?;
        Ok(UserResponse {
            name: name.to_string(),
            uid,
            sessions_ended: 0,
        })
    }

    /// The gid of group `name`, made now if new: `preferred` if no group
    /// has it, else the next free one.
    fn ensure_group(
        &mut self,
        name: &str,
        preferred: Option<u32>,
        now_ns: u64,
    ) -> Result<u32, StateError> {
        if let Some(group) = users::get_group(&self.ns.auth, name)? {
            return Ok(group.gid);
        }
        let next = get_counter(&self.meta, keys::NEXT_GID)?;
        let gid = match preferred {
            Some(gid) if users::group_name(&self.ns.auth, gid)?.is_none() => gid,
            _ => u32::try_from(next).expect("gids stay below u32::MAX (MAX_GROUPS)"),
        };
        if u64::from(gid) >= next {
            put_counter(&mut self.meta, keys::NEXT_GID, u64::from(gid) + 1)?;
        }
        let group = Group {
            gid,
            created_ns: now_ns,
        };
        self.ns
            .auth
            .insert(users::group_key(name).as_slice(), encode(&group).as_slice())?;
        self.ns.auth.insert(
            users::gid_key(gid).as_slice(),
            encode(&IdName {
                name: name.to_string(),
            })
            .as_slice(),
        )?;
        self.add_counter(keys::GROUP_COUNT, 1)?;
        Ok(gid)
    }

    fn save_user(&mut self, name: &str, user: &User) -> Result<(), StateError> {
        self.ns
            .auth
            .insert(users::user_key(name).as_slice(), encode(user).as_slice())?;
        Ok(())
    }

    /// Makes `/home` (root's, 0755) and `/home/NAME` (the user's, 0700)
    /// unless they exist; an existing home (of a removed user of the same
    /// name) is kept as it is.
    fn ensure_home(&mut self, user: &Principal, now_ns: u64) -> Result<(), StateError> {
        let home = match self.ns.lookup(ROOT_ID, HOME_DIR)? {
            Some((id, true)) => id,
            Some((_, false)) => return Ok(()),
            None => {
                let id = self.alloc_id()?;
                let dir = Inode::new_dir(now_ns, &Principal::system(), DIR_MODE, ROOT_ID);
                self.save_inode(id, &dir)?;
                self.link(ROOT_ID, HOME_DIR, id, true, now_ns)?;
                id
            }
        };
        if self.ns.lookup(home, &user.name)?.is_some() {
            return Ok(());
        }
        let id = self.alloc_id()?;
        self.save_inode(id, &Inode::new_dir(now_ns, user, HOME_MODE, home))?;
        self.link(home, &user.name, id, true, now_ns)
    }

    pub fn set_password(
        &mut self,
        who: &Principal,
        name: &str,
        password_hash: &str,
    ) -> Result<UserResponse, StateError> {
        if who.name != name {
            require_admin(who, "set another user's password")?;
        }
        let mut user = self.existing_user(name)?;
        user.password_hash = password_hash.to_string();
        user.version += 1;
        self.save_user(name, &user)?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        Ok(UserResponse {
            name: name.to_string(),
            uid: user.uid,
            sessions_ended,
        })
    }

    pub fn remove_user(&mut self, who: &Principal, name: &str) -> Result<UserResponse, StateError> {
        require_admin(who, "remove users")?;
        let user = self.existing_user(name)?;
        if user.admin {
            let mut admins = 0;
            let mut after: Option<String> = None;
            loop {
                let (page, more) = users::users_page(&self.ns.auth, after.as_deref(), 1024)?;
                admins += page.iter().filter(|(_, u)| u.admin).count();
                after = page.last().map(|(n, _)| n.clone());
                if !more || admins > 1 {
                    break;
                }
            }
            if admins <= 1 {
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!("{name} is the only admin; add another admin before removing it"),
                )
                .into());
            }
        }
        // Only writes from here on. Their files keep their uid (shown as a
        // number, as a removed user's files on a POSIX disk); an admin may
        // chown them. The uid is never given to another user.
        self.ns.auth.remove(users::user_key(name).as_slice())?;
        self.ns.auth.remove(users::uid_key(user.uid).as_slice())?;
        self.add_counter(keys::USER_COUNT, -1)?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        for id in users::user_access_keys(&self.ns.auth, name)? {
            self.remove_access_key_rows(name, &id)?;
        }
        Ok(UserResponse {
            name: name.to_string(),
            uid: user.uid,
            sessions_ended,
        })
    }

    /// Gives `user` the access key `id` (whose secret the leader drew and
    /// sealed): the caller's own, or anyone's for an admin.
    pub fn create_access_key(
        &mut self,
        who: &Principal,
        id: &str,
        user: &str,
        sealed_secret: &[u8],
        now_ns: u64,
    ) -> Result<KeyInfo, StateError> {
        if who.name != user {
            require_admin(who, "create access keys for other users")?;
        }
        validate_access_key_id(id)?;
        self.existing_user(user)?;
        let held = users::user_access_keys(&self.ns.auth, user)?.len();
        if held >= MAX_ACCESS_KEYS_PER_USER {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "{user} has {held} access keys, the most a user may hold; remove one with `cairn key rm ID`"
                ),
            )
            .into());
        }
        if users::get_access_key(&self.ns.auth, id)?.is_some() {
            // 90 random bits: a collision is a bug, not bad luck.
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("access key {id} exists already; create another"),
            )
            .into());
        }
        let key = AccessKey {
            user: user.to_string(),
            sealed_secret: sealed_secret.to_vec(),
            created_ms: now_ns / 1_000_000,
        };
        let auth = &mut self.ns.auth;
        auth.insert(
            users::access_key_key(id).as_slice(),
            encode(&key).as_slice(),
        )?;
        auth.insert(
            users::user_access_key_key(user, id).as_slice(),
            [].as_slice(),
        )?;
        Ok(KeyInfo {
            access_key_id: id.to_string(),
            user: user.to_string(),
            created_ms: key.created_ms,
        })
    }

    /// Removes an access key: the caller's own, or anyone's for an admin.
    /// Requests signed with it are refused from then on.
    pub fn remove_access_key(&mut self, who: &Principal, id: &str) -> Result<KeyInfo, StateError> {
        let Some(key) = users::get_access_key(&self.ns.auth, id)? else {
            return Err(
                ApiError::not_found(format!("access key {id} (see `cairn key list`)")).into(),
            );
        };
        if who.name != key.user {
            require_admin(who, "remove other users' access keys")?;
        }
        self.remove_access_key_rows(&key.user, id)?;
        Ok(KeyInfo {
            access_key_id: id.to_string(),
            user: key.user,
            created_ms: key.created_ms,
        })
    }

    fn remove_access_key_rows(&mut self, user: &str, id: &str) -> Result<(), StateError> {
        let auth = &mut self.ns.auth;
        auth.remove(users::access_key_key(id).as_slice())?;
        auth.remove(users::user_access_key_key(user, id).as_slice())?;
        Ok(())
    }

    pub fn create_session(
        &mut self,
        token_hash: &TokenHash,
        name: &str,
        expires_ms: u64,
        user_version: u64,
        now_ns: u64,
    ) -> Result<UserResponse, StateError> {
        let user = self.existing_user(name)?;
        if user.version != user_version {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                format!("the password of {name} changed while logging in; log in again"),
            )
            .into());
        }
        let mut sessions = users::user_sessions(&self.ns.auth, name)?;
        let mut sessions_ended = 0;
        if sessions.len() >= MAX_SESSIONS_PER_USER {
            // End the one that expires first.
            let mut oldest: Option<(u64, TokenHash)> = None;
            for hash in sessions.drain(..) {
                if let Some(session) = users::get_session(&self.ns.auth, &hash)? {
                    if oldest.is_none_or(|(at, _)| session.expires_ms < at) {
                        oldest = Some((session.expires_ms, hash));
                    }
                }
            }
            if let Some((_, hash)) = oldest {
                self.end_session(&hash)?;
                sessions_ended = 1;
            }
        }
        let session = Session {
            user: name.to_string(),
            created_ms: now_ns / 1_000_000,
            expires_ms,
        };
        let auth = &mut self.ns.auth;
        auth.insert(
            users::session_key(token_hash).as_slice(),
            encode(&session).as_slice(),
        )?;
        auth.insert(
            users::expiry_key(expires_ms, token_hash).as_slice(),
            [].as_slice(),
        )?;
        auth.insert(
            users::user_session_key(name, token_hash).as_slice(),
            [].as_slice(),
        )?;
        Ok(UserResponse {
            name: name.to_string(),
            uid: user.uid,
            sessions_ended,
        })
    }

    /// Ends the session with `token_hash` (logout).
    pub fn logout(&mut self, token_hash: &TokenHash) -> Result<UserResponse, StateError> {
        let user = users::get_session(&self.ns.auth, token_hash)?.map(|s| s.user);
        self.end_session(token_hash)?;
        Ok(UserResponse {
            name: user.unwrap_or_default(),
            uid: 0,
            sessions_ended: 1,
        })
    }

    pub fn end_user_sessions(
        &mut self,
        who: &Principal,
        name: &str,
    ) -> Result<UserResponse, StateError> {
        if who.name != name {
            require_admin(who, "end another user's sessions")?;
        }
        let user = self.existing_user(name)?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        Ok(UserResponse {
            name: name.to_string(),
            uid: user.uid,
            sessions_ended,
        })
    }

    /// Forgets sessions that expired (a bounded number per command).
    pub fn forget_sessions(&mut self, now_ns: u64) -> Result<(), StateError> {
        let end = users::expiry_key(now_ns / 1_000_000, &[0; 32]);
        let mut expired = Vec::new();
        for row in self.ns.auth.range(EXPIRY_PREFIX..end.as_slice())? {
            let (key, _) = row?;
            let hash: TokenHash = key.value()[key.value().len() - 32..]
                .try_into()
                .expect("expiry keys end in a 32-byte hash");
            expired.push(hash);
            if expired.len() >= MAX_SESSIONS_FORGOTTEN_PER_COMMAND {
                break;
            }
        }
        for hash in expired {
            self.end_session(&hash)?;
        }
        Ok(())
    }

    fn existing_user(&self, name: &str) -> Result<User, StateError> {
        users::get_user(&self.ns.auth, name)?.ok_or_else(|| {
            ApiError::not_found(format!("user {name} (see `cairn user list`)")).into()
        })
    }

    fn end_all_sessions_of(&mut self, name: &str) -> Result<u64, StateError> {
        let hashes = users::user_sessions(&self.ns.auth, name)?;
        for hash in &hashes {
            self.end_session(hash)?;
        }
        Ok(hashes.len() as u64)
    }

    /// Removes a session and its index rows (nothing if it is gone).
    fn end_session(&mut self, hash: &TokenHash) -> Result<(), StateError> {
        let Some(session) = users::get_session(&self.ns.auth, hash)? else {
            return Ok(());
        };
        let auth = &mut self.ns.auth;
        auth.remove(users::session_key(hash).as_slice())?;
        auth.remove(users::expiry_key(session.expires_ms, hash).as_slice())?;
        auth.remove(users::user_session_key(&session.user, hash).as_slice())?;
        self.release_session(hash)
    }
}
