//! The metadata HTTP/JSON API (routes in `docs/api.md`), node liveness, and
//! the process's start-up and shutdown.
//!
//! Writes are Raft proposals: acknowledged only once committed (by a
//! majority) and applied. Reads first confirm leadership
//! (`ensure_linearizable`), then read the applied state from redb, so a
//! read never misses an acknowledged write. A member that does not lead
//! answers calls that need the leader with a 307 redirect to it (or 503
//! while no leader is elected), except reads sent with `x-cairn-stale-ok`,
//! which it answers from its own applied state.
//!
//! Liveness is soft state on the leader: chunk servers heartbeat it; only a
//! change of a node's state goes through the log (rules in `liveness.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request as HttpRequest, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_proto::api::{
    AddMemberRequest, CapabilityKey, ChmodRequest, ChownRequest, ChunkOp, CommitRequest,
    CommitResponse, GrantRequest, GrantResponse, HeartbeatRequest, HeartbeatResponse, ListResponse,
    MembersResponse, MkdirRequest, MoveRequest, MutationResponse, NodeReport, NodeRequest,
    NodeStatus, ReferencedRequest, ReferencedResponse, RegisterRequest, RemoveMemberRequest,
    RemoveNodeRequest, RemoveRequest, SnapshotResponse, Stat, StatusResponse, MAX_HAS_CHUNKS_IDS,
    REQUEST_ID_HEADER, STALE_OK_HEADER,
};
use cairn_proto::{ApiError, ClusterMap, ErrorCode, FileId, NodeId, NodeState};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{Raft, ServerState};
use redb::{Database, ReadTransaction, ReadableDatabase};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::access::{self, Caller, LoginLimiter};
use crate::auth::AUTH;
use crate::group::{self, Hello};
use crate::liveness::{self, Liveness, Timing};
use crate::network::HttpNetworkFactory;
use crate::state::{self, Command, Output, StateError, CHUNK_REFS, DIRENTS, INODES, SM_META};
use crate::store::{open_database, LogStore, RaftNodeId, StateMachine};
use crate::TypeConfig;

/// The largest request body: a commit of a file with the most chunks
/// allowed (2^18 ids of ~100 JSON bytes each) fits with room to spare.
const MAX_BODY_BYTES: usize = 48 << 20;
/// The largest Raft message: a batch of up to `MAX_PAYLOAD_ENTRIES` log
/// entries, or one snapshot piece (bytes as a JSON array: ~4x its size).
const MAX_RAFT_BODY_BYTES: usize = 256 << 20;
const MAX_PAYLOAD_ENTRIES: u64 = 64;
const SNAPSHOT_PIECE_BYTES: u64 = 4 << 20;
/// How often the leader looks for silent nodes.
const LIVENESS_TICK: Duration = Duration::from_millis(500);
/// How long a write may wait to be committed. A leader cut off from the
/// majority cannot commit; the client then retries elsewhere with the
/// same request id, so a write that commits later still applies once.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a read may wait for a majority to confirm this member leads.
const CONFIRM_LEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a chunk capability is good for: a transfer of one file must
/// finish within it (4 h of 4 MiB chunks at 10 MB/s is 140 GB).
const CAPABILITY_TTL_MS: u64 = 4 * 3600 * 1000;

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

pub(crate) struct Meta {
    id: RaftNodeId,
    /// `http` or `https`: how members are reached (redirects name it).
    scheme: &'static str,
    pub(crate) cluster_token: Option<String>,
    capability_key: Option<CapabilityKey>,
    raft: Raft<TypeConfig>,
    db: Arc<Database>,
    timing: Timing,
    liveness: Mutex<Liveness>,
    pub(crate) logins: LoginLimiter,
    /// Bounds the password hashes computed at once.
    pub(crate) hashing: tokio::sync::Semaphore,
    /// The term in which this member, leading, has applied its whole log
    /// once (0: not yet). From then on its commit index is fresh, and a
    /// consistent read needs only openraft's check (see `confirm_leader`).
    log_applied_in_term: AtomicU64,
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
        raft,
        db,
        timing: Timing {
            down_after: config.down_after,
            up_after: config.up_after,
        },
        liveness: Mutex::default(),
        logins: LoginLimiter::default(),
        hashing: tokio::sync::Semaphore::new(access::MAX_CONCURRENT_HASHES),
        log_applied_in_term: AtomicU64::new(0),
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
        set_params(&meta, config.replication, config.chunk_size_bytes)
            .await
            .map_err(anyhow::Error::msg)?;
        access::bootstrap_admin(&meta, &admin_password_file).await?;
    } else {
        tokio::spawn(bootstrap_when_leading(
            meta.clone(),
            admin_password_file.clone(),
        ));
        // A member of a larger group (which may have started as a group of
        // one and grown): whichever member leads applies the flags.
        tokio::spawn(apply_params(
            meta.clone(),
            config.replication,
            config.chunk_size_bytes,
        ));
    }
    tokio::spawn(watch_liveness(meta.clone()));

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

/// Makes the map's replication and chunk size what the flags ask, once
/// this member leads (any member given the same flags does the same, so
/// whichever leads applies them). Stops once they are set, or once the
/// map, as this member has applied it, already says so.
async fn apply_params(meta: Arc<Meta>, replication: Option<u32>, chunk_size_bytes: Option<u64>) {
    if replication.is_none() && chunk_size_bytes.is_none() {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if meta.raft.metrics().borrow().current_leader == Some(meta.id) {
            match set_params(&meta, replication, chunk_size_bytes).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(%e, "cannot set the cluster parameters from the flags");
                    if e.code == ErrorCode::InvalidArgument {
                        return;
                    }
                }
            }
        } else if let Ok(map) = meta
            .read_local(|txn| state::read_map(&txn.open_table(SM_META)?))
            .await
        {
            let set = replication.is_none_or(|r| r == map.replication)
                && chunk_size_bytes.is_none_or(|c| c == map.chunk_size_bytes);
            if set {
                return;
            }
        }
    }
}

/// Creates the first admin once this member leads, unless another member
/// did (see `access::bootstrap_admin`).
async fn bootstrap_when_leading(meta: Arc<Meta>, password_file: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if meta.raft.metrics().borrow().current_leader == Some(meta.id) {
            match access::bootstrap_admin(&meta, &password_file).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(%e, "cannot create the first admin yet"),
            }
        } else if let Ok(true) = meta
            .read_local(|txn| crate::auth::has_users(&txn.open_table(AUTH)?))
            .await
        {
            return;
        }
    }
}

/// Proposes the flags' replication and chunk size if the map differs.
async fn set_params(
    meta: &Meta,
    replication: Option<u32>,
    chunk_size_bytes: Option<u64>,
) -> Result<(), ApiError> {
    if replication.is_none() && chunk_size_bytes.is_none() {
        return Ok(());
    }
    let map = meta.map(Consistency::Linearizable).await?;
    let wanted = (
        replication.unwrap_or(map.replication),
        chunk_size_bytes.unwrap_or(map.chunk_size_bytes),
    );
    if wanted == (map.replication, map.chunk_size_bytes) {
        return Ok(());
    }
    let command = Command::SetParams {
        replication: wanted.0,
        chunk_size_bytes: wanted.1,
    };
    meta.propose(command, None, None).await?;
    tracing::info!(
        replication = wanted.0,
        chunk_size_bytes = wanted.1,
        "cluster parameters set"
    );
    Ok(())
}

fn router(meta: Arc<Meta>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/map", get(map))
        .route(
            "/v1/nodes/register",
            post(register).layer(middleware::from_fn_with_state(
                meta.clone(),
                require_cluster_token,
            )),
        )
        .route(
            "/v1/nodes/heartbeat",
            post(heartbeat).layer(middleware::from_fn_with_state(
                meta.clone(),
                require_cluster_token,
            )),
        )
        .route("/v1/nodes/drain", post(drain_node))
        .route("/v1/nodes/undrain", post(undrain_node))
        .route("/v1/nodes/remove", post(remove_node))
        .route("/v1/chunks/referenced", post(referenced))
        .route("/v1/chunks/grant", post(grant))
        .route("/v1/fs/stat", get(stat))
        .route("/v1/fs/list", get(list))
        .route("/v1/fs/mkdir", post(mkdir))
        .route("/v1/fs/commit", post(commit))
        .route("/v1/fs/remove", post(remove))
        .route("/v1/fs/rename", post(rename))
        .route("/v1/fs/copy", post(copy))
        .route("/v1/fs/chmod", post(chmod))
        .route("/v1/fs/chown", post(chown))
        .route("/v1/auth/login", post(access::login))
        .route("/v1/auth/logout", post(access::logout))
        .route("/v1/auth/whoami", get(access::whoami))
        .route("/v1/users", get(access::list_users))
        .route("/v1/users/add", post(access::add_user))
        .route("/v1/users/passwd", post(access::passwd))
        .route("/v1/users/remove", post(access::remove_user))
        .route("/v1/users/revoke", post(access::revoke))
        .route("/v1/meta/members/add", post(add_member))
        .route("/v1/meta/members/remove", post(remove_member))
        .route("/v1/meta/snapshot", post(snapshot))
        .fallback(|| async {
            HttpError(ApiError::new(
                ErrorCode::NotFound,
                "no such API route; see docs/api.md",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            meta.clone(),
            route_to_leader,
        ))
        // Served by every member, leader or not; only to cluster members.
        .merge(
            Router::new()
                .route("/v1/meta/hello", get(hello))
                .route("/v1/raft/append", post(raft_append))
                .route("/v1/raft/vote", post(raft_vote))
                .route("/v1/raft/snapshot", post(raft_snapshot))
                .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
                .layer(middleware::from_fn_with_state(
                    meta.clone(),
                    require_cluster_token,
                )),
        )
        .route("/v1/health", get(health))
        .with_state(meta)
}

/// Refuses a request without the cluster token (when this member has one),
/// and logs who tried: joining the cluster or talking Raft needs it.
async fn require_cluster_token(
    State(meta): State<Arc<Meta>>,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    if meta.cluster_token.is_none() {
        return next.run(request).await;
    }
    let reason = match access::cluster_proof(&meta, request.headers()) {
        access::ClusterProof::Valid => return next.run(request).await,
        access::ClusterProof::Absent => "no cluster token",
        access::ClusterProof::Wrong => "wrong cluster token",
    };
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.to_string());
    tracing::warn!(
        %source,
        route = request.uri().path(),
        reason,
        "refused a request that needs the cluster secret"
    );
    HttpError(ApiError::new(
        ErrorCode::Unauthenticated,
        access::NEEDS_CLUSTER_SECRET,
    ))
    .into_response()
}

/// Sends every call that needs the leader to it: a 307 redirect when this
/// member knows the leader (before the call, or when the call found out
/// that leadership moved), a 503 `not_leader` while none is elected.
/// Reads marked stale-ok are served here.
async fn route_to_leader(
    State(meta): State<Arc<Meta>>,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    if request.method() == Method::GET && request.headers().contains_key(STALE_OK_HEADER) {
        return next.run(request).await;
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (leader, leader_addr) = {
        let metrics = meta.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader;
        (
            leader,
            leader.and_then(|id| group::member_addr(&metrics, id)),
        )
    };
    if leader != Some(meta.id) {
        return redirect_to_leader(meta.scheme, leader_addr, &path_and_query);
    }
    let response = next.run(request).await;
    match response.extensions().get::<LeaderHint>() {
        Some(LeaderHint(addr)) => redirect_to_leader(meta.scheme, addr.clone(), &path_and_query),
        None => response,
    }
}

/// Marks a `not_leader` error response with the leader's address, for
/// [`route_to_leader`] to turn into a redirect.
#[derive(Clone)]
struct LeaderHint(Option<String>);

/// `scheme` is this cluster's (`https` with TLS): every member speaks the same.
fn redirect_to_leader(
    scheme: &str,
    leader_addr: Option<String>,
    path_and_query: &str,
) -> HttpResponse {
    let error = ApiError::not_leader(leader_addr.clone());
    let Some(addr) = leader_addr else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(error)).into_response();
    };
    let location = format!("{scheme}://{addr}{path_and_query}");
    let mut response = (StatusCode::TEMPORARY_REDIRECT, Json(error)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Meta {
    /// Proposes a command and waits until it is committed by a majority
    /// and applied. `request_id` makes a retried proposal apply once.
    /// `user` is who the command runs as (`None`: the cluster itself).
    pub(crate) async fn propose(
        &self,
        command: Command,
        request_id: Option<u128>,
        user: Option<String>,
    ) -> Result<Output, ApiError> {
        let request = state::Request {
            now_ms: now_ms(),
            request_id,
            user,
            command,
        };
        let write = tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(request));
        match write.await {
            Ok(Ok(response)) => response.data,
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Err(ApiError::not_leader(forward.leader_node.map(|n| n.addr)))
            }
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("the metadata service cannot commit: {e}"),
            )),
            Err(_) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the write was not committed within {}s: this member cannot reach a majority of the \
                     metadata members. It may still commit; retrying it with the same request id applies it once",
                    PROPOSE_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// Runs `read` on the applied state after confirming leadership, or
    /// at once on a stale-ok read.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        consistency: Consistency,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if consistency == Consistency::Linearizable {
            self.confirm_leader().await?;
        }
        self.read_local(read).await
    }

    /// Waits until a majority confirms this member leads and everything
    /// committed before the read is applied here.
    ///
    /// openraft's check waits for the leader's commit index, which may be
    /// behind after a restart: the commit index is not fsynced, and a
    /// member that led before a crash resumes leading the same term without
    /// a new entry. So, once per term, a read also waits until every entry
    /// in this leader's log is applied: that log holds every committed
    /// entry, and from then on the commit index only advances by real
    /// commits. (A term has one leader, and a restart forgets the flag.)
    async fn confirm_leader(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_LEADER_TIMEOUT;
        let confirm = async {
            self.raft.ensure_linearizable().await?;
            Ok(self.log_applied(deadline).await)
        };
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) | Err(_) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "a majority of the metadata members did not confirm this leader, or its log did not \
                     apply, within {}s; is a majority running and reachable? (stale reads: --stale-ok)",
                    CONFIRM_LEADER_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                Err(ApiError::not_leader(forward.leader_node.map(|n| n.addr)))
            }
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("this metadata member cannot serve a consistent read: {e}"),
            )),
        }
    }

    /// Once per term, waits until this member has applied every entry of
    /// its log (see `confirm_leader`); `false` if that did not happen by
    /// `deadline`.
    async fn log_applied(&self, deadline: tokio::time::Instant) -> bool {
        let (term, last_log_index) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_term, metrics.last_log_index)
        };
        if self.log_applied_in_term.load(Ordering::Acquire) == term {
            return true;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let applied = self
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(last_log_index, "this leader's log is applied")
            .await
            .is_ok();
        if applied {
            self.log_applied_in_term.store(term, Ordering::Release);
        }
        applied
    }

    /// Before a leader trusts its applied sessions and users (a logout or a
    /// password change committed under the previous leader must count),
    /// it applies its whole log, once per term.
    pub(crate) async fn sessions_current(&self) -> Result<(), ApiError> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            // Followers answer only stale reads, stale by request.
            return Ok(());
        }
        if self
            .log_applied(tokio::time::Instant::now() + CONFIRM_LEADER_TIMEOUT)
            .await
        {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "this new leader did not apply its log within {}s; retry shortly",
                CONFIRM_LEADER_TIMEOUT.as_secs()
            ),
        ))
    }

    /// Runs a short `read` on this member's applied state on the calling
    /// thread: for a few point lookups only.
    pub(crate) fn read_inline<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError>,
    ) -> Result<T, ApiError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| into_api_error(StateError::from(e)))?;
        read(&txn).map_err(into_api_error)
    }

    /// Runs `read` on this member's applied state, as it is.
    pub(crate) async fn read_local<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StateError::from)?;
            read(&txn)
        })
        .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
        .map_err(into_api_error)
    }

    async fn map(&self, consistency: Consistency) -> Result<ClusterMap, ApiError> {
        self.read(consistency, |txn| {
            state::read_map(&txn.open_table(SM_META)?)
        })
        .await
    }
}

fn into_api_error(error: StateError) -> ApiError {
    match error {
        StateError::Api(e) => e,
        other => {
            tracing::error!(%other, "metadata read failed");
            ApiError::internal(other)
        }
    }
}

/// While this server leads, applies the liveness rule (`liveness::judge`)
/// to every node twice a second and proposes the state changes it asks for.
async fn watch_liveness(meta: Arc<Meta>) {
    loop {
        tokio::time::sleep(LIVENESS_TICK).await;
        let metrics = meta.raft.metrics().borrow().clone();
        cairn_telemetry::gauge!("cairn_meta_raft_term").set(metrics.current_term as f64);
        if let Some(applied) = metrics.last_applied {
            cairn_telemetry::gauge!("cairn_meta_raft_applied_index").set(applied.index as f64);
        }
        let leader_since = {
            let mut liveness = meta.liveness.lock().expect("liveness lock");
            if metrics.state != ServerState::Leader {
                liveness.leader_since = None;
                continue;
            }
            *liveness.leader_since.get_or_insert_with(Instant::now)
        };
        let Ok(map) = meta.map(Consistency::Linearizable).await else {
            continue;
        };
        for state in [
            NodeState::Up,
            NodeState::Down,
            NodeState::Full,
            NodeState::Draining,
        ] {
            let count = map.nodes.iter().filter(|n| n.state == state).count();
            cairn_telemetry::gauge!("cairn_meta_nodes", "state" => state.as_str())
                .set(count as f64);
        }
        let changes: Vec<(NodeId, NodeState, NodeState, &'static str)> = {
            let liveness = meta.liveness.lock().expect("liveness lock");
            let now = Instant::now();
            map.nodes
                .iter()
                .filter_map(|n| {
                    liveness::judge(n, liveness.beats.get(&n.id), leader_since, now, meta.timing)
                        .map(|(to, why)| (n.id.clone(), n.state, to, why))
                })
                .collect()
        };
        for (id, from, to, why) in changes {
            tracing::warn!(node = %id, from = from.as_str(), to = to.as_str(), reason = why, "storage node changes state");
            let command = Command::SetNodeState {
                id,
                state: to,
                expect: Some(from),
            };
            if let Err(e) = meta.propose(command, None, None).await {
                tracing::warn!(%e, "could not change the node's state");
            }
        }
    }
}

// ---- HTTP plumbing ----

/// An [`ApiError`] as an HTTP response: its code's status and a JSON body.
pub(crate) struct HttpError(pub(crate) ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let hint = (self.0.code == ErrorCode::NotLeader).then(|| LeaderHint(self.0.leader.clone()));
        let rejection = cairn_telemetry::Rejection {
            code: self.0.code.as_str().to_string(),
            message: self.0.message.clone(),
        };
        let mut response = (status, Json(self.0)).into_response();
        response.extensions_mut().insert(rejection);
        if let Some(hint) = hint {
            response.extensions_mut().insert(hint);
        }
        response
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, HttpError>;

/// A JSON body whose rejections come back as JSON `ApiError`s.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(HttpError(json_rejection(rejection))),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::TooLarge
    } else {
        ErrorCode::InvalidArgument
    };
    ApiError::new(code, format!("bad request body: {}", rejection.body_text()))
}

/// Query parameters whose rejections come back as JSON `ApiError`s.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // serde's query decoding replaces invalid UTF-8 with U+FFFD; a path
        // must arrive as sent, so such a query is refused instead.
        if !percent_decodes_to_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(HttpError(ApiError::new(
                ErrorCode::InvalidArgument,
                "bad query string: its percent-encoded bytes are not valid UTF-8",
            )));
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(HttpError(query_rejection(rejection))),
        }
    }
}

/// Whether a raw query string (`a=%2Fx&b=y`) decodes to UTF-8.
fn percent_decodes_to_utf8(query: &str) -> bool {
    let bytes = query.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decodes_to_utf8;

    #[test]
    fn queries_must_decode_to_utf8() {
        assert!(percent_decodes_to_utf8("path=%2Fa%20b&x=%C3%A9"));
        assert!(percent_decodes_to_utf8("path=100%"));
        assert!(!percent_decodes_to_utf8("path=%FF%FE"));
        assert!(!percent_decodes_to_utf8("path=%C3"));
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("bad query string: {}", rejection.body_text()),
    )
}

/// How a read is served: confirmed with a majority, or from this
/// member's applied state as it is (the `x-cairn-stale-ok` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consistency {
    Linearizable,
    Stale,
}

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(if parts.headers.contains_key(STALE_OK_HEADER) {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        })
    }
}

/// The client's id for this operation (`x-cairn-request-id`, 32 hex
/// digits), if it sent one.
pub(crate) struct RequestId(pub(crate) Option<u128>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(REQUEST_ID_HEADER) else {
            return Ok(RequestId(None));
        };
        let parsed = value
            .to_str()
            .ok()
            .filter(|text| text.len() == 32)
            .and_then(|text| u128::from_str_radix(text, 16).ok());
        match parsed {
            Some(id) => Ok(RequestId(Some(id))),
            None => Err(HttpError(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("header {REQUEST_ID_HEADER} must be 32 hex digits"),
            ))),
        }
    }
}

// ---- handlers ----

/// Every member answers; the fields say what it is doing.
#[derive(Serialize)]
struct Health {
    ok: bool,
    id: RaftNodeId,
    role: &'static str,
    term: u64,
    leader: Option<RaftNodeId>,
    leader_addr: Option<String>,
    applied_index: Option<u64>,
    /// Last log index in this member's snapshot, and up to where its log
    /// is purged (a member that caught up from a snapshot has both).
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
}

async fn health(State(meta): State<Arc<Meta>>) -> Json<Health> {
    let metrics = meta.raft.metrics().borrow().clone();
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    Json(Health {
        ok: true,
        id: meta.id,
        role,
        term: metrics.current_term,
        leader: metrics.current_leader,
        leader_addr: metrics
            .current_leader
            .and_then(|id| group::member_addr(&metrics, id)),
        applied_index: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        purged_index: metrics.purged.map(|l| l.index),
    })
}

async fn hello(State(meta): State<Arc<Meta>>) -> ApiResult<Hello> {
    let initialized = meta
        .raft
        .is_initialized()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("raft stopped: {e}")))?;
    Ok(Json(Hello {
        id: meta.id,
        initialized,
    }))
}

async fn status(
    State(meta): State<Arc<Meta>>,
    _caller: Caller,
    consistency: Consistency,
) -> ApiResult<StatusResponse> {
    let (map, (file_count, dir_count)) = meta
        .read(consistency, |txn| {
            let table = txn.open_table(SM_META)?;
            Ok((state::read_map(&table)?, state::counts(&table)?))
        })
        .await?;
    let metrics = meta.raft.metrics().borrow().clone();
    let liveness = meta.liveness.lock().expect("liveness lock");
    let nodes: Vec<NodeStatus> = map
        .nodes
        .iter()
        .map(|n| {
            let beat = liveness.beats.get(&n.id);
            NodeStatus {
                id: n.id.clone(),
                addr: n.addr.clone(),
                zone: n.zone.clone(),
                state: n.state,
                state_changed_ms: n.state_changed_ms,
                capacity_bytes: n.capacity_bytes,
                used_bytes: beat.map_or(0, |b| b.report.used_bytes),
                chunk_count: beat.map_or(0, |b| b.report.chunk_count),
                last_heartbeat_ago_ms: beat.map(|b| b.at.elapsed().as_millis() as u64),
                report: beat.map(|b| b.report.clone()),
            }
        })
        .collect();
    drop(liveness);
    let serving: Vec<&NodeStatus> = nodes.iter().filter(|n| n.state.serves_reads()).collect();
    let under_replicated_chunks = serving
        .iter()
        .filter_map(|n| n.report.as_ref())
        .map(|r| r.repair.under_replicated_chunks)
        .sum();
    let moved_bytes_total = nodes
        .iter()
        .filter_map(|n| n.report.as_ref())
        .map(|r| r.repair.pushed_bytes_total)
        .sum();
    // A pass may be under way on some node at any moment (they run every
    // repair interval); what matters is that each has finished one with
    // the current map.
    let repair_settled = serving.iter().all(|n| {
        n.report
            .as_ref()
            .is_some_and(|r| r.repair.epoch == map.epoch)
    });
    let nodes_up = map.up_count();
    Ok(Json(StatusResponse {
        epoch: map.epoch,
        replication: map.replication,
        chunk_size_bytes: map.chunk_size_bytes,
        nodes,
        nodes_up,
        healthy: nodes_up >= map.replication as usize,
        file_count,
        dir_count,
        leader: metrics.current_leader,
        term: metrics.current_term,
        commit_index: metrics.last_applied.map(|l| l.index),
        members: group::members(&metrics),
        under_replicated_chunks,
        moved_bytes_total,
        repair_settled,
    }))
}

async fn map(
    State(meta): State<Arc<Meta>>,
    _caller: Caller,
    consistency: Consistency,
) -> ApiResult<ClusterMap> {
    Ok(Json(meta.map(consistency).await?))
}

async fn register(
    State(meta): State<Arc<Meta>>,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<ClusterMap> {
    let id = req.id.clone();
    let output = meta
        .propose(Command::RegisterNode(req), request_id, None)
        .await?;
    meta.liveness.lock().expect("liveness lock").record(
        &id,
        NodeReport::default(),
        Instant::now(),
        meta.timing,
    );
    tracing::info!(node = %id, "storage node registered");
    match output {
        Output::Map(map) => Ok(Json(map)),
        other => Err(ApiError::internal(format!("register answered {other:?}")).into()),
    }
}

async fn heartbeat(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<HeartbeatResponse> {
    // The leader's applied map, unconfirmed: a heartbeat only learns the
    // epoch, and a confirmed read per heartbeat would cost a round to the
    // majority per node per second.
    let map = meta
        .read_local(|txn| state::read_map(&txn.open_table(SM_META)?))
        .await?;
    cairn_telemetry::counter!("cairn_meta_heartbeats_total").increment(1);
    if map.node(&req.id).is_none() {
        return Ok(Json(HeartbeatResponse {
            epoch: map.epoch,
            registered: false,
        }));
    }
    // State changes (down -> up after damping, up <-> full) are the
    // watcher's job: a heartbeat only records.
    meta.liveness.lock().expect("liveness lock").record(
        &req.id,
        req.report,
        Instant::now(),
        meta.timing,
    );
    Ok(Json(HeartbeatResponse {
        epoch: map.epoch,
        registered: true,
    }))
}

async fn drain_node(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<NodeRequest>,
) -> ApiResult<ClusterMap> {
    caller.require_admin("drain storage nodes")?;
    let command = Command::SetNodeState {
        id: req.id.clone(),
        state: NodeState::Draining,
        expect: None,
    };
    let map = expect_map(meta.propose(command, request_id, None).await?)?;
    tracing::info!(node = %req.id, by = %caller.principal.name, "storage node is draining");
    Ok(Json(map))
}

async fn undrain_node(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<NodeRequest>,
) -> ApiResult<ClusterMap> {
    caller.require_admin("undrain storage nodes")?;
    let map = meta.map(Consistency::Linearizable).await?;
    let node = map
        .node(&req.id)
        .ok_or_else(|| ApiError::not_found(format!("storage node {}", req.id)))?;
    if node.state != NodeState::Draining {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "storage node {} is {}, not draining",
                req.id,
                node.state.as_str()
            ),
        )
        .into());
    }
    let command = Command::SetNodeState {
        id: req.id.clone(),
        state: NodeState::Up,
        expect: Some(NodeState::Draining),
    };
    Ok(Json(expect_map(
        meta.propose(command, request_id, None).await?,
    )?))
}

/// Removes a node for good: a draining node once it reports holding no
/// chunk at all, or a down node with `force`.
async fn remove_node(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<RemoveNodeRequest>,
) -> ApiResult<ClusterMap> {
    caller.require_admin("remove storage nodes")?;
    let map = meta.map(Consistency::Linearizable).await?;
    let node = map
        .node(&req.id)
        .ok_or_else(|| ApiError::not_found(format!("storage node {}", req.id)))?;
    let refuse = |message: String| -> ApiResult<ClusterMap> {
        Err(ApiError::new(ErrorCode::FailedPrecondition, message).into())
    };
    match node.state {
        NodeState::Draining => {
            let liveness = meta.liveness.lock().expect("liveness lock");
            let beat = liveness.beats.get(&req.id);
            let fresh = beat.filter(|b| b.at.elapsed() <= meta.timing.down_after);
            match fresh.map(|b| b.report.chunk_count) {
                Some(0) => {}
                Some(held) => {
                    return refuse(format!(
                        "storage node {} still holds {held} chunks that are not yet copied to their targets; \
                         wait until `cairn status` shows it holding 0, then remove it",
                        req.id
                    ))
                }
                None => {
                    return refuse(format!(
                        "storage node {} is draining but not heartbeating, so nobody can tell whether it holds \
                         the only copy of something; start it again to finish the drain, or, if it is gone for good, \
                         remove it with --force once `cairn fsck` is clean",
                        req.id
                    ))
                }
            }
        }
        NodeState::Down if req.force => {}
        NodeState::Down => {
            return refuse(format!(
                "storage node {} is down; if it is gone for good, check that `cairn fsck` reports nothing missing \
                 and remove it with --force",
                req.id
            ))
        }
        state => {
            return refuse(format!(
                "storage node {} is {}; drain it first with `cairn node drain {}` and wait until it holds nothing",
                req.id,
                state.as_str(),
                req.id
            ))
        }
    }
    let command = Command::RemoveNode { id: req.id.clone() };
    let map = expect_map(meta.propose(command, request_id, None).await?)?;
    meta.liveness
        .lock()
        .expect("liveness lock")
        .beats
        .remove(&req.id);
    tracing::warn!(node = %req.id, "storage node removed from the cluster");
    Ok(Json(map))
}

fn expect_map(output: Output) -> Result<ClusterMap, HttpError> {
    match output {
        Output::Map(map) => Ok(map),
        other => Err(ApiError::internal(format!("node command answered {other:?}")).into()),
    }
}

async fn referenced(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiJson(req): ApiJson<ReferencedRequest>,
) -> ApiResult<ReferencedResponse> {
    caller.require_admin("ask which chunks files reference")?;
    if req.ids.len() > MAX_HAS_CHUNKS_IDS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "ask about at most {MAX_HAS_CHUNKS_IDS} chunk ids at once; got {}",
                req.ids.len()
            ),
        )
        .into());
    }
    let referenced = meta
        .read(Consistency::Linearizable, move |txn| {
            state::referenced(&txn.open_table(CHUNK_REFS)?, &req.ids)
        })
        .await?;
    Ok(Json(ReferencedResponse { referenced }))
}

#[derive(Deserialize)]
struct StatQuery {
    path: Option<String>,
    id: Option<FileId>,
    /// The caller is about to read the file: refuse unless it may, and
    /// hand out the capabilities to fetch its chunks.
    #[serde(default)]
    read: bool,
}

async fn stat(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<StatQuery>,
) -> ApiResult<Stat> {
    let who = caller.principal;
    let reader = who.clone();
    let (id, inode, named) = match (query.path, query.id) {
        (Some(path), None) => {
            let named = path.clone();
            let (id, inode) = meta
                .read(consistency, move |txn| {
                    state::resolve(
                        &txn.open_table(INODES)?,
                        &txn.open_table(DIRENTS)?,
                        &reader,
                        &path,
                    )
                })
                .await?;
            (id, inode, named)
        }
        (None, Some(id)) => {
            let inode = meta
                .read(consistency, move |txn| {
                    state::resolve_id(&txn.open_table(INODES)?, &reader, id)
                })
                .await?;
            (id, inode, format!("id {id}"))
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "stat needs exactly one of ?path= or ?id=",
            )
            .into())
        }
    };
    let mut stat = inode.to_stat(id, &who);
    if query.read && inode.kind == cairn_proto::api::EntryKind::File {
        inode.require_read(&who, &named)?;
        // The chunk servers serve a chunk only with a capability for it:
        // one per chunk, issued only to a reader about to read (a plain
        // stat, as `put` and `fsck` make, would pay a MAC per chunk).
        if let Some(key) = &meta.capability_key {
            let expires_ms = now_ms() + CAPABILITY_TTL_MS;
            stat.capabilities = stat
                .chunks
                .iter()
                .map(|c| key.issue(ChunkOp::Get, Some(&c.id), expires_ms))
                .collect();
        }
    }
    Ok(Json(stat))
}

/// A capability to store chunks (for a file the caller may write at
/// `path`) or for the admin chunk calls.
async fn grant(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiJson(req): ApiJson<GrantRequest>,
) -> ApiResult<GrantResponse> {
    let op = match req.op {
        cairn_proto::api::GrantOp::Admin => {
            caller.require_admin("check or repair chunks on the storage nodes")?;
            ChunkOp::Admin
        }
        cairn_proto::api::GrantOp::Put => {
            let Some(path) = req.path else {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "a put grant names the file to write: {\"op\": \"put\", \"path\": \"/a/b\"}",
                )
                .into());
            };
            let who = caller.principal.clone();
            meta.read(Consistency::Linearizable, move |txn| {
                state::check_writable(
                    &txn.open_table(INODES)?,
                    &txn.open_table(DIRENTS)?,
                    &who,
                    &path,
                )
            })
            .await?;
            ChunkOp::Put
        }
    };
    let expires_ms = now_ms() + CAPABILITY_TTL_MS;
    Ok(Json(GrantResponse {
        capability: meta
            .capability_key
            .as_ref()
            .map(|key| key.issue(op, None, expires_ms)),
        expires_ms,
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    path: String,
}

async fn list(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<ListResponse> {
    let who = caller.principal;
    let listing = meta
        .read(consistency, move |txn| {
            state::list(
                &txn.open_table(INODES)?,
                &txn.open_table(DIRENTS)?,
                &who,
                &query.path,
            )
        })
        .await?;
    Ok(Json(listing))
}

async fn mutation(
    meta: &Meta,
    caller: &Caller,
    command: Command,
    request_id: Option<u128>,
) -> ApiResult<MutationResponse> {
    match meta.propose(command, request_id, caller.user()).await? {
        Output::Mutation(m) => Ok(Json(m)),
        other => Err(ApiError::internal(format!("mutation answered {other:?}")).into()),
    }
}

async fn mkdir(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<MkdirRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Mkdir(req), request_id).await
}

async fn remove(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<RemoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Remove(req), request_id).await
}

async fn rename(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Rename(req), request_id).await
}

async fn copy(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Copy(req), request_id).await
}

async fn chmod(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<ChmodRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Chmod(req), request_id).await
}

async fn chown(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<ChownRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, &caller, Command::Chown(req), request_id).await
}

async fn commit(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<CommitRequest>,
) -> ApiResult<CommitResponse> {
    match meta
        .propose(Command::Commit(req), request_id, caller.user())
        .await?
    {
        Output::Commit(c) => Ok(Json(c)),
        other => Err(ApiError::internal(format!("commit answered {other:?}")).into()),
    }
}

async fn raft_append(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> impl IntoResponse {
    Json(meta.raft.append_entries(req).await)
}

async fn raft_vote(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<VoteRequest<RaftNodeId>>,
) -> impl IntoResponse {
    Json(meta.raft.vote(req).await)
}

async fn raft_snapshot(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> impl IntoResponse {
    Json(meta.raft.install_snapshot(req).await)
}

async fn add_member(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> ApiResult<MembersResponse> {
    caller.require_admin("change the metadata group")?;
    let addr = req.addr.trim_start_matches("http://");
    let addr = addr.trim_start_matches("https://").to_string();
    group::add_member(&meta.raft, req.id, addr, req.learner).await?;
    Ok(Json(MembersResponse {
        members: group::members(&meta.raft.metrics().borrow()),
    }))
}

async fn remove_member(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiJson(req): ApiJson<RemoveMemberRequest>,
) -> ApiResult<MembersResponse> {
    caller.require_admin("change the metadata group")?;
    group::remove_member(&meta.raft, req.id).await?;
    Ok(Json(MembersResponse {
        members: group::members(&meta.raft.metrics().borrow()),
    }))
}

/// Builds a snapshot now and purges the log it covers (leader only; each
/// follower also snapshots on its own every `--snapshot-logs` entries).
async fn snapshot(State(meta): State<Arc<Meta>>, caller: Caller) -> ApiResult<SnapshotResponse> {
    caller.require_admin("snapshot the metadata")?;
    let (snapshot_index, purged_index) = group::snapshot_and_purge(&meta.raft).await?;
    tracing::info!(
        ?snapshot_index,
        ?purged_index,
        "snapshot built and log purged"
    );
    Ok(Json(SnapshotResponse {
        snapshot_index,
        purged_index,
    }))
}
