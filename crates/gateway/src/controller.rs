//! The leader's loop: fetch (reflector stores), plan (pure), apply (the datapath), report
//! (status patches), driven by watch triggers and a periodic probe tick.
//!
//! - a TunnelEndpoint spec change → full reconcile (after `batch_window`), then status;
//! - a NatMapping change → the NAT fast path at once: only the DNAT map elements that changed
//!   (changes arriving during one run are taken together by the next);
//! - every `probe_interval` → a probe round of every configured peer, beside the loop (a peer
//!   that does not answer holds nothing back); when it ends: full reconcile (which also repairs
//!   outside changes and reads handshakes and counters), connection verdicts, status.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use isthmus_api::{TunnelEndpoint, TunnelEndpointStatus};
use isthmus_dataplane::firewall::FirewallDriver;
use isthmus_dataplane::routes::RouteDriver;
use isthmus_dataplane::tunnel::TunnelDriver;
use isthmus_dataplane::{GatewayHandle, GatewaySpec, GatewayStatus, PrivateKey};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::GatewayConfig;
use crate::connection::{Tracker, Verdict};
use crate::error::{Error, Result};
use crate::finalizer::{self, Finalizers};
use crate::leader::stopped;
use crate::plan::{self, Device, Resolved};
use crate::probe::Prober;
use crate::status::{PeerState, Reporter, desired_status};
use crate::telemetry::{GatewayTelemetry, outcome, tunnel_state};
use crate::watch::{Trigger, Watches};
use isthmus_api::ConnectionState;
use isthmus_telemetry::metrics::{PeerSample, TunnelState};
use isthmus_telemetry::{Gate, Heartbeat};

/// One probe round: each configured TunnelEndpoint, its probe target and the answer's RTT.
type ProbeRound = Vec<((String, Ipv4Addr), Option<Duration>)>;

/// One TunnelEndpoint as last planned.
#[derive(Debug, Clone)]
struct Planned {
    peer: String,
    target: Ipv4Addr,
    problem: Option<(&'static str, String)>,
}

/// The leader's state.
pub(crate) struct Controller<T, F, R> {
    pub config: GatewayConfig,
    pub client: Client,
    pub gateway: GatewayHandle<T, F, R>,
    pub private_key: PrivateKey,
    pub prober: Arc<dyn Prober>,
    pub watches: Watches,
    applied: Option<GatewaySpec>,
    observed: Option<GatewayStatus>,
    apply_error: Option<(&'static str, String)>,
    planned: BTreeMap<String, Planned>,
    trackers: BTreeMap<String, Tracker>,
    verdicts: BTreeMap<String, Verdict>,
    written: BTreeMap<String, TunnelEndpointStatus>,
    resolved: Resolved,
    /// The datapath was removed because no peer was left (reset by the next peer).
    torn_down: bool,
    /// Deleted TunnelEndpoints still holding our finalizer: released once their peer is out of
    /// the kernel.
    releasing: Vec<String>,
    finalizers: Finalizers,
    telemetry: GatewayTelemetry,
    /// Readiness: the last full reconcile succeeded.
    datapath_gate: Gate,
    /// Liveness: the loop keeps ticking.
    heartbeat: Heartbeat,
}

/// Resolves every endpoint (`host:port`): IPv4 literals directly, names through DNS.
async fn resolve(endpoints: Vec<String>) -> Resolved {
    let mut out = Resolved::new();
    for endpoint in endpoints {
        if out.contains_key(&endpoint) {
            continue;
        }
        let answer = match endpoint.parse::<SocketAddr>() {
            Ok(SocketAddr::V4(addr)) => Ok(SocketAddr::V4(addr)),
            Ok(SocketAddr::V6(_)) => Err("IPv6 endpoints are not supported".to_owned()),
            Err(_) => match tokio::net::lookup_host(endpoint.as_str()).await {
                Ok(mut addrs) => addrs
                    .find(SocketAddr::is_ipv4)
                    .ok_or_else(|| "no IPv4 address".to_owned()),
                Err(err) => Err(err.to_string()),
            },
        };
        out.insert(endpoint, answer);
    }
    out
}

/// A merge patch that sets the whole status: absent optional fields become `null` (deleted).
fn status_patch(status: &TunnelEndpointStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        for key in [
            "phase",
            "interfaceName",
            "backend",
            "gatewayNode",
            "gatewayIP",
            "observedGeneration",
            "conditions",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
        if let Some(Value::Object(conn)) = map.get_mut("connection") {
            for key in ["message", "lastHandshake", "latency", "latencyMicros"] {
                conn.entry(key).or_insert(Value::Null);
            }
        }
    }
    json!({ "status": value })
}

impl<T, F, R> Controller<T, F, R>
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    pub fn new(
        config: GatewayConfig,
        client: Client,
        gateway: GatewayHandle<T, F, R>,
        private_key: PrivateKey,
        prober: Arc<dyn Prober>,
        watches: Watches,
        telemetry: GatewayTelemetry,
    ) -> Self {
        let datapath_gate = telemetry
            .health
            .gate("datapath", "the datapath is not programmed yet");
        let silence = config.probe_interval * 3 + Duration::from_secs(15);
        let heartbeat = telemetry.health.heartbeat("controller", silence);
        Controller {
            config,
            client,
            gateway,
            private_key,
            prober,
            watches,
            applied: None,
            observed: None,
            apply_error: None,
            planned: BTreeMap::new(),
            trackers: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            written: BTreeMap::new(),
            resolved: Resolved::new(),
            torn_down: false,
            releasing: Vec::new(),
            finalizers: Finalizers::default(),
            telemetry,
            datapath_gate,
            heartbeat,
        }
    }

    fn teps(&self) -> Vec<TunnelEndpoint> {
        self.watches
            .teps
            .state()
            .iter()
            .map(|t| (**t).clone())
            .collect()
    }

    fn tep_api(&self) -> Api<TunnelEndpoint> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Plans from the stores. `refresh_dns`: resolve every endpoint again; otherwise only
    /// endpoints not seen before are resolved (the NAT fast path waits for no DNS). Deleted
    /// TunnelEndpoints are left out of the plan and remembered for their finalizer.
    async fn plan(&mut self, refresh_dns: bool) -> GatewaySpec {
        let (teps, going): (Vec<_>, Vec<_>) = self
            .teps()
            .into_iter()
            .partition(|t| !finalizer::deleting(t));
        self.releasing = going
            .iter()
            .filter(|t| finalizer::held(t))
            .map(ResourceExt::name_any)
            .collect();
        let nats: Vec<_> = self
            .watches
            .nats
            .state()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        let endpoints: Vec<String> = teps
            .iter()
            .map(|t| t.spec.endpoint.clone())
            .filter(|e| refresh_dns || !self.resolved.contains_key(e))
            .collect();
        let fresh = resolve(endpoints).await;
        if refresh_dns {
            self.resolved = fresh;
        } else {
            self.resolved.extend(fresh);
        }
        let device = Device {
            interface: &self.config.interface,
            private_key: &self.private_key,
            listen_port: self.config.listen_port,
            mtu: self.config.mtu,
            keepalive: self.config.keepalive,
        };
        let plan = plan::plan(&device, &teps, &nats, &self.resolved);
        self.planned = plan
            .endpoints
            .into_iter()
            .map(|(name, p)| {
                if let Some(problem) = &p.problem {
                    tracing::debug!(tunnel_endpoint = %name, peer = %p.peer, error = %problem,
                        "peer left out");
                }
                let problem = p.problem.map(|e| (e.reason(), e.to_string()));
                let planned = Planned {
                    peer: p.peer,
                    target: p.probe_target,
                    problem,
                };
                (name, planned)
            })
            .collect();
        plan.spec
    }

    /// Plans and reconciles everything. With no peer left, the datapath is removed instead
    /// (interface, routes, NAT table): unpeering the last cluster leaves nothing in the kernel.
    /// Peers about to be programmed get the gateway's finalizer first; deleted TunnelEndpoints
    /// lose it once the kernel no longer has their peer.
    pub async fn full(&mut self) {
        let spec = self.plan(true).await;
        if spec.peers.is_empty() {
            self.remove_datapath().await;
            if self.torn_down {
                self.release_finalizers().await;
            }
            return;
        }
        self.hold_finalizers().await;
        self.torn_down = false;
        let started = Instant::now();
        let result = self.gateway.reconcile(spec.clone()).await;
        self.telemetry
            .reconciles
            .record("gateway", result.is_ok(), started.elapsed());
        match result {
            Ok(status) => {
                self.telemetry.datapath.nft_applied(
                    "full",
                    outcome(status.firewall),
                    status.firewall_took,
                );
                self.datapath_gate.open();
                if self.apply_error.take().is_some()
                    || self.applied.as_ref().map(|a| a.peers.len()) != Some(spec.peers.len())
                {
                    tracing::info!(peers = spec.peers.len(), "datapath reconciled");
                }
                self.applied = Some(spec);
                self.observed = Some(status);
                self.release_finalizers().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "datapath reconcile failed");
                let err = Error::from(err);
                self.telemetry.datapath.failed("reconcile");
                self.datapath_gate
                    .close(&format!("datapath reconcile failed: {err}"));
                self.apply_error = Some((err.reason(), err.to_string()));
            }
        }
    }

    /// The finalizer on every TunnelEndpoint planned as a peer.
    async fn hold_finalizers(&mut self) {
        let teps = self.teps();
        let programmed: Vec<&TunnelEndpoint> = teps
            .iter()
            .filter(|t| {
                self.planned
                    .get(&t.name_any())
                    .is_some_and(|p| p.problem.is_none())
            })
            .collect();
        let api = self.tep_api();
        for _ in 0..self.finalizers.hold(&api, &programmed).await {
            self.telemetry.datapath.failed("finalizer");
        }
    }

    /// Takes the finalizer off deleted TunnelEndpoints: call only after the kernel lost them.
    async fn release_finalizers(&mut self) {
        let api = self.tep_api();
        for name in std::mem::take(&mut self.releasing) {
            match self.finalizers.release(&api, &name).await {
                Ok(()) => tracing::info!(tunnel_endpoint = %name,
                    "peer removed from the kernel; TunnelEndpoint released"),
                Err(err) => {
                    self.telemetry.datapath.failed("finalizer");
                    tracing::warn!(tunnel_endpoint = %name, error = %err,
                        "cannot remove the gateway finalizer; retrying next tick");
                }
            }
        }
    }

    async fn remove_datapath(&mut self) {
        if self.torn_down {
            return;
        }
        match self.gateway.teardown().await {
            Ok(()) => {
                tracing::info!("no peer left: tunnel interface, routes and NAT table removed");
                self.datapath_gate.open();
                self.torn_down = true;
                self.applied = None;
                self.observed = None;
                self.apply_error = None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "removing the datapath failed; retrying next tick");
                self.telemetry.datapath.failed("teardown");
                let err = Error::from(err);
                self.apply_error = Some((err.reason(), err.to_string()));
            }
        }
    }

    /// NatMapping change: the map elements the watch saw change, and nothing else (no plan, no
    /// whole-table diff). Before the first full reconcile, or when the delta fails, a full
    /// reconcile instead (it plans from the stores, which hold every change).
    pub async fn nat(&mut self) {
        let (deltas, since) = self.watches.nat_deltas.take();
        if self.applied.is_none() || self.torn_down {
            return self.full().await;
        }
        if deltas.is_empty() {
            return;
        }
        let started = Instant::now();
        let result = self.gateway.reconcile_nat_delta(deltas).await;
        let took = started.elapsed();
        self.telemetry
            .reconciles
            .record("gateway-nat", result.is_ok(), took);
        match result {
            Ok(applied) => {
                tracing::debug!(?applied, "NAT fast path");
                self.telemetry
                    .datapath
                    .nft_applied("nat", outcome(applied), took);
                if let Some(since) = since {
                    self.telemetry.datapath.nat_lag(since.elapsed());
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "NAT fast path failed; full reconcile");
                self.telemetry.datapath.failed("nat");
                self.full().await;
            }
        }
    }

    /// Probe tick, first half: a round that probes every configured peer, to run beside the
    /// loop so a peer that does not answer never holds NatMapping changes back.
    fn probe_round(&self) -> BoxFuture<'static, ProbeRound> {
        let timeout = self.config.probe_timeout;
        let configured: Vec<(String, Ipv4Addr)> = self
            .planned
            .iter()
            .filter(|(_, p)| p.problem.is_none())
            .map(|(name, p)| (name.clone(), p.target))
            .collect();
        let probes: Vec<_> = configured
            .iter()
            .map(|(_, target)| self.prober.probe(*target, timeout))
            .collect();
        Box::pin(async move {
            let results = join_all(probes).await;
            configured.into_iter().zip(results).collect()
        })
    }

    /// Probe tick, second half: reconcile (reads handshakes), judge the round, report.
    pub async fn judge(&mut self, round: ProbeRound) {
        self.full().await;
        let now = Instant::now();
        let mut rtts = BTreeMap::new();
        for ((name, target), rtt) in round {
            rtts.insert(name.clone(), rtt);
            let Some(planned) = self.planned.get(&name) else {
                continue;
            };
            let handshake = self
                .observed
                .as_ref()
                .and_then(|s| s.peers.iter().find(|p| p.name == planned.peer))
                .is_some_and(|p| p.last_handshake.is_some());
            let tracker = self
                .trackers
                .entry(name.clone())
                .and_modify(|t| {
                    if t.target() != target {
                        *t = Tracker::new(target, now);
                    }
                })
                .or_insert_with(|| Tracker::new(target, now));
            let verdict = tracker.observe(rtt, handshake, now, &self.config.connection);
            let before = self.verdicts.get(&name).map(|v| v.state);
            if before != Some(verdict.state) {
                tracing::info!(peer = %planned.peer, state = ?verdict.state, reason = verdict.reason,
                    message = %verdict.message, "connection state");
                self.announce(&name, before, verdict.state, &verdict.message);
            }
            self.verdicts.insert(name, verdict);
        }
        self.publish_samples(&rtts);
        self.heartbeat.beat();
        self.report().await;
    }

    /// An Event on the TunnelEndpoint for a connection state change.
    fn announce(
        &self,
        name: &str,
        from: Option<ConnectionState>,
        to: ConnectionState,
        message: &str,
    ) {
        let teps = self.watches.teps.state();
        if let Some(tep) = teps.iter().find(|t| t.name_any() == name) {
            self.telemetry.connection_changed(tep, from, to, message);
        }
    }

    /// The per-peer metric samples: every planned peer, with its counters and last probe.
    fn publish_samples(&self, rtts: &BTreeMap<String, Option<Duration>>) {
        let samples = self
            .planned
            .iter()
            .map(|(name, planned)| {
                let observed = self
                    .observed
                    .as_ref()
                    .and_then(|s| s.peers.iter().find(|p| p.name == planned.peer));
                let state = match (&planned.problem, &self.apply_error) {
                    (None, None) => self
                        .verdicts
                        .get(name)
                        .map_or(TunnelState::Connecting, |v| tunnel_state(v.state)),
                    _ => TunnelState::Error,
                };
                PeerSample {
                    peer: planned.peer.clone(),
                    state,
                    rx_bytes: observed.map_or(0, |o| o.rx_bytes),
                    tx_bytes: observed.map_or(0, |o| o.tx_bytes),
                    last_handshake: observed.and_then(|o| o.last_handshake),
                    rtt: rtts.get(name).copied().flatten(),
                    nat_mappings: observed.map_or(0, |o| o.mappings as u64),
                }
            })
            .collect();
        self.telemetry.tunnels.publish(samples);
    }

    /// Writes every TunnelEndpoint's status that differs from what it shows.
    pub async fn report(&mut self) {
        let teps = self.teps();
        let names: Vec<String> = teps.iter().map(ResourceExt::name_any).collect();
        self.trackers.retain(|n, _| names.contains(n));
        self.verdicts.retain(|n, _| names.contains(n));
        self.written.retain(|n, _| names.contains(n));
        let reporter = Reporter {
            interface: &self.config.interface,
            backend: self.observed.as_ref().map(|s| s.backend),
            node_name: &self.config.node_name,
            node_ip: self.config.node_ip,
            now: Timestamp::now(),
        };
        let waiting = Verdict::waiting();
        let api = self.tep_api();
        let mut writes = Vec::new();
        for tep in &teps {
            let name = tep.name_any();
            let Some(planned) = self.planned.get(&name) else {
                continue;
            };
            let state = match (&planned.problem, &self.apply_error) {
                (Some((reason, message)), _) | (None, Some((reason, message))) => {
                    PeerState::Failed {
                        reason,
                        message: message.clone(),
                    }
                }
                (None, None) => PeerState::Configured {
                    observed: self
                        .observed
                        .as_ref()
                        .and_then(|s| s.peers.iter().find(|p| p.name == planned.peer)),
                    verdict: self.verdicts.get(&name).unwrap_or(&waiting),
                },
            };
            let current = self.written.get(&name).or(tep.status.as_ref());
            let desired = desired_status(current, tep.metadata.generation, &reporter, &state);
            if current != Some(&desired) {
                writes.push((name, planned.peer.clone(), desired));
            }
        }
        for (name, peer, status) in writes {
            let patch = Patch::Merge(status_patch(&status));
            match api
                .patch_status(&name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    self.written.insert(name, status);
                }
                Err(err) => tracing::warn!(peer = %peer, error = %err, "status patch failed"),
            }
        }
    }

    /// The strongest of `first` and every trigger already queued. NatMapping changes go at once
    /// (the fast path costs ~0.1 ms, and those arriving meanwhile are taken together by the
    /// next run); a full reconcile first collects what arrives within `batch_window`.
    async fn batch(&self, first: Trigger, rx: &mut mpsc::UnboundedReceiver<Trigger>) -> Trigger {
        let drain = |mut strongest: Trigger, rx: &mut mpsc::UnboundedReceiver<Trigger>| {
            while let Ok(next) = rx.try_recv() {
                strongest = strongest.max(next);
            }
            strongest
        };
        let strongest = drain(first, rx);
        if strongest == Trigger::Nat {
            return strongest;
        }
        tokio::time::sleep(self.config.batch_window).await;
        drain(strongest, rx)
    }

    /// Runs until `stop` (→ `Ok`) or until the lease holder task ends (→ leadership lost).
    pub async fn run(
        &mut self,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        mut stop: watch::Receiver<bool>,
        lost: &mut JoinHandle<Result<()>>,
    ) -> Result<()> {
        let lost_error = |res: std::result::Result<Result<()>, tokio::task::JoinError>| match res {
            Ok(Err(err)) => err,
            Ok(Ok(())) => Error::LeadershipLost("lease holder stopped".into()),
            Err(err) => Error::LeadershipLost(err.to_string()),
        };
        let ready = self.watches.ready();
        tokio::select! {
            ready = ready => ready.map_err(Error::Watch)?,
            res = &mut *lost => return Err(lost_error(res)),
            _ = stopped(&mut stop) => return Ok(()),
        }
        self.full().await;
        self.report().await;
        let mut tick = tokio::time::interval(self.config.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // at most one probe round at a time; a tick during one is skipped
        let mut rounds: JoinSet<ProbeRound> = JoinSet::new();
        loop {
            tokio::select! {
                Some(first) = triggers.recv() => {
                    match self.batch(first, &mut triggers).await {
                        Trigger::Full => self.full().await,
                        Trigger::Nat => self.nat().await,
                    }
                    self.report().await;
                }
                _ = tick.tick() => {
                    if rounds.is_empty() {
                        rounds.spawn(self.probe_round());
                    }
                }
                Some(done) = rounds.join_next() => match done {
                    Ok(round) => self.judge(round).await,
                    Err(err) => tracing::warn!(error = %err, "probe round failed"),
                },
                res = &mut *lost => return Err(lost_error(res)),
                _ = stopped(&mut stop) => return Ok(()),
            }
        }
    }
}
