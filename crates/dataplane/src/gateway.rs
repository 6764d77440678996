//! The gateway entry point: make the kernel match a [`GatewaySpec`] and report what is there.
//!
//! `reconcile` validates everything first (bad input changes nothing), then converges the
//! tunnel peers, the routes into the tunnel and the NAT table, and reads the result back per
//! peer. The controllers call exactly this; `reconcile_nat` is the fast path for NatMapping
//! changes; `teardown` removes everything, collecting errors instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::Ipv4Net;

use crate::firewall::delta::MapDelta;
use crate::firewall::nft::NftFirewall;
use crate::firewall::{Applied, FirewallDriver, NatPlan};
use crate::keys::PublicKey;
use crate::model::{GatewaySpec, ValidSpec};
use crate::netns::{Netns, NsRuntime};
use crate::routes::linux::NetlinkRoutes;
use crate::routes::{self, NextHop, Route, RouteDriver};
use crate::tunnel::linux::WireguardTunnel;
use crate::tunnel::{Backend, DeviceConfig, PeerStatus, TunnelDriver, TunnelPeer};
use crate::{Error, Result};

/// What the kernel holds for one peer after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerObserved {
    /// Peer cluster ID.
    pub name: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Last handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// AllowedIPs on the device.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Our routes into the tunnel for its ranges.
    pub routes: Vec<Ipv4Net>,
    /// NatMapping entries in its DNAT map.
    pub mappings: usize,
}

/// The result of a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    /// Backend carrying the tunnel.
    pub backend: Backend,
    /// What the firewall apply did.
    pub firewall: Applied,
    /// How long that apply took (one nft batch, or the check that nothing changed).
    pub firewall_took: Duration,
    /// Per peer, sorted by name.
    pub peers: Vec<PeerObserved>,
}

/// The WireGuard peers the spec asks for.
pub fn tunnel_peers(spec: &ValidSpec) -> Vec<TunnelPeer> {
    spec.peers
        .iter()
        .map(|peer| TunnelPeer {
            public_key: peer.public_key.clone(),
            endpoint: peer.endpoint,
            keepalive: peer.keepalive,
            allowed_ips: peer.remote.clone(),
        })
        .collect()
}

/// The routes into the tunnel the spec asks for.
pub fn tunnel_routes(spec: &ValidSpec) -> Vec<Route> {
    let dev = NextHop::Dev(spec.interface.clone());
    spec.peers
        .iter()
        .flat_map(|peer| {
            peer.remote.iter().map(|dst| Route {
                dst: *dst,
                via: dev.clone(),
            })
        })
        .collect()
}

/// The endpoint this process last set for each peer (its advertised endpoint at the time).
pub type SetEndpoints = BTreeMap<PublicKey, Option<SocketAddr>>;

/// Pure diff of WireGuard peers: which to set (new or changed) and which to remove.
///
/// An endpoint that differs from the desired one is **roaming**, not drift, when `set` shows
/// that we already gave the device this desired endpoint: WireGuard moved it to the address the
/// peer's authenticated packets really come from (a NAT, a NodePort, a new gateway node after a
/// failover), and setting it back would only send our packets where the peer is not. Only a
/// change of the desired endpoint itself (the peer advertised another one) is applied. With no
/// memory (the first reconcile of a process) a different endpoint is set once.
pub fn peer_changes(
    current: &[PeerStatus],
    desired: &[TunnelPeer],
    set: &SetEndpoints,
) -> (Vec<TunnelPeer>, Vec<PublicKey>) {
    let wanted: BTreeSet<&PublicKey> = desired.iter().map(|p| &p.public_key).collect();
    let remove = current
        .iter()
        .filter(|p| !wanted.contains(&p.public_key))
        .map(|p| p.public_key.clone())
        .collect();
    let changed = desired
        .iter()
        .filter(|want| {
            let roamed = set.get(&want.public_key) == Some(&want.endpoint);
            !current.iter().any(|have| {
                have.public_key == want.public_key
                    && (have.matches(want) || (roamed && have.matches_but_endpoint(want)))
            })
        })
        .cloned()
        .collect();
    (changed, remove)
}

/// A gateway: one tunnel, one NAT table, the routes between them.
#[derive(Debug)]
pub struct Gateway<T, F, R> {
    /// Tunnel driver.
    pub tunnel: T,
    /// Firewall driver.
    pub firewall: F,
    /// Route driver.
    pub routes: R,
    /// The endpoint last set per peer, so that roaming is told from drift.
    set_endpoints: SetEndpoints,
}

/// The gateway with the Linux drivers.
pub type LinuxGateway = Gateway<WireguardTunnel, NftFirewall, NetlinkRoutes>;

impl LinuxGateway {
    /// Linux drivers on `netns`, the WireGuard backend chosen automatically.
    pub fn linux(netns: Netns) -> Result<Self> {
        let ns = NsRuntime::new(netns, 2)?;
        let backend = crate::tunnel::linux::detect_backend(&ns);
        Self::linux_on(ns, backend)
    }

    /// Linux drivers on a runtime, with a given backend.
    pub fn linux_on(ns: Arc<NsRuntime>, backend: Backend) -> Result<Self> {
        Ok(Gateway {
            tunnel: WireguardTunnel::with_backend(ns.clone(), backend)?,
            firewall: NftFirewall::new(ns.clone()),
            routes: NetlinkRoutes::new(ns)?,
            set_endpoints: SetEndpoints::new(),
        })
    }
}

impl<T: TunnelDriver, F: FirewallDriver, R: RouteDriver> Gateway<T, F, R> {
    /// Drivers of your choice (fakes in unit tests).
    pub fn new(tunnel: T, firewall: F, routes: R) -> Self {
        Gateway {
            tunnel,
            firewall,
            routes,
            set_endpoints: SetEndpoints::new(),
        }
    }

    /// Makes the kernel match `desired` and returns what is there per peer.
    ///
    /// Bad input changes nothing. If a reconcile that had to create the interface fails
    /// half-way, what it set up is removed again (partial setup rolls back); other failures
    /// leave the kernel for the next reconcile to converge, so working peers keep working.
    pub fn reconcile(&mut self, desired: &GatewaySpec) -> Result<GatewayStatus> {
        let spec = desired.validate()?;
        let _span = tracing::info_span!("gateway.reconcile", interface = %spec.interface, peers = spec.peers.len()).entered();
        let mut created = false;
        match self.converge(&spec, &mut created) {
            Err(err) if created => {
                tracing::warn!(error = %err, "reconcile failed after creating the interface; rolling back");
                if let Err(rollback) = self.teardown() {
                    tracing::warn!(error = %rollback, "rollback incomplete");
                }
                Err(err)
            }
            other => other,
        }
    }

    fn converge(&mut self, spec: &ValidSpec, created: &mut bool) -> Result<GatewayStatus> {
        *created = self.tunnel.ensure_device(&DeviceConfig {
            ifname: spec.interface.clone(),
            private_key: spec.private_key.clone(),
            listen_port: spec.listen_port,
            mtu: spec.mtu,
            address: spec.transit_source,
        })?;
        self.routes.enable_forwarding()?;
        let desired = tunnel_peers(spec);
        let current = self.tunnel.peers()?;
        self.log_roaming(spec, &current);
        let (set, remove) = peer_changes(&current, &desired, &self.set_endpoints);
        for key in &remove {
            tracing::info!(key = %key, "removing WireGuard peer (no longer desired)");
            self.tunnel.remove_peer(key)?;
            self.set_endpoints.remove(key);
        }
        for peer in &set {
            let name = spec
                .peers
                .iter()
                .find(|p| p.public_key == peer.public_key)
                .map(|p| p.name.as_str());
            tracing::info!(peer = name.unwrap_or("?"), key = %peer.public_key, "setting WireGuard peer");
            self.tunnel.set_peer(peer)?;
            self.set_endpoints
                .insert(peer.public_key.clone(), peer.endpoint);
        }
        // NAT before routes: a packet routed into the tunnel before its SNAT rule exists would
        // leave with its real source, and conntrack would keep that (non-)translation for the
        // whole flow.
        if self.firewall.applied().is_some() && !self.firewall.intact()? {
            tracing::warn!("our nftables table changed outside isthmus; rebuilding it");
            self.firewall.forget();
        }
        let started = Instant::now();
        let firewall = self.firewall.apply(&NatPlan::from_spec(spec))?;
        let firewall_took = started.elapsed();
        routes::sync(&mut self.routes, &tunnel_routes(spec))?;
        self.observe(spec, firewall, firewall_took)
    }

    /// Logs (debug, at every reconcile) each peer whose endpoint is not the advertised one
    /// because WireGuard roamed it.
    fn log_roaming(&self, spec: &ValidSpec, current: &[PeerStatus]) {
        for peer in &spec.peers {
            let Some(have) = current.iter().find(|c| c.public_key == peer.public_key) else {
                continue;
            };
            let ours = self.set_endpoints.get(&peer.public_key) == Some(&peer.endpoint);
            if ours && peer.endpoint.is_some() && have.endpoint != peer.endpoint {
                tracing::debug!(peer = %peer.name, advertised = ?peer.endpoint,
                    seen = ?have.endpoint, "endpoint roamed: kept");
            }
        }
    }

    /// Fast path for NatMapping changes: validates and applies only the NAT table.
    pub fn reconcile_nat(&mut self, desired: &GatewaySpec) -> Result<Applied> {
        let spec = desired.validate()?;
        self.firewall.apply(&NatPlan::from_spec(&spec))
    }

    /// Fastest path for NatMapping changes: only the DNAT map elements the deltas name, on top
    /// of the last apply (no spec, no plan, no whole-table diff).
    pub fn reconcile_nat_delta(&mut self, deltas: &[MapDelta]) -> Result<Applied> {
        let _span = tracing::debug_span!("gateway.nat_delta", maps = deltas.len()).entered();
        self.firewall.apply_delta(deltas)
    }

    /// Forgets what the firewall applied, so the next apply rebuilds the table (benchmarks, repair).
    pub fn firewall_forget(&mut self) {
        self.firewall.forget();
    }

    fn observe(
        &mut self,
        spec: &ValidSpec,
        firewall: Applied,
        firewall_took: Duration,
    ) -> Result<GatewayStatus> {
        let device = self.tunnel.peers()?;
        let installed = self.routes.routes()?;
        let peers = spec
            .peers
            .iter()
            .map(|peer| {
                let status = device.iter().find(|s| s.public_key == peer.public_key);
                PeerObserved {
                    name: peer.name.clone(),
                    public_key: peer.public_key.clone(),
                    endpoint: status.and_then(|s| s.endpoint),
                    last_handshake: status.and_then(|s| s.last_handshake),
                    rx_bytes: status.map_or(0, |s| s.rx_bytes),
                    tx_bytes: status.map_or(0, |s| s.tx_bytes),
                    allowed_ips: status.map(|s| s.allowed_ips.clone()).unwrap_or_default(),
                    routes: installed
                        .iter()
                        .filter(|r| peer.remote.contains(&r.dst))
                        .map(|r| r.dst)
                        .collect(),
                    mappings: peer.mappings.len(),
                }
            })
            .collect();
        Ok(GatewayStatus {
            backend: self.tunnel.backend(),
            firewall,
            firewall_took,
            peers,
        })
    }

    /// Clean shutdown on SIGTERM: stops the tunnel engine and leaves the rest for the next start,
    /// whose first reconcile converges (the NAT table is rebuilt, routes and peers re-synced).
    pub fn shutdown(&mut self) -> Result<()> {
        self.tunnel.stop()
    }

    /// Removes what an earlier leader left on this node while another node leads: our NAT
    /// table, our routes and an interface named `ifname` this driver does not run. Keeps going
    /// past errors. Returns what was there: (interface removed, routes removed).
    pub fn remove_leftovers(&mut self, ifname: &str) -> Result<(bool, usize)> {
        let mut errors = Vec::new();
        if let Err(err) = self.firewall.remove() {
            errors.push(err);
        }
        let routes = match routes::sync(&mut self.routes, &[]) {
            Ok(diff) => diff.removed.len(),
            Err(err) => {
                errors.push(err);
                0
            }
        };
        let interface = match self.tunnel.remove_leftover(ifname) {
            Ok(found) => found,
            Err(err) => {
                errors.push(err);
                false
            }
        };
        self.set_endpoints.clear();
        Error::collect(errors)?;
        Ok((interface, routes))
    }

    /// Removes the NAT table, our routes and the tunnel; keeps going past errors.
    pub fn teardown(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(err) = self.firewall.remove() {
            errors.push(err);
        }
        if let Err(err) = routes::sync(&mut self.routes, &[]) {
            errors.push(err);
        }
        if let Err(err) = self.tunnel.remove_device() {
            errors.push(err);
        }
        self.set_endpoints.clear();
        Error::collect(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fake::FakeFirewall;
    use crate::model::fixtures::{peer, spec};
    use crate::routes::fake::FakeRoutes;
    use crate::tunnel::fake::FakeTunnel;

    type FakeGateway = Gateway<FakeTunnel, FakeFirewall, FakeRoutes>;

    fn fake() -> FakeGateway {
        Gateway::new(
            FakeTunnel::new(Backend::Userspace),
            FakeFirewall::default(),
            FakeRoutes::default(),
        )
    }

    #[test]
    fn second_reconcile_changes_nothing() {
        let mut gw = fake();
        let desired = spec(vec![peer("b", "10.1.0.0/24"), peer("c", "10.2.0.0/24")]);
        let first = gw.reconcile(&desired).unwrap();
        assert_eq!(first.firewall, Applied::Replaced);
        assert_eq!(
            first.peers[0].routes,
            vec!["10.1.0.0/24".parse::<Ipv4Net>().unwrap()]
        );
        let calls = (gw.tunnel.calls.len(), gw.routes.calls.len());
        assert_eq!(gw.reconcile(&desired).unwrap().firewall, Applied::Unchanged);
        let sets = gw.tunnel.calls[calls.0..]
            .iter()
            .filter(|c| c.starts_with("set"))
            .count();
        assert_eq!(sets, 0);
        assert!(
            gw.routes.calls[calls.1..]
                .iter()
                .all(|c| !c.starts_with("add"))
        );
    }

    #[test]
    fn removing_a_peer_removes_its_wireguard_peer_routes_and_rules() {
        let mut gw = fake();
        let mut desired = spec(vec![peer("b", "10.1.0.0/24"), peer("c", "10.2.0.0/24")]);
        gw.reconcile(&desired).unwrap();
        let gone = desired.peers.pop().unwrap();
        let status = gw.reconcile(&desired).unwrap();
        assert_eq!(status.peers.len(), 1);
        assert!(
            gw.tunnel
                .calls
                .contains(&format!("remove {}", gone.public_key))
        );
        assert!(gw.routes.calls.contains(&"del 10.2.0.0/24".to_owned()));
        assert_eq!(gw.firewall.applied().unwrap().peers.len(), 1);
    }

    #[test]
    fn outside_flush_is_repaired_and_bad_input_touches_nothing() {
        let mut gw = fake();
        let desired = spec(vec![peer("b", "10.1.0.0/24")]);
        gw.reconcile(&desired).unwrap();
        gw.firewall.log.lock().unwrap().flushed = true;
        assert_eq!(gw.reconcile(&desired).unwrap().firewall, Applied::Replaced);

        let before = (
            gw.tunnel.calls.len(),
            gw.routes.calls.len(),
            gw.firewall.log.lock().unwrap().batches.len(),
        );
        let mut bad = desired.clone();
        bad.peers.push(peer("c", "10.1.0.0/16"));
        assert!(matches!(gw.reconcile(&bad), Err(Error::Invalid(_))));
        let after = (
            gw.tunnel.calls.len(),
            gw.routes.calls.len(),
            gw.firewall.log.lock().unwrap().batches.len(),
        );
        assert_eq!(before, after);
    }

    #[test]
    fn a_failed_first_reconcile_rolls_back() {
        let mut gw = fake();
        gw.firewall.log.lock().unwrap().fail_next = true;
        let desired = spec(vec![peer("b", "10.1.0.0/24")]);
        assert!(matches!(gw.reconcile(&desired), Err(Error::Firewall(_))));
        assert!(gw.tunnel.device.is_none() && gw.tunnel.peers.is_empty());
        assert!(gw.routes.routes.is_empty());

        gw.reconcile(&desired).unwrap();
        gw.firewall.log.lock().unwrap().fail_next = true;
        let mut more = desired.clone();
        more.peers.push(peer("c", "10.2.0.0/24"));
        assert!(gw.reconcile(&more).is_err());
        assert!(
            gw.tunnel.device.is_some(),
            "an established gateway is not torn down"
        );
    }

    fn sets(gw: &FakeGateway, from: usize) -> usize {
        gw.tunnel.calls[from..]
            .iter()
            .filter(|c| c.starts_with("set"))
            .count()
    }

    #[test]
    fn a_roamed_endpoint_is_kept_and_a_newly_advertised_one_is_set() {
        let mut gw = fake();
        let mut desired = spec(vec![peer("b", "10.1.0.0/24")]);
        let advertised: SocketAddr = "192.168.100.11:31820".parse().unwrap();
        desired.peers[0].endpoint = Some(advertised);
        gw.reconcile(&desired).unwrap();
        let key: PublicKey = desired.peers[0].public_key.parse().unwrap();
        // The peer's packets come from its real port (the NAT in front of it is not symmetric):
        // the device roams.
        let real: SocketAddr = "192.168.100.11:51820".parse().unwrap();
        gw.tunnel.peers.get_mut(&key).unwrap().endpoint = Some(real);
        let calls = gw.tunnel.calls.len();
        let status = gw.reconcile(&desired).unwrap();
        assert_eq!(sets(&gw, calls), 0, "roaming is not drift");
        assert_eq!(status.peers[0].endpoint, Some(real));

        // The peer advertises another endpoint: that is a change to apply.
        let moved: SocketAddr = "192.168.100.21:31820".parse().unwrap();
        desired.peers[0].endpoint = Some(moved);
        let calls = gw.tunnel.calls.len();
        let status = gw.reconcile(&desired).unwrap();
        assert_eq!(sets(&gw, calls), 1);
        assert_eq!(status.peers[0].endpoint, Some(moved));
    }

    #[test]
    fn a_new_process_sets_a_different_endpoint_once() {
        let mut gw = fake();
        let mut desired = spec(vec![peer("b", "10.1.0.0/24")]);
        desired.peers[0].endpoint = Some("192.168.100.11:51820".parse().unwrap());
        gw.reconcile(&desired).unwrap();
        let key: PublicKey = desired.peers[0].public_key.parse().unwrap();
        gw.tunnel.peers.get_mut(&key).unwrap().endpoint =
            Some("192.168.100.99:4000".parse().unwrap());
        // A restart: the kernel device survives, the memory of what was set does not.
        let mut restarted = Gateway::new(
            gw.tunnel.clone(),
            FakeFirewall::default(),
            FakeRoutes::default(),
        );
        let calls = restarted.tunnel.calls.len();
        restarted.reconcile(&desired).unwrap();
        assert_eq!(sets(&restarted, calls), 1);
        restarted.tunnel.peers.get_mut(&key).unwrap().endpoint =
            Some("192.168.100.99:4000".parse().unwrap());
        let calls = restarted.tunnel.calls.len();
        restarted.reconcile(&desired).unwrap();
        assert_eq!(sets(&restarted, calls), 0);
    }

    #[test]
    fn shutdown_stops_the_engine() {
        let mut gw = fake();
        gw.reconcile(&spec(vec![peer("b", "10.1.0.0/24")])).unwrap();
        gw.shutdown().unwrap();
        assert_eq!(gw.tunnel.calls.last().unwrap(), "stop");
        assert!(gw.tunnel.device.is_none());
    }
}
