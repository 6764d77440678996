//! `isthmus gateway`: the command line of the gateway daemon and its wiring: the validated
//! configuration, the WireGuard key from its Secret, the Linux datapath and ICMP prober in the
//! gateway's network namespace, and a clean stop on SIGTERM or ctrl-c.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args as ClapArgs;
use isthmus_api::ClusterId;
use isthmus_dataplane::tunnel::TunnelDriver;
use isthmus_dataplane::{GatewayHandle, LinuxGateway, Netns, NsRuntime, PrivateKey};
use isthmus_gateway::{GatewayConfig, GatewayTelemetry, IcmpProber, load_or_create_key};
use isthmus_telemetry::Events;

/// Command-line options.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// This cluster's ID.
    #[arg(long, env = "CLUSTER_ID")]
    pub cluster_id: ClusterId,
    /// Namespace of the TunnelEndpoints, NatMappings, the Lease and the key Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "isthmus")]
    pub namespace: String,
    /// WireGuard interface name (unique on the host).
    #[arg(long, default_value = "isthmus0")]
    pub interface: String,
    /// WireGuard UDP port.
    #[arg(long, default_value_t = 51820)]
    pub listen_port: u16,
    /// Tunnel MTU (underlay MTU - 80).
    #[arg(long, default_value_t = 1420)]
    pub mtu: u32,
    /// Persistent keepalive in seconds (0 = off).
    #[arg(long, default_value_t = 25)]
    pub keepalive: u16,
    /// The node this gateway runs on.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The node's address in the cluster: route agents' next hop.
    #[arg(long, env = "NODE_IP")]
    pub node_ip: Ipv4Addr,
    /// Secret holding the WireGuard key (`privateKey`, `publicKey`); created when missing.
    /// Only the gateway reads it.
    #[arg(long, default_value = "isthmus-gateway-key")]
    pub key_secret: String,
    /// ConfigMap where the gateway publishes its public key (data `publicKey`) for the
    /// network-manager, which may read that and no Secret.
    #[arg(long, default_value = "isthmus-gateway-pubkey")]
    pub public_key_config_map: String,
    /// Period of the peer probes and status refresh, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub probe_interval_ms: u64,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "isthmus-gateway")]
    pub lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: String,
    /// Lease duration in whole seconds: a standby takes over a holder silent for that long.
    #[arg(long, default_value_t = 3)]
    pub lease_duration_seconds: u64,
    /// How often the holder renews the lease, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub lease_renew_period_ms: u64,
    /// How long the holder may fail to renew before it stops programming, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub lease_renew_deadline_ms: u64,
    /// How often a standby tries to take the lease, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub lease_retry_period_ms: u64,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (host network: pick a free port).
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,
}

impl Args {
    /// The validated configuration.
    pub fn config(&self) -> anyhow::Result<GatewayConfig> {
        let mut config = GatewayConfig::new(
            self.cluster_id.clone(),
            &self.namespace,
            &self.interface,
            &self.node_name,
            self.node_ip,
            &self.identity,
        );
        config.listen_port = self.listen_port;
        config.mtu = self.mtu;
        config.keepalive = (self.keepalive != 0).then_some(self.keepalive);
        config.probe_interval = Duration::from_millis(self.probe_interval_ms);
        config.probe_timeout = config.probe_timeout.min(config.probe_interval);
        config.leader.lease_name = self.lease_name.clone();
        config.leader.lease_duration = Duration::from_secs(self.lease_duration_seconds);
        config.leader.renew_period = Duration::from_millis(self.lease_renew_period_ms);
        config.leader.renew_deadline = Duration::from_millis(self.lease_renew_deadline_ms);
        config.leader.retry_period = Duration::from_millis(self.lease_retry_period_ms);
        config.validate()?;
        if self.key_secret.parse::<ClusterId>().is_err() {
            anyhow::bail!(
                "--key-secret {:?} is not a valid Secret name",
                self.key_secret
            );
        }
        if self.public_key_config_map.parse::<ClusterId>().is_err() {
            anyhow::bail!(
                "--public-key-config-map {:?} is not a valid ConfigMap name",
                self.public_key_config_map
            );
        }
        Ok(config)
    }
}

/// Runs the daemon as the command line asks.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    // every request bounded, every watch restarted when its connection dies silently
    let client = isthmus_kubeclient::client()
        .await
        .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;
    // Served first: an API that refuses the key Secret shows as an unready, live process.
    let (telemetry, _server) = telemetry(&config, &client, Some(args.metrics_listen)).await?;
    let key_gate = telemetry.health.gate(
        "key",
        &format!(
            "reading or creating the key Secret {}, publishing ConfigMap {}",
            args.key_secret, args.public_key_config_map
        ),
    );
    let key = load_or_create_key(client.clone(), &config.namespace, &args.key_secret).await?;
    let ns = &config.namespace;
    isthmus_gateway::publish_public_key(client.clone(), ns, &args.public_key_config_map, &key)
        .await?;
    key_gate.open();
    let shutdown = crate::standalone::shutdown_signal();
    run_observed(config, telemetry, client, Netns::Current, key, shutdown).await
}

/// The gateway's telemetry, served on `listen` when given.
async fn telemetry(
    config: &GatewayConfig,
    client: &kube::Client,
    listen: Option<SocketAddr>,
) -> anyhow::Result<(GatewayTelemetry, Option<isthmus_telemetry::Server>)> {
    let identity = &config.leader.identity;
    let telemetry = GatewayTelemetry {
        events: Events::new(client.clone(), "isthmus-gateway", identity),
        ..GatewayTelemetry::default()
    };
    let server = match listen {
        Some(addr) => {
            let health = telemetry.health.clone();
            let server = crate::daemons::telemetry::serve(addr, "gateway", health, |r| {
                telemetry.register(r);
            });
            Some(server.await?)
        }
        None => None,
    };
    Ok((telemetry, server))
}

/// The gateway with the Linux datapath and ICMP prober in `netns` (the lab's entry), its
/// telemetry served on `metrics_listen` when given.
pub async fn run(
    config: GatewayConfig,
    client: kube::Client,
    netns: Netns,
    private_key: PrivateKey,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let (telemetry, _server) = telemetry(&config, &client, metrics_listen).await?;
    run_observed(config, telemetry, client, netns, private_key, shutdown).await
}

/// [`run`] with its telemetry already made (and served, if it is).
async fn run_observed(
    config: GatewayConfig,
    telemetry: GatewayTelemetry,
    client: kube::Client,
    netns: Netns,
    private_key: PrivateKey,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (gateway, prober) = tokio::task::spawn_blocking(move || {
        let ns = NsRuntime::new(netns, 2)?;
        let backend = isthmus_dataplane::tunnel::linux::detect_backend(&ns);
        let gateway = LinuxGateway::linux_on(ns.clone(), backend)?;
        Ok::<_, isthmus_dataplane::Error>((gateway, IcmpProber::new(ns)))
    })
    .await??;
    tracing::info!(backend = %gateway.tunnel.backend(), "datapath ready");
    isthmus_gateway::run_observed(
        config,
        telemetry,
        client,
        GatewayHandle::new(gateway),
        private_key,
        Arc::new(prober),
        shutdown,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> anyhow::Result<GatewayConfig> {
        let mut argv = vec![
            "gateway",
            "--cluster-id",
            "a",
            "--node-name",
            "node-1",
            "--node-ip",
            "172.16.0.1",
            "--identity",
            "gw-0",
        ];
        argv.extend(extra);
        Cli::try_parse_from(argv)?.args.config()
    }

    #[test]
    fn defaults_make_a_valid_configuration() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.interface, "isthmus0");
        assert_eq!((config.listen_port, config.mtu), (51820, 1420));
        assert_eq!(config.keepalive, Some(25));
        assert_eq!(config.probe_interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_are_refused_before_anything_starts() {
        assert!(parse(&["--mtu", "100"]).is_err());
        assert!(parse(&["--interface", "a-much-too-long-name"]).is_err());
        assert!(parse(&["--probe-interval-ms", "60000"]).is_err());
        assert!(parse(&["--key-secret", "Not_A_Name"]).is_err());
        assert!(parse(&["--node-ip", "0.0.0.0"]).is_err());
    }
}
