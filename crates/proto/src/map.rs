//! The cluster map: which storage nodes exist, where they listen, and the
//! parameters every client needs to place and cut data. It is part of the
//! replicated metadata state; its epoch grows by one on every change.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Serving and a placement target.
    Up,
    /// Silent for longer than the down-after period: skipped by placement.
    Down,
    /// Its disk is (nearly) full: still a placement target and serving
    /// reads, but writers and repair go to the next node instead.
    Full,
    /// Being emptied before removal (`cairn node drain`): not a target;
    /// serves reads until its chunks have been handed off.
    Draining,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Full => "full",
            NodeState::Draining => "draining",
        }
    }

    /// Chunks are placed on it (it is on the ring).
    pub fn is_placement_target(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Full)
    }

    /// It accepts new chunks.
    pub fn accepts_writes(self) -> bool {
        self == NodeState::Up
    }

    /// Readers may ask it for chunks.
    pub fn serves_reads(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Full | NodeState::Draining)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// `host:port` of the node's chunk API.
    pub addr: String,
    pub zone: String,
    /// Placement weight: a node gets a share of chunks proportional to this.
    pub capacity_bytes: u64,
    pub state: NodeState,
    /// Wall-clock time (ms since the Unix epoch) of the last change of `state`.
    pub state_changed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    pub epoch: u64,
    pub replication: u32,
    pub chunk_size_bytes: u64,
    /// Sorted by id; ids are unique.
    pub nodes: Vec<NodeInfo>,
}

impl ClusterMap {
    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes
            .binary_search_by(|n| n.id.cmp(id))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Nodes that accept writes.
    pub fn up_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.state.accepts_writes())
            .count()
    }

    /// How many durable copies a write needs before its file may be
    /// committed: two (so one failure loses nothing), or fewer if the
    /// replication factor is smaller.
    pub fn min_write_copies(&self) -> usize {
        self.replication.min(2) as usize
    }
}
