//! `isthmus bench ipam-kube --restart`: the real network-manager's restart on a Kubernetes-mode
//! IPAM state. Fills N mappings into `IpamStorage` objects of a memkube served over HTTPS (in
//! process, through the durable service, as `bench ipam-kube` does), then starts the `isthmus`
//! binary (`network-manager --standalone --ipam-store kubernetes`, the same `DurableIpam` over
//! the same `KubeStore` as the Kubernetes mode) on that state and reports the time from exec to
//! its first answered `MapEndpointIP` and its resident memory (VmRSS) once serving.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use isthmus_ipam_store::{DurableIpam, KubeStore};
use isthmus_kubetarget::ApiServer;

use super::ipam_kube::{KubeBenchOptions, config, fill, stored_objects};
use super::ipam_state::restart;
use crate::daemons::network_manager::IPAM_STORAGE_NAME;

const NAMESPACE: &str = "isthmus";
const PEERS: &str = "- {clusterID: bench-peer, podCIDR: 10.0.0.0/16, externalCIDR: 10.2.0.0/16}\n";

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct RestartReport {
    pub mappings: u32,
    pub fill: Duration,
    pub objects: usize,
    pub restart_to_first_answer: Duration,
    pub rss_kib: u64,
}

impl std::fmt::Display for RestartReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bench ipam-kube --restart: {} mappings in {} IpamStorage objects (filled in {:.2} s)",
            self.mappings,
            self.objects,
            self.fill.as_secs_f64()
        )?;
        writeln!(
            f,
            "  network-manager (kubernetes store over HTTPS): first answer {:.3} s after exec",
            self.restart_to_first_answer.as_secs_f64()
        )?;
        write!(
            f,
            "  its RSS once serving                 {:.1} MiB",
            self.rss_kib as f64 / 1024.0
        )
    }
}

/// Runs the benchmark with the `binary` given (normally the running one).
pub async fn run(options: KubeBenchOptions, binary: PathBuf) -> anyhow::Result<RestartReport> {
    let server = ApiServer::memkube("bench").await?;
    let kube = server.memkube_instance().context("a memkube")?;
    for crd in isthmus_api::all_crds() {
        kube.register_crd(&crd)?;
    }
    server.ensure_namespace(NAMESPACE).await?;
    kube.faults()
        .set_write_latency(Duration::from_secs_f64(options.write_latency_ms / 1e3));
    let store = KubeStore::new(server.admin(), NAMESPACE, IPAM_STORAGE_NAME);
    let ipam = DurableIpam::open(&config()?, store).await?;
    let (fill_time, _) = fill(&ipam, &options).await?;
    ipam.close().await;
    kube.faults().set_write_latency(Duration::ZERO);
    let objects = stored_objects(&server.admin()).await?.len();

    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.admin_kubeconfig()?)?;
    let peers = dir.path().join("peers.yaml");
    std::fs::write(&peers, PEERS)?;
    let mut server = Command::new(&binary);
    server
        .args(["network-manager", "--standalone"])
        .args([
            "--pod-cidr",
            "10.0.0.0/16",
            "--external-cidr",
            "10.128.0.0/12",
        ])
        .arg("--peers")
        .arg(&peers)
        .args(["--ipam-store", "kubernetes"])
        .args(["--namespace", NAMESPACE])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let (answered, rss) = restart(server).await?;
    Ok(RestartReport {
        mappings: options.mappings,
        fill: fill_time,
        objects,
        restart_to_first_answer: answered,
        rss_kib: rss,
    })
}
