//! Types shared by every Cairn process: ids, the cluster map, namespace paths,
//! the HTTP/JSON wire types and the error vocabulary.
//!
//! Nothing in here does I/O. Servers and clients agree on these shapes, so a
//! change here is a protocol change: add fields with `#[serde(default)]`.

pub mod api;
pub mod error;
pub mod ids;
pub mod limits;
pub mod map;
pub mod path;
pub mod units;
pub mod xattr;

pub use error::{ApiError, ErrorCode};
pub use ids::{file_digest, ChunkId, ChunkRef, FileId, NodeId, ParseIdError};
pub use map::{ClusterMap, NodeInfo, NodeState};

pub use limits::{
    DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_REPLICATION, MAX_CHUNKS_PER_FILE, MAX_CHUNK_SIZE_BYTES,
    MAX_REPLICATION, MIN_CHUNK_SIZE_BYTES,
};

/// Default address of the metadata service.
pub const DEFAULT_META_ADDR: &str = "127.0.0.1:7700";
