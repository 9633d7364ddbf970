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
//!
//! Invariant (atomicity): a command either applies whole or changes nothing.
//! Every command checks everything that can be refused (names, existence,
//! kinds) before its first write; after that only a storage error can stop
//! it, and a storage error aborts the whole transaction. Determinism: a
//! command's outcome depends only on the state and the command (its clock is
//! the proposer's `now_ms`, carried in the command).

use cairn_proto::api::{
    CommitRequest, CommitResponse, DirEntry, EntryKind, ListResponse, MkdirRequest, MoveRequest,
    MutationResponse, OnExists, RegisterRequest, RemoveRequest, Stat,
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

const KEY_NEXT_ID: &str = "next_id";
const KEY_MAP: &str = "cluster_map";
const KEY_FILE_COUNT: &str = "file_count";
const KEY_DIR_COUNT: &str = "dir_count";
/// Ids of nodes removed from the map: they may not register again.
const KEY_REMOVED_NODES: &str = "removed_nodes";
/// Present once `chunk_refs` holds every file's references.
const KEY_REFS_INDEXED: &str = "chunk_refs_indexed";
/// The most removed node ids remembered (oldest forgotten first).
const MAX_REMOVED_NODES: usize = 10_000;

/// Default permission bits of new files and directories (no users yet).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// When `--rename` finds `name` taken, it tries `stem-1.ext` .. up to this.
const MAX_RENAME_ATTEMPTS: u64 = 10_000;

/// A command as stored in the log: what to do, the proposer's clock, and
/// the client's id for the operation, if it sent one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u128>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Raft-internal entries (blank, membership) have no output.
    Nothing,
    Mutation(MutationResponse),
    Commit(CommitResponse),
    Map(ClusterMap),
}

/// What a log entry's application answers to the proposer.
pub type Response = Result<Output, ApiError>;

/// A file or directory record.
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
}

impl Inode {
    fn new_dir(now_ms: u64) -> Inode {
        Inode {
            kind: EntryKind::Dir,
            mode: DIR_MODE,
            version: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            size_bytes: 0,
            digest: None,
            chunks: Vec::new(),
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    pub fn to_stat(&self, id: FileId) -> Stat {
        Stat {
            id,
            kind: self.kind,
            size_bytes: self.size_bytes,
            mode: self.mode,
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            digest: self.digest,
            chunks: self.chunks.clone(),
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
        })
    }

    /// Creates the root directory and the default map in an empty state.
    /// Every member does the same, so the states stay identical.
    pub fn ensure_initialized(&mut self) -> Result<(), StateError> {
        if self.inodes.get(ROOT_ID)?.is_some() {
            return self.ensure_chunk_refs();
        }
        self.inodes
            .insert(ROOT_ID, encode(&Inode::new_dir(0)).as_slice())?;
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
            let inode: Inode = decode(value.value())?;
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

    /// Applies one log entry's request and returns its outcome: a refusal
    /// is an outcome, only a storage fault is an error. A request id seen
    /// before is not applied again: its first outcome is returned.
    pub fn apply_request(&mut self, request: &Request) -> Result<Response, StateError> {
        self.forget_requests(request.now_ms)?;
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

    /// Applies one command. On `Err(StateError::Api)` nothing was written.
    pub fn apply(&mut self, request: &Request) -> Result<Output, StateError> {
        let now = request.now_ms;
        match &request.command {
            Command::Mkdir(req) => self.mkdir(req, now).map(Output::Mutation),
            Command::Commit(req) => self.commit(req, now).map(Output::Commit),
            Command::Remove(req) => self.remove(req, now).map(Output::Mutation),
            Command::Rename(req) => self.rename(req, now).map(Output::Mutation),
            Command::Copy(req) => self.copy(req, now).map(Output::Mutation),
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
        }
    }

    // ---- namespace commands ----

    fn mkdir(&mut self, req: &MkdirRequest, now: u64) -> Result<MutationResponse, StateError> {
        let names = split_path(&req.path)?;
        let path = join(&names);
        let mut dir = ROOT_ID;
        let mut first_missing = names.len();
        for (depth, name) in names.iter().enumerate() {
            match lookup(&self.dirents, dir, name)? {
                Some(child) => {
                    if !get_inode(&self.inodes, child)?.is_dir() {
                        return Err(not_a_directory(&join(&names[..=depth])).into());
                    }
                    dir = child;
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
        // Only writes from here on: every name below is new.
        for name in &names[first_missing..] {
            let id = self.alloc_id()?;
            self.inodes
                .insert(id, encode(&Inode::new_dir(now)).as_slice())?;
            self.link(dir, name, id, now)?;
            self.add_u64(KEY_DIR_COUNT, 1)?;
            dir = id;
        }
        Ok(MutationResponse { id: dir, path })
    }

    fn commit(&mut self, req: &CommitRequest, now: u64) -> Result<CommitResponse, StateError> {
        validate_chunk_list(req)?;
        let (parent_path, parent, name) = self.resolve_parent(&req.path)?;
        let mut name = name;
        let existing = lookup(&self.dirents, parent, &name)?;
        let replace = match existing {
            None => None,
            Some(id) => {
                let inode = get_inode(&self.inodes, id)?;
                let path = child_path(&parent_path, &name);
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
                    OnExists::Replace => Some((id, inode)),
                    OnExists::Rename => {
                        name = self.unique_name(parent, &name)?;
                        None
                    }
                }
            }
        };
        let path = child_path(&parent_path, &name);
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
                self.inodes.insert(id, encode(&inode).as_slice())?;
                self.touch(parent, now)?;
                (id, inode.version)
            }
            None => {
                let id = self.alloc_id()?;
                let inode = new_file(now, req.size_bytes, Some(req.digest), req.chunks.clone());
                self.inodes.insert(id, encode(&inode).as_slice())?;
                self.link(parent, &name, id, now)?;
                self.add_u64(KEY_FILE_COUNT, 1)?;
                (id, 1)
            }
        };
        Ok(CommitResponse { id, path, version })
    }

    fn remove(&mut self, req: &RemoveRequest, now: u64) -> Result<MutationResponse, StateError> {
        let names = split_path(&req.path)?;
        let path = join(&names);
        if names.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "cannot remove the root directory /",
            )
            .into());
        }
        let (parent_path, parent, name) = self.resolve_parent(&path)?;
        let id = lookup(&self.dirents, parent, &name)?
            .ok_or_else(|| not_found(&child_path(&parent_path, &name)))?;
        let inode = get_inode(&self.inodes, id)?;
        if inode.is_dir() && inode.size_bytes > 0 && !req.recursive {
            return Err(ApiError::new(
                ErrorCode::DirectoryNotEmpty,
                format!("{path} is a directory with {} entries; use rm -r to remove it and everything in it", inode.size_bytes),
            )
            .into());
        }
        // Only writes from here on.
        self.unlink(parent, &name, now)?;
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

    fn rename(&mut self, req: &MoveRequest, now: u64) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(&req.src)?;
        let dst = self.resolve_destination(&req.dst, &src, req.replace)?;
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
        // Only writes from here on.
        if let Some(old) = dst.replaced {
            self.add_refs(&get_inode(&self.inodes, old)?.chunks, -1)?;
            self.inodes.remove(old)?;
            self.add_u64(KEY_FILE_COUNT, -1)?;
            self.unlink(dst.parent, &dst.name, now)?;
        }
        self.unlink(src.parent, &src.name, now)?;
        self.link(dst.parent, &dst.name, src.id, now)?;
        Ok(MutationResponse {
            id: src.id,
            path: dst.path,
        })
    }

    fn copy(&mut self, req: &MoveRequest, now: u64) -> Result<MutationResponse, StateError> {
        let src = self.resolve_source(&req.src)?;
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
        let dst = self.resolve_destination(&req.dst, &src, req.replace)?;
        if dst.path == src.path {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("cannot copy {} onto itself", src.path),
            )
            .into());
        }
        // Only writes from here on. The copy shares the chunk list: no data moves.
        self.add_refs(&src.inode.chunks, 1)?;
        let inode = new_file(
            now,
            src.inode.size_bytes,
            src.inode.digest,
            src.inode.chunks.clone(),
        );
        if let Some(old) = dst.replaced {
            self.add_refs(&get_inode(&self.inodes, old)?.chunks, -1)?;
            self.inodes.remove(old)?;
            self.add_u64(KEY_FILE_COUNT, -1)?;
            self.unlink(dst.parent, &dst.name, now)?;
        }
        let id = self.alloc_id()?;
        self.inodes.insert(id, encode(&inode).as_slice())?;
        self.link(dst.parent, &dst.name, id, now)?;
        self.add_u64(KEY_FILE_COUNT, 1)?;
        Ok(MutationResponse { id, path: dst.path })
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

    /// Resolves the parent directory of `path`: (parent path, parent id, last name).
    fn resolve_parent(&self, path: &str) -> Result<(String, FileId, String), StateError> {
        let names = split_path(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "the root directory / cannot be the target",
            )
            .into());
        };
        let parent_path = join(parents);
        let parent = resolve_dir_for_child(&self.inodes, &self.dirents, parents, &join(&names))?;
        Ok((parent_path, parent, name.to_string()))
    }

    fn resolve_source(&self, path: &str) -> Result<Source, StateError> {
        let (parent_path, parent, name) = self.resolve_parent(path)?;
        let path = child_path(&parent_path, &name);
        let id = lookup(&self.dirents, parent, &name)?.ok_or_else(|| not_found(&path))?;
        let inode = get_inode(&self.inodes, id)?;
        Ok(Source {
            path,
            parent,
            name,
            id,
            inode,
        })
    }

    /// Where `src` goes when moved or copied to `dst`: into `dst` if it is a
    /// directory, else at `dst`, replacing a file there only with `replace`.
    fn resolve_destination(
        &self,
        dst: &str,
        src: &Source,
        replace: bool,
    ) -> Result<Destination, StateError> {
        let names = split_path(dst)?;
        let mut dst_path = join(&names);
        let (mut parent, mut name) = match names.split_last() {
            None => (ROOT_ID, src.name.clone()),
            Some((last, parents)) => {
                let parent =
                    resolve_dir_for_child(&self.inodes, &self.dirents, parents, &dst_path)?;
                (parent, last.to_string())
            }
        };
        let mut existing = if names.is_empty() {
            Some(ROOT_ID)
        } else {
            lookup(&self.dirents, parent, &name)?
        };
        if let Some(id) = existing {
            if get_inode(&self.inodes, id)?.is_dir() && id != src.id {
                // "into it"
                parent = id;
                name = src.name.clone();
                dst_path = child_path(&dst_path, &name);
                existing = lookup(&self.dirents, parent, &name)?;
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
        self.inodes.insert(dir, encode(&inode).as_slice())?;
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

struct Source {
    path: String,
    parent: FileId,
    name: String,
    id: FileId,
    inode: Inode,
}

struct Destination {
    path: String,
    parent: FileId,
    name: String,
    /// A file at the destination that the move or copy replaces.
    replaced: Option<FileId>,
}

/// A refusal is the request's outcome; a storage fault stays an error.
fn outcome(result: Result<Output, StateError>) -> Result<Response, StateError> {
    match result {
        Ok(output) => Ok(Ok(output)),
        Err(StateError::Api(refusal)) => Ok(Err(refusal)),
        Err(fatal) => Err(fatal),
    }
}

fn new_file(now: u64, size_bytes: u64, digest: Option<ChunkId>, chunks: Vec<ChunkRef>) -> Inode {
    Inode {
        kind: EntryKind::File,
        mode: FILE_MODE,
        version: 1,
        created_ms: now,
        modified_ms: now,
        size_bytes,
        digest,
        chunks,
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
        Some(bytes) => decode(bytes.value()),
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

/// Walks `parents` from the root; each must exist and be a directory.
/// `full_path` names the operation's target in errors.
fn resolve_dir_for_child(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    parents: &[&str],
    full_path: &str,
) -> Result<FileId, StateError> {
    let mut dir = ROOT_ID;
    for (depth, name) in parents.iter().enumerate() {
        let prefix = join(&parents[..=depth]);
        let child = lookup(dirents, dir, name)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "parent directory {prefix} of {full_path} does not exist; create it with `cairn mkdir -p {}`",
                    join(parents)
                ),
            )
        })?;
        if !get_inode(inodes, child)?.is_dir() {
            return Err(ApiError::new(
                ErrorCode::NotADirectory,
                format!("{prefix} is a file, so {full_path} cannot be inside it"),
            )
            .into());
        }
        dir = child;
    }
    Ok(dir)
}

/// Resolves a path to its id and record.
pub fn resolve(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    path: &str,
) -> Result<(FileId, Inode), StateError> {
    let names = split_path(path)?;
    let Some((name, parents)) = names.split_last() else {
        return Ok((ROOT_ID, get_inode(inodes, ROOT_ID)?));
    };
    let full = join(&names);
    let parent = resolve_dir_for_child(inodes, dirents, parents, &full)?;
    let id = lookup(dirents, parent, name)?.ok_or_else(|| not_found(&full))?;
    Ok((id, get_inode(inodes, id)?))
}

pub fn stat_by_id(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    id: FileId,
) -> Result<Stat, StateError> {
    match inodes.get(id)? {
        Some(bytes) => Ok(decode::<Inode>(bytes.value())?.to_stat(id)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no file or directory has id {id}"),
        )
        .into()),
    }
}

pub fn list(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    path: &str,
) -> Result<ListResponse, StateError> {
    let (id, inode) = resolve(inodes, dirents, path)?;
    let path = cairn_proto::path::normalize(path)?;
    if !inode.is_dir() {
        // `ls FILE` lists the file itself, as ls(1) does.
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        return Ok(ListResponse {
            entries: vec![dir_entry(name, id, &inode)],
            path,
        });
    }
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
