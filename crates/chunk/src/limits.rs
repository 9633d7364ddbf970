//! Every limit and timing of the chunk server, in one place, with the
//! assertions that relate them.

use std::time::Duration;

use cairn_proto::limits::MAX_HAS_CHUNKS_IDS;

/// Chunk bodies held in memory at once by PUTs and GETs (each at most one
/// chunk): bounds the server's memory to about this many chunk sizes.
pub const MAX_CONCURRENT_TRANSFERS: usize = 32;
/// Corrupt copies being fetched again at once.
pub const MAX_RECOVERIES: usize = 4;
/// Chunks a repair pass plans together: one presence call per peer per batch.
pub const BATCH_CHUNKS: usize = 1024;
/// Chunks being pushed at once by repair.
pub const PUSHES_IN_FLIGHT: usize = 4;
/// Corrupt copies kept in `quarantine/`; the oldest go beyond this (a disk
/// that rots fast must not fill up with evidence).
pub const MAX_QUARANTINED: usize = 1024;
/// The chunk directory is split in this many shards by the first byte of
/// the id; background loops work one shard at a time, which bounds their
/// memory to about 1/256 of the chunk list.
pub const SHARDS: usize = 256;
/// Time between collect passes: a quarter of the grace period, within these.
pub const MIN_COLLECT_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_COLLECT_INTERVAL: Duration = Duration::from_secs(600);
/// The longest pause between attempts to register with the metadata service.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

const _: () = {
    // A batch is asked about in one presence call.
    assert!(BATCH_CHUNKS <= MAX_HAS_CHUNKS_IDS);
    // Background work leaves most transfers to clients.
    assert!(PUSHES_IN_FLIGHT + MAX_RECOVERIES < MAX_CONCURRENT_TRANSFERS);
    assert!(MIN_COLLECT_INTERVAL.as_secs() < MAX_COLLECT_INTERVAL.as_secs());
    // One shard per value of an id's first byte.
    assert!(SHARDS == 256);
};
