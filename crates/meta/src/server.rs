//! The metadata HTTP/JSON API (routes in `docs/api.md`), node liveness, and
//! the process's start-up and shutdown.
//!
//! Writes are Raft proposals: acknowledged only once committed and applied.
//! Reads first confirm leadership (`ensure_linearizable`), then read the
//! applied state from redb, so a read never misses an acknowledged write.
//!
//! Liveness is soft state on the leader: chunk servers heartbeat it; only a
//! change of a node's state goes through the log (rules in `liveness.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request as HttpRequest, State,
};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_proto::api::{
    CommitRequest, CommitResponse, HeartbeatRequest, HeartbeatResponse, ListResponse, MkdirRequest,
    MoveRequest, MutationResponse, NodeReport, NodeRequest, NodeStatus, ReferencedRequest,
    ReferencedResponse, RegisterRequest, RemoveNodeRequest, RemoveRequest, Stat, StatusResponse,
    MAX_HAS_CHUNKS_IDS,
};
use cairn_proto::{ApiError, ClusterMap, ErrorCode, FileId, NodeId, NodeState};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, Raft, ServerState};
use redb::{Database, ReadTransaction, ReadableDatabase};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::liveness::{self, Liveness, Timing};
use crate::network::HttpNetworkFactory;
use crate::state::{self, Command, Output, StateError, CHUNK_REFS, DIRENTS, INODES, SM_META};
use crate::store::{open_database, LogStore, RaftNodeId, StateMachine};
use crate::TypeConfig;

/// The largest request body: a commit of a file with the most chunks
/// allowed (2^18 ids of ~100 JSON bytes each) fits with room to spare.
const MAX_BODY_BYTES: usize = 48 << 20;
/// How often the leader looks for silent nodes.
const LIVENESS_TICK: Duration = Duration::from_millis(500);
/// Raft id of the single member (issue "metadata HA" makes this a flag).
const MEMBER_ID: RaftNodeId = 1;

#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Set the cluster's replication factor (kept in the map); `None` keeps
    /// what the map has (3 on a new cluster).
    pub replication: Option<u32>,
    pub chunk_size_bytes: Option<u64>,
    /// A node silent this long is marked down.
    pub down_after: Duration,
    /// A down node must heartbeat steadily this long before it is up again.
    pub up_after: Duration,
}

struct Meta {
    raft: Raft<TypeConfig>,
    db: Arc<Database>,
    timing: Timing,
    liveness: Mutex<Liveness>,
}

/// Runs the metadata service until `shutdown` resolves.
pub async fn run(
    config: MetaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another process using it? choose one with --listen",
                config.listen
            )
        })?;
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

    let raft_config = openraft::Config {
        cluster_name: "cairn".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    };
    let raft_config = Arc::new(
        raft_config
            .validate()
            .context("invalid raft configuration")?,
    );
    let raft = Raft::new(
        MEMBER_ID,
        raft_config,
        HttpNetworkFactory::new(),
        LogStore::new(db.clone()),
        StateMachine::new(db.clone()),
    )
    .await
    .context("cannot start the raft node")?;
    if !raft.is_initialized().await? {
        let members = BTreeMap::from([(
            MEMBER_ID,
            BasicNode {
                addr: listen_addr.clone(),
            },
        )]);
        raft.initialize(members)
            .await
            .context("cannot initialize the metadata group")?;
    }
    raft.wait(Some(Duration::from_secs(30)))
        .current_leader(MEMBER_ID, "this member leads the one-member group")
        .await
        .context("this metadata server did not become leader within 30s")?;

    let meta = Arc::new(Meta {
        raft,
        db,
        timing: Timing {
            down_after: config.down_after,
            up_after: config.up_after,
        },
        liveness: Mutex::default(),
    });
    apply_params(&meta, config.replication, config.chunk_size_bytes).await?;
    tokio::spawn(watch_liveness(meta.clone()));

    tracing::info!(listen = %listen_addr, data_dir = %config.data_dir.display(), "metadata service ready (plain HTTP)");
    let app = cairn_telemetry::instrument(router(meta.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("metadata HTTP server failed")?;
    meta.raft.shutdown().await.ok();
    tracing::info!("metadata service stopped");
    Ok(())
}

async fn apply_params(
    meta: &Meta,
    replication: Option<u32>,
    chunk_size_bytes: Option<u64>,
) -> anyhow::Result<()> {
    if replication.is_none() && chunk_size_bytes.is_none() {
        return Ok(());
    }
    let map = meta.map().await.map_err(anyhow::Error::msg)?;
    let command = Command::SetParams {
        replication: replication.unwrap_or(map.replication),
        chunk_size_bytes: chunk_size_bytes.unwrap_or(map.chunk_size_bytes),
    };
    meta.propose(command).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

fn router(meta: Arc<Meta>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/map", get(map))
        .route("/v1/nodes/register", post(register))
        .route("/v1/nodes/heartbeat", post(heartbeat))
        .route("/v1/nodes/drain", post(drain_node))
        .route("/v1/nodes/undrain", post(undrain_node))
        .route("/v1/nodes/remove", post(remove_node))
        .route("/v1/chunks/referenced", post(referenced))
        .route("/v1/fs/stat", get(stat))
        .route("/v1/fs/list", get(list))
        .route("/v1/fs/mkdir", post(mkdir))
        .route("/v1/fs/commit", post(commit))
        .route("/v1/fs/remove", post(remove))
        .route("/v1/fs/rename", post(rename))
        .route("/v1/fs/copy", post(copy))
        .route("/v1/raft/append", post(raft_append))
        .route("/v1/raft/vote", post(raft_vote))
        .route("/v1/raft/snapshot", post(raft_snapshot))
        .fallback(|| async {
            HttpError(ApiError::new(
                ErrorCode::NotFound,
                "no such API route; see docs/api.md",
            ))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(meta)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Meta {
    /// Proposes a command and waits until it is committed and applied.
    async fn propose(&self, command: Command) -> Result<Output, ApiError> {
        let request = state::Request {
            now_ms: now_ms(),
            command,
        };
        match self.raft.client_write(request).await {
            Ok(response) => response.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ApiError::new(
                    ErrorCode::NotLeader,
                    format!(
                        "this metadata server is not the leader; the leader is {}",
                        forward
                            .leader_node
                            .map(|n| n.addr)
                            .unwrap_or_else(|| "not known yet; retry shortly".into())
                    ),
                ))
            }
            Err(e) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("metadata service cannot commit: {e}"),
            )),
        }
    }

    /// Runs `read` on the applied state after confirming leadership.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.raft.ensure_linearizable().await.map_err(|e| {
            ApiError::new(
                ErrorCode::NotLeader,
                format!("this metadata server cannot serve a consistent read: {e}"),
            )
        })?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StateError::from)?;
            read(&txn)
        })
        .await
        .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
        .map_err(into_api_error)
    }

    async fn map(&self) -> Result<ClusterMap, ApiError> {
        self.read(|txn| state::read_map(&txn.open_table(SM_META)?))
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
        let Ok(map) = meta.map().await else { continue };
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
            if let Err(e) = meta.propose(command).await {
                tracing::warn!(%e, "could not change the node's state");
            }
        }
    }
}

// ---- HTTP plumbing ----

/// An [`ApiError`] as an HTTP response: its code's status and a JSON body.
struct HttpError(ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

type ApiResult<T> = Result<Json<T>, HttpError>;

/// A JSON body whose rejections come back as JSON `ApiError`s.
struct ApiJson<T>(T);

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
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(HttpError(query_rejection(rejection))),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("bad query string: {}", rejection.body_text()),
    )
}

// ---- handlers ----

#[derive(Serialize)]
struct Health {
    ok: bool,
    role: &'static str,
}

async fn health(State(meta): State<Arc<Meta>>) -> Json<Health> {
    let role = match meta.raft.metrics().borrow().state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    Json(Health { ok: true, role })
}

async fn status(State(meta): State<Arc<Meta>>) -> ApiResult<StatusResponse> {
    let (map, (file_count, dir_count)) = meta
        .read(|txn| {
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
        under_replicated_chunks,
        moved_bytes_total,
        repair_settled,
    }))
}

async fn map(State(meta): State<Arc<Meta>>) -> ApiResult<ClusterMap> {
    Ok(Json(meta.map().await?))
}

async fn register(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<ClusterMap> {
    let id = req.id.clone();
    let output = meta.propose(Command::RegisterNode(req)).await?;
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
    let map = meta.map().await?;
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
    ApiJson(req): ApiJson<NodeRequest>,
) -> ApiResult<ClusterMap> {
    let command = Command::SetNodeState {
        id: req.id.clone(),
        state: NodeState::Draining,
        expect: None,
    };
    let map = expect_map(meta.propose(command).await?)?;
    tracing::info!(node = %req.id, "storage node is draining");
    Ok(Json(map))
}

async fn undrain_node(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> ApiResult<ClusterMap> {
    let map = meta.map().await?;
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
    Ok(Json(expect_map(meta.propose(command).await?)?))
}

/// Removes a node for good: a draining node once it reports holding no
/// chunk at all, or a down node with `force`.
async fn remove_node(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<RemoveNodeRequest>,
) -> ApiResult<ClusterMap> {
    let map = meta.map().await?;
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
    let map = expect_map(meta.propose(command).await?)?;
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
    ApiJson(req): ApiJson<ReferencedRequest>,
) -> ApiResult<ReferencedResponse> {
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
        .read(move |txn| state::referenced(&txn.open_table(CHUNK_REFS)?, &req.ids))
        .await?;
    Ok(Json(ReferencedResponse { referenced }))
}

#[derive(Deserialize)]
struct StatQuery {
    path: Option<String>,
    id: Option<FileId>,
}

async fn stat(
    State(meta): State<Arc<Meta>>,
    ApiQuery(query): ApiQuery<StatQuery>,
) -> ApiResult<Stat> {
    let stat = match (query.path, query.id) {
        (Some(path), None) => {
            meta.read(move |txn| {
                let (id, inode) =
                    state::resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, &path)?;
                Ok(inode.to_stat(id))
            })
            .await?
        }
        (None, Some(id)) => {
            meta.read(move |txn| state::stat_by_id(&txn.open_table(INODES)?, id))
                .await?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "stat needs exactly one of ?path= or ?id=",
            )
            .into())
        }
    };
    Ok(Json(stat))
}

#[derive(Deserialize)]
struct ListQuery {
    path: String,
}

async fn list(
    State(meta): State<Arc<Meta>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<ListResponse> {
    let listing = meta
        .read(move |txn| {
            state::list(
                &txn.open_table(INODES)?,
                &txn.open_table(DIRENTS)?,
                &query.path,
            )
        })
        .await?;
    Ok(Json(listing))
}

async fn mutation(meta: &Meta, command: Command) -> ApiResult<MutationResponse> {
    match meta.propose(command).await? {
        Output::Mutation(m) => Ok(Json(m)),
        other => Err(ApiError::internal(format!("mutation answered {other:?}")).into()),
    }
}

async fn mkdir(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<MkdirRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, Command::Mkdir(req)).await
}

async fn remove(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<RemoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, Command::Remove(req)).await
}

async fn rename(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, Command::Rename(req)).await
}

async fn copy(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MutationResponse> {
    mutation(&meta, Command::Copy(req)).await
}

async fn commit(
    State(meta): State<Arc<Meta>>,
    ApiJson(req): ApiJson<CommitRequest>,
) -> ApiResult<CommitResponse> {
    match meta.propose(Command::Commit(req)).await? {
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
