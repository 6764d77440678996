//! The lab's reflector: it plays the virtual kubelet. To expose a pod of one cluster to another it
//! calls `MapEndpointIP` over gRPC on the clusters along the path (see [`Path::map_calls`]) and
//! keeps the answers; to withdraw it, `UnmapEndpointIP` in reverse order. Like a virtual kubelet
//! it sends each cluster a ServiceAccount token minted for the IPAM's audience.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use tonic::transport::Channel;

use crate::grpc::client::{AuthedIpamClient, BearerToken};
use crate::grpc::pb::{MapRequest, UnmapRequest};
use crate::lab::plan::Path;

/// One `MapEndpointIP` call and its answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapStep {
    /// Cluster whose IPAM was called.
    pub caller: usize,
    /// The `clusterID` of the request: the cluster the endpoint is reflected into.
    pub peer: usize,
    /// The address mapped (the caller's view of the endpoint).
    pub ip: Ipv4Addr,
    /// The answer: how `peer` addresses the endpoint.
    pub answer: Ipv4Addr,
}

/// A pod exposed to a cluster, with the address that cluster dials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reflection {
    /// Cluster that dials the pod.
    pub from: usize,
    /// Cluster of the pod.
    pub to: usize,
    /// The hub in between, if any.
    pub via: Option<usize>,
    /// Pod name (unique in its cluster).
    pub pod: String,
    /// Its real address.
    pub pod_ip: Ipv4Addr,
    /// The calls made, in order.
    pub steps: Vec<MapStep>,
}

impl Reflection {
    /// The address `from` dials: the last answer.
    pub fn address(&self) -> Ipv4Addr {
        self.steps.last().map_or(self.pod_ip, |s| s.answer)
    }
}

/// gRPC clients of every cluster's IPAM, by cluster index.
#[derive(Debug, Clone)]
pub struct Reflector {
    names: Vec<String>,
    clients: Vec<AuthedIpamClient>,
}

impl Reflector {
    /// Lazily connecting clients for `endpoints[i]` = cluster `names[i]`'s gRPC address, each
    /// sending that cluster's token.
    pub fn new(
        names: Vec<String>,
        endpoints: &[(SocketAddr, BearerToken)],
    ) -> anyhow::Result<Self> {
        let clients = endpoints
            .iter()
            .map(|(addr, token)| {
                let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
                Ok(token.client(channel))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Reflector { names, clients })
    }

    async fn map(&self, caller: usize, peer: usize, ip: Ipv4Addr) -> anyhow::Result<Ipv4Addr> {
        let mut client = self.clients[caller].clone();
        let request = MapRequest {
            cluster_id: self.names[peer].clone(),
            ip: ip.to_string(),
        };
        let reply = client.map_endpoint_ip(request).await.with_context(|| {
            format!(
                "MapEndpointIP({}, {ip}) on cluster {}",
                self.names[peer], self.names[caller]
            )
        })?;
        let answer = reply.into_inner().ip;
        match answer.parse() {
            Ok(addr) => Ok(addr),
            Err(_) => bail!("MapEndpointIP answered {answer:?}, not an IPv4 address"),
        }
    }

    /// Exposes pod `pod` (address `pod_ip`, in `path.to`) to `path.from`.
    pub async fn reflect(
        &self,
        path: Path,
        pod: &str,
        pod_ip: Ipv4Addr,
    ) -> anyhow::Result<Reflection> {
        let mut steps = Vec::new();
        let mut ip = pod_ip;
        for (caller, peer) in path.map_calls() {
            let answer = self.map(caller, peer, ip).await?;
            steps.push(MapStep {
                caller,
                peer,
                ip,
                answer,
            });
            ip = answer;
        }
        Ok(Reflection {
            from: path.from,
            to: path.to,
            via: path.via,
            pod: pod.to_owned(),
            pod_ip,
            steps,
        })
    }

    /// Withdraws a reflection: `UnmapEndpointIP` for each step, last first.
    pub async fn unreflect(&self, reflection: &Reflection) -> anyhow::Result<()> {
        for step in reflection.steps.iter().rev() {
            let mut client = self.clients[step.caller].clone();
            let request = UnmapRequest {
                cluster_id: self.names[step.peer].clone(),
                ip: step.ip.to_string(),
            };
            client.unmap_endpoint_ip(request).await.with_context(|| {
                format!(
                    "UnmapEndpointIP({}, {}) on cluster {}",
                    self.names[step.peer], step.ip, self.names[step.caller]
                )
            })?;
        }
        Ok(())
    }
}
