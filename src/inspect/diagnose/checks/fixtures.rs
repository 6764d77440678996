//! A healthy world for the checks' unit tests, shaped like the hub of the lab: gateway node
//! `node0` of our cluster (Pod CIDR 10.0.0.0/16, ExternalCIDR 10.2.0.0/16) with peers `a` and
//! `c` over userspace WireGuard on `isthmus0`, one NatMapping entry from `a`, and node facts
//! that match the resources exactly. Each test breaks one thing and looks at one check.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use isthmus_api::{
    BackendType, ConnectionState, ConnectionStatus, NatMapping, NatMappingSpec, TunnelEndpoint,
    TunnelEndpointSpec, TunnelEndpointStatus,
};
use isthmus_dataplane::PrivateKey;
use isthmus_dataplane::firewall::view::TableView;
use isthmus_dataplane::node_nat::NODE_TABLE;
use isthmus_dataplane::routes::overlay::{OVERLAY_LINK, Reach};
use isthmus_dataplane::routes::{
    LOCAL_TABLE, LinkEntry, MAIN_TABLE, NODE_ROUTE_PROTOCOL, NextHop, ROUTE_PROTOCOL, RouteEntry,
    RouteKind, VxlanSpec, VxlanView,
};
use isthmus_dataplane::tunnel::{Backend, DeviceView, ModuleState, PeerStatus};

use crate::inspect::diagnose::Resources;
use crate::inspect::diagnose::desired::{self, Target};
use crate::inspect::diagnose::facts::NodeFacts;
use crate::inspect::diagnose::report::{Check, CheckId, Report};

pub(crate) const NOW: u64 = 1_800_000_000;

pub(crate) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

pub(crate) fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub(crate) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Resources, facts and target of one test.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub target: Target,
    pub teps: Vec<TunnelEndpoint>,
    pub nats: Vec<NatMapping>,
    pub facts: NodeFacts,
    pub key: PrivateKey,
    pub peer_keys: BTreeMap<String, PrivateKey>,
}

/// Peer `name` at underlay `.1x`: we see its pods as `pod` and its ExternalCIDR as `ext`.
fn tep(name: &str, underlay: u8, pod: &str, ext: &str, key: &PrivateKey) -> TunnelEndpoint {
    let c = |s: &str| s.parse().unwrap();
    let mut t = TunnelEndpoint::new(
        name,
        TunnelEndpointSpec {
            cluster_id: name.parse().unwrap(),
            local_pod_cidr: c("10.0.0.0/16"),
            local_nat_pod_cidr: c("10.3.0.0/16"),
            local_external_cidr: c("10.2.0.0/16"),
            local_nat_external_cidr: c("10.6.0.0/16"),
            remote_pod_cidr: c("10.0.0.0/16"),
            remote_nat_pod_cidr: c(pod),
            remote_external_cidr: c("10.2.0.0/16"),
            remote_nat_external_cidr: c(ext),
            endpoint: format!("192.168.100.{underlay}:51820"),
            backend_type: BackendType::default(),
            backend_config: [("publicKey".to_owned(), key.public_key().to_string())].into(),
        },
    );
    t.status = Some(TunnelEndpointStatus {
        phase: Some("Ready".into()),
        connection: ConnectionStatus {
            status: ConnectionState::Connected,
            ..ConnectionStatus::default()
        },
        interface_name: Some("isthmus0".into()),
        backend: Some("userspace".into()),
        gateway_node: Some("node0".into()),
        gateway_ip: Some(ip("172.16.0.10")),
        ..TunnelEndpointStatus::default()
    });
    t
}

fn link(index: u32, name: &str, mtu: u32, kind: &str) -> LinkEntry {
    LinkEntry {
        index,
        name: name.into(),
        mtu: Some(mtu),
        up: true,
        kind: Some(kind.into()),
    }
}

/// A main-table route.
pub(crate) fn route(dst: &str, dev: &str, via: Option<&str>, protocol: u8) -> RouteEntry {
    RouteEntry {
        dst: net(dst),
        gateway: via.map(ip),
        dev: Some(dev.into()),
        protocol,
        table: MAIN_TABLE,
        kind: RouteKind::Unicast,
        metric: 0,
        mtu: None,
    }
}

fn local(addr: &str, dev: &str) -> RouteEntry {
    RouteEntry {
        table: LOCAL_TABLE,
        kind: RouteKind::Local,
        ..route(&format!("{addr}/32"), dev, None, 2)
    }
}

impl World {
    /// Everything in place.
    pub(crate) fn healthy() -> World {
        let key = PrivateKey::generate();
        let peer_keys: BTreeMap<String, PrivateKey> = ["a", "c"]
            .into_iter()
            .map(|p| (p.to_owned(), PrivateKey::generate()))
            .collect();
        let teps = vec![
            tep("a", 10, "10.4.0.0/16", "10.5.0.0/16", &peer_keys["a"]),
            tep("c", 12, "10.7.0.0/16", "10.8.0.0/16", &peer_keys["c"]),
        ];
        let nats = vec![NatMapping::new(
            "a",
            NatMappingSpec {
                cluster_id: "a".parse().unwrap(),
                block: None,
                cluster_mappings: [(ip("10.6.0.5"), ip("10.7.0.10"))].into(),
            },
        )];
        let target = Target {
            namespace: "isthmus".into(),
            interface: "isthmus0".into(),
            interface_given: false,
            node_name: Some("node0".into()),
            listen_port: None,
            api: "http://127.0.0.1:1".into(),
            lab: None,
            overlay: Default::default(),
        };
        let mut world = World {
            target,
            teps,
            nats,
            facts: NodeFacts {
                module: ModuleState::Missing {
                    release: "6.18.0-test".into(),
                    modules_dir: false,
                },
                links: Ok(vec![
                    link(1, "lo", 65536, "loopback"),
                    link(2, "eth0", 1500, "veth"),
                    link(3, "u0", 1500, "veth"),
                    link(4, "isthmus0", 1420, "tun"),
                ]),
                routes: Ok(vec![]),
                table: Ok(None),
                device: Ok(None),
                udp_sockets: Ok(vec!["0.0.0.0:51820".parse().unwrap()]),
                endpoints: BTreeMap::new(),
                lookups: BTreeMap::new(),
                reach: BTreeMap::new(),
                overlay: Ok(None),
                node_table: Ok(None),
                rp_filter: Ok([("all".to_owned(), 0)].into()),
            },
            key,
            peer_keys,
        };
        world.fill_facts();
        world
    }

    /// Facts matching the resources: table, routes, device, endpoints.
    fn fill_facts(&mut self) {
        for t in &self.teps {
            let addr: SocketAddr = t.spec.endpoint.parse().unwrap();
            self.facts
                .endpoints
                .insert(t.spec.endpoint.clone(), Ok(addr));
            let std::net::IpAddr::V4(v4) = addr.ip() else {
                unreachable!()
            };
            let mut found = route(&format!("{v4}/32"), "u0", None, 2);
            found.kind = RouteKind::Unicast;
            self.facts.lookups.insert(v4, Ok(found));
        }
        let d = self.desired();
        self.facts.table = Ok(d.table.clone());
        self.set_overlay(d.node_routes.overlay.as_ref());
        let mut routes = vec![
            route("172.16.0.0/24", "eth0", None, 2),
            route("192.168.100.0/24", "u0", None, 2),
            route("10.0.1.0/24", "eth0", Some("172.16.0.11"), 4),
            local("172.16.0.10", "eth0"),
            local("192.168.100.11", "u0"),
            local("10.2.0.1", "isthmus0"),
        ];
        for r in &d.gateway_routes {
            let NextHop::Dev(dev) = &r.via else {
                unreachable!()
            };
            routes.push(route(&r.dst.to_string(), dev, None, ROUTE_PROTOCOL));
        }
        self.facts.routes = Ok(routes);
        let handshake = now() - Duration::from_secs(10);
        let peers = self
            .teps
            .iter()
            .map(|t| PeerStatus {
                public_key: self.peer_keys[t.spec.cluster_id.as_str()].public_key(),
                endpoint: t.spec.endpoint.parse().ok(),
                last_handshake: Some(handshake),
                rx_bytes: 100,
                tx_bytes: 100,
                keepalive: Some(10),
                allowed_ips: vec![],
            })
            .collect();
        self.facts.device = Ok(Some(DeviceView {
            backend: Backend::Userspace,
            listen_port: 51820,
            peers,
        }));
    }

    /// What the resources ask of this node, with the facts' reach.
    pub(crate) fn desired(&self) -> desired::Desired {
        let reach = self
            .facts
            .reach
            .iter()
            .filter_map(|(ip, r)| Some((*ip, r.clone().ok()?)))
            .collect();
        desired::desired(
            &self.target,
            &self.resources(),
            (&self.facts.endpoints, &reach),
            &self.key,
        )
    }

    /// The overlay link as planned (or none), in the facts' links too.
    fn set_overlay(&mut self, spec: Option<&VxlanSpec>) {
        let links = self.facts.links.as_mut().unwrap();
        links.retain(|l| l.name != OVERLAY_LINK);
        self.facts.overlay = Ok(spec.map(|s| VxlanView {
            vni: Some(s.vni),
            port: Some(s.port),
            remote: s.remote,
            mac: s.mac,
        }));
        if let Some(s) = spec {
            links.push(link(9, OVERLAY_LINK, s.mtu, "vxlan"));
        }
    }

    /// A worker node of the same cluster, `node1`: healthy, reaching the gateway node 172.16.0.10
    /// through a router (`routed`: over the overlay) or on-link (a direct next hop).
    pub(crate) fn worker(routed: bool) -> World {
        let mut w = World::healthy();
        w.target.node_name = Some("node1".into());
        w.facts.links = Ok(vec![
            link(1, "lo", 65536, "loopback"),
            link(2, "eth0", 1500, "veth"),
        ]);
        w.facts.table = Ok(None);
        w.facts.device = Ok(None);
        w.facts.udp_sockets = Ok(vec![]);
        let gateway = ip("172.16.0.10");
        let reach = if routed {
            Reach::routed(ip("172.16.1.1"), "eth0", 1500)
        } else {
            Reach::on_link("eth0", 1500)
        };
        w.facts.reach = [(gateway, Ok(reach))].into();
        let d = w.desired();
        w.set_overlay(d.node_routes.overlay.as_ref());
        let mut routes = vec![route("172.16.1.0/24", "eth0", None, 2)];
        for r in d.node_routes.routes() {
            let (gw, dev) = match &r.via {
                NextHop::Via(gw, dev) => (*gw, dev.clone().unwrap_or_else(|| "eth0".into())),
                NextHop::Onlink(gw, dev) => (*gw, dev.clone()),
                NextHop::Dev(_) => unreachable!(),
            };
            let gw = gw.to_string();
            routes.push(route(
                &r.dst.to_string(),
                &dev,
                Some(gw.as_str()),
                NODE_ROUTE_PROTOCOL,
            ));
        }
        w.facts.routes = Ok(routes);
        w.facts.node_table = Ok(Some(TableView::from_batch(
            &isthmus_dataplane::node_nat::render::render(&d.node_routes.nat),
            NODE_TABLE,
        )));
        w
    }

    /// The device's backend and what every TunnelEndpoint reports.
    pub(crate) fn set_backend(&mut self, here: Backend, reported: &str) {
        if let Ok(Some(device)) = &mut self.facts.device {
            device.backend = here;
        }
        for t in &mut self.teps {
            t.status.as_mut().unwrap().backend = Some(reported.into());
        }
    }

    /// Main-table routes, mutable.
    pub(crate) fn routes_mut(&mut self) -> &mut Vec<RouteEntry> {
        self.facts.routes.as_mut().unwrap()
    }

    /// The device's peers, mutable.
    pub(crate) fn peers_mut(&mut self) -> &mut Vec<PeerStatus> {
        &mut self.facts.device.as_mut().unwrap().as_mut().unwrap().peers
    }

    /// The resources as diagnose reads them.
    pub(crate) fn resources(&self) -> Resources {
        Resources {
            teps: self.teps.clone(),
            nat_mappings: self.nats.clone(),
            nat_mappings_error: None,
        }
    }

    /// The whole report.
    pub(crate) fn report(&self) -> Report {
        crate::inspect::diagnose::evaluate(
            &self.target,
            &self.resources(),
            &self.facts,
            now(),
            &self.key,
        )
    }

    /// One check of the report (panics when it did not run).
    pub(crate) fn check(&self, id: CheckId) -> Check {
        let report = self.report();
        report
            .check(id)
            .unwrap_or_else(|| panic!("{id:?} did not run: {report:#?}"))
            .clone()
    }
}

#[test]
fn the_healthy_world_passes_every_check_but_the_userspace_warning() {
    let report = World::healthy().report();
    for check in &report.checks {
        let expected = if check.id == CheckId::WireguardBackend {
            crate::inspect::diagnose::report::Status::Warn
        } else {
            crate::inspect::diagnose::report::Status::Ok
        };
        assert_eq!(check.status, expected, "{check:#?}");
    }
    assert_eq!(report.checks.len(), 7);
    assert!(!report.failed());
    assert_eq!(report.context.role, "gateway");
}

#[test]
fn a_healthy_worker_passes_every_check_that_runs_there() {
    for routed in [true, false] {
        let report = World::worker(routed).report();
        for check in &report.checks {
            let expected = if check.id == CheckId::WireguardBackend {
                check.status
            } else {
                crate::inspect::diagnose::report::Status::Ok
            };
            assert_eq!(check.status, expected, "routed {routed}: {check:#?}");
        }
        assert!(report.check(CheckId::NodeNat).is_some());
        assert!(report.check(CheckId::Overlay).is_some());
        assert_ne!(report.context.role, "gateway");
    }
}
