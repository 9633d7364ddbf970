//! The cluster's routes: status and the map, storage nodes (registration,
//! heartbeats, drain, removal), chunk references, health, and the metadata
//! group's own calls (Raft messages, membership, snapshots).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use cairn_proto::api::{
    AddMemberRequest, HeartbeatRequest, HeartbeatResponse, MembersResponse, NodeReport,
    NodeRequest, NodeStatus, ReferencedRequest, ReferencedResponse, RegisterRequest,
    RemoveMemberRequest, RemoveNodeRequest, SnapshotResponse, StatusResponse, MAX_HAS_CHUNKS_IDS,
};
use cairn_proto::{ApiError, ClusterMap, ErrorCode, NodeState};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::ServerState;
use redb::ReadableTableMetadata;
use serde::Serialize;

use crate::group::{self, Hello};
use crate::state::{self, Command, Output, CHUNK_REFS, ORPHANS, SM_META};
use crate::store::RaftNodeId;
use crate::TypeConfig;

use super::caller::Caller;
use super::core::Meta;
use super::http::{ApiJson, ApiResult, Consistency, RequestId};

/// Every member answers; the fields say what it is doing.
#[derive(Serialize)]
pub struct Health {
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

pub async fn health(State(meta): State<Arc<Meta>>) -> Json<Health> {
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

pub async fn hello(State(meta): State<Arc<Meta>>) -> ApiResult<Hello> {
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

pub async fn status(
    State(meta): State<Arc<Meta>>,
    _caller: Caller,
    consistency: Consistency,
) -> ApiResult<StatusResponse> {
    let (map, (file_count, dir_count), trees_being_deleted) = meta
        .read(consistency, |txn| {
            let table = txn.open_table(SM_META)?;
            let orphans = txn.open_table(ORPHANS)?.len()?;
            Ok((state::read_map(&table)?, state::counts(&table)?, orphans))
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
        trees_being_deleted,
        leader: metrics.current_leader,
        term: metrics.current_term,
        commit_index: metrics.last_applied.map(|l| l.index),
        members: group::members(&metrics),
        under_replicated_chunks,
        moved_bytes_total,
        repair_settled,
    }))
}

pub async fn map(
    State(meta): State<Arc<Meta>>,
    _caller: Caller,
    consistency: Consistency,
) -> ApiResult<ClusterMap> {
    Ok(Json(meta.map(consistency).await?))
}

pub async fn register(
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

pub async fn heartbeat(
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

pub async fn drain_node(
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

pub async fn undrain_node(
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
pub async fn remove_node(
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

fn expect_map(output: Output) -> Result<ClusterMap, super::http::HttpError> {
    match output {
        Output::Map(map) => Ok(map),
        other => Err(ApiError::internal(format!("node command answered {other:?}")).into()),
    }
}

pub async fn referenced(
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

pub async fn raft_append(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> impl IntoResponse {
    Json(meta.raft.append_entries(req).await)
}

pub async fn raft_vote(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<VoteRequest<RaftNodeId>>,
) -> impl IntoResponse {
    Json(meta.raft.vote(req).await)
}

pub async fn raft_snapshot(
    State(meta): State<Arc<Meta>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> impl IntoResponse {
    Json(meta.raft.install_snapshot(req).await)
}

pub async fn add_member(
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

pub async fn remove_member(
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
pub async fn snapshot(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
) -> ApiResult<SnapshotResponse> {
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
