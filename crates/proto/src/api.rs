//! Request and response bodies of the metadata HTTP/JSON API (`/v1/...`) and
//! of the chunk servers' control calls. See `docs/api.md` for the routes.

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, ChunkRef, FileId, NodeId};
use crate::map::{ClusterMap, NodeState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
}

/// What `stat` returns for a file or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub id: FileId,
    pub kind: EntryKind,
    /// File size; for a directory, its number of entries.
    pub size_bytes: u64,
    pub mode: u32,
    /// Bumped on every change of the record.
    pub version: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// Whole-file digest ([`crate::file_digest`]); `None` for directories.
    pub digest: Option<ChunkId>,
    /// The ordered chunk list; empty for directories.
    pub chunks: Vec<ChunkRef>,
}

/// One row of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub id: FileId,
    pub kind: EntryKind,
    pub size_bytes: u64,
    pub mode: u32,
    pub version: u64,
    pub modified_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub path: String,
    pub entries: Vec<DirEntry>,
}

/// What a commit does when the path already names a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnExists {
    /// Refuse with `already_exists`.
    #[default]
    Fail,
    /// Replace the file's contents (same file id, version + 1).
    Replace,
    /// Store under a new unique name in the same directory.
    Rename,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub path: String,
    pub size_bytes: u64,
    pub chunks: Vec<ChunkRef>,
    /// Must equal [`crate::file_digest`] of `chunks`: a guard against a
    /// client that mangled its chunk list.
    pub digest: ChunkId,
    #[serde(default)]
    pub on_exists: OnExists,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResponse {
    pub id: FileId,
    /// Where the file was stored: differs from the request with `rename`.
    pub path: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    pub path: String,
    #[serde(default)]
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

/// Body of `rename` and `copy`: `src` to `dst`. An existing directory at
/// `dst` means "into it"; an existing file is replaced only with `replace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub src: String,
    pub dst: String,
    #[serde(default)]
    pub replace: bool,
}

/// Answer of every namespace mutation: the id and final path of the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationResponse {
    pub id: FileId,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub id: NodeId,
    pub addr: String,
    pub zone: String,
    pub capacity_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub id: NodeId,
    pub used_bytes: u64,
    pub chunk_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The map epoch the metadata service holds; a node whose registration
    /// is unknown is told so with `registered: false` and registers again.
    pub epoch: u64,
    pub registered: bool,
}

/// One node as `cairn status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub addr: String,
    pub zone: String,
    pub state: NodeState,
    pub state_changed_ms: u64,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
    /// Milliseconds since its last heartbeat reached this metadata server;
    /// `None` if none has since this server started leading.
    pub last_heartbeat_ago_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub epoch: u64,
    pub replication: u32,
    pub chunk_size_bytes: u64,
    pub nodes: Vec<NodeStatus>,
    pub nodes_up: usize,
    /// At least `replication` nodes are up.
    pub healthy: bool,
    pub file_count: u64,
    pub dir_count: u64,
    /// Raft id of the leader as this server sees it.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: Option<u64>,
}

/// Body of the map call; also what a registration returns.
pub type MapResponse = ClusterMap;

/// Chunk server: "which of these ids do you hold?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasChunksRequest {
    pub ids: Vec<ChunkId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasChunksResponse {
    /// `present[i]` answers for `ids[i]`.
    pub present: Vec<bool>,
}

/// The most ids one presence call may ask about.
pub const MAX_HAS_CHUNKS_IDS: usize = 4096;

/// A chunk server's health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHealth {
    pub id: NodeId,
    pub chunk_count: u64,
    pub used_bytes: u64,
}
