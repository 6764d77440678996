//! The agent loop: the TunnelEndpoint watch kept as a map, the plan recomputed on every change,
//! and syncs (on change, every `resync`, and after failures with backoff) through the drivers on
//! tokio's blocking pool: the NAT exemption table first (so no routed packet is masqueraded
//! before it exists), then the overlay link when one is wanted, then the routes, then the
//! overlay link's removal when none is wanted.
//!
//! Before each sync the agent asks the kernel how it reaches every gateway address (on-link or
//! through a router) and replans with the answer: that is how a node chooses the overlay, and
//! how it follows the gateway to another node (a new `gatewayIP` is looked up at once).
//!
//! No sync happens before the first complete list of TunnelEndpoints: syncing an empty or partial
//! view at start would remove the routes of peerings that are still there.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use isthmus_api::TunnelEndpoint;
use isthmus_dataplane::node_nat::{NodeNatApplied, NodeNatDriver, NodeNatPlan};
use isthmus_dataplane::routes::overlay::{OVERLAY_LINK, Reach};
use isthmus_dataplane::routes::{self, NextHop, Route, RouteDiff, RouteDriver, VxlanSpec};
use kube::Api;
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher as watch};
use tokio::time::Instant;

use crate::config::RouteAgentConfig;
use crate::plan::{OverlayInput, RoutePlan, plan_with};
use crate::telemetry::RouteAgentTelemetry;
use crate::{Error, Result};
use isthmus_telemetry::{Gate, Heartbeat};

/// The TunnelEndpoints as the watch reported them.
#[derive(Debug, Default)]
struct Endpoints {
    current: BTreeMap<String, TunnelEndpoint>,
    /// Objects of a (re)list in progress, swapped in at its end.
    relist: Option<BTreeMap<String, TunnelEndpoint>>,
    /// The first complete list has arrived.
    listed: bool,
}

impl Endpoints {
    /// Applies one watch event; true when `current` may have changed.
    fn apply(&mut self, event: Event<TunnelEndpoint>) -> bool {
        let name = |t: &TunnelEndpoint| t.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(t) => {
                self.relist.get_or_insert_default().insert(name(&t), t);
                false
            }
            Event::InitDone => {
                self.current = self.relist.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(t) => {
                self.current.insert(name(&t), t);
                true
            }
            Event::Delete(t) => self.current.remove(&name(&t)).is_some(),
        }
    }
}

/// The loop's state between events.
struct Agent<R, N> {
    config: RouteAgentConfig,
    driver: Arc<Mutex<R>>,
    nat: Arc<Mutex<N>>,
    endpoints: Endpoints,
    /// The plan of the last successful sync; `None` before the first one (what is installed is
    /// unknown then, so the first complete list always leads to a sync).
    applied: Option<RoutePlan>,
    /// The plan to sync next.
    wanted: RoutePlan,
    /// Failed syncs in a row.
    failures: u32,
    /// How the kernel reached each gateway address at the last look.
    reach: BTreeMap<Ipv4Addr, Reach>,
    telemetry: RouteAgentTelemetry,
    /// Readiness: the last sync succeeded.
    gate: Gate,
}

pub(crate) async fn run<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
    config: RouteAgentConfig,
    telemetry: RouteAgentTelemetry,
    client: kube::Client,
    (driver, nat): (R, N),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let api: Api<TunnelEndpoint> = Api::namespaced(client, &config.namespace);
    tracing::info!(namespace = %config.namespace, resync = ?config.resync, "route agent starting");
    let mut events =
        std::pin::pin!(watch(api, isthmus_kubeclient::watcher_config()).default_backoff());
    let mut shutdown = std::pin::pin!(shutdown);
    let gate = telemetry
        .health
        .gate("routes", "waiting for the first list of TunnelEndpoints");
    // The loop wakes at least every `resync`; a wedged driver call stops the beats.
    let heartbeat: Heartbeat = telemetry
        .health
        .heartbeat("agent", config.resync * 3 + Duration::from_secs(30));
    let mut agent = Agent {
        config,
        driver: Arc::new(Mutex::new(driver)),
        nat: Arc::new(Mutex::new(nat)),
        endpoints: Endpoints::default(),
        applied: None,
        wanted: RoutePlan::default(),
        failures: 0,
        reach: BTreeMap::new(),
        telemetry,
        gate,
    };
    let mut next_sync: Option<Instant> = None;
    loop {
        let wake = next_sync.unwrap_or_else(|| Instant::now() + agent.config.resync);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            event = events.next() => match event {
                None => return Err(Error::WatchEnded),
                Some(Err(e)) => tracing::warn!(error = %e, "TunnelEndpoint watch failed; retrying"),
                Some(Ok(event)) => {
                    if agent.endpoints.apply(event) && agent.endpoints.listed && agent.replan() {
                        next_sync = Some(Instant::now());
                    }
                }
            },
            () = tokio::time::sleep_until(wake) => {
                if next_sync.is_some() {
                    next_sync = Some(Instant::now() + agent.sync().await);
                }
                heartbeat.beat();
            }
        }
    }
    heartbeat.retire();
    tracing::info!("route agent stopped; routes and NAT exemption left in place");
    Ok(())
}

impl<R: RouteDriver + 'static, N: NodeNatDriver + 'static> Agent<R, N> {
    /// Recomputes the plan; true when its routes differ from the last synced ones.
    fn replan(&mut self) -> bool {
        let input = OverlayInput {
            settings: self.config.overlay,
            reach: self.reach.clone(),
        };
        let next = plan_with(
            &self.config.node_name,
            self.endpoints.current.values(),
            &input,
        );
        if next.skipped != self.wanted.skipped {
            for (tep, why) in &next.skipped {
                tracing::debug!(tunnel_endpoint = %tep, reason = ?why, "no route for this TunnelEndpoint");
            }
        }
        self.wanted = next;
        match &self.applied {
            Some(applied) => {
                self.wanted.routes() != applied.routes()
                    || self.wanted.nat != applied.nat
                    || self.wanted.overlay != applied.overlay
                    || self.failures > 0
            }
            None => true,
        }
    }

    /// Looks up how the kernel reaches every gateway address of the plan; replans when that
    /// changed (a gateway moved, a route to it changed).
    async fn observe(&mut self) -> Result<()> {
        let (driver, gateways) = (self.driver.clone(), self.wanted.gateways.clone());
        let job = tokio::task::spawn_blocking(move || -> Result<BTreeMap<Ipv4Addr, Reach>> {
            let mut driver = driver.lock().unwrap_or_else(PoisonError::into_inner);
            let mut out = BTreeMap::new();
            for gw in gateways {
                out.insert(gw, driver.reach(gw)?);
            }
            Ok(out)
        });
        let reach = job.await.map_err(|e| Error::DriverTask(e.to_string()))??;
        if reach != self.reach {
            for (gw, r) in &reach {
                let on_link = r.gateway.is_none();
                tracing::info!(gateway = %gw, on_link, router = ?r.gateway, dev = ?r.dev, "gateway node reach");
            }
            self.reach = reach;
            self.replan();
        }
        Ok(())
    }

    /// Syncs the wanted routes; returns the delay until the next sync (resync, or backoff).
    async fn sync(&mut self) -> Duration {
        let started = std::time::Instant::now();
        let result = match self.observe().await {
            Ok(()) => {
                let (nat, desired) = (self.wanted.nat.clone(), self.wanted.routes());
                let overlay = self.wanted.overlay.clone();
                sync_all(&self.driver, &self.nat, nat, overlay, desired).await
            }
            Err(e) => Err(e),
        };
        let count = self.wanted.routes().len();
        self.telemetry
            .reconciles
            .record("routes", result.is_ok(), started.elapsed());
        match result {
            Ok((nat, diff)) => {
                self.report_nat(nat);
                self.report_overlay();
                self.report(&diff);
                self.telemetry
                    .routes
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                self.gate.open();
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "routes synced again");
                }
                self.failures = 0;
                self.applied = Some(self.wanted.clone());
                self.config.resync
            }
            Err(e) => {
                let delay = self.config.backoff.delay(self.failures);
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?delay, failures = self.failures, "route sync failed");
                self.gate.close(&format!("route sync failed: {e}"));
                delay
            }
        }
    }

    /// Logs a change of the NAT exemption table.
    fn report_nat(&self, outcome: NodeNatApplied) {
        let nat = &self.wanted.nat;
        let previous = self.applied.as_ref().map(|a| &a.nat);
        match outcome {
            NodeNatApplied::Unchanged => {}
            NodeNatApplied::Removed if previous.is_none_or(NodeNatPlan::is_empty) => {}
            NodeNatApplied::Removed => {
                tracing::info!(table = %nat.table, "no peer routed: NAT exemption table removed");
            }
            NodeNatApplied::Replaced => tracing::info!(
                table = %nat.table,
                sources = ?nat.sources,
                destinations = ?nat.destinations,
                repaired = previous == Some(nat),
                "NAT exemption table applied"
            ),
        }
    }

    /// Logs a change of the overlay link.
    fn report_overlay(&self) {
        let previous = self.applied.as_ref().and_then(|a| a.overlay.as_ref());
        let wanted = self.wanted.overlay.as_ref();
        if previous == wanted {
            return;
        }
        match wanted {
            Some(link) => tracing::info!(
                link = %link.name,
                vni = link.vni,
                port = link.port,
                remote = ?link.remote,
                mtu = link.mtu,
                "overlay link to the gateway node applied"
            ),
            None => tracing::info!(link = OVERLAY_LINK, "overlay link removed"),
        }
    }

    /// Logs every change with the peer it concerns.
    fn report(&self, diff: &RouteDiff) {
        let label = |plan: &RoutePlan, r: &Route| {
            plan.peer_of(r.dst)
                .map_or_else(|| "(unknown)".to_owned(), |p| p.to_string())
        };
        for r in &diff.added {
            let peer = label(&self.wanted, r);
            tracing::info!(%peer, dst = %r.dst, via = %next_hop(&r.via), "route installed");
        }
        for r in &diff.removed {
            let peer = self
                .applied
                .as_ref()
                .map_or_else(|| "(before start)".to_owned(), |a| label(a, r));
            tracing::info!(%peer, dst = %r.dst, via = %next_hop(&r.via), "route removed");
        }
    }
}

fn next_hop(via: &NextHop) -> String {
    match via {
        NextHop::Dev(dev) => format!("dev {dev}"),
        NextHop::Via(ip, None) => ip.to_string(),
        NextHop::Via(ip, Some(dev)) => format!("{ip} dev {dev}"),
        NextHop::Onlink(ip, dev) => format!("{ip} dev {dev} onlink"),
    }
}

/// The NAT exemption, the overlay link, then [`routes::sync`] (and the overlay link's removal
/// when none is wanted, once no route uses it), on the blocking pool, one call at a time. A
/// failed step stops the sync (retried with backoff).
async fn sync_all<R: RouteDriver + 'static, N: NodeNatDriver + 'static>(
    driver: &Arc<Mutex<R>>,
    nat: &Arc<Mutex<N>>,
    nat_plan: NodeNatPlan,
    overlay: Option<VxlanSpec>,
    desired: Vec<Route>,
) -> Result<(NodeNatApplied, RouteDiff)> {
    let (driver, nat) = (driver.clone(), nat.clone());
    let job = tokio::task::spawn_blocking(move || -> Result<_> {
        let outcome = nat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(&nat_plan)?;
        let mut driver = driver.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = &overlay {
            driver.ensure_vxlan(link)?;
        }
        let diff = routes::sync(&mut *driver, &desired)?;
        if overlay.is_none() {
            driver.delete_link(OVERLAY_LINK)?;
        }
        Ok((outcome, diff))
    });
    job.await.map_err(|e| Error::DriverTask(e.to_string()))?
}
