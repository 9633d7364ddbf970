//! Calls to chunk servers: `PUT`/`GET /v1/chunks/{id}` and the presence call.

use std::time::Duration;

use bytes::Bytes;
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
    /// hash. `capability` is the one `stat` gave for this chunk. With
    /// `headers_timeout`, a node that has not started answering by then is
    /// given up on (a paused node would otherwise hold the read for the
    /// whole chunk timeout).
    pub async fn get(
        &self,
        addr: &str,
        id: &ChunkId,
        capability: Option<&str>,
        headers_timeout: Option<Duration>,
    ) -> Result<Bytes, ChunkError> {
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
        let response = sent.map_err(|e| ChunkError::transport(&e, &self.tls))?;
        if !response.status().is_success() {
            return Err(error_text(response).await);
        }
        response
            .bytes()
            .await
            .map_err(|e| ChunkError::transport(&e, &self.tls))
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
