//! Raft messages between metadata members: JSON over HTTP to the peer's
//! `/v1/raft/{append,vote,snapshot}` routes. A one-member group never sends
//! any; they carry replication once a group has several voters.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use cairn_proto::api::CLUSTER_TOKEN_HEADER;
use cairn_transport::ClientTls;

use crate::store::RaftNodeId;
use crate::TypeConfig;

pub struct HttpNetworkFactory {
    client: reqwest::Client,
    /// Sent with every message: members refuse Raft from outsiders.
    cluster_token: Option<String>,
    tls: ClientTls,
}

impl HttpNetworkFactory {
    pub fn new(cluster_token: Option<String>, tls: ClientTls) -> HttpNetworkFactory {
        let client = tls
            .client_builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client builds with static settings");
        HttpNetworkFactory {
            client,
            cluster_token,
            tls,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> HttpPeer {
        HttpPeer {
            client: self.client.clone(),
            target,
            base_url: self.tls.base_url(&node.addr),
            cluster_token: self.cluster_token.clone(),
        }
    }
}

pub struct HttpPeer {
    client: reqwest::Client,
    target: RaftNodeId,
    /// `http(s)://host:port` of the peer.
    base_url: String,
    cluster_token: Option<String>,
}

impl HttpPeer {
    async fn call<Req, Resp, E>(
        &self,
        route: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/v1/raft/{route}", self.base_url);
        let mut post = self
            .client
            .post(url)
            .timeout(option.hard_ttl())
            .json(request);
        if let Some(token) = &self.cluster_token {
            post = post.header(CLUSTER_TOKEN_HEADER, token);
        }
        let response = post.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            let refusal = std::io::Error::other(format!(
                "metadata member {} at {} refused this member's cluster token; give every member the same \
                 --cluster-secret-file",
                self.target, self.base_url
            ));
            tracing::error!(%refusal, "raft message refused");
            return Err(RPCError::Unreachable(Unreachable::new(&refusal)));
        }
        let result: Result<Resp, RaftError<RaftNodeId, E>> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        self.call("vote", &rpc, &option).await
    }
}
