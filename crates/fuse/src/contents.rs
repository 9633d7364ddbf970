//! The contents of one open file as the mount sees them: its chunk list,
//! with the chunks that writes touched held in memory until they are
//! uploaded, and uploaded chunks kept until the next commit. Only the
//! chunks a write touched are rewritten; the others keep their ids.
//!
//! Extents are the file's chunks in order. Every extent but the last is
//! a full chunk, except where the file was committed with shorter chunks
//! (another door's chunk list, or an earlier truncate), which is fine: a
//! chunk list may hold chunks of any size up to the chunk size.
//!
//! Chunks travel through [`ChunkIo`], so that the logic is tested here
//! against memory and runs in the mount against the cluster.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cairn_client::ClientError;
use cairn_proto::{ApiError, ChunkRef, ErrorCode, MAX_CHUNKS_PER_FILE};
use tokio::task::JoinHandle;

use crate::limits::{MAX_DIRTY_CHUNKS, MAX_UPLOADS_IN_FLIGHT};

/// Where chunks come from and go to.
pub trait ChunkIo: Send + Sync + 'static {
    /// The committed chunk `chunk`, verified.
    fn fetch(&self, chunk: ChunkRef) -> impl Future<Output = Result<Bytes, ClientError>> + Send;
    /// Stores `data` as a chunk (uncommitted) and names it.
    fn store(&self, data: Bytes) -> impl Future<Output = Result<ChunkRef, ClientError>> + Send;
}

enum Extent {
    /// A chunk of the last commit.
    Stored(ChunkRef),
    /// Rewritten or new bytes, not yet uploaded.
    Dirty(Vec<u8>),
    /// Being uploaded by the upload with this generation.
    Uploading { data: Bytes, generation: u64 },
    /// Uploaded, not yet committed: its bytes stay here until the commit,
    /// since a chunk can only be fetched once a commit names it.
    Uploaded { chunk: ChunkRef, data: Bytes },
}

impl Extent {
    fn len(&self) -> u64 {
        match self {
            Extent::Stored(chunk) => u64::from(chunk.length_bytes),
            Extent::Dirty(data) => data.len() as u64,
            Extent::Uploading { data, .. } | Extent::Uploaded { data, .. } => data.len() as u64,
        }
    }
}

struct Upload {
    index: usize,
    generation: u64,
    task: JoinHandle<Result<ChunkRef, ClientError>>,
}

/// One piece of a read: bytes at hand, or part of a committed chunk to fetch.
pub enum Piece {
    Ready(Bytes),
    Fetch {
        chunk: ChunkRef,
        from: usize,
        to: usize,
    },
}

pub struct Contents<I: ChunkIo> {
    io: Arc<I>,
    chunk_size_bytes: u64,
    extents: Vec<Extent>,
    /// `ends[i]`: where extent `i` ends in the file.
    ends: Vec<u64>,
    /// Indices of the `Dirty` extents.
    dirty: BTreeSet<usize>,
    uploads: VecDeque<Upload>,
    next_generation: u64,
    /// Bytes of `Uploaded` extents.
    uncommitted_bytes: u64,
    /// Whether the contents differ from the last commit.
    changed: bool,
}

impl<I: ChunkIo> Contents<I> {
    /// The contents of a file with these committed chunks.
    pub fn new(io: Arc<I>, chunk_size_bytes: u64, chunks: &[ChunkRef]) -> Contents<I> {
        assert!(chunk_size_bytes > 0, "chunk size must be positive");
        let mut ends = Vec::with_capacity(chunks.len());
        let mut end = 0;
        for chunk in chunks {
            end += u64::from(chunk.length_bytes);
            ends.push(end);
        }
        Contents {
            io,
            chunk_size_bytes,
            extents: chunks.iter().copied().map(Extent::Stored).collect(),
            ends,
            dirty: BTreeSet::new(),
            uploads: VecDeque::new(),
            next_generation: 0,
            uncommitted_bytes: 0,
            changed: false,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Whether there is anything to commit.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Bytes uploaded and not yet committed (held in memory).
    pub fn uncommitted_bytes(&self) -> u64 {
        self.uncommitted_bytes
    }

    /// What bytes `offset..offset + length` (clipped to the file) are made
    /// of, in order.
    pub fn plan_read(&self, offset: u64, length: u64) -> Vec<Piece> {
        let end = offset.saturating_add(length).min(self.size_bytes());
        let mut pieces = Vec::new();
        let mut pos = offset;
        while pos < end {
            let index = self.index_of(pos);
            let start = self.start_of(index);
            let from = (pos - start) as usize;
            let to = ((end.min(self.ends[index])) - start) as usize;
            pieces.push(match &self.extents[index] {
                Extent::Stored(chunk) => Piece::Fetch {
                    chunk: *chunk,
                    from,
                    to,
                },
                Extent::Dirty(data) => Piece::Ready(Bytes::copy_from_slice(&data[from..to])),
                Extent::Uploading { data, .. } | Extent::Uploaded { data, .. } => {
                    Piece::Ready(data.slice(from..to))
                }
            });
            pos = start + to as u64;
        }
        pieces
    }

    /// The committed chunks after the one holding `offset`, up to `count`
    /// of them: what a sequential reader asks for next.
    pub fn chunks_after(&self, offset: u64, count: usize) -> Vec<ChunkRef> {
        if offset >= self.size_bytes() {
            return Vec::new();
        }
        let index = self.index_of(offset);
        self.extents[index + 1..]
            .iter()
            .take(count)
            .filter_map(|extent| match extent {
                Extent::Stored(chunk) => Some(*chunk),
                _ => None,
            })
            .collect()
    }

    /// The largest file a commit can name: the chunk list's limit in
    /// chunks of this file's size.
    pub fn max_size_bytes(&self) -> u64 {
        self.chunk_size_bytes * MAX_CHUNKS_PER_FILE as u64
    }

    /// Refuses a size past [`Contents::max_size_bytes`] (EFBIG), before
    /// anything changes.
    fn check_size(&self, size_bytes: u64) -> Result<(), ClientError> {
        if size_bytes <= self.max_size_bytes() {
            return Ok(());
        }
        Err(ClientError::Api(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "a file holds at most {} bytes ({MAX_CHUNKS_PER_FILE} chunks of {} bytes); {size_bytes} asked",
                self.max_size_bytes(),
                self.chunk_size_bytes
            ),
        )))
    }

    /// Writes `data` at `offset`, growing the file (with zeros up to
    /// `offset` if it starts past the end).
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        self.check_size(offset.saturating_add(data.len() as u64))?;
        if offset > self.size_bytes() {
            self.grow_to(offset).await?;
        }
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let source = &data[(pos - offset) as usize..];
            pos += if pos == self.size_bytes() {
                self.append(source).await?
            } else {
                self.overwrite(pos, source).await?
            };
        }
        self.changed = true;
        self.upload_behind(end).await
    }

    /// Sets the length to `size_bytes`: cuts, or grows with zeros.
    pub async fn truncate(&mut self, size_bytes: u64) -> Result<(), ClientError> {
        self.check_size(size_bytes)?;
        self.changed = true;
        if size_bytes >= self.size_bytes() {
            return self.grow_to(size_bytes).await;
        }
        // Keep the extents that start before the new end; cut the last.
        let keep = if size_bytes == 0 {
            0
        } else {
            self.index_of(size_bytes - 1) + 1
        };
        let dropped: u64 = self
            .extents
            .drain(keep..)
            .map(|extent| match extent {
                Extent::Uploaded { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum();
        self.uncommitted_bytes -= dropped;
        self.ends.truncate(keep);
        self.dirty.retain(|&i| i < keep);
        if let Some(last) = keep.checked_sub(1) {
            if self.ends[last] > size_bytes {
                let start = self.start_of(last);
                let buffer = self.make_dirty(last).await?;
                buffer.truncate((size_bytes - start) as usize);
                self.ends[last] = size_bytes;
            }
        }
        debug_assert_eq!(self.size_bytes(), size_bytes);
        Ok(())
    }

    /// Uploads every dirty extent and waits for every upload: the chunk
    /// list to commit.
    pub async fn settle(&mut self) -> Result<Vec<ChunkRef>, ClientError> {
        while let Some(&index) = self.dirty.iter().next() {
            self.start_upload(index).await?;
        }
        while !self.uploads.is_empty() {
            self.finish_oldest_upload().await?;
        }
        Ok(self
            .extents
            .iter()
            .map(|extent| match extent {
                Extent::Stored(chunk) | Extent::Uploaded { chunk, .. } => *chunk,
                Extent::Dirty(_) | Extent::Uploading { .. } => {
                    unreachable!("every extent is uploaded once settled")
                }
            })
            .collect())
    }

    /// Records that the chunk list [`Contents::settle`] gave was committed
    /// (nothing changed since): uploaded extents become stored ones, and
    /// their bytes are handed back for a read cache.
    pub fn committed(&mut self) -> Vec<(ChunkRef, Bytes)> {
        assert!(
            self.dirty.is_empty() && self.uploads.is_empty(),
            "committed without settling"
        );
        let mut released = Vec::new();
        for extent in &mut self.extents {
            if let Extent::Uploaded { chunk, data } = extent {
                released.push((*chunk, std::mem::take(data)));
                *extent = Extent::Stored(*chunk);
            }
        }
        self.uncommitted_bytes = 0;
        self.changed = false;
        released
    }

    // ---- the steps ----

    /// Appends to the last extent while it has room, else starts a new
    /// one; returns the bytes taken from `source`.
    async fn append(&mut self, source: &[u8]) -> Result<u64, ClientError> {
        let room = |len: u64| self.chunk_size_bytes - len;
        let has_room = self.extents.last().is_some_and(|e| room(e.len()) > 0);
        if !has_room {
            let capacity = (source.len() as u64).min(self.chunk_size_bytes) as usize;
            self.extents
                .push(Extent::Dirty(Vec::with_capacity(capacity)));
            self.ends.push(self.size_bytes());
            self.dirty.insert(self.extents.len() - 1);
        }
        let last = self.extents.len() - 1;
        let chunk_size = self.chunk_size_bytes;
        let buffer = self.make_dirty(last).await?;
        let taken = (chunk_size - buffer.len() as u64).min(source.len() as u64);
        buffer.extend_from_slice(&source[..taken as usize]);
        self.ends[last] += taken;
        Ok(taken)
    }

    /// Overwrites bytes inside the file from `pos`, within one extent;
    /// returns the bytes taken from `source`.
    async fn overwrite(&mut self, pos: u64, source: &[u8]) -> Result<u64, ClientError> {
        let index = self.index_of(pos);
        let within = (pos - self.start_of(index)) as usize;
        let buffer = self.make_dirty(index).await?;
        let taken = (buffer.len() - within).min(source.len());
        buffer[within..within + taken].copy_from_slice(&source[..taken]);
        Ok(taken as u64)
    }

    async fn grow_to(&mut self, size_bytes: u64) -> Result<(), ClientError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while self.size_bytes() < size_bytes {
            let missing = (size_bytes - self.size_bytes()).min(ZEROS.len() as u64);
            self.append(&ZEROS[..missing as usize]).await?;
            self.upload_behind(self.size_bytes()).await?;
        }
        Ok(())
    }

    /// Extent `index` as bytes to change in place.
    async fn make_dirty(&mut self, index: usize) -> Result<&mut Vec<u8>, ClientError> {
        let bytes = match &self.extents[index] {
            Extent::Dirty(_) => None,
            Extent::Stored(chunk) => Some(self.io.fetch(*chunk).await?.to_vec()),
            // An upload in flight is left to finish; its result no longer
            // matches this extent and is dropped.
            Extent::Uploading { data, .. } => Some(data.to_vec()),
            Extent::Uploaded { data, .. } => {
                self.uncommitted_bytes -= data.len() as u64;
                Some(data.to_vec())
            }
        };
        if let Some(bytes) = bytes {
            self.extents[index] = Extent::Dirty(bytes);
            self.dirty.insert(index);
        }
        match &mut self.extents[index] {
            Extent::Dirty(data) => Ok(data),
            _ => unreachable!("made dirty above"),
        }
    }

    /// Starts uploads behind a writer now at `write_end`: full dirty
    /// chunks it has moved past, and the oldest dirty chunks when too many
    /// are held.
    async fn upload_behind(&mut self, write_end: u64) -> Result<(), ClientError> {
        let current = if write_end == 0 {
            0
        } else {
            self.index_of(write_end - 1)
        };
        let full_behind: Vec<usize> = self
            .dirty
            .range(..current)
            .copied()
            .filter(|&i| self.extents[i].len() == self.chunk_size_bytes)
            .collect();
        for index in full_behind {
            self.start_upload(index).await?;
        }
        while self.dirty.len() > MAX_DIRTY_CHUNKS {
            let oldest = *self.dirty.iter().next().expect("dirty is not empty");
            self.start_upload(oldest).await?;
        }
        Ok(())
    }

    async fn start_upload(&mut self, index: usize) -> Result<(), ClientError> {
        while self.uploads.len() >= MAX_UPLOADS_IN_FLIGHT {
            self.finish_oldest_upload().await?;
        }
        let Extent::Dirty(buffer) = &mut self.extents[index] else {
            unreachable!("only dirty extents are uploaded")
        };
        let data = Bytes::from(std::mem::take(buffer));
        self.next_generation += 1;
        let generation = self.next_generation;
        self.extents[index] = Extent::Uploading {
            data: data.clone(),
            generation,
        };
        self.dirty.remove(&index);
        let io = self.io.clone();
        let task = tokio::spawn(async move { io.store(data).await });
        self.uploads.push_back(Upload {
            index,
            generation,
            task,
        });
        Ok(())
    }

    /// Waits for the oldest upload; its extent becomes uploaded unless a
    /// write or a truncate changed it meanwhile. A failed upload leaves
    /// its extent dirty, to be tried again by the next settle.
    async fn finish_oldest_upload(&mut self) -> Result<(), ClientError> {
        let upload = self.uploads.pop_front().expect("an upload is in flight");
        let outcome = upload.task.await.unwrap_or_else(|e| {
            Err(ClientError::Protocol {
                server: "this mount".into(),
                detail: format!("upload task failed: {e}"),
            })
        });
        let Some(Extent::Uploading { data, generation }) = self.extents.get(upload.index) else {
            return Ok(());
        };
        if *generation != upload.generation {
            return Ok(());
        }
        let data = data.clone();
        match outcome {
            Ok(chunk) => {
                assert_eq!(u64::from(chunk.length_bytes), data.len() as u64);
                self.uncommitted_bytes += data.len() as u64;
                self.extents[upload.index] = Extent::Uploaded { chunk, data };
                Ok(())
            }
            Err(e) => {
                self.extents[upload.index] = Extent::Dirty(data.to_vec());
                self.dirty.insert(upload.index);
                Err(e)
            }
        }
    }

    /// The extent holding byte `pos` (which is inside the file).
    fn index_of(&self, pos: u64) -> usize {
        debug_assert!(pos < self.size_bytes());
        self.ends.partition_point(|&e| e <= pos)
    }

    fn start_of(&self, index: usize) -> u64 {
        index.checked_sub(1).map_or(0, |i| self.ends[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::ChunkId;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Chunks in memory; a chunk is fetchable only once "committed".
    #[derive(Default)]
    struct MemoryIo {
        stored: Mutex<HashMap<ChunkId, Bytes>>,
        committed: Mutex<HashMap<ChunkId, Bytes>>,
    }

    impl MemoryIo {
        fn commit(&self, chunks: &[ChunkRef]) {
            let stored = self.stored.lock().unwrap();
            let mut committed = self.committed.lock().unwrap();
            for chunk in chunks {
                committed.insert(chunk.id, stored[&chunk.id].clone());
            }
        }
    }

    impl ChunkIo for MemoryIo {
        async fn fetch(&self, chunk: ChunkRef) -> Result<Bytes, ClientError> {
            let data = self.committed.lock().unwrap().get(&chunk.id).cloned();
            data.ok_or(ClientError::Changed { id: 0 })
        }

        async fn store(&self, data: Bytes) -> Result<ChunkRef, ClientError> {
            tokio::task::yield_now().await;
            let chunk = ChunkRef {
                id: ChunkId::of(&data),
                length_bytes: data.len() as u32,
            };
            self.stored.lock().unwrap().insert(chunk.id, data);
            Ok(chunk)
        }
    }

    async fn read_all<I: ChunkIo>(
        contents: &Contents<I>,
        io: &I,
        offset: u64,
        len: u64,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in contents.plan_read(offset, len) {
            match piece {
                Piece::Ready(data) => out.extend_from_slice(&data),
                Piece::Fetch { chunk, from, to } => {
                    out.extend_from_slice(&io.fetch(chunk).await.unwrap()[from..to])
                }
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { offset: u64, len: usize, byte: u8 },
        Truncate(u64),
        Read { offset: u64, len: u64 },
        Commit,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300, 1usize..120, any::<u8>())
                .prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
            1 => (0u64..300).prop_map(Op::Truncate),
            2 => (0u64..320, 0u64..200).prop_map(|(offset, len)| Op::Read { offset, len }),
            1 => Just(Op::Commit),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        /// fsx in miniature: random writes, truncates, reads, commits and
        /// reopenings agree with a plain byte vector, with chunks of 16
        /// bytes so that every case crosses many chunks.
        #[test]
        fn random_operations_agree_with_a_byte_vector(ops in proptest::collection::vec(op(), 1..60)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let io = Arc::new(MemoryIo::default());
                let mut contents = Contents::new(io.clone(), 16, &[]);
                let mut model: Vec<u8> = Vec::new();
                let mut committed: Vec<ChunkRef> = Vec::new();
                for op in ops {
                    match op {
                        Op::Write { offset, len, byte } => {
                            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                            contents.write(offset, &data).await.unwrap();
                            let end = offset as usize + len;
                            if model.len() < end {
                                model.resize(end, 0);
                            }
                            model[offset as usize..end].copy_from_slice(&data);
                        }
                        Op::Truncate(size) => {
                            contents.truncate(size).await.unwrap();
                            model.resize(size as usize, 0);
                        }
                        Op::Read { offset, len } => {
                            let got = read_all(&contents, &io, offset, len).await;
                            let from = (offset as usize).min(model.len());
                            let to = (offset + len).min(model.len() as u64) as usize;
                            prop_assert_eq!(&got[..], &model[from..to.max(from)]);
                        }
                        Op::Commit => {
                            committed = contents.settle().await.unwrap();
                            io.commit(&committed);
                            contents.committed();
                            prop_assert!(committed.iter().all(|c| c.length_bytes as u64 <= 16));
                        }
                        Op::Reopen => {
                            committed = contents.settle().await.unwrap();
                            io.commit(&committed);
                            contents = Contents::new(io.clone(), 16, &committed);
                        }
                    }
                    prop_assert_eq!(contents.size_bytes(), model.len() as u64);
                }
                let chunks = contents.settle().await.unwrap();
                io.commit(&chunks);
                let reopened = Contents::new(io.clone(), 16, &chunks);
                let all = read_all(&reopened, &io, 0, u64::MAX).await;
                prop_assert_eq!(all, model);
                let _ = committed;
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn sizes_past_the_largest_file_are_refused_before_anything_changes() {
        let io = Arc::new(MemoryIo::default());
        let mut contents = Contents::new(io.clone(), 16, &[]);
        let max = contents.max_size_bytes();
        assert_eq!(max, 16 * MAX_CHUNKS_PER_FILE as u64);
        for refused in [
            contents.truncate(max + 1).await,
            contents.write(max, b"x").await,
            contents.write(u64::MAX, b"x").await,
        ] {
            let code = refused.unwrap_err().code();
            assert_eq!(code, Some(ErrorCode::TooLarge));
        }
        assert_eq!(contents.size_bytes(), 0);
        assert!(!contents.changed());
    }

    #[tokio::test]
    async fn a_write_rewrites_only_the_chunks_it_touches() {
        let io = Arc::new(MemoryIo::default());
        let mut contents = Contents::new(io.clone(), 16, &[]);
        contents.write(0, &[7u8; 64]).await.unwrap();
        let before = contents.settle().await.unwrap();
        io.commit(&before);
        contents.committed();
        assert_eq!(before.len(), 4);
        contents.write(20, b"xy").await.unwrap();
        let after = contents.settle().await.unwrap();
        assert_eq!(after.len(), 4);
        let changed: Vec<usize> = (0..4).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(changed, vec![1]);
    }

    #[tokio::test]
    async fn a_long_sequential_write_uploads_behind_itself() {
        let io = Arc::new(MemoryIo::default());
        let mut contents = Contents::new(io.clone(), 16, &[]);
        for i in 0..100u64 {
            contents.write(i * 8, &[i as u8; 8]).await.unwrap();
            assert!(
                contents.dirty.len() <= 2,
                "full chunks behind the writer leave memory"
            );
        }
        assert_eq!(contents.settle().await.unwrap().len(), 50);
    }
}
