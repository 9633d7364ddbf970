//! The namespace routes (`/v1/fs/...`) and chunk grants.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use cairn_proto::api::{
    ChmodRequest, ChownRequest, ChunkOp, CommitRequest, CommitResponse, EntryKind, GrantOp,
    GrantRequest, GrantResponse, LinkRequest, ListResponse, MakeNodeRequest, MkdirRequest,
    MoveRequest, MutationResponse, OnExists, ReleaseRequest, RemoveRequest, Stat, TimesRequest,
    WalkResponse, XattrRemoveRequest, XattrSetRequest, XattrsResponse,
};
use cairn_proto::{ApiError, ErrorCode, FileId};
use serde::Deserialize;

use crate::auth::TokenHash;
use crate::perm::Principal;
use crate::records::StateError;
use crate::state::{Command, Inode, Names, Output, ReadView};

use super::caller::Caller;
use super::core::{now_ms, Meta};
use super::http::{ApiJson, ApiQuery, ApiResult, Consistency, RequestId};

/// A file or directory named by path or by id (`?path=` or `?id=`).
enum Target {
    Path(String),
    Id(FileId),
}

impl Target {
    fn of(path: Option<String>, id: Option<FileId>) -> Result<Target, ApiError> {
        match (path, id) {
            (Some(path), None) => Ok(Target::Path(path)),
            (None, Some(id)) => Ok(Target::Id(id)),
            _ => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "name the file or directory with exactly one of ?path= or ?id=",
            )),
        }
    }

    /// Resolves the target as `who` may reach it: (id, record, its name
    /// for messages).
    fn resolve(
        &self,
        view: &ReadView,
        who: &Principal,
    ) -> Result<(FileId, Inode, String), StateError> {
        match self {
            Target::Path(path) => {
                let (dir, id, mut inode) = view.resolve_in(who, path)?;
                // The stat's `parent` is the directory this path names it
                // in (a hard-linked file has several): the mount checks it.
                inode.parent = dir;
                Ok((id, inode, cairn_proto::path::normalize(path)?))
            }
            Target::Id(id) => Ok((*id, view.resolve_id(who, *id)?, format!("id {id}"))),
        }
    }
}

// (No `#[serde(flatten)]` in queries: it makes numbers fail to parse.)
#[derive(Deserialize)]
pub struct StatQuery {
    path: Option<String>,
    id: Option<FileId>,
    /// The caller is about to read the file: refuse unless it may, and
    /// hand out the capabilities to fetch its chunks.
    #[serde(default)]
    read: bool,
    /// Answer the attributes the caller may read too.
    #[serde(default)]
    xattrs: bool,
}

pub async fn stat(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<StatQuery>,
) -> ApiResult<Stat> {
    let target = Target::of(query.path, query.id)?;
    let read = query.read;
    let with_xattrs = query.xattrs;
    let who = caller.principal;
    let mut stat = meta
        .read_bounded(consistency, move |txn| {
            let view = ReadView::open(txn)?;
            let (id, inode, named) = target.resolve(&view, &who)?;
            if read && !inode.is_dir() {
                view.require_read(&inode, &who, &named)?;
            }
            let mut stat = Names::new(&view).stat(id, &inode, &who)?;
            if with_xattrs {
                stat.xattrs = Some(view.xattrs(&who, id, &inode, &named, None)?);
            }
            Ok(stat)
        })
        .await?;
    if read && stat.kind == EntryKind::File {
        // The chunk servers serve a chunk only with a capability for it:
        // one per chunk, issued only to a reader about to read (a plain
        // stat, as `put` and `fsck` make, would pay a MAC per chunk).
        if let Some(key) = &meta.capability_key {
            let expires_ms = now_ms() + meta.capability_ttl.as_millis() as u64;
            stat.capabilities = stat
                .chunks
                .iter()
                .map(|c| key.issue(ChunkOp::Get, Some(&c.id), expires_ms))
                .collect();
            stat.capabilities_expire_ms = expires_ms;
        }
    }
    Ok(Json(stat))
}

/// A capability to store chunks (for a file the caller may write at
/// `path`) or for the admin chunk calls.
pub async fn grant(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    ApiJson(req): ApiJson<GrantRequest>,
) -> ApiResult<GrantResponse> {
    let op = match req.op {
        GrantOp::Admin => {
            caller.require_admin("check or repair chunks on the storage nodes")?;
            ChunkOp::Admin
        }
        GrantOp::Put => {
            // Without a path, nothing to check before the commit, which
            // checks in any case: a put capability stores chunks of any
            // id, and chunks no commit names are collected.
            if let Some(path) = req.path {
                let who = caller.principal.clone();
                let exists_is_an_error = req.on_exists == Some(OnExists::Fail);
                meta.read_bounded(Consistency::Linearizable, move |txn| {
                    ReadView::open(txn)?.check_writable(&who, &path, exists_is_an_error)
                })
                .await?;
            }
            ChunkOp::Put
        }
    };
    let expires_ms = now_ms() + meta.capability_ttl.as_millis() as u64;
    Ok(Json(GrantResponse {
        capability: meta
            .capability_key
            .as_ref()
            .map(|key| key.issue(op, None, expires_ms)),
        expires_ms,
    }))
}

#[derive(Deserialize)]
pub struct PageQuery {
    path: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<ListResponse> {
    let who = caller.principal;
    let listing = meta
        .read(consistency, move |txn| {
            ReadView::open(txn)?.list(&who, &query.path, query.after.as_deref(), query.limit)
        })
        .await?;
    Ok(Json(listing))
}

pub async fn walk(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<WalkResponse> {
    let who = caller.principal;
    let page = meta
        .read(consistency, move |txn| {
            ReadView::open(txn)?.walk(&who, &query.path, query.after.as_deref(), query.limit)
        })
        .await?;
    Ok(Json(page))
}

#[derive(Deserialize)]
pub struct XattrsQuery {
    path: Option<String>,
    id: Option<FileId>,
    /// One attribute only.
    #[serde(default)]
    name: Option<String>,
}

pub async fn xattrs(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    consistency: Consistency,
    ApiQuery(query): ApiQuery<XattrsQuery>,
) -> ApiResult<XattrsResponse> {
    let target = Target::of(query.path, query.id)?;
    let who = caller.principal;
    let xattrs = meta
        .read_bounded(consistency, move |txn| {
            let view = ReadView::open(txn)?;
            let (id, inode, named) = target.resolve(&view, &who)?;
            view.xattrs(&who, id, &inode, &named, query.name.as_deref())
        })
        .await?;
    Ok(Json(XattrsResponse { xattrs }))
}

async fn mutation(
    meta: &Meta,
    caller: &Caller,
    command: Command,
    request_id: Option<u128>,
) -> ApiResult<MutationResponse> {
    match caller.propose(meta, command, request_id).await? {
        Output::Mutation(m) => Ok(Json(m)),
        other => Err(ApiError::internal(format!("mutation answered {other:?}")).into()),
    }
}

/// A route that proposes `$command($body)` and answers its mutation.
macro_rules! mutation_route {
    ($name:ident, $body:ty, $command:path) => {
        pub async fn $name(
            State(meta): State<Arc<Meta>>,
            caller: Caller,
            RequestId(request_id): RequestId,
            ApiJson(req): ApiJson<$body>,
        ) -> ApiResult<MutationResponse> {
            mutation(&meta, &caller, $command(req), request_id).await
        }
    };
}

mutation_route!(mkdir, MkdirRequest, Command::Mkdir);
mutation_route!(copy, MoveRequest, Command::Copy);
mutation_route!(chmod, ChmodRequest, Command::Chmod);
mutation_route!(chown, ChownRequest, Command::Chown);
mutation_route!(times, TimesRequest, Command::SetTimes);
mutation_route!(set_xattr, XattrSetRequest, Command::SetXattr);
mutation_route!(remove_xattr, XattrRemoveRequest, Command::RemoveXattr);

/// Renames; over a file the caller has open, with `hold_open`, that file
/// is held for the caller's session.
pub async fn rename(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MutationResponse> {
    let command = if req.hold_open {
        let session = session_of(&caller, "hold a replaced file open")?;
        Command::RenameOpen {
            request: req,
            session,
        }
    } else {
        Command::Rename(req)
    };
    mutation(&meta, &caller, command, request_id).await
}

/// Removes a file or a tree; a tree's entries are then deleted in the
/// background (the purge loop is woken).
pub async fn remove(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<RemoveRequest>,
) -> ApiResult<MutationResponse> {
    let recursive = req.recursive;
    let command = if req.hold_open {
        let session = session_of(&caller, "hold a removed file open")?;
        Command::RemoveOpen {
            request: req,
            session,
        }
    } else {
        Command::Remove(req)
    };
    let answer = mutation(&meta, &caller, command, request_id).await?;
    if recursive {
        meta.purge_wanted.notify_one();
    }
    Ok(answer)
}

/// `fs/release`: the last close of a file the caller removed while it
/// had it open; the file goes.
pub async fn release(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> ApiResult<MutationResponse> {
    let session = session_of(&caller, "release a removed file")?;
    let command = Command::Release {
        id: req.id,
        session,
    };
    mutation(&meta, &caller, command, request_id).await
}

/// The caller's login session: files removed while open are held by one.
fn session_of(caller: &Caller, doing: &str) -> Result<TokenHash, ApiError> {
    match &caller.session {
        Some((hash, _)) => Ok(*hash),
        None => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "cannot {doing} without a login session: log in as a user (as `cairn mount` does)"
            ),
        )),
    }
}

#[derive(Deserialize)]
pub struct CommitQuery {
    /// Answer the file's stat with the commit.
    #[serde(default)]
    stat: bool,
}

pub async fn commit(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiQuery(query): ApiQuery<CommitQuery>,
    ApiJson(req): ApiJson<CommitRequest>,
) -> ApiResult<CommitResponse> {
    let who = caller.principal.clone();
    let mut committed = match caller
        .propose(&meta, Command::Commit(req), request_id)
        .await?
    {
        Output::Commit(c) => c,
        other => return Err(ApiError::internal(format!("commit answered {other:?}")).into()),
    };
    if query.stat {
        // A file gone since is answered without a stat.
        committed.stat = stat_after_write(&meta, who, committed.id)
            .await
            .ok()
            .map(Box::new);
    }
    Ok(Json(committed))
}

/// The stat of `id` right after a write made it: writes are applied on
/// the leader before they are answered, so its state holds the write (or
/// later changes) without a linearizable read.
async fn stat_after_write(meta: &Meta, who: Principal, id: FileId) -> Result<Stat, ApiError> {
    meta.read_bounded(Consistency::Stale, move |txn| {
        let view = ReadView::open(txn)?;
        let inode = view.resolve_id(&who, id)?;
        Names::new(&view).stat(id, &inode, &who)
    })
    .await
}

/// `fs/mknod`: a symbolic link, pipe, socket or device node, answered
/// with its stat (the mount replies to the kernel with it).
pub async fn make_node(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<MakeNodeRequest>,
) -> ApiResult<Stat> {
    propose_then_stat(&meta, caller, Command::MakeNode(req), request_id).await
}

/// `fs/link`: another name for a file, answered with the file's stat.
pub async fn link(
    State(meta): State<Arc<Meta>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Stat> {
    propose_then_stat(&meta, caller, Command::Link(req), request_id).await
}

/// Proposes a command that answers a mutation, then answers the stat of
/// what it made or changed.
async fn propose_then_stat(
    meta: &Meta,
    caller: Caller,
    command: Command,
    request_id: Option<u128>,
) -> ApiResult<Stat> {
    let changed = match caller.propose(meta, command, request_id).await? {
        Output::Mutation(m) => m,
        other => return Err(ApiError::internal(format!("a mutation answered {other:?}")).into()),
    };
    Ok(Json(
        stat_after_write(meta, caller.principal, changed.id).await?,
    ))
}
