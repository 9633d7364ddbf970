//! The scrubber: re-hash every local chunk, at a bounded rate, once per
//! `interval` (the time between the starts of two passes). A corrupt copy is
//! moved to quarantine and replaced from a good replica
//! ([`Node::handle_corrupt`]).
//!
//! The start of the last pass is kept in `DIR/scrub_started` so a restart
//! does not begin a new full pass (a 7-day interval would otherwise restart
//! with every upgrade).
//!
//! Cost sketch: hashing runs at ~1 GiB/s a core, so the rate limit, not the
//! CPU, sets the pace: 1 TiB at the default 32 MiB/s takes about 9 hours,
//! well inside the default 7-day interval.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_telemetry::counter;

use crate::node::{Node, RateLimiter};
use crate::store::SHARDS;

#[derive(Debug, Clone)]
pub struct ScrubConfig {
    pub interval: Duration,
    pub rate_bytes_per_second: u64,
    /// Where the start time of the last pass is kept.
    pub state_file: PathBuf,
}

pub async fn run(node: Arc<Node>, config: ScrubConfig) {
    let limiter = RateLimiter::new(config.rate_bytes_per_second);
    loop {
        let wait = read_last_start(&config.state_file)
            .and_then(|last| last.checked_add(config.interval))
            .and_then(|next| next.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        write_last_start(&config.state_file, SystemTime::now());
        pass(&node, &limiter).await;
    }
}

async fn pass(node: &Node, limiter: &RateLimiter) {
    let stats = &node.stats;
    stats
        .scrub_pass_total
        .store(node.store.chunk_count(), Ordering::Relaxed);
    stats.scrub_pass_done.store(0, Ordering::Relaxed);
    let mut corrupt = 0u64;
    for shard in 0..SHARDS {
        let store = node.store.clone();
        let entries = match tokio::task::spawn_blocking(move || store.list_shard(shard)).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                tracing::error!(shard, %e, "scrub cannot list chunks");
                continue;
            }
            Err(e) => {
                tracing::error!(%e, "scrub list task failed");
                continue;
            }
        };
        for entry in entries {
            limiter.take(entry.size_bytes).await;
            let store = node.store.clone();
            let id = entry.id;
            match tokio::task::spawn_blocking(move || store.verify(&id)).await {
                Ok(Ok(Some(false))) => {
                    corrupt += 1;
                    node.handle_corrupt(id, "scrub").await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    // An unreadable file is as bad as a corrupt one.
                    tracing::error!(chunk = %id, %e, "scrub cannot read chunk");
                    corrupt += 1;
                    node.handle_corrupt(id, "scrub").await;
                }
                Err(e) => tracing::error!(%e, "scrub task failed"),
            }
            stats.scrub_checked_total.fetch_add(1, Ordering::Relaxed);
            stats.scrub_pass_done.fetch_add(1, Ordering::Relaxed);
            counter!("cairn_scrub_checked_chunks_total").increment(1);
        }
    }
    stats.scrub_passes_total.fetch_add(1, Ordering::Relaxed);
    let checked = stats.scrub_pass_done.swap(0, Ordering::Relaxed);
    stats.scrub_pass_total.store(0, Ordering::Relaxed);
    tracing::info!(checked, corrupt, "scrub pass finished");
}

fn read_last_start(path: &PathBuf) -> Option<SystemTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let ms: u64 = text.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

fn write_last_start(path: &PathBuf, at: SystemTime) {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    // Losing this file only makes the next start scrub early: no fsync.
    if let Err(e) = std::fs::write(path, ms.to_string()) {
        tracing::warn!(path = %path.display(), %e, "cannot record the scrub start time");
    }
}
