//! The metadata service's process: start-up and shutdown, and the HTTP API
//! (routes in `docs/api.md`) assembled from its parts:
//! - `http.rs`: errors as responses, extractors
//! - `core.rs`: the running member, proposing and consistent reads
//! - `caller.rs`: who is calling (sessions, the cluster token)
//! - `routing.rs`: calls sent to the leader, members' calls guarded
//! - `fs_routes.rs`, `user_routes.rs`, `cluster_routes.rs`: the routes
//! - `background.rs`: the leader's own work (liveness, purges, ...)
//! - `limiter.rs`: the login limiter
//!
//! Liveness is soft state on the leader: chunk servers heartbeat it; only a
//! change of a node's state goes through the log (rules in `liveness.rs`).

mod background;
mod caller;
mod cluster_routes;
mod core;
mod fs_routes;
mod http;
mod key_routes;
mod limiter;
mod routing;
mod user_routes;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use cairn_proto::api::CapabilityKey;
use cairn_proto::{ApiError, ErrorCode};
use openraft::Raft;

use crate::group;
use crate::limits::{
    MAX_BODY_BYTES, MAX_CAPABILITY_TTL, MAX_CONCURRENT_HASHES, MAX_PAYLOAD_ENTRIES,
    MAX_RAFT_BODY_BYTES, MIN_CAPABILITY_TTL, SNAPSHOT_PIECE_BYTES,
};
use crate::liveness::Timing;
use crate::network::HttpNetworkFactory;
use crate::records::StateError;
use crate::store::{open_database, LogStore, RaftNodeId, StateMachine};

use self::core::Meta;
use self::http::HttpError;
use self::limiter::LoginLimiter;

pub use self::core::{now_ms, now_ns};

#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// This member's Raft id (`--id`, 1 up).
    pub id: RaftNodeId,
    /// Every member of a group being formed, this one included (`--peers`).
    /// Empty: a one-member group reached at `listen`.
    pub peers: BTreeMap<RaftNodeId, String>,
    /// Never form a group: wait to be added to an existing one
    /// (`cairn meta-admin add-voter`). For a new member of a running group.
    pub join: bool,
    /// Build a snapshot (and purge the log before it) every this many
    /// applied entries.
    pub snapshot_logs: u64,
    /// A follower that hears nothing from the leader for between one and
    /// two of these stands for election.
    pub election_timeout: Duration,
    /// [`cairn_proto::api::cluster_token`] of the cluster secret: required
    /// of chunk servers registering and heartbeating and of members talking
    /// Raft, and sent with this member's own Raft messages. `None`: anyone
    /// who can reach the port may join (said loudly at start).
    pub cluster_token: Option<String>,
    /// Signs the chunk capabilities handed to clients (derived from the
    /// cluster secret). `None`: chunk servers check none either.
    pub capability_key: Option<CapabilityKey>,
    /// Seals S3 secret access keys (derived from the cluster secret).
    /// `None`: access keys cannot be made.
    pub sealing_key: Option<crate::auth::SealingKey>,
    /// How long a chunk capability is good for (`--capability-ttl`).
    pub capability_ttl: Duration,
    /// The certificate this member presents; `None`: plain HTTP.
    pub tls: Option<cairn_transport::ServerTls>,
    /// How this member calls the others (Raft, group formation): with the
    /// cluster's CA when the cluster speaks TLS.
    pub client_tls: cairn_transport::ClientTls,
    /// Where the first admin's password is read from, or written to (mode
    /// 0600) when the cluster has no user yet [default: DATA_DIR/admin.password].
    pub admin_password_file: Option<PathBuf>,
    /// Set the cluster's replication factor (kept in the map); `None` keeps
    /// what the map has (3 on a new cluster).
    pub replication: Option<u32>,
    pub chunk_size_bytes: Option<u64>,
    /// A node silent this long is marked down.
    pub down_after: Duration,
    /// A down node must heartbeat steadily this long before it is up again.
    pub up_after: Duration,
}

/// Runs the metadata service until `shutdown` resolves.
pub async fn run(
    config: MetaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.id == 0 {
        anyhow::bail!("--id must be 1 or more");
    }
    if !config.peers.is_empty() && !config.peers.contains_key(&config.id) {
        anyhow::bail!(
            "--peers must list this member too (--id {}), as in {}=HOST:PORT",
            config.id,
            config.id
        );
    }
    if !(MIN_CAPABILITY_TTL..=MAX_CAPABILITY_TTL).contains(&config.capability_ttl) {
        anyhow::bail!(
            "--capability-ttl must be between {:?} and {:?}; got {:?}",
            MIN_CAPABILITY_TTL,
            MAX_CAPABILITY_TTL,
            config.capability_ttl
        );
    }
    if config.snapshot_logs == 0 {
        anyhow::bail!("--snapshot-logs must be 1 or more");
    }
    if !(Duration::from_millis(50)..=Duration::from_secs(60)).contains(&config.election_timeout) {
        anyhow::bail!(
            "--election-timeout must be between 50ms and 60s; got {:?}",
            config.election_timeout
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    cairn_transport::check_tls_settings(config.tls.as_ref(), &config.client_tls)?;
    let listener = cairn_transport::bind(&config.listen).await?;
    let listen_addr = listener.local_addr()?.to_string();
    let db_path = config.data_dir.join("meta.redb");
    let db = open_database(&db_path).map_err(|e| match e {
        StateError::Storage(redb::Error::DatabaseAlreadyOpen) => anyhow::anyhow!(
            "{} is in use by another cairn meta process; stop it or give another --data-dir",
            db_path.display()
        ),
        other => anyhow::anyhow!(
            "cannot open metadata database {}: {other}",
            db_path.display()
        ),
    })?;

    let election_ms = config.election_timeout.as_millis() as u64;
    let raft_config = openraft::Config {
        cluster_name: "cairn".into(),
        // Leader heartbeats 5 times per election timeout; a follower
        // waits between one and two timeouts before it stands.
        heartbeat_interval: (election_ms / 5).max(10),
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        snapshot_max_chunk_size: SNAPSHOT_PIECE_BYTES,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.snapshot_logs.min(1_000),
        ..Default::default()
    };
    let raft_config = Arc::new(
        raft_config
            .validate()
            .context("invalid raft configuration")?,
    );
    let raft = Raft::new(
        config.id,
        raft_config,
        HttpNetworkFactory::new(config.cluster_token.clone(), config.client_tls.clone()),
        LogStore::new(db.clone()),
        StateMachine::new(db.clone()),
    )
    .await
    .context("cannot start the raft node")?;
    let peers = if config.peers.is_empty() {
        BTreeMap::from([(config.id, listen_addr.clone())])
    } else {
        config.peers.clone()
    };

    let admin_password_file = config
        .admin_password_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("admin.password"));
    let meta = Arc::new(Meta {
        id: config.id,
        scheme: config.client_tls.scheme(),
        cluster_token: config.cluster_token.clone(),
        capability_key: config.capability_key.clone(),
        sealing_key: config.sealing_key.clone(),
        capability_ttl: config.capability_ttl,
        raft,
        db,
        timing: Timing {
            down_after: config.down_after,
            up_after: config.up_after,
        },
        liveness: Mutex::default(),
        logins: LoginLimiter::default(),
        hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
        purge_wanted: tokio::sync::Notify::new(),
        log_applied_in_term: AtomicU64::new(0),
        writes: Arc::default(),
    });
    // Serve first: the other members must reach this one to form the group.
    if config.join {
        if !meta.raft.is_initialized().await? {
            tracing::info!(
                member = config.id,
                "waiting to be added to a metadata group (cairn meta-admin add-voter --id {} --addr {listen_addr})",
                config.id
            );
        }
    } else if peers.len() == 1 {
        // A group of one forms at once (or was formed before).
        group::form(
            meta.raft.clone(),
            config.id,
            peers.clone(),
            config.cluster_token.clone(),
            config.client_tls.clone(),
        )
        .await;
        meta.raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .next()
                        .is_some()
                },
                "the membership is known",
            )
            .await
            .context("this metadata server did not load its membership within 30s")?;
    } else {
        tokio::spawn(group::form(
            meta.raft.clone(),
            config.id,
            peers.clone(),
            config.cluster_token.clone(),
            config.client_tls.clone(),
        ));
    }
    if group::sole_voter(&meta.raft.metrics().borrow(), config.id) {
        // It leads at once; the flags apply before it serves, so that its
        // first clients see them.
        meta.raft
            .wait(Some(Duration::from_secs(30)))
            .current_leader(config.id, "this member leads its group of one")
            .await
            .context("this metadata server did not become leader within 30s")?;
        background::set_params(&meta, config.replication, config.chunk_size_bytes)
            .await
            .map_err(anyhow::Error::msg)?;
        user_routes::bootstrap_admin(&meta, &admin_password_file).await?;
    } else {
        tokio::spawn(background::bootstrap_when_leading(
            meta.clone(),
            admin_password_file.clone(),
        ));
        // A member of a larger group (which may have started as a group of
        // one and grown): whichever member leads applies the flags.
        tokio::spawn(background::apply_params(
            meta.clone(),
            config.replication,
            config.chunk_size_bytes,
        ));
    }
    tokio::spawn(background::watch_liveness(meta.clone()));
    tokio::spawn(background::purge_removed_trees(meta.clone()));

    if config.cluster_token.is_none() {
        tracing::warn!(
            "no --cluster-secret-file: any process that can reach {listen_addr} can join as a storage node \
             or a metadata member; give every process of the cluster the same secret file"
        );
    }
    tracing::info!(
        listen = %listen_addr,
        member = config.id,
        members = peers.len(),
        data_dir = %config.data_dir.display(),
        transport = if config.tls.is_some() { "TLS" } else { "plain HTTP" },
        "metadata service serving"
    );
    if config.tls.is_none() {
        cairn_transport::warn_plain_http(&listen_addr);
    }
    let app = cairn_telemetry::instrument(router(meta.clone()));
    cairn_transport::serve(
        listener,
        app,
        config.tls.clone(),
        cairn_transport::Limits::default(),
        shutdown,
    )
    .await
    .context("metadata HTTP server failed")?;
    meta.raft.shutdown().await.ok();
    tracing::info!("metadata service stopped");
    Ok(())
}

/// The API: every route behind the leader routing, and the members' own
/// calls (served by any member, to cluster members only).
fn router(meta: Arc<Meta>) -> Router {
    Router::new()
        .route("/v1/status", get(cluster_routes::status))
        .route("/v1/map", get(cluster_routes::map))
        .route(
            "/v1/nodes/register",
            post(cluster_routes::register).layer(middleware::from_fn_with_state(
                meta.clone(),
                routing::require_cluster_token,
            )),
        )
        .route(
            "/v1/nodes/heartbeat",
            post(cluster_routes::heartbeat).layer(middleware::from_fn_with_state(
                meta.clone(),
                routing::require_cluster_token,
            )),
        )
        .route("/v1/nodes/drain", post(cluster_routes::drain_node))
        .route("/v1/nodes/undrain", post(cluster_routes::undrain_node))
        .route("/v1/nodes/remove", post(cluster_routes::remove_node))
        .route("/v1/chunks/referenced", post(cluster_routes::referenced))
        .route("/v1/chunks/grant", post(fs_routes::grant))
        .route("/v1/fs/stat", get(fs_routes::stat))
        .route("/v1/fs/list", get(fs_routes::list))
        .route("/v1/fs/walk", get(fs_routes::walk))
        .route("/v1/fs/xattrs", get(fs_routes::xattrs))
        .route("/v1/fs/mkdir", post(fs_routes::mkdir))
        .route("/v1/fs/mknod", post(fs_routes::make_node))
        .route("/v1/fs/link", post(fs_routes::link))
        .route("/v1/fs/release", post(fs_routes::release))
        .route("/v1/fs/commit", post(fs_routes::commit))
        .route("/v1/fs/remove", post(fs_routes::remove))
        .route("/v1/fs/rename", post(fs_routes::rename))
        .route("/v1/fs/copy", post(fs_routes::copy))
        .route("/v1/fs/chmod", post(fs_routes::chmod))
        .route("/v1/fs/chown", post(fs_routes::chown))
        .route("/v1/fs/times", post(fs_routes::times))
        .route("/v1/fs/xattr/set", post(fs_routes::set_xattr))
        .route("/v1/fs/xattr/remove", post(fs_routes::remove_xattr))
        .route("/v1/auth/login", post(user_routes::login))
        .route("/v1/auth/logout", post(user_routes::logout))
        .route("/v1/auth/whoami", get(user_routes::whoami))
        .route("/v1/users", get(user_routes::list_users))
        .route("/v1/users/add", post(user_routes::add_user))
        .route("/v1/users/passwd", post(user_routes::passwd))
        .route("/v1/users/remove", post(user_routes::remove_user))
        .route("/v1/users/revoke", post(user_routes::revoke))
        .route("/v1/keys", get(key_routes::list_keys))
        .route("/v1/keys/create", post(key_routes::create_key))
        .route("/v1/keys/remove", post(key_routes::remove_key))
        .route("/v1/keys/secret", get(key_routes::key_secret))
        .route("/v1/meta/members/add", post(cluster_routes::add_member))
        .route(
            "/v1/meta/members/remove",
            post(cluster_routes::remove_member),
        )
        .route("/v1/meta/snapshot", post(cluster_routes::snapshot))
        .fallback(|| async {
            HttpError(ApiError::new(
                ErrorCode::NotFound,
                "no such API route; see docs/api.md",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            meta.clone(),
            routing::route_to_leader,
        ))
        // Served by every member, leader or not; only to cluster members.
        .merge(
            Router::new()
                .route("/v1/meta/hello", get(cluster_routes::hello))
                .route("/v1/raft/append", post(cluster_routes::raft_append))
                .route("/v1/raft/vote", post(cluster_routes::raft_vote))
                .route("/v1/raft/snapshot", post(cluster_routes::raft_snapshot))
                .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
                .layer(middleware::from_fn_with_state(
                    meta.clone(),
                    routing::require_cluster_token,
                )),
        )
        .route("/v1/health", get(cluster_routes::health))
        .with_state(meta)
}
