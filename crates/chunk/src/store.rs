//! The on-disk chunk store: one file per chunk, named by its 64-hex-digit id,
//! under `chunks/<first 2 hex>/`: 256 directories made with the store.
//!
//! Format 1 had a second level (`chunks/ab/cd/`), made as chunks came: on
//! a young store nearly every chunk made its directory, a mkdir and a
//! directory fsync more per copy (a tenth of a 4 KiB put's time on one
//! disk). One level holds 40,000 chunks a directory at 10 million chunks a
//! node, which ext4's and XFS's indexed directories handle without
//! trouble. A format-1 store is moved to format 2 when it is opened
//! (`upgrade_from_format_1`).
//!
//! A write goes to `tmp/`, is fsynced, renamed into place, and the directory
//! is fsynced, so a chunk file is either absent or whole and correct. The
//! caller has already checked the bytes against the id (see `server.rs`).
//! Chunks are written with `O_DIRECT` where the file system allows it
//! (`write_chunk_file`): each is fsynced at once anyway, and copying it
//! into the page cache first cost more CPU than anything else on the write
//! path (45% of both cores at 170 MB/s into a 3-copy mount; `dd` of 1 GiB
//! here: 2.5 s of system time buffered, 0.25 s direct). A PUT's body
//! arrives in an aligned buffer (`aligned.rs`) and is written from there;
//! other data (repair's copies) goes through a small aligned bounce buffer.
//! Large chunks are read with `O_DIRECT` as well (`read_chunk_file`).
//!
//! Layout of a data directory:
//! ```text
//! DIR/FORMAT     "cairn-chunk-store 2": the layout version
//! DIR/node_id    this node's id (UUID), made on first start
//! DIR/chunks/    the chunks
//! DIR/tmp/       writes in progress; emptied at start
//! DIR/quarantine/<hex>.<unix ms>   corrupt copies moved aside, for a person
//! ```
//!
//! A chunk file's modification time is when this node last received it (a
//! PUT of a chunk already held touches it). The collect loop deletes an
//! unreferenced chunk only if that time is older than its grace period, and
//! the check and the delete happen under the same lock as the touch, so a
//! chunk an upload has just (re)sent is never collected under it.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_proto::{ChunkId, NodeId, MAX_CHUNK_SIZE_BYTES};

use crate::aligned::{AlignedBuffer, DIRECT_ALIGN};

const FORMAT_LINE: &str = "cairn-chunk-store 2";
/// The layout with a second directory level, upgraded on open.
const FORMAT_1_LINE: &str = "cairn-chunk-store 1";

pub use crate::limits::{MAX_QUARANTINED, SHARDS};

/// How much this store may hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpaceLimits {
    /// Most bytes of chunks to hold (`--capacity`); `None`: the disk decides.
    pub capacity_bytes: Option<u64>,
    /// Free space to leave on the disk for everything else.
    pub reserve_bytes: u64,
}

/// One chunk file as a directory listing sees it.
#[derive(Debug, Clone)]
pub struct ChunkEntry {
    pub id: ChunkId,
    pub size_bytes: u64,
    /// When this node last received it.
    pub received: SystemTime,
}

pub struct ChunkStore {
    data_dir: PathBuf,
    chunks_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    node_id: NodeId,
    limits: SpaceLimits,
    used_bytes: AtomicU64,
    chunk_count: AtomicU64,
    tmp_sequence: AtomicU64,
    /// Serializes deletions with the touch of a re-sent chunk (see above).
    removal: Mutex<()>,
    /// Bytes of writes admitted but not yet counted in `used_bytes`: the
    /// room check and this reservation happen under one lock, so
    /// concurrent writes cannot together overshoot the capacity.
    pending_bytes: Mutex<u64>,
}

impl ChunkStore {
    /// Opens the store in `data_dir`, creating it and a node id on first use.
    pub fn open(data_dir: &Path) -> io::Result<ChunkStore> {
        fs::create_dir_all(data_dir)?;
        let format_path = data_dir.join("FORMAT");
        let chunks_dir = data_dir.join("chunks");
        let tmp_dir = data_dir.join("tmp");
        let quarantine_dir = data_dir.join("quarantine");
        let format = match fs::read_to_string(&format_path) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match format.as_deref() {
            Some(FORMAT_LINE) => {}
            Some(FORMAT_1_LINE) => upgrade_from_format_1(&chunks_dir)?,
            Some(other) => {
                return Err(io::Error::other(format!(
                    "{} says {other:?}; this cairn understands {FORMAT_LINE:?} (and upgrades {FORMAT_1_LINE:?}). \
                     Use a matching cairn version or another --data-dir",
                    format_path.display(),
                )))
            }
            None => make_shard_dirs(&chunks_dir)?,
        }
        if format.as_deref() != Some(FORMAT_LINE) {
            write_durably(&format_path, FORMAT_LINE.as_bytes())?;
        }
        let node_id = load_or_create_node_id(&data_dir.join("node_id"))?;
        fs::create_dir_all(&quarantine_dir)?;
        // Leftovers of writes cut short by a crash: never acknowledged.
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir)?;
        }
        fs::create_dir_all(&tmp_dir)?;
        let (mut chunk_count, mut used_bytes) = (0, 0);
        for shard in 0..SHARDS {
            for entry in list_dir_shard(&chunks_dir, shard)? {
                chunk_count += 1;
                used_bytes += entry.size_bytes;
            }
        }
        Ok(ChunkStore {
            data_dir: data_dir.to_path_buf(),
            chunks_dir,
            tmp_dir,
            quarantine_dir,
            node_id,
            limits: SpaceLimits::default(),
            used_bytes: AtomicU64::new(used_bytes),
            chunk_count: AtomicU64::new(chunk_count),
            tmp_sequence: AtomicU64::new(0),
            removal: Mutex::new(()),
            pending_bytes: Mutex::new(0),
        })
    }

    pub fn with_limits(mut self, limits: SpaceLimits) -> ChunkStore {
        self.limits = limits;
        self
    }

    /// Bytes this store can still take: within `--capacity` and leaving
    /// the reserve free on the disk.
    pub fn room_bytes(&self) -> u64 {
        let pending = *self.pending_bytes.lock().expect("pending lock");
        self.room_besides(pending)
    }

    fn room_besides(&self, pending_bytes: u64) -> u64 {
        let by_capacity = self
            .limits
            .capacity_bytes
            .map_or(u64::MAX, |c| c.saturating_sub(self.used_bytes()));
        let by_disk = disk_free_bytes(&self.data_dir)
            .map_or(0, |free| free.saturating_sub(self.limits.reserve_bytes));
        by_capacity.min(by_disk).saturating_sub(pending_bytes)
    }

    /// Admits a write of `len` bytes if there is room, reserving it until
    /// the returned guard is dropped.
    fn reserve(&self, len: u64) -> io::Result<Reservation<'_>> {
        let mut pending = self.pending_bytes.lock().expect("pending lock");
        if len > self.room_besides(*pending) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("no room for a chunk of {len} bytes (capacity or disk reserve reached)"),
            ));
        }
        *pending += len;
        Ok(Reservation { store: self, len })
    }

    /// The chunks whose id starts with byte `shard`, in no particular order.
    pub fn list_shard(&self, shard: usize) -> io::Result<Vec<ChunkEntry>> {
        list_dir_shard(&self.chunks_dir, shard)
    }

    /// Re-reads a held chunk and checks it against its id: `None` if this
    /// node does not hold it, `Some(false)` if it is corrupt.
    pub fn verify(&self, id: &ChunkId) -> io::Result<Option<bool>> {
        Ok(self.read(id)?.map(|data| ChunkId::of(&data) == *id))
    }

    /// Deletes the local copy (its targets hold it). False if absent.
    pub fn remove(&self, id: &ChunkId) -> io::Result<bool> {
        let _guard = self.removal.lock().expect("removal lock");
        self.remove_locked(id)
    }

    /// Deletes the local copy if it was received before `cutoff`: the
    /// collect loop's delete, atomic with a PUT's touch.
    pub fn remove_if_received_before(&self, id: &ChunkId, cutoff: SystemTime) -> io::Result<bool> {
        let _guard = self.removal.lock().expect("removal lock");
        match fs::metadata(self.chunk_path(id)) {
            Ok(meta) if meta.modified()? < cutoff => self.remove_locked(id),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves a corrupt copy aside to `quarantine/` for a person to look at;
    /// the chunk then counts as absent here. False if it was not here.
    pub fn quarantine(&self, id: &ChunkId) -> io::Result<bool> {
        let _guard = self.removal.lock().expect("removal lock");
        let path = self.chunk_path(id);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let aside = self
            .quarantine_dir
            .join(format!("{}.{now_ms}", id.to_hex()));
        fs::rename(&path, &aside)?;
        File::open(path.parent().expect("chunk path has a parent"))?.sync_all()?;
        self.forget(size);
        self.trim_quarantine()?;
        Ok(true)
    }

    /// The chunks this node keeps a quarantined (corrupt) copy of.
    pub fn quarantined_ids(&self) -> io::Result<std::collections::HashSet<ChunkId>> {
        let mut ids = std::collections::HashSet::new();
        for entry in fs::read_dir(&self.quarantine_dir)? {
            let name = entry?.file_name();
            let hex = name.to_str().and_then(|n| n.split('.').next());
            if let Some(id) = hex.and_then(|h| h.parse::<ChunkId>().ok()) {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    /// Deletes the oldest quarantined copies beyond [`MAX_QUARANTINED`].
    fn trim_quarantine(&self) -> io::Result<()> {
        let mut kept: Vec<(u128, PathBuf)> = fs::read_dir(&self.quarantine_dir)?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let ms = path.extension()?.to_str()?.parse().ok()?;
                Some((ms, path))
            })
            .collect();
        if kept.len() <= MAX_QUARANTINED {
            return Ok(());
        }
        kept.sort();
        for (_, path) in &kept[..kept.len() - MAX_QUARANTINED] {
            fs::remove_file(path)?;
        }
        Ok(())
    }

    fn remove_locked(&self, id: &ChunkId) -> io::Result<bool> {
        let path = self.chunk_path(id);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.forget(size);
        Ok(true)
    }

    fn forget(&self, size_bytes: u64) {
        self.used_bytes.fetch_sub(size_bytes, Ordering::Relaxed);
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn chunk_count(&self) -> u64 {
        self.chunk_count.load(Ordering::Relaxed)
    }

    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunks_dir.join(&hex[0..2]).join(hex)
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunk_path(id).exists()
    }

    /// Reads a whole chunk; `None` if this node does not hold it.
    pub fn read(&self, id: &ChunkId) -> io::Result<Option<Bytes>> {
        match read_chunk_file(&self.chunk_path(id)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size of a held chunk, without reading it.
    pub fn size_of(&self, id: &ChunkId) -> io::Result<Option<u64>> {
        match fs::metadata(self.chunk_path(id)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `data` as chunk `id` durably. The caller vouches that `data`
    /// hashes to `id`. Returns false if the chunk was already there (its
    /// receive time is then renewed). Fails with `StorageFull` when the
    /// store has no room for it.
    pub fn write(&self, id: &ChunkId, data: &[u8]) -> io::Result<bool> {
        self.write_received(id, data, None)
    }

    /// `write`, keeping `received` (when another node first got the chunk)
    /// as its receive time: a new copy gets it, a held copy is left as is.
    pub fn write_received(
        &self,
        id: &ChunkId,
        data: &[u8],
        received: Option<SystemTime>,
    ) -> io::Result<bool> {
        let final_path = self.chunk_path(id);
        let dir = final_path.parent().expect("chunk path has a parent");
        let held = {
            // Only the touch needs the lock (see the module comment); the
            // directory sync below must not hold up every other PUT.
            let _guard = self.removal.lock().expect("removal lock");
            match File::open(&final_path) {
                Ok(file) => {
                    if received.is_none() {
                        file.set_modified(SystemTime::now())?;
                    }
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            }
        };
        if held {
            // A concurrent writer may have renamed it in without yet syncing
            // the directory: sync it before calling the copy durable. Cheap
            // when nothing is pending.
            File::open(dir)?.sync_all()?;
            return Ok(false);
        }
        let _reservation = self.reserve(data.len() as u64)?;
        let sequence = self.tmp_sequence.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp_dir.join(format!("{}.{sequence}", id.to_hex()));
        let result = (|| -> io::Result<bool> {
            let file = write_chunk_file(&tmp_path, data)?;
            if let Some(received) = received {
                file.set_modified(received.min(SystemTime::now()))?;
            }
            file.sync_data()?;
            let placed = match rename_no_replace(&tmp_path, &final_path) {
                // The shard directories come with the store: one a person
                // removed is made again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dir_durably(dir)?;
                    rename_no_replace(&tmp_path, &final_path)?
                }
                placed => placed?,
            };
            File::open(dir)?.sync_all()?;
            Ok(placed)
        })();
        if !matches!(result, Ok(true)) {
            let _ = fs::remove_file(&tmp_path);
        }
        if !result? {
            // Lost a race with a concurrent write of the same chunk.
            return Ok(false);
        }
        self.used_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.chunk_count.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

/// Space admitted for one write; released when the write is over (by then
/// a stored chunk is counted in `used_bytes`).
struct Reservation<'a> {
    store: &'a ChunkStore,
    len: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut pending = self.store.pending_bytes.lock().expect("pending lock");
        assert!(*pending >= self.len, "pending bytes underflow");
        *pending -= self.len;
    }
}

/// Renames `from` to `to` unless `to` exists; false if it did. A chunk file,
/// once in place, is never replaced (and is counted once).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from_c = CString::new(from.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let to_c = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD makes them relative to the cwd.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EEXIST) => Ok(false),
        // File systems without RENAME_NOREPLACE: an existing file holds the
        // same bytes (same hash), so replacing it loses nothing.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => fs::rename(from, to).map(|()| true),
        _ => Err(error),
    }
}

fn load_or_create_node_id(path: &Path) -> io::Result<NodeId> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty() || id.len() > 64 {
                return Err(io::Error::other(format!(
                    "{} does not hold a node id; restore it from a backup, or move the data directory aside",
                    path.display()
                )));
            }
            Ok(NodeId(id.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_durably(path, id.as_bytes())?;
            Ok(NodeId(id))
        }
        Err(e) => Err(e),
    }
}

fn write_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(path.parent().expect("file in a directory"))?.sync_all()
}

/// Bytes copied at a time into the aligned bounce buffer of a direct
/// write whose data does not start aligned.
const DIRECT_PIECE: usize = 1 << 20;

/// Creates `path` holding `data` (not yet synced): with `O_DIRECT` for
/// the aligned part, then buffered for the last partial block; all
/// buffered for a chunk shorter than a block, or where the file system
/// refuses `O_DIRECT` (tmpfs before Linux 6.6). Data that starts on a
/// [`DIRECT_ALIGN`] boundary (a PUT's body, received into an
/// [`AlignedBuffer`](crate::aligned::AlignedBuffer)) is written as it is;
/// other data goes through an aligned bounce buffer of at most
/// [`DIRECT_PIECE`] bytes, no larger than the aligned part.
fn write_chunk_file(path: &Path, data: &[u8]) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let buffered = |data: &[u8]| -> io::Result<File> {
        let mut file = File::create(path)?;
        file.write_all(data)?;
        Ok(file)
    };
    let aligned_len = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    if aligned_len == 0 {
        return buffered(data);
    }
    let direct = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let mut file = match direct {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return buffered(data),
        Err(e) => return Err(e),
    };
    if (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) {
        file.write_all(&data[..aligned_len])?;
    } else {
        // No larger than the data: small chunks (S3's 4 KiB objects) must
        // not pay for a 1 MiB buffer.
        let mut bounce = AlignedBuffer::with_capacity(aligned_len.min(DIRECT_PIECE));
        for piece in data[..aligned_len].chunks(DIRECT_PIECE) {
            bounce.clear();
            assert!(
                bounce.extend_from_slice(piece),
                "a piece fits the bounce buffer"
            );
            file.write_all(bounce.as_slice())?;
        }
    }
    let tail = &data[aligned_len..];
    if !tail.is_empty() {
        // The last partial block cannot go direct: drop the flag for it.
        set_direct(&file, false)?;
        file.write_all(tail)?;
    }
    Ok(file)
}

/// Chunks at least this large are read with `O_DIRECT`, smaller ones
/// through the page cache. A large chunk is read to be streamed once: a
/// buffered read of one that was just written (direct, so not in the
/// cache) filled fresh cache pages and copied them out again, for five
/// times the chunk servers' CPU of a direct read (1 GiB GET through the
/// S3 gateway right after its PUT: 1.4-1.8 s against 0.3 s, and the GET
/// went from 280-300 to 520-630 MB/s). The cost: a large chunk read again
/// soon comes from the disk again (`cairn get` of a 1 GiB file read
/// before: 1.5 GB/s from the cache, 1.1 GB/s direct, on this disk). Small
/// chunks are S3's small objects and the small files of a tree, read
/// often, cheap to copy, and worth keeping in the cache.
const DIRECT_READ_MIN_BYTES: u64 = 256 << 10;

/// Most bytes read from one chunk file: more than any chunk holds, so that
/// a file grown by damage reads as too long (and its reader reports it
/// corrupt) without being read whole into memory.
const MAX_READ_BYTES: u64 = MAX_CHUNK_SIZE_BYTES + DIRECT_ALIGN as u64;

/// Reads a chunk file: a large one with `O_DIRECT` into an aligned buffer
/// (see [`DIRECT_READ_MIN_BYTES`]), a small one, or one on a file system
/// that refuses `O_DIRECT`, buffered; at most [`MAX_READ_BYTES`].
fn read_chunk_file(path: &Path) -> io::Result<Bytes> {
    let file = File::open(path)?;
    let len_bytes = file.metadata()?.len().min(MAX_READ_BYTES);
    if len_bytes >= DIRECT_READ_MIN_BYTES && set_direct(&file, true).is_ok() {
        let room = (len_bytes as usize).next_multiple_of(DIRECT_ALIGN);
        let mut buffer = AlignedBuffer::with_capacity(room);
        buffer.read_from(&file)?;
        return Ok(Bytes::from_owner(buffer));
    }
    let mut data = Vec::with_capacity(len_bytes as usize);
    file.take(MAX_READ_BYTES).read_to_end(&mut data)?;
    Ok(Bytes::from(data))
}

/// Turns `O_DIRECT` on or off for an open file; fails with `EINVAL` where
/// the file system does not support it.
fn set_direct(file: &File, direct: bool) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller owns, with plain ints.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if direct {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates `dir` and its missing parents, fsyncing each parent so the new
/// entries survive a crash.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().expect("chunk directory has a parent");
    create_dir_durably(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => File::open(parent)?.sync_all(),
        // Another write created it at the same moment.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `chunks_dir` and its [`SHARDS`] directories (those missing),
/// durably.
fn make_shard_dirs(chunks_dir: &Path) -> io::Result<()> {
    create_dir_durably(chunks_dir)?;
    for shard in 0..SHARDS {
        match fs::create_dir(chunks_dir.join(format!("{shard:02x}"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    File::open(chunks_dir)?.sync_all()
}

/// Moves a format-1 store's chunks (`chunks/ab/cd/<id>`) up to
/// `chunks/ab/<id>` and removes the emptied second-level directories.
/// Safe to cut short: FORMAT says 1 until it is done, and a second run
/// moves what is left (a chunk found in both places, by a rename whose
/// directory sync did not happen, is the same bytes: the lower one goes).
/// Entries that are not chunk files are left where they are.
fn upgrade_from_format_1(chunks_dir: &Path) -> io::Result<()> {
    make_shard_dirs(chunks_dir)?;
    let mut moved = 0u64;
    for shard in 0..SHARDS {
        let shard_dir = chunks_dir.join(format!("{shard:02x}"));
        for level2 in fs::read_dir(&shard_dir)? {
            let level2 = level2?;
            if !level2.file_type()?.is_dir() {
                continue;
            }
            for chunk in fs::read_dir(level2.path())? {
                let chunk = chunk?;
                let is_chunk = chunk.file_type()?.is_file()
                    && chunk
                        .file_name()
                        .to_str()
                        .is_some_and(|name| name.parse::<ChunkId>().is_ok());
                if !is_chunk {
                    continue;
                }
                if !rename_no_replace(&chunk.path(), &shard_dir.join(chunk.file_name()))? {
                    fs::remove_file(chunk.path())?;
                }
                moved += 1;
            }
            // Not empty: a person's files, left with their directory.
            let _ = fs::remove_dir(level2.path());
        }
        File::open(&shard_dir)?.sync_all()?;
    }
    tracing::info!(
        chunks_dir = %chunks_dir.display(),
        moved,
        "chunk store upgraded to {FORMAT_LINE:?} (one directory level)"
    );
    Ok(())
}

/// The chunk files in `chunks_dir/<shard as 2 hex>/`. Entries whose name
/// is not a chunk id (a person's leftovers) are skipped, as are chunks
/// deleted while the listing runs.
fn list_dir_shard(chunks_dir: &Path, shard: usize) -> io::Result<Vec<ChunkEntry>> {
    assert!(shard < SHARDS, "shard {shard} out of range");
    let shard_dir = chunks_dir.join(format!("{shard:02x}"));
    let entries = match fs::read_dir(&shard_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for chunk in entries {
        let chunk = chunk?;
        let Some(id) = chunk
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<ChunkId>().ok())
        else {
            continue;
        };
        let meta = match chunk.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            continue;
        }
        out.push(ChunkEntry {
            id,
            size_bytes: meta.len(),
            received: meta.modified()?,
        });
    }
    Ok(out)
}

/// Free bytes on the file system holding `dir`, for unprivileged writers.
pub fn disk_free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = statvfs(dir)?;
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Total size of the file system holding `dir`: the default placement weight.
pub fn disk_size_bytes(dir: &Path) -> io::Result<u64> {
    let stats = statvfs(dir)?;
    Ok(stats.f_blocks as u64 * stats.f_frsize as u64)
}

fn statvfs(dir: &Path) -> io::Result<libc::statvfs> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stats` a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = b"hello chunk".to_vec();
        let id = ChunkId::of(&data);
        assert!(store.write(&id, &data).unwrap());
        assert!(!store.write(&id, &data).unwrap(), "second write is a no-op");
        assert_eq!(store.read(&id).unwrap().unwrap(), data);
        let hex = id.to_hex();
        assert!(store
            .chunk_path(&id)
            .ends_with(format!("chunks/{}/{hex}", &hex[..2])));
        let node = store.node_id().clone();
        drop(store);
        let again = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(again.node_id(), &node, "node id persists");
        assert_eq!(
            (again.chunk_count(), again.used_bytes()),
            (1, data.len() as u64)
        );
        assert_eq!(again.read(&ChunkId::of(b"other")).unwrap(), None);

        // A shard directory removed by hand is made again by the next write.
        let other = b"another chunk".to_vec();
        let other_id = ChunkId::of(&other);
        fs::remove_dir_all(again.chunk_path(&other_id).parent().unwrap()).unwrap();
        assert!(again.write(&other_id, &other).unwrap());
        assert_eq!(again.read(&other_id).unwrap().unwrap(), other);
    }

    #[test]
    fn a_format_1_store_is_moved_to_one_directory_level_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = dir.path().join("chunks");
        let datas: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let ids: Vec<ChunkId> = datas.iter().map(|d| ChunkId::of(d)).collect();
        // The format-1 layout, as that release wrote it.
        fs::write(dir.path().join("FORMAT"), FORMAT_1_LINE).unwrap();
        for (id, data) in ids.iter().zip(&datas) {
            let hex = id.to_hex();
            let level2 = chunks.join(&hex[..2]).join(&hex[2..4]);
            fs::create_dir_all(&level2).unwrap();
            fs::write(level2.join(&hex), data).unwrap();
        }
        // An earlier upgrade cut short after moving the first chunk but
        // before its old directory entry was gone; and a person's file.
        let first = ids[0].to_hex();
        fs::write(chunks.join(&first[..2]).join(&first), &datas[0]).unwrap();
        let leftover_dir = chunks.join(&first[..2]).join(&first[2..4]);
        fs::write(leftover_dir.join("notes.txt"), b"mine").unwrap();

        let store = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
            FORMAT_LINE
        );
        let total: usize = datas.iter().map(Vec::len).sum();
        assert_eq!(
            (store.chunk_count(), store.used_bytes()),
            (20, total as u64)
        );
        for (id, data) in ids.iter().zip(&datas) {
            assert_eq!(store.read(id).unwrap().as_deref(), Some(&data[..]));
            let hex = id.to_hex();
            assert!(
                !chunks.join(&hex[..2]).join(&hex[2..4]).join(&hex).exists(),
                "moved, not copied"
            );
        }
        assert_eq!(
            fs::read(leftover_dir.join("notes.txt")).unwrap(),
            b"mine",
            "a person's file stays"
        );
        let second_levels = (0..SHARDS)
            .flat_map(|shard| fs::read_dir(chunks.join(format!("{shard:02x}"))).unwrap())
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
            .count();
        assert_eq!(
            second_levels, 1,
            "only the directory with a person's file is left"
        );
        drop(store);
        let again = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(again.chunk_count(), 20, "a second open moves nothing");
        let listed: usize = (0..SHARDS)
            .map(|s| again.list_shard(s).unwrap().len())
            .sum();
        assert_eq!(listed, 20);
    }

    #[test]
    fn chunks_of_every_length_are_written_and_read_whole_direct_or_not() {
        // Around the direct-write block and piece sizes and the smallest
        // direct read, and the empty one.
        let direct_read = DIRECT_READ_MIN_BYTES as usize;
        let lengths = [
            0,
            1,
            DIRECT_ALIGN - 1,
            DIRECT_ALIGN,
            DIRECT_ALIGN + 1,
            direct_read - 1,
            direct_read,
            DIRECT_PIECE,
            DIRECT_PIECE + DIRECT_ALIGN + 7,
            3 * DIRECT_PIECE,
        ];
        // The data directory's file system, and tmpfs when there is one
        // (which kernels before 6.6 refuse O_DIRECT on: then buffered).
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if Path::new("/dev/shm").is_dir() {
            dirs.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        for dir in &dirs {
            let store = ChunkStore::open(dir.path()).unwrap();
            for (seed, length) in lengths.into_iter().enumerate() {
                // Written from where a PUT's body lands (aligned, written
                // as it is) and from an odd address (through the bounce
                // buffer); the two differ in content, so both are stored.
                for aligned in [true, false] {
                    let seed = 2 * seed + usize::from(aligned);
                    let data: Vec<u8> = (0..length).map(|i| (i * 31 + seed) as u8).collect();
                    let mut in_aligned = AlignedBuffer::with_capacity(length);
                    assert!(in_aligned.extend_from_slice(&data));
                    let mut odd = vec![0u8; length + 1];
                    odd[1..].copy_from_slice(&data);
                    let source = if aligned {
                        in_aligned.as_slice()
                    } else {
                        &odd[1..]
                    };
                    assert_eq!(
                        (source.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN),
                        aligned,
                        "the test writes from the address it means to"
                    );
                    let id = ChunkId::of(&data);
                    let stored = store.write(&id, source).unwrap();
                    // (The empty chunk is one chunk, whatever its seed.)
                    assert!(stored || length == 0, "chunk of {length} bytes stored");
                    let back = store.read(&id).unwrap().unwrap();
                    assert!(
                        back == data,
                        "chunk of {length} bytes (aligned: {aligned}) in {:?}",
                        dir.path()
                    );
                }
            }
        }
    }

    #[test]
    fn a_chunk_file_grown_past_any_chunk_is_read_only_that_far() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = vec![5u8; 2 * DIRECT_READ_MIN_BYTES as usize + 3];
        let id = ChunkId::of(&data);
        assert!(store.write(&id, &data).unwrap());
        // Damage: the file runs on (sparse) far past the largest chunk.
        let file = fs::OpenOptions::new()
            .write(true)
            .open(store.chunk_path(&id))
            .unwrap();
        file.set_len(2 * MAX_READ_BYTES).unwrap();
        let back = store.read(&id).unwrap().unwrap();
        assert_eq!(back.len() as u64, MAX_READ_BYTES);
        assert_eq!(&back[..data.len()], &data[..]);
        assert_eq!(store.verify(&id).unwrap(), Some(false), "and it is corrupt");
    }

    #[test]
    fn concurrent_writes_of_one_chunk_store_and_count_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = vec![7u8; 100_000];
        let id = ChunkId::of(&data);
        let stored: usize = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| store.write(&id, &data).unwrap()))
                .collect();
            writers
                .into_iter()
                .map(|w| usize::from(w.join().unwrap()))
                .sum()
        });
        assert_eq!(stored, 1, "exactly one writer stores the chunk");
        assert_eq!(
            (store.chunk_count(), store.used_bytes()),
            (1, data.len() as u64)
        );
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temporary file left"
        );
        assert_eq!(store.read(&id).unwrap().unwrap(), data);
    }

    #[test]
    fn capacity_is_never_overshot_by_concurrent_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path())
            .unwrap()
            .with_limits(SpaceLimits {
                capacity_bytes: Some(10_000),
                reserve_bytes: 0,
            });
        let stored: usize = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..16u32)
                .map(|i| {
                    let store = &store;
                    scope.spawn(move || {
                        let data = vec![i as u8; 3_000];
                        match store.write(&ChunkId::of(&data), &data) {
                            Ok(_) => 1,
                            Err(e) => {
                                assert_eq!(e.kind(), io::ErrorKind::StorageFull);
                                0
                            }
                        }
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(stored, 3, "three chunks of 3000 bytes fit in 10000");
        assert_eq!(store.used_bytes(), 9_000);
        assert_eq!(store.room_bytes(), 1_000);
    }

    #[test]
    fn removal_quarantine_and_collect_keep_the_counters_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let chunks: Vec<(ChunkId, Vec<u8>)> = (0..3u8)
            .map(|i| {
                let data = vec![i; 100 + usize::from(i)];
                (ChunkId::of(&data), data)
            })
            .collect();
        for (id, data) in &chunks {
            store.write(id, data).unwrap();
        }
        let listed: usize = (0..SHARDS)
            .map(|s| store.list_shard(s).unwrap().len())
            .sum();
        assert_eq!(listed, 3);
        assert!(store.remove(&chunks[0].0).unwrap());
        assert!(!store.remove(&chunks[0].0).unwrap(), "already gone");
        assert!(store.quarantine(&chunks[1].0).unwrap());
        assert!(!store.contains(&chunks[1].0));
        assert_eq!(
            fs::read_dir(dir.path().join("quarantine")).unwrap().count(),
            1
        );
        // A chunk received after the cutoff is not collected; a re-sent
        // chunk's receive time is renewed.
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        let (id, data) = &chunks[2];
        assert!(!store.remove_if_received_before(id, long_ago).unwrap());
        File::open(store.chunk_path(id))
            .unwrap()
            .set_modified(long_ago - std::time::Duration::from_secs(1))
            .unwrap();
        assert!(!store.write(id, data).unwrap(), "already held: touched");
        assert!(!store.remove_if_received_before(id, long_ago).unwrap());
        assert!(store
            .remove_if_received_before(id, SystemTime::now() + std::time::Duration::from_secs(1))
            .unwrap());
        assert_eq!((store.chunk_count(), store.used_bytes()), (0, 0));
        assert_eq!(store.verify(id).unwrap(), None);
    }

    #[test]
    fn quarantine_keeps_only_the_newest_copies() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let quarantine = dir.path().join("quarantine");
        for ms in 0..MAX_QUARANTINED + 5 {
            fs::write(quarantine.join(format!("old.{ms}")), b"x").unwrap();
        }
        let data = b"rotten".to_vec();
        let id = ChunkId::of(&data);
        store.write(&id, &data).unwrap();
        assert!(store.quarantine(&id).unwrap());
        let names: Vec<String> = fs::read_dir(&quarantine)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), MAX_QUARANTINED);
        assert!(
            names.iter().any(|n| n.starts_with(&id.to_hex())),
            "the newest stays"
        );
        assert!(!names.contains(&"old.0".to_string()), "the oldest goes");
    }

    #[test]
    fn refuses_a_foreign_format() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("FORMAT"), "cairn-chunk-store 99").unwrap();
        let err = ChunkStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }
}
