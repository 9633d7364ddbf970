//! Request and response bodies of the metadata HTTP/JSON API (`/v1/...`) and
//! of the chunk servers' control calls. See `docs/api.md` for the routes.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChunkId, ChunkRef, FileId, NodeId};
pub use crate::limits::{
    ACCESS_KEY_ID_BYTES, ACCESS_KEY_SECRET_BYTES, DEFAULT_SESSION_SECS, MAX_ACCESS_KEYS_PER_USER,
    MAX_HAS_CHUNKS_IDS, MAX_PASSWORD_BYTES, MAX_SESSION_SECS, MAX_USER_GROUPS, MAX_USER_NAME_BYTES,
    MIN_PASSWORD_BYTES,
};
use crate::map::{ClusterMap, NodeState};
use crate::xattr::Xattr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link: its target is kept as text and never followed by
    /// the metadata service (the mount's kernel follows it).
    Symlink,
    /// Named pipes, sockets and device nodes: metadata only (the kernel of
    /// the machine that opens one does the rest).
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    /// Kinds made with `fs/mknod` (files and directories have their own
    /// calls).
    pub fn is_node(self) -> bool {
        !matches!(self, EntryKind::File | EntryKind::Dir)
    }

    /// "a symbolic link", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::File => "a file",
            EntryKind::Dir => "a directory",
            EntryKind::Symlink => "a symbolic link",
            EntryKind::Fifo => "a named pipe",
            EntryKind::Socket => "a socket",
            EntryKind::CharDevice => "a character device",
            EntryKind::BlockDevice => "a block device",
        }
    }
}

/// What `stat` returns for a file or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub id: FileId,
    pub kind: EntryKind,
    /// File size; for a directory, its number of entries.
    pub size_bytes: u64,
    /// POSIX mode bits: permissions (`0o644`) and set-uid, set-gid, sticky.
    pub mode: u32,
    /// The name of the user who owns it, and of its group (the number, as
    /// text, when no user or group has that id any more).
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub group: String,
    /// The owner's and the group's numeric ids (the first admin is 0).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// The directory that holds it (the root's is itself).
    #[serde(default)]
    pub parent: FileId,
    /// A symbolic link's target (its `size_bytes` is the target's length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A device node's device number (Linux's encoding, as `st_rdev`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// The link count (`st_nlink`): a directory's 2 + its subdirectories,
    /// 1 for the rest.
    #[serde(default = "one")]
    pub links: u64,
    /// Bumped on every change of the record (contents, attributes, entries).
    pub version: u64,
    /// Times in milliseconds since the Unix epoch (kept for scripts), and
    /// the same in nanoseconds with the change time (ctime: contents or
    /// attributes) beside the modification time (mtime: contents).
    pub created_ms: u64,
    pub modified_ms: u64,
    #[serde(default)]
    pub created_ns: u64,
    #[serde(default)]
    pub modified_ns: u64,
    #[serde(default)]
    pub changed_ns: u64,
    /// Last access (atime): set by `utimensat` through the mount, not
    /// moved by reads.
    #[serde(default)]
    pub accessed_ns: u64,
    /// Whole-file digest ([`crate::file_digest`]); `None` for directories.
    pub digest: Option<ChunkId>,
    /// The ordered chunk list; empty for directories, and for a file the
    /// caller may not read (as is `digest`).
    pub chunks: Vec<ChunkRef>,
    /// Capabilities to fetch the chunks, `capabilities[i]` for
    /// `chunks[i]`, issued on a stat with `read=true` (the caller may read
    /// the file) when the cluster has a secret. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// When those capabilities expire (ms since the Unix epoch; 0: none
    /// were issued). A reader asks again before then.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub capabilities_expire_ms: u64,
    /// The extended attributes the caller may read, when asked for with
    /// `xattrs=true` (saves a call for doors that show them with the
    /// contents, as S3 does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<Vec<Xattr>>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn one() -> u64 {
    1
}

/// One row of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub id: FileId,
    pub kind: EntryKind,
    pub size_bytes: u64,
    pub mode: u32,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    pub version: u64,
    pub modified_ms: u64,
    #[serde(default)]
    pub modified_ns: u64,
    #[serde(default)]
    pub changed_ns: u64,
    /// A device node's device number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// The link count, as in [`Stat`].
    #[serde(default = "one")]
    pub links: u64,
    /// A file's whole-file digest, when the caller may read the file (the
    /// S3 gateway checks its recorded ETags against it); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<ChunkId>,
}

/// One page of a directory listing (`fs/list`): entries in byte order of
/// their names, a directory's name taken with a trailing `/` (the order S3
/// lists keys in). `next`, when present, is passed back as `after` for the
/// following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub path: String,
    pub entries: Vec<DirEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One entry of a recursive walk (`fs/walk`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkEntry {
    /// Full path (a directory's without a trailing `/`).
    pub path: String,
    #[serde(flatten)]
    pub entry: DirEntry,
}

/// One page of a recursive walk: every file and directory below `path`
/// in byte order of their full paths, a directory's path taken with a
/// trailing `/` (so a directory comes just before its contents, and the
/// order is S3's order of keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkResponse {
    pub path: String,
    pub entries: Vec<WalkEntry>,
    /// Pass back as `after` for the following page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Directories on this page the caller may not list (read and search
    /// are needed): they appear as entries, their contents do not. At most
    /// [`crate::limits::MAX_WALK_SKIPPED_NAMED`] are named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
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
    /// Permission bits of a new file [default: 0o644]; a replaced file keeps its own.
    #[serde(default)]
    pub mode: Option<u32>,
    /// The file's extended attributes after the commit, set in the same
    /// step as its contents (S3 metadata). `None` keeps those of a
    /// replaced file (a new file has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<Vec<Xattr>>,
    /// New contents for the file with this id, wherever it is now (`path`
    /// then only names it in messages; `on_exists` and `mode` do not
    /// apply): the mount's way to commit what an open file handle wrote,
    /// whatever renames happened since it was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FileId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResponse {
    pub id: FileId,
    /// Where the file was stored: differs from the request with `rename`.
    pub path: String,
    pub version: u64,
    /// The file as the commit left it, when asked for with
    /// `fs/commit?stat=true` (saves the mount a stat after each create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Box<Stat>>,
}

/// Body of `fs/mknod`: a symbolic link, named pipe, socket or device node
/// at `path` (which must not exist). Answered with its stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeNodeRequest {
    pub path: String,
    pub kind: EntryKind,
    /// A symbolic link's target: any text but empty, up to 4095 bytes,
    /// without NUL; relative targets are relative to the link's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Permission bits [default: 0o644; a symbolic link's are 0o777].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// A device node's number (`makedev(major, minor)`); 0 otherwise.
    #[serde(default)]
    pub rdev: u64,
}

/// Body of `fs/link`: a new name `dst` (which must not exist) for the
/// file, link, pipe, socket or device at `src` (a hard link, as link(2);
/// never a directory). Answered with the stat of the file, whose `links`
/// counts its names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub src: String,
    pub dst: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    pub path: String,
    #[serde(default)]
    pub parents: bool,
    /// Permission bits of the new directories [default: 0o755].
    #[serde(default)]
    pub mode: Option<u32>,
}

/// Body of `fs/chmod`: the owner (or an admin) sets the permission bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChmodRequest {
    pub path: String,
    pub mode: u32,
}

/// Body of `fs/chown`: an admin sets the owner and/or group; an owner may
/// set the group to one of their own groups. Each is given by name or by
/// number (`uid`, `gid`), not both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChownRequest {
    pub path: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// What `fs/xattr/set` does when the attribute exists, or does not (as
/// setxattr(2)'s flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum XattrSetMode {
    /// Create it or replace it.
    #[default]
    Any,
    /// Refuse with `already_exists` if it exists (XATTR_CREATE).
    Create,
    /// Refuse with `not_found` if it does not (XATTR_REPLACE).
    Replace,
}

/// Body of `fs/xattr/set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrSetRequest {
    pub path: String,
    #[serde(flatten)]
    pub xattr: Xattr,
    #[serde(default)]
    pub mode: XattrSetMode,
}

/// Body of `fs/xattr/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrRemoveRequest {
    pub path: String,
    pub name: String,
}

/// Answer of `fs/xattrs`: a file's extended attributes, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrsResponse {
    pub xattrs: Vec<Xattr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
    /// What the caller expects to remove, checked with the removal (no
    /// race with a rename in between): unlink(2) refuses a directory with
    /// `is_a_directory`, rmdir(2) anything else with `not_a_directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RemoveKind>,
    /// The caller (a mount) has the file open: if this is its last name,
    /// keep it, nameless, readable and writable by id, until the caller
    /// releases it (`fs/release`) or its session ends. Needs a session.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hold_open: bool,
}

/// Body of `fs/release`: the caller closed, for the last time, a file it
/// removed while it had it open (`RemoveRequest::hold_open`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub id: FileId,
}

/// See [`RemoveRequest::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveKind {
    /// Anything but a directory (unlink).
    NotDir,
    /// A directory (rmdir).
    Dir,
}

/// Body of `rename` and `copy`: `src` to `dst`. An existing directory at
/// `dst` means "into it"; an existing file is replaced only with `replace`.
/// With `exact` (rename only), `dst` is the new name itself, as rename(2)
/// has it: an existing file there is replaced (with `replace`), an
/// existing empty directory is replaced by a directory, and a file never
/// replaces a directory nor a directory a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub src: String,
    pub dst: String,
    #[serde(default)]
    pub replace: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub exact: bool,
    /// rename(2) over a file the caller (a mount) has open: if the file
    /// replaced loses its last name, keep it for the caller's session, as
    /// `RemoveRequest::hold_open` does. Needs a session.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hold_open: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A new time for `utimensat`: now (the proposer's clock) or a given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSet {
    Now,
    /// Nanoseconds since the Unix epoch.
    At(u64),
}

/// Body of `fs/times`: set the access and modification times of `path`
/// (`None` leaves one as it is). Setting either to a given time needs the
/// owner (or an admin); setting both to now needs write permission, as
/// utimensat(2) has it. The change time becomes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimesRequest {
    pub path: String,
    #[serde(default)]
    pub accessed: Option<TimeSet>,
    #[serde(default)]
    pub modified: Option<TimeSet>,
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
    /// Removed directory trees whose entries are still being deleted in
    /// the background (they left the namespace at once).
    #[serde(default)]
    pub trees_being_deleted: u64,
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

// ---- users and sessions ----

/// Body of `auth/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    /// How long the session lasts [default: [`DEFAULT_SESSION_SECS`]; at
    /// most [`MAX_SESSION_SECS`]].
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

// A password must never reach a log line through `{:?}`.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Answer of `auth/login`: the bearer token (sent as `Authorization:
/// Bearer TOKEN` on every call) and when it expires.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub user: String,
    pub token: String,
    pub expires_ms: u64,
    pub admin: bool,
    /// The user's home directory (`/home/NAME`).
    pub home: String,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user", &self.user)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Who the caller is (`auth/whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub user: String,
    #[serde(default)]
    pub uid: u32,
    pub admin: bool,
    /// The user's groups, the primary one first, and their ids.
    pub groups: Vec<String>,
    #[serde(default)]
    pub gids: Vec<u32>,
    pub home: String,
    /// When the caller's session ends; `None` for cluster processes.
    pub expires_ms: Option<u64>,
}

/// Body of `users/add` (admin only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddUserRequest {
    pub name: String,
    pub password: String,
    /// Further groups; every user is also in the group named after them.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

impl std::fmt::Debug for AddUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddUserRequest")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Body of `users/passwd`: a user sets their own password, an admin
/// anyone's. Every session of the user ends.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswdRequest {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for PasswdRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswdRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Body of `users/remove` and `users/revoke` (end every session of a user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRequest {
    pub name: String,
}

/// One user as `cairn user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    #[serde(default)]
    pub uid: u32,
    pub admin: bool,
    pub groups: Vec<String>,
    pub created_ms: u64,
    /// Sessions that have not expired or been revoked.
    pub sessions: u64,
}

/// One page of users, by name; `next` is passed back as `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersResponse {
    pub users: Vec<UserInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer of the user calls that change something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserResponse {
    pub name: String,
    /// The user's id (0 when the call ended sessions only).
    #[serde(default)]
    pub uid: u32,
    /// Sessions ended by the call.
    #[serde(default)]
    pub sessions_ended: u64,
}

/// Asks for a new S3 access key (`keys/create`): for the caller, or, for
/// an admin, for `user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A new access key, with its secret: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreated {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub user: String,
    pub created_ms: u64,
}

/// One access key as `cairn key list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub access_key_id: String,
    pub user: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysResponse {
    pub keys: Vec<KeyInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRemoveRequest {
    pub access_key_id: String,
}

/// A key's secret, opened for a gateway (`keys/secret`, cluster processes
/// only) so that it can check request signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySecret {
    pub access_key_id: String,
    pub user: String,
    pub secret_access_key: String,
}

/// Checks the shape of an access key id: [`ACCESS_KEY_ID_BYTES`] of
/// A-Z and 0-9.
pub fn validate_access_key_id(id: &str) -> Result<(), ApiError> {
    if id.len() == ACCESS_KEY_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Ok(());
    }
    let shown: String = id.chars().take(40).collect();
    Err(ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "{shown:?} is not an access key id ({ACCESS_KEY_ID_BYTES} capital letters and digits); \
             see `cairn key list`"
        ),
    ))
}

/// Checks a user or group name: 1 to 32 bytes of ASCII letters, digits,
/// `_`, `-` and `.`, starting with a letter or `_` (as useradd(8) would).
pub fn validate_user_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USER_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(40).collect();
    Err(ApiError::new(
        ErrorCode::InvalidName,
        format!(
            "invalid {kind} name {shown:?}: use 1 to {MAX_USER_NAME_BYTES} letters, digits, '_', '-' or '.', \
             starting with a letter or '_'"
        ),
    ))
}

/// Checks a new password's length.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidArgument,
        format!("a password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long"),
    ))
}

/// Header carrying a client's id for one logical metadata operation (32
/// hex digits). A retry of the operation carries the same id; the state
/// machine applies an id once and answers its retries with the first
/// outcome, so a commit retried across a leader change is applied once.
pub const REQUEST_ID_HEADER: &str = "x-cairn-request-id";

/// Header by which a cluster process (the S3 gateway) acts for the user
/// who owns an access key: sent with the cluster token, it makes the call
/// that user's, checked and logged by the metadata service, which refuses
/// it once the key is removed.
pub const ACCESS_KEY_HEADER: &str = "x-cairn-access-key";

/// Header with which an admin's session acts for a local process of a
/// trusted client (`cairn mount --allow-other`): `UID:GID,GID...`, the
/// first group the primary one. The call runs as that uid and those groups
/// (uid 0 as an admin), checked and logged by the metadata service.
pub const ACT_AS_HEADER: &str = "x-cairn-act-as";

/// Groups an [`Acting`] identity may name.
pub const MAX_ACTING_GROUPS: usize = 64;

/// A numeric identity an admin's session acts as ([`ACT_AS_HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Acting {
    pub uid: u32,
    /// The primary group first; never empty.
    pub gids: Vec<u32>,
}

impl Acting {
    /// The header value: `1000:1000,27`.
    pub fn header_value(&self) -> String {
        let gids: Vec<String> = self.gids.iter().map(u32::to_string).collect();
        format!("{}:{}", self.uid, gids.join(","))
    }

    pub fn parse(value: &str) -> Result<Acting, ApiError> {
        let invalid = |why: &str| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("{ACT_AS_HEADER} {value:?}: {why}; it is UID:GID[,GID...]"),
            )
        };
        let (uid, gids) = value.split_once(':').ok_or_else(|| invalid("no ':'"))?;
        let uid = uid
            .parse()
            .map_err(|_| invalid("the uid is not a number"))?;
        let gids = gids
            .split(',')
            .map(|g| g.parse::<u32>())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| invalid("a gid is not a number"))?;
        if gids.len() > MAX_ACTING_GROUPS {
            return Err(invalid(&format!("more than {MAX_ACTING_GROUPS} groups")));
        }
        Ok(Acting { uid, gids })
    }
}

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
    /// With `verify`: `quarantined[i]` says the node keeps a corrupt copy
    /// of `ids[i]` in its `quarantine/` directory (now or from before).
    /// Empty without `verify`.
    #[serde(default)]
    pub quarantined: Vec<bool>,
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

/// A chunk server's health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHealth {
    pub id: NodeId,
    pub chunk_count: u64,
    pub used_bytes: u64,
}

// ---- chunk capabilities ----

/// What `chunks/grant` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantOp {
    /// Store the chunks of a file about to be written at `path` (the caller
    /// must be allowed to create or replace it).
    Put,
    /// Presence, verify and repair calls on chunk servers (admins: fsck).
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    pub op: GrantOp,
    /// For a put: the file about to be written, checked now so that a
    /// refusal comes before any byte is sent. Without one, the capability
    /// stores chunks for files named only at their commit (the mount's one
    /// capability for every file it writes); the commit checks then.
    #[serde(default)]
    pub path: Option<String>,
    /// For a put: what the commit will do if `path` names a file; with
    /// `fail`, the grant is refused at once when one is there (before any
    /// byte is sent). The commit checks again, atomically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exists: Option<OnExists>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantResponse {
    /// `None` when the cluster has no secret (its chunk servers check nothing).
    pub capability: Option<String>,
    pub expires_ms: u64,
}

/// Header carrying a chunk capability on a chunk server call.
pub const CAPABILITY_HEADER: &str = "x-cairn-capability";
/// Header carrying a session token: `Authorization: Bearer TOKEN`.
pub const BEARER_PREFIX: &str = "Bearer ";

/// What a chunk capability allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOp {
    /// Read one chunk (`GET`/`HEAD`, and reporting it corrupt).
    Get,
    /// Store chunks (`PUT`): any id, since an upload learns its ids as it
    /// reads, and a chunk's body is checked against its id anyway.
    Put,
    /// Presence and verify calls, repair requests (`cairn fsck`, admins).
    Admin,
}

impl ChunkOp {
    fn tag(self) -> &'static str {
        match self {
            ChunkOp::Get => "g",
            ChunkOp::Put => "p",
            ChunkOp::Admin => "a",
        }
    }
}

/// The key that signs chunk capabilities, derived from the cluster secret:
/// the metadata service issues capabilities, chunk servers check them, and
/// neither needs to ask the other.
///
/// A capability is `TAG.EXPIRES_MS.MAC`: MAC is 128 bits of keyed BLAKE3
/// over the tag, the expiry and, for `get`, the chunk id (a `get`
/// capability is good for that chunk only).
#[derive(Clone)]
pub struct CapabilityKey([u8; 32]);

impl std::fmt::Debug for CapabilityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapabilityKey(<secret>)")
    }
}

/// Why a chunk server refused a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    Missing,
    Malformed,
    /// For another operation, or another chunk, or forged.
    Invalid,
    Expired {
        expires_ms: u64,
    },
}

impl CapabilityKey {
    pub fn from_secret(secret: &[u8]) -> CapabilityKey {
        CapabilityKey(blake3::derive_key("cairn chunk capability v1", secret))
    }

    pub fn issue(&self, op: ChunkOp, id: Option<&ChunkId>, expires_ms: u64) -> String {
        format!("{}.{expires_ms}.{}", op.tag(), self.mac(op, id, expires_ms))
    }

    fn mac(&self, op: ChunkOp, id: Option<&ChunkId>, expires_ms: u64) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(op.tag().as_bytes());
        hasher.update(&expires_ms.to_le_bytes());
        if let (ChunkOp::Get, Some(id)) = (op, id) {
            hasher.update(&id.0);
        }
        // 128 bits: the first 32 hex digits.
        hasher.finalize().to_hex()[..32].to_string()
    }

    /// Checks `presented` for `op` on chunk `id` at `now_ms`.
    pub fn check(
        &self,
        presented: Option<&str>,
        op: ChunkOp,
        id: Option<&ChunkId>,
        now_ms: u64,
    ) -> Result<(), CapabilityError> {
        let presented = presented.ok_or(CapabilityError::Missing)?;
        let mut parts = presented.splitn(3, '.');
        let (Some(tag), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CapabilityError::Malformed);
        };
        let expires_ms: u64 = expires.parse().map_err(|_| CapabilityError::Malformed)?;
        if tag != op.tag() || !token_matches(mac, &self.mac(op, id, expires_ms)) {
            return Err(CapabilityError::Invalid);
        }
        if expires_ms <= now_ms {
            return Err(CapabilityError::Expired { expires_ms });
        }
        Ok(())
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;

    #[test]
    fn a_capability_is_good_for_its_operation_chunk_and_time_only() {
        let key = CapabilityKey::from_secret(b"a secret of some length");
        let other_key = CapabilityKey::from_secret(b"another cluster's secret");
        let a = ChunkId([1; 32]);
        let b = ChunkId([2; 32]);
        let cap = key.issue(ChunkOp::Get, Some(&a), 1_000);
        assert_eq!(key.check(Some(&cap), ChunkOp::Get, Some(&a), 999), Ok(()));
        assert_eq!(
            key.check(Some(&cap), ChunkOp::Get, Some(&b), 999),
            Err(CapabilityError::Invalid)
        );
        assert_eq!(
            key.check(Some(&cap), ChunkOp::Put, Some(&a), 999),
            Err(CapabilityError::Invalid)
        );
        assert_eq!(
            other_key.check(Some(&cap), ChunkOp::Get, Some(&a), 999),
            Err(CapabilityError::Invalid)
        );
        assert_eq!(
            key.check(Some(&cap), ChunkOp::Get, Some(&a), 1_000),
            Err(CapabilityError::Expired { expires_ms: 1_000 })
        );
        // A later expiry written over the old one breaks the MAC.
        let stretched = cap.replacen("1000", "9000", 1);
        assert_eq!(
            key.check(Some(&stretched), ChunkOp::Get, Some(&a), 999),
            Err(CapabilityError::Invalid)
        );
        assert_eq!(
            key.check(Some("g.x.y"), ChunkOp::Get, Some(&a), 0),
            Err(CapabilityError::Malformed)
        );
        assert_eq!(
            key.check(None, ChunkOp::Get, Some(&a), 0),
            Err(CapabilityError::Missing)
        );
        let put = key.issue(ChunkOp::Put, None, 1_000);
        assert_eq!(key.check(Some(&put), ChunkOp::Put, Some(&b), 5), Ok(()));
    }
}

#[cfg(test)]
mod acting_tests {
    use super::*;

    #[test]
    fn an_acting_identity_round_trips_and_bad_ones_say_the_shape() {
        let acting = Acting {
            uid: 1000,
            gids: vec![1000, 27],
        };
        assert_eq!(acting.header_value(), "1000:1000,27");
        assert_eq!(Acting::parse("1000:1000,27").unwrap(), acting);
        let too_many: Vec<String> = (0..=MAX_ACTING_GROUPS).map(|g| g.to_string()).collect();
        for bad in [
            "root",
            "1000",
            "x:1",
            "1:",
            "1:a",
            &format!("1:{}", too_many.join(",")),
        ] {
            let refused = Acting::parse(bad).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidArgument, "{bad}");
            assert!(refused.message.contains("UID:GID"), "{}", refused.message);
        }
    }
}
