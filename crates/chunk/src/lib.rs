//! The Cairn chunk server: stores immutable, content-addressed chunks on
//! local disk and serves them over HTTP.
//!
//! - `store.rs`: the on-disk layout and durable writes
//! - `server.rs`: the chunk data API (`PUT`/`GET`/`HEAD /v1/chunks/{id}`, the
//!   batch presence call, health)
//! - `membership.rs`: registration and heartbeats to the metadata service

pub mod membership;
pub mod server;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use store::ChunkStore;

#[derive(Debug, Clone)]
pub struct ChunkConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Metadata service address (`host:port`).
    pub meta: String,
    pub zone: String,
    /// Placement weight; `None` means the size of the disk under `data_dir`.
    pub capacity_bytes: Option<u64>,
    pub heartbeat_interval: Duration,
}

/// Runs a chunk server until `shutdown` resolves.
pub async fn run(
    config: ChunkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = ChunkStore::open(&config.data_dir)
        .with_context(|| format!("cannot open chunk store in {}", config.data_dir.display()))?;
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another process using it? choose one with --listen",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?.to_string();
    let capacity_bytes = match config.capacity_bytes {
        Some(bytes) => bytes,
        None => membership::disk_size_bytes(&config.data_dir)
            .context("cannot read the disk size; give --capacity")?,
    };
    tracing::info!(node = %store.node_id(), %addr, data_dir = %config.data_dir.display(), "chunk server ready (plain HTTP)");
    let registration = membership::Registration {
        meta: config.meta.clone(),
        addr,
        zone: config.zone.clone(),
        capacity_bytes,
        heartbeat_interval: config.heartbeat_interval,
    };
    let heartbeats = tokio::spawn(membership::keep_registered(store.clone(), registration));
    let result = axum::serve(listener, server::router(store))
        .with_graceful_shutdown(shutdown)
        .await
        .context("chunk HTTP server failed");
    heartbeats.abort();
    tracing::info!("chunk server stopped");
    result
}
