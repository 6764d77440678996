//! [`IpamGrpc`]: the `ipam` gRPC service over a [`DurableIpam`], and [`serve`], which runs it
//! with the standard health service and server reflection until a shutdown signal.
//!
//! With an [`Authenticator`] (Kubernetes mode), every `ipam` call is checked first: a refused
//! caller gets its code (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNAVAILABLE`) and the IPAM
//! never sees the request. Health and reflection stay open: they change nothing and tell
//! nothing the proto file does not. Requests are then validated (an empty or malformed cluster
//! ID, an unparsable or IPv6 address are `INVALID_ARGUMENT`) before the IPAM sees them. Every
//! call is counted and timed per method and status code ([`isthmus_telemetry::metrics::Grpc`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use isthmus_ipam::ClusterId;
use isthmus_ipam_store::{DurableIpam, StoreHealth};
use isthmus_telemetry::metrics::Grpc;
use tonic::{Code, Request, Response, Status};

use super::auth::Authenticator;
use super::pb::ipam_server::{Ipam, IpamServer};
use super::pb::{
    BelongsRequest, BelongsResponse, GetHomePodIpRequest, GetHomePodIpResponse, MapRequest,
    MapResponse, UnmapRequest, UnmapResponse,
};
use super::{FILE_DESCRIPTOR_SET, auth_status, to_status};

/// The gRPC face of the IPAM.
#[derive(Debug, Clone)]
pub struct IpamGrpc {
    ipam: DurableIpam,
    metrics: Grpc,
    /// Who may call (none: anyone, the standalone mode on loopback).
    auth: Option<Authenticator>,
}

impl IpamGrpc {
    pub fn new(ipam: DurableIpam, metrics: Grpc, auth: Option<Authenticator>) -> Self {
        IpamGrpc {
            ipam,
            metrics,
            auth,
        }
    }

    /// Refuses the call unless its caller may make it.
    async fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        match auth.check(req.metadata()).await {
            Ok(caller) => {
                tracing::trace!(%caller, "gRPC caller admitted");
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "gRPC caller refused");
                Err(auth_status(&e))
            }
        }
    }

    /// Counts and times one call of `method` that started at `started`.
    fn record<T>(&self, method: &'static str, started: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics
            .record(method, code_name(code), started.elapsed());
    }
}

/// The canonical name of a gRPC status code, as metric label.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn cluster_id(raw: &str) -> Result<ClusterId, Status> {
    if raw.is_empty() {
        return Err(Status::invalid_argument("clusterID is empty"));
    }
    raw.parse()
        .map_err(|e| Status::invalid_argument(format!("clusterID: {e}")))
}

fn ipv4(raw: &str) -> Result<Ipv4Addr, Status> {
    match raw.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(Status::invalid_argument(format!(
            "ip {raw:?} is IPv6; isthmus supports IPv4 only"
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "ip {raw:?} is not an IP address"
        ))),
    }
}

#[tonic::async_trait]
impl Ipam for IpamGrpc {
    async fn map_endpoint_ip(
        &self,
        req: Request<MapRequest>,
    ) -> Result<Response<MapResponse>, Status> {
        let started = Instant::now();
        let result = self.map(req).await;
        self.record("MapEndpointIP", started, &result);
        result
    }

    async fn unmap_endpoint_ip(
        &self,
        req: Request<UnmapRequest>,
    ) -> Result<Response<UnmapResponse>, Status> {
        let started = Instant::now();
        let result = self.unmap(req).await;
        self.record("UnmapEndpointIP", started, &result);
        result
    }

    async fn get_home_pod_ip(
        &self,
        req: Request<GetHomePodIpRequest>,
    ) -> Result<Response<GetHomePodIpResponse>, Status> {
        let started = Instant::now();
        let result = self.home(req).await;
        self.record("GetHomePodIP", started, &result);
        result
    }

    async fn belongs_to_pod_cidr(
        &self,
        req: Request<BelongsRequest>,
    ) -> Result<Response<BelongsResponse>, Status> {
        let started = Instant::now();
        let result = match self.admit(&req).await {
            Ok(()) => self.belongs(req),
            Err(status) => Err(status),
        };
        self.record("BelongsToPodCIDR", started, &result);
        result
    }
}

impl IpamGrpc {
    async fn map(&self, req: Request<MapRequest>) -> Result<Response<MapResponse>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        let (cluster, ip) = (cluster_id(&req.cluster_id)?, ipv4(&req.ip)?);
        let reply = self
            .ipam
            .map_endpoint_ip(&cluster, ip)
            .await
            .map_err(|e| to_status(&e))?;
        if let Some((new_ip, endpoint)) = reply.nat_entry {
            tracing::debug!(peer = %cluster, %new_ip, %endpoint, "NAT mapping entry active");
        }
        Ok(Response::new(MapResponse {
            ip: reply.new_ip.to_string(),
        }))
    }

    async fn unmap(&self, req: Request<UnmapRequest>) -> Result<Response<UnmapResponse>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        let (cluster, ip) = (cluster_id(&req.cluster_id)?, ipv4(&req.ip)?);
        let reply = self
            .ipam
            .unmap_endpoint_ip(&cluster, ip)
            .await
            .map_err(|e| to_status(&e))?;
        if let Some(new_ip) = reply.removed_new_ip {
            tracing::debug!(peer = %cluster, %new_ip, endpoint = %ip, "NAT mapping entry removed");
        }
        Ok(Response::new(UnmapResponse {}))
    }

    async fn home(
        &self,
        req: Request<GetHomePodIpRequest>,
    ) -> Result<Response<GetHomePodIpResponse>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        let (cluster, ip) = (cluster_id(&req.cluster_id)?, ipv4(&req.ip)?);
        let home = self
            .ipam
            .home_pod_ip(&cluster, ip)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(GetHomePodIpResponse {
            home_ip: home.to_string(),
        }))
    }

    fn belongs(&self, req: Request<BelongsRequest>) -> Result<Response<BelongsResponse>, Status> {
        let req = req.into_inner();
        // Older reflectors sent the address as field 1; accept it when field 2 is empty.
        let raw = if req.ip.is_empty() {
            &req.cluster_id
        } else {
            &req.ip
        };
        let belongs = self
            .ipam
            .belongs_to_pod_cidr(ipv4(raw)?)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(BelongsResponse { belongs }))
    }
}

/// Serves the IPAM (its callers checked by `auth`, if given), gRPC health (`""` and `"ipam"`:
/// SERVING while the store can write, NOT_SERVING while it retries or failed) and reflection
/// (both open to anyone) on `listener` until `shutdown` completes.
pub async fn serve(
    ipam: DurableIpam,
    metrics: Grpc,
    auth: Option<Authenticator>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let follower = tokio::spawn(follow_store(ipam.watch_health(), health));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| tracing::error!("reflection: {e}"))
        .ok();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| tracing::error!("reflection: {e}"))
        .ok();
    let incoming = accepted(listener);
    let served = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(IpamServer::new(IpamGrpc::new(ipam, metrics, auth)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    follower.abort();
    served
}

/// The connections `listener` accepts, each with `TCP_NODELAY`. The builder's `tcp_nodelay`
/// applies only to listeners tonic binds itself; without it, Nagle's algorithm held a small answer
/// back until the client acknowledged the one before, which its delayed ACK does after 40 ms
/// (B1's slowest requests took 41-51 ms).
fn accepted(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Keeps the health of `""` and `"ipam"` equal to the store's: `SERVING` while changes can be
/// made durable, `NOT_SERVING` while the store retries or after it failed.
async fn follow_store(
    mut store: tokio::sync::watch::Receiver<StoreHealth>,
    health: tonic_health::server::HealthReporter,
) {
    loop {
        let status = match &*store.borrow_and_update() {
            StoreHealth::Serving => tonic_health::ServingStatus::Serving,
            StoreHealth::Degraded(_) | StoreHealth::Failed(_) => {
                tonic_health::ServingStatus::NotServing
            }
        };
        health.set_service_status("", status).await;
        health
            .set_service_status(
                <IpamServer<IpamGrpc> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        if store.changed().await.is_err() {
            return;
        }
    }
}

/// Binds `addr`, failing with a message that names the address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::accepted;

    #[tokio::test]
    async fn accepted_connections_send_small_answers_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = accepted(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = incoming.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "TCP_NODELAY is not set");
    }
}
