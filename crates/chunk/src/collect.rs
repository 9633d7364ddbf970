//! The collect loop: delete local chunks that no file references, once
//! they have been here longer than the grace period.
//!
//! The grace period protects uploads in progress: their chunks are stored
//! before the file that references them is committed. A PUT of a chunk
//! already held renews its receive time (see `store.rs`), and the final
//! check of that time happens under the same lock as the delete, so a chunk
//! an upload has just sent is never collected. An upload must commit within
//! the grace period (1 hour by default).
//!
//! Cost sketch: one metadata call per 4096 candidates (only chunks older
//! than the grace period are candidates).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_proto::api::{ReferencedRequest, MAX_HAS_CHUNKS_IDS};
use cairn_proto::ChunkId;
use cairn_telemetry::counter;

use crate::limits::{
    MAX_COLLECT_INTERVAL as MAX_INTERVAL, MIN_COLLECT_INTERVAL as MIN_INTERVAL, SHARDS,
};
use crate::node::Node;

pub async fn run(node: Arc<Node>, grace: Duration) {
    let interval = (grace / 4).clamp(MIN_INTERVAL, MAX_INTERVAL);
    loop {
        tokio::time::sleep(interval).await;
        match pass(&node, grace).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "collected unreferenced chunks"),
            Err(e) => tracing::warn!("collect pass stopped: {e}"),
        }
    }
}

async fn pass(node: &Node, grace: Duration) -> Result<u64, String> {
    let Some(cutoff) = SystemTime::now().checked_sub(grace) else {
        return Ok(0);
    };
    let mut deleted = 0;
    for shard in 0..SHARDS {
        let store = node.store.clone();
        let candidates: Vec<ChunkId> = tokio::task::spawn_blocking(move || store.list_shard(shard))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot list chunks: {e}"))?
            .into_iter()
            .filter(|entry| entry.received < cutoff)
            .map(|entry| entry.id)
            .collect();
        for batch in candidates.chunks(MAX_HAS_CHUNKS_IDS) {
            let answer = node
                .meta
                .referenced(&ReferencedRequest {
                    ids: batch.to_vec(),
                })
                .await
                .map_err(|e| e.to_string())?;
            if answer.referenced.len() != batch.len() {
                return Err("the metadata service answered for the wrong number of chunks".into());
            }
            let unreferenced: Vec<ChunkId> = batch
                .iter()
                .zip(answer.referenced)
                .filter(|(_, referenced)| !referenced)
                .map(|(id, _)| *id)
                .collect();
            let store = node.store.clone();
            let removed = tokio::task::spawn_blocking(move || {
                let mut removed = 0u64;
                for id in unreferenced {
                    match store.remove_if_received_before(&id, cutoff) {
                        Ok(true) => removed += 1,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(chunk = %id, %e, "cannot delete an unreferenced chunk")
                        }
                    }
                }
                removed
            })
            .await
            .map_err(|e| e.to_string())?;
            node.stats
                .collected_total
                .fetch_add(removed, Ordering::Relaxed);
            counter!("cairn_collect_deleted_chunks_total").increment(removed);
            deleted += removed;
        }
    }
    Ok(deleted)
}
