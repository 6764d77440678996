//! isthmus-gateway: the gateway controller.
//!
//! It watches the TunnelEndpoints and NatMappings of its namespace, plans the desired
//! [`isthmus_dataplane::GatewaySpec`] purely ([`plan`]), applies it through a
//! [`GatewayHandle`] (NatMapping-only changes through the NAT fast path), probes every peer
//! gateway's transit address ([`probe`]), and reports each TunnelEndpoint's connection in its
//! status ([`connection`], [`status`]). Only the holder of a Lease ([`leader`]) programs the
//! kernel and writes status. A holder that cannot renew within the renew deadline (the API is
//! down or failing) stops programming but keeps the datapath as it is, so established traffic
//! keeps flowing through an API outage, and resumes as soon as it renews; once another replica
//! holds the lease, it tears the datapath down and ends [`run`] with an error (crash-only: the
//! process restarts and campaigns again).

pub mod config;
pub mod connection;
mod controller;
pub mod error;
pub mod finalizer;
pub mod key_secret;
pub mod leader;
pub mod nat_table;
pub mod plan;
pub mod probe;
pub mod public_key;
pub mod status;
pub mod telemetry;
mod watch;

use std::future::Future;
use std::sync::Arc;

use isthmus_dataplane::firewall::FirewallDriver;
use isthmus_dataplane::routes::RouteDriver;
use isthmus_dataplane::tunnel::TunnelDriver;
use isthmus_dataplane::{GatewayHandle, PrivateKey};
use tokio::sync::{mpsc, watch as signal};
use tracing::Instrument;

pub use config::{ConfigError, ConnectionPolicy, GatewayConfig, LeaderConfig};
pub use error::{Error, Result};
pub use key_secret::load_or_create_key;
pub use probe::{FakeProber, IcmpProber, Prober};
pub use public_key::publish_public_key;
pub use telemetry::GatewayTelemetry;

/// Runs the gateway controller until `shutdown` resolves (→ `Ok`, after stopping the datapath
/// engine with [`GatewayHandle::shutdown`] and releasing the lease) or leadership is lost
/// (→ `Err`, after [`GatewayHandle::teardown`]). The configuration is validated first.
pub async fn run<T, F, R>(
    config: GatewayConfig,
    client: kube::Client,
    gateway: GatewayHandle<T, F, R>,
    private_key: PrivateKey,
    prober: Arc<dyn Prober>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    let telemetry = GatewayTelemetry::default();
    run_observed(
        config,
        telemetry,
        client,
        gateway,
        private_key,
        prober,
        shutdown,
    )
    .await
}

/// [`run`], recording metrics, health and Events into `telemetry`.
pub async fn run_observed<T, F, R>(
    config: GatewayConfig,
    telemetry: GatewayTelemetry,
    client: kube::Client,
    gateway: GatewayHandle<T, F, R>,
    private_key: PrivateKey,
    prober: Arc<dyn Prober>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    config.validate()?;
    let span = tracing::info_span!("gateway", cluster = %config.cluster_id);
    async move {
        let (stop_tx, stop_rx) = signal::channel(false);
        let _signal = AbortOnDrop(tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }));
        let parts = Parts {
            config,
            telemetry,
            client,
            gateway,
            private_key,
            prober,
        };
        lead(parts, stop_rx).await
    }
    .instrument(span)
    .await
}

/// A task that ends with its owner.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one run of the gateway is made of.
struct Parts<T, F, R> {
    config: GatewayConfig,
    telemetry: GatewayTelemetry,
    client: kube::Client,
    gateway: GatewayHandle<T, F, R>,
    private_key: PrivateKey,
    prober: Arc<dyn Prober>,
}

async fn lead<T, F, R>(parts: Parts<T, F, R>, stop: signal::Receiver<bool>) -> Result<()>
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    let Parts {
        config,
        telemetry,
        client,
        gateway,
        private_key,
        prober,
    } = parts;
    let lease_gate = telemetry
        .health
        .gate("lease", "standby: campaigning for the gateway lease");
    let mut elector =
        leader::Elector::new(client.clone(), &config.namespace, config.leader.clone());
    tracing::info!(identity = %config.leader.identity, lease = %config.leader.lease_name,
        "gateway campaigning for the lease");
    if !campaign(&mut elector, &gateway, &config.interface, &mut stop.clone()).await {
        tracing::info!("stopped before leading");
        return Ok(());
    }
    loop {
        tracing::info!(identity = %config.leader.identity, interface = %config.interface,
            "leading: programming the datapath");
        lease_gate.open();
        telemetry.datapath.set_leader(true);
        let (release_tx, release_rx) = signal::channel(false);
        // Aborted if this future is dropped: renewal stops without a release, as in a crash.
        let mut lost = AbortOnDrop(tokio::spawn(elector.hold(release_rx)));
        let (tx, rx) = mpsc::unbounded_channel();
        let watches = watch::Watches::start(&client, &config.namespace, tx);
        let mut controller = controller::Controller::new(
            config.clone(),
            client.clone(),
            gateway.clone(),
            private_key.clone(),
            prober.clone(),
            watches,
            telemetry.clone(),
        );
        let outcome = controller.run(rx, stop.clone(), &mut lost.0).await;
        drop(controller);
        telemetry.datapath.set_leader(false);
        match outcome {
            Ok(()) => {
                lease_gate.close("no longer leading");
                if let Err(err) = gateway.shutdown().await {
                    tracing::warn!(error = %err, "datapath shutdown incomplete");
                }
                let _ = release_tx.send(true);
                match (&mut lost.0).await {
                    Ok(Err(err)) => tracing::warn!(error = %err, "lease ended badly"),
                    Err(err) => tracing::warn!(error = %err, "lease task failed"),
                    Ok(Ok(())) => {}
                }
                tracing::info!("gateway stopped");
                return Ok(());
            }
            Err(Error::RenewalFailed(why)) => {
                lease_gate.close("the lease cannot be renewed: not programming the datapath");
                tracing::warn!(%why, "cannot renew the lease: not programming the datapath \
                    until it can; the datapath stays as it is");
                elector =
                    leader::Elector::new(client.clone(), &config.namespace, config.leader.clone());
                match suspended(&mut elector, &config.leader, &mut stop.clone()).await {
                    Suspension::Renewed => {
                        tracing::info!("the lease is renewed again");
                        continue;
                    }
                    Suspension::Stopped => {
                        if let Err(err) = gateway.shutdown().await {
                            tracing::warn!(error = %err, "datapath shutdown incomplete");
                        }
                        return Ok(());
                    }
                    Suspension::Taken => {
                        let err = Error::LeadershipLost("another replica holds the lease".into());
                        return Err(tear_down(&gateway, err).await);
                    }
                }
            }
            Err(err) => {
                lease_gate.close("no longer leading");
                return Err(tear_down(&gateway, err).await);
            }
        }
    }
}

/// Tries every `retry_period` until the lease is ours (→ `true`) or `stop` (→ `false`). The
/// first time it sees the lease held on another node, it removes whatever datapath an earlier
/// leader left on this node (a killed gateway restarting here as standby): that node leads now,
/// and a stale interface with the same key, routes and NAT table here would only mislead.
async fn campaign<T, F, R>(
    elector: &mut leader::Elector,
    gateway: &GatewayHandle<T, F, R>,
    interface: &str,
    stop: &mut signal::Receiver<bool>,
) -> bool
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    let cleanup = async |holder: leader::Holder| {
        let node = holder.node.as_deref().unwrap_or("?");
        match gateway.remove_leftovers(interface).await {
            Ok((removed_interface, routes)) => tracing::info!(holder = %holder.identity, %node,
                removed_interface, routes, "standby: the lease is held on another node; \
                removed the datapath an earlier leader left here"),
            Err(err) => tracing::warn!(error = %err, "standby: removing the datapath left on \
                this node failed; the next start tries again"),
        }
    };
    elector.campaign_with(stop, cleanup).await
}

/// How a suspension ended.
enum Suspension {
    /// Our lease renewed (nobody took it): lead again.
    Renewed,
    /// Asked to stop.
    Stopped,
    /// Another replica holds the lease.
    Taken,
}

/// Tries to renew every `retry_period` while the API fails; the datapath is left alone.
async fn suspended(
    elector: &mut leader::Elector,
    config: &LeaderConfig,
    stop: &mut signal::Receiver<bool>,
) -> Suspension {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period) => {}
            _ = leader::stopped(stop) => return Suspension::Stopped,
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => return Suspension::Renewed,
            Ok(false) => return Suspension::Taken,
            Err(err) => tracing::debug!(error = %err, "lease still not renewable"),
        }
    }
}

/// Removes the datapath after losing the lease; the error to end with.
async fn tear_down<T, F, R>(gateway: &GatewayHandle<T, F, R>, err: Error) -> Error
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    tracing::error!(error = %err, "no longer the leader: tearing the datapath down");
    if let Err(teardown) = gateway.teardown().await {
        tracing::warn!(error = %teardown, "teardown incomplete");
    }
    err
}
