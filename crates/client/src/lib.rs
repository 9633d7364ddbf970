//! The Cairn client library: the file API every door stands on, over calls
//! to the metadata service and parallel, verified chunk transfers to and
//! from chunk servers.
//!
//! - `files.rs`: [`Files`], the file API (stat, list, walk, put, read,
//!   namespace changes, extended attributes)
//! - `meta.rs`: [`MetaClient`], one method per metadata route, failover
//! - `chunks.rs`: [`ChunkClient`], the chunk data API
//! - `upload.rs`: [`Uploader`] and [`Grant`]: cutting, placing, storing
//! - `download.rs`: [`Reader`]: ranged, verified reads
//! - `map_view.rs`: [`MapView`]: a cluster map with its placement ring
//! - `presence.rs`: which nodes hold which chunks
//! - `buckets.rs`: S3 buckets as directories, made for a user by a
//!   cluster process (the S3 gateway, the web page)
//! - `fsck.rs`: [`fsck::fsck`]: where every chunk of a subtree is, and how healthy
//! - `path.rs`: remote paths as typed, relative to a working directory
//! - `error.rs`: [`ClientError`], typed; `limits.rs`: every limit and timing
//!
//! The client computes placement itself from the cluster map, so the
//! metadata service is never on the data path.

pub mod buckets;
pub mod chunks;
pub mod download;
pub mod error;
pub mod files;
pub mod fsck;
pub mod limits;
pub mod map_view;
pub mod meta;
pub mod path;
pub mod presence;
pub mod upload;

pub use chunks::{ChunkClient, ChunkError, ReceivedChunk};
pub use download::Reader;
pub use error::ClientError;
pub use files::{Files, PutOptions};
pub use map_view::MapView;
pub use meta::{MetaClient, Page, Target};
pub use presence::{chunk_locations, survey, ChunkLocation, Survey};
pub use upload::{Grant, UploadSummary, Uploader};
