//! Moving file contents: cutting a stream into chunks and placing each on
//! its targets; fetching chunks back in order, verifying every one.
//!
//! Cost sketch for a put of one 4 MiB chunk at rf 3: one read into a buffer
//! that is never copied again (`Bytes` is shared by the three requests), one
//! BLAKE3 pass (~1 ms) on the blocking pool, three PUTs in parallel. Memory:
//! at most `window` chunks are held at once (4 x 4 MiB by default).
//! A get holds at most `window` verified chunks waiting for their turn.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn_placement::Ring;
use cairn_proto::api::{Stat, MAX_HAS_CHUNKS_IDS};
use cairn_proto::{
    file_digest, ApiError, ChunkId, ChunkRef, ClusterMap, ErrorCode, NodeId, MAX_CHUNKS_PER_FILE,
};
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::chunks::ChunkClient;
use crate::error::ClientError;

/// Chunks in flight at once on a put or a get.
pub const DEFAULT_WINDOW: usize = 4;

/// What an upload produced: the commit's chunk list, size and digest.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub chunks: Vec<ChunkRef>,
    pub size_bytes: u64,
    pub digest: ChunkId,
}

/// Uploads streams as chunks, placed by one cluster map.
pub struct Uploader {
    chunks: ChunkClient,
    ring: Arc<Ring>,
    replication: usize,
    min_copies: usize,
    chunk_size_bytes: usize,
    window: usize,
}

impl Uploader {
    /// Fails at once if too few nodes are up to store `min_write_copies`.
    pub fn new(
        chunks: ChunkClient,
        map: &ClusterMap,
        window: usize,
    ) -> Result<Uploader, ClientError> {
        let ring = Ring::new(map);
        let min_copies = map.min_write_copies();
        if ring.writable_count() < min_copies.max(1) {
            return Err(ClientError::Api(ApiError::new(
                ErrorCode::NotEnoughNodes,
                format!(
                    "only {} storage nodes are up and have room, and a write needs at least {}; start more with `cairn chunk` and check `cairn status`",
                    ring.writable_count(),
                    min_copies.max(1)
                ),
            )));
        }
        assert!(window > 0, "upload window must be positive");
        Ok(Uploader {
            chunks,
            ring: Arc::new(ring),
            replication: map.replication as usize,
            min_copies: min_copies.max(1),
            chunk_size_bytes: map.chunk_size_bytes as usize,
            window,
        })
    }

    /// Reads `reader` to its end, storing each chunk on its targets.
    /// `on_progress` gets the byte count of each chunk once it is stored.
    pub async fn upload<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<UploadSummary, ClientError> {
        let mut in_flight = FuturesOrdered::new();
        let mut chunks = Vec::new();
        let mut size_bytes = 0u64;
        loop {
            if in_flight.len() >= self.window {
                let chunk = join_upload(in_flight.next().await.expect("window is not empty"))?;
                on_progress(u64::from(chunk.length_bytes));
                chunks.push(chunk);
            }
            let data = read_chunk(&mut reader, self.chunk_size_bytes).await?;
            if data.is_empty() {
                break;
            }
            size_bytes += data.len() as u64;
            if chunks.len() + in_flight.len() >= MAX_CHUNKS_PER_FILE {
                return Err(ClientError::Api(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("the file has more than {MAX_CHUNKS_PER_FILE} chunks; use a larger chunk size"),
                )));
            }
            in_flight.push_back(tokio::spawn(store_chunk(
                self.chunks.clone(),
                self.ring.clone(),
                self.replication,
                self.min_copies,
                data,
            )));
        }
        while let Some(joined) = in_flight.next().await {
            let chunk = join_upload(joined)?;
            on_progress(u64::from(chunk.length_bytes));
            chunks.push(chunk);
        }
        Ok(UploadSummary {
            digest: file_digest(&chunks),
            chunks,
            size_bytes,
        })
    }
}

fn join_upload(
    joined: Result<Result<ChunkRef, ClientError>, tokio::task::JoinError>,
) -> Result<ChunkRef, ClientError> {
    joined.map_err(|e| ClientError::Transfer(format!("upload task failed: {e}")))?
}

/// Fills a buffer of up to `chunk_size` bytes from `reader`; empty at the end.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    chunk_size: usize,
) -> Result<Bytes, ClientError> {
    let mut buffer = BytesMut::with_capacity(chunk_size);
    while buffer.len() < chunk_size {
        let limit = chunk_size - buffer.len();
        let read = (&mut *reader)
            .take(limit as u64)
            .read_buf(&mut buffer)
            .await
            .map_err(|e| ClientError::io("cannot read the input", e))?;
        if read == 0 {
            break;
        }
    }
    Ok(buffer.freeze())
}

/// Hashes one chunk and stores it on its targets: the first `replication`
/// nodes of its write preference list (nodes that are up and not full),
/// moving down the list past nodes that fail.
/// Succeeds once `min_copies` nodes hold it durably.
async fn store_chunk(
    client: ChunkClient,
    ring: Arc<Ring>,
    replication: usize,
    min_copies: usize,
    data: Bytes,
) -> Result<ChunkRef, ClientError> {
    let hashed = data.clone();
    let id = tokio::task::spawn_blocking(move || ChunkId::of(&hashed))
        .await
        .map_err(|e| ClientError::Transfer(format!("hash task failed: {e}")))?;
    let length_bytes = data.len() as u32;
    let candidates: Vec<(NodeId, String)> = ring
        .write_preference(&id, replication)
        .into_iter()
        .map(|n| (n.id.clone(), n.addr.clone()))
        .collect();
    let mut next = 0;
    let mut stored = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut attempts = FuturesUnordered::new();
    let attempt = |(node, addr): (NodeId, String)| {
        let client = client.clone();
        let data = data.clone();
        async move {
            let result = client.put(&addr, &id, data).await;
            (node, addr, result)
        }
    };
    while next < candidates.len() && attempts.len() < replication {
        attempts.push(attempt(candidates[next].clone()));
        next += 1;
    }
    while let Some((node, addr, result)) = attempts.next().await {
        match result {
            Ok(()) => stored += 1,
            Err(reason) => {
                tracing::warn!(chunk = %id, %node, %addr, %reason, "chunk write failed; trying the next node");
                failures.push(format!("{addr}: {reason}"));
                if next < candidates.len() {
                    attempts.push(attempt(candidates[next].clone()));
                    next += 1;
                }
            }
        }
    }
    if stored < min_copies {
        return Err(ClientError::Transfer(format!(
            "chunk {id} was stored on only {stored} node(s), fewer than the {min_copies} a write needs ({}); nothing was committed. Check `cairn status`",
            failures.join("; ")
        )));
    }
    Ok(ChunkRef { id, length_bytes })
}

/// Writes the contents of the file `stat` describes to `writer`, fetching
/// up to `window` chunks at once and verifying each before it is written.
/// A replica that is unreachable, missing or corrupt is skipped for the next
/// (targets first, then other nodes, then draining ones); a corrupt one is
/// reported to its node, which checks and replaces it.
pub async fn download<W: AsyncWrite + Unpin>(
    client: &ChunkClient,
    map: &ClusterMap,
    stat: &Stat,
    writer: &mut W,
    window: usize,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ClientError> {
    assert!(window > 0, "download window must be positive");
    if stat.digest != Some(file_digest(&stat.chunks)) {
        return Err(ClientError::Transfer(format!(
            "file {} has a chunk list that does not match its digest; the metadata is damaged",
            stat.id
        )));
    }
    let ring = Arc::new(Ring::new(map));
    let replication = map.replication as usize;
    // The capability for each chunk, when the cluster issues them.
    let mut pending = stat
        .chunks
        .iter()
        .copied()
        .enumerate()
        .map(|(i, chunk)| (chunk, stat.capabilities.get(i).cloned()));
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < window {
            let Some((chunk, capability)) = pending.next() else {
                break;
            };
            in_flight.push_back(tokio::spawn(fetch_chunk(
                client.clone(),
                ring.clone(),
                replication,
                chunk,
                capability,
            )));
        }
        let Some(joined) = in_flight.next().await else {
            break;
        };
        let data =
            joined.map_err(|e| ClientError::Transfer(format!("download task failed: {e}")))??;
        writer
            .write_all(&data)
            .await
            .map_err(|e| ClientError::io("cannot write the output", e))?;
        on_progress(data.len() as u64);
    }
    writer
        .flush()
        .await
        .map_err(|e| ClientError::io("cannot write the output", e))
}

async fn fetch_chunk(
    client: ChunkClient,
    ring: Arc<Ring>,
    replication: usize,
    chunk: ChunkRef,
    capability: Option<String>,
) -> Result<Bytes, ClientError> {
    let capability = capability.as_deref();
    let mut failures = Vec::new();
    for node in ring.read_order(&chunk.id, replication) {
        match client.get(&node.addr, &chunk.id, capability).await {
            Ok(data) => {
                let checked = data.clone();
                let actual = tokio::task::spawn_blocking(move || ChunkId::of(&checked))
                    .await
                    .map_err(|e| ClientError::Transfer(format!("hash task failed: {e}")))?;
                if actual == chunk.id && data.len() == chunk.length_bytes as usize {
                    return Ok(data);
                }
                tracing::warn!(chunk = %chunk.id, node = %node.id, addr = %node.addr, "corrupt replica: skipping it and reporting it to its node");
                if let Err(e) = client
                    .report_corrupt(&node.addr, &chunk.id, capability)
                    .await
                {
                    tracing::warn!(%e, "could not report the corrupt replica");
                }
                failures.push(format!("{}: corrupt copy", node.addr));
            }
            Err(reason) => failures.push(format!("{}: {reason}", node.addr)),
        }
    }
    Err(ClientError::Transfer(format!(
        "no node could give a correct copy of chunk {} ({}); check `cairn status`",
        chunk.id,
        if failures.is_empty() {
            "no storage node is up".to_string()
        } else {
            failures.join("; ")
        }
    )))
}

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
    /// `corrupt[i]`: some node found its copy of `ids[i]` corrupt (`verify`).
    pub corrupt: Vec<bool>,
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
        corrupt: vec![false; ids.len()],
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
                        survey.corrupt[offset + i] |= *corrupt;
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
