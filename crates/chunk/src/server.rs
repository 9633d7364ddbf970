//! The chunk data API. Routes and bodies are documented in `docs/api.md`.
//!
//! PUT sketch, per 4 MiB chunk: the body arrives in frames that are hashed
//! (BLAKE3, ~1 ms) and appended to one buffer as they come; a mismatch with
//! the id in the URL is refused before anything touches the disk. Then one
//! write, one fdatasync, one rename, one directory fsync on the blocking
//! pool. No other copy of the bytes is made.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_proto::api::{
    token_matches, CapabilityError, CapabilityKey, ChunkHealth, ChunkOp, HasChunksRequest,
    HasChunksResponse, SuspectResponse, CAPABILITY_HEADER, CLUSTER_TOKEN_HEADER,
    MAX_HAS_CHUNKS_IDS,
};
use cairn_proto::{ApiError, ChunkId, ErrorCode, NodeState, MAX_CHUNK_SIZE_BYTES};
use cairn_telemetry::counter;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::aligned::AlignedBuffer;
use crate::limits::MAX_CONCURRENT_TRANSFERS;
use crate::node::Node;
use crate::store::ChunkStore;

struct Server {
    node: Arc<Node>,
    store: Arc<ChunkStore>,
    transfers: Semaphore,
    access: Access,
}

/// What a chunk call must carry: the cluster token (other chunk servers),
/// or a capability the metadata service issued for the operation and, to
/// read, for the chunk. With no key nothing is checked.
pub struct Access {
    pub cluster_token: Option<String>,
    pub capability_key: Option<CapabilityKey>,
}

pub fn router(node: Arc<Node>, access: Access) -> Router {
    let server = Arc::new(Server {
        store: node.store.clone(),
        node,
        transfers: Semaphore::new(MAX_CONCURRENT_TRANSFERS),
        access,
    });
    Router::new()
        .route(
            "/v1/chunks/{id}",
            get(get_chunk).head(head_chunk).put(put_chunk),
        )
        .route("/v1/chunks/has", post(has_chunks))
        .route("/v1/chunks/{id}/suspect", post(suspect_chunk))
        .route("/v1/repair", post(request_repair))
        .route("/v1/health", get(health))
        .fallback(|| async {
            error(ApiError::new(
                ErrorCode::NotFound,
                "no such API route; see docs/api.md",
            ))
        })
        // PUT bodies are limited by hand (see put_chunk); the presence call's by this.
        .layer(DefaultBodyLimit::max(MAX_HAS_CHUNKS_IDS * 80 + 1024))
        .with_state(server)
}

impl Server {
    /// `Ok` if the call may do `op` (on chunk `id`); else the refusal,
    /// logged with the caller's address and the reason.
    fn authorize(
        &self,
        headers: &HeaderMap,
        source: SocketAddr,
        op: ChunkOp,
        id: Option<&ChunkId>,
    ) -> Result<(), ApiError> {
        let Some(key) = &self.access.capability_key else {
            return Ok(());
        };
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let (Some(presented), Some(expected)) =
            (text(CLUSTER_TOKEN_HEADER), &self.access.cluster_token)
        {
            if token_matches(presented, expected) {
                return Ok(());
            }
        }
        let what = match id {
            Some(id) => format!("chunk {id}"),
            None => "this call".to_string(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (reason, refusal) = match key.check(text(CAPABILITY_HEADER), op, id, now_ms) {
            Ok(()) => return Ok(()),
            Err(CapabilityError::Missing) => (
                "no capability",
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    format!(
                        "{what} needs a capability from the metadata service in {CAPABILITY_HEADER}; cairn \
                         clients get one when they stat or put a file they may read or write (log in with \
                         `cairn login`)"
                    ),
                ),
            ),
            Err(CapabilityError::Malformed) => (
                "malformed capability",
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("the {CAPABILITY_HEADER} header is not a capability (TAG.EXPIRY.MAC)"),
                ),
            ),
            Err(CapabilityError::Invalid) => (
                "invalid capability",
                ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "the capability does not allow this on {what}: it is for another chunk or \
                         operation, from another cluster, or forged"
                    ),
                ),
            ),
            Err(CapabilityError::Expired { expires_ms }) => (
                "expired capability",
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    format!(
                        "the capability for {what} expired {} s ago; run the command again for a fresh one",
                        now_ms.saturating_sub(expires_ms) / 1000
                    ),
                ),
            ),
        };
        tracing::warn!(%source, ?op, chunk = ?id.map(|i| i.to_string()), reason, "refused a chunk call");
        Err(refusal)
    }
}

fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let rejection = cairn_telemetry::Rejection {
        code: e.code.as_str().to_string(),
        message: e.message.clone(),
    };
    let mut response = (status, Json(e)).into_response();
    response.extensions_mut().insert(rejection);
    response
}

fn parse_id(text: &str) -> Result<ChunkId, ApiError> {
    text.parse::<ChunkId>().map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("bad chunk id in URL: {e}"),
        )
    })
}

fn internal(context: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(%e, "{context}");
    error(ApiError::internal(format!("{context}: {e}")))
}

async fn put_chunk(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Put, Some(&id)) {
        return error(refusal);
    }
    // The length is needed up front: the body lands in a buffer of that
    // size, aligned for the direct write (every Cairn client sends it).
    let Some(declared_len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return error(ApiError::new(
            ErrorCode::InvalidArgument,
            "a chunk PUT needs a Content-Length header with the chunk's size",
        ));
    };
    if declared_len > MAX_CHUNK_SIZE_BYTES {
        return error(too_large());
    }
    if server.node.state() == Some(NodeState::Draining) {
        return error(ApiError::new(
            ErrorCode::Unavailable,
            "this node is draining and takes no new chunks; store on the next node",
        ));
    }
    let _permit = acquire(&server.transfers).await;
    let mut data = AlignedBuffer::with_capacity(declared_len as usize);
    let mut hasher = blake3::Hasher::new();
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                return error(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("chunk body was cut short: {e}"),
                ))
            }
        };
        // The buffer's room is the declared length (hyper enforces it too).
        if !data.extend_from_slice(&frame) {
            return error(ApiError::new(
                ErrorCode::InvalidArgument,
                "chunk body is longer than its Content-Length",
            ));
        }
        hasher.update(&frame);
    }
    if declared_len != data.len() as u64 {
        return error(ApiError::new(
            ErrorCode::InvalidArgument,
            "chunk body length differs from Content-Length",
        ));
    }
    let actual = ChunkId(*hasher.finalize().as_bytes());
    if actual != id {
        tracing::warn!(claimed = %id, %actual, "refused a chunk whose content does not match its id");
        return error(ApiError::new(
            ErrorCode::HashMismatch,
            format!("chunk body hashes to {actual}, not to the id {id} it was sent under; nothing was stored"),
        ));
    }
    let received = headers
        .get(cairn_proto::api::RECEIVED_MS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    let store = server.store.clone();
    let len = data.len() as u64;
    match tokio::task::spawn_blocking(move || store.write_received(&id, data.as_slice(), received))
        .await
    {
        Ok(Ok(true)) => {
            counter!("cairn_chunk_written_bytes_total").increment(len);
            StatusCode::CREATED.into_response()
        }
        Ok(Ok(false)) => StatusCode::OK.into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::StorageFull => error(ApiError::new(
            ErrorCode::NoSpace,
            format!("this node is full: {e}"),
        )),
        Ok(Err(e)) => internal("cannot store chunk", e),
        Err(e) => internal("chunk write task failed", e),
    }
}

async fn acquire(transfers: &Semaphore) -> tokio::sync::SemaphorePermit<'_> {
    transfers
        .acquire()
        .await
        .expect("semaphore is never closed")
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("a chunk can be at most {} MiB", MAX_CHUNK_SIZE_BYTES >> 20),
    )
}

async fn get_chunk(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Get, Some(&id)) {
        return error(refusal);
    }
    let _permit = acquire(&server.transfers).await;
    let store = server.store.clone();
    match tokio::task::spawn_blocking(move || store.read(&id)).await {
        Ok(Ok(Some(data))) => {
            counter!("cairn_chunk_read_bytes_total").increment(data.len() as u64);
            ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response()
        }
        Ok(Ok(None)) => error(ApiError::new(
            ErrorCode::NotFound,
            format!("this node does not hold chunk {id}"),
        )),
        Ok(Err(e)) => internal("cannot read chunk", e),
        Err(e) => internal("chunk read task failed", e),
    }
}

async fn head_chunk(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Get, Some(&id)) {
        return error(refusal);
    }
    match server.store.size_of(&id) {
        Ok(Some(len)) => ([(header::CONTENT_LENGTH, len.to_string())], ()).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => internal("cannot stat chunk", e),
    }
}

async fn has_chunks(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Admin, None) {
        return error(refusal);
    }
    let request: HasChunksRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("bad request body: {e}"),
            ))
        }
    };
    if request.ids.len() > MAX_HAS_CHUNKS_IDS {
        return error(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "ask about at most {MAX_HAS_CHUNKS_IDS} ids at once; got {}",
                request.ids.len()
            ),
        ));
    }
    // Verifying reads every copy asked about, one at a time: count it as
    // one transfer, so memory stays bounded however many calls arrive.
    let _permit = match request.verify {
        true => Some(acquire(&server.transfers).await),
        false => None,
    };
    let store = server.store.clone();
    let ids = request.ids.clone();
    let verify = request.verify;
    let checked = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Presence>> {
        ids.iter()
            .map(|id| {
                if !verify {
                    return Ok(if store.contains(id) {
                        Presence::Held
                    } else {
                        Presence::Absent
                    });
                }
                Ok(match store.verify(id)? {
                    Some(true) => Presence::Held,
                    Some(false) => Presence::Corrupt,
                    None => Presence::Absent,
                })
            })
            .collect()
    })
    .await;
    let checked = match checked {
        Ok(Ok(checked)) => checked,
        Ok(Err(e)) => return internal("cannot check chunks", e),
        Err(e) => return internal("presence task failed", e),
    };
    let corrupt: Vec<ChunkId> = request
        .ids
        .iter()
        .zip(&checked)
        .filter(|(_, presence)| **presence == Presence::Corrupt)
        .map(|(id, _)| *id)
        .collect();
    if !corrupt.is_empty() {
        // One task replaces them one after the other: at most one chunk
        // fetched at a time, however many were corrupt.
        let node = server.node.clone();
        tokio::spawn(async move {
            for id in corrupt {
                node.handle_corrupt(id, "verify").await;
            }
        });
    }
    // A copy found corrupt now is moved to quarantine/ (above, in the
    // background), so it counts as quarantined too.
    let quarantined = if verify {
        let store = server.store.clone();
        match tokio::task::spawn_blocking(move || store.quarantined_ids()).await {
            Ok(Ok(held)) => request
                .ids
                .iter()
                .zip(&checked)
                .map(|(id, p)| *p == Presence::Corrupt || held.contains(id))
                .collect(),
            Ok(Err(e)) => return internal("cannot list the quarantine", e),
            Err(e) => return internal("quarantine task failed", e),
        }
    } else {
        Vec::new()
    };
    Json(HasChunksResponse {
        present: checked.iter().map(|p| *p == Presence::Held).collect(),
        corrupt: if verify {
            checked.iter().map(|p| *p == Presence::Corrupt).collect()
        } else {
            Vec::new()
        },
        quarantined,
        epoch: server.node.epoch(),
    })
    .into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Held,
    Absent,
    Corrupt,
}

/// A reader found this node's copy of a chunk corrupt. The node does not
/// take the reader's word for it: it re-hashes its copy, and only a copy
/// that fails is quarantined and replaced.
async fn suspect_chunk(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Get, Some(&id)) {
        return error(refusal);
    }
    let _permit = acquire(&server.transfers).await;
    let store = server.store.clone();
    let verdict = match tokio::task::spawn_blocking(move || store.verify(&id)).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) => return internal("cannot check chunk", e),
        Err(e) => return internal("check task failed", e),
    };
    let corrupt = verdict == Some(false);
    if corrupt {
        let node = server.node.clone();
        tokio::spawn(async move { node.handle_corrupt(id, "reader").await });
    }
    Json(SuspectResponse {
        held: verdict.is_some(),
        corrupt,
    })
    .into_response()
}

async fn request_repair(
    State(server): State<Arc<Server>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = server.authorize(&headers, source, ChunkOp::Admin, None) {
        return error(refusal);
    }
    server.node.repair_wake.notify_one();
    Json(serde_json::json!({ "repair": "requested" })).into_response()
}

async fn health(State(server): State<Arc<Server>>) -> Json<ChunkHealth> {
    Json(ChunkHealth {
        id: server.store.node_id().clone(),
        chunk_count: server.store.chunk_count(),
        used_bytes: server.store.used_bytes(),
    })
}
