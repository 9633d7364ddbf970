// Shared by the placement tests and the report example.
#![allow(dead_code)]

use cairn_proto::{ChunkId, ClusterMap, NodeId, NodeInfo, NodeState};

pub fn node(name: &str, zone: &str, capacity_bytes: u64) -> NodeInfo {
    NodeInfo {
        id: NodeId(name.to_string()),
        addr: format!("{name}:1"),
        zone: zone.to_string(),
        capacity_bytes,
        state: NodeState::Up,
        state_changed_ms: 0,
    }
}

pub fn map_of(nodes: Vec<NodeInfo>, replication: u32) -> ClusterMap {
    let mut nodes = nodes;
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    ClusterMap {
        epoch: 1,
        replication,
        chunk_size_bytes: 4 << 20,
        nodes,
    }
}

pub fn uniform_map(count: usize, zones: usize, replication: u32) -> ClusterMap {
    map_of(
        (0..count)
            .map(|i| {
                node(
                    &format!("node-{i:04}"),
                    &format!("zone-{}", i % zones),
                    1 << 40,
                )
            })
            .collect(),
        replication,
    )
}

pub fn chunk(i: u64) -> ChunkId {
    ChunkId::of(&i.to_le_bytes())
}
