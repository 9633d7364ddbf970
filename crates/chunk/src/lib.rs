//! The Cairn chunk server: stores immutable, content-addressed chunks on
//! local disk, serves them over HTTP, and keeps them where they belong.
//!
//! - `store.rs`: the on-disk layout and durable writes
//! - `aligned.rs`: the `O_DIRECT`-aligned buffer a chunk's body arrives in
//! - `server.rs`: the chunk data API (`PUT`/`GET`/`HEAD /v1/chunks/{id}`, the
//!   batch presence call, corrupt-copy reports, health, metrics)
//! - `node.rs`: what the tasks share (map view, counters, corrupt handling)
//! - `membership.rs`: registration, heartbeats, map refresh
//! - `repair.rs`, `scrub.rs`, `collect.rs`: the three background loops

pub mod aligned;
pub mod collect;
pub mod limits;
pub mod membership;
pub mod node;
pub mod repair;
pub mod scrub;
pub mod server;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_client::{ChunkClient, MetaClient};

pub use store::ChunkStore;

#[derive(Debug, Clone)]
pub struct ChunkConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Metadata service address (`host:port`), or every member's, comma-separated.
    pub meta: String,
    /// The cluster token (`cairn_proto::api::cluster_token` of the secret),
    /// without which the metadata service refuses this node.
    pub cluster_token: Option<String>,
    /// Checks the capabilities clients present (derived from the cluster
    /// secret). `None`: chunk calls are not checked (said at start).
    pub capability_key: Option<cairn_proto::api::CapabilityKey>,
    /// The certificate this server presents; `None`: plain HTTP.
    pub tls: Option<cairn_transport::ServerTls>,
    /// How this server calls the metadata service and its peers.
    pub client_tls: cairn_transport::ClientTls,
    pub zone: String,
    /// Placement weight and the most bytes of chunks to hold; `None` means
    /// the size of the disk under `data_dir` (and no limit but the disk).
    pub capacity_bytes: Option<u64>,
    /// Free disk space to leave for everything else.
    pub reserve_bytes: u64,
    pub heartbeat_interval: Duration,
    pub repair: repair::RepairConfig,
    /// Time between the starts of two scrub passes.
    pub scrub_interval: Duration,
    pub scrub_rate_bytes_per_second: u64,
    /// An unreferenced chunk is deleted only after it has been here this long.
    pub collect_grace: Duration,
}

/// Runs a chunk server until `shutdown` resolves.
pub async fn run(
    config: ChunkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = ChunkStore::open(&config.data_dir)
        .with_context(|| format!("cannot open chunk store in {}", config.data_dir.display()))?
        .with_limits(store::SpaceLimits {
            capacity_bytes: config.capacity_bytes,
            reserve_bytes: config.reserve_bytes,
        });
    let store = Arc::new(store);
    cairn_transport::check_tls_settings(config.tls.as_ref(), &config.client_tls)?;
    let listener = cairn_transport::bind(&config.listen).await?;
    let addr = listener.local_addr()?.to_string();
    let capacity_bytes = match config.capacity_bytes {
        Some(bytes) => bytes,
        None => store::disk_size_bytes(&config.data_dir)
            .context("cannot read the disk size; give --capacity")?,
    };
    tracing::info!(
        node = %store.node_id(),
        %addr,
        data_dir = %config.data_dir.display(),
        transport = if config.tls.is_some() { "TLS" } else { "plain HTTP" },
        "chunk server ready"
    );
    if config.tls.is_none() {
        cairn_transport::warn_plain_http(&addr);
    }
    let node = Arc::new(node::Node::new(
        store,
        MetaClient::new(&config.meta)
            .with_cluster_token(config.cluster_token.clone())
            .with_tls(config.client_tls.clone()),
        ChunkClient::new()
            .with_cluster_token(config.cluster_token.clone())
            .with_tls(config.client_tls.clone()),
    ));
    if config.capability_key.is_none() {
        tracing::warn!(
            "no --cluster-secret-file: this chunk server serves and stores chunks for anyone who can reach {addr}"
        );
    }
    let registration = membership::Registration {
        addr,
        zone: config.zone.clone(),
        capacity_bytes,
        heartbeat_interval: config.heartbeat_interval,
    };
    let tasks = [
        tokio::spawn(membership::keep_registered(node.clone(), registration)),
        tokio::spawn(repair::run(node.clone(), config.repair)),
        tokio::spawn(scrub::run(
            node.clone(),
            scrub::ScrubConfig {
                interval: config.scrub_interval,
                rate_bytes_per_second: config.scrub_rate_bytes_per_second,
                state_file: config.data_dir.join("scrub_started"),
            },
        )),
        tokio::spawn(collect::run(node.clone(), config.collect_grace)),
    ];
    let access = server::Access {
        cluster_token: config.cluster_token.clone(),
        capability_key: config.capability_key.clone(),
    };
    let app = cairn_telemetry::instrument(server::router(node, access));
    let result = cairn_transport::serve(
        listener,
        app,
        config.tls.clone(),
        cairn_transport::Limits::default(),
        shutdown,
    )
    .await
    .context("chunk HTTP server failed");
    for task in tasks {
        task.abort();
    }
    tracing::info!("chunk server stopped");
    result
}
