//! What the chunk server's tasks share: the store, this node's view of the
//! cluster map, peers, counters, and the handling of a corrupt copy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{ChunkClient, MetaClient};
use cairn_placement::Ring;
use cairn_proto::api::{NodeReport, RepairReport, ScrubReport};
use cairn_proto::{ChunkId, ClusterMap, NodeState, DEFAULT_CHUNK_SIZE_BYTES, MAX_CHUNK_SIZE_BYTES};
use cairn_telemetry::{counter, gauge};
use tokio::sync::{watch, Notify};

use crate::limits::MAX_RECOVERIES;
use crate::store::ChunkStore;

pub struct Node {
    pub store: Arc<ChunkStore>,
    pub meta: MetaClient,
    pub peers: ChunkClient,
    /// The newest cluster map this node has seen (`None` before the first).
    map: watch::Sender<Option<Arc<ClusterMap>>>,
    pub stats: Stats,
    /// Wakes the repair loop at once (`POST /v1/repair`, `cairn fsck --repair`).
    pub repair_wake: Notify,
    /// Reported `full` (with hysteresis: see [`Node::report`]).
    full: AtomicBool,
    /// Replacements of corrupt copies under way: each holds a chunk in
    /// memory, and reports of corruption may come in bursts.
    recoveries: tokio::sync::Semaphore,
}

/// Counters behind the heartbeat report; `_total` ones only grow.
#[derive(Default)]
pub struct Stats {
    pub repair_epoch: AtomicU64,
    pub repair_passes_total: AtomicU64,
    pub repair_pass_done: AtomicU64,
    pub repair_pass_total: AtomicU64,
    pub under_replicated: AtomicU64,
    pub pushed_chunks_total: AtomicU64,
    pub pushed_bytes_total: AtomicU64,
    pub handed_off_total: AtomicU64,
    pub scrub_passes_total: AtomicU64,
    pub scrub_pass_done: AtomicU64,
    pub scrub_pass_total: AtomicU64,
    pub scrub_checked_total: AtomicU64,
    pub corrupt_total: AtomicU64,
    pub replaced_total: AtomicU64,
    pub collected_total: AtomicU64,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Node {
    /// `peers` carries the cluster token, which proves to the other chunk
    /// servers that this is one of them.
    pub fn new(store: Arc<ChunkStore>, meta: MetaClient, peers: ChunkClient) -> Node {
        Node {
            store,
            meta,
            peers,
            map: watch::Sender::new(None),
            stats: Stats::default(),
            repair_wake: Notify::new(),
            full: AtomicBool::new(false),
            recoveries: tokio::sync::Semaphore::new(MAX_RECOVERIES),
        }
    }

    pub fn map(&self) -> Option<Arc<ClusterMap>> {
        self.map.borrow().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.map.borrow().as_ref().map_or(0, |m| m.epoch)
    }

    /// Receives every newer map.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<ClusterMap>>> {
        self.map.subscribe()
    }

    /// Adopts `map` if it is newer than the one held.
    pub fn offer_map(&self, map: ClusterMap) {
        self.map.send_if_modified(|held| {
            if held.as_ref().is_some_and(|h| h.epoch >= map.epoch) {
                return false;
            }
            tracing::info!(epoch = map.epoch, "new cluster map");
            *held = Some(Arc::new(map));
            true
        });
    }

    /// This node's state in the map it holds; `None` if it is not in it.
    pub fn state(&self) -> Option<NodeState> {
        let map = self.map.borrow();
        map.as_ref()?.node(self.store.node_id()).map(|n| n.state)
    }

    /// The report sent with each heartbeat; also refreshes the gauges.
    ///
    /// `full` turns on when the room left is under two chunks and off only
    /// when it is back over four, so a node near the edge does not flip
    /// between `up` and `full` on every chunk.
    pub fn report(&self) -> NodeReport {
        let chunk_size = self
            .map()
            .map_or(DEFAULT_CHUNK_SIZE_BYTES, |m| m.chunk_size_bytes);
        let room = self.store.room_bytes();
        let was_full = self.full.load(Ordering::Relaxed);
        let full = if was_full {
            room < 4 * chunk_size
        } else {
            room < 2 * chunk_size
        };
        if full != was_full {
            self.full.store(full, Ordering::Relaxed);
            tracing::warn!(
                room_bytes = room,
                full,
                "free space crossed the full threshold"
            );
        }
        let s = &self.stats;
        let report = NodeReport {
            used_bytes: self.store.used_bytes(),
            chunk_count: self.store.chunk_count(),
            available_bytes: room,
            full,
            repair: RepairReport {
                epoch: load(&s.repair_epoch),
                passes_total: load(&s.repair_passes_total),
                pass_done_chunks: load(&s.repair_pass_done),
                pass_total_chunks: load(&s.repair_pass_total),
                under_replicated_chunks: load(&s.under_replicated),
                pushed_chunks_total: load(&s.pushed_chunks_total),
                pushed_bytes_total: load(&s.pushed_bytes_total),
                handed_off_chunks_total: load(&s.handed_off_total),
            },
            scrub: ScrubReport {
                passes_total: load(&s.scrub_passes_total),
                pass_done_chunks: load(&s.scrub_pass_done),
                pass_total_chunks: load(&s.scrub_pass_total),
                checked_chunks_total: load(&s.scrub_checked_total),
                corrupt_chunks_total: load(&s.corrupt_total),
                replaced_chunks_total: load(&s.replaced_total),
            },
            collected_chunks_total: load(&s.collected_total),
        };
        gauge!("cairn_chunk_held_chunks").set(report.chunk_count as f64);
        gauge!("cairn_chunk_used_bytes").set(report.used_bytes as f64);
        gauge!("cairn_chunk_room_bytes").set(room as f64);
        gauge!("cairn_repair_queue_chunks").set(
            report
                .repair
                .pass_total_chunks
                .saturating_sub(report.repair.pass_done_chunks) as f64,
        );
        gauge!("cairn_repair_under_replicated_chunks")
            .set(report.repair.under_replicated_chunks as f64);
        let scrub_total = report.scrub.pass_total_chunks.max(1) as f64;
        gauge!("cairn_scrub_pass_progress_ratio")
            .set(report.scrub.pass_done_chunks as f64 / scrub_total);
        report
    }

    /// Whether this node should hold `id` under the map it has: it is one
    /// of the chunk's targets or write targets.
    pub fn should_hold(&self, id: &ChunkId) -> bool {
        let Some(map) = self.map() else { return true };
        let ring = Ring::new(&map);
        let rf = map.replication as usize;
        let me = self.store.node_id();
        ring.targets(id, rf).iter().any(|n| &n.id == me)
            || ring.write_targets(id, rf).iter().any(|n| &n.id == me)
    }

    /// A local copy of `id` failed its hash check (found by `who`): move it
    /// to quarantine and, if this node should hold the chunk, fetch a good
    /// copy from a peer.
    pub async fn handle_corrupt(&self, id: ChunkId, who: &'static str) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.quarantine(&id)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return, // already handled, or gone
            Ok(Err(e)) => {
                tracing::error!(chunk = %id, %e, "cannot quarantine a corrupt chunk");
                return;
            }
            Err(e) => {
                tracing::error!(chunk = %id, %e, "quarantine task failed");
                return;
            }
        }
        self.stats.corrupt_total.fetch_add(1, Ordering::Relaxed);
        counter!("cairn_chunk_corrupt_total", "found_by" => who).increment(1);
        tracing::error!(chunk = %id, found_by = who, "corrupt chunk moved to quarantine");
        if !self.should_hold(&id) {
            return; // its targets hold it; nothing to replace here
        }
        match self.fetch_good_copy(&id).await {
            Ok(()) => {
                self.stats.replaced_total.fetch_add(1, Ordering::Relaxed);
                counter!("cairn_chunk_replaced_total").increment(1);
                tracing::info!(chunk = %id, "corrupt chunk replaced from a good replica");
            }
            Err(e) => {
                tracing::error!(chunk = %id, "cannot replace corrupt chunk yet ({e}); repair will retry")
            }
        }
    }

    /// Fetches `id` from a peer, checks it and stores it.
    async fn fetch_good_copy(&self, id: &ChunkId) -> Result<(), String> {
        let _permit = self
            .recoveries
            .acquire()
            .await
            .expect("semaphore is never closed");
        let map = self.map().ok_or("no cluster map yet")?;
        let ring = Ring::new(&map);
        let me = self.store.node_id();
        let mut failures = Vec::new();
        for peer in ring.read_order(id, map.replication as usize) {
            if &peer.id == me {
                continue;
            }
            let received = match self
                .peers
                .get(&peer.addr, id, None, None, MAX_CHUNK_SIZE_BYTES as usize)
                .await
            {
                Ok(received) => received,
                Err(e) => {
                    failures.push(format!("{}: {e}", peer.addr));
                    continue;
                }
            };
            if received.hash() != id {
                failures.push(format!("{}: corrupt copy", peer.addr));
                continue;
            }
            let store = self.store.clone();
            let id = *id;
            let stored = tokio::task::spawn_blocking(move || {
                store
                    .write(&id, &received.into_bytes())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?;
            match stored {
                Ok(_) => return Ok(()),
                Err(e) => failures.push(format!("{}: {e}", peer.addr)),
            }
        }
        Err(if failures.is_empty() {
            "no peer to fetch from".to_string()
        } else {
            failures.join("; ")
        })
    }
}

/// Paces background work to `bytes_per_second` (a virtual clock: each
/// `take` reserves the next slot). Idle time is not saved up, so a burst
/// after a quiet spell is not faster than the rate.
pub struct RateLimiter {
    bytes_per_second: u64,
    next_free: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        assert!(bytes_per_second > 0, "a rate limit must be positive");
        RateLimiter {
            bytes_per_second,
            next_free: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be moved.
    pub async fn take(&self, bytes: u64) {
        let start = {
            let mut next_free = self.next_free.lock().await;
            let start = (*next_free).max(Instant::now());
            let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            *next_free = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}
