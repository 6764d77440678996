//! What `lab up` and `lab status` print: the clusters and how to reach their APIs, the tunnels as
//! each cluster's TunnelEndpoints report them (read over HTTP, as kubectl would), the bring-up
//! timings and the connectivity matrix.

use std::fmt::Write as _;

use anyhow::Context as _;
use std::time::Duration;

use isthmus_api::TunnelEndpoint;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::lab::cluster::NAMESPACE;
use crate::lab::matrix::{Matrix, format_rtt};
use crate::lab::plan::{Shape, cluster_name};
use crate::lab::state::{ClusterState, LabState, Timings};

/// One TunnelEndpoint as a table row.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelRow {
    pub cluster: String,
    pub peer: String,
    pub state: String,
    pub latency: Option<String>,
    pub handshake_age_seconds: Option<i64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub local_pods_as: String,
    pub remote_pods_as: String,
    pub message: String,
}

/// One probe of the matrix as `lab status --json` prints it: clusters by name, the round-trip
/// time in milliseconds (`null` when no reply came).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeJson {
    pub from: String,
    pub from_pod: String,
    pub to: String,
    pub to_pod: String,
    pub via: Option<String>,
    pub address: std::net::Ipv4Addr,
    pub rtt_ms: Option<f64>,
}

/// `lab status --json`.
pub fn status_json(
    state: &LabState,
    tunnels: &[TunnelRow],
    matrix: &Matrix,
) -> serde_json::Result<String> {
    let probes: Vec<ProbeJson> = matrix
        .probes
        .iter()
        .map(|p| ProbeJson {
            from: cluster_name(p.from),
            from_pod: p.from_pod.clone(),
            to: cluster_name(p.to),
            to_pod: p.to_pod.clone(),
            via: p.via.map(cluster_name),
            address: p.address,
            rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "clusters": state.clusters,
        "tunnels": tunnels,
        "matrix": probes,
        "all_reachable": matrix.all_reachable(),
    }))
}

/// An admin client of a lab cluster's API, from the kubeconfig the lab wrote for it.
pub async fn admin_client(cluster: &ClusterState) -> anyhow::Result<kube::Client> {
    let path = &cluster.kubeconfig;
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("{}", path.display()))?;
    config.default_namespace = NAMESPACE.to_owned();
    config.read_timeout = Some(Duration::from_secs(5));
    Ok(kube::Client::try_from(config)?)
}

/// Every cluster's TunnelEndpoints, read through its HTTP API.
pub async fn fetch_tunnels(state: &LabState) -> anyhow::Result<Vec<TunnelRow>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut rows = Vec::new();
    for cluster in &state.clusters {
        let api: Api<TunnelEndpoint> = Api::namespaced(admin_client(cluster).await?, NAMESPACE);
        for tep in api.list(&ListParams::default()).await? {
            let status = tep.status.clone().unwrap_or_default();
            let c = &status.connection;
            rows.push(TunnelRow {
                cluster: cluster.id.clone(),
                peer: tep.spec.cluster_id.to_string(),
                state: serde_json::to_value(c.status)?
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                latency: c.latency.clone(),
                handshake_age_seconds: c.last_handshake.as_ref().map(|t| now - t.0.as_second()),
                rx_bytes: c.rx_bytes,
                tx_bytes: c.tx_bytes,
                local_pods_as: tep.spec.local_nat_pod_cidr.to_string(),
                remote_pods_as: tep.spec.remote_nat_pod_cidr.to_string(),
                message: c.message.clone(),
            });
        }
    }
    Ok(rows)
}

/// The clusters and their endpoints.
pub fn render_clusters(state: &LabState) -> String {
    let shape = match state.shape {
        Shape::Hub => "hub topology: b peers with every cluster",
        Shape::Mesh => "full mesh",
    };
    let mut out = format!(
        "isthmus lab: {} clusters, {shape}\n\n",
        state.clusters.len()
    );
    let _ = writeln!(
        out,
        "{:<8} {:<28} {:<16} METRICS nm / gateway",
        "CLUSTER", "API (kubectl --server URL)", "IPAM gRPC"
    );
    for c in &state.clusters {
        let port = |component: &str| c.metrics.get(component).map_or(0, |a| a.port());
        let _ = writeln!(
            out,
            "{:<8} {:<28} {:<16} :{} / :{}",
            c.id,
            c.api_url,
            c.grpc.to_string(),
            port("network-manager"),
            port("gateway")
        );
    }
    if let Some(c) = state.clusters.first() {
        let _ = writeln!(
            out,
            "\n  e.g. kubectl --server {} get tunnelendpoints,natmappings -n {NAMESPACE}",
            c.api_url
        );
        if let Some(gateway) = c.metrics.get("gateway") {
            let _ = writeln!(
                out,
                "       curl -s http://{gateway}/metrics | grep isthmus_tunnel   (/healthz, /readyz)"
            );
        }
    }
    out
}

/// The tunnels table.
pub fn render_tunnels(rows: &[TunnelRow]) -> String {
    let mut out = format!(
        "{:<8} {:<6} {:<11} {:<10} {:<10} {:>10} {:>10}  {:<15} {:<15}\n",
        "CLUSTER",
        "PEER",
        "STATE",
        "LATENCY",
        "HANDSHAKE",
        "RX",
        "TX",
        "LOCAL PODS AS",
        "REMOTE PODS AS"
    );
    for r in rows {
        let handshake = r
            .handshake_age_seconds
            .map_or("never".to_owned(), |s| format!("{s}s ago"));
        let _ = writeln!(
            out,
            "{:<8} {:<6} {:<11} {:<10} {:<10} {:>10} {:>10}  {:<15} {:<15}{}",
            r.cluster,
            r.peer,
            r.state,
            r.latency.as_deref().unwrap_or("-"),
            handshake,
            r.rx_bytes,
            r.tx_bytes,
            r.local_pods_as,
            r.remote_pods_as,
            if r.message.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.message)
            }
        );
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// The bring-up timings.
pub fn render_timings(t: &Timings) -> String {
    let opt = |d: Option<Duration>| d.map_or("-".to_owned(), ms);
    format!(
        "namespaces {} · clusters (API, chart, pods) {} · isthmus peer (first pair, both tunnels \
         connected) {} · first packet {} · all tunnels connected {} · pods exposed {} · lab up → \
         full connectivity {}\n",
        ms(t.topology),
        ms(t.components),
        opt(t.peer_command),
        opt(t.first_packet),
        ms(t.peered),
        ms(t.reflected),
        opt(t.full_connectivity)
    )
}

/// The connectivity section.
pub fn render_matrix(matrix: &Matrix, clusters: usize) -> String {
    let reached = matrix.probes.iter().filter(|p| p.rtt.is_some()).count();
    let mut out = format!(
        "Connectivity: {reached}/{} pod pairs answer (ICMP through the addresses MapEndpointIP handed out)\n\n",
        matrix.probes.len()
    );
    out.push_str(&matrix.render_summary(clusters));
    out.push('\n');
    out.push_str(&matrix.render_list());
    out
}

/// `0.42 ms` or `no reply` (re-exported for the CLI).
pub fn rtt(d: Option<Duration>) -> String {
    format_rtt(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::matrix::Probe;
    use crate::lab::state::{ClusterState, Phase};

    #[test]
    fn status_json_names_clusters_and_gives_milliseconds() {
        let state = LabState {
            pid: 1,
            phase: Phase::Ready,
            error: None,
            shape: Shape::Hub,
            topology_file: None,
            clusters: vec![ClusterState {
                id: "a".into(),
                api_url: "http://127.0.0.1:1".into(),
                kubeconfig: "/run/isthmus-lab/clusters/a/admin.kubeconfig".into(),
                grpc: "127.0.0.1:2".parse().unwrap(),
                metrics: Default::default(),
            }],
            peerings: vec![(0, 1)],
            reflections: Vec::new(),
            timings: Timings::default(),
            matrix: Matrix::default(),
        };
        let probe = |rtt| Probe {
            from: 0,
            from_pod: "pod0-0".into(),
            to: 2,
            to_pod: "pod1-0".into(),
            via: Some(1),
            address: "10.2.0.7".parse().unwrap(),
            rtt,
        };
        let matrix = Matrix {
            probes: vec![probe(Some(Duration::from_micros(1500))), probe(None)],
        };
        let text = status_json(&state, &[], &matrix).unwrap();
        assert!(!text.contains("secs") && !text.contains("nanos"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = &json["matrix"][0];
        assert_eq!(first["from"], "a");
        assert_eq!(first["to"], "c");
        assert_eq!(first["via"], "b");
        assert_eq!(first["rtt_ms"], 1.5);
        assert!(json["matrix"][1]["rtt_ms"].is_null());
        assert_eq!(json["all_reachable"], false);
        assert_eq!(json["clusters"][0]["id"], "a");
    }
}
