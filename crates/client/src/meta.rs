//! Calls to the metadata service's HTTP/JSON API.

use std::time::Duration;

use cairn_proto::api::{
    CommitRequest, CommitResponse, HeartbeatRequest, HeartbeatResponse, ListResponse, MkdirRequest,
    MoveRequest, MutationResponse, NodeRequest, ReferencedRequest, ReferencedResponse,
    RegisterRequest, RemoveNodeRequest, RemoveRequest, Stat, StatusResponse,
};
use cairn_proto::{ApiError, ClusterMap, FileId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;

/// Time limit of one metadata call: generous, as a commit waits for an fsync
/// and a listing of a large directory takes a while.
const META_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    addr: String,
}

impl MetaClient {
    /// `addr` is `host:port` (an `http://` prefix is accepted).
    pub fn new(addr: &str) -> MetaClient {
        let addr = addr
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(META_TIMEOUT)
            .build()
            .expect("HTTP client builds with static settings");
        MetaClient { http, addr }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status", &[]).await
    }

    pub async fn map(&self) -> Result<ClusterMap, ClientError> {
        self.get("/v1/map", &[]).await
    }

    pub async fn stat(&self, path: &str) -> Result<Stat, ClientError> {
        self.get("/v1/fs/stat", &[("path", path)]).await
    }

    pub async fn stat_id(&self, id: FileId) -> Result<Stat, ClientError> {
        self.get("/v1/fs/stat", &[("id", &id.to_string())]).await
    }

    pub async fn list(&self, path: &str) -> Result<ListResponse, ClientError> {
        self.get("/v1/fs/list", &[("path", path)]).await
    }

    pub async fn mkdir(&self, request: &MkdirRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/mkdir", request).await
    }

    pub async fn commit(&self, request: &CommitRequest) -> Result<CommitResponse, ClientError> {
        self.post("/v1/fs/commit", request).await
    }

    pub async fn remove(&self, request: &RemoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/remove", request).await
    }

    pub async fn rename(&self, request: &MoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/rename", request).await
    }

    pub async fn copy(&self, request: &MoveRequest) -> Result<MutationResponse, ClientError> {
        self.post("/v1/fs/copy", request).await
    }

    pub async fn register(&self, request: &RegisterRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/register", request).await
    }

    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.post("/v1/nodes/heartbeat", request).await
    }

    pub async fn drain_node(&self, request: &NodeRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/drain", request).await
    }

    pub async fn undrain_node(&self, request: &NodeRequest) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/undrain", request).await
    }

    pub async fn remove_node(
        &self,
        request: &RemoveNodeRequest,
    ) -> Result<ClusterMap, ClientError> {
        self.post("/v1/nodes/remove", request).await
    }

    /// Which of `request.ids` some file references.
    pub async fn referenced(
        &self,
        request: &ReferencedRequest,
    ) -> Result<ReferencedResponse, ClientError> {
        self.post("/v1/chunks/referenced", request).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        route: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .get(format!("http://{}{route}", self.addr))
            .query(query);
        self.send(request).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .post(format!("http://{}{route}", self.addr))
            .json(body);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::MetaUnreachable {
                addr: self.addr.clone(),
                reason: describe(&e),
            })?;
        let server = format!("metadata service at {}", self.addr);
        decode_response(response, &server).await
    }
}

/// Turns a response into the expected body, or into the server's `ApiError`.
pub(crate) async fn decode_response<T: DeserializeOwned>(
    response: reqwest::Response,
    server: &str,
) -> Result<T, ClientError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| ClientError::Protocol {
        server: server.to_string(),
        detail: format!("reading the answer failed: {}", describe(&e)),
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            server: server.to_string(),
            detail: e.to_string(),
        });
    }
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(e) => Err(ClientError::Api(e)),
        Err(_) => Err(ClientError::Protocol {
            server: server.to_string(),
            detail: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        }),
    }
}

/// A short reason for a transport error ("connection refused", "timed out").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        innermost = s.to_string();
        source = s.source();
    }
    innermost
}
