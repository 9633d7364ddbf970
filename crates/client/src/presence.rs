//! Where chunks are: which nodes hold a copy of each, asked of every node
//! that serves reads (for `stat --locations` and `fsck`).

use cairn_placement::Ring;
use cairn_proto::api::MAX_HAS_CHUNKS_IDS;
use cairn_proto::{ChunkId, ChunkRef, ClusterMap, NodeId};

use crate::chunks::ChunkClient;
use crate::error::ClientError;

/// Where one chunk should be and where it is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChunkLocation {
    pub id: ChunkId,
    pub length_bytes: u32,
    pub targets: Vec<NodeId>,
    /// Nodes (among those serving reads) that hold a copy.
    pub held_by: Vec<NodeId>,
}

/// Asks every node that serves reads which of `chunks` it holds.
pub async fn chunk_locations(
    client: &ChunkClient,
    map: &ClusterMap,
    chunks: &[ChunkRef],
) -> Result<Vec<ChunkLocation>, ClientError> {
    let ring = Ring::new(map);
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
    let survey = survey(client, map, &ids, false).await;
    Ok(chunks
        .iter()
        .zip(survey.held_by)
        .map(|(chunk, held_by)| ChunkLocation {
            id: chunk.id,
            length_bytes: chunk.length_bytes,
            targets: ring
                .targets(&chunk.id, map.replication as usize)
                .into_iter()
                .map(|n| n.id.clone())
                .collect(),
            held_by,
        })
        .collect())
}

/// What the nodes that serve reads say about a list of chunks.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// `held_by[i]`: the nodes holding a (good, with `verify`) copy of `ids[i]`.
    pub held_by: Vec<Vec<NodeId>>,
    /// `corrupt_on[i]`: the nodes that found their copy of `ids[i]`
    /// corrupt and quarantined it (`verify`).
    pub corrupt_on: Vec<Vec<NodeId>>,
    /// `quarantined_on[i]`: the nodes keeping a quarantined copy of
    /// `ids[i]`, found corrupt now or before (`verify`).
    pub quarantined_on: Vec<Vec<NodeId>>,
    /// Nodes that did not answer, with the reason.
    pub unreachable: Vec<String>,
}

/// Asks every node that serves reads, in batches, which of `ids` it holds;
/// with `verify` each node re-hashes its copies first.
pub async fn survey(
    client: &ChunkClient,
    map: &ClusterMap,
    ids: &[ChunkId],
    verify: bool,
) -> Survey {
    let mut survey = Survey {
        held_by: vec![Vec::new(); ids.len()],
        corrupt_on: vec![Vec::new(); ids.len()],
        quarantined_on: vec![Vec::new(); ids.len()],
        unreachable: Vec::new(),
    };
    for node in map.nodes.iter().filter(|n| n.state.serves_reads()) {
        for (batch_number, batch) in ids.chunks(MAX_HAS_CHUNKS_IDS).enumerate() {
            let offset = batch_number * MAX_HAS_CHUNKS_IDS;
            match client.has_detailed(&node.addr, batch, verify).await {
                Ok(answer) => {
                    for (i, present) in answer.present.iter().enumerate() {
                        if *present {
                            survey.held_by[offset + i].push(node.id.clone());
                        }
                    }
                    for (i, corrupt) in answer.corrupt.iter().enumerate() {
                        if *corrupt {
                            survey.corrupt_on[offset + i].push(node.id.clone());
                        }
                    }
                    for (i, quarantined) in answer.quarantined.iter().enumerate() {
                        if *quarantined {
                            survey.quarantined_on[offset + i].push(node.id.clone());
                        }
                    }
                }
                Err(e) => {
                    survey
                        .unreachable
                        .push(format!("{} ({}): {e}", node.id, node.addr));
                    break;
                }
            }
        }
    }
    survey
}
