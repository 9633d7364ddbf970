//! The metadata group: who its members are, how it forms, and how it
//! changes while running.
//!
//! - Formation: a member started with `--peers` forms the group once a
//!   majority of the listed members answer and none of them belongs to a
//!   group yet. Only the reachable member with the lowest id initializes,
//!   and every member would initialize with the same member list, which
//!   openraft documents as safe; a member that finds an initialized peer
//!   never initializes (it is a replacement and waits to be added).
//! - Changes: add a learner, let it catch up (from a snapshot if the log
//!   was purged), then make it a voter: openraft's joint consensus.
//! - Snapshots: on demand, followed by purging the log they cover, so a
//!   new member must catch up from the snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_proto::api::{MemberStatus, CLUSTER_TOKEN_HEADER};
use cairn_proto::{ApiError, ErrorCode};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics};
use serde::{Deserialize, Serialize};

use crate::store::RaftNodeId;
use crate::TypeConfig;

/// The most members a group may list: Raft groups of more than 7 voters
/// only slow commits down; 9 leaves room for learners during a change.
pub const MAX_MEMBERS: usize = 9;
/// How long a membership change or a snapshot may take before the call
/// gives up (the change itself may still complete; `status` tells).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);
const FORMATION_RETRY: Duration = Duration::from_millis(500);

/// Parses `--peers 1=host:port,2=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<RaftNodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            format!("--peers entry {item:?} is not ID=HOST:PORT (as in 1=10.0.0.1:7700)")
        })?;
        let id: RaftNodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {item:?}: the id must be a number from 1 up"))?;
        if id == 0 {
            return Err(format!("--peers entry {item:?}: ids start at 1"));
        }
        let addr = addr.trim().trim_start_matches("http://").to_string();
        if addr.is_empty() {
            return Err(format!("--peers entry {item:?} has no address"));
        }
        if peers.insert(id, addr).is_some() {
            return Err(format!("--peers names member {id} twice"));
        }
    }
    if peers.len() > MAX_MEMBERS {
        return Err(format!(
            "--peers lists {} members; a group has at most {MAX_MEMBERS}",
            peers.len()
        ));
    }
    Ok(peers)
}

/// What `/v1/meta/hello` answers: who a member is and whether it already
/// belongs to a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub id: RaftNodeId,
    pub initialized: bool,
}

/// Forms the group if nobody has: see the module comment.
pub async fn form(
    raft: Raft<TypeConfig>,
    id: RaftNodeId,
    peers: BTreeMap<RaftNodeId, String>,
    cluster_token: Option<String>,
    tls: cairn_transport::ClientTls,
) {
    let http = tls
        .client_builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client builds with static settings");
    let majority = peers.len() / 2 + 1;
    let mut said_waiting = false;
    loop {
        match raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        let mut reachable = vec![id];
        let mut peer_initialized = None;
        for (&peer, addr) in peers.iter().filter(|(&p, _)| p != id) {
            let mut hello = http.get(format!("{}/v1/meta/hello", tls.base_url(addr)));
            if let Some(token) = &cluster_token {
                hello = hello.header(CLUSTER_TOKEN_HEADER, token);
            }
            let Ok(response) = hello.send().await else {
                continue;
            };
            if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                tracing::error!(member = peer, %addr, "refuses this member's cluster token; give every member the same --cluster-secret-file");
                continue;
            }
            let Ok(hello) = response.json::<Hello>().await else {
                continue;
            };
            if hello.id != peer {
                tracing::warn!(member = peer, %addr, answered_as = hello.id, "--peers names a different member at this address");
                continue;
            }
            reachable.push(peer);
            if hello.initialized {
                peer_initialized = Some(peer);
            }
        }
        if let Some(peer) = peer_initialized {
            if !said_waiting {
                tracing::info!(
                    member = peer,
                    "the metadata group already exists; this member waits to be added \
                     (cairn meta-admin add-voter --id {id} --addr ADDR)"
                );
                said_waiting = true;
            }
        } else if reachable.len() >= majority && reachable.iter().min() == Some(&id) {
            let members: BTreeMap<RaftNodeId, BasicNode> = peers
                .iter()
                .map(|(&p, addr)| (p, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(members = peers.len(), "formed the metadata group");
                    return;
                }
                Err(e) => tracing::debug!(%e, "initialize refused; checking again"),
            }
        }
        tokio::time::sleep(FORMATION_RETRY).await;
    }
}

/// The members as this member's Raft metrics see them. Replication
/// progress is known only on the leader.
pub fn members(metrics: &RaftMetrics<RaftNodeId, BasicNode>) -> Vec<MemberStatus> {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
    let last_index = metrics.last_log_index;
    let leading = metrics.current_leader == Some(metrics.id);
    membership
        .nodes()
        .map(|(&id, node)| {
            let matched_index = if !leading {
                None
            } else if id == metrics.id {
                last_index
            } else {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|log_id| log_id.index)
            };
            let lag = match (leading, last_index, matched_index) {
                (true, Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                (true, Some(last), None) => Some(last + 1),
                _ => None,
            };
            MemberStatus {
                id,
                addr: node.addr.clone(),
                voter: voters.contains(&id),
                leader: metrics.current_leader == Some(id),
                matched_index,
                lag,
            }
        })
        .collect()
}

/// The membership has exactly one voter, `id`: it needs nobody to lead.
pub fn sole_voter(metrics: &RaftMetrics<RaftNodeId, BasicNode>, id: RaftNodeId) -> bool {
    let mut voters = metrics.membership_config.membership().voter_ids();
    voters.next() == Some(id) && voters.next().is_none()
}

/// Address of the member `id` in the current membership.
pub fn member_addr(metrics: &RaftMetrics<RaftNodeId, BasicNode>, id: RaftNodeId) -> Option<String> {
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())
}

fn change_error(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ApiError::not_leader(forward.leader_node.map(|n| n.addr))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ApiError::new(
            ErrorCode::FailedPrecondition,
            format!("the metadata group cannot change that way: {e}"),
        ),
        RaftError::Fatal(e) => ApiError::new(
            ErrorCode::Unavailable,
            format!("this metadata member has stopped: {e}"),
        ),
    }
}

async fn bounded<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(ADMIN_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "{what} did not finish within {}s; it may still complete: check `cairn status`",
                    ADMIN_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// Adds member `id` at `addr`: as a learner first, returning once it has
/// caught up, then (unless `learner`) as a voter.
pub async fn add_member(
    raft: &Raft<TypeConfig>,
    id: RaftNodeId,
    addr: String,
    learner: bool,
) -> Result<(), ApiError> {
    if id == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "metadata member ids start at 1",
        ));
    }
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    if membership.nodes().count() >= MAX_MEMBERS && membership.get_node(&id).is_none() {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!("the metadata group already has {MAX_MEMBERS} members; remove one first"),
        ));
    }
    if let Some(existing) = membership.get_node(&id) {
        if existing.addr != addr {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "metadata member {id} already exists at {}; remove it first, or give the new member another --id",
                    existing.addr
                ),
            ));
        }
    }
    bounded("adding the metadata member", async {
        raft.add_learner(id, BasicNode { addr: addr.clone() }, true)
            .await
            .map_err(change_error)?;
        if !learner {
            let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            raft.change_membership(voters, false)
                .await
                .map_err(change_error)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(member = id, %addr, voter = !learner, "metadata member added");
    Ok(())
}

/// Removes member `id` (voter or learner) from the group.
pub async fn remove_member(raft: &Raft<TypeConfig>, id: RaftNodeId) -> Result<(), ApiError> {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return Err(ApiError::not_found(format!(
            "metadata member {id} (see `cairn status` for the members)"
        )));
    }
    let voters: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
    bounded("removing the metadata member", async {
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "metadata member {id} is the only voter; add another before removing it"
                    ),
                ));
            }
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            raft.change_membership(change, false)
                .await
                .map_err(change_error)?;
        } else {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            raft.change_membership(change, false)
                .await
                .map_err(change_error)?;
        }
        Ok(())
    })
    .await?;
    tracing::warn!(member = id, "metadata member removed");
    Ok(())
}

/// Builds a snapshot of everything applied so far, then purges the log it
/// covers. Returns (snapshot index, purged-up-to index).
pub async fn snapshot_and_purge(
    raft: &Raft<TypeConfig>,
) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
    let stopped = |e: openraft::error::Fatal<RaftNodeId>| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("this metadata member has stopped: {e}"),
        )
    };
    bounded("the snapshot", async {
        raft.trigger().snapshot().await.map_err(stopped)?;
        let Some(target) = applied else {
            return Ok((None, None));
        };
        let metrics = raft
            .wait(Some(ADMIN_TIMEOUT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= target),
                "snapshot covers the applied log",
            )
            .await
            .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("snapshot: {e}")))?;
        let snapshot_index = metrics.snapshot.map(|s| s.index);
        if let Some(index) = snapshot_index {
            raft.trigger().purge_log(index).await.map_err(stopped)?;
        }
        let purged = raft
            .wait(Some(ADMIN_TIMEOUT))
            .metrics(
                |m| m.purged.map(|p| p.index) >= snapshot_index,
                "log purged up to the snapshot",
            )
            .await
            .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("purge: {e}")))?
            .purged
            .map(|p| p.index);
        Ok((snapshot_index, purged))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_bad_lists() {
        let peers = parse_peers("1=127.0.0.1:7700, 2=http://127.0.0.1:7710,3=h:1").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "127.0.0.1:7710");
        for bad in ["1", "0=a:1", "x=a:1", "1=", "1=a:1,1=b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad} should be refused");
        }
        let many: Vec<String> = (1..=10).map(|i| format!("{i}=h:{i}")).collect();
        assert!(parse_peers(&many.join(",")).is_err());
    }
}
