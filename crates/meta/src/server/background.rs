//! What the leader does by itself: the liveness watcher, applying the
//! flags' cluster parameters, creating the first admin, and deleting the
//! entries of removed trees.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::{ApiError, ErrorCode, NodeId, NodeState};
use openraft::ServerState;
use redb::ReadableTableMetadata;

use crate::limits::{LIVENESS_TICK, PURGE_BATCH_ENTRIES, PURGE_POLL};
use crate::liveness;
use crate::state::{self, Command, Output, AUTH, ORPHANS, SM_META};

use super::core::Meta;
use super::http::Consistency;
use super::user_routes;

/// Makes the map's replication and chunk size what the flags ask, once
/// this member leads (any member given the same flags does the same, so
/// whichever leads applies them). Stops once they are set, or once the
/// map, as this member has applied it, already says so.
pub async fn apply_params(
    meta: Arc<Meta>,
    replication: Option<u32>,
    chunk_size_bytes: Option<u64>,
) {
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
pub async fn bootstrap_when_leading(meta: Arc<Meta>, password_file: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if meta.raft.metrics().borrow().current_leader == Some(meta.id) {
            match user_routes::bootstrap_admin(&meta, &password_file).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(%e, "cannot create the first admin yet"),
            }
        } else if let Ok(true) = meta
            .read_local(|txn| state::users::has_users(&txn.open_table(AUTH)?))
            .await
        {
            return;
        }
    }
}

/// Proposes the flags' replication and chunk size if the map differs.
pub async fn set_params(
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

/// While this server leads, applies the liveness rule (`liveness::judge`)
/// to every node twice a second and proposes the state changes it asks for.
pub async fn watch_liveness(meta: Arc<Meta>) {
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

/// While this member leads, deletes the entries of removed trees, a
/// bounded batch per log entry, until none are left; woken by a removal,
/// and every [`PURGE_POLL`] (a new leader finds what the old one left).
pub async fn purge_removed_trees(meta: Arc<Meta>) {
    loop {
        tokio::select! {
            _ = meta.purge_wanted.notified() => {}
            _ = tokio::time::sleep(PURGE_POLL) => {}
        }
        while meta.leads() {
            let pending = meta
                .read_local(|txn| Ok(txn.open_table(ORPHANS)?.len()? > 0))
                .await;
            if !matches!(pending, Ok(true)) {
                break;
            }
            let command = Command::Purge {
                max_entries: PURGE_BATCH_ENTRIES,
            };
            match meta.propose(command, None, None).await {
                Ok(Output::Purged { trees_left: 0, .. }) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%e, "could not delete the entries of removed trees yet");
                    break;
                }
            }
        }
    }
}
