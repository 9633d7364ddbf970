//! Every limit and timing of the metadata service, in one place. Limits
//! shared with clients (names, chunks, pages, xattrs) are in
//! `cairn_proto::limits`; the assertions at the bottom relate the two.

use std::time::Duration;

use cairn_proto::limits::{MAX_CHUNKS_PER_FILE, MAX_PAGE_ENTRIES};

// ---- HTTP and Raft messages ----

/// The largest request body: a commit of a file with the most chunks
/// allowed (2^18 ids of ~100 JSON bytes each) fits with room to spare.
pub const MAX_BODY_BYTES: usize = 48 << 20;
/// The largest Raft message: a batch of up to `MAX_PAYLOAD_ENTRIES` log
/// entries, or one snapshot piece (bytes as a JSON array: ~4x its size).
pub const MAX_RAFT_BODY_BYTES: usize = 256 << 20;
/// Log entries per Raft append message.
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;
/// Bytes of a snapshot per install message.
pub const SNAPSHOT_PIECE_BYTES: u64 = 4 << 20;

// ---- timing ----

/// How often the leader looks for silent nodes.
pub const LIVENESS_TICK: Duration = Duration::from_millis(500);
/// How long a write may wait to be committed. A leader cut off from the
/// majority cannot commit; the client then retries elsewhere with the
/// same request id, so a write that commits later still applies once.
/// Below the client's attempt timeout (10 s), so the client hears why.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(8);
/// Proposals that wait while one log entry is being committed are joined
/// into one entry (`Command::Batch`), at most this many: every entry costs
/// a log fsync, and 16 concurrent writers paid 16 fsyncs where a batch
/// pays one.
pub const MAX_BATCH_REQUESTS: usize = 32;
/// A commit naming more chunks than this is proposed on its own: a batch
/// stays under ~1 MiB of JSON (~100 bytes a chunk), so 64 entries of an
/// append message stay far below `MAX_RAFT_BODY_BYTES`.
pub const MAX_BATCHED_COMMIT_CHUNKS: usize = 256;
/// Proposals waiting for their batch; more are refused as unavailable.
pub const MAX_QUEUED_PROPOSALS: usize = 4096;
/// How long a read may wait for a majority to confirm this member leads.
pub const CONFIRM_LEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a chunk capability is good for, unless `--capability-ttl`
/// says otherwise: readers and writers of long transfers ask for fresh
/// ones before it runs out.
pub const DEFAULT_CAPABILITY_TTL: Duration = Duration::from_secs(4 * 3600);
/// Bounds of `--capability-ttl`.
pub const MIN_CAPABILITY_TTL: Duration = Duration::from_secs(1);
pub const MAX_CAPABILITY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the leader looks for removed trees to delete when nothing
/// told it of one (after a leader change).
pub const PURGE_POLL: Duration = Duration::from_secs(2);

// ---- the state machine ----

/// How long the outcome of a request id is remembered. A client retries
/// one operation for well under a minute (its failover deadline, 30 s);
/// ten minutes leaves room for a slow election and clock skew between
/// leaders.
pub const REQUEST_RETENTION_NS: u64 = 10 * 60 * 1_000_000_000;
/// The most request outcomes remembered (oldest forgotten first): at ~200
/// bytes each, 20 MB. At 100,000 remembered, 10 minutes covers 166
/// operations a second; past that, retention is shorter than the window.
pub const MAX_REMEMBERED_REQUESTS: u64 = 100_000;
/// The most removed node ids remembered (oldest forgotten first).
pub const MAX_REMOVED_NODES: usize = 10_000;
/// The most expired sessions one command forgets (bounds its work).
pub const MAX_SESSIONS_FORGOTTEN_PER_COMMAND: usize = 256;
/// The most names (hard links) one file may have, as ext4's 65,000:
/// past it, link(2) is refused with `too_many_links` (EMLINK).
pub const MAX_NAMES_PER_FILE: u64 = 65_000;
/// How many of a hard-linked file's directories a lookup by id tries when
/// the one its record names does not lead to the root (removed with its
/// tree, not yet purged) or may not be searched.
pub const MAX_NAMES_TRIED_BY_ID: usize = 64;
/// When `--rename` finds a name taken, it tries `stem-1.ext` up to this.
pub const MAX_RENAME_ATTEMPTS: u64 = 10_000;
/// Entries one purge command deletes from removed trees: bounds the work
/// (and the redb transaction) of one log entry, whatever the tree's size.
pub const PURGE_BATCH_ENTRIES: u64 = 1000;
/// The most directory entries a non-admin's `rm -r` may check for
/// permission in one command (~1 s of reads); an admin's is not checked.
pub const MAX_REMOVE_CHECK_ENTRIES: u64 = 10_000_000;

// ---- users and sessions ----

/// The most sessions one user keeps; a login beyond it ends their oldest.
pub const MAX_SESSIONS_PER_USER: usize = 64;
/// Most access keys one listing of every user's keys returns.
pub const MAX_ACCESS_KEYS_LISTED: usize = 10_000;
/// The most users a cluster keeps (a user record is ~200 bytes).
pub const MAX_USERS: u64 = 100_000;
/// The most groups a cluster keeps.
pub const MAX_GROUPS: u64 = 100_000;
/// The first uid and gid given to a user or group after the first admin's
/// (0), as on Linux.
pub const FIRST_ID: u32 = 1000;
/// Password hashes computed at once (each ~30 ms of one core, 19 MiB).
pub const MAX_CONCURRENT_HASHES: usize = 2;
/// Failed logins allowed per user, and per source address, within
/// [`LOGIN_WINDOW`]; beyond them logins are refused until the oldest
/// failure leaves the window.
pub const MAX_FAILURES_PER_USER: usize = 5;
pub const MAX_FAILURES_PER_SOURCE: usize = 20;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Users and sources the login limiter remembers (the oldest are dropped).
pub const MAX_LIMITER_KEYS: usize = 10_000;

const _: () = {
    // A commit of the largest file fits in a request body (~100 JSON
    // bytes per chunk reference).
    assert!(MAX_BODY_BYTES >= MAX_CHUNKS_PER_FILE * 100);
    // A Raft message carries a snapshot piece as a JSON array (~4 bytes a
    // byte) and a batch of entries each as large as a request body.
    assert!(MAX_RAFT_BODY_BYTES as u64 > 4 * SNAPSHOT_PIECE_BYTES);
    assert!(PROPOSE_TIMEOUT.as_secs() < 10);
    // A page of a listing is one read transaction, far below a purge's work.
    assert!(MAX_PAGE_ENTRIES as u64 <= 100 * PURGE_BATCH_ENTRIES);
    assert!(PURGE_BATCH_ENTRIES > 0);
    assert!(MAX_FAILURES_PER_USER <= MAX_FAILURES_PER_SOURCE);
    assert!(MIN_CAPABILITY_TTL.as_secs() <= DEFAULT_CAPABILITY_TTL.as_secs());
    assert!(DEFAULT_CAPABILITY_TTL.as_secs() <= MAX_CAPABILITY_TTL.as_secs());
    assert!(MAX_USERS <= (u32::MAX - FIRST_ID) as u64);
};
