//! The FUSE operations. Each runs as a task on the tokio runtime and
//! answers the kernel from there, so slow calls (a chunk fetch, a Raft
//! write) never hold up the others.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_client::{ClientError, Files, Page, Reader, Target};
use cairn_proto::api::{
    Acting, ChownRequest, DirEntry, EntryKind, RemoveKind, Stat, TimeSet, XattrSetMode,
    MAX_ACTING_GROUPS,
};
use cairn_proto::limits::MAX_PATH_BYTES;
use cairn_proto::FileId;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::cache::ChunkCache;
use crate::errno::errno;
use crate::limits::{
    ATTR_TTL, BLOCK_SIZE_BYTES, CHUNK_CACHE_BYTES, ENTRY_TTL, MAX_BACKGROUND_REQUESTS,
    MAX_CALLER_IDENTITIES, MAX_NAME_BYTES, MAX_OPEN_HANDLES, MAX_READAHEAD_BYTES, MAX_WRITE_BYTES,
    READDIR_PAGE_ENTRIES,
};
use crate::names::Names;
use crate::open_file::OpenFile;

/// Who the mount acts as: the logged-in user, for every local caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub gids: Vec<u32>,
    pub admin: bool,
}

impl Identity {
    /// Whether the permission bits give this user every bit of `want`
    /// (4 read, 2 write, 1 execute/search), as the metadata service decides.
    fn may(&self, stat: &Stat, want: u32) -> bool {
        if self.admin {
            return true;
        }
        let bits = if stat.uid == self.uid {
            stat.mode >> 6
        } else if self.gids.contains(&stat.gid) {
            stat.mode >> 3
        } else {
            stat.mode
        };
        bits & want == want
    }
}

pub struct CairnFs {
    inner: Arc<Inner>,
    runtime: Handle,
}

struct Inner {
    /// The file API as the mount's user.
    files: Files,
    /// An admin's `--allow-other` mount: each call acts as the calling
    /// process's uid and groups (the kernel checks permissions first,
    /// `default_permissions`), through a `Files` per identity.
    per_caller: bool,
    callers: Mutex<HashMap<Acting, Files>>,
    who: Identity,
    read_only: bool,
    chunk_size_bytes: u64,
    cache: Arc<ChunkCache>,
    names: Mutex<Names>,
    /// Open files by inode, with their count of open handles.
    open_files: Mutex<HashMap<u64, (Arc<OpenFile>, usize)>>,
    handles: Mutex<HashMap<u64, Handle_>>,
    next_handle: AtomicU64,
}

/// What an open already knows of a file: a reader of it (its chunks and
/// the capabilities to fetch them), its stat, or nothing.
enum Known {
    Reader(Arc<Reader>),
    Stat(Box<Stat>),
    Nothing,
}

enum Handle_ {
    File { ino: u64, append: bool },
    Dir(Arc<tokio::sync::Mutex<DirCursor>>),
}

/// Where a directory listing stands: one page of entries at a time.
struct DirCursor {
    path: String,
    /// Index (among the entries, without `.` and `..`) of `page[0]`.
    page_start: u64,
    page: Vec<DirEntry>,
    /// The cursor of the next page; `None` at the end.
    next: Option<String>,
    loaded: bool,
}

type Result<T> = std::result::Result<T, Errno>;

tokio::task_local! {
    /// The file API as the caller of the FUSE request being served.
    static CALLER: Files;
}

/// The calling process's identity: its uid, its gid first, then its
/// supplementary groups (from /proc; just the gid if they cannot be read).
fn acting_of(req: &Request) -> Acting {
    let mut gids = vec![req.gid()];
    let status = std::fs::read_to_string(format!("/proc/{}/status", req.pid()));
    if let Some(line) = status.ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Groups:"))
            .map(String::from)
    }) {
        for gid in line["Groups:".len()..].split_whitespace() {
            if let Ok(gid) = gid.parse::<u32>() {
                if !gids.contains(&gid) && gids.len() < MAX_ACTING_GROUPS {
                    gids.push(gid);
                }
            }
        }
    }
    Acting {
        uid: req.uid(),
        gids,
    }
}

impl CairnFs {
    pub fn new(
        files: Files,
        who: Identity,
        per_caller: bool,
        read_only: bool,
        chunk_size_bytes: u64,
        runtime: Handle,
    ) -> CairnFs {
        CairnFs {
            inner: Arc::new(Inner {
                files,
                per_caller,
                callers: Mutex::new(HashMap::new()),
                who,
                read_only,
                chunk_size_bytes,
                cache: Arc::new(ChunkCache::new(CHUNK_CACHE_BYTES)),
                names: Mutex::new(Names::default()),
                open_files: Mutex::new(HashMap::new()),
                handles: Mutex::new(HashMap::new()),
                next_handle: AtomicU64::new(1),
            }),
            runtime,
        }
    }

    /// Runs `work` on the runtime with the shared state, as the caller of
    /// `req` on a per-caller mount (see [`Inner::caller_files`]).
    fn spawn<F, Fut>(&self, req: &Request, work: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let inner = self.inner.clone();
        let files = if inner.per_caller {
            inner.files_for(acting_of(req))
        } else {
            inner.files.clone()
        };
        self.runtime.spawn(CALLER.scope(files, work(inner)));
    }
}

// ---- attributes ----

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn kind(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The kind a mknod(2) mode asks for; `None` for a regular file.
fn node_kind(mode: u32) -> Option<EntryKind> {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => Some(EntryKind::Fifo),
        libc::S_IFSOCK => Some(EntryKind::Socket),
        libc::S_IFCHR => Some(EntryKind::CharDevice),
        libc::S_IFBLK => Some(EntryKind::BlockDevice),
        _ => None,
    }
}

/// What the kernel's attributes are made of, from a stat or a listing
/// entry.
struct Shape {
    id: FileId,
    kind: EntryKind,
    size_bytes: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    links: u64,
    /// atime, mtime, ctime, crtime.
    times_ns: [u64; 4],
}

fn attr(shape: Shape) -> FileAttr {
    let [accessed, modified, changed, created] = shape.times_ns;
    // A directory's size is its entry count in Cairn; 0 to programs.
    let size = if shape.kind == EntryKind::Dir {
        0
    } else {
        shape.size_bytes
    };
    FileAttr {
        ino: INodeNo(shape.id),
        size,
        blocks: size.div_ceil(512),
        atime: time(accessed),
        mtime: time(modified),
        ctime: time(changed),
        crtime: time(created),
        kind: kind(shape.kind),
        perm: (shape.mode & 0o7777) as u16,
        nlink: u32::try_from(shape.links).unwrap_or(u32::MAX),
        uid: shape.uid,
        gid: shape.gid,
        // The kernel's encoding fits 32 bits; what it gave, it gets back.
        rdev: u32::try_from(shape.rdev).unwrap_or(0),
        blksize: BLOCK_SIZE_BYTES,
        flags: 0,
    }
}

fn attr_of_stat(stat: &Stat) -> FileAttr {
    attr(Shape {
        id: stat.id,
        kind: stat.kind,
        size_bytes: stat.size_bytes,
        mode: stat.mode,
        uid: stat.uid,
        gid: stat.gid,
        rdev: stat.rdev,
        links: stat.links,
        times_ns: [
            stat.accessed_ns,
            stat.modified_ns,
            stat.changed_ns,
            stat.created_ns,
        ],
    })
}

fn attr_of_entry(entry: &DirEntry) -> FileAttr {
    attr(Shape {
        id: entry.id,
        kind: entry.kind,
        size_bytes: entry.size_bytes,
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
        rdev: entry.rdev,
        links: entry.links,
        // A listing carries no atime or crtime: mtime stands in.
        times_ns: [
            entry.modified_ns,
            entry.modified_ns,
            entry.changed_ns,
            entry.modified_ns,
        ],
    })
}

fn name_of(name: &OsStr) -> Result<String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(Errno::ENAMETOOLONG);
    }
    match name.to_str() {
        Some(name) => Ok(name.to_string()),
        None => {
            tracing::debug!("refused a name that is not UTF-8: {name:?}");
            Err(Errno::EINVAL)
        }
    }
}

fn ns_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// ---- the shared state ----

impl Inner {
    /// The file API as the caller being served (the mount's user outside
    /// a request, and on a mount that is not per caller).
    fn caller_files(&self) -> Files {
        CALLER
            .try_with(Files::clone)
            .unwrap_or_else(|_| self.files.clone())
    }

    /// The file API acting as `acting`, kept for the next call of that
    /// identity (at most `MAX_CALLER_IDENTITIES`: past it, all are dropped
    /// and made again as callers come).
    fn files_for(&self, acting: Acting) -> Files {
        let mut callers = self.callers.lock().expect("callers lock");
        if let Some(files) = callers.get(&acting) {
            return files.clone();
        }
        if callers.len() >= MAX_CALLER_IDENTITIES {
            callers.clear();
        }
        let meta = self.files.meta().clone().with_acting(Some(&acting));
        let files = self.files.acting_as(meta);
        callers.insert(acting, files.clone());
        files
    }

    fn path(&self, ino: u64) -> Result<String> {
        self.names.lock().expect("names lock").path(ino)
    }

    /// The path of `name` in `parent`: ENAMETOOLONG past the longest path
    /// the namespace keeps (4096 bytes from its root, which a process deep
    /// in the tree can reach with a short relative path).
    fn child_path(&self, parent: u64, name: &str) -> Result<String> {
        let path = self
            .names
            .lock()
            .expect("names lock")
            .child_path(parent, name)?;
        if path.len() > MAX_PATH_BYTES {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(path)
    }

    /// The path of `name` in `parent`, for a change: EROFS on a
    /// read-only mount.
    fn path_to_change(&self, parent: u64, name: &str) -> Result<String> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        self.child_path(parent, name)
    }

    /// The kernel learnt `stat`'s inode as `name` in `parent`.
    fn learn(&self, parent: u64, name: &str, stat: &Stat) {
        self.names.lock().expect("names lock").learn(
            parent,
            name,
            stat.id,
            has_other_names(stat.kind, stat.links),
        );
    }

    /// The file open on this mount that `name` in `parent` names, as far
    /// as the kernel knows it.
    fn open_file_named(&self, parent: u64, name: &str) -> Option<Arc<OpenFile>> {
        let ino = self.names.lock().expect("names lock").child(parent, name)?;
        self.open_file(ino)
    }

    fn open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        let open = self.open_files.lock().expect("open files lock");
        open.get(&ino).map(|(file, _)| file.clone())
    }

    /// `stat` with what this mount has written and not yet committed.
    fn attr(&self, stat: &Stat) -> FileAttr {
        let mut attr = attr_of_stat(stat);
        if let Some(file) = self.open_file(stat.id) {
            if let Some((size, changed_at)) = file.pending() {
                attr.size = size;
                attr.blocks = size.div_ceil(512);
                attr.mtime = changed_at;
                attr.ctime = changed_at;
            }
        }
        attr
    }

    async fn stat(&self, ino: u64, doing: &str) -> Result<Stat> {
        self.caller_files()
            .stat(Target::Id(ino))
            .await
            .map_err(|e| errno(doing, &e))
    }

    fn new_handle(&self, handle: Handle_) -> Result<u64> {
        let mut handles = self.handles.lock().expect("handles lock");
        if handles.len() >= MAX_OPEN_HANDLES {
            tracing::warn!("{MAX_OPEN_HANDLES} files are open on this mount; close some");
            return Err(Errno::ENFILE);
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        handles.insert(fh, handle);
        Ok(fh)
    }

    fn file_handle(&self, fh: u64) -> Result<(Arc<OpenFile>, bool)> {
        let handles = self.handles.lock().expect("handles lock");
        match handles.get(&fh) {
            Some(Handle_::File { ino, append }) => {
                let file = self.open_file(*ino).ok_or(Errno::EBADF)?;
                Ok((file, *append))
            }
            _ => Err(Errno::EBADF),
        }
    }

    fn dir_handle(&self, fh: u64) -> Result<Arc<tokio::sync::Mutex<DirCursor>>> {
        match self.handles.lock().expect("handles lock").get(&fh) {
            Some(Handle_::Dir(cursor)) => Ok(cursor.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Opens `ino` for a new handle: the open file shared with the other
    /// handles, or the file as it is now (close-to-open), from what the
    /// caller already learned of it.
    async fn open(&self, ino: u64, known: Known, truncate: bool) -> Result<Arc<OpenFile>> {
        if let Some(file) = self.count_handle(ino) {
            return Ok(file);
        }
        let path = self.path(ino).unwrap_or_else(|_| format!("id:{ino}"));
        let doing = format!("open {path}");
        let reader = match known {
            Known::Reader(reader) => Some(reader),
            // A new or empty file: nothing to read.
            Known::Stat(stat) if stat.size_bytes == 0 => None,
            Known::Stat(_) | Known::Nothing => {
                match self.caller_files().open(Target::Id(ino)).await {
                    Ok(reader) => Some(reader),
                    // Write-only and truncated: the old contents do not matter.
                    Err(e)
                        if truncate
                            && e.code() == Some(cairn_proto::ErrorCode::PermissionDenied) =>
                    {
                        None
                    }
                    Err(e) => return Err(errno(&doing, &e)),
                }
            }
        };
        let chunks = reader
            .as_ref()
            .map(|reader| reader.stat().chunks.clone())
            .unwrap_or_default();
        let file = Arc::new(OpenFile::new(
            self.caller_files(),
            self.cache.clone(),
            ino,
            path,
            self.chunk_size_bytes,
            reader,
            &chunks,
        ));
        let mut open = self.open_files.lock().expect("open files lock");
        // Another handle may have opened it meanwhile: share that one.
        let entry = open.entry(ino).or_insert((file, 0));
        entry.1 += 1;
        Ok(entry.0.clone())
    }

    fn count_handle(&self, ino: u64) -> Option<Arc<OpenFile>> {
        let mut open = self.open_files.lock().expect("open files lock");
        let (file, handles) = open.get_mut(&ino)?;
        *handles += 1;
        Some(file.clone())
    }

    /// A handle of `ino` closed; the last one commits and lets go.
    async fn release(&self, ino: u64) {
        let last = {
            let mut open = self.open_files.lock().expect("open files lock");
            let Some((file, handles)) = open.get_mut(&ino) else {
                return;
            };
            *handles -= 1;
            if *handles > 0 {
                return;
            }
            file.clone()
        };
        if let Err(e) = last.commit().await {
            tracing::error!("the last writes to file {ino} were not committed and are lost: {e}");
        }
        let closed = {
            let mut open = self.open_files.lock().expect("open files lock");
            let closed = open.get(&ino).is_some_and(|(_, handles)| *handles == 0);
            if closed {
                open.remove(&ino);
            }
            closed
        };
        if closed && last.is_held() {
            // Removed while open: it goes now. (Not held if it had another
            // name, or if this mount's session ended meanwhile.)
            if let Err(e) = self.files.release(ino).await {
                tracing::debug!("release removed file {ino}: {e}");
            }
        }
    }

    async fn lookup(&self, parent: u64, name: &str) -> Result<FileAttr> {
        let path = self.child_path(parent, name)?;
        let stat = match self.caller_files().stat(Target::Path(&path)).await {
            Ok(stat) => stat,
            Err(e) => return Err(errno(&format!("look up {path}"), &e)),
        };
        if stat.parent != parent {
            // The directory's path as this mount knows it names another
            // directory now (moved by another client).
            tracing::debug!("{path} is no longer in directory {parent}");
            return Err(Errno::ESTALE);
        }
        self.learn(parent, name, &stat);
        Ok(self.attr(&stat))
    }

    async fn setattr(&self, ino: u64, change: SetAttr) -> Result<FileAttr> {
        let path = self.path(ino)?;
        if self.read_only {
            return Err(Errno::EROFS);
        }
        if let Some(mode) = change.mode {
            let mode = mode & 0o7777;
            // On a per-caller mount the kernel has checked chmod itself
            // (only owners get here), but before a write by another user it
            // clears set-uid/set-gid with a chmod of its own: that one is
            // made with the mount's (admin) rights, as the kernel's is.
            let files = if self.per_caller && self.only_drops_set_ids(ino, mode).await? {
                self.files.clone()
            } else {
                self.caller_files()
            };
            files
                .chmod(&path, mode)
                .await
                .map_err(|e| errno(&format!("chmod {path}"), &e))?;
        }
        if change.uid.is_some() || change.gid.is_some() {
            let request = ChownRequest {
                path: path.clone(),
                uid: change.uid,
                gid: change.gid,
                ..ChownRequest::default()
            };
            self.caller_files()
                .chown(&request)
                .await
                .map_err(|e| errno(&format!("chown {path}"), &e))?;
        }
        if let Some(size) = change.size {
            self.truncate(ino, &path, size).await?;
        }
        if change.accessed.is_some() || change.modified.is_some() {
            // Times set on a file with writes not yet committed would be
            // overwritten by the commit: commit first (cp -p, tar).
            if let Some(file) = self.open_file(ino) {
                file.commit()
                    .await
                    .map_err(|e| errno(&format!("write {path}"), &e))?;
            }
            self.caller_files()
                .set_times(&path, change.accessed, change.modified)
                .await
                .map_err(|e| errno(&format!("set the times of {path}"), &e))?;
        }
        let stat = self.stat(ino, &format!("stat {path}")).await?;
        Ok(self.attr(&stat))
    }

    /// Whether `mode` is the mode of `ino` with set-uid and set-gid
    /// cleared (and something cleared).
    async fn only_drops_set_ids(&self, ino: u64, mode: u32) -> Result<bool> {
        let stat = self.stat(ino, &format!("stat file {ino}")).await?;
        Ok(stat.mode != mode && stat.mode & !0o6000 == mode)
    }

    /// truncate(2): through the open file if there is one, else on a
    /// file opened for the purpose.
    async fn truncate(&self, ino: u64, path: &str, size: u64) -> Result<()> {
        let doing = format!("truncate {path}");
        if let Some(file) = self.open_file(ino) {
            return file.truncate(size).await.map_err(|e| errno(&doing, &e));
        }
        let file = self.open(ino, Known::Nothing, size == 0).await?;
        let result = match file.truncate(size).await {
            Ok(()) => file.commit().await,
            Err(e) => Err(e),
        };
        self.release(ino).await;
        result.map_err(|e| errno(&doing, &e))
    }

    async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
    ) -> Result<(FileAttr, Arc<OpenFile>, u64)> {
        let path = self.path_to_change(parent, name)?;
        let stat = self
            .caller_files()
            .create_empty(&path, mode & 0o7777)
            .await
            .map_err(|e| errno(&format!("create {path}"), &e))?;
        self.learn(parent, name, &stat);
        let file = self
            .open(stat.id, Known::Stat(Box::new(stat.clone())), true)
            .await?;
        let fh = match self.new_handle(Handle_::File {
            ino: stat.id,
            append: false,
        }) {
            Ok(fh) => fh,
            Err(e) => {
                self.release(stat.id).await;
                return Err(e);
            }
        };
        Ok((self.attr(&stat), file, fh))
    }

    async fn open_handle(&self, ino: u64, flags: OpenFlags) -> Result<u64> {
        let writes = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        if writes && self.read_only {
            return Err(Errno::EROFS);
        }
        let want = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => 4,
            OpenAccMode::O_WRONLY => 2,
            OpenAccMode::O_RDWR => 6,
        };
        let doing = format!("open file {ino}");
        // A reader of a file not open yet needs its chunk list and the
        // capabilities to read them: one call gives those and the stat
        // (refused if the caller may not read it).
        let (stat, reader) = if want & 4 != 0 && self.open_file(ino).is_none() {
            let reader = self
                .caller_files()
                .open(Target::Id(ino))
                .await
                .map_err(|e| errno(&doing, &e))?;
            (reader.stat().clone(), Some(reader))
        } else {
            (self.stat(ino, &doing).await?, None)
        };
        if stat.kind == EntryKind::Dir {
            return Err(Errno::EISDIR);
        }
        if !self.who.may(&stat, want) {
            return Err(Errno::EACCES);
        }
        let known = match reader {
            Some(reader) => Known::Reader(reader),
            None => Known::Stat(Box::new(stat)),
        };
        let file = self.open(ino, known, truncate).await?;
        if truncate {
            if let Err(e) = file.truncate(0).await {
                self.release(ino).await;
                return Err(errno(&format!("truncate file {ino}"), &e));
            }
        }
        let append = flags.0 & libc::O_APPEND != 0;
        match self.new_handle(Handle_::File { ino, append }) {
            Ok(fh) => Ok(fh),
            Err(e) => {
                self.release(ino).await;
                Err(e)
            }
        }
    }

    /// Moves a directory cursor to entry `index` (without `.` and `..`),
    /// loading pages as needed; false past the end.
    async fn seek(&self, cursor: &mut DirCursor, index: u64) -> Result<bool> {
        if index < cursor.page_start || !cursor.loaded {
            cursor.page_start = 0;
            cursor.page.clear();
            cursor.next = None;
            self.load_page(cursor, None).await?;
        }
        while index >= cursor.page_start + cursor.page.len() as u64 {
            let Some(after) = cursor.next.take() else {
                return Ok(false);
            };
            cursor.page_start += cursor.page.len() as u64;
            self.load_page(cursor, Some(after)).await?;
        }
        Ok(true)
    }

    async fn load_page(&self, cursor: &mut DirCursor, after: Option<String>) -> Result<()> {
        let page = Page {
            after,
            limit: Some(READDIR_PAGE_ENTRIES),
        };
        let listed = self
            .caller_files()
            .list(&cursor.path, &page)
            .await
            .map_err(|e| errno(&format!("list {}", cursor.path), &e))?;
        cursor.page = listed.entries;
        cursor.next = listed.next;
        cursor.loaded = true;
        Ok(())
    }

    /// Gives `add` the entries of directory handle `fh` from `offset` on
    /// (offsets: 1 after ".", 2 after "..", 3 + i after entry i) until it
    /// says the reply is full.
    async fn list_dir(
        &self,
        fh: u64,
        offset: u64,
        add: &mut (dyn FnMut(u64, Listed<'_>) -> bool + Send),
    ) -> Result<()> {
        let cursor = self.dir_handle(fh)?;
        let mut cursor = cursor.lock().await;
        let mut next = offset;
        for (dot_offset, dot) in [(1, "."), (2, "..")] {
            if next < dot_offset {
                if add(dot_offset, Listed::Dot(dot)) {
                    return Ok(());
                }
                next = dot_offset;
            }
        }
        let mut index = next - 2;
        while self.seek(&mut cursor, index).await? {
            let entry = &cursor.page[(index - cursor.page_start) as usize];
            if add(index + 3, Listed::Entry(entry)) {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    async fn xattr_path_call<F, Fut>(&self, ino: u64, doing: &str, call: F) -> Result<()>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = std::result::Result<(), ClientError>>,
    {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let path = self.path(ino)?;
        call(path.clone()).await.map_err(|e| {
            let errno = errno(&format!("{doing} on {path}"), &e);
            if errno == Errno::ENOENT {
                Errno::ENODATA
            } else {
                errno
            }
        })
    }
}

/// One entry of a listing as readdir gives it.
enum Listed<'a> {
    Dot(&'static str),
    Entry(&'a DirEntry),
}

struct SetAttr {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    accessed: Option<TimeSet>,
    modified: Option<TimeSet>,
}

fn time_set(time: Option<TimeOrNow>) -> Option<TimeSet> {
    time.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(at) => TimeSet::At(ns_of(at)),
    })
}

// ---- the operations ----

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE_BYTES);
        let _ = config.set_max_readahead(MAX_READAHEAD_BYTES);
        let _ = config.set_max_background(MAX_BACKGROUND_REQUESTS);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND_REQUESTS * 3 / 4);
        let _ = config.set_time_granularity(Duration::from_nanos(1));
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        let _ = config.add_capabilities(wanted & config.capabilities());
        Ok(())
    }

    fn destroy(&mut self) {
        let inner = self.inner.clone();
        let files: Vec<Arc<OpenFile>> = {
            let open = inner.open_files.lock().expect("open files lock");
            open.values().map(|(file, _)| file.clone()).collect()
        };
        self.runtime.block_on(async {
            for file in files {
                if let Err(e) = file.commit().await {
                    tracing::error!(
                        "unmounted with writes to file {} that could not be committed: {e}",
                        file.id
                    );
                }
            }
        });
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        self.spawn(req, move |inner| async move {
            match inner.lookup(parent.0, &name).await {
                Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inner
            .names
            .lock()
            .expect("names lock")
            .forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(req, move |inner| async move {
            match inner.stat(ino.0, &format!("stat file {}", ino.0)).await {
                Ok(stat) => reply.attr(&ATTR_TTL, &inner.attr(&stat)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            accessed: time_set(atime),
            modified: time_set(mtime),
        };
        self.spawn(req, move |inner| async move {
            match inner.setattr(ino.0, change).await {
                Ok(attr) => reply.attr(&ATTR_TTL, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        if let Some(node) = node_kind(mode) {
            return self.spawn(req, move |inner| async move {
                let path = match inner.path_to_change(parent.0, &name) {
                    Ok(path) => path,
                    Err(e) => return reply.error(e),
                };
                let made = inner
                    .caller_files()
                    .make_node(&path, node, mode & !umask & 0o7777, u64::from(rdev))
                    .await;
                match made {
                    Ok(stat) => {
                        inner.learn(parent.0, &name, &stat);
                        reply.entry(&ENTRY_TTL, &inner.attr(&stat), Generation(0));
                    }
                    Err(e) => reply.error(errno(&format!("mknod {path}"), &e)),
                }
            });
        }
        self.spawn(req, move |inner| async move {
            match inner.create(parent.0, &name, mode & !umask).await {
                Ok((attr, file, fh)) => {
                    inner.handles.lock().expect("handles lock").remove(&fh);
                    inner.release(file.id).await;
                    reply.entry(&ENTRY_TTL, &attr, Generation(0));
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        self.spawn(req, move |inner| async move {
            let made = async {
                let path = inner.path_to_change(parent.0, &name)?;
                let made = inner
                    .caller_files()
                    .mkdir(&path, false, Some(mode & !umask & 0o7777))
                    .await
                    .map_err(|e| errno(&format!("mkdir {path}"), &e))?;
                let stat = inner.stat(made.id, &format!("stat {path}")).await?;
                inner.learn(parent.0, &name, &stat);
                Ok(inner.attr(&stat))
            };
            match made.await {
                Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, false, reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, true, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let name = match name_of(link_name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        // Targets are kept as text: one that is not UTF-8 cannot be.
        let Some(target) = target.to_str().map(str::to_string) else {
            tracing::debug!("refused a symbolic link target that is not UTF-8: {target:?}");
            return reply.error(Errno::EINVAL);
        };
        self.spawn(req, move |inner| async move {
            let path = match inner.path_to_change(parent.0, &name) {
                Ok(path) => path,
                Err(e) => return reply.error(e),
            };
            match inner.caller_files().symlink(&path, &target).await {
                Ok(stat) => {
                    inner.learn(parent.0, &name, &stat);
                    reply.entry(&ENTRY_TTL, &inner.attr(&stat), Generation(0));
                }
                Err(e) => reply.error(errno(&format!("symlink {path}"), &e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(req, move |inner| async move {
            match inner.stat(ino.0, &format!("readlink {}", ino.0)).await {
                Ok(stat) => match stat.target {
                    Some(target) => reply.data(target.as_bytes()),
                    None => reply.error(Errno::EINVAL),
                },
                Err(e) => reply.error(e),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = match name_of(newname) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        self.spawn(req, move |inner| async move {
            let linked = async {
                let src = inner.path(ino.0)?;
                let dst = inner.path_to_change(newparent.0, &name)?;
                let stat = inner
                    .caller_files()
                    .link(&src, &dst)
                    .await
                    .map_err(|e| errno(&format!("link {src} as {dst}"), &e))?;
                if stat.id != ino.0 {
                    // The path this mount knew named another file by then.
                    tracing::debug!("{src} is no longer inode {}", ino.0);
                    let _ = inner.caller_files().remove(&dst, false).await;
                    return Err(Errno::ESTALE);
                }
                inner.learn(newparent.0, &name, &stat);
                Ok(inner.attr(&stat))
            };
            match linked.await {
                Ok(attr) => reply.entry(&ENTRY_TTL, &attr, Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let (name, newname) = match (name_of(name), name_of(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let replace = !flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.spawn(req, move |inner| async move {
            let renamed = async {
                let src = inner.path_to_change(parent.0, &name)?;
                let dst = inner.child_path(newparent.0, &newname)?;
                // A file open here that the rename replaces stays readable
                // and writable until its last close (POSIX), as on unlink.
                let replaced = inner.open_file_named(newparent.0, &newname);
                let files = inner.caller_files();
                let moved = match &replaced {
                    Some(_) if replace => files.rename_over_open(&src, &dst).await,
                    _ => files.rename_exact(&src, &dst, replace).await,
                }
                .map_err(|e| errno(&format!("rename {src} to {dst}"), &e))?;
                if let Some(file) = replaced.filter(|file| file.id != moved.id) {
                    file.set_held();
                }
                inner.names.lock().expect("names lock").renamed(
                    parent.0,
                    &name,
                    newparent.0,
                    &newname,
                );
                if let Some(file) = inner.open_file(moved.id) {
                    file.set_path(dst);
                }
                Ok(())
            };
            match renamed.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(req, move |inner| async move {
            match inner.open_handle(ino.0, flags).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(req, move |inner| async move {
            let (file, _) = match inner.file_handle(fh.0) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            match file.read(offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&format!("read file {}", ino.0), &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(req, move |inner| async move {
            let (file, append) = match inner.file_handle(fh.0) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            // O_APPEND: at the end as this mount knows it.
            let offset = if append { file.size_bytes() } else { offset };
            match file.write(offset, &data).await {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(errno(&format!("write file {}", ino.0), &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.sync(req, ino, fh, reply);
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(req, move |inner| async move {
            let removed = inner.handles.lock().expect("handles lock").remove(&fh.0);
            if removed.is_some() {
                inner.release(ino.0).await;
            }
            reply.ok();
        });
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(req, ino, fh, reply);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(req, move |inner| async move {
            let opened = async {
                let path = inner.path(ino.0)?;
                let cursor = DirCursor {
                    path,
                    page_start: 0,
                    page: Vec::new(),
                    next: None,
                    loaded: false,
                };
                inner.new_handle(Handle_::Dir(Arc::new(tokio::sync::Mutex::new(cursor))))
            };
            match opened.await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(req, move |inner| async move {
            let mut add = |offset: u64, entry: Listed<'_>| match entry {
                Listed::Dot(name) => reply.add(ino, offset, FileType::Directory, name),
                Listed::Entry(entry) => {
                    reply.add(INodeNo(entry.id), offset, kind(entry.kind), &entry.name)
                }
            };
            match inner.list_dir(fh.0, offset, &mut add).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.spawn(req, move |inner| async move {
            let mount = inner.clone();
            let mut add = |offset: u64, entry: Listed<'_>| match entry {
                // "." and ".." carry no attributes the kernel keeps (ttl 0).
                Listed::Dot(name) => {
                    let attr = attr(Shape {
                        id: ino.0,
                        kind: EntryKind::Dir,
                        size_bytes: 0,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        rdev: 0,
                        links: 2,
                        times_ns: [0; 4],
                    });
                    reply.add(ino, offset, name, &Duration::ZERO, &attr, Generation(0))
                }
                Listed::Entry(entry) => {
                    let mut attr = attr_of_entry(entry);
                    if let Some(file) = mount.open_file(entry.id) {
                        if let Some((size, changed_at)) = file.pending() {
                            attr.size = size;
                            attr.mtime = changed_at;
                        }
                    }
                    let full = reply.add(
                        INodeNo(entry.id),
                        offset,
                        &entry.name,
                        &ENTRY_TTL,
                        &attr,
                        Generation(0),
                    );
                    if !full {
                        // The kernel counts a lookup for every entry it got.
                        let shared = has_other_names(entry.kind, entry.links);
                        mount.names.lock().expect("names lock").learn(
                            ino.0,
                            &entry.name,
                            entry.id,
                            shared,
                        );
                    }
                    full
                }
            };
            match inner.list_dir(fh.0, offset, &mut add).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner
            .handles
            .lock()
            .expect("handles lock")
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is committed before it is answered.
        reply.ok();
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.spawn(req, move |inner| async move {
            match inner.caller_files().meta().status().await {
                Ok(status) => {
                    const FRAGMENT: u64 = 4096;
                    let replication = u64::from(status.replication.max(1));
                    let (capacity, used) = status
                        .nodes
                        .iter()
                        .filter(|n| n.state != cairn_proto::NodeState::Down)
                        .fold((0u64, 0u64), |(c, u), n| {
                            (c + n.capacity_bytes, u + n.used_bytes)
                        });
                    // What a user can store: raw space over the copies kept.
                    let blocks = capacity / replication / FRAGMENT;
                    let free = capacity.saturating_sub(used) / replication / FRAGMENT;
                    let files = status.file_count + status.dir_count;
                    reply.statfs(
                        blocks,
                        free,
                        free,
                        files + 1_000_000,
                        1_000_000,
                        BLOCK_SIZE_BYTES,
                        MAX_NAME_BYTES as u32,
                        FRAGMENT as u32,
                    );
                }
                Err(e) => reply.error(errno("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        if not_kept(&name) {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrSetMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrSetMode::Replace
        } else {
            XattrSetMode::Any
        };
        let value = value.to_vec();
        self.spawn(req, move |inner| async move {
            let files = inner.caller_files();
            let set = inner
                .xattr_path_call(ino.0, &format!("set attribute {name}"), |path| async move {
                    files
                        .set_xattr(&path, &name, &value, mode)
                        .await
                        .map(|_| ())
                })
                .await;
            match set {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        if not_kept(&name) {
            // Answered here: the kernel asks for ACLs on access checks and
            // for file capabilities before every write.
            return reply.error(Errno::ENODATA);
        }
        self.spawn(req, move |inner| async move {
            match inner.caller_files().xattr(Target::Id(ino.0), &name).await {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(e) if e.is_not_found() => reply.error(Errno::ENODATA),
                Err(e) => reply.error(errno(
                    &format!("read attribute {name} of file {}", ino.0),
                    &e,
                )),
            }
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.spawn(req, move |inner| async move {
            match inner.caller_files().xattrs(Target::Id(ino.0)).await {
                Ok(xattrs) => {
                    let mut names = Vec::new();
                    for xattr in xattrs {
                        names.extend_from_slice(xattr.name.as_bytes());
                        names.push(0);
                    }
                    reply_xattr(reply, size, &names);
                }
                Err(e) => reply.error(errno(&format!("list attributes of file {}", ino.0), &e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        if not_kept(&name) {
            return reply.error(Errno::ENODATA);
        }
        self.spawn(req, move |inner| async move {
            let files = inner.caller_files();
            let removed = inner
                .xattr_path_call(
                    ino.0,
                    &format!("remove attribute {name}"),
                    |path| async move { files.remove_xattr(&path, &name).await.map(|_| ()) },
                )
                .await;
            match removed {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.spawn(req, move |inner| async move {
            match inner.stat(ino.0, &format!("stat file {}", ino.0)).await {
                Ok(stat) => {
                    let want = (mask.bits() as u32) & 0o7;
                    if mask.bits() as u32 & 0o2 != 0 && inner.read_only {
                        reply.error(Errno::EROFS)
                    } else if inner.who.may(&stat, want) {
                        reply.ok()
                    } else {
                        reply.error(Errno::EACCES)
                    }
                }
                Err(e) => reply.error(e),
            }
        });
    }

    /// posix_fallocate: Cairn stores no holes to reserve, so only the size
    /// changes (grows, unless FALLOC_FL_KEEP_SIZE); punching holes and
    /// other modes are not supported.
    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        self.spawn(req, move |inner| async move {
            let (file, _) = match inner.file_handle(fh.0) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            let end = offset.saturating_add(length);
            if mode & libc::FALLOC_FL_KEEP_SIZE != 0 || end <= file.size_bytes() {
                return reply.ok();
            }
            match file.truncate(end).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&format!("allocate in file {}", ino.0), &e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        let append = flags & libc::O_APPEND != 0;
        self.spawn(req, move |inner| async move {
            match inner.create(parent.0, &name, mode & !umask).await {
                Ok((attr, _file, fh)) => {
                    if append {
                        inner.handles.lock().expect("handles lock").insert(
                            fh,
                            Handle_::File {
                                ino: attr.ino.0,
                                append: true,
                            },
                        );
                    }
                    reply.created(
                        &ENTRY_TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                    )
                }
                Err(e) => reply.error(e),
            }
        });
    }
}

impl CairnFs {
    fn remove(&self, req: &Request, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(name) => name,
            Err(e) => return reply.error(e),
        };
        self.spawn(req, move |inner| async move {
            let removed = async {
                let path = inner.path_to_change(parent.0, &name)?;
                // A file open here stays readable and writable after its
                // last name goes, until its last close (POSIX).
                let open = if dir {
                    None
                } else {
                    inner.open_file_named(parent.0, &name)
                };
                let files = inner.caller_files();
                let removed = match (&open, dir) {
                    (Some(_), _) => files.unlink_open(&path).await,
                    (None, true) => files.remove_kind(&path, RemoveKind::Dir).await,
                    (None, false) => files.remove_kind(&path, RemoveKind::NotDir).await,
                };
                let removed = removed.map_err(|e| errno(&format!("remove {path}"), &e))?;
                if let Some(file) = open.filter(|file| file.id == removed.id) {
                    file.set_held();
                }
                inner
                    .names
                    .lock()
                    .expect("names lock")
                    .unlinked(parent.0, &name);
                Ok(())
            };
            match removed.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn sync(&self, req: &Request, ino: INodeNo, fh: FileHandle, reply: ReplyEmpty) {
        self.spawn(req, move |inner| async move {
            let (file, _) = match inner.file_handle(fh.0) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            match file.commit().await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&format!("commit file {}", ino.0), &e)),
            }
        });
    }
}

/// Attributes the mount never keeps: `system.*` (POSIX ACLs; Cairn has
/// none) and `security.capability` (file capabilities mean nothing on a
/// nosuid mount). Asked for without a call to the metadata service.
fn not_kept(name: &str) -> bool {
    name.starts_with("system.") || name == "security.capability"
}

fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// Whether an inode may have names besides the one being learnt: a file
/// (of any kind but a directory) with hard links.
fn has_other_names(kind: EntryKind, links: u64) -> bool {
    kind != EntryKind::Dir && links > 1
}
