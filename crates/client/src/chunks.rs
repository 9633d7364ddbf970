//! Calls to chunk servers: `PUT`/`GET /v1/chunks/{id}` and the presence call.

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_proto::api::{
    HasChunksRequest, HasChunksResponse, SuspectResponse, CAPABILITY_HEADER, CLUSTER_TOKEN_HEADER,
};
use cairn_proto::{ApiError, ChunkId, ErrorCode};

use crate::error::ClientError;
use cairn_transport::ClientTls;

use crate::limits::{CHUNK_TIMEOUT, CONNECT_TIMEOUT};
use crate::meta::{decode_response, describe_tls};

fn http_client(tls: &ClientTls) -> reqwest::Client {
    tls.client_builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CHUNK_TIMEOUT)
        .tcp_nodelay(true)
        .build()
        .expect("HTTP client builds with static settings")
}

/// Why a chunk transfer to or from one node failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError {
    /// The node's error code; `None` when it could not be reached or did
    /// not answer with an API error.
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ChunkError {
    fn transport(e: &reqwest::Error, tls: &ClientTls) -> ChunkError {
        ChunkError {
            code: None,
            message: describe_tls(e, tls),
        }
    }
}

/// A chunk's body as it arrived from a node: its pieces in order, and the
/// BLAKE3 hash of their concatenation.
///
/// The pieces are kept as received rather than gathered into one buffer:
/// on a read through a gateway that copy (and the page faults of a fresh
/// 4 MiB buffer) was a quarter of the gateway's CPU. The hash is computed
/// piece by piece as they arrive, while each is still in the CPU's cache.
#[derive(Debug, Clone)]
pub struct ReceivedChunk {
    pieces: Vec<Bytes>,
    hash: ChunkId,
}

impl ReceivedChunk {
    /// Whether these are the bytes of chunk `id`, `len_bytes` long.
    pub fn is(&self, id: &ChunkId, len_bytes: usize) -> bool {
        self.len_bytes() == len_bytes && &self.hash == id
    }

    /// The BLAKE3 of the bytes received, for a caller that does not know
    /// the chunk's length (the hash alone decides).
    pub fn hash(&self) -> &ChunkId {
        &self.hash
    }

    pub fn len_bytes(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    /// Bytes `range` of the chunk, as slices of its pieces (nothing copied).
    pub fn slice(&self, range: Range<usize>) -> Vec<Bytes> {
        assert!(
            range.start <= range.end && range.end <= self.len_bytes(),
            "range {range:?} outside a chunk of {} bytes",
            self.len_bytes()
        );
        let mut slices = Vec::new();
        let mut piece_start = 0;
        for piece in &self.pieces {
            let piece_end = piece_start + piece.len();
            let from = range.start.max(piece_start);
            let to = range.end.min(piece_end);
            if from < to {
                slices.push(piece.slice(from - piece_start..to - piece_start));
            }
            piece_start = piece_end;
        }
        slices
    }

    /// The whole chunk in one buffer: copied, unless it arrived in one piece.
    pub fn into_bytes(mut self) -> Bytes {
        if self.pieces.len() == 1 {
            return self.pieces.pop().expect("one piece");
        }
        let mut whole = BytesMut::with_capacity(self.len_bytes());
        for piece in &self.pieces {
            whole.extend_from_slice(piece);
        }
        whole.freeze()
    }
}

#[derive(Clone)]
pub struct ChunkClient {
    http: reqwest::Client,
    /// Plain HTTP, or TLS trusting the cluster's CA.
    tls: ClientTls,
    /// Sent on every call that is not given a capability of its own.
    credential: Option<Credential>,
}

/// What proves a chunk call is allowed (see `cairn_proto::api::CapabilityKey`).
#[derive(Clone)]
enum Credential {
    /// Chunk servers among themselves: the cluster token.
    ClusterToken(String),
    /// Clients: a capability the metadata service issued (to store chunks,
    /// or an admin's for presence and repair calls).
    Capability(String),
}

impl Default for ChunkClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkClient {
    pub fn new() -> ChunkClient {
        let tls = ClientTls::plain();
        ChunkClient {
            http: http_client(&tls),
            tls,
            credential: None,
        }
    }

    /// Talks TLS (`https://`) when `tls` has the cluster's CA.
    pub fn with_tls(mut self, tls: ClientTls) -> ChunkClient {
        self.http = http_client(&tls);
        self.tls = tls;
        self
    }

    fn url(&self, addr: &str, route: &str) -> String {
        format!("{}{route}", self.tls.base_url(addr))
    }

    /// A client for a chunk server talking to its peers: every call
    /// carries the cluster token, which chunk servers accept for anything.
    pub fn with_cluster_token(mut self, token: Option<String>) -> ChunkClient {
        self.credential = token.map(Credential::ClusterToken);
        self
    }

    /// Every call carries `capability` (a `put` or `admin` one from
    /// `MetaClient::grant`), unless the call is given its own.
    pub fn with_capability(mut self, capability: Option<String>) -> ChunkClient {
        self.credential = capability.map(Credential::Capability);
        self
    }

    /// Adds the call's credential: its own capability, else the client's.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        capability: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (capability, &self.credential) {
            (Some(capability), _) => request.header(CAPABILITY_HEADER, capability),
            (None, Some(Credential::Capability(capability))) => {
                request.header(CAPABILITY_HEADER, capability)
            }
            (None, Some(Credential::ClusterToken(token))) => {
                request.header(CLUSTER_TOKEN_HEADER, token)
            }
            (None, None) => request,
        }
    }

    /// Stores `data` as chunk `id` on the node at `addr`, with `capability`
    /// (a writer's, from a grant) or the client's credential; `data` must
    /// hash to `id`. `Bytes` is reference-counted: sending one chunk to
    /// three nodes copies nothing.
    pub async fn put_with(
        &self,
        addr: &str,
        id: &ChunkId,
        data: Bytes,
        capability: Option<&str>,
    ) -> Result<(), ChunkError> {
        self.put_full(addr, id, data, capability, None).await
    }

    /// A `put` that hands on when the chunk was first received (repair's
    /// pushes; see [`cairn_proto::api::RECEIVED_MS_HEADER`]).
    pub async fn put_received(
        &self,
        addr: &str,
        id: &ChunkId,
        data: Bytes,
        received_ms: Option<u64>,
    ) -> Result<(), ChunkError> {
        self.put_full(addr, id, data, None, received_ms).await
    }

    async fn put_full(
        &self,
        addr: &str,
        id: &ChunkId,
        data: Bytes,
        capability: Option<&str>,
        received_ms: Option<u64>,
    ) -> Result<(), ChunkError> {
        let mut request = self.authorize(
            self.http
                .put(self.url(addr, &format!("/v1/chunks/{id}")))
                .body(data),
            capability,
        );
        if let Some(ms) = received_ms {
            request = request.header(cairn_proto::api::RECEIVED_MS_HEADER, ms.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ChunkError::transport(&e, &self.tls))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_text(response).await)
    }

    /// Fetches chunk `id` from `addr`, unverified: the caller checks the
    /// hash the answer carries (see [`ReceivedChunk`]). `capability` is the
    /// one `stat` gave for this chunk. With `headers_timeout`, a node that
    /// has not started answering by then is given up on (a paused node
    /// would otherwise hold the read for the whole chunk timeout). Reading
    /// stops at the first piece past `max_len_bytes` (the chunk's length,
    /// when known): such an answer cannot pass the caller's check.
    pub async fn get(
        &self,
        addr: &str,
        id: &ChunkId,
        capability: Option<&str>,
        headers_timeout: Option<Duration>,
        max_len_bytes: usize,
    ) -> Result<ReceivedChunk, ChunkError> {
        let send = self
            .authorize(
                self.http.get(self.url(addr, &format!("/v1/chunks/{id}"))),
                capability,
            )
            .send();
        let sent = match headers_timeout {
            Some(limit) => tokio::time::timeout(limit, send)
                .await
                .map_err(|_| ChunkError {
                    code: None,
                    message: format!(
                        "no answer within {} ms: the node is paused, hung or overloaded",
                        limit.as_millis()
                    ),
                })?,
            None => send.await,
        };
        let mut response = sent.map_err(|e| ChunkError::transport(&e, &self.tls))?;
        if !response.status().is_success() {
            return Err(error_text(response).await);
        }
        let mut pieces = Vec::new();
        let mut len_bytes = 0;
        let mut hasher = blake3::Hasher::new();
        while let Some(piece) = response
            .chunk()
            .await
            .map_err(|e| ChunkError::transport(&e, &self.tls))?
        {
            len_bytes += piece.len();
            hasher.update(&piece);
            pieces.push(piece);
            if len_bytes > max_len_bytes {
                // Longer than the chunk: not its bytes, which the caller's
                // check says (a corrupt copy); the rest is not read.
                break;
            }
        }
        Ok(ReceivedChunk {
            pieces,
            hash: ChunkId(*hasher.finalize().as_bytes()),
        })
    }

    /// Which of `ids` the node at `addr` holds.
    pub async fn has(&self, addr: &str, ids: &[ChunkId]) -> Result<Vec<bool>, ClientError> {
        Ok(self.has_detailed(addr, ids, false).await?.present)
    }

    /// The whole presence answer; with `verify` the node re-hashes each
    /// copy it holds and reports (and quarantines) corrupt ones.
    pub async fn has_detailed(
        &self,
        addr: &str,
        ids: &[ChunkId],
        verify: bool,
    ) -> Result<HasChunksResponse, ClientError> {
        let server = format!("chunk server at {addr}");
        let request = self
            .http
            .post(self.url(addr, "/v1/chunks/has"))
            .json(&HasChunksRequest {
                ids: ids.to_vec(),
                verify,
            });
        let response = self.authorize(request, None).send().await.map_err(|e| {
            ClientError::NodeUnreachable {
                server: server.clone(),
                reason: describe_tls(&e, &self.tls),
            }
        })?;
        let answer: HasChunksResponse = decode_response(response, &server).await?;
        let bad_corrupt = verify && answer.corrupt.len() != ids.len();
        if answer.present.len() != ids.len() || bad_corrupt {
            return Err(ClientError::Protocol {
                server,
                detail: "presence answer has the wrong length".into(),
            });
        }
        Ok(answer)
    }

    /// Tells the node at `addr` that its copy of `id` did not match its id;
    /// the node checks for itself and replaces a corrupt copy.
    pub async fn report_corrupt(
        &self,
        addr: &str,
        id: &ChunkId,
        capability: Option<&str>,
    ) -> Result<SuspectResponse, ClientError> {
        let server = format!("chunk server at {addr}");
        let request = self
            .http
            .post(self.url(addr, &format!("/v1/chunks/{id}/suspect")));
        let response = self
            .authorize(request, capability)
            .send()
            .await
            .map_err(|e| ClientError::NodeUnreachable {
                server: server.clone(),
                reason: describe_tls(&e, &self.tls),
            })?;
        decode_response(response, &server).await
    }

    /// Asks the node at `addr` to start a repair pass now.
    pub async fn request_repair(&self, addr: &str) -> Result<(), ClientError> {
        let server = format!("chunk server at {addr}");
        let response = self
            .authorize(self.http.post(self.url(addr, "/v1/repair")), None)
            .send()
            .await
            .map_err(|e| ClientError::NodeUnreachable {
                server: server.clone(),
                reason: describe_tls(&e, &self.tls),
            })?;
        let _: serde_json::Value = decode_response(response, &server).await?;
        Ok(())
    }
}

async fn error_text(response: reqwest::Response) -> ChunkError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(e) => ChunkError {
            code: Some(e.code),
            message: e.message,
        },
        Err(_) => ChunkError {
            code: None,
            message: format!("HTTP {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn received(pieces: &[Vec<u8>]) -> ReceivedChunk {
        let whole: Vec<u8> = pieces.concat();
        ReceivedChunk {
            pieces: pieces.iter().map(|p| Bytes::from(p.clone())).collect(),
            hash: ChunkId::of(&whole),
        }
    }

    proptest! {
        /// Any range of a chunk, however it arrived in pieces, is those
        /// bytes of the whole, with no empty slice among them; and the
        /// whole is the pieces in order.
        #[test]
        fn slices_of_pieces_are_the_range_of_the_whole(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let chunk = received(&pieces);
            let whole = pieces.concat();
            let (a, b) = (a.index(whole.len() + 1), b.index(whole.len() + 1));
            let range = a.min(b)..a.max(b);
            let slices = chunk.slice(range.clone());
            prop_assert!(slices.iter().all(|s| !s.is_empty()));
            prop_assert_eq!(slices.concat(), &whole[range]);
            prop_assert!(chunk.is(&ChunkId::of(&whole), whole.len()));
            prop_assert_eq!(&chunk.into_bytes()[..], &whole[..]);
        }
    }
}
