//! The chunk data API. Routes and bodies are documented in `docs/api.md`.
//!
//! PUT sketch, per 4 MiB chunk: the body arrives in frames that are hashed
//! (BLAKE3, ~1 ms) and appended to one buffer as they come; a mismatch with
//! the id in the URL is refused before anything touches the disk. Then one
//! write, one fdatasync, one rename, one directory fsync on the blocking
//! pool. No other copy of the bytes is made.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_proto::api::{ChunkHealth, HasChunksRequest, HasChunksResponse, MAX_HAS_CHUNKS_IDS};
use cairn_proto::{ApiError, ChunkId, ErrorCode, MAX_CHUNK_SIZE_BYTES};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::store::ChunkStore;

/// Chunk bodies held in memory at once by PUTs and GETs (each at most one
/// chunk): bounds the server's memory to about this many chunk sizes.
const MAX_CONCURRENT_TRANSFERS: usize = 32;

struct Server {
    store: Arc<ChunkStore>,
    transfers: Semaphore,
}

pub fn router(store: Arc<ChunkStore>) -> Router {
    let server = Arc::new(Server {
        store,
        transfers: Semaphore::new(MAX_CONCURRENT_TRANSFERS),
    });
    Router::new()
        .route(
            "/v1/chunks/{id}",
            get(get_chunk).head(head_chunk).put(put_chunk),
        )
        .route("/v1/chunks/has", post(has_chunks))
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

fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
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
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > MAX_CHUNK_SIZE_BYTES) {
        return error(too_large());
    }
    let _permit = server
        .transfers
        .acquire()
        .await
        .expect("semaphore is never closed");
    let mut data = Vec::with_capacity(declared_len.unwrap_or(0) as usize);
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
        if (data.len() + frame.len()) as u64 > MAX_CHUNK_SIZE_BYTES {
            return error(too_large());
        }
        hasher.update(&frame);
        data.extend_from_slice(&frame);
    }
    if declared_len.is_some_and(|len| len != data.len() as u64) {
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
    let store = server.store.clone();
    match tokio::task::spawn_blocking(move || store.write(&id, &data)).await {
        Ok(Ok(true)) => StatusCode::CREATED.into_response(),
        Ok(Ok(false)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => internal("cannot store chunk", e),
        Err(e) => internal("chunk write task failed", e),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("a chunk can be at most {} MiB", MAX_CHUNK_SIZE_BYTES >> 20),
    )
}

async fn get_chunk(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    let _permit = server
        .transfers
        .acquire()
        .await
        .expect("semaphore is never closed");
    let store = server.store.clone();
    match tokio::task::spawn_blocking(move || store.read(&id)).await {
        Ok(Ok(Some(data))) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Bytes::from(data),
        )
            .into_response(),
        Ok(Ok(None)) => error(ApiError::new(
            ErrorCode::NotFound,
            format!("this node does not hold chunk {id}"),
        )),
        Ok(Err(e)) => internal("cannot read chunk", e),
        Err(e) => internal("chunk read task failed", e),
    }
}

async fn head_chunk(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    match server.store.size_of(&id) {
        Ok(Some(len)) => ([(header::CONTENT_LENGTH, len.to_string())], ()).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => internal("cannot stat chunk", e),
    }
}

async fn has_chunks(State(server): State<Arc<Server>>, body: Bytes) -> Response {
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
    let store = server.store.clone();
    let present = tokio::task::spawn_blocking(move || {
        request.ids.iter().map(|id| store.contains(id)).collect()
    })
    .await;
    match present {
        Ok(present) => Json(HasChunksResponse { present }).into_response(),
        Err(e) => internal("presence task failed", e),
    }
}

async fn health(State(server): State<Arc<Server>>) -> Json<ChunkHealth> {
    Json(ChunkHealth {
        id: server.store.node_id().clone(),
        chunk_count: server.store.chunk_count(),
        used_bytes: server.store.used_bytes(),
    })
}
