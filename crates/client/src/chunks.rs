//! Calls to chunk servers: `PUT`/`GET /v1/chunks/{id}` and the presence call.

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::api::{HasChunksRequest, HasChunksResponse};
use cairn_proto::{ApiError, ChunkId};

use crate::error::ClientError;
use crate::meta::{decode_response, describe};

/// Time limit for moving one chunk (64 MiB at the most) to or from a node.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ChunkClient {
    http: reqwest::Client,
}

impl Default for ChunkClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkClient {
    pub fn new() -> ChunkClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(CHUNK_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client builds with static settings");
        ChunkClient { http }
    }

    /// Stores `data` as chunk `id` on the node at `addr`; `data` must hash to `id`.
    /// `Bytes` is reference-counted: sending one chunk to three nodes copies nothing.
    pub async fn put(&self, addr: &str, id: &ChunkId, data: Bytes) -> Result<(), String> {
        let response = self
            .http
            .put(format!("http://{addr}/v1/chunks/{id}"))
            .body(data)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_text(response).await)
    }

    /// Fetches chunk `id` from `addr`, unverified: the caller checks the hash.
    pub async fn get(&self, addr: &str, id: &ChunkId) -> Result<Bytes, String> {
        let response = self
            .http
            .get(format!("http://{addr}/v1/chunks/{id}"))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(error_text(response).await);
        }
        response.bytes().await.map_err(|e| describe(&e))
    }

    /// Which of `ids` the node at `addr` holds.
    pub async fn has(&self, addr: &str, ids: &[ChunkId]) -> Result<Vec<bool>, ClientError> {
        let server = format!("chunk server at {addr}");
        let response = self
            .http
            .post(format!("http://{addr}/v1/chunks/has"))
            .json(&HasChunksRequest { ids: ids.to_vec() })
            .send()
            .await
            .map_err(|e| {
                ClientError::Transfer(format!("cannot reach {server}: {}", describe(&e)))
            })?;
        let answer: HasChunksResponse = decode_response(response, &server).await?;
        if answer.present.len() != ids.len() {
            return Err(ClientError::Protocol {
                server,
                detail: "presence answer has the wrong length".into(),
            });
        }
        Ok(answer.present)
    }
}

async fn error_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(e) => e.message,
        Err(_) => format!("HTTP {status}"),
    }
}
