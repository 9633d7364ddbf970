//! The namespace state machine: directories, files and the cluster map, kept
//! in redb tables and changed only by [`Command`]s applied in log order.
//!
//! Tables (every value record starts with a format byte, [`RECORD_V1`]):
//! - `inodes`:  id -> [`Inode`] (postcard)
//! - `dirents`: (parent id, name) -> child id
//! - `sm_meta`: key -> bytes: next id, counters, the cluster map, the ids
//!   of removed nodes, and the Raft bookkeeping (last applied log id,
//!   membership) kept by `store.rs`.
//! - `chunk_refs`: chunk id -> number of references from file records. A
//!   chunk absent here is referenced by no file: chunk servers may collect
//!   it after their grace period.
//! - `requests`: client request id -> when it applied and its outcome
//!   (JSON), and `requests_by_time`: (applied ms, id) to forget old ones.
//!   A retried operation is answered from here instead of applying twice.
//! - `auth`: users and sessions (layout in `auth.rs`).
//!
//! Inode records carry their own format byte, [`INODE_V2`] (owner, group
//! and parent added); records of format 1 are still read.
//!
//! Every command runs as a user (`Request::user`; none means the cluster
//! itself, with every right) and is checked against the permission rules
//! in `perm.rs` before it writes anything.
//!
//! Invariant (atomicity): a command either applies whole or changes nothing.
//! Every command checks everything that can be refused (names, existence,
//! kinds) before its first write; after that only a storage error can stop
//! it, and a storage error aborts the whole transaction. Determinism: a
//! command's outcome depends only on the state and the command (its clock is
//! the proposer's `now_ms`, carried in the command).

use cairn_proto::api::{
    ChmodRequest, ChownRequest, CommitRequest, CommitResponse, DirEntry, EntryKind, ListResponse,
    MkdirRequest, MoveRequest, MutationResponse, OnExists, RegisterRequest, RemoveRequest, Stat,
    UserResponse,
};
use cairn_proto::ids::ROOT_ID;
use cairn_proto::path::{join, split_path};
use cairn_proto::{
    file_digest, ApiError, ChunkId, ChunkRef, ClusterMap, ErrorCode, FileId, NodeId, NodeInfo,
    NodeState, DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_REPLICATION, MAX_CHUNKS_PER_FILE,
    MAX_CHUNK_SIZE_BYTES, MAX_REPLICATION,
};
use redb::{ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::auth::{self, Session, TokenHash, User, AUTH};
use crate::perm::{
    self, Principal, ADMIN_USER, DIR_MODE, FILE_MODE, HOME_MODE, READ, SEARCH, WRITE,
};

pub const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
pub const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
pub const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub const CHUNK_REFS: TableDefinition<[u8; 32], u64> = TableDefinition::new("chunk_refs");
pub const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
pub const REQUESTS_BY_TIME: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("requests_by_time");

/// How long the outcome of a request id is remembered. A client retries
/// one operation for well under a minute (its failover deadline); ten
/// minutes leaves room for a slow election and clock skew between leaders.
pub const REQUEST_RETENTION_MS: u64 = 10 * 60 * 1000;
/// The most request outcomes remembered (oldest forgotten first): at ~200
/// bytes each, 20 MB. At 100,000 remembered, 10 minutes covers 166
/// operations a second; past that, retention is shorter than the window.
pub const MAX_REMEMBERED_REQUESTS: u64 = 100_000;

/// Format marker of every stored record; bump it when a record's layout changes.
pub const RECORD_V1: u8 = 1;
/// Format marker of inode records with owner, group and parent.
pub const INODE_V2: u8 = 2;

const KEY_NEXT_ID: &str = "next_id";
const KEY_MAP: &str = "cluster_map";
const KEY_FILE_COUNT: &str = "file_count";
const KEY_DIR_COUNT: &str = "dir_count";
/// Ids of nodes removed from the map: they may not register again.
const KEY_REMOVED_NODES: &str = "removed_nodes";
/// Present once `chunk_refs` holds every file's references.
const KEY_REFS_INDEXED: &str = "chunk_refs_indexed";
/// Number of users (absent: none, as in a database from before users).
const KEY_USER_COUNT: &str = "user_count";
/// Present once every inode record names its parent (format 2).
const KEY_PARENTS_INDEXED: &str = "inode_parents_indexed";
/// The most removed node ids remembered (oldest forgotten first).
const MAX_REMOVED_NODES: usize = 10_000;
/// The most expired sessions one command forgets (bounds its work).
const MAX_SESSIONS_FORGOTTEN_PER_COMMAND: usize = 256;
/// Where home directories live.
pub const HOME_DIR: &str = "home";
/// `parent` of a record of format 1 whose parent is not yet known.
const UNKNOWN_PARENT: FileId = 0;

/// When `--rename` finds `name` taken, it tries `stem-1.ext` .. up to this.
const MAX_RENAME_ATTEMPTS: u64 = 10_000;

/// A command as stored in the log: what to do, the proposer's clock, and
/// the client's id for the operation, if it sent one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u128>,
    /// The user the command runs as; `None`: the cluster itself (chunk
    /// servers, the liveness watcher, start-up), with every right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Mkdir(MkdirRequest),
    Commit(CommitRequest),
    Remove(RemoveRequest),
    Rename(MoveRequest),
    Copy(MoveRequest),
    RegisterNode(RegisterRequest),
    /// Sets a node's state; with `expect`, only if the node is in that
    /// state when the command applies (a no-op otherwise), so that the
    /// liveness watcher never undoes an operator's drain that won a race.
    SetNodeState {
        id: NodeId,
        state: NodeState,
        #[serde(default)]
        expect: Option<NodeState>,
    },
    /// Removes a `draining` or `down` node from the map for good.
    RemoveNode {
        id: NodeId,
    },
    SetParams {
        replication: u32,
        chunk_size_bytes: u64,
    },
    /// Creates the user `admin` (with `/home/admin`) if the cluster has no
    /// user yet; a no-op otherwise.
    BootstrapAdmin {
        password_hash: String,
    },
    AddUser {
        name: String,
        password_hash: String,
        groups: Vec<String>,
        admin: bool,
    },
    /// Sets a password and ends every session of the user.
    SetPassword {
        name: String,
        password_hash: String,
    },
    RemoveUser {
        name: String,
    },
    /// Opens a session for a user whose password the leader verified,
    /// unless the password changed since (`user_version`).
    CreateSession {
        token_hash: TokenHash,
        name: String,
        expires_ms: u64,
        user_version: u64,
    },
    /// Ends the session with this token hash (logout).
    EndSession {
        token_hash: TokenHash,
    },
    /// Ends every session of a user.
    EndUserSessions {
        name: String,
    },
    Chmod(ChmodRequest),
    Chown(ChownRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Raft-internal entries (blank, membership) have no output.
    Nothing,
    Mutation(MutationResponse),
    Commit(CommitResponse),
    Map(ClusterMap),
    User(UserResponse),
}

/// What a log entry's application answers to the proposer.
pub type Response = Result<Output, ApiError>;

/// A file or directory record (format [`INODE_V2`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub kind: EntryKind,
    pub mode: u32,
    pub version: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// File: its length. Directory: its number of entries.
    pub size_bytes: u64,
    pub digest: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
    pub owner: String,
    pub group: String,
    /// The directory holding it (every record has one: there are no hard
    /// links); the root's is itself. Lets a lookup by id check the path.
    pub parent: FileId,
}

/// An inode record of format 1 (before users): owned by `admin`.
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

pub fn encode_inode(inode: &Inode) -> Vec<u8> {
    let mut out = vec![INODE_V2];
    out.extend(postcard::to_stdvec(inode).expect("postcard encodes plain structs"));
    out
}

pub fn decode_inode(bytes: &[u8]) -> Result<Inode, StateError> {
    let corrupt = |e: postcard::Error| StateError::Corrupt(format!("inode record: {e}"));
    match bytes.split_first() {
        Some((&INODE_V2, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&RECORD_V1, body)) => {
            let old: InodeV1 = postcard::from_bytes(body).map_err(corrupt)?;
            Ok(Inode {
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
                parent: UNKNOWN_PARENT,
            })
        }
        Some((version, _)) => Err(StateError::Corrupt(format!(
            "inode format {version} is newer than this binary understands ({INODE_V2}); upgrade cairn"
        ))),
        None => Err(StateError::Corrupt("empty inode record".into())),
    }
}

impl Inode {
    fn new_dir(now_ms: u64, who: &Principal, mode: u32, parent: FileId) -> Inode {
        Inode {
            kind: EntryKind::Dir,
            mode,
            version: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            size_bytes: 0,
            digest: None,
            chunks: Vec::new(),
            owner: who.name.clone(),
            group: who.primary_group().to_string(),
            parent,
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// Whether `who` has every bit of `want` on this object.
    pub fn allows(&self, who: &Principal, want: u32) -> bool {
        who.may(&self.owner, &self.group, self.mode, want)
    }

    /// `Ok` if `who` has `want` on this object (named `path`), else the
    /// refusal saying what `doing` needed.
    fn require(&self, who: &Principal, want: u32, doing: &str, path: &str) -> Result<(), ApiError> {
        if self.allows(who, want) {
            return Ok(());
        }
        let object = if self.is_dir() {
            format!("directory {path}")
        } else {
            format!("file {path}")
        };
        let object = perm::Object {
            name: &object,
            owner: &self.owner,
            group: &self.group,
            mode: self.mode,
            is_dir: self.is_dir(),
        };
        Err(perm::denied(who, doing, &object, want))
    }

    /// `Ok` if `who` may read this object's contents (named `path`).
    pub fn require_read(&self, who: &Principal, path: &str) -> Result<(), ApiError> {
        self.require(who, READ, &format!("read {path}"), path)
    }

    /// The record as `stat` shows it; a file's chunk list and digest only
    /// to a caller who may read it.
    pub fn to_stat(&self, id: FileId, who: &Principal) -> Stat {
        let readable = self.is_dir() || self.allows(who, READ);
        Stat {
            id,
            kind: self.kind,
            size_bytes: self.size_bytes,
            mode: self.mode,
            owner: self.owner.clone(),
            group: self.group.clone(),
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            digest: if readable { self.digest } else { None },
            chunks: if readable {
                self.chunks.clone()
            } else {
                Vec::new()
            },
            capabilities: Vec::new(),
        }
    }
}

/// Failure to apply or read: either a refusal for the user, or a storage
/// fault that must stop the metadata service.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("metadata storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self { StateError::Storage(e.into()) }
        }
    )*};
}
storage_error_from!(
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::TransactionError,
    redb::DatabaseError
);

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    // Serializing our own plain structs into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).expect("postcard encodes plain structs"));
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StateError> {
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => postcard::from_bytes(body).map_err(|e| StateError::Corrupt(e.to_string())),
        Some((version, _)) => Err(StateError::Corrupt(format!(
            "record format {version} is newer than this binary understands ({RECORD_V1}); upgrade cairn"
        ))),
        None => Err(StateError::Corrupt("empty record".into())),
    }
}

/// The state machine's tables opened in one write transaction.
pub struct Tables<'txn> {
    pub inodes: Table<'txn, u64, &'static [u8]>,
    pub dirents: Table<'txn, (u64, &'static str), u64>,
    pub meta: Table<'txn, &'static str, &'static [u8]>,
    pub chunk_refs: Table<'txn, [u8; 32], u64>,
    pub requests: Table<'txn, u128, &'static [u8]>,
    pub requests_by_time: Table<'txn, (u64, u128), ()>,
    pub auth: Table<'txn, &'static [u8], &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StateError> {
        Ok(Tables {
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            meta: txn.open_table(SM_META)?,
            chunk_refs: txn.open_table(CHUNK_REFS)?,
            requests: txn.open_table(REQUESTS)?,
            requests_by_time: txn.open_table(REQUESTS_BY_TIME)?,
            auth: txn.open_table(AUTH)?,
        })
    }

    /// Creates the root directory and the default map in an empty state.
    /// Every member does the same, so the states stay identical.
    pub fn ensure_initialized(&mut self) -> Result<(), StateError> {
        if self.inodes.get(ROOT_ID)?.is_some() {
            self.ensure_chunk_refs()?;
            return self.ensure_parents();
        }
        let root = Inode::new_dir(0, &Principal::system(), DIR_MODE, ROOT_ID);
        self.put_inode(ROOT_ID, &root)?;
        self.meta.insert(KEY_PARENTS_INDEXED, [1u8].as_slice())?;
        self.put_u64(KEY_NEXT_ID, ROOT_ID + 1)?;
        self.put_u64(KEY_DIR_COUNT, 1)?;
        self.put_u64(KEY_FILE_COUNT, 0)?;
        let map = ClusterMap {
            epoch: 1,
            replication: DEFAULT_REPLICATION,
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
            nodes: Vec::new(),
        };
        self.meta.insert(KEY_MAP, encode(&map).as_slice())?;
        self.meta.insert(KEY_REFS_INDEXED, [1u8].as_slice())?;
        Ok(())
    }

    /// Builds `chunk_refs` from the file records in a database made before
    /// the table existed. Without it every chunk would look unreferenced
    /// and be collected. The index is derived from the state alone, so
    /// every member that runs this gets the same table.
    fn ensure_chunk_refs(&mut self) -> Result<(), StateError> {
        if self.meta.get(KEY_REFS_INDEXED)?.is_some() {
            return Ok(());
        }
        let mut files = Vec::new();
        for row in self.inodes.iter()? {
            let (_, value) = row?;
            let inode = decode_inode(value.value())?;
            if !inode.chunks.is_empty() {
                files.push(inode.chunks);
            }
        }
        self.chunk_refs.retain(|_, _| false)?;
        for chunks in &files {
            self.add_refs(chunks, 1)?;
        }
        self.meta.insert(KEY_REFS_INDEXED, [1u8].as_slice())?;
        tracing::info!(files = files.len(), "built the chunk reference index");
        Ok(())
    }

    /// Rewrites the inode records of a database made before they named
    /// their parent, from the directory entries (every member derives the
    /// same records from the same state).
    fn ensure_parents(&mut self) -> Result<(), StateError> {
        if self.meta.get(KEY_PARENTS_INDEXED)?.is_some() {
            return Ok(());
        }
        let mut links = Vec::new();
        for row in self.dirents.iter()? {
            let (key, child) = row?;
            links.push((key.value().0, child.value()));
        }
        links.push((ROOT_ID, ROOT_ID));
        for (parent, child) in &links {
            let mut inode = get_inode(&self.inodes, *child)?;
            inode.parent = *parent;
            self.put_inode(*child, &inode)?;
        }
        self.meta.insert(KEY_PARENTS_INDEXED, [1u8].as_slice())?;
        tracing::info!(records = links.len(), "inode records now name their parent");
        Ok(())
    }

    /// Applies one log entry's request and returns its outcome: a refusal
    /// is an outcome, only a storage fault is an error. A request id seen
    /// before is not applied again: its first outcome is returned.
    pub fn apply_request(&mut self, request: &Request) -> Result<Response, StateError> {
        self.forget_requests(request.now_ms)?;
        self.forget_sessions(request.now_ms)?;
        let Some(id) = request.request_id else {
            return outcome(self.apply(request));
        };
        if let Some(seen) = self.requests.get(id)? {
            let (_, response): (u64, Response) = serde_json::from_slice(seen.value())
                .map_err(|e| StateError::Corrupt(format!("request record: {e}")))?;
            return Ok(response);
        }
        let response = outcome(self.apply(request))?;
        let record = (request.now_ms, &response);
        let bytes = serde_json::to_vec(&record).expect("responses serialize to JSON");
        self.requests.insert(id, bytes.as_slice())?;
        self.requests_by_time.insert((request.now_ms, id), ())?;
        Ok(response)
    }

    /// Forgets request outcomes older than the retention, and the oldest
    /// beyond the count limit.
    fn forget_requests(&mut self, now_ms: u64) -> Result<(), StateError> {
        let horizon_ms = now_ms.saturating_sub(REQUEST_RETENTION_MS);
        let excess = self
            .requests_by_time
            .len()?
            .saturating_sub(MAX_REMEMBERED_REQUESTS - 1);
        let mut forget = Vec::new();
        for row in self.requests_by_time.iter()? {
            let (key, _) = row?;
            let (at_ms, id) = key.value();
            if at_ms >= horizon_ms && forget.len() as u64 >= excess {
                break;
            }
            forget.push((at_ms, id));
        }
        for (at_ms, id) in forget {
            self.requests_by_time.remove((at_ms, id))?;
            self.requests.remove(id)?;
        }
        Ok(())
    }

    /// Forgets sessions that expired (a bounded number per command).
    fn forget_sessions(&mut self, now_ms: u64) -> Result<(), StateError> {
        let start = auth::EXPIRY_PREFIX;
        let end = auth::expiry_key(now_ms, &[0; 32]);
        let mut expired = Vec::new();
        for row in self.auth.range(start..end.as_slice())? {
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

    /// The caller of a request: the named user (refused if unknown), or the
    /// cluster itself.
    fn principal(&self, user: Option<&str>) -> Result<Principal, StateError> {
        let Some(name) = user else {
            return Ok(Principal::system());
        };
        match auth::get_user(&self.auth, name)? {
            Some(record) => Ok(record.principal(name)),
            None => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                format!("user {name} no longer exists; log in as another user"),
            )
            .into()),
        }
    }

    /// Applies one command. On `Err(StateError::Api)` nothing was written.
    pub fn apply(&mut self, request: &Request) -> Result<Output, StateError> {
        let now = request.now_ms;
        let who = &self.principal(request.user.as_deref())?;
        match &request.command {
            Command::Mkdir(req) => self.mkdir(who, req, now).map(Output::Mutation),
            Command::Commit(req) => self.commit(who, req, now).map(Output::Commit),
            Command::Remove(req) => self.remove(who, req, now).map(Output::Mutation),
            Command::Rename(req) => self.rename(who, req, now).map(Output::Mutation),
            Command::Copy(req) => self.copy(who, req, now).map(Output::Mutation),
            Command::Chmod(req) => self.chmod(who, req, now).map(Output::Mutation),
            Command::Chown(req) => self.chown(who, req, now).map(Output::Mutation),
            Command::RegisterNode(req) => self.register_node(req, now).map(Output::Map),
            Command::SetNodeState { id, state, expect } => self
                .set_node_state(id, *state, *expect, now)
                .map(Output::Map),
            Command::RemoveNode { id } => self.remove_node(id).map(Output::Map),
            Command::SetParams {
                replication,
                chunk_size_bytes,
            } => self
                .set_params(*replication, *chunk_size_bytes)
                .map(Output::Map),
            Command::BootstrapAdmin { password_hash } => self.bootstrap_admin(password_hash, now),
            Command::AddUser {
                name,
                password_hash,
                groups,
                admin,
            } => self
                .add_user(who, name, password_hash, groups, *admin, now)
                .map(Output::User),
            Command::SetPassword {
                name,
                password_hash,
            } => self
                .set_password(who, name, password_hash)
                .map(Output::User),
            Command::RemoveUser { name } => self.remove_user(who, name).map(Output::User),
            Command::CreateSession {
                token_hash,
                name,
                expires_ms,
                user_version,
            } => self
                .create_session(token_hash, name, *expires_ms, *user_version, now)
                .map(Output::User),
            Command::EndSession { token_hash } => {
                let user = auth::get_session(&self.auth, token_hash)?.map(|s| s.user);
                self.end_session(token_hash)?;
                Ok(Output::User(UserResponse {
                    name: user.unwrap_or_default(),
                    sessions_ended: 1,
                }))
            }
            Command::EndUserSessions { name } => {
                self.end_user_sessions(who, name).map(Output::User)
            }
        }
    }

    // ---- namespace commands ----

    fn mkdir(
        &mut self,
        who: &Principal,
        req: &MkdirRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let mode = req.mode.unwrap_or(DIR_MODE);
        perm::validate_mode(mode)?;
        let names = split_path(&req.path)?;
        let path = join(&names);
        let mut dir = ROOT_ID;
        let mut dir_inode = get_inode(&self.inodes, ROOT_ID)?;
        let mut first_missing = names.len();
        for (depth, name) in names.iter().enumerate() {
            let here = join(&names[..depth]);
            dir_inode.require(who, SEARCH, &format!("reach {path}"), &here)?;
            match lookup(&self.dirents, dir, name)? {
                Some(child) => {
                    let child_inode = get_inode(&self.inodes, child)?;
                    if !child_inode.is_dir() {
                        return Err(not_a_directory(&join(&names[..=depth])).into());
                    }
                    dir = child;
                    dir_inode = child_inode;
                }
                None => {
                    first_missing = depth;
                    break;
                }
            }
        }
        if first_missing == names.len() {
            // Everything exists already.
            if req.parents {
                return Ok(MutationResponse { id: dir, path });
            }
            return Err(
                ApiError::new(ErrorCode::AlreadyExists, format!("{path} already exists")).into(),
            );
        }
        if first_missing + 1 < names.len() && !req.parents {
            let parent = join(&names[..=first_missing]);
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("cannot create {path}: parent directory {parent} does not exist; use mkdir -p to create parents"),
            )
            .into());
        }
        // The directories below are new and the caller's own: only the
        // existing one they go into needs checking.
        dir_inode.require(
            who,
            WRITE,
            &format!("create {path}"),
            &join(&names[..first_missing]),
        )?;
        // Only writes from here on: every name below is new.
        for (depth, name) in names.iter().enumerate().skip(first_missing) {
            let id = self.alloc_id()?;
            // As mkdir -p -m: the mode is the last directory's; the
            // parents made on the way get the default.
            let this_mode = if depth + 1 == names.len() {
                mode
            } else {
                DIR_MODE
            };
            self.put_inode(id, &Inode::new_dir(now, who, this_mode, dir))?;
            self.link(dir, name, id, now)?;
            self.add_u64(KEY_DIR_COUNT, 1)?;
            dir = id;
        }
        Ok(MutationResponse { id: dir, path })
    }

    fn commit(
        &mut self,
        who: &Principal,
        req: &CommitRequest,
        now: u64,
    ) -> Result<CommitResponse, StateError> {
        validate_chunk_list(req)?;
        let mode = req.mode.unwrap_or(FILE_MODE);
        perm::validate_mode(mode)?;
        let parent = self.resolve_parent(who, &req.path)?;
        let mut name = parent.name.clone();
        let existing = lookup(&self.dirents, parent.id, &name)?;
        let replace = match existing {
            None => None,
            Some(id) => {
                let inode = get_inode(&self.inodes, id)?;
                let path = child_path(&parent.path, &name);
                if inode.is_dir() {
                    return Err(ApiError::new(
                        ErrorCode::IsADirectory,
                        format!(
                            "{path} is a directory; give a file name inside it, as in {path}/NAME"
                        ),
                    )
                    .into());
                }
                match req.on_exists {
                    OnExists::Fail => return Err(already_exists_file(&path).into()),
                    OnExists::Replace => {
                        // Rewriting a file in place needs write on it, not
                        // on its directory (as open(2) with O_TRUNC).
                        inode.require(who, WRITE, &format!("replace {path}"), &path)?;
                        Some((id, inode))
                    }
                    OnExists::Rename => {
                        name = self.unique_name(parent.id, &name)?;
                        None
                    }
                }
            }
        };
        let path = child_path(&parent.path, &name);
        if replace.is_none() {
            parent.require_write(who, &format!("create {path}"))?;
        }
        // Only writes from here on.
        self.add_refs(&req.chunks, 1)?;
        let (id, version) = match replace {
            Some((id, old)) => {
                self.add_refs(&old.chunks, -1)?;
                let inode = Inode {
                    version: old.version + 1,
                    modified_ms: now,
                    size_bytes: req.size_bytes,
                    digest: Some(req.digest),
                    chunks: req.chunks.clone(),
                    ..old
                };
                self.put_inode(id, &inode)?;
                self.touch(parent.id, now)?;
                (id, inode.version)
            }
            None => {
                let id = self.alloc_id()?;
                let inode = new_file(
                    now,
                    who,
                    mode,
                    parent.id,
                    req.size_bytes,
                    Some(req.digest),
                    req.chunks.clone(),
                );
                self.put_inode(id, &inode)?;
                self.link(parent.id, &name, id, now)?;
                self.add_u64(KEY_FILE_COUNT, 1)?;
                (id, 1)
            }
        };
        Ok(CommitResponse { id, path, version })
    }

    fn remove(
        &mut self,
        who: &Principal,
        req: &RemoveRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let names = split_path(&req.path)?;
        let path = join(&names);
        if names.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "cannot remove the root directory /",
            )
            .into());
        }
        let parent = self.resolve_parent(who, &path)?;
        let name = parent.name.clone();
        let id = lookup(&self.dirents, parent.id, &name)?
            .ok_or_else(|| not_found(&child_path(&parent.path, &name)))?;
        let inode = get_inode(&self.inodes, id)?;
        if inode.is_dir() && inode.size_bytes > 0 && !req.recursive {
            return Err(ApiError::new(
                ErrorCode::DirectoryNotEmpty,
                format!("{path} is a directory with {} entries; use rm -r to remove it and everything in it", inode.size_bytes),
            )
            .into());
        }
        parent.require_write(who, &format!("remove {path}"))?;
        if inode.is_dir() && inode.size_bytes > 0 && !who.admin {
            self.check_subtree_removable(who, id, &inode, &path)?;
        }
        // Only writes from here on.
        self.unlink(parent.id, &name, now)?;
        // Depth-first over the subtree; the stack holds ids still to delete.
        let mut stack = vec![(id, inode)];
        while let Some((id, inode)) = stack.pop() {
            if inode.is_dir() {
                for (child_name, child) in list_children(&self.dirents, id)? {
                    self.dirents.remove((id, child_name.as_str()))?;
                    stack.push((child, get_inode(&self.inodes, child)?));
                }
                self.add_u64(KEY_DIR_COUNT, -1)?;
            } else {
                self.add_refs(&inode.chunks, -1)?;
                self.add_u64(KEY_FILE_COUNT, -1)?;
            }
            self.inodes.remove(id)?;
        }
        Ok(MutationResponse { id, path })
    }

    /// `rm -r` empties every directory below: each non-empty one needs
    /// read (to list it), write and search (to remove its entries).
    fn check_subtree_removable(
        &self,
        who: &Principal,
        id: FileId,
        inode: &Inode,
        path: &str,
    ) -> Result<(), StateError> {
        let mut stack = vec![(id, inode.clone(), path.to_string())];
        while let Some((id, inode, dir_path)) = stack.pop() {
            if !inode.is_dir() || inode.size_bytes == 0 {
                continue;
            }
            inode.require(
                who,
                READ | WRITE | SEARCH,
                &format!("remove {path} and everything in it"),
                &dir_path,
            )?;
            for (name, child) in list_children(&self.dirents, id)? {
                let child_inode = get_inode(&self.inodes, child)?;
                if child_inode.is_dir() {
                    stack.push((child, child_inode, child_path(&dir_path, &name)));
                }
            }
        }
        Ok(())
    }

    fn rename(
        &mut self,
        who: &Principal,
        req: &MoveRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(who, &req.src)?;
        let dst = self.resolve_destination(who, &req.dst, &src, req.replace)?;
        if src.inode.is_dir()
            && (dst.path == src.path || dst.path.starts_with(&format!("{}/", src.path)))
        {
            if dst.path == src.path {
                return Ok(MutationResponse {
                    id: src.id,
                    path: src.path,
                });
            }
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "cannot move directory {} into itself ({})",
                    src.path, dst.path
                ),
            )
            .into());
        }
        if dst.path == src.path {
            return Ok(MutationResponse {
                id: src.id,
                path: src.path,
            });
        }
        let doing = format!("move {} to {}", src.path, dst.path);
        src.parent.require_write(who, &doing)?;
        dst.parent.require_write(who, &doing)?;
        if src.inode.is_dir() && dst.parent.id != src.parent.id {
            // Its ".." changes: POSIX asks write on the directory itself.
            src.inode.require(who, WRITE, &doing, &src.path)?;
        }
        // Only writes from here on.
        if let Some(old) = dst.replaced {
            self.add_refs(&get_inode(&self.inodes, old)?.chunks, -1)?;
            self.inodes.remove(old)?;
            self.add_u64(KEY_FILE_COUNT, -1)?;
            self.unlink(dst.parent.id, &dst.name, now)?;
        }
        self.unlink(src.parent.id, &src.parent.name, now)?;
        self.link(dst.parent.id, &dst.name, src.id, now)?;
        if dst.parent.id != src.parent.id {
            let mut moved = src.inode;
            moved.parent = dst.parent.id;
            self.put_inode(src.id, &moved)?;
        }
        Ok(MutationResponse {
            id: src.id,
            path: dst.path,
        })
    }

    fn copy(
        &mut self,
        who: &Principal,
        req: &MoveRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(who, &req.src)?;
        if src.inode.is_dir() {
            return Err(ApiError::new(
                ErrorCode::IsADirectory,
                format!(
                    "{} is a directory; cp copies files (copy the files inside it one by one)",
                    src.path
                ),
            )
            .into());
        }
        let dst = self.resolve_destination(who, &req.dst, &src, req.replace)?;
        if dst.path == src.path {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("cannot copy {} onto itself", src.path),
            )
            .into());
        }
        let doing = format!("copy {} to {}", src.path, dst.path);
        src.inode.require(who, READ, &doing, &src.path)?;
        dst.parent.require_write(who, &doing)?;
        // Only writes from here on. The copy shares the chunk list: no data
        // moves. As cp(1) without -p: the caller owns the copy, which keeps
        // the source's bits.
        self.add_refs(&src.inode.chunks, 1)?;
        let inode = new_file(
            now,
            who,
            src.inode.mode,
            dst.parent.id,
            src.inode.size_bytes,
            src.inode.digest,
            src.inode.chunks.clone(),
        );
        if let Some(old) = dst.replaced {
            self.add_refs(&get_inode(&self.inodes, old)?.chunks, -1)?;
            self.inodes.remove(old)?;
            self.add_u64(KEY_FILE_COUNT, -1)?;
            self.unlink(dst.parent.id, &dst.name, now)?;
        }
        let id = self.alloc_id()?;
        self.put_inode(id, &inode)?;
        self.link(dst.parent.id, &dst.name, id, now)?;
        self.add_u64(KEY_FILE_COUNT, 1)?;
        Ok(MutationResponse { id, path: dst.path })
    }

    fn chmod(
        &mut self,
        who: &Principal,
        req: &ChmodRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        perm::validate_mode(req.mode)?;
        let (id, mut inode) = resolve(&self.inodes, &self.dirents, who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        if !who.admin && inode.owner != who.name {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "permission denied: only the owner of {path} ({}) or an admin may change its mode",
                    inode.owner
                ),
            )
            .into());
        }
        inode.mode = req.mode;
        inode.version += 1;
        inode.modified_ms = now;
        self.put_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    fn chown(
        &mut self,
        who: &Principal,
        req: &ChownRequest,
        now: u64,
    ) -> Result<MutationResponse, StateError> {
        if req.owner.is_none() && req.group.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "chown needs a new owner, a new group, or both (OWNER, OWNER:GROUP or :GROUP)",
            )
            .into());
        }
        let (id, mut inode) = resolve(&self.inodes, &self.dirents, who, &req.path)?;
        let path = cairn_proto::path::normalize(&req.path)?;
        if let Some(owner) = &req.owner {
            cairn_proto::api::validate_user_name("user", owner)?;
            if !who.admin && *owner != inode.owner {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("permission denied: only an admin may give {path} to another owner"),
                )
                .into());
            }
            if auth::get_user(&self.auth, owner)?.is_none() {
                return Err(
                    ApiError::not_found(format!("user {owner} (see `cairn user list`)")).into(),
                );
            }
        }
        if let Some(group) = &req.group {
            cairn_proto::api::validate_user_name("group", group)?;
            let owns = inode.owner == who.name;
            if !(who.admin || owns && who.in_group(group)) {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "permission denied: the owner of {path} may set its group only to one of their own groups \
                         ({}); an admin may set any",
                        who.groups.join(", ")
                    ),
                )
                .into());
            }
        }
        // Only writes from here on.
        if let Some(owner) = &req.owner {
            inode.owner = owner.clone();
        }
        if let Some(group) = &req.group {
            inode.group = group.clone();
        }
        inode.version += 1;
        inode.modified_ms = now;
        self.put_inode(id, &inode)?;
        Ok(MutationResponse { id, path })
    }

    // ---- users and sessions ----

    fn bootstrap_admin(&mut self, password_hash: &str, now: u64) -> Result<Output, StateError> {
        if auth::has_users(&self.auth)? {
            return Ok(Output::Nothing);
        }
        let groups = vec![ADMIN_USER.to_string()];
        self.add_user(
            &Principal::system(),
            ADMIN_USER,
            password_hash,
            &groups,
            true,
            now,
        )
        .map(Output::User)
    }

    fn add_user(
        &mut self,
        who: &Principal,
        name: &str,
        password_hash: &str,
        groups: &[String],
        admin: bool,
        now: u64,
    ) -> Result<UserResponse, StateError> {
        require_admin(who, "add users")?;
        cairn_proto::api::validate_user_name("user", name)?;
        if groups.len() > cairn_proto::api::MAX_USER_GROUPS {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "a user may be in at most {} groups",
                    cairn_proto::api::MAX_USER_GROUPS
                ),
            )
            .into());
        }
        for group in groups {
            cairn_proto::api::validate_user_name("group", group)?;
        }
        if auth::get_user(&self.auth, name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("user {name} already exists; set a new password with `cairn user passwd {name}`"),
            )
            .into());
        }
        let users = self.user_count()?;
        if users >= auth::MAX_USERS as u64 {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the cluster has {} users, the most it keeps",
                    auth::MAX_USERS
                ),
            )
            .into());
        }
        // The user's own group first, then the others, once each.
        let mut all_groups = vec![name.to_string()];
        for group in groups {
            if !all_groups.contains(group) {
                all_groups.push(group.clone());
            }
        }
        let user = User {
            password_hash: password_hash.to_string(),
            groups: all_groups,
            admin,
            created_ms: now,
            version: 1,
        };
        // Only writes from here on.
        self.auth
            .insert(auth::user_key(name).as_slice(), encode(&user).as_slice())?;
        self.put_u64(KEY_USER_COUNT, users + 1)?;
        self.ensure_home(&user.principal(name), now)?;
        Ok(UserResponse {
            name: name.to_string(),
            sessions_ended: 0,
        })
    }

    /// Makes `/home` (admin's, 0755) and `/home/NAME` (the user's, 0700)
    /// unless they exist; an existing home (of a removed user of the same
    /// name) is kept as it is.
    fn ensure_home(&mut self, user: &Principal, now: u64) -> Result<(), StateError> {
        let home = match lookup(&self.dirents, ROOT_ID, HOME_DIR)? {
            Some(id) => id,
            None => {
                let id = self.alloc_id()?;
                let dir = Inode::new_dir(now, &Principal::system(), DIR_MODE, ROOT_ID);
                self.put_inode(id, &dir)?;
                self.link(ROOT_ID, HOME_DIR, id, now)?;
                self.add_u64(KEY_DIR_COUNT, 1)?;
                id
            }
        };
        if !get_inode(&self.inodes, home)?.is_dir()
            || lookup(&self.dirents, home, &user.name)?.is_some()
        {
            return Ok(());
        }
        let id = self.alloc_id()?;
        self.put_inode(id, &Inode::new_dir(now, user, HOME_MODE, home))?;
        self.link(home, &user.name, id, now)?;
        self.add_u64(KEY_DIR_COUNT, 1)?;
        Ok(())
    }

    fn set_password(
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
        self.auth
            .insert(auth::user_key(name).as_slice(), encode(&user).as_slice())?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        Ok(UserResponse {
            name: name.to_string(),
            sessions_ended,
        })
    }

    fn remove_user(&mut self, who: &Principal, name: &str) -> Result<UserResponse, StateError> {
        require_admin(who, "remove users")?;
        let user = self.existing_user(name)?;
        if user.admin {
            let admins = auth::list_users(&self.auth)?
                .iter()
                .filter(|(_, u)| u.admin)
                .count();
            if admins <= 1 {
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!("{name} is the only admin; add another admin before removing it"),
                )
                .into());
            }
        }
        // Only writes from here on. Their files keep naming them as owner
        // (as a removed uid on a POSIX disk); an admin may chown them.
        self.auth.remove(auth::user_key(name).as_slice())?;
        let users = self.user_count()?;
        assert!(users > 0, "a user was removed while the count says none");
        self.put_u64(KEY_USER_COUNT, users - 1)?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        Ok(UserResponse {
            name: name.to_string(),
            sessions_ended,
        })
    }

    fn create_session(
        &mut self,
        token_hash: &TokenHash,
        name: &str,
        expires_ms: u64,
        user_version: u64,
        now: u64,
    ) -> Result<UserResponse, StateError> {
        let user = self.existing_user(name)?;
        if user.version != user_version {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                format!("the password of {name} changed while logging in; log in again"),
            )
            .into());
        }
        let mut sessions = auth::user_sessions(&self.auth, name)?;
        let mut sessions_ended = 0;
        if sessions.len() >= auth::MAX_SESSIONS_PER_USER {
            // End the one that expires first.
            let mut oldest: Option<(u64, TokenHash)> = None;
            for hash in sessions.drain(..) {
                if let Some(session) = auth::get_session(&self.auth, &hash)? {
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
            created_ms: now,
            expires_ms,
        };
        self.auth.insert(
            auth::session_key(token_hash).as_slice(),
            encode(&session).as_slice(),
        )?;
        self.auth.insert(
            auth::expiry_key(expires_ms, token_hash).as_slice(),
            [].as_slice(),
        )?;
        self.auth.insert(
            auth::user_session_key(name, token_hash).as_slice(),
            [].as_slice(),
        )?;
        Ok(UserResponse {
            name: name.to_string(),
            sessions_ended,
        })
    }

    fn end_user_sessions(
        &mut self,
        who: &Principal,
        name: &str,
    ) -> Result<UserResponse, StateError> {
        if who.name != name {
            require_admin(who, "end another user's sessions")?;
        }
        self.existing_user(name)?;
        let sessions_ended = self.end_all_sessions_of(name)?;
        Ok(UserResponse {
            name: name.to_string(),
            sessions_ended,
        })
    }

    fn user_count(&self) -> Result<u64, StateError> {
        match self.meta.get(KEY_USER_COUNT)? {
            Some(_) => get_u64(&self.meta, KEY_USER_COUNT),
            None => Ok(0),
        }
    }

    fn existing_user(&self, name: &str) -> Result<User, StateError> {
        auth::get_user(&self.auth, name)?.ok_or_else(|| {
            ApiError::not_found(format!("user {name} (see `cairn user list`)")).into()
        })
    }

    fn end_all_sessions_of(&mut self, name: &str) -> Result<u64, StateError> {
        let hashes = auth::user_sessions(&self.auth, name)?;
        for hash in &hashes {
            self.end_session(hash)?;
        }
        Ok(hashes.len() as u64)
    }

    /// Removes a session and its index rows (nothing if it is gone).
    fn end_session(&mut self, hash: &TokenHash) -> Result<(), StateError> {
        let Some(session) = auth::get_session(&self.auth, hash)? else {
            return Ok(());
        };
        self.auth.remove(auth::session_key(hash).as_slice())?;
        self.auth
            .remove(auth::expiry_key(session.expires_ms, hash).as_slice())?;
        self.auth
            .remove(auth::user_session_key(&session.user, hash).as_slice())?;
        Ok(())
    }

    // ---- cluster map commands ----

    fn register_node(&mut self, req: &RegisterRequest, now: u64) -> Result<ClusterMap, StateError> {
        if req.addr.is_empty()
            || req.addr.len() > 256
            || req.zone.len() > 64
            || req.id.0.is_empty()
            || req.id.0.len() > 64
        {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "node registration needs an id (at most 64 bytes), an address (at most 256) and a zone (at most 64)",
            )
            .into());
        }
        if removed_nodes(&self.meta)?.contains(&req.id) {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "storage node {} was removed from the cluster and may not join again; \
                     to reuse this machine, empty its data directory so it gets a new id",
                    req.id
                ),
            )
            .into());
        }
        let mut map = read_map(&self.meta)?;
        let wanted = NodeInfo {
            id: req.id.clone(),
            addr: req.addr.clone(),
            zone: req.zone.clone(),
            capacity_bytes: req.capacity_bytes.max(1),
            state: NodeState::Up,
            state_changed_ms: now,
        };
        match map.nodes.binary_search_by(|n| n.id.cmp(&req.id)) {
            Ok(i) => {
                // A known node keeps its state: a down node must earn `up`
                // through the liveness watcher's damping, and a drain or a
                // full disk outlives a restart.
                let current = &map.nodes[i];
                let same = current.addr == wanted.addr
                    && current.zone == wanted.zone
                    && current.capacity_bytes == wanted.capacity_bytes;
                if same {
                    return Ok(map);
                }
                map.nodes[i] = NodeInfo {
                    state: current.state,
                    state_changed_ms: current.state_changed_ms,
                    ..wanted
                };
            }
            Err(i) => map.nodes.insert(i, wanted),
        }
        map.epoch += 1;
        self.meta.insert(KEY_MAP, encode(&map).as_slice())?;
        Ok(map)
    }

    fn set_node_state(
        &mut self,
        id: &NodeId,
        state: NodeState,
        expect: Option<NodeState>,
        now: u64,
    ) -> Result<ClusterMap, StateError> {
        let mut map = read_map(&self.meta)?;
        let index = map
            .nodes
            .binary_search_by(|n| n.id.cmp(id))
            .map_err(|_| ApiError::not_found(format!("storage node {id}")))?;
        let current = map.nodes[index].state;
        if expect.is_some_and(|expected| expected != current) {
            return Ok(map);
        }
        if current != state {
            map.nodes[index].state = state;
            map.nodes[index].state_changed_ms = now;
            map.epoch += 1;
            self.meta.insert(KEY_MAP, encode(&map).as_slice())?;
        }
        Ok(map)
    }

    fn remove_node(&mut self, id: &NodeId) -> Result<ClusterMap, StateError> {
        let mut map = read_map(&self.meta)?;
        let index = map
            .nodes
            .binary_search_by(|n| n.id.cmp(id))
            .map_err(|_| ApiError::not_found(format!("storage node {id}")))?;
        let state = map.nodes[index].state;
        if !matches!(state, NodeState::Draining | NodeState::Down) {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "storage node {id} is {}; drain it first with `cairn node drain {id}`",
                    state.as_str()
                ),
            )
            .into());
        }
        // Only writes from here on.
        map.nodes.remove(index);
        map.epoch += 1;
        self.meta.insert(KEY_MAP, encode(&map).as_slice())?;
        let mut removed = removed_nodes(&self.meta)?;
        removed.push(id.clone());
        if removed.len() > MAX_REMOVED_NODES {
            removed.remove(0);
        }
        self.meta
            .insert(KEY_REMOVED_NODES, encode(&removed).as_slice())?;
        Ok(map)
    }

    fn set_params(
        &mut self,
        replication: u32,
        chunk_size_bytes: u64,
    ) -> Result<ClusterMap, StateError> {
        if replication == 0 || replication > MAX_REPLICATION {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("replication must be between 1 and {MAX_REPLICATION}; got {replication}"),
            )
            .into());
        }
        if !(4096..=MAX_CHUNK_SIZE_BYTES).contains(&chunk_size_bytes) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "chunk size must be between 4 KiB and {} MiB; got {chunk_size_bytes} bytes",
                    MAX_CHUNK_SIZE_BYTES >> 20
                ),
            )
            .into());
        }
        let mut map = read_map(&self.meta)?;
        if map.replication != replication || map.chunk_size_bytes != chunk_size_bytes {
            map.replication = replication;
            map.chunk_size_bytes = chunk_size_bytes;
            map.epoch += 1;
            self.meta.insert(KEY_MAP, encode(&map).as_slice())?;
        }
        Ok(map)
    }

    // ---- helpers ----

    /// Resolves the directory that holds `path`'s last name, checking
    /// search on every directory on the way.
    fn resolve_parent(&self, who: &Principal, path: &str) -> Result<ParentDir, StateError> {
        let names = split_path(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "the root directory / cannot be the target",
            )
            .into());
        };
        let (id, inode) = walk_dirs(&self.inodes, &self.dirents, who, parents, &join(&names))?;
        Ok(ParentDir {
            path: join(parents),
            id,
            inode,
            name: name.to_string(),
        })
    }

    fn resolve_source(&self, who: &Principal, path: &str) -> Result<Source, StateError> {
        let parent = self.resolve_parent(who, path)?;
        let path = child_path(&parent.path, &parent.name);
        let id = lookup(&self.dirents, parent.id, &parent.name)?.ok_or_else(|| not_found(&path))?;
        let inode = get_inode(&self.inodes, id)?;
        Ok(Source {
            path,
            parent,
            id,
            inode,
        })
    }

    /// Where `src` goes when moved or copied to `dst`: into `dst` if it is a
    /// directory, else at `dst`, replacing a file there only with `replace`.
    fn resolve_destination(
        &self,
        who: &Principal,
        dst: &str,
        src: &Source,
        replace: bool,
    ) -> Result<Destination, StateError> {
        let names = split_path(dst)?;
        let mut dst_path = join(&names);
        let mut parent = match names.split_last() {
            None => ParentDir {
                path: "/".to_string(),
                id: ROOT_ID,
                inode: get_inode(&self.inodes, ROOT_ID)?,
                name: src.parent.name.clone(),
            },
            Some((last, parents)) => {
                let (id, inode) = walk_dirs(&self.inodes, &self.dirents, who, parents, &dst_path)?;
                ParentDir {
                    path: join(parents),
                    id,
                    inode,
                    name: last.to_string(),
                }
            }
        };
        let mut existing = if names.is_empty() {
            Some(ROOT_ID)
        } else {
            lookup(&self.dirents, parent.id, &parent.name)?
        };
        if let Some(id) = existing {
            let inode = get_inode(&self.inodes, id)?;
            if inode.is_dir() && id != src.id {
                // "into it"
                inode.require(
                    who,
                    SEARCH,
                    &format!("move or copy into {dst_path}"),
                    &dst_path,
                )?;
                parent = ParentDir {
                    path: dst_path.clone(),
                    id,
                    inode,
                    name: src.parent.name.clone(),
                };
                dst_path = child_path(&dst_path, &parent.name);
                existing = lookup(&self.dirents, parent.id, &parent.name)?;
            }
        }
        let mut replaced = None;
        if let Some(id) = existing.filter(|id| *id != src.id) {
            let inode = get_inode(&self.inodes, id)?;
            if inode.is_dir() {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{dst_path} already exists and is a directory; remove it first or choose another name"),
                )
                .into());
            }
            if src.inode.is_dir() {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!(
                        "{dst_path} already exists and is a file; a directory cannot replace it"
                    ),
                )
                .into());
            }
            if !replace {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{dst_path} already exists; use --force to replace it"),
                )
                .into());
            }
            replaced = Some(id);
        }
        let name = parent.name.clone();
        Ok(Destination {
            path: dst_path,
            parent,
            name,
            replaced,
        })
    }

    fn unique_name(&self, parent: FileId, name: &str) -> Result<String, StateError> {
        let (stem, ext) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
            _ => (name, ""),
        };
        for n in 1..=MAX_RENAME_ATTEMPTS {
            let candidate = format!("{stem}-{n}{ext}");
            if cairn_proto::path::validate_name(&candidate).is_err() {
                break;
            }
            if lookup(&self.dirents, parent, &candidate)?.is_none() {
                return Ok(candidate);
            }
        }
        Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("found no free name like {name:?} in its directory; choose a name yourself"),
        )
        .into())
    }

    fn link(
        &mut self,
        parent: FileId,
        name: &str,
        child: FileId,
        now: u64,
    ) -> Result<(), StateError> {
        self.dirents.insert((parent, name), child)?;
        self.adjust_dir(parent, 1, now)
    }

    fn unlink(&mut self, parent: FileId, name: &str, now: u64) -> Result<(), StateError> {
        let removed = self.dirents.remove((parent, name))?;
        assert!(
            removed.is_some(),
            "unlink of a missing entry {name:?} in {parent}"
        );
        drop(removed);
        self.adjust_dir(parent, -1, now)
    }

    fn touch(&mut self, dir: FileId, now: u64) -> Result<(), StateError> {
        self.adjust_dir(dir, 0, now)
    }

    /// Changes a directory's entry count by `delta` and bumps its version.
    fn adjust_dir(&mut self, dir: FileId, delta: i64, now: u64) -> Result<(), StateError> {
        let mut inode = get_inode(&self.inodes, dir)?;
        assert!(inode.is_dir(), "entry count change on a file ({dir})");
        inode.size_bytes = inode
            .size_bytes
            .checked_add_signed(delta)
            .expect("directory entry count stays non-negative");
        inode.version += 1;
        inode.modified_ms = now;
        self.put_inode(dir, &inode)
    }

    fn put_inode(&mut self, id: FileId, inode: &Inode) -> Result<(), StateError> {
        self.inodes.insert(id, encode_inode(inode).as_slice())?;
        Ok(())
    }

    /// Adds `delta` (+1 or -1) to the reference count of each chunk in
    /// `chunks`; a count that reaches zero is deleted.
    fn add_refs(&mut self, chunks: &[ChunkRef], delta: i64) -> Result<(), StateError> {
        for chunk in chunks {
            let current = self.chunk_refs.get(chunk.id.0)?.map_or(0, |v| v.value());
            let next = current
                .checked_add_signed(delta)
                .expect("chunk reference count stays non-negative");
            if next == 0 {
                self.chunk_refs.remove(chunk.id.0)?;
            } else {
                self.chunk_refs.insert(chunk.id.0, next)?;
            }
        }
        Ok(())
    }

    fn alloc_id(&mut self) -> Result<FileId, StateError> {
        let id = get_u64(&self.meta, KEY_NEXT_ID)?;
        self.put_u64(KEY_NEXT_ID, id + 1)?;
        Ok(id)
    }

    fn put_u64(&mut self, key: &str, value: u64) -> Result<(), StateError> {
        self.meta.insert(key, value.to_le_bytes().as_slice())?;
        Ok(())
    }

    fn add_u64(&mut self, key: &str, delta: i64) -> Result<(), StateError> {
        let value = get_u64(&self.meta, key)?;
        self.put_u64(
            key,
            value
                .checked_add_signed(delta)
                .expect("counter stays non-negative"),
        )
    }
}

/// The directory an operation creates, removes or renames an entry in.
struct ParentDir {
    /// The directory's path.
    path: String,
    id: FileId,
    inode: Inode,
    /// The entry's name in it.
    name: String,
}

impl ParentDir {
    /// Adding or removing an entry needs write and search on the directory.
    fn require_write(&self, who: &Principal, doing: &str) -> Result<(), ApiError> {
        self.inode.require(who, WRITE | SEARCH, doing, &self.path)
    }
}

struct Source {
    path: String,
    /// Its directory; `parent.name` is its name.
    parent: ParentDir,
    id: FileId,
    inode: Inode,
}

struct Destination {
    path: String,
    /// The directory it goes into.
    parent: ParentDir,
    name: String,
    /// A file at the destination that the move or copy replaces.
    replaced: Option<FileId>,
}

fn require_admin(who: &Principal, doing: &str) -> Result<(), ApiError> {
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

/// A refusal is the request's outcome; a storage fault stays an error.
fn outcome(result: Result<Output, StateError>) -> Result<Response, StateError> {
    match result {
        Ok(output) => Ok(Ok(output)),
        Err(StateError::Api(refusal)) => Ok(Err(refusal)),
        Err(fatal) => Err(fatal),
    }
}

fn new_file(
    now: u64,
    who: &Principal,
    mode: u32,
    parent: FileId,
    size_bytes: u64,
    digest: Option<ChunkId>,
    chunks: Vec<ChunkRef>,
) -> Inode {
    Inode {
        kind: EntryKind::File,
        mode,
        version: 1,
        created_ms: now,
        modified_ms: now,
        size_bytes,
        digest,
        chunks,
        owner: who.name.clone(),
        group: who.primary_group().to_string(),
        parent,
    }
}

fn validate_chunk_list(req: &CommitRequest) -> Result<(), ApiError> {
    if req.chunks.len() > MAX_CHUNKS_PER_FILE {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} has {} chunks; the limit is {MAX_CHUNKS_PER_FILE}",
                req.path,
                req.chunks.len()
            ),
        ));
    }
    let total: u64 = req.chunks.iter().map(|c| u64::from(c.length_bytes)).sum();
    let bad_length = req
        .chunks
        .iter()
        .any(|c| c.length_bytes == 0 || u64::from(c.length_bytes) > MAX_CHUNK_SIZE_BYTES);
    if total != req.size_bytes || bad_length {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "commit of {}: chunk lengths add up to {total} bytes but the size is {}, or a chunk is empty or over {} MiB",
                req.path,
                req.size_bytes,
                MAX_CHUNK_SIZE_BYTES >> 20
            ),
        ));
    }
    if file_digest(&req.chunks) != req.digest {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "commit of {}: the digest does not match the chunk list",
                req.path
            ),
        ));
    }
    Ok(())
}

fn child_path(parent_path: &str, name: &str) -> String {
    if parent_path == "/" {
        format!("/{name}")
    } else {
        format!("{parent_path}/{name}")
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{path} does not exist"))
}

fn not_a_directory(path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotADirectory,
        format!("{path} is a file, not a directory"),
    )
}

fn already_exists_file(path: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AlreadyExists,
        format!("{path} already exists; use --force to replace it or --rename to store under a new name"),
    )
}

// ---- reads, usable from a read or a write transaction ----

pub fn get_inode(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    id: FileId,
) -> Result<Inode, StateError> {
    match inodes.get(id)? {
        Some(bytes) => decode_inode(bytes.value()),
        None => Err(StateError::Corrupt(format!(
            "entry points at missing inode {id}"
        ))),
    }
}

pub fn lookup(
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    dir: FileId,
    name: &str,
) -> Result<Option<FileId>, StateError> {
    Ok(dirents.get((dir, name))?.map(|v| v.value()))
}

/// The children of `dir`, in name order.
pub fn list_children(
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    dir: FileId,
) -> Result<Vec<(String, FileId)>, StateError> {
    let mut out = Vec::new();
    for row in dirents.range((dir, "")..)? {
        let (key, value) = row?;
        let (parent, name) = key.value();
        if parent != dir {
            break;
        }
        out.push((name.to_string(), value.value()));
    }
    Ok(out)
}

/// Walks `dirs` from the root: each must exist and be a directory, and
/// `who` needs search on the root and on each. Returns the last one.
/// `full_path` names the operation's target in errors.
fn walk_dirs(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    who: &Principal,
    dirs: &[&str],
    full_path: &str,
) -> Result<(FileId, Inode), StateError> {
    let doing = format!("reach {full_path}");
    let mut dir = ROOT_ID;
    let mut inode = get_inode(inodes, ROOT_ID)?;
    inode.require(who, SEARCH, &doing, "/")?;
    for (depth, name) in dirs.iter().enumerate() {
        let prefix = join(&dirs[..=depth]);
        let child = lookup(dirents, dir, name)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "parent directory {prefix} of {full_path} does not exist; create it with `cairn mkdir -p {}`",
                    join(dirs)
                ),
            )
        })?;
        let child_inode = get_inode(inodes, child)?;
        if !child_inode.is_dir() {
            return Err(ApiError::new(
                ErrorCode::NotADirectory,
                format!("{prefix} is a file, so {full_path} cannot be inside it"),
            )
            .into());
        }
        child_inode.require(who, SEARCH, &doing, &prefix)?;
        dir = child;
        inode = child_inode;
    }
    Ok((dir, inode))
}

/// Resolves a path to its id and record, checking search on the way.
pub fn resolve(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    who: &Principal,
    path: &str,
) -> Result<(FileId, Inode), StateError> {
    let names = split_path(path)?;
    let Some((name, parents)) = names.split_last() else {
        return Ok((ROOT_ID, get_inode(inodes, ROOT_ID)?));
    };
    let full = join(&names);
    let (parent, _) = walk_dirs(inodes, dirents, who, parents, &full)?;
    let id = lookup(dirents, parent, name)?.ok_or_else(|| not_found(&full))?;
    Ok((id, get_inode(inodes, id)?))
}

/// The record of file `id`, if `who` could reach it by its path: search on
/// every directory above it (found through the records' parents).
pub fn resolve_id(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    who: &Principal,
    id: FileId,
) -> Result<Inode, StateError> {
    let inode = match inodes.get(id)? {
        Some(bytes) => decode_inode(bytes.value())?,
        None => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no file or directory has id {id}"),
            )
            .into())
        }
    };
    if who.admin || id == ROOT_ID {
        return Ok(inode);
    }
    let mut dir = inode.parent;
    for _ in 0..=cairn_proto::path::MAX_PATH_DEPTH {
        if dir == UNKNOWN_PARENT {
            break;
        }
        let dir_inode = get_inode(inodes, dir)?;
        dir_inode.require(
            who,
            SEARCH,
            &format!("reach file id {id}"),
            &format!("id {dir}"),
        )?;
        if dir == ROOT_ID {
            return Ok(inode);
        }
        dir = dir_inode.parent;
    }
    // A record from before parents were kept (until the next restart
    // indexes them): only an admin may look it up by id.
    Err(
        require_admin(who, &format!("look up id {id}; use its path"))
            .unwrap_err()
            .into(),
    )
}

/// `Ok` if `who` may store a file at `path`: create it in its directory
/// (write there), or replace the file that is there (write on it).
pub fn check_writable(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    who: &Principal,
    path: &str,
) -> Result<(), StateError> {
    let names = split_path(path)?;
    let Some((name, parents)) = names.split_last() else {
        return Err(ApiError::new(ErrorCode::IsADirectory, "/ is a directory").into());
    };
    let full = join(&names);
    let (parent, parent_inode) = walk_dirs(inodes, dirents, who, parents, &full)?;
    let doing = format!("write {full}");
    let in_dir = parent_inode.require(who, WRITE | SEARCH, &doing, &join(parents));
    match lookup(dirents, parent, name)? {
        Some(id) => {
            let inode = get_inode(inodes, id)?;
            if inode.is_dir() {
                return Err(ApiError::new(
                    ErrorCode::IsADirectory,
                    format!("{full} is a directory; give a file name inside it, as in {full}/NAME"),
                )
                .into());
            }
            if in_dir.is_ok() {
                return Ok(());
            }
            Ok(inode.require(who, WRITE, &doing, &full)?)
        }
        None => Ok(in_dir?),
    }
}

pub fn list(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    who: &Principal,
    path: &str,
) -> Result<ListResponse, StateError> {
    let (id, inode) = resolve(inodes, dirents, who, path)?;
    let path = cairn_proto::path::normalize(path)?;
    if !inode.is_dir() {
        // `ls FILE` lists the file itself, as ls(1) does.
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        return Ok(ListResponse {
            entries: vec![dir_entry(name, id, &inode)],
            path,
        });
    }
    inode.require(who, READ, &format!("list {path}"), &path)?;
    let mut entries = Vec::new();
    for (name, child) in list_children(dirents, id)? {
        let inode = get_inode(inodes, child)?;
        entries.push(dir_entry(name, child, &inode));
    }
    Ok(ListResponse { path, entries })
}

fn dir_entry(name: String, id: FileId, inode: &Inode) -> DirEntry {
    DirEntry {
        name,
        id,
        kind: inode.kind,
        size_bytes: inode.size_bytes,
        mode: inode.mode,
        owner: inode.owner.clone(),
        group: inode.group.clone(),
        version: inode.version,
        modified_ms: inode.modified_ms,
    }
}

pub fn read_map(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<ClusterMap, StateError> {
    match meta.get(KEY_MAP)? {
        Some(bytes) => decode(bytes.value()),
        None => Err(StateError::Corrupt("the cluster map is missing".into())),
    }
}

pub fn get_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, StateError> {
    let guard = meta
        .get(key)?
        .ok_or_else(|| StateError::Corrupt(format!("counter {key} is missing")))?;
    let bytes: [u8; 8] = guard
        .value()
        .try_into()
        .map_err(|_| StateError::Corrupt(format!("counter {key} is not 8 bytes")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Ids of nodes removed from the map, oldest first.
pub fn removed_nodes(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<NodeId>, StateError> {
    match meta.get(KEY_REMOVED_NODES)? {
        Some(bytes) => decode(bytes.value()),
        None => Ok(Vec::new()),
    }
}

/// Whether some file references each of `ids`.
pub fn referenced(
    chunk_refs: &impl ReadableTable<[u8; 32], u64>,
    ids: &[ChunkId],
) -> Result<Vec<bool>, StateError> {
    ids.iter()
        .map(|id| Ok(chunk_refs.get(id.0)?.is_some()))
        .collect()
}

/// The reference count of `id` (0 if no file references it).
pub fn reference_count(
    chunk_refs: &impl ReadableTable<[u8; 32], u64>,
    id: &ChunkId,
) -> Result<u64, StateError> {
    Ok(chunk_refs.get(id.0)?.map_or(0, |v| v.value()))
}

/// (files, directories) in the namespace.
pub fn counts(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(u64, u64), StateError> {
    Ok((
        get_u64(meta, KEY_FILE_COUNT)?,
        get_u64(meta, KEY_DIR_COUNT)?,
    ))
}
