//! Types shared by every Cairn process: ids, the cluster map, namespace paths,
//! the HTTP/JSON wire types and the error vocabulary.
//!
//! Nothing in here does I/O. Servers and clients agree on these shapes, so a
//! change here is a protocol change: add fields with `#[serde(default)]`.

pub mod api;
pub mod error;
pub mod ids;
pub mod map;
pub mod path;
pub mod units;

pub use error::{ApiError, ErrorCode};
pub use ids::{file_digest, ChunkId, ChunkRef, FileId, NodeId, ParseIdError};
pub use map::{ClusterMap, NodeInfo, NodeState};

/// Default size of a chunk: big enough that per-chunk costs (an fsync, a
/// request, a metadata entry of 40 bytes) are small against the data, small
/// enough that a few in flight per client fit easily in memory.
pub const DEFAULT_CHUNK_SIZE_BYTES: u64 = 4 * 1024 * 1024;
/// Upper bound on the configurable chunk size: a chunk is held in memory
/// whole on both ends of a transfer.
pub const MAX_CHUNK_SIZE_BYTES: u64 = 64 * 1024 * 1024;
/// Default number of copies of every chunk.
pub const DEFAULT_REPLICATION: u32 = 3;
/// The most copies a cluster may ask for.
pub const MAX_REPLICATION: u32 = 7;
/// Default address of the metadata service.
pub const DEFAULT_META_ADDR: &str = "127.0.0.1:7700";
/// The most chunks one file may have (4 MiB chunks: 1 TiB; 64 MiB: 16 TiB).
/// Bounds the size of a file's metadata record (~40 bytes a chunk).
pub const MAX_CHUNKS_PER_FILE: usize = 1 << 18;
