//! The gRPC IPAM over a real socket, against the real binary: every method, every bad input
//! with its code, the health service and server reflection.

use crate::common;

use common::Server;
use isthmus::grpc::pb::{BelongsRequest, GetHomePodIpRequest, MapRequest, UnmapRequest};
use tonic::Code;

fn map(cluster: &str, ip: &str) -> MapRequest {
    MapRequest {
        cluster_id: cluster.into(),
        ip: ip.into(),
    }
}

#[tokio::test]
async fn every_method_answers_as_the_seed_describes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "10.2.0.0/16");
    let mut c = server.client().await;
    // A local pod, reflected to b which sees our pods as 10.7.0.0/16.
    let r = c
        .map_endpoint_ip(map("cluster-b", "10.0.3.4"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.ip, "10.7.3.4");
    // A pod of another cluster: an ExternalCIDR address, in each peer's view of it.
    let rb = c
        .map_endpoint_ip(map("cluster-b", "10.80.1.1"))
        .await
        .unwrap()
        .into_inner();
    let rc = c
        .map_endpoint_ip(map("cluster-c", "10.80.1.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rb.ip, "10.2.0.2");
    assert_eq!(
        rc.ip, "172.16.0.2",
        "same address, in c's view of our ExternalCIDR"
    );
    let un = UnmapRequest {
        cluster_id: "cluster-b".into(),
        ip: "10.80.1.1".into(),
    };
    c.unmap_endpoint_ip(un).await.unwrap();
    // b's Pod CIDR collided with ours: we address b's pods through 10.3.0.0/16.
    let home = GetHomePodIpRequest {
        cluster_id: "cluster-b".into(),
        ip: "10.0.9.9".into(),
    };
    assert_eq!(
        c.get_home_pod_ip(home).await.unwrap().into_inner().home_ip,
        "10.3.9.9"
    );
    let b = BelongsRequest {
        cluster_id: String::new(),
        ip: "10.0.200.1".into(),
    };
    assert!(c.belongs_to_pod_cidr(b).await.unwrap().into_inner().belongs);
    let legacy = BelongsRequest {
        cluster_id: "10.1.0.1".into(),
        ip: String::new(),
    };
    assert!(
        !c.belongs_to_pod_cidr(legacy)
            .await
            .unwrap()
            .into_inner()
            .belongs
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let peers = "- {clusterID: cluster-b, podCIDR: 10.0.0.0/16, externalCIDR: 10.2.0.0/16}\n";
    let server = Server::start_with(dir.path(), "192.168.50.0/30", peers);
    let mut c = server.client().await;
    let cases = [
        (map("", "10.80.1.1"), Code::InvalidArgument),
        (map("Not_A_Cluster", "10.80.1.1"), Code::InvalidArgument),
        (map("cluster-b", "not-an-ip"), Code::InvalidArgument),
        (map("cluster-b", ""), Code::InvalidArgument),
        (map("cluster-b", "fd00::1"), Code::InvalidArgument),
        (map("cluster-b", "127.0.0.1"), Code::InvalidArgument),
        (map("cluster-zz", "10.80.1.1"), Code::NotFound),
    ];
    for (req, code) in cases {
        let err = c.map_endpoint_ip(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {}", err.message());
        assert!(!err.message().is_empty());
    }
    // A /30 ExternalCIDR has one allocatable address.
    c.map_endpoint_ip(map("cluster-b", "10.80.1.1"))
        .await
        .unwrap();
    let err = c
        .map_endpoint_ip(map("cluster-b", "10.80.1.2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    let un = UnmapRequest {
        cluster_id: "cluster-zz".into(),
        ip: "10.80.1.1".into(),
    };
    assert_eq!(
        c.unmap_endpoint_ip(un).await.unwrap_err().code(),
        Code::NotFound
    );
    let home = GetHomePodIpRequest {
        cluster_id: "cluster-b".into(),
        ip: "10.9.0.1".into(),
    };
    assert_eq!(
        c.get_home_pod_ip(home).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Unmapping frees the address; then the next endpoint fits.
    let un = UnmapRequest {
        cluster_id: "cluster-b".into(),
        ip: "10.80.1.1".into(),
    };
    c.unmap_endpoint_ip(un).await.unwrap();
    c.map_endpoint_ip(map("cluster-b", "10.80.1.2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "10.2.0.0/16");
    let url = format!("http://{}", server.addr);
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "ipam"] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(req).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"ipam"), "{names:?}");
}

/// Every file under `dir` with its bytes, in path order.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            match p.is_dir() {
                true => todo.push(p),
                false => out.push((p.clone(), std::fs::read(&p).unwrap())),
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn addresses_that_must_never_be_dnat_targets_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let peers = "- {clusterID: cluster-b, podCIDR: 10.0.0.0/16, externalCIDR: 10.2.0.0/16}\n";
    let reserved = ["--reserved", "172.18.0.0/16"];
    let server = Server::start_with_args(dir.path(), "192.168.50.0/30", peers, &reserved);
    let mut c = server.client().await;
    let before = files(&server.state_dir);
    assert!(!before.is_empty(), "the IPAM wrote its state at start");
    let cases = [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("10.1.0.10", "Service CIDR 10.1.0.0/16"),
        ("192.168.50.2", "ExternalCIDR 192.168.50.0/30"),
        ("172.18.0.5", "reserved range 172.18.0.0/16"),
    ];
    for (ip, class) in cases {
        let err = c.map_endpoint_ip(map("cluster-b", ip)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{ip}: {}", err.message());
        assert!(err.message().contains(class), "{ip}: {}", err.message());
        assert!(err.message().contains(ip), "{ip}: {}", err.message());
    }
    assert_eq!(files(&server.state_dir), before, "a refusal wrote nothing");
    // A pod of ours is still translated, and another cluster's pod gets the one address of
    // the /30 ExternalCIDR: no refused request took it.
    let pod = c
        .map_endpoint_ip(map("cluster-b", "10.0.3.4"))
        .await
        .unwrap();
    assert!(pod.into_inner().ip.ends_with(".3.4"));
    let other = c
        .map_endpoint_ip(map("cluster-b", "10.80.1.1"))
        .await
        .unwrap();
    assert_eq!(other.into_inner().ip, "192.168.50.2");
}
