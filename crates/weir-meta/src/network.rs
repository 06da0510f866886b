//! The metadata quorum's wire: one TCP connection per peer on the
//! controller listener, frames of a big-endian `u32` length and a JSON
//! body, one request and its answer at a time. Raft's three RPCs and the
//! controller calls other nodes forward to the active controller share it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::controller::{Answer, Request};
use crate::raft::{NodeId, TypeConfig};

/// Largest frame accepted (snapshots travel in chunks far smaller).
pub const MAX_FRAME: usize = 64 << 20;

/// A request on the quorum's wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    /// Raft AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<NodeId>),
    /// Raft InstallSnapshot (one chunk).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A controller request forwarded to the active controller.
    Controller(Request),
}

/// The answer to an [`Rpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcReply {
    /// To `Append`.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To `Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// To `Controller`.
    Controller(ControllerReply),
}

/// What a forwarded controller request gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// Handled and committed (or refused): the answer and the log index
    /// of the decision's entry (0 when it wrote nothing).
    Answered {
        /// The answer.
        answer: Answer,
        /// The entry's index.
        index: u64,
    },
    /// This node is not the active controller; `leader` may be.
    NotController {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    stream.write_all(&out).await
}

/// Reads one frame; a length above [`MAX_FRAME`] or a body that does not
/// parse is an error (the connection is then dropped).
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Connects to `host:port`, from the local address `local` when given (a
/// node's connections to its peers leave from the address it listens on,
/// as a firewall rule or a test's proxy expects).
pub async fn connect_from(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(local) = local.filter(|ip| !ip.is_unspecified()) else {
        return TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(local, 0))?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        // No address of the local one's family: as the system picks.
        None => TcpStream::connect((host, port)).await,
    }
}

/// A connection to one peer, opened on first use and after a failure.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    local: Option<IpAddr>,
    stream: Option<TcpStream>,
}

impl Peer {
    /// A peer at `addr` (`host:port`), reached from `local` when given.
    pub fn new(target: NodeId, addr: String, local: Option<IpAddr>) -> Self {
        Self {
            target,
            addr,
            local,
            stream: None,
        }
    }

    /// Sends `rpc` and waits for its answer, at most `timeout`.
    pub async fn call(&mut self, rpc: &Rpc, timeout: Duration) -> Result<RpcReply, CallError> {
        let result = tokio::time::timeout(timeout, async {
            if self.stream.is_none() {
                let (host, port) = self
                    .addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                    .ok_or_else(|| {
                        CallError::Unreachable(std::io::Error::other(format!(
                            "bad peer address {}",
                            self.addr
                        )))
                    })?;
                let s = connect_from(host, port, self.local)
                    .await
                    .map_err(CallError::Unreachable)?;
                let _ = s.set_nodelay(true);
                self.stream = Some(s);
            }
            let s = self
                .stream
                .as_mut()
                .ok_or_else(|| CallError::Network(std::io::Error::other("no connection")))?;
            write_frame(s, rpc).await.map_err(CallError::Network)?;
            read_frame::<RpcReply>(s).await.map_err(CallError::Network)
        })
        .await;
        let result = result.unwrap_or_else(|_| {
            Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from node {} within {timeout:?}", self.target),
            )))
        });
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Could not connect.
    #[error("unreachable: {0}")]
    Unreachable(std::io::Error),
    /// The connection failed or timed out.
    #[error("network: {0}")]
    Network(std::io::Error),
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "answer of the wrong kind",
    )))
}

/// openraft's network factory: a [`Peer`] per target, reached from the
/// node's listen address.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// The local address connections leave from.
    pub local: Option<IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer::new(target, node.addr.clone(), self.local)
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Rpc::Append(rpc), option.hard_ttl()).await {
            Ok(RpcReply::Append(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(&Rpc::Snapshot(rpc), option.hard_ttl()).await {
            Ok(RpcReply::Snapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Rpc::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcReply::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(rpc_error(e)),
        }
    }
}
