//! The Cairn client library: namespace calls to the metadata service and
//! parallel, verified chunk transfers to and from chunk servers.
//!
//! - `meta.rs`: [`MetaClient`], one method per metadata route
//! - `chunks.rs`: [`ChunkClient`], the chunk data API
//! - `transfer.rs`: [`Uploader`]/[`download`]: cutting, placing, verifying
//! - `fsck.rs`: [`fsck::fsck`]: where every chunk of a subtree is, and how healthy
//!
//! The client computes placement itself from the cluster map, so the
//! metadata service is never on the data path.

pub mod chunks;
pub mod error;
pub mod fsck;
pub mod meta;
pub mod transfer;

pub use chunks::{ChunkClient, ChunkError};
pub use error::ClientError;
pub use meta::MetaClient;
pub use transfer::{
    chunk_locations, download, survey, ChunkLocation, Survey, UploadSummary, Uploader,
};
