//! Every limit and timing of the mount, in one place.

use std::time::Duration;

/// How long the kernel may trust an attribute or a name it was given
/// before asking again: changes made by other clients show within this.
pub const ATTR_TTL: Duration = Duration::from_secs(1);
pub const ENTRY_TTL: Duration = Duration::from_secs(1);

/// The largest write the kernel sends in one request, and its readahead.
pub const MAX_WRITE_BYTES: u32 = 1024 * 1024;
pub const MAX_READAHEAD_BYTES: u32 = 1024 * 1024;
/// Requests the kernel keeps in flight in the background (readahead,
/// writes) before it throttles.
pub const MAX_BACKGROUND_REQUESTS: u16 = 64;

/// Bytes of verified chunks kept in memory for reads (shared by all files).
pub const CHUNK_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// Chunks fetched ahead of a sequential reader.
pub const READAHEAD_CHUNKS: usize = 4;

/// Chunks of one file being uploaded at once while it is written.
pub const MAX_UPLOADS_IN_FLIGHT: usize = 4;
/// Chunks of one file held dirty in memory (rewritten, not yet uploaded)
/// before the oldest are uploaded: with 4 MiB chunks, 64 MiB.
pub const MAX_DIRTY_CHUNKS: usize = 16;
/// Bytes of one file uploaded but not yet committed (kept in memory, as
/// they cannot be read back before the commit) before the mount commits
/// what the file holds so far, as a kernel writes back dirty pages.
pub const MAX_UNCOMMITTED_BYTES: u64 = 128 * 1024 * 1024;

/// Identities a per-caller mount keeps a client for (one per local
/// uid and groups that used it); past it they are made again.
pub const MAX_CALLER_IDENTITIES: usize = 1024;
/// Open file and directory handles at once.
pub const MAX_OPEN_HANDLES: usize = 65_536;
/// Entries fetched per listing page for readdir.
pub const READDIR_PAGE_ENTRIES: u32 = 1000;
/// The block size reported by stat(2), a hint for buffer sizes.
pub const BLOCK_SIZE_BYTES: u32 = 1024 * 1024;
/// A name (one path component), as everywhere in Cairn.
pub const MAX_NAME_BYTES: usize = 255;

const _: () = assert!(MAX_UPLOADS_IN_FLIGHT > 0 && MAX_DIRTY_CHUNKS > 0);
const _: () = assert!(READDIR_PAGE_ENTRIES <= 10_000, "the server's page maximum");
