//! `isthmus route-agent`: the command line of the route agent daemon and its wiring: the
//! configuration validated first, then the Kubernetes client, then the Linux route and NAT
//! exemption (`nft`) drivers on the node's network namespace, then [`isthmus_route_agent::run`]
//! until SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use isthmus_dataplane::node_nat::nft::NftNodeNat;
use isthmus_dataplane::routes::NODE_ROUTE_PROTOCOL;
use isthmus_dataplane::routes::linux::NetlinkRoutes;
use isthmus_dataplane::routes::overlay::{self, OverlayMode, OverlaySettings};
use isthmus_dataplane::{Netns, NsRuntime};
use isthmus_route_agent::{RouteAgentConfig, RouteAgentTelemetry};

/// Command-line options.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// This node's name, as Kubernetes knows it (the gateway node installs no routes).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Namespace of the TunnelEndpoints.
    #[arg(long, default_value = "isthmus")]
    pub namespace: String,
    /// How often routes are re-synced without a change (repairs outside edits): `30s`, `500ms`,
    /// `5m`, or plain seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (host network: pick a free port).
    #[arg(long, default_value = "0.0.0.0:9092")]
    pub metrics_listen: SocketAddr,
    /// When to reach the gateway node over the VXLAN overlay: `auto` (when it is not on-link,
    /// i.e. the kernel routes to it through a router), `always`, or `never` (direct next hop).
    #[arg(long, default_value = "auto")]
    pub overlay: OverlayMode,
    /// VXLAN network identifier of the overlay (the same on every node of the cluster).
    #[arg(long, default_value_t = overlay::DEFAULT_VNI)]
    pub overlay_vni: u32,
    /// UDP port of the overlay (open it between nodes and the gateway node).
    #[arg(long, default_value_t = overlay::DEFAULT_PORT)]
    pub overlay_port: u16,
}

impl Args {
    /// The validated configuration.
    pub fn config(&self) -> anyhow::Result<RouteAgentConfig> {
        let mut config = RouteAgentConfig::new(&self.node_name, &self.namespace);
        config.resync = self.resync;
        config.overlay = OverlaySettings {
            mode: self.overlay,
            vni: self.overlay_vni,
            port: self.overlay_port,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs the daemon as the command line asks: routes of the current network namespace.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    // every request bounded, every watch restarted when its connection dies silently
    let client = isthmus_kubeclient::client()
        .await
        .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;
    run(
        config,
        client,
        Netns::Current,
        Some(args.metrics_listen),
        crate::standalone::shutdown_signal(),
    )
    .await
}

/// The route agent of one node whose routes live in `netns` (the lab passes a node's
/// namespace), until `shutdown` resolves. Routes and the NAT exemption table stay in place when it
/// stops.
pub async fn run(
    config: RouteAgentConfig,
    client: kube::Client,
    netns: Netns,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let telemetry = RouteAgentTelemetry::default();
    let _server = match metrics_listen {
        Some(addr) => {
            let health = telemetry.health.clone();
            let server = crate::daemons::telemetry::serve(addr, "route-agent", health, |r| {
                telemetry.register(r);
            });
            Some(server.await?)
        }
        None => None,
    };
    let label = netns.label().to_owned();
    // Opening the netlink connection blocks (it runs on a helper runtime inside the namespace).
    let (driver, nat) = tokio::task::spawn_blocking(move || {
        let ns = NsRuntime::new(netns, 1)?;
        let nat = NftNodeNat::new(ns.clone());
        NetlinkRoutes::with_protocol(ns, NODE_ROUTE_PROTOCOL).map(|routes| (routes, nat))
    })
    .await
    .context("route driver setup panicked")?
    .with_context(|| format!("cannot open the route driver in network namespace {label}"))?;
    isthmus_route_agent::run_observed(config, telemetry, client, driver, nat, shutdown).await?;
    Ok(())
}

/// `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds; never zero.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration (e.g. 30s, 500ms, 5m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{raw:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err(format!("{raw:?}: must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "0s", "s", "3d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
