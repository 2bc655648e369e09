//! How masters reach each other for Raft: [`Peers`] posts each RPC as JSON over HTTPS, with
//! mutual TLS (the caller's own master certificate, the cluster CA), to `/internal/raft/...` on
//! the peer's listener (served by [`super::rpc`]). A master alone uses [`Solo`]: it has no
//! peers, so its clients refuse every RPC with the reason, and openraft never calls them.

use super::{NodeId, TypeConfig};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::error::{RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The network of a group of one.
#[derive(Debug, Clone, Default)]
pub struct Solo;

/// A client of [`Solo`]: there is nobody to talk to.
#[derive(Debug)]
pub struct NoPeer {
    target: NodeId,
}

#[derive(Debug, thiserror::Error)]
#[error("master {0} is not reachable: this master's Raft group has no peers yet")]
struct NoPeers(NodeId);

impl NoPeer {
    fn refuse<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&NoPeers(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Solo {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.refuse())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(self.refuse())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.refuse())
    }
}

/// The network of a group with peers.
#[derive(Debug, Clone)]
pub struct Peers {
    client: reqwest::Client,
}

impl Peers {
    /// Peers reached with `tls`: the cluster CA as the only root and this master's certificate
    /// as the client identity.
    pub fn new(tls: rustls::ClientConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| format!("cannot build the client to other masters: {e}"))?;
        Ok(Self { client })
    }
}

/// A client of one peer.
#[derive(Debug)]
pub struct Peer {
    client: reqwest::Client,
    base: String,
    target: NodeId,
}

/// A peer's answer that is not an RPC result.
#[derive(Debug, thiserror::Error)]
#[error("master {target} answered {status}: {body}")]
struct Refused {
    target: NodeId,
    status: reqwest::StatusCode,
    body: String,
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer { client: self.client.clone(), base: format!("https://{}{}", node.addr, super::rpc::PREFIX), target }
    }
}

impl Peer {
    /// Posts `request` to `path`; the peer answers its Raft's own `Result` as JSON.
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let sent =
            self.client.post(format!("{}/{path}", self.base)).json(request).timeout(option.hard_ttl()).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&error))),
            Err(error) => return Err(RPCError::Network(NetworkError::new(&error))),
        };
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(&Refused { target: self.target, status, body })));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            response.json().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
