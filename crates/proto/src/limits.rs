//! Every limit that clients and servers share, in one place. A limit here is
//! part of the protocol: both ends check it, so a client can refuse bad
//! input before sending it, and a server never trusts that it did.
//!
//! The assertions at the bottom relate limits that depend on each other;
//! changing one without the other fails to compile.

// ---- names and paths ----

/// Longest allowed name of one file or directory, in bytes (as POSIX NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;
/// Deepest allowed path, in components.
pub const MAX_PATH_DEPTH: usize = 256;
/// Longest allowed path, in bytes (as POSIX PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// A symbolic link's target (PATH_MAX less its NUL, as Linux).
pub const MAX_SYMLINK_TARGET_BYTES: usize = 4095;

// ---- file contents ----

/// Default size of a chunk: big enough that per-chunk costs (an fsync, a
/// request, a metadata entry of 40 bytes) are small against the data, small
/// enough that a few in flight per client fit easily in memory.
pub const DEFAULT_CHUNK_SIZE_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest configurable chunk size.
pub const MIN_CHUNK_SIZE_BYTES: u64 = 4 * 1024;
/// Upper bound on the configurable chunk size: a chunk is held in memory
/// whole on both ends of a transfer.
pub const MAX_CHUNK_SIZE_BYTES: u64 = 64 * 1024 * 1024;
/// The most chunks one file may have (4 MiB chunks: 1 TiB; 64 MiB: 16 TiB).
/// Bounds the size of a file's metadata record (~40 bytes a chunk).
pub const MAX_CHUNKS_PER_FILE: usize = 1 << 18;
/// Default number of copies of every chunk.
pub const DEFAULT_REPLICATION: u32 = 3;
/// The most copies a cluster may ask for.
pub const MAX_REPLICATION: u32 = 7;
/// The most ids one presence or reference call may ask about.
pub const MAX_HAS_CHUNKS_IDS: usize = 4096;

// ---- extended attributes ----

/// Longest extended attribute name, in bytes (as Linux XATTR_NAME_MAX).
pub const MAX_XATTR_NAME_BYTES: usize = 255;
/// Largest value of one extended attribute, in bytes.
pub const MAX_XATTR_VALUE_BYTES: usize = 64 * 1024;
/// The most bytes (names plus values) of all extended attributes of one
/// file or directory (as Linux XATTR_SIZE_MAX; ext4 allows less).
pub const MAX_XATTR_BYTES_PER_INODE: usize = 64 * 1024;

// ---- listings ----

/// Entries in a directory listing or walk page when the caller names no limit.
pub const DEFAULT_PAGE_ENTRIES: u32 = 1000;
/// The most entries one listing or walk page returns.
pub const MAX_PAGE_ENTRIES: u32 = 10_000;
/// The most unreadable directories a walk page names (it counts the rest).
pub const MAX_WALK_SKIPPED_NAMED: usize = 100;

// ---- users and sessions ----

/// The longest user or group name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 32;
/// The most groups a user may be in.
pub const MAX_USER_GROUPS: usize = 32;
/// Password length bounds, in bytes: the upper one caps hashing work.
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Default length of a session.
pub const DEFAULT_SESSION_SECS: u64 = 24 * 3600;
/// Longest session a login may ask for.
pub const MAX_SESSION_SECS: u64 = 90 * 24 * 3600;
/// Most S3 access keys a user holds at once.
pub const MAX_ACCESS_KEYS_PER_USER: usize = 64;
/// Length of an access key id (`CK` and 18 characters of A-Z and 2-7, as
/// AWS's are 20).
pub const ACCESS_KEY_ID_BYTES: usize = 20;
/// Length of a secret access key (40 characters, as AWS's).
pub const ACCESS_KEY_SECRET_BYTES: usize = 40;

const _: () = {
    assert!(MIN_CHUNK_SIZE_BYTES <= DEFAULT_CHUNK_SIZE_BYTES);
    assert!(DEFAULT_CHUNK_SIZE_BYTES <= MAX_CHUNK_SIZE_BYTES);
    // A chunk's length travels as a u32.
    assert!(MAX_CHUNK_SIZE_BYTES <= u32::MAX as u64);
    assert!(DEFAULT_REPLICATION <= MAX_REPLICATION);
    // A path holds at least one name of the longest length.
    assert!(MAX_NAME_BYTES < MAX_PATH_BYTES);
    // One attribute of the largest size fits the per-inode budget.
    assert!(MAX_XATTR_VALUE_BYTES <= MAX_XATTR_BYTES_PER_INODE);
    assert!(MAX_XATTR_NAME_BYTES < MAX_XATTR_BYTES_PER_INODE);
    assert!(DEFAULT_PAGE_ENTRIES <= MAX_PAGE_ENTRIES);
    assert!(MIN_PASSWORD_BYTES <= MAX_PASSWORD_BYTES);
    assert!(DEFAULT_SESSION_SECS <= MAX_SESSION_SECS);
};
