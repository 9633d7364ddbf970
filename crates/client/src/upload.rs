//! Storing file contents: cutting a stream into chunks and placing each on
//! its targets.
//!
//! Cost sketch for a put of one 4 MiB chunk at rf 3: one read into a buffer
//! that is never copied again (`Bytes` is shared by the three requests), one
//! BLAKE3 pass (~1 ms) on the blocking pool, three PUTs in parallel. Memory:
//! at most `window` chunks are held at once (4 x 4 MiB by default).
//!
//! A chunk is stored once `min_write_copies` nodes hold it durably and the
//! other targets have had a grace period ([`STRAGGLER_GRACE_FACTOR`] times
//! as long, within bounds): a paused or slow node costs a write that long,
//! not the chunk timeout, and repair makes its copy later.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cairn_placement::Ring;
use cairn_proto::api::{GrantOp, GrantRequest, OnExists};
use cairn_proto::{
    file_digest, ApiError, ChunkId, ChunkRef, ClusterMap, ErrorCode, NodeId, MAX_CHUNKS_PER_FILE,
};
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::chunks::{ChunkClient, ChunkError};
use crate::error::ClientError;
use crate::limits::{
    CAPABILITY_RENEW_MARGIN, STRAGGLER_GRACE_FACTOR, STRAGGLER_GRACE_MAX, STRAGGLER_GRACE_MIN,
};
use crate::map_view::MapView;
use crate::meta::MetaClient;

/// What an upload produced: the commit's chunk list, size and digest.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub chunks: Vec<ChunkRef>,
    pub size_bytes: u64,
    pub digest: ChunkId,
}

/// A chunk capability from `chunks/grant` that renews itself before it
/// expires (or when a chunk server says it has), so that a transfer may
/// last longer than one capability.
pub struct Grant {
    meta: MetaClient,
    request: GrantRequest,
    /// The capability and when to renew it (ms since the Unix epoch; see
    /// [`renew_at`]); `None` when the cluster has no secret and checks none.
    current: tokio::sync::Mutex<(Option<String>, u64)>,
}

impl Grant {
    /// A capability to store the chunks of a file at `path`: refused now
    /// if the caller may not write it (or, with `on_exists` `fail`, if a
    /// file is there).
    pub async fn put(
        meta: &MetaClient,
        path: &str,
        on_exists: OnExists,
    ) -> Result<Arc<Grant>, ClientError> {
        Grant::new(
            meta,
            GrantRequest {
                op: GrantOp::Put,
                path: Some(path.to_string()),
                on_exists: Some(on_exists),
            },
        )
        .await
    }

    /// A capability to store chunks of files named only when they are
    /// committed (the commit checks the caller may write them): one for
    /// every file a long-lived writer such as the mount writes.
    pub async fn store(meta: &MetaClient) -> Result<Arc<Grant>, ClientError> {
        let request = GrantRequest {
            op: GrantOp::Put,
            path: None,
            on_exists: None,
        };
        Grant::new(meta, request).await
    }

    /// An admin's capability for presence, verify and repair calls.
    pub async fn admin(meta: &MetaClient) -> Result<Arc<Grant>, ClientError> {
        let request = GrantRequest {
            op: GrantOp::Admin,
            path: None,
            on_exists: None,
        };
        Grant::new(meta, request).await
    }

    async fn new(meta: &MetaClient, request: GrantRequest) -> Result<Arc<Grant>, ClientError> {
        let answer = meta.grant(&request).await?;
        Ok(Arc::new(Grant {
            meta: meta.clone(),
            request,
            current: tokio::sync::Mutex::new((answer.capability, renew_at(answer.expires_ms))),
        }))
    }

    /// The capability, renewed first if it expires within the margin.
    pub async fn capability(&self) -> Result<Option<String>, ClientError> {
        let mut current = self.current.lock().await;
        if current.0.is_some() && renewal_due(current.1) {
            let answer = self.meta.grant(&self.request).await?;
            *current = (answer.capability, renew_at(answer.expires_ms));
        }
        Ok(current.0.clone())
    }

    /// A new capability, now (a chunk server said the one it had expired,
    /// as when the clocks disagree).
    pub async fn renew(&self, expired: Option<&str>) -> Result<Option<String>, ClientError> {
        let mut current = self.current.lock().await;
        // Another transfer may have renewed it meanwhile.
        if current.0.as_deref() == expired {
            let answer = self.meta.grant(&self.request).await?;
            *current = (answer.capability, renew_at(answer.expires_ms));
        }
        Ok(current.0.clone())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When a capability received now and expiring at `expires_ms` is renewed:
/// [`CAPABILITY_RENEW_MARGIN`] before it expires, or with a quarter of its
/// life left if that is shorter (a short `--capability-ttl` must not renew
/// on every use).
pub(crate) fn renew_at(expires_ms: u64) -> u64 {
    let life_ms = expires_ms.saturating_sub(now_ms());
    let margin_ms = (CAPABILITY_RENEW_MARGIN.as_millis() as u64).min(life_ms / 4);
    expires_ms - margin_ms
}

/// Whether the time to renew (from [`renew_at`]) has come.
pub(crate) fn renewal_due(renew_at_ms: u64) -> bool {
    now_ms() >= renew_at_ms
}

/// Uploads streams as chunks, placed by one cluster map.
pub struct Uploader {
    chunks: ChunkClient,
    grant: Arc<Grant>,
    ring: Arc<Ring>,
    replication: usize,
    min_copies: usize,
    chunk_size_bytes: usize,
    window: usize,
    /// A fresher map a chunk had to fetch (its nodes filled up or went
    /// down), for the caller's cache.
    refreshed: Arc<std::sync::Mutex<Option<ClusterMap>>>,
}

impl Uploader {
    /// Fails at once if too few nodes are up to store `min_write_copies`.
    pub fn new(
        chunks: ChunkClient,
        grant: Arc<Grant>,
        view: &MapView,
        window: usize,
    ) -> Result<Uploader, ClientError> {
        assert!(window > 0, "upload window must be positive");
        let (map, ring) = (&view.map, view.ring.clone());
        let min_copies = map.min_write_copies().max(1);
        if ring.writable_count() < min_copies {
            return Err(ClientError::Api(ApiError::new(
                ErrorCode::NotEnoughNodes,
                format!(
                    "only {} storage nodes are up and have room, and a write needs at least {min_copies}; \
                     start more with `cairn chunk` and check `cairn status`",
                    ring.writable_count(),
                ),
            )));
        }
        Ok(Uploader {
            chunks,
            grant,
            ring,
            replication: map.replication as usize,
            min_copies,
            chunk_size_bytes: map.chunk_size_bytes as usize,
            window,
            refreshed: Arc::default(),
        })
    }

    /// The map a chunk fetched when the one given ran out of nodes, if any.
    pub fn refreshed_map(&self) -> Option<ClusterMap> {
        self.refreshed.lock().expect("refreshed map lock").clone()
    }

    /// Stores one chunk (at most the map's chunk size) on its targets.
    pub async fn store(&self, data: Bytes) -> Result<ChunkRef, ClientError> {
        assert!(
            data.len() <= self.chunk_size_bytes,
            "a chunk of {} bytes is larger than the chunk size {}",
            data.len(),
            self.chunk_size_bytes
        );
        self.store_chunk().run(data).await
    }

    fn store_chunk(&self) -> StoreChunk {
        StoreChunk {
            client: self.chunks.clone(),
            grant: self.grant.clone(),
            ring: self.ring.clone(),
            replication: self.replication,
            min_copies: self.min_copies,
            refreshed: self.refreshed.clone(),
        }
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
            in_flight.push_back(tokio::spawn(self.store_chunk().run(data)));
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
    joined.map_err(|e| ClientError::Protocol {
        server: "this client".into(),
        detail: format!("upload task failed: {e}"),
    })?
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

/// Chunks up to this size are hashed on the calling task: BLAKE3 takes
/// ~15 µs for 64 KiB, less than handing the work to the blocking pool and
/// back (a small S3 put's chunk is hashed in microseconds). Larger ones,
/// up to 64 MiB (tens of ms), go to the pool.
const HASH_INLINE_MAX_BYTES: usize = 64 << 10;

/// Storing one chunk on its targets: the first `replication` nodes of its
/// write preference list (nodes that are up and not full), moving down the
/// list past nodes that fail.
struct StoreChunk {
    client: ChunkClient,
    grant: Arc<Grant>,
    ring: Arc<Ring>,
    replication: usize,
    min_copies: usize,
    refreshed: Arc<std::sync::Mutex<Option<ClusterMap>>>,
}

impl StoreChunk {
    async fn run(self, data: Bytes) -> Result<ChunkRef, ClientError> {
        let id = if data.len() <= HASH_INLINE_MAX_BYTES {
            ChunkId::of(&data)
        } else {
            let hashed = data.clone();
            tokio::task::spawn_blocking(move || ChunkId::of(&hashed))
                .await
                .map_err(|e| ClientError::Protocol {
                    server: "this client".into(),
                    detail: format!("hash task failed: {e}"),
                })?
        };
        let length_bytes = data.len() as u32;
        let started = Instant::now();
        let mut stored = 0;
        let mut tried: HashSet<NodeId> = HashSet::new();
        let mut failures: Vec<String> = Vec::new();
        let mut attempts = FuturesUnordered::new();
        // The map the writer started from may be a few seconds old (a node
        // filled up or went down since): when it runs out of nodes, one
        // more round with a fresh map.
        for round in 0..2 {
            let ring = match round {
                0 => self.ring.clone(),
                _ => match self.grant.meta.map().await {
                    Ok(map) => {
                        let ring = Arc::new(Ring::new(&map));
                        *self.refreshed.lock().expect("refreshed map lock") = Some(map);
                        ring
                    }
                    Err(e) => {
                        failures.push(format!("cannot fetch a fresh cluster map: {e}"));
                        break;
                    }
                },
            };
            let candidates: Vec<(NodeId, String)> = ring
                .write_preference(&id, self.replication)
                .into_iter()
                .filter(|n| !tried.contains(&n.id))
                .map(|n| (n.id.clone(), n.addr.clone()))
                .collect();
            let mut next = 0;
            while next < candidates.len() && attempts.len() + stored < self.replication {
                tried.insert(candidates[next].0.clone());
                attempts.push(self.put_on(candidates[next].clone(), id, data.clone()));
                next += 1;
            }
            // Set once enough copies are durable: the others have until then.
            let mut grace_ends: Option<tokio::time::Instant> = None;
            loop {
                let finished = match grace_ends {
                    None => attempts.next().await,
                    Some(deadline) => {
                        match tokio::time::timeout_at(deadline, attempts.next()).await {
                            Ok(finished) => finished,
                            Err(_) => break,
                        }
                    }
                };
                let Some((node, addr, result)) = finished else {
                    break;
                };
                match result {
                    Ok(()) => {
                        stored += 1;
                        if stored >= self.min_copies && grace_ends.is_none() {
                            let grace = (started.elapsed() * STRAGGLER_GRACE_FACTOR)
                                .clamp(STRAGGLER_GRACE_MIN, STRAGGLER_GRACE_MAX);
                            grace_ends = Some(tokio::time::Instant::now() + grace);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(chunk = %id, %node, %addr, %reason, "chunk write failed; trying the next node");
                        failures.push(format!("{addr}: {reason}"));
                        if next < candidates.len() {
                            tried.insert(candidates[next].0.clone());
                            attempts.push(self.put_on(candidates[next].clone(), id, data.clone()));
                            next += 1;
                        }
                    }
                }
            }
            if stored >= self.min_copies {
                break;
            }
        }
        if stored < self.min_copies {
            return Err(ClientError::NotStored {
                id,
                stored,
                needed: self.min_copies,
                failures,
            });
        }
        if !attempts.is_empty() {
            tracing::info!(
                chunk = %id,
                stored,
                replication = self.replication,
                slow = attempts.len(),
                "chunk stored with the copies a write needs; slow nodes left to repair"
            );
        }
        Ok(ChunkRef { id, length_bytes })
    }

    /// One PUT of the chunk to one node, renewing the capability once if
    /// the node says it expired.
    async fn put_on(
        &self,
        (node, addr): (NodeId, String),
        id: ChunkId,
        data: Bytes,
    ) -> (NodeId, String, Result<(), ChunkError>) {
        let result = async {
            let capability = self.grant.capability().await.map_err(to_chunk_error)?;
            let first = self
                .client
                .put_with(&addr, &id, data.clone(), capability.as_deref())
                .await;
            match first {
                Err(e) if e.code == Some(ErrorCode::Unauthenticated) => {
                    let renewed = self
                        .grant
                        .renew(capability.as_deref())
                        .await
                        .map_err(to_chunk_error)?;
                    self.client
                        .put_with(&addr, &id, data, renewed.as_deref())
                        .await
                }
                other => other,
            }
        }
        .await;
        (node, addr, result)
    }
}

fn to_chunk_error(e: ClientError) -> ChunkError {
    ChunkError {
        code: e.code(),
        message: format!("cannot renew the write capability: {e}"),
    }
}
