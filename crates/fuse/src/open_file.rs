//! A file the kernel has open: its contents (shared by all its handles),
//! how chunks reach the cluster, and the commit that makes what was
//! written the file's contents in one step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use cairn_client::{ClientError, Files, Reader, Target, Uploader};
use cairn_proto::{ChunkId, ChunkRef, FileId};
use futures::future::try_join_all;

use crate::cache::ChunkCache;
use crate::contents::{ChunkIo, Contents, Piece};
use crate::limits::{MAX_UNCOMMITTED_BYTES, READAHEAD_CHUNKS};

/// Chunks of one file, to and from the cluster, through the shared cache.
pub struct FileIo {
    files: Files,
    cache: Arc<ChunkCache>,
    id: FileId,
    /// The last path the file was known by (grants and messages).
    path: Mutex<String>,
    /// The file as last read, with capabilities for its chunks; `None`
    /// until needed and after a commit.
    reader: tokio::sync::Mutex<Option<Arc<Indexed>>>,
    uploader: tokio::sync::OnceCell<Uploader>,
}

/// A reader, and where each of its chunks is in its list (a lookup per
/// fetch, not a scan of the list).
struct Indexed {
    reader: Arc<Reader>,
    index: HashMap<ChunkId, usize>,
}

impl Indexed {
    fn new(reader: Arc<Reader>) -> Arc<Indexed> {
        let index = reader
            .stat()
            .chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| (chunk.id, i))
            .collect();
        Arc::new(Indexed { reader, index })
    }
}

impl FileIo {
    fn path(&self) -> String {
        self.path.lock().expect("path lock").clone()
    }

    /// Chunk `chunk`, fetched by the reader of the file as it is now
    /// (refreshed once if the chunk is newer than the reader).
    async fn fetch_uncached(&self, chunk: ChunkRef) -> Result<Bytes, ClientError> {
        for fresh in [false, true] {
            let indexed = {
                let mut current = self.reader.lock().await;
                match &*current {
                    Some(indexed) if !fresh => indexed.clone(),
                    _ => {
                        let indexed = Indexed::new(self.files.open(Target::Id(self.id)).await?);
                        *current = Some(indexed.clone());
                        indexed
                    }
                }
            };
            if let Some(&index) = indexed.index.get(&chunk.id) {
                return indexed.reader.chunk(index).await;
            }
        }
        Err(ClientError::Changed { id: self.id })
    }
}

impl ChunkIo for FileIo {
    async fn fetch(&self, chunk: ChunkRef) -> Result<Bytes, ClientError> {
        self.cache
            .get_or_fetch(chunk.id, self.fetch_uncached(chunk))
            .await
    }

    async fn store(&self, data: Bytes) -> Result<ChunkRef, ClientError> {
        let uploader = self
            .uploader
            .get_or_try_init(|| self.files.chunk_writer())
            .await?;
        uploader.store(data).await
    }
}

pub struct OpenFile {
    pub id: FileId,
    io: Arc<FileIo>,
    contents: tokio::sync::Mutex<Contents<FileIo>>,
    /// The size and the time of the last uncommitted change, for getattr
    /// without waiting on the contents.
    size_bytes: AtomicU64,
    changed_at: Mutex<Option<SystemTime>>,
    /// Where the last read ended: a read starting there is sequential.
    last_read_end: AtomicU64,
    /// Its last name was removed while open: the metadata service holds
    /// it for this mount's session until the last close releases it.
    held: AtomicBool,
}

impl OpenFile {
    /// The file `id` with these committed chunks (a reader of them, if
    /// the caller may read it).
    pub fn new(
        files: Files,
        cache: Arc<ChunkCache>,
        id: FileId,
        path: String,
        chunk_size_bytes: u64,
        reader: Option<Arc<Reader>>,
        chunks: &[ChunkRef],
    ) -> OpenFile {
        let io = Arc::new(FileIo {
            files,
            cache,
            id,
            path: Mutex::new(path),
            reader: tokio::sync::Mutex::new(reader.map(Indexed::new)),
            uploader: tokio::sync::OnceCell::new(),
        });
        let contents = Contents::new(io.clone(), chunk_size_bytes, chunks);
        OpenFile {
            id,
            io,
            size_bytes: AtomicU64::new(contents.size_bytes()),
            contents: tokio::sync::Mutex::new(contents),
            changed_at: Mutex::new(None),
            last_read_end: AtomicU64::new(u64::MAX),
            held: AtomicBool::new(false),
        }
    }

    /// Its last name went while it was open (see `held`).
    pub fn set_held(&self) {
        self.held.store(true, Ordering::Release);
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The size and mtime to show while changes are not committed.
    pub fn pending(&self) -> Option<(u64, SystemTime)> {
        let changed_at = (*self.changed_at.lock().expect("changed_at lock"))?;
        Some((self.size_bytes.load(Ordering::Acquire), changed_at))
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    /// The file is now known by `path` (renamed).
    pub fn set_path(&self, path: String) {
        *self.io.path.lock().expect("path lock") = path;
    }

    pub async fn read(&self, offset: u64, length: u32) -> Result<Vec<u8>, ClientError> {
        let (pieces, ahead) = {
            let contents = self.contents.lock().await;
            let pieces = contents.plan_read(offset, u64::from(length));
            let sequential = self.last_read_end.load(Ordering::Relaxed) == offset;
            let ahead = if sequential {
                contents.chunks_after(offset + u64::from(length), READAHEAD_CHUNKS)
            } else {
                Vec::new()
            };
            (pieces, ahead)
        };
        let data = try_join_all(pieces.into_iter().map(|piece| async {
            match piece {
                Piece::Ready(data) => Ok::<_, ClientError>(data),
                Piece::Fetch { chunk, from, to } => Ok(self.io.fetch(chunk).await?.slice(from..to)),
            }
        }))
        .await?;
        let mut out = Vec::with_capacity(data.iter().map(Bytes::len).sum());
        for piece in data {
            out.extend_from_slice(&piece);
        }
        self.last_read_end
            .store(offset + out.len() as u64, Ordering::Relaxed);
        for chunk in ahead {
            if self.io.cache.get(&chunk.id).is_none() {
                let io = self.io.clone();
                tokio::spawn(async move {
                    if let Err(e) = io.fetch(chunk).await {
                        tracing::debug!("reading ahead in file {}: {e}", io.id);
                    }
                });
            }
        }
        Ok(out)
    }

    pub async fn write(&self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let mut contents = self.contents.lock().await;
        let result = contents.write(offset, data).await;
        self.changed(&contents);
        result?;
        if contents.uncommitted_bytes() > MAX_UNCOMMITTED_BYTES {
            // Written back early, as a kernel writes back dirty pages: the
            // uploaded chunks cannot be read back before a commit names
            // them, so they are held in memory until then.
            self.commit_locked(&mut contents).await?;
        }
        Ok(())
    }

    pub async fn truncate(&self, size_bytes: u64) -> Result<(), ClientError> {
        let mut contents = self.contents.lock().await;
        let result = contents.truncate(size_bytes).await;
        self.changed(&contents);
        result
    }

    /// Commits what was written, if anything: fsync and close.
    pub async fn commit(&self) -> Result<(), ClientError> {
        let mut contents = self.contents.lock().await;
        self.commit_locked(&mut contents).await
    }

    async fn commit_locked(&self, contents: &mut Contents<FileIo>) -> Result<(), ClientError> {
        if !contents.changed() {
            return Ok(());
        }
        let chunks = contents.settle().await?;
        self.io
            .files
            .commit_to(self.id, &self.io.path(), chunks)
            .await?;
        for (chunk, data) in contents.committed() {
            self.io.cache.insert(chunk.id, data);
        }
        // The reader's chunk list is the old one now.
        *self.io.reader.lock().await = None;
        *self.changed_at.lock().expect("changed_at lock") = None;
        Ok(())
    }

    fn changed(&self, contents: &Contents<FileIo>) {
        self.size_bytes
            .store(contents.size_bytes(), Ordering::Release);
        *self.changed_at.lock().expect("changed_at lock") = Some(SystemTime::now());
    }
}
