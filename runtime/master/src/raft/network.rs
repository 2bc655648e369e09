//! How masters reach each other for Raft. Today a group is one master: it has no peers, so the
//! factory's clients answer every RPC with "unreachable" and openraft never calls them. The
//! network between masters (mutual TLS with the cluster CA, over the masters' API listener) is
//! the next step of issue 14.

use super::{NodeId, TypeConfig};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

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
