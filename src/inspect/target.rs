//! Which cluster an inspection command reads, and the client for it: the default kubeconfig
//! (`KUBECONFIG`, `~/.kube/config`, then in-cluster), `--kubeconfig`/`--context`, a plain-HTTP
//! `--server` (memkube, `kubectl proxy`), or `--lab CLUSTER` (its API URL from the running lab's
//! state file). Shared by the commands under `inspect`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::inspect::cause::describe;
use crate::lab::state::{LabState, Phase, STATE_DIR, state_file};

/// Flags selecting the cluster.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster account).
    #[arg(long, conflicts_with_all = ["server", "lab"])]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, conflicts_with_all = ["server", "lab"])]
    pub context: Option<String>,
    /// URL of a plain-HTTP Kubernetes API (memkube, `kubectl proxy`); no kubeconfig is read.
    #[arg(long, conflicts_with = "lab")]
    pub server: Option<String>,
    /// A cluster of the running lab (`a`, `b`, …): its API URL is read from the lab's state.
    #[arg(long)]
    pub lab: Option<String>,
    /// With --lab: the lab's state directory.
    #[arg(long, default_value = STATE_DIR)]
    pub lab_dir: PathBuf,
    /// Seconds to wait for the API to connect and to answer each request.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

impl TargetArgs {
    /// The default kubeconfig, no overrides.
    pub fn server(url: &str) -> Self {
        TargetArgs {
            kubeconfig: None,
            context: None,
            server: Some(url.to_owned()),
            lab: None,
            lab_dir: PathBuf::from(STATE_DIR),
            timeout: 10,
        }
    }
}

/// A client and the URL it talks to (for messages).
#[derive(Clone)]
pub struct Target {
    pub client: kube::Client,
    pub server: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "cannot load the kubeconfig{}: {}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        describe(error)
    )]
    Kubeconfig {
        path: Option<PathBuf>,
        error: KubeconfigError,
    },
    #[error(
        "no Kubernetes API configured: no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running \
         in a cluster; use --kubeconfig, --server or --lab ({})",
        describe(.0)
    )]
    NoConfig(kube::config::InferConfigError),
    #[error("{url:?} is not a usable API URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build a client for {server}: {}", describe(error))]
    Client { server: String, error: kube::Error },
    #[error("no lab is running (no {}); start one with `sudo {} lab up`", file.display(), crate::lab::self_command())]
    NoLab { file: PathBuf },
    #[error("cannot read the lab state {}: {message}", file.display())]
    LabState { file: PathBuf, message: String },
    #[error(
        "the lab in {} is not running (its process {pid} is gone); `sudo {} lab down` cleans up",
        file.display(),
        crate::lab::self_command()
    )]
    LabGone { file: PathBuf, pid: u32 },
    #[error("the lab is not ready ({phase}){}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    LabNotReady {
        phase: String,
        error: Option<String>,
    },
    #[error("the lab has no cluster {cluster:?} (it has {})", known.join(", "))]
    UnknownLabCluster { cluster: String, known: Vec<String> },
}

/// The admin kubeconfig of lab cluster `cluster`, from the lab's state and whether its daemon is
/// alive.
pub fn lab_kubeconfig(
    state: &LabState,
    alive: bool,
    cluster: &str,
    file: &Path,
) -> Result<PathBuf, TargetError> {
    if !alive {
        return Err(TargetError::LabGone {
            file: file.to_owned(),
            pid: state.pid,
        });
    }
    if state.phase != Phase::Ready {
        let phase = serde_json::to_value(state.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(TargetError::LabNotReady {
            phase,
            error: state.error.clone(),
        });
    }
    match state.clusters.iter().find(|c| c.id == cluster) {
        Some(c) => Ok(c.kubeconfig.clone()),
        None => Err(TargetError::UnknownLabCluster {
            cluster: cluster.to_owned(),
            known: state.clusters.iter().map(|c| c.id.clone()).collect(),
        }),
    }
}

fn lab_kubeconfig_of(dir: &Path, cluster: &str) -> Result<PathBuf, TargetError> {
    let file = state_file(dir);
    let state = LabState::load(dir)
        .map_err(|e| TargetError::LabState {
            file: file.clone(),
            message: format!("{e:#}"),
        })?
        .ok_or_else(|| TargetError::NoLab { file: file.clone() })?;
    lab_kubeconfig(&state, state.alive(), cluster, &file)
}

async fn config(args: &TargetArgs) -> Result<kube::Config, TargetError> {
    if let (None, Some(cluster)) = (&args.server, &args.lab) {
        let path = lab_kubeconfig_of(&args.lab_dir, cluster)?;
        let wrap = |error| TargetError::Kubeconfig {
            path: Some(path.clone()),
            error,
        };
        let kubeconfig = Kubeconfig::read_from(&path).map_err(wrap)?;
        return kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(wrap);
    }
    if let Some(url) = args.server.clone() {
        let config = url
            .parse()
            .map(kube::Config::new)
            .map_err(|e| TargetError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let uri = &config.cluster_url;
        if uri.scheme().is_none() || uri.host().is_none() {
            let reason = "expected scheme://host:port, e.g. http://127.0.0.1:8001".to_owned();
            return Err(TargetError::BadUrl { url, reason });
        }
        return Ok(config);
    }
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &args.kubeconfig {
        Some(path) => {
            let wrap = |error| TargetError::Kubeconfig {
                path: Some(path.clone()),
                error,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(wrap)
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|error| TargetError::Kubeconfig { path: None, error }),
        None => kube::Config::infer().await.map_err(TargetError::NoConfig),
    }
}

/// Builds the client the flags select, with their timeout on connecting and on every answer.
pub async fn connect(args: &TargetArgs) -> Result<Target, TargetError> {
    let mut config = config(args).await?;
    let timeout = Some(Duration::from_secs(args.timeout.max(1)));
    config.connect_timeout = timeout;
    config.read_timeout = timeout;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    let client = kube::Client::try_from(config).map_err(|error| TargetError::Client {
        server: server.clone(),
        error,
    })?;
    Ok(Target { client, server })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::state::ClusterState;

    fn state(phase: Phase) -> LabState {
        let json = serde_json::json!({
            "pid": 1, "phase": phase, "shape": "hub",
            "clusters": [
                {"id": "a", "api_url": "https://127.0.0.1:1001", "grpc": "127.0.0.1:2001",
                 "kubeconfig": "/run/isthmus-lab/clusters/a/admin.kubeconfig"},
                {"id": "b", "api_url": "https://127.0.0.1:1002", "grpc": "127.0.0.1:2002",
                 "kubeconfig": "/run/isthmus-lab/clusters/b/admin.kubeconfig"},
            ],
            "peerings": [], "reflections": [], "timings": {
                "topology": {"secs": 0, "nanos": 0}, "components": {"secs": 0, "nanos": 0},
                "peered": {"secs": 0, "nanos": 0}, "reflected": {"secs": 0, "nanos": 0}
            }
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_lab_cluster_resolves_to_its_admin_kubeconfig() {
        let f = Path::new("/run/isthmus-lab/lab.json");
        let s = state(Phase::Ready);
        assert_eq!(
            lab_kubeconfig(&s, true, "b", f).unwrap(),
            Path::new("/run/isthmus-lab/clusters/b/admin.kubeconfig")
        );
        let unknown = lab_kubeconfig(&s, true, "z", f).unwrap_err().to_string();
        assert_eq!(unknown, "the lab has no cluster \"z\" (it has a, b)");
        let gone = lab_kubeconfig(&s, false, "a", f).unwrap_err().to_string();
        assert!(gone.contains("process 1 is gone"), "{gone}");
        let starting = lab_kubeconfig(&state(Phase::Starting), true, "a", f).unwrap_err();
        assert_eq!(starting.to_string(), "the lab is not ready (starting)");
        let _: &[ClusterState] = &s.clusters;
    }

    #[test]
    fn no_state_file_means_no_lab() {
        let dir = tempfile::tempdir().unwrap();
        let err = lab_kubeconfig_of(dir.path(), "a").unwrap_err().to_string();
        assert!(err.starts_with("no lab is running"), "{err}");
    }

    #[tokio::test]
    async fn a_server_url_needs_a_scheme() {
        let mut args = TargetArgs::server("127.0.0.1:8001");
        let err = connect(&args).await.unwrap_err().to_string();
        assert!(err.contains("expected scheme://host:port"), "{err}");
        args.server = Some("http://127.0.0.1:8001".into());
        assert_eq!(
            connect(&args).await.unwrap().server,
            "http://127.0.0.1:8001"
        );
    }
}
