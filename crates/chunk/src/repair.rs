//! The repair loop: make every local chunk present on its write targets,
//! and hand off copies this node should no longer hold.
//!
//! One pass walks the store shard by shard (1/256 of the chunks at a time)
//! in batches of [`BATCH_CHUNKS`]. For a batch it asks each peer that is a
//! write target of some chunk in it, in one call, which of those it holds;
//! then, for each chunk:
//! - who answers for it: the first write target that holds it (every
//!   write target asks the others, so they agree); a holder outside the
//!   write targets only if none of them holds it. Only that node pushes
//!   and counts the chunk, so three holders do not all send the same bytes
//!   and the nodes' counts can be summed.
//! - push: every write target lacking it gets a copy (paced by the rate
//!   limiter; at most [`PUSHES_IN_FLIGHT`] at once). A peer that refuses
//!   the bytes as not matching the id means the local copy is corrupt: it
//!   goes to quarantine instead.
//! - hand off: if this node is neither a target nor a write target, and
//!   `replication` write targets hold the chunk, and every peer asked works
//!   from the same map epoch as this node, the local copy is deleted. The
//!   epoch check keeps two nodes with different maps from each deleting
//!   their copy on the strength of the other's. A node the map says is down
//!   never hands off: it is about to be judged and may be a target again.
//! - count: a chunk with fewer than `replication` copies on its write
//!   targets is under-replicated.
//!
//! A pass starts when the map epoch changes, when asked (`POST /v1/repair`),
//! or every `interval`; a new epoch during a pass cuts it short and a fresh
//! pass starts at once with the new map.
//!
//! Cost sketch: per 1024 chunks (4 GiB at 4 MiB) one presence call per
//! peer (~40 KiB each); pushes dominate and are bounded by the rate.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_placement::Ring;
use cairn_proto::{ChunkId, ClusterMap, ErrorCode, NodeId, NodeState};
use cairn_telemetry::counter;
use futures::stream::{self, StreamExt};
use tokio::sync::watch;

use crate::limits::{BATCH_CHUNKS, PUSHES_IN_FLIGHT, SHARDS};
use crate::node::{Node, RateLimiter};
use crate::store::ChunkEntry;

#[derive(Debug, Clone, Copy)]
pub struct RepairConfig {
    /// Time between passes when nothing wakes the loop.
    pub interval: Duration,
    /// Most bytes per second pushed to peers.
    pub rate_bytes_per_second: u64,
}

pub async fn run(node: Arc<Node>, config: RepairConfig) {
    let limiter = RateLimiter::new(config.rate_bytes_per_second);
    let mut maps = node.subscribe();
    loop {
        let map = maps.borrow_and_update().clone();
        if let Some(map) = map {
            let outcome = pass(&node, &map, &limiter, &maps).await;
            node.stats.repair_pass_total.store(0, Ordering::Relaxed);
            node.stats.repair_pass_done.store(0, Ordering::Relaxed);
            match outcome {
                Ok(under_replicated) => {
                    node.stats
                        .under_replicated
                        .store(under_replicated, Ordering::Relaxed);
                    node.stats.repair_epoch.store(map.epoch, Ordering::Relaxed);
                    node.stats
                        .repair_passes_total
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(PassEnd::NewMap) => continue,
                Err(PassEnd::Failed(e)) => tracing::error!("repair pass failed: {e}"),
            }
        }
        tokio::select! {
            changed = maps.changed() => {
                if changed.is_err() {
                    return; // the node is shutting down
                }
            }
            _ = node.repair_wake.notified() => {}
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}

enum PassEnd {
    NewMap,
    Failed(String),
}

/// One pass over every local chunk; returns the under-replicated count.
async fn pass(
    node: &Node,
    map: &ClusterMap,
    limiter: &RateLimiter,
    maps: &watch::Receiver<Option<Arc<ClusterMap>>>,
) -> Result<u64, PassEnd> {
    let me = node.store.node_id().clone();
    let my_state = map.node(&me).map(|n| n.state);
    if my_state.is_none() {
        // Not (or no longer) in the map: removed, or not yet registered.
        return Ok(0);
    }
    let plan = Plan {
        ring: Ring::new(map),
        replication: map.replication as usize,
        epoch: map.epoch,
        me,
        may_hand_off: my_state != Some(NodeState::Down),
    };
    node.stats
        .repair_pass_total
        .store(node.store.chunk_count(), Ordering::Relaxed);
    let mut under_replicated = 0;
    for shard in 0..SHARDS {
        if maps.has_changed().unwrap_or(false) {
            return Err(PassEnd::NewMap);
        }
        let store = node.store.clone();
        let entries = tokio::task::spawn_blocking(move || store.list_shard(shard))
            .await
            .map_err(|e| PassEnd::Failed(e.to_string()))?
            .map_err(|e| PassEnd::Failed(format!("cannot list chunks: {e}")))?;
        for batch in entries.chunks(BATCH_CHUNKS) {
            under_replicated += repair_batch(node, &plan, limiter, batch).await;
            node.stats
                .repair_pass_done
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(under_replicated)
}

/// What a pass knows about the map.
struct Plan {
    ring: Ring,
    replication: usize,
    epoch: u64,
    me: NodeId,
    may_hand_off: bool,
}

/// One chunk's placement and what the peers said about it.
struct ChunkPlan {
    id: ChunkId,
    /// When this node received it (ms since the Unix epoch), handed on
    /// with pushes so the copy ages as the original does.
    received_ms: u64,
    /// The write targets in order, this node included if it is one:
    /// (id, addr).
    write_targets: Vec<(NodeId, String)>,
    /// This node is a target or a write target.
    mine: bool,
    /// Write targets other than this node that hold the chunk.
    holders: HashSet<NodeId>,
    /// Every peer asked answered, from this node's map epoch.
    peers_agree: bool,
}

impl ChunkPlan {
    /// Write targets other than `me`.
    fn peers<'a>(&'a self, me: &'a NodeId) -> impl Iterator<Item = &'a (NodeId, String)> {
        self.write_targets.iter().filter(move |(id, _)| id != me)
    }

    /// Whether `me` answers for this chunk: it is the first holder in
    /// write-target order, or, holding it outside the write targets, no
    /// write target does. The one that answers pushes and counts it.
    fn answered_by(&self, me: &NodeId) -> bool {
        self.write_targets
            .iter()
            .find(|(id, _)| id == me || self.holders.contains(id))
            .is_none_or(|(id, _)| id == me)
    }
}

async fn repair_batch(
    node: &Node,
    plan: &Plan,
    limiter: &RateLimiter,
    batch: &[ChunkEntry],
) -> u64 {
    let rf = plan.replication;
    let mut chunks: Vec<ChunkPlan> = batch
        .iter()
        .map(|entry| {
            let write_targets: Vec<(NodeId, String)> = plan
                .ring
                .write_targets(&entry.id, rf)
                .into_iter()
                .map(|n| (n.id.clone(), n.addr.clone()))
                .collect();
            let mine = write_targets.iter().any(|(id, _)| *id == plan.me)
                || plan
                    .ring
                    .targets(&entry.id, rf)
                    .iter()
                    .any(|n| n.id == plan.me);
            ChunkPlan {
                id: entry.id,
                received_ms: entry
                    .received
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                write_targets,
                mine,
                holders: HashSet::new(),
                peers_agree: true,
            }
        })
        .collect();
    ask_peers(node, plan, &mut chunks).await;

    let outcomes: Vec<bool> = stream::iter(chunks)
        .map(|chunk| repair_chunk(node, plan, limiter, chunk))
        .buffer_unordered(PUSHES_IN_FLIGHT)
        .collect()
        .await;
    outcomes.into_iter().filter(|&under| under).count() as u64
}

/// Asks every peer named in `chunks` which of its chunks it holds (one
/// call per peer), filling `holders` and `peers_agree`.
async fn ask_peers(node: &Node, plan: &Plan, chunks: &mut [ChunkPlan]) {
    let mut asks: HashMap<NodeId, (String, Vec<usize>)> = HashMap::new();
    for (index, chunk) in chunks.iter().enumerate() {
        for (peer, addr) in chunk.peers(&plan.me) {
            asks.entry(peer.clone())
                .or_insert_with(|| (addr.clone(), Vec::new()))
                .1
                .push(index);
        }
    }
    let answers = futures::future::join_all(asks.into_iter().map(|(peer, (addr, indexes))| {
        let ids: Vec<ChunkId> = indexes.iter().map(|&i| chunks[i].id).collect();
        async move {
            let answer = node.peers.has_detailed(&addr, &ids, false).await;
            (peer, indexes, answer)
        }
    }))
    .await;
    for (peer, indexes, answer) in answers {
        match answer {
            Ok(answer) => {
                let agrees = answer.epoch == plan.epoch;
                for (&index, present) in indexes.iter().zip(answer.present) {
                    if present {
                        chunks[index].holders.insert(peer.clone());
                    }
                    chunks[index].peers_agree &= agrees;
                }
            }
            Err(e) => {
                tracing::debug!(%peer, %e, "peer did not answer the presence call");
                for &index in &indexes {
                    chunks[index].peers_agree = false;
                }
            }
        }
    }
}

/// Pushes, hands off and counts one chunk; true if it is under-replicated
/// and this node answers for it.
async fn repair_chunk(
    node: &Node,
    plan: &Plan,
    limiter: &RateLimiter,
    mut chunk: ChunkPlan,
) -> bool {
    let missing: Vec<(NodeId, String)> = chunk
        .peers(&plan.me)
        .filter(|(peer, _)| !chunk.holders.contains(peer))
        .cloned()
        .collect();
    let answers_for_it = chunk.answered_by(&plan.me);
    if !missing.is_empty() && answers_for_it {
        let store = node.store.clone();
        let id = chunk.id;
        let data = match tokio::task::spawn_blocking(move || store.read(&id)).await {
            Ok(Ok(Some(data))) => data,
            Ok(Ok(None)) => return false, // deleted meanwhile (collected, handed off)
            Ok(Err(e)) => {
                tracing::error!(chunk = %id, %e, "cannot read chunk to push it");
                return false;
            }
            Err(e) => {
                tracing::error!(chunk = %id, %e, "read task failed");
                return false;
            }
        };
        for (peer, addr) in missing {
            limiter.take(data.len() as u64).await;
            let pushed = node
                .peers
                .put_received(&addr, &chunk.id, data.clone(), Some(chunk.received_ms))
                .await;
            match pushed {
                Ok(()) => {
                    chunk.holders.insert(peer);
                    let stats = &node.stats;
                    stats.pushed_chunks_total.fetch_add(1, Ordering::Relaxed);
                    stats
                        .pushed_bytes_total
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    counter!("cairn_repair_pushed_chunks_total").increment(1);
                    counter!("cairn_repair_pushed_bytes_total").increment(data.len() as u64);
                }
                Err(e) if e.code == Some(ErrorCode::HashMismatch) => {
                    // The peer hashed what we sent: our copy is bad.
                    node.handle_corrupt(chunk.id, "repair").await;
                    return false;
                }
                Err(e) => {
                    tracing::debug!(chunk = %chunk.id, %peer, %e, "push failed; the next pass retries");
                }
            }
        }
    }
    let on_targets = chunk.holders.len() + usize::from(chunk.mine);
    if !chunk.mine
        && plan.may_hand_off
        && chunk.peers_agree
        && chunk.holders.len() >= plan.replication
    {
        let store = node.store.clone();
        let id = chunk.id;
        match tokio::task::spawn_blocking(move || store.remove(&id)).await {
            Ok(Ok(true)) => {
                node.stats.handed_off_total.fetch_add(1, Ordering::Relaxed);
                counter!("cairn_repair_handed_off_chunks_total").increment(1);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(chunk = %id, %e, "cannot delete a handed-off chunk"),
            Err(e) => tracing::error!(chunk = %id, %e, "delete task failed"),
        }
        return false;
    }
    if on_targets >= plan.replication {
        return false;
    }
    // Under-replicated: counted by the node that answers for it only.
    answers_for_it
}
