//! The file API every door stands on (the CLI, the shell, and later S3,
//! the mount and the web page): stat, paged listings and walks, streamed
//! puts, ranged reads, namespace changes and extended attributes, with
//! typed errors ([`ClientError`]).
//!
//! [`Files`] is cheap to clone and safe to share between tasks. Paths are
//! absolute here; resolving what a person typed is `path::resolve`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_proto::api::{
    ChmodRequest, ChownRequest, CommitRequest, CommitResponse, DirEntry, EntryKind, LinkRequest,
    ListResponse, MakeNodeRequest, MkdirRequest, MoveRequest, MutationResponse, OnExists,
    ReleaseRequest, RemoveKind, RemoveRequest, Stat, TimeSet, TimesRequest, WalkEntry,
    WalkResponse, XattrRemoveRequest, XattrSetMode, XattrSetRequest,
};
use cairn_proto::xattr::Xattr;
use cairn_proto::{file_digest, ChunkRef, ClusterMap, ErrorCode, FileId};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::chunks::ChunkClient;
use crate::download::Reader;
use crate::error::ClientError;
use crate::limits::{DEFAULT_WINDOW, MAP_CACHE_TTL};
use crate::map_view::MapView;
use crate::meta::{MetaClient, Page, Target};
use crate::upload::{Grant, UploadSummary, Uploader};

/// How a put stores its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// When the path names a file already: refuse, replace it, or store
    /// under a new unique name.
    pub on_exists: OnExists,
    /// Permission bits of a new file [default: 0o644].
    pub mode: Option<u32>,
    /// The file's extended attributes, set with its contents (`None`
    /// keeps a replaced file's).
    pub xattrs: Option<Vec<Xattr>>,
    /// The body's length, when the caller knows it: one shorter than a
    /// chunk is checked by the commit only (see [`Files::stage`]).
    pub size_bytes: Option<u64>,
}

#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    meta: MetaClient,
    chunks: ChunkClient,
    window: usize,
    /// The last map fetched (with its ring), and when: puts and reads
    /// within [`MAP_CACHE_TTL`] use it. Shared by the [`Files::acting_as`]
    /// views of one process.
    map: Arc<Mutex<Option<CachedView>>>,
    /// The capability to store chunks of files named only when committed
    /// ([`Files::chunk_writer`]s, one-chunk puts), shared by the
    /// [`Files::acting_as`] views of one process.
    store_grant: Arc<StoreGrant>,
}

/// A map view and when it was fetched.
type CachedView = (Instant, Arc<MapView>);

/// A put capability without a path, made on first use through the
/// process's own client: not a view's, whose user or key may go while
/// the capability is still renewed for others. It grants nothing a user
/// could not get: any caller may have one, and the commit checks.
struct StoreGrant {
    meta: MetaClient,
    grant: tokio::sync::OnceCell<Arc<Grant>>,
}

impl Files {
    /// The file API over `meta`; chunk servers are reached as `meta` reaches
    /// the metadata service (TLS with the same CA, or plain HTTP).
    pub fn new(meta: MetaClient) -> Files {
        let chunks = ChunkClient::new().with_tls(meta.tls().clone());
        Files {
            inner: Arc::new(Inner {
                chunks,
                window: DEFAULT_WINDOW,
                map: Arc::new(Mutex::new(None)),
                store_grant: Arc::new(StoreGrant {
                    meta: meta.clone(),
                    grant: tokio::sync::OnceCell::new(),
                }),
                meta,
            }),
        }
    }

    /// The same file API calling the metadata service through `meta` (as
    /// another user: the S3 gateway's per-key clients), sharing this one's
    /// chunk connections, map cache and path-less put capability.
    pub fn acting_as(&self, meta: MetaClient) -> Files {
        Files {
            inner: Arc::new(Inner {
                meta,
                chunks: self.inner.chunks.clone(),
                window: self.inner.window,
                map: self.inner.map.clone(),
                store_grant: self.inner.store_grant.clone(),
            }),
        }
    }

    pub fn meta(&self) -> &MetaClient {
        &self.inner.meta
    }

    pub fn chunks(&self) -> &ChunkClient {
        &self.inner.chunks
    }

    /// The cluster map: a recent one when `fresh` is false.
    pub async fn map(&self, fresh: bool) -> Result<ClusterMap, ClientError> {
        Ok(self.view(fresh).await?.map.clone())
    }

    /// The cluster map with its ring: a recent one when `fresh` is false.
    async fn view(&self, fresh: bool) -> Result<Arc<MapView>, ClientError> {
        if !fresh {
            let cached = self.inner.map.lock().expect("map cache lock");
            if let Some((at, view)) = cached.as_ref() {
                if at.elapsed() < MAP_CACHE_TTL {
                    return Ok(view.clone());
                }
            }
        }
        let view = Arc::new(MapView::new(self.inner.meta.map().await?));
        self.keep_view(view.clone());
        Ok(view)
    }

    fn keep_view(&self, view: Arc<MapView>) {
        *self.inner.map.lock().expect("map cache lock") = Some((Instant::now(), view));
    }

    pub async fn stat(&self, target: Target<'_>) -> Result<Stat, ClientError> {
        self.inner.meta.stat_target(target, false).await
    }

    /// A stat with the extended attributes the caller may read.
    pub async fn stat_with_xattrs(&self, target: Target<'_>) -> Result<Stat, ClientError> {
        self.inner.meta.stat_with(target, false, true).await
    }

    /// One page of the directory `path` (of the file itself, for a file).
    pub async fn list(&self, path: &str, page: &Page) -> Result<ListResponse, ClientError> {
        self.inner.meta.list_page(path, page).await
    }

    /// Every entry of the directory `path`, page by page, handed to
    /// `each` as they come (a directory of any size in bounded memory).
    pub async fn list_each(
        &self,
        path: &str,
        mut each: impl FnMut(DirEntry) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut page = Page::default();
        loop {
            let listing = self.list(path, &page).await?;
            for entry in listing.entries {
                each(entry)?;
            }
            match listing.next {
                Some(next) => page.after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One page of everything below `path`, in byte order of full paths.
    pub async fn walk(&self, path: &str, page: &Page) -> Result<WalkResponse, ClientError> {
        self.inner.meta.walk_page(path, page).await
    }

    /// Every entry below `path`, page by page, handed to `each`; returns
    /// the directories the caller could not list.
    pub async fn walk_each(
        &self,
        path: &str,
        mut each: impl FnMut(WalkEntry) -> Result<(), ClientError>,
    ) -> Result<Vec<String>, ClientError> {
        let mut page = Page::default();
        let mut skipped = Vec::new();
        loop {
            let walked = self.walk(path, &page).await?;
            skipped.extend(walked.skipped);
            for entry in walked.entries {
                each(entry)?;
            }
            match walked.next {
                Some(next) => page.after = Some(next),
                None => return Ok(skipped),
            }
        }
    }

    /// Stores what `reader` yields, to its end, as the file `path`:
    /// refused before any byte is sent if the caller may not write it (or
    /// if a file is there and `on_exists` is `fail`), unless
    /// `options.size_bytes` says the body is shorter than one chunk (then
    /// the commit refuses it: see [`Files::stage`]); committed in one step
    /// once every chunk has the copies a write needs. `on_progress` gets
    /// each chunk's length once stored.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        reader: R,
        options: &PutOptions,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<CommitResponse, ClientError> {
        let staged = self
            .stage(
                path,
                reader,
                options.on_exists,
                options.size_bytes,
                on_progress,
            )
            .await?;
        self.commit(path, staged.chunks, options).await
    }

    /// The first half of [`Files::put`]: stores the chunks of what
    /// `reader` yields and returns them, uncommitted, so that the caller
    /// can check the contents (the S3 gateway's checksums) before
    /// [`Files::commit`] makes them a file. Chunks never committed are
    /// collected by the chunk servers after their grace period.
    ///
    /// With `size_bytes` (the body's length, when the caller knows it)
    /// shorter than one chunk, the path is not checked first: such a put
    /// goes under the shared path-less capability. That check is half the
    /// metadata work of a small put (an S3 object of a few KiB), and the
    /// commit checks the same things anyway; a refused small body costs
    /// one chunk, collected later. A longer or unknown body is checked
    /// first, so that a refused large upload fails before its data moves.
    pub async fn stage<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        reader: R,
        on_exists: OnExists,
        size_bytes: Option<u64>,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<UploadSummary, ClientError> {
        let view = self.view(false).await?;
        let grant = if size_bytes.is_some_and(|size| size < view.map.chunk_size_bytes) {
            self.store_grant().await?
        } else {
            Grant::put(&self.inner.meta, path, on_exists).await?
        };
        let uploader = self.uploader(&view, grant, self.inner.window).await?;
        let summary = uploader.upload(reader, on_progress).await;
        // A chunk that found the cached map out of date fetched a fresh one:
        // the next puts use it.
        if let Some(map) = uploader.refreshed_map() {
            self.keep_view(Arc::new(MapView::new(map)));
        }
        summary
    }

    /// Commits `chunks`, in order, as the contents of the file `path` in
    /// one step: chunks just staged, or those of other files (a copy that
    /// moves no data, or the parts of an S3 multipart upload joined).
    pub async fn commit(
        &self,
        path: &str,
        chunks: Vec<ChunkRef>,
        options: &PutOptions,
    ) -> Result<CommitResponse, ClientError> {
        let mut request = commit_request(path, chunks);
        request.on_exists = options.on_exists;
        request.mode = options.mode;
        request.xattrs = options.xattrs.clone();
        self.inner.meta.commit(&request).await
    }

    /// Creates an empty file at `path` with permission bits `mode`,
    /// refused if something is there, and answers its stat (from the
    /// commit's answer: one call).
    pub async fn create_empty(&self, path: &str, mode: u32) -> Result<Stat, ClientError> {
        let mut request = commit_request(path, Vec::new());
        request.mode = Some(mode);
        let created = self.inner.meta.commit_and_stat(&request).await?;
        match created.stat {
            Some(stat) => Ok(*stat),
            None => self.stat(Target::Id(created.id)).await,
        }
    }

    /// Makes a symbolic link at `path` to `target` (kept as given, never
    /// followed by the metadata service); answers its stat.
    pub async fn symlink(&self, path: &str, target: &str) -> Result<Stat, ClientError> {
        let request = MakeNodeRequest {
            path: path.to_string(),
            kind: EntryKind::Symlink,
            target: Some(target.to_string()),
            mode: None,
            rdev: 0,
        };
        self.inner.meta.make_node(&request).await
    }

    /// Gives the file at `src` (any kind but a directory) the new name
    /// `dst` too, which must not exist: a hard link. Answers the file's
    /// stat (`links` counts its names).
    pub async fn link(&self, src: &str, dst: &str) -> Result<Stat, ClientError> {
        let request = LinkRequest {
            src: src.to_string(),
            dst: dst.to_string(),
        };
        self.inner.meta.link(&request).await
    }

    /// Makes a named pipe, socket or device node (`rdev`, devices only;
    /// admins only) at `path`; answers its stat.
    pub async fn make_node(
        &self,
        path: &str,
        kind: EntryKind,
        mode: u32,
        rdev: u64,
    ) -> Result<Stat, ClientError> {
        let request = MakeNodeRequest {
            path: path.to_string(),
            kind,
            target: None,
            mode: Some(mode),
            rdev,
        };
        self.inner.meta.make_node(&request).await
    }

    /// Opens the file `target` for reading: refused unless the caller may
    /// read it. The reader sees the file as it is now.
    pub async fn open(&self, target: Target<'_>) -> Result<Arc<Reader>, ClientError> {
        self.open_with(target, false).await
    }

    /// [`Files::open`], with the file's readable extended attributes in
    /// the reader's stat when `xattrs` (one call, not two).
    pub async fn open_with(
        &self,
        target: Target<'_>,
        xattrs: bool,
    ) -> Result<Arc<Reader>, ClientError> {
        let stat = self.inner.meta.stat_with(target, true, xattrs).await?;
        let view = self.view(false).await?;
        Ok(Arc::new(Reader::new(
            self.inner.meta.clone(),
            self.inner.chunks.clone(),
            &view,
            stat,
        )?))
    }

    /// Writes bytes `offset..offset + length` of the file `target` (to its
    /// end with `None`) to `writer`; returns the bytes written.
    pub async fn read<W: AsyncWrite + Unpin>(
        &self,
        target: Target<'_>,
        offset: u64,
        length: Option<u64>,
        writer: &mut W,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ClientError> {
        let reader = self.open(target).await?;
        reader
            .copy_range(offset, length, writer, self.inner.window, on_progress)
            .await
    }

    pub async fn mkdir(
        &self,
        path: &str,
        parents: bool,
        mode: Option<u32>,
    ) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .mkdir(&MkdirRequest {
                path: path.to_string(),
                parents,
                mode,
            })
            .await
    }

    /// Removes a file or an empty directory; with `recursive`, a directory
    /// and everything in it (it leaves the namespace at once; its entries
    /// are deleted in the background).
    pub async fn remove(
        &self,
        path: &str,
        recursive: bool,
    ) -> Result<MutationResponse, ClientError> {
        self.remove_request(path, recursive, None, false).await
    }

    /// unlink(2) (`RemoveKind::NotDir`) or rmdir(2) (`RemoveKind::Dir`)
    /// of `path`: the kind is checked with the removal, in one step.
    pub async fn remove_kind(
        &self,
        path: &str,
        kind: RemoveKind,
    ) -> Result<MutationResponse, ClientError> {
        self.remove_request(path, false, Some(kind), false).await
    }

    /// unlink(2) of a file this client has open: if `path` was its last
    /// name, the file stays, readable and writable by id, until
    /// [`Files::release`] (or this session ends). Needs a login session.
    pub async fn unlink_open(&self, path: &str) -> Result<MutationResponse, ClientError> {
        self.remove_request(path, false, Some(RemoveKind::NotDir), true)
            .await
    }

    /// The last close of a file removed by [`Files::unlink_open`]: it goes.
    pub async fn release(&self, id: FileId) -> Result<MutationResponse, ClientError> {
        self.inner.meta.release(&ReleaseRequest { id }).await
    }

    async fn remove_request(
        &self,
        path: &str,
        recursive: bool,
        kind: Option<RemoveKind>,
        hold_open: bool,
    ) -> Result<MutationResponse, ClientError> {
        let request = RemoveRequest {
            path: path.to_string(),
            recursive,
            kind,
            hold_open,
        };
        self.inner.meta.remove(&request).await
    }

    /// Moves `src` to `dst` (into it, if it is a directory) in one step.
    pub async fn rename(
        &self,
        src: &str,
        dst: &str,
        replace: bool,
    ) -> Result<MutationResponse, ClientError> {
        self.rename_with(src, dst, replace, false, false).await
    }

    /// Renames `src` to exactly `dst`, as rename(2): replaces a file there
    /// (with `replace`), or an empty directory when `src` is one.
    pub async fn rename_exact(
        &self,
        src: &str,
        dst: &str,
        replace: bool,
    ) -> Result<MutationResponse, ClientError> {
        self.rename_with(src, dst, replace, true, false).await
    }

    /// [`Files::rename_exact`] over a file this client has open: if the
    /// file replaced loses its last name, it stays, readable and writable
    /// by id, until [`Files::release`] (or this session ends).
    pub async fn rename_over_open(
        &self,
        src: &str,
        dst: &str,
    ) -> Result<MutationResponse, ClientError> {
        self.rename_with(src, dst, true, true, true).await
    }

    async fn rename_with(
        &self,
        src: &str,
        dst: &str,
        replace: bool,
        exact: bool,
        hold_open: bool,
    ) -> Result<MutationResponse, ClientError> {
        let request = MoveRequest {
            src: src.to_string(),
            dst: dst.to_string(),
            replace,
            exact,
            hold_open,
        };
        self.inner.meta.rename(&request).await
    }

    /// Sets the access and modification times of `path` (`None` keeps one).
    pub async fn set_times(
        &self,
        path: &str,
        accessed: Option<TimeSet>,
        modified: Option<TimeSet>,
    ) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .set_times(&TimesRequest {
                path: path.to_string(),
                accessed,
                modified,
            })
            .await
    }

    /// A writer of single chunks, to commit later with
    /// [`Files::commit_to`] (which checks the caller may write the file).
    /// Every writer of this `Files` shares one capability, renewed as it
    /// expires: a writer costs no call to the metadata service.
    pub async fn chunk_writer(&self) -> Result<Uploader, ClientError> {
        let grant = self.store_grant().await?;
        self.uploader(&*self.view(false).await?, grant, 1).await
    }

    /// The shared path-less put capability (see [`StoreGrant`]).
    async fn store_grant(&self) -> Result<Arc<Grant>, ClientError> {
        let shared = &self.inner.store_grant;
        Ok(shared
            .grant
            .get_or_try_init(|| Grant::store(&shared.meta))
            .await?
            .clone())
    }

    /// An uploader under `grant` with `view`, or a fresh map when `view` is
    /// older than nodes that came up since.
    async fn uploader(
        &self,
        view: &MapView,
        grant: Arc<Grant>,
        window: usize,
    ) -> Result<Uploader, ClientError> {
        let chunks = self.inner.chunks.clone();
        match Uploader::new(chunks.clone(), grant.clone(), view, window) {
            Err(e) if e.code() == Some(ErrorCode::NotEnoughNodes) => {
                Uploader::new(chunks, grant, &*self.view(true).await?, window)
            }
            other => other,
        }
    }

    /// Commits `chunks` as the new contents of the file `id`, wherever it
    /// is now (`path` names it in messages).
    pub async fn commit_to(
        &self,
        id: FileId,
        path: &str,
        chunks: Vec<ChunkRef>,
    ) -> Result<CommitResponse, ClientError> {
        let mut request = commit_request(path, chunks);
        request.id = Some(id);
        self.inner.meta.commit(&request).await
    }

    /// Copies the file `src` to `dst`, sharing its chunks: no data moves.
    pub async fn copy(
        &self,
        src: &str,
        dst: &str,
        replace: bool,
    ) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .copy(&MoveRequest {
                src: src.to_string(),
                dst: dst.to_string(),
                replace,
                exact: false,
                hold_open: false,
            })
            .await
    }

    pub async fn chmod(&self, path: &str, mode: u32) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .chmod(&ChmodRequest {
                path: path.to_string(),
                mode,
            })
            .await
    }

    pub async fn chown(&self, request: &ChownRequest) -> Result<MutationResponse, ClientError> {
        self.inner.meta.chown(request).await
    }

    /// The extended attributes of `target` the caller may read.
    pub async fn xattrs(&self, target: Target<'_>) -> Result<Vec<Xattr>, ClientError> {
        Ok(self.inner.meta.xattrs(target, None).await?.xattrs)
    }

    /// One extended attribute's value (`not_found` if it has none).
    pub async fn xattr(&self, target: Target<'_>, name: &str) -> Result<Vec<u8>, ClientError> {
        let answer = self.inner.meta.xattrs(target, Some(name)).await?;
        answer
            .xattrs
            .into_iter()
            .next()
            .map(|x| x.value)
            .ok_or_else(|| ClientError::Protocol {
                server: "the metadata service".into(),
                detail: format!("the answer for attribute {name} holds none"),
            })
    }

    pub async fn set_xattr(
        &self,
        path: &str,
        name: &str,
        value: &[u8],
        mode: XattrSetMode,
    ) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .set_xattr(&XattrSetRequest {
                path: path.to_string(),
                xattr: Xattr {
                    name: name.to_string(),
                    value: value.to_vec(),
                },
                mode,
            })
            .await
    }

    pub async fn remove_xattr(
        &self,
        path: &str,
        name: &str,
    ) -> Result<MutationResponse, ClientError> {
        self.inner
            .meta
            .remove_xattr(&XattrRemoveRequest {
                path: path.to_string(),
                name: name.to_string(),
            })
            .await
    }
}

/// A commit of `chunks` as the contents of `path`, with their size and
/// digest, refusing to replace a file (the caller changes what differs).
fn commit_request(path: &str, chunks: Vec<ChunkRef>) -> CommitRequest {
    CommitRequest {
        path: path.to_string(),
        size_bytes: chunks.iter().map(|c| u64::from(c.length_bytes)).sum(),
        digest: file_digest(&chunks),
        chunks,
        on_exists: OnExists::Fail,
        mode: None,
        xattrs: None,
        id: None,
    }
}
