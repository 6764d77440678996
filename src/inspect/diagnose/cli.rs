//! The command line of `isthmus diagnose`: which API (kubeconfig, a plain-HTTP `--server`, or a
//! lab cluster), which network namespace (this one, or a lab node's), the output format, and the
//! exit status (non-zero when any check fails). The binary's edge: errors are `anyhow` here.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use isthmus_dataplane::Netns;

use super::desired::{LabHints, Target};
use super::linux::LinuxObserver;
use crate::lab::state::{LabState, Phase, STATE_DIR};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A list grouped by check, for people.
    Text,
    /// The whole report as JSON, for scripts.
    Json,
}

/// Options of `isthmus diagnose`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Kubeconfig file (default: in-cluster configuration, $KUBECONFIG or ~/.kube/config).
    #[arg(long, conflicts_with_all = ["server", "lab"])]
    pub kubeconfig: Option<PathBuf>,
    /// URL of a plain-HTTP API without authentication (memkube, `kubectl proxy`).
    #[arg(long, value_name = "URL", conflicts_with = "lab")]
    pub server: Option<String>,
    /// A cluster of the running lab (`a`, `b`, …): its API from the lab's state file, and the
    /// kernel of its gateway node (or --node) inspected inside that node's namespace. Root.
    #[arg(long, value_name = "CLUSTER")]
    pub lab: Option<String>,
    /// With --lab: the node to inspect (`node0` is the gateway node, `node1` a worker).
    #[arg(long, requires = "lab")]
    pub node: Option<String>,
    /// With --lab: the lab's state directory.
    #[arg(long, default_value = STATE_DIR)]
    pub lab_dir: PathBuf,
    /// Namespace of the TunnelEndpoints and NatMappings.
    #[arg(long, default_value = "isthmus")]
    pub namespace: String,
    /// The gateway's WireGuard interface (default: the one the TunnelEndpoints' status names,
    /// else isthmus0; with --lab, the cluster's).
    #[arg(long)]
    pub interface: Option<String>,
    /// This node's name, to tell whether it is the gateway node (with --lab: the lab node's).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// The gateway's WireGuard port, when it should be checked against a known value.
    #[arg(long)]
    pub listen_port: Option<u16>,
    /// The route agents' overlay mode (the chart's `routeAgent.overlay.mode`).
    #[arg(long, default_value = "auto")]
    pub overlay_mode: isthmus_dataplane::routes::overlay::OverlayMode,
    /// The overlay's VXLAN network identifier (`routeAgent.overlay.vni`).
    #[arg(long, default_value_t = isthmus_dataplane::routes::overlay::DEFAULT_VNI)]
    pub overlay_vni: u32,
    /// The overlay's UDP port (`routeAgent.overlay.port`).
    #[arg(long, default_value_t = isthmus_dataplane::routes::overlay::DEFAULT_PORT)]
    pub overlay_port: u16,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The API client, the target and the namespace to observe, as the options ask.
async fn resolve(args: &Args) -> anyhow::Result<(kube::Client, Target, Netns)> {
    let mut target = Target {
        namespace: args.namespace.clone(),
        interface: args.interface.clone().unwrap_or_else(|| "isthmus0".into()),
        interface_given: args.interface.is_some(),
        node_name: args.node_name.clone(),
        listen_port: args.listen_port,
        api: String::new(),
        lab: None,
        overlay: isthmus_dataplane::routes::overlay::OverlaySettings {
            mode: args.overlay_mode,
            vni: args.overlay_vni,
            port: args.overlay_port,
        },
    };
    if let Some(cluster) = &args.lab {
        return lab(args, cluster, target).await;
    }
    let config = match (&args.server, &args.kubeconfig) {
        (Some(url), _) => kube::Config::new(url.parse().context("--server is not a URL")?),
        (None, Some(path)) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
        }
        (None, None) => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (use --kubeconfig, --server or --lab)")?,
    };
    target.api = config.cluster_url.to_string();
    Ok((kube::Client::try_from(config)?, target, Netns::Current))
}

async fn lab(
    args: &Args,
    cluster: &str,
    mut target: Target,
) -> anyhow::Result<(kube::Client, Target, Netns)> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--lab enters the lab node's network namespace: run it as root (sudo)");
    }
    let state = LabState::load(&args.lab_dir)?.with_context(|| {
        format!(
            "no lab is running; start one with `sudo {} lab up`",
            crate::lab::self_command()
        )
    })?;
    if state.phase != Phase::Ready || !state.alive() {
        bail!(
            "the lab is not ready (phase {}, pid {})",
            state.phase,
            state.pid
        );
    }
    let api = state
        .clusters
        .iter()
        .find(|c| c.id == cluster)
        .with_context(|| format!("the lab has no cluster {cluster}"))?;
    let file = state
        .topology_file
        .clone()
        .context("the lab recorded no topology")?;
    let topology = isthmus_lab::TopologyRecord::load(&file)?;
    let record = topology
        .clusters
        .iter()
        .find(|c| c.id == cluster)
        .with_context(|| format!("the lab topology has no cluster {cluster}"))?;
    let node = match &args.node {
        Some(name) => record
            .nodes
            .iter()
            .find(|n| &n.name == name)
            .with_context(|| format!("cluster {cluster} has no node {name}"))?,
        None => record.gateway(),
    };
    target.interface = args
        .interface
        .clone()
        .unwrap_or_else(|| record.wg_interface.clone());
    target.interface_given = true;
    target.node_name = Some(node.name.clone());
    target.api = format!("lab cluster {cluster} ({})", api.api_url);
    target.lab = Some(LabHints {
        command: crate::lab::self_command(),
        log: crate::lab::state::log_file(&args.lab_dir),
    });
    let client = crate::lab::report::admin_client(api).await?;
    Ok((client, target, node.netns()))
}

/// Runs `isthmus diagnose`: prints the report; fails when any check failed.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let (client, target, netns) = resolve(&args).await?;
    let observer = tokio::task::spawn_blocking(move || LinuxObserver::new(netns)).await??;
    let report = super::diagnose(client, &target, Arc::new(observer)).await?;
    match args.output {
        Output::Text => println!("{}", report.render_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if report.failed() {
        bail!(
            "{} of {} checks failed",
            report.summary.fail,
            report.checks.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        crate::cli::parse_flags(argv)
    }

    #[test]
    fn defaults_and_the_lab_options_parse() {
        let args = parse(&[]).unwrap();
        assert_eq!(
            (args.namespace.as_str(), args.output),
            ("isthmus", Output::Text)
        );
        assert_eq!(args.interface, None);
        let args = parse(&["--lab", "b", "--node", "node1", "-o", "json"]).unwrap();
        assert_eq!(args.lab.as_deref(), Some("b"));
        assert_eq!(args.node.as_deref(), Some("node1"));
        assert_eq!(args.output, Output::Json);
    }

    #[test]
    fn one_api_at_a_time_and_node_only_with_lab() {
        assert!(parse(&["--server", "http://127.0.0.1:1", "--lab", "b"]).is_err());
        assert!(parse(&["--kubeconfig", "/k", "--server", "http://x"]).is_err());
        assert!(parse(&["--node", "node1"]).is_err());
        assert!(parse(&["-o", "yaml"]).is_err());
    }
}
