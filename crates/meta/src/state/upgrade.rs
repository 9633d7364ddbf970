//! The state's format, and the upgrade of a state written by an older
//! release: run when the database is opened and after a snapshot from an
//! older member is installed, in the same transaction, before anything
//! reads the state.
//!
//! Formats (kept in `sm_meta/state_format`; older databases are told apart
//! by the flags they had):
//! - 1: inodes of format 1 (no owner), no chunk reference index;
//! - 2: with `chunk_refs` (flag `chunk_refs_indexed`);
//! - 3: inodes of format 2 with owner and group names and parents, users
//!   of format 1 (flag `inode_parents_indexed`);
//! - 4: numeric owners (users and groups get uids and gids, the first
//!   admin 0), times in nanoseconds with ctime, directory entry keys with a
//!   trailing `/` for directories, extended attributes, request outcomes
//!   with a format marker;
//! - 5: directories count their subdirectories (their link count).
//!
//! Formats 1 to 3 are upgraded to 4 in one pass, then 4 to 5 in another:
//! each derives everything it writes (ids, parents, reference counts,
//! subdirectory counts) from the state alone, so every member that runs it
//! gets the same tables.

use std::collections::{BTreeMap, BTreeSet};

use cairn_proto::api::EntryKind;
use cairn_proto::ids::ROOT_ID;
use cairn_proto::{
    ChunkId, ChunkRef, ClusterMap, FileId, DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_REPLICATION,
};
use redb::ReadableTable;
use serde::Deserialize;

use crate::limits::FIRST_ID;
use crate::perm::{Principal, ADMIN_USER, DIR_MODE, ROOT_GID, ROOT_UID};
use crate::records::{encode, StateError};
use crate::state::command::Response;
use crate::state::inode::Inode;
use crate::state::requests::RequestOutcome;
use crate::state::tables::{get_counter_or_zero, keys, put_counter, Tables};
use crate::state::users::{self, Group, IdName, User, USER_PREFIX};

/// The format of the state this binary writes.
pub const STATE_FORMAT: u64 = 5;

/// Flags of the formats before [`keys::STATE_FORMAT`].
const LEGACY_REFS_INDEXED: &str = "chunk_refs_indexed";
const LEGACY_PARENTS_INDEXED: &str = "inode_parents_indexed";

/// Rows rewritten per batch (bounds the memory of the pass).
const BATCH_ROWS: usize = 1024;

impl Tables<'_> {
    /// Creates the root directory and the default map in an empty state,
    /// or upgrades an older state. Every member does the same, so the
    /// states stay identical.
    pub fn initialize_or_upgrade(&mut self) -> Result<(), StateError> {
        if self.ns.inodes.get(ROOT_ID)?.is_none() {
            return self.initialize();
        }
        match self.state_format()? {
            STATE_FORMAT => Ok(()),
            newer if newer > STATE_FORMAT => Err(StateError::Corrupt(format!(
                "the metadata state has format {newer}, newer than this binary understands ({STATE_FORMAT}); \
                 upgrade cairn"
            ))),
            older => {
                let started = std::time::Instant::now();
                let mut inodes = 0;
                if older < 4 {
                    inodes += self.upgrade_to_4(older)?;
                }
                inodes += self.count_subdirs()?;
                put_counter(&mut self.meta, keys::STATE_FORMAT, STATE_FORMAT)?;
                tracing::info!(
                    from = older,
                    to = STATE_FORMAT,
                    inodes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "upgraded the metadata state"
                );
                Ok(())
            }
        }
    }

    fn state_format(&self) -> Result<u64, StateError> {
        if self.meta.get(keys::STATE_FORMAT)?.is_some() {
            return get_counter_or_zero(&self.meta, keys::STATE_FORMAT);
        }
        Ok(if self.meta.get(LEGACY_PARENTS_INDEXED)?.is_some() {
            3
        } else if self.meta.get(LEGACY_REFS_INDEXED)?.is_some() {
            2
        } else {
            1
        })
    }

    fn initialize(&mut self) -> Result<(), StateError> {
        let root = Inode::new_dir(0, &Principal::system(), DIR_MODE, ROOT_ID);
        self.ns.inodes.insert(ROOT_ID, encode(&root).as_slice())?;
        put_counter(&mut self.meta, keys::NEXT_ID, ROOT_ID + 1)?;
        put_counter(&mut self.meta, keys::DIR_COUNT, 1)?;
        put_counter(&mut self.meta, keys::FILE_COUNT, 0)?;
        put_counter(&mut self.meta, keys::USER_COUNT, 0)?;
        put_counter(&mut self.meta, keys::GROUP_COUNT, 0)?;
        put_counter(&mut self.meta, keys::NEXT_UID, u64::from(FIRST_ID))?;
        put_counter(&mut self.meta, keys::NEXT_GID, u64::from(FIRST_ID))?;
        let map = ClusterMap {
            epoch: 1,
            replication: DEFAULT_REPLICATION,
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
            nodes: Vec::new(),
        };
        self.save_map(&map)?;
        put_counter(&mut self.meta, keys::STATE_FORMAT, STATE_FORMAT)
    }

    /// The pass from format 4 to 5: every directory learns how many of
    /// its entries are directories (keys ending in `/`). Returns the
    /// directories rewritten.
    fn count_subdirs(&mut self) -> Result<u64, StateError> {
        // Directory id -> subdirectories: one number per directory that
        // has any (a million directories: tens of MiB, once).
        let mut subdirs: BTreeMap<FileId, u64> = BTreeMap::new();
        for row in self.ns.dirents.iter()? {
            let (key, _) = row?;
            let (parent, name) = key.value();
            if name.ends_with('/') {
                *subdirs.entry(parent).or_default() += 1;
            }
        }
        let mut rewritten = 0;
        for (dir, count) in subdirs {
            let Some(mut inode) = self.ns.try_inode(dir)? else {
                return Err(StateError::Corrupt(format!(
                    "directory entries under {dir}, which has no record"
                )));
            };
            inode.subdirs = count;
            self.ns.inodes.insert(dir, encode(&inode).as_slice())?;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// The pass from formats 1 to 3; returns the inodes rewritten.
    fn upgrade_to_4(&mut self, from: u64) -> Result<u64, StateError> {
        let legacy_users = self.legacy_users()?;
        let ids = self.number_owners(&legacy_users)?;
        for (name, user) in &legacy_users {
            let record = User {
                uid: ids.uids[name],
                password_hash: user.password_hash.clone(),
                gids: user.groups.iter().map(|g| ids.gids[g]).collect(),
                admin: user.admin,
                created_ns: user.created_ms.saturating_mul(1_000_000),
                version: user.version,
            };
            self.ns
                .auth
                .insert(users::user_key(name).as_slice(), encode(&record).as_slice())?;
        }
        for (name, uid) in &ids.uids {
            if legacy_users.contains_key(name) {
                let id_name = IdName { name: name.clone() };
                self.ns
                    .auth
                    .insert(users::uid_key(*uid).as_slice(), encode(&id_name).as_slice())?;
            }
        }
        for (name, gid) in &ids.gids {
            let group = Group {
                gid: *gid,
                created_ns: 0,
            };
            self.ns
                .auth
                .insert(users::group_key(name).as_slice(), encode(&group).as_slice())?;
            let id_name = IdName { name: name.clone() };
            self.ns
                .auth
                .insert(users::gid_key(*gid).as_slice(), encode(&id_name).as_slice())?;
        }
        let next_uid = next_free(ids.uids.values());
        let next_gid = next_free(ids.gids.values());
        put_counter(&mut self.meta, keys::NEXT_UID, u64::from(next_uid))?;
        put_counter(&mut self.meta, keys::NEXT_GID, u64::from(next_gid))?;
        put_counter(&mut self.meta, keys::USER_COUNT, legacy_users.len() as u64)?;
        put_counter(&mut self.meta, keys::GROUP_COUNT, ids.gids.len() as u64)?;

        let (inodes, files, dirs) = self.upgrade_inodes(&ids)?;
        put_counter(&mut self.meta, keys::FILE_COUNT, files)?;
        put_counter(&mut self.meta, keys::DIR_COUNT, dirs)?;
        self.upgrade_entries()?;
        self.upgrade_request_outcomes()?;
        self.meta.remove(LEGACY_REFS_INDEXED)?;
        self.meta.remove(LEGACY_PARENTS_INDEXED)?;
        tracing::info!(
            from,
            users = legacy_users.len(),
            groups = ids.gids.len(),
            "numbered users and groups"
        );
        Ok(inodes)
    }

    fn legacy_users(&self) -> Result<BTreeMap<String, UserV1>, StateError> {
        let mut out = BTreeMap::new();
        let end = users::prefix_end(USER_PREFIX);
        for row in self.ns.auth.range(USER_PREFIX..end.as_slice())? {
            let (key, value) = row?;
            let name = String::from_utf8_lossy(&key.value()[USER_PREFIX.len()..]).into_owned();
            out.insert(name, decode_legacy::<UserV1>(value.value(), 1, "user")?);
        }
        Ok(out)
    }

    /// Numbers every user and group the state names: the admin 0, users in
    /// the order they were made, each user's own group with its uid when
    /// free, then names only inodes mention (removed users), by name.
    fn number_owners(&self, legacy_users: &BTreeMap<String, UserV1>) -> Result<Ids, StateError> {
        let mut ids = Ids::default();
        ids.uids.insert(ADMIN_USER.to_string(), ROOT_UID);
        ids.gids.insert(ADMIN_USER.to_string(), ROOT_GID);
        let mut by_age: Vec<(&String, &UserV1)> = legacy_users.iter().collect();
        by_age.sort_by_key(|(name, user)| (user.created_ms, name.as_str()));
        for (name, _) in &by_age {
            ids.user(name);
        }
        for (name, user) in &by_age {
            let own = ids.uids[name.as_str()];
            for (i, group) in user.groups.iter().enumerate() {
                ids.group(group, (i == 0).then_some(own));
            }
        }
        // Owners and groups only inodes name, as of users removed before.
        let mut owners = BTreeSet::new();
        let mut groups = BTreeSet::new();
        let mut after = 0;
        loop {
            let batch = self.legacy_inode_batch(after)?;
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            for (_, inode) in batch {
                owners.insert(inode.owner);
                groups.insert(inode.group);
            }
        }
        for owner in &owners {
            ids.user(owner);
        }
        for group in &groups {
            ids.group(group, None);
        }
        Ok(ids)
    }

    /// Up to [`BATCH_ROWS`] inodes with ids above `after`, in any legacy
    /// format, as format 2 (format 1: owned by admin, parent unknown).
    fn legacy_inode_batch(&self, after: FileId) -> Result<Vec<(FileId, InodeV2)>, StateError> {
        let mut out = Vec::new();
        for row in self.ns.inodes.range(after + 1..)? {
            let (id, value) = row?;
            out.push((id.value(), decode_legacy_inode(value.value())?));
            if out.len() == BATCH_ROWS {
                break;
            }
        }
        Ok(out)
    }

    /// Rewrites every inode in format 3 and rebuilds the chunk reference
    /// counts; returns (inodes, files, directories).
    fn upgrade_inodes(&mut self, ids: &Ids) -> Result<(u64, u64, u64), StateError> {
        self.chunk_refs.retain(|_, _| false)?;
        let (mut inodes, mut files, mut dirs) = (0, 0, 0);
        let mut after = 0;
        loop {
            let batch = self.legacy_inode_batch(after)?;
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            for (id, old) in batch {
                let inode = Inode {
                    kind: old.kind,
                    mode: old.mode,
                    uid: ids.uids[&old.owner],
                    gid: ids.gids[&old.group],
                    version: old.version,
                    created_ns: old.created_ms.saturating_mul(1_000_000),
                    modified_ns: old.modified_ms.saturating_mul(1_000_000),
                    changed_ns: old.modified_ms.saturating_mul(1_000_000),
                    accessed_ns: old.modified_ms.saturating_mul(1_000_000),
                    size_bytes: old.size_bytes,
                    digest: old.digest,
                    chunks: old.chunks,
                    parent: if id == ROOT_ID { ROOT_ID } else { old.parent },
                    xattr_bytes: 0,
                    target: None,
                    rdev: 0,
                    subdirs: 0,
                    names: 1,
                };
                for chunk in &inode.chunks {
                    let count = self.chunk_refs.get(chunk.id.0)?.map_or(0, |v| v.value());
                    self.chunk_refs.insert(chunk.id.0, count + 1)?;
                }
                match inode.kind {
                    EntryKind::Dir => dirs += 1,
                    // Formats 1 and 2 knew files and directories only.
                    _ => files += 1,
                }
                inodes += 1;
                self.ns.inodes.insert(id, encode(&inode).as_slice())?;
            }
        }
        Ok((inodes, files, dirs))
    }

    /// Gives directories' entry keys their trailing `/`, and every child
    /// the parent its entry says (databases of format 1 lacked them).
    fn upgrade_entries(&mut self) -> Result<(), StateError> {
        let mut after: (u64, String) = (0, String::new());
        loop {
            let mut batch = Vec::new();
            for row in self.ns.dirents.range((after.0, after.1.as_str())..)? {
                let (key, child) = row?;
                let (parent, name) = key.value();
                if (parent, name) == (after.0, after.1.as_str()) {
                    continue;
                }
                batch.push((parent, name.to_string(), child.value()));
                if batch.len() == BATCH_ROWS {
                    break;
                }
            }
            let Some((parent, name, _)) = batch.last() else {
                break;
            };
            after = (*parent, name.clone());
            for (parent, name, child) in batch {
                // A key with a '/' was written by this pass already.
                if name.contains('/') {
                    continue;
                }
                let mut inode = self.ns.inode(child)?;
                if inode.parent != parent {
                    inode.parent = parent;
                    self.ns.inodes.insert(child, encode(&inode).as_slice())?;
                }
                if inode.is_dir() {
                    self.ns.dirents.remove((parent, name.as_str()))?;
                    let key = format!("{name}/");
                    self.ns.dirents.insert((parent, key.as_str()), child)?;
                }
            }
        }
        Ok(())
    }

    /// Request outcomes were `(applied ms, response)` in plain JSON; they
    /// become [`RequestOutcome`] records, indexed by nanoseconds.
    fn upgrade_request_outcomes(&mut self) -> Result<(), StateError> {
        let mut old = Vec::new();
        for row in self.requests_by_time.iter()? {
            let (key, _) = row?;
            old.push(key.value());
        }
        self.requests_by_time.retain(|_, _| false)?;
        for (at_ms, id) in old {
            let Some(bytes) = self.requests.get(id)?.map(|b| b.value().to_vec()) else {
                continue;
            };
            let (_, response): (u64, Response) = serde_json::from_slice(&bytes)
                .map_err(|e| StateError::Corrupt(format!("request record: {e}")))?;
            let applied_ns = at_ms.saturating_mul(1_000_000);
            let record = RequestOutcome {
                applied_ns,
                response,
            };
            self.requests.insert(id, encode(&record).as_slice())?;
            self.requests_by_time.insert((applied_ns, id), ())?;
        }
        Ok(())
    }
}

/// The numbers given to names during the upgrade.
#[derive(Default)]
struct Ids {
    uids: BTreeMap<String, u32>,
    gids: BTreeMap<String, u32>,
}

impl Ids {
    fn user(&mut self, name: &str) -> u32 {
        if let Some(uid) = self.uids.get(name) {
            return *uid;
        }
        let uid = next_free(self.uids.values());
        self.uids.insert(name.to_string(), uid);
        uid
    }

    fn group(&mut self, name: &str, preferred: Option<u32>) -> u32 {
        if let Some(gid) = self.gids.get(name) {
            return *gid;
        }
        let taken = |gid: u32| self.gids.values().any(|g| *g == gid);
        let gid = match preferred {
            Some(gid) if !taken(gid) => gid,
            _ => next_free(self.gids.values()),
        };
        self.gids.insert(name.to_string(), gid);
        gid
    }
}

/// The first id at or above [`FIRST_ID`] above every id in `taken`.
fn next_free<'a>(taken: impl Iterator<Item = &'a u32>) -> u32 {
    taken.map(|id| id + 1).max().unwrap_or(0).max(FIRST_ID)
}

// ---- the shapes of earlier releases ----

/// A user of format 1: groups by name, no uid.
#[derive(Debug, Deserialize)]
struct UserV1 {
    password_hash: String,
    groups: Vec<String>,
    admin: bool,
    created_ms: u64,
    version: u64,
}

/// An inode of format 1 (before users): owned by `admin`, no parent.
#[derive(Deserialize)]
struct InodeV1 {
    kind: EntryKind,
    mode: u32,
    version: u64,
    created_ms: u64,
    modified_ms: u64,
    size_bytes: u64,
    digest: Option<ChunkId>,
    chunks: Vec<ChunkRef>,
}

/// An inode of format 2: owner and group by name, and the parent (0 when
/// not yet known).
#[derive(Debug, Deserialize)]
struct InodeV2 {
    kind: EntryKind,
    mode: u32,
    version: u64,
    created_ms: u64,
    modified_ms: u64,
    size_bytes: u64,
    digest: Option<ChunkId>,
    chunks: Vec<ChunkRef>,
    owner: String,
    group: String,
    parent: FileId,
}

fn decode_legacy_inode(bytes: &[u8]) -> Result<InodeV2, StateError> {
    match bytes.first() {
        Some(1) => {
            let old: InodeV1 = decode_legacy(bytes, 1, "inode")?;
            Ok(InodeV2 {
                kind: old.kind,
                mode: old.mode,
                version: old.version,
                created_ms: old.created_ms,
                modified_ms: old.modified_ms,
                size_bytes: old.size_bytes,
                digest: old.digest,
                chunks: old.chunks,
                owner: ADMIN_USER.to_string(),
                group: ADMIN_USER.to_string(),
                parent: 0,
            })
        }
        _ => decode_legacy(bytes, 2, "inode"),
    }
}

/// A postcard record of an earlier release with marker `format`.
fn decode_legacy<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    format: u8,
    what: &str,
) -> Result<T, StateError> {
    match bytes.split_first() {
        Some((&marker, body)) if marker == format => postcard::from_bytes(body)
            .map_err(|e| StateError::Corrupt(format!("{what} record of format {format}: {e}"))),
        Some((&marker, _)) => Err(StateError::Corrupt(format!(
            "{what} record of format {marker} in a state being upgraded from before format markers"
        ))),
        None => Err(StateError::Corrupt(format!("empty {what} record"))),
    }
}
