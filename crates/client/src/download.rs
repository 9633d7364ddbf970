//! Reading file contents: whole or by byte range, fetching only the chunks
//! that overlap the range, each verified against its id before a byte of
//! it is handed on.
//!
//! A replica that is unreachable, missing, corrupt or slow to answer is
//! passed over for the next (targets first, then other nodes, then
//! draining ones); a corrupt one is reported to its node, which checks and
//! replaces it. Capabilities are renewed when they near their expiry, so a
//! read may last longer than one capability.
//!
//! Cost sketch: a range read fetches whole chunks (a chunk is verified
//! whole), so reading 1 byte costs one chunk (4 MiB by default); a reader
//! holds at most `window` verified chunks waiting for their turn. A chunk
//! is hashed piece by piece as it arrives and streamed on in those pieces
//! (`ReceivedChunk`): gathering it into one buffer first was a quarter of
//! an S3 gateway's CPU on a large GET. `Reader::chunk`, for callers that
//! want one buffer (the mount's cache), still makes that copy.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cairn_placement::Ring;
use cairn_proto::api::Stat;
use cairn_proto::{file_digest, ApiError, ErrorCode};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::chunks::{ChunkClient, ReceivedChunk};
use crate::error::ClientError;
use crate::limits::READ_HEADERS_TIMEOUT;
use crate::map_view::MapView;
use crate::meta::{MetaClient, Target};
use crate::upload::{renew_at, renewal_due};

/// An open file: its chunk list as of the open, and the capabilities to
/// read them. Cheap to share between tasks (`Arc`).
pub struct Reader {
    meta: MetaClient,
    chunks: ChunkClient,
    ring: Arc<Ring>,
    replication: usize,
    stat: Stat,
    /// `ends[i]`: the offset just past chunk `i`.
    ends: Vec<u64>,
    /// The capability of each chunk, and when to renew them (together;
    /// see `upload::renew_at`); empty when the cluster checks none.
    capabilities: tokio::sync::Mutex<(Vec<String>, u64)>,
}

impl Reader {
    /// A reader of the file `stat` describes (a stat made for reading,
    /// with its capabilities), placed by `map`.
    pub fn new(
        meta: MetaClient,
        chunks: ChunkClient,
        view: &MapView,
        stat: Stat,
    ) -> Result<Reader, ClientError> {
        match stat.kind {
            cairn_proto::api::EntryKind::File => {}
            cairn_proto::api::EntryKind::Dir => {
                return Err(ClientError::Api(ApiError::new(
                    ErrorCode::IsADirectory,
                    format!("id {} is a directory; only files have contents", stat.id),
                )))
            }
            kind => {
                return Err(ClientError::Api(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "id {} is {}; only files have contents",
                        stat.id,
                        kind.describe()
                    ),
                )))
            }
        }
        if stat.digest != Some(file_digest(&stat.chunks)) {
            return Err(ClientError::DamagedMetadata { id: stat.id });
        }
        let mut ends = Vec::with_capacity(stat.chunks.len());
        let mut end = 0u64;
        for chunk in &stat.chunks {
            end += u64::from(chunk.length_bytes);
            ends.push(end);
        }
        if end != stat.size_bytes {
            return Err(ClientError::DamagedMetadata { id: stat.id });
        }
        let capabilities = (
            stat.capabilities.clone(),
            renew_at(stat.capabilities_expire_ms),
        );
        Ok(Reader {
            meta,
            chunks,
            ring: view.ring.clone(),
            replication: view.map.replication as usize,
            stat,
            ends,
            capabilities: tokio::sync::Mutex::new(capabilities),
        })
    }

    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    pub fn size_bytes(&self) -> u64 {
        self.stat.size_bytes
    }

    /// The chunks that hold bytes `offset..offset + length` (clipped to
    /// the file).
    pub fn chunks_for(&self, offset: u64, length: u64) -> Range<usize> {
        let end = offset.saturating_add(length).min(self.stat.size_bytes);
        if offset >= end {
            return 0..0;
        }
        // The first chunk that ends after `offset`, to the first that ends
        // at or after `end`.
        let first = self.ends.partition_point(|&e| e <= offset);
        let last = self.ends.partition_point(|&e| e < end);
        first..last + 1
    }

    /// Where chunk `index` starts in the file.
    fn start_of(&self, index: usize) -> u64 {
        if index == 0 {
            0
        } else {
            self.ends[index - 1]
        }
    }

    /// Writes bytes `offset..offset + length` (the rest of the file with
    /// `None`; clipped to the file) to `writer`, fetching up to `window`
    /// chunks at once; returns how many bytes it wrote. `on_progress` gets
    /// each piece's length once written.
    pub async fn copy_range<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        offset: u64,
        length: Option<u64>,
        writer: &mut W,
        window: usize,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ClientError> {
        let mut pieces = std::pin::pin!(self.stream_range(offset, length, window));
        let mut written = 0u64;
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            writer
                .write_all(&piece)
                .await
                .map_err(|e| ClientError::io("cannot write the output", e))?;
            written += piece.len() as u64;
            on_progress(piece.len() as u64);
        }
        writer
            .flush()
            .await
            .map_err(|e| ClientError::io("cannot write the output", e))?;
        Ok(written)
    }

    /// Bytes `offset..offset + length` (the rest of the file with `None`;
    /// clipped to the file) as a stream of verified pieces in order (the
    /// pieces each chunk arrived in), fetching up to `window` chunks at
    /// once, each on its own task so that receiving and verifying spread
    /// over the cores. For servers that stream a file into a response body.
    pub fn stream_range(
        self: &Arc<Self>,
        offset: u64,
        length: Option<u64>,
        window: usize,
    ) -> impl Stream<Item = Result<Bytes, ClientError>> + Send + 'static {
        assert!(window > 0, "read window must be positive");
        let length = length.unwrap_or(u64::MAX);
        let end = offset.saturating_add(length).min(self.stat.size_bytes);
        let fetcher = self.clone();
        let slicer = self.clone();
        futures::stream::iter(self.chunks_for(offset, length))
            .map(move |index| {
                let reader = fetcher.clone();
                async move {
                    tokio::spawn(async move { reader.received(index).await.map(|d| (index, d)) })
                        .await
                        .map_err(|e| ClientError::Protocol {
                            server: "this client".into(),
                            detail: format!("read task failed: {e}"),
                        })?
                }
            })
            .buffered(window)
            .map_ok(move |(index, data)| {
                let start = slicer.start_of(index);
                let from = offset.saturating_sub(start) as usize;
                let to = (end - start).min(data.len_bytes() as u64) as usize;
                futures::stream::iter(data.slice(from..to).into_iter().map(Ok))
            })
            .try_flatten()
    }

    /// Chunk `index`, verified, in one buffer.
    pub async fn chunk(&self, index: usize) -> Result<Bytes, ClientError> {
        Ok(self.received(index).await?.into_bytes())
    }

    /// Chunk `index`, verified, as it arrived.
    async fn received(&self, index: usize) -> Result<ReceivedChunk, ClientError> {
        let chunk = self.stat.chunks[index];
        let mut capability = self.capability(index).await?;
        let mut failures = Vec::new();
        let mut corrupt = Vec::new();
        let nodes = self.ring.read_order(&chunk.id, self.replication);
        let last = nodes.len().saturating_sub(1);
        for (position, node) in nodes.iter().enumerate() {
            // A slow replica is passed over for the next; the last is
            // waited for.
            let headers_timeout = (position < last).then_some(READ_HEADERS_TIMEOUT);
            let fetch = |capability: Option<String>| async move {
                self.chunks
                    .get(
                        &node.addr,
                        &chunk.id,
                        capability.as_deref(),
                        headers_timeout,
                        chunk.length_bytes as usize,
                    )
                    .await
            };
            let mut fetched = fetch(capability.clone()).await;
            if matches!(&fetched, Err(e) if e.code == Some(ErrorCode::Unauthenticated)) {
                capability = self.renew(index, capability.as_deref()).await?;
                fetched = fetch(capability.clone()).await;
            }
            match fetched {
                Ok(data) => {
                    if data.is(&chunk.id, chunk.length_bytes as usize) {
                        return Ok(data);
                    }
                    tracing::warn!(chunk = %chunk.id, node = %node.id, addr = %node.addr, "corrupt replica: skipping it and reporting it to its node");
                    if let Err(e) = self
                        .chunks
                        .report_corrupt(&node.addr, &chunk.id, capability.as_deref())
                        .await
                    {
                        tracing::warn!(%e, "could not report the corrupt replica");
                    }
                    corrupt.push(format!("{} ({})", node.id, node.addr));
                }
                Err(reason) => failures.push(format!("{}: {reason}", node.addr)),
            }
        }
        if !corrupt.is_empty() && failures.is_empty() {
            return Err(ClientError::Corrupt {
                id: chunk.id,
                nodes: corrupt,
            });
        }
        failures.extend(corrupt.into_iter().map(|n| format!("{n}: corrupt copy")));
        Err(ClientError::ChunkUnavailable {
            id: chunk.id,
            attempts: failures,
        })
    }

    /// The capability of chunk `index`, renewed first if they all expire
    /// within the margin.
    async fn capability(&self, index: usize) -> Result<Option<String>, ClientError> {
        let current = self.capabilities.lock().await;
        if current.0.is_empty() {
            return Ok(None);
        }
        if !renewal_due(current.1) {
            return Ok(current.0.get(index).cloned());
        }
        let expired = current.0.get(index).cloned();
        drop(current);
        self.renew(index, expired.as_deref()).await
    }

    /// Fresh capabilities for the whole file (unless another task renewed
    /// them since `expired` was handed out). The file must not have changed:
    /// capabilities are issued for its current chunks only.
    async fn renew(
        &self,
        index: usize,
        expired: Option<&str>,
    ) -> Result<Option<String>, ClientError> {
        let mut current = self.capabilities.lock().await;
        if current.0.get(index).map(String::as_str) == expired {
            let fresh = self
                .meta
                .stat_target(Target::Id(self.stat.id), true)
                .await?;
            if fresh.digest != self.stat.digest {
                return Err(ClientError::Changed { id: self.stat.id });
            }
            *current = (fresh.capabilities, renew_at(fresh.capabilities_expire_ms));
        }
        Ok(current.0.get(index).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::api::EntryKind;
    use cairn_proto::{ChunkId, ChunkRef, ClusterMap};

    fn reader_of(lengths: &[u32]) -> Reader {
        let chunks: Vec<ChunkRef> = lengths
            .iter()
            .enumerate()
            .map(|(i, &length_bytes)| ChunkRef {
                id: ChunkId::of(&i.to_le_bytes()),
                length_bytes,
            })
            .collect();
        let stat = Stat {
            id: 7,
            kind: EntryKind::File,
            size_bytes: lengths.iter().map(|&l| u64::from(l)).sum(),
            mode: 0o644,
            owner: String::new(),
            group: String::new(),
            uid: 0,
            gid: 0,
            parent: 1,
            target: None,
            rdev: 0,
            links: 1,
            version: 1,
            created_ms: 0,
            modified_ms: 0,
            created_ns: 0,
            modified_ns: 0,
            changed_ns: 0,
            digest: Some(file_digest(&chunks)),
            chunks,
            capabilities: Vec::new(),
            capabilities_expire_ms: 0,
            xattrs: None,
            accessed_ns: 0,
        };
        let map = ClusterMap {
            epoch: 1,
            replication: 1,
            chunk_size_bytes: 4,
            nodes: Vec::new(),
        };
        Reader::new(
            MetaClient::new("127.0.0.1:1"),
            ChunkClient::new(),
            &MapView::new(map),
            stat,
        )
        .unwrap()
    }

    #[test]
    fn a_range_maps_to_the_chunks_it_overlaps() {
        // Chunks at 0..4, 4..8, 8..10.
        let reader = reader_of(&[4, 4, 2]);
        assert_eq!(reader.chunks_for(0, 10), 0..3);
        assert_eq!(reader.chunks_for(0, 4), 0..1);
        assert_eq!(reader.chunks_for(3, 2), 0..2, "across a boundary");
        assert_eq!(reader.chunks_for(4, 4), 1..2, "exactly one chunk");
        assert_eq!(reader.chunks_for(7, 100), 1..3, "clipped to the file");
        assert_eq!(reader.chunks_for(10, 5), 0..0, "past the end");
        assert_eq!(reader.chunks_for(2, 0), 0..0, "nothing");
        assert_eq!(reader_of(&[]).chunks_for(0, 10), 0..0);
    }

    #[test]
    fn a_damaged_chunk_list_is_refused() {
        let mut stat = reader_of(&[4]).stat.clone();
        stat.size_bytes = 5;
        let map = ClusterMap {
            epoch: 1,
            replication: 1,
            chunk_size_bytes: 4,
            nodes: Vec::new(),
        };
        let refused = Reader::new(
            MetaClient::new("127.0.0.1:1"),
            ChunkClient::new(),
            &MapView::new(map),
            stat,
        );
        assert!(matches!(
            refused,
            Err(ClientError::DamagedMetadata { id: 7 })
        ));
    }
}
