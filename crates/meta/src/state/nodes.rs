//! The cluster map in the state: node registration, node states, removal,
//! and the cluster's parameters.

use cairn_proto::api::RegisterRequest;
use cairn_proto::limits::MIN_CHUNK_SIZE_BYTES;
use cairn_proto::{
    ApiError, ClusterMap, ErrorCode, NodeId, NodeInfo, NodeState, MAX_CHUNK_SIZE_BYTES,
    MAX_REPLICATION,
};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_REMOVED_NODES;
use crate::records::{decode, encode, Initial, StateError, Versioned};
use crate::state::tables::{keys, MetaRows, Tables};

impl Versioned for ClusterMap {
    const NAME: &'static str = "cluster map";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> ClusterMap {
        match previous {}
    }
}

/// Ids of nodes removed from the map, oldest first: they may not register
/// again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedNodes(pub Vec<NodeId>);

impl Versioned for RemovedNodes {
    const NAME: &'static str = "removed nodes";
    const FORMAT: u8 = 1;
    type Previous = Initial;
    fn upgrade(previous: Initial) -> RemovedNodes {
        match previous {}
    }
}

pub fn read_map(meta: &impl MetaRows) -> Result<ClusterMap, StateError> {
    match meta.get(keys::MAP)? {
        Some(bytes) => decode(bytes.value()),
        None => Err(StateError::Corrupt("the cluster map is missing".into())),
    }
}

pub fn removed_nodes(meta: &impl MetaRows) -> Result<Vec<NodeId>, StateError> {
    match meta.get(keys::REMOVED_NODES)? {
        Some(bytes) => Ok(decode::<RemovedNodes>(bytes.value())?.0),
        None => Ok(Vec::new()),
    }
}

impl Tables<'_> {
    pub fn save_map(&mut self, map: &ClusterMap) -> Result<(), StateError> {
        self.meta.insert(keys::MAP, encode(map).as_slice())?;
        Ok(())
    }

    pub fn register_node(
        &mut self,
        req: &RegisterRequest,
        now_ns: u64,
    ) -> Result<ClusterMap, StateError> {
        if req.addr.is_empty()
            || req.addr.len() > 256
            || req.zone.len() > 64
            || req.id.0.is_empty()
            || req.id.0.len() > 64
        {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "node registration needs an id (at most 64 bytes), an address (at most 256) and a zone (at most 64)",
            )
            .into());
        }
        if removed_nodes(&self.meta)?.contains(&req.id) {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "storage node {} was removed from the cluster and may not join again; \
                     to reuse this machine, empty its data directory so it gets a new id",
                    req.id
                ),
            )
            .into());
        }
        let mut map = read_map(&self.meta)?;
        let wanted = NodeInfo {
            id: req.id.clone(),
            addr: req.addr.clone(),
            zone: req.zone.clone(),
            capacity_bytes: req.capacity_bytes.max(1),
            state: NodeState::Up,
            state_changed_ms: now_ns / 1_000_000,
        };
        match map.nodes.binary_search_by(|n| n.id.cmp(&req.id)) {
            Ok(i) => {
                // A known node keeps its state: a down node must earn `up`
                // through the liveness watcher's damping, and a drain or a
                // full disk outlives a restart.
                let current = &map.nodes[i];
                let same = current.addr == wanted.addr
                    && current.zone == wanted.zone
                    && current.capacity_bytes == wanted.capacity_bytes;
                if same {
                    return Ok(map);
                }
                map.nodes[i] = NodeInfo {
                    state: current.state,
                    state_changed_ms: current.state_changed_ms,
                    ..wanted
                };
            }
            Err(i) => map.nodes.insert(i, wanted),
        }
        map.epoch += 1;
        self.save_map(&map)?;
        Ok(map)
    }

    pub fn set_node_state(
        &mut self,
        id: &NodeId,
        state: NodeState,
        expect: Option<NodeState>,
        now_ns: u64,
    ) -> Result<ClusterMap, StateError> {
        let mut map = read_map(&self.meta)?;
        let index = map
            .nodes
            .binary_search_by(|n| n.id.cmp(id))
            .map_err(|_| ApiError::not_found(format!("storage node {id}")))?;
        let current = map.nodes[index].state;
        if expect.is_some_and(|expected| expected != current) {
            return Ok(map);
        }
        if current != state {
            map.nodes[index].state = state;
            map.nodes[index].state_changed_ms = now_ns / 1_000_000;
            map.epoch += 1;
            self.save_map(&map)?;
        }
        Ok(map)
    }

    pub fn remove_node(&mut self, id: &NodeId) -> Result<ClusterMap, StateError> {
        let mut map = read_map(&self.meta)?;
        let index = map
            .nodes
            .binary_search_by(|n| n.id.cmp(id))
            .map_err(|_| ApiError::not_found(format!("storage node {id}")))?;
        let state = map.nodes[index].state;
        if !matches!(state, NodeState::Draining | NodeState::Down) {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "storage node {id} is {}; drain it first with `cairn node drain {id}`",
                    state.as_str()
                ),
            )
            .into());
        }
        // Only writes from here on.
        map.nodes.remove(index);
        map.epoch += 1;
        self.save_map(&map)?;
        let mut removed = removed_nodes(&self.meta)?;
        removed.push(id.clone());
        if removed.len() > MAX_REMOVED_NODES {
            removed.remove(0);
        }
        self.meta.insert(
            keys::REMOVED_NODES,
            encode(&RemovedNodes(removed)).as_slice(),
        )?;
        Ok(map)
    }

    pub fn set_params(
        &mut self,
        replication: u32,
        chunk_size_bytes: u64,
    ) -> Result<ClusterMap, StateError> {
        if replication == 0 || replication > MAX_REPLICATION {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("replication must be between 1 and {MAX_REPLICATION}; got {replication}"),
            )
            .into());
        }
        if !(MIN_CHUNK_SIZE_BYTES..=MAX_CHUNK_SIZE_BYTES).contains(&chunk_size_bytes) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "chunk size must be between {} KiB and {} MiB; got {chunk_size_bytes} bytes",
                    MIN_CHUNK_SIZE_BYTES >> 10,
                    MAX_CHUNK_SIZE_BYTES >> 20
                ),
            )
            .into());
        }
        let mut map = read_map(&self.meta)?;
        if map.replication != replication || map.chunk_size_bytes != chunk_size_bytes {
            map.replication = replication;
            map.chunk_size_bytes = chunk_size_bytes;
            map.epoch += 1;
            self.save_map(&map)?;
        }
        Ok(map)
    }
}
