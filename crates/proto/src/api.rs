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
    #[serde(flatten)]
    pub report: NodeReport,
}

/// What a chunk server reports with each heartbeat: space, and the progress
/// of its background loops. Counters ending in `_total` count since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeReport {
    pub used_bytes: u64,
    pub chunk_count: u64,
    /// Bytes it can still take, within its `--capacity` and disk reserve.
    pub available_bytes: u64,
    /// It refuses new chunks for lack of space (the map then says `full`).
    pub full: bool,
    pub repair: RepairReport,
    pub scrub: ScrubReport,
    /// Unreferenced chunks deleted by the collect loop.
    pub collected_chunks_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepairReport {
    /// Map epoch of the last finished pass; 0 before the first.
    pub epoch: u64,
    pub passes_total: u64,
    /// Progress of the pass under way (both 0 between passes).
    pub pass_done_chunks: u64,
    pub pass_total_chunks: u64,
    /// After the last finished pass: chunks this node answers for (it is
    /// their first holder) that have fewer copies on their targets than the
    /// replication factor asks.
    pub under_replicated_chunks: u64,
    pub pushed_chunks_total: u64,
    pub pushed_bytes_total: u64,
    /// Local copies deleted because every target holds the chunk.
    pub handed_off_chunks_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubReport {
    pub passes_total: u64,
    pub pass_done_chunks: u64,
    pub pass_total_chunks: u64,
    pub checked_chunks_total: u64,
    /// Corrupt copies found (by the scrubber or a reader's report) and
    /// moved to quarantine.
    pub corrupt_chunks_total: u64,
    /// Quarantined chunks fetched again from a good replica.
    pub replaced_chunks_total: u64,
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
    /// The node's last heartbeat report, if one reached this server.
    #[serde(default)]
    pub report: Option<NodeReport>,
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
    /// Index of the last log entry applied on the answering member.
    pub commit_index: Option<u64>,
    /// The metadata group: every voter and learner, as the answering
    /// member (the leader, unless the call was a stale read) sees it.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Sum of the nodes' reported under-replicated chunks.
    #[serde(default)]
    pub under_replicated_chunks: u64,
    /// Bytes the repair loops have pushed between nodes (since each started).
    #[serde(default)]
    pub moved_bytes_total: u64,
    /// Every node that serves data has finished a repair pass at the
    /// current map epoch: the numbers above describe this map.
    #[serde(default)]
    pub repair_settled: bool,
}

/// One member of the metadata group, as `cairn status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Raft id (`--id`).
    pub id: u64,
    pub addr: String,
    /// Votes in elections and counts toward the majority (else a learner).
    pub voter: bool,
    pub leader: bool,
    /// Last log index the leader knows this member holds; `None` when the
    /// answering member is not the leader, or has not heard from it yet.
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's log.
    pub lag: Option<u64>,
}

/// Body of `meta/members/add`: a new metadata member (started with an
/// empty data directory) joins, first as a learner catching up, then as a
/// voter unless `learner` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMemberRequest {
    pub id: u64,
    pub addr: String,
    #[serde(default)]
    pub learner: bool,
}

/// Body of `meta/members/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMemberRequest {
    pub id: u64,
}

/// What the metadata group looks like after a membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    pub members: Vec<MemberStatus>,
}

/// Answer of `meta/snapshot`: the log index the new snapshot covers, and
/// the index up to which the log was purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
}

/// Header carrying a client's id for one logical metadata operation (32
/// hex digits). A retry of the operation carries the same id; the state
/// machine applies an id once and answers its retries with the first
/// outcome, so a commit retried across a leader change is applied once.
pub const REQUEST_ID_HEADER: &str = "x-cairn-request-id";

/// Header proving that a process holds the cluster secret: chunk servers
/// registering and heartbeating, and metadata members talking Raft, send
/// [`cluster_token`] of the secret. Without TLS it travels in clear text
/// (anyone who can watch the network can copy it).
pub const CLUSTER_TOKEN_HEADER: &str = "x-cairn-cluster-token";

/// The token derived from the cluster secret (the contents of the file
/// given with `--cluster-secret-file`): a keyed BLAKE3 hash, so the token
/// does not reveal the secret and other uses of the secret stay apart.
pub fn cluster_token(secret: &[u8]) -> String {
    let key = blake3::hash(secret);
    blake3::keyed_hash(key.as_bytes(), b"cairn cluster join v1")
        .to_hex()
        .to_string()
}

/// Compares a presented token with the expected one in constant time.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Header asking a metadata member to answer a read from its own applied
/// state, which may be behind the leader's (`--stale-ok`).
pub const STALE_OK_HEADER: &str = "x-cairn-stale-ok";

/// Body of the map call; also what a registration returns.
pub type MapResponse = ClusterMap;

/// Chunk server: "which of these ids do you hold?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasChunksRequest {
    pub ids: Vec<ChunkId>,
    /// Re-hash every held copy asked about (reads them all from disk); a
    /// corrupt one is quarantined and answered as absent and corrupt.
    #[serde(default)]
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasChunksResponse {
    /// `present[i]` answers for `ids[i]`.
    pub present: Vec<bool>,
    /// With `verify`: `corrupt[i]` says the copy of `ids[i]` was corrupt.
    /// Empty without `verify`.
    #[serde(default)]
    pub corrupt: Vec<bool>,
    /// The cluster map epoch the answering node works from (0: none yet).
    /// A node hands a chunk off only when its targets share its epoch.
    #[serde(default)]
    pub epoch: u64,
}

/// A chunk server's answer to a reader's report of a corrupt copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectResponse {
    /// It held a copy when the report came.
    pub held: bool,
    /// Its own check found the copy corrupt (now quarantined, being replaced).
    pub corrupt: bool,
}

/// Metadata service: "which of these chunk ids does some file reference?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferencedRequest {
    pub ids: Vec<ChunkId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferencedResponse {
    /// `referenced[i]` answers for `ids[i]`.
    pub referenced: Vec<bool>,
}

/// Body of `nodes/drain` and `nodes/undrain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub id: NodeId,
}

/// Body of `nodes/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveNodeRequest {
    pub id: NodeId,
    /// Remove a node that is down without waiting for a drain (its copies
    /// are lost; repair has already re-created them from the others).
    #[serde(default)]
    pub force: bool,
}

/// Header of a chunk PUT made by repair: when the chunk first reached the
/// sending node (ms since the Unix epoch). The receiver keeps that time, so
/// a chunk no file references ages toward collection wherever it is copied
/// and cannot bounce between nodes forever with a fresh time.
pub const RECEIVED_MS_HEADER: &str = "x-cairn-received-ms";

/// The most ids one presence call may ask about.
pub const MAX_HAS_CHUNKS_IDS: usize = 4096;

/// A chunk server's health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHealth {
    pub id: NodeId,
    pub chunk_count: u64,
    pub used_bytes: u64,
}
