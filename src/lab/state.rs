//! The running lab as another process sees it: a JSON file under `/run/isthmus-lab` written by
//! the lab daemon (`isthmus lab run`) and read by `lab up` (to wait for it), `lab status` and
//! `lab down`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::lab::matrix::Matrix;
use crate::lab::plan::Shape;
use crate::lab::reflector::Reflection;

/// Where lab state lives.
pub const STATE_DIR: &str = "/run/isthmus-lab";

/// The daemon's state file.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

/// The daemon's log.
pub fn log_file(dir: &Path) -> PathBuf {
    dir.join("lab.log")
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
        })
    }
}

/// Where the daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Ready,
    Failed,
}

/// One cluster's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub id: String,
    /// The cluster's API, as this host reaches it.
    pub api_url: String,
    /// A kubeconfig with every right on that API (`kubectl --kubeconfig …`, `isthmus status`).
    #[serde(default)]
    pub kubeconfig: PathBuf,
    /// The gRPC IPAM.
    pub grpc: SocketAddr,
    /// Where each component serves `/metrics`, `/healthz` and `/readyz`: `network-manager`,
    /// `gateway`, `route-agent/<node>`.
    #[serde(default)]
    pub metrics: BTreeMap<String, SocketAddr>,
}

impl ClusterState {
    /// What another process needs to know of a running cluster.
    pub fn of(cluster: &crate::lab::cluster::ClusterRuntime) -> Self {
        ClusterState {
            id: cluster.site.id.to_string(),
            api_url: cluster.api_url(),
            kubeconfig: cluster.admin_kubeconfig.clone(),
            grpc: cluster.grpc,
            metrics: cluster.metrics.clone(),
        }
    }
}

/// Durations of the bring-up, each from the previous step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Namespaces, links, addresses and routes.
    pub topology: Duration,
    /// APIs and components started.
    pub components: Duration,
    /// `isthmus peer` of the first pair, start to end (both tunnels connected).
    #[serde(default)]
    pub peer_command: Option<Duration>,
    /// `isthmus peer` started → the first packet between the first pair through the tunnel.
    pub first_packet: Option<Duration>,
    /// ForeignClusters created → every TunnelEndpoint `connected`.
    pub peered: Duration,
    /// Every pod exposed along every path (MapEndpointIP calls).
    pub reflected: Duration,
    /// `lab up` started → every probe of the matrix answered.
    pub full_connectivity: Option<Duration>,
}

/// The daemon's published state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub pid: u32,
    pub phase: Phase,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub shape: Shape,
    /// The topology record (namespaces) of `isthmus-lab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_file: Option<PathBuf>,
    pub clusters: Vec<ClusterState>,
    pub peerings: Vec<(usize, usize)>,
    pub reflections: Vec<Reflection>,
    pub timings: Timings,
    /// The matrix measured at bring-up.
    #[serde(default)]
    pub matrix: Matrix,
}

impl LabState {
    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = state_file(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Reads the file; `None` when there is none.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = state_file(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a lab state file", path.display())
            })?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Whether the daemon process still runs (a killed daemon that nobody reaped, a zombie,
    /// does not).
    pub fn alive(&self) -> bool {
        isthmus_lab::process_alive(self.pid)
    }
}
