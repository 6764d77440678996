//! The Linux route driver: rtnetlink on a connection opened inside the namespace. Besides the
//! [`RouteDriver`] (our routes only), it reads every route, one route lookup and the links, for
//! inspection; those reads change nothing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::{Handle, LinkVxlan, RouteMessageBuilder};

use super::overlay::Reach;
use super::{
    LinkEntry, NextHop, ROUTE_PROTOCOL, Route, RouteDriver, RouteEntry, RouteKind, VxlanSpec,
};
use crate::netlink::{connect, delete_link, link_index, set_up};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// Routes and links of one namespace through rtnetlink.
#[derive(Debug)]
pub struct NetlinkRoutes {
    ns: Arc<NsRuntime>,
    handle: Handle,
    protocol: u8,
}

impl NetlinkRoutes {
    /// Opens the netlink connection inside the runtime's namespace; routes carry the gateway's
    /// protocol number, [`ROUTE_PROTOCOL`].
    pub fn new(ns: Arc<NsRuntime>) -> Result<Self> {
        Self::with_protocol(ns, ROUTE_PROTOCOL)
    }

    /// Same, owning the routes of another protocol number (a route agent on the gateway node must
    /// not see the gateway's routes as its own).
    pub fn with_protocol(ns: Arc<NsRuntime>, protocol: u8) -> Result<Self> {
        let handle = connect(&ns)?;
        Ok(NetlinkRoutes {
            ns,
            handle,
            protocol,
        })
    }

    fn message(&self, route: &Route) -> Result<RouteMessage> {
        let handle = self.handle.clone();
        let route = route.clone();
        let protocol = self.protocol;
        self.ns.run(async move {
            let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(route.dst.network(), route.dst.prefix_len())
                .protocol(RouteProtocol::Other(protocol));
            let dev = match &route.via {
                NextHop::Dev(dev) => Some(dev.clone()),
                NextHop::Via(gateway, dev) => {
                    builder = builder.gateway(*gateway);
                    dev.clone()
                }
                NextHop::Onlink(gateway, dev) => {
                    builder = builder.gateway(*gateway).onlink();
                    Some(dev.clone())
                }
            };
            if let Some(dev) = dev {
                let index = link_index(&handle, &dev).await?.ok_or_else(|| {
                    Error::netlink(format!("route {}", route.dst), format!("no link {dev}"))
                })?;
                builder = builder.output_interface(index);
            }
            Ok(builder.build())
        })
    }

    async fn link_names(handle: &Handle) -> Result<BTreeMap<u32, String>> {
        let mut names = BTreeMap::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| Error::netlink("list links", e))?
        {
            for attr in &link.attributes {
                if let LinkAttribute::IfName(name) = attr {
                    names.insert(link.header.index, name.clone());
                }
            }
        }
        Ok(names)
    }
}

impl NetlinkRoutes {
    /// Every IPv4 route of every table, whoever installed it.
    pub fn all_routes(&self) -> Result<Vec<RouteEntry>> {
        let handle = self.handle.clone();
        self.ns.run(async move {
            let names = Self::link_names(&handle).await?;
            let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
            let mut stream = handle.route().get(query).execute();
            let mut out = Vec::new();
            while let Some(message) = stream
                .try_next()
                .await
                .map_err(|e| Error::netlink("list routes", e))?
            {
                out.extend(parse_entry(&message, &names));
            }
            out.sort();
            Ok(out)
        })
    }

    /// The route the kernel picks for packets to `dst` (`ip route get DST`: policy rules
    /// included), or the kernel's refusal (`Network is unreachable`) as an error.
    pub fn lookup(&self, dst: Ipv4Addr) -> Result<RouteEntry> {
        let handle = self.handle.clone();
        self.ns.run(async move {
            let names = Self::link_names(&handle).await?;
            let mut query = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst, 32)
                .build();
            query.header.table = 0;
            query.header.protocol = RouteProtocol::Unspec;
            query.header.kind = RouteType::Unspec;
            let mut stream = handle.route().get(query).execute();
            let op = || format!("route get {dst}");
            let message = stream
                .try_next()
                .await
                .map_err(|e| Error::netlink(op(), e))?
                .ok_or_else(|| Error::netlink(op(), "no answer"))?;
            parse_entry(&message, &names).ok_or_else(|| Error::netlink(op(), "unreadable answer"))
        })
    }

    /// The VXLAN link `name` as read back (`None`: no such link).
    pub fn vxlan(&self, name: &str) -> Result<Option<super::VxlanView>> {
        let (handle, name) = (self.handle.clone(), name.to_owned());
        let identity = self
            .ns
            .run(async move { vxlan_identity(&handle, &name).await })?;
        Ok(identity.map(|(vni, port, remote, mac)| super::VxlanView {
            vni,
            port,
            remote,
            mac: mac.and_then(|m| <[u8; 6]>::try_from(m.as_slice()).ok()),
        }))
    }

    /// Every link with its MTU, state and kind.
    pub fn links(&self) -> Result<Vec<LinkEntry>> {
        let handle = self.handle.clone();
        self.ns.run(async move {
            let mut out = Vec::new();
            let mut links = handle.link().get().execute();
            while let Some(link) = links
                .try_next()
                .await
                .map_err(|e| Error::netlink("list links", e))?
            {
                out.extend(parse_link(&link));
            }
            Ok(out)
        })
    }
}

fn parse_link(link: &LinkMessage) -> Option<LinkEntry> {
    let mut name = None;
    let mut mtu = None;
    let mut kind = None;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.iter().find_map(|info| match info {
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Some(LinkEntry {
        index: link.header.index,
        name: name?,
        mtu,
        up: link.header.flags.contains(LinkFlags::Up),
        kind,
    })
}

fn route_kind(kind: RouteType) -> RouteKind {
    match kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Local => RouteKind::Local,
        RouteType::Broadcast => RouteKind::Broadcast,
        RouteType::BlackHole => RouteKind::Blackhole,
        RouteType::Unreachable => RouteKind::Unreachable,
        RouteType::Prohibit => RouteKind::Prohibit,
        other => RouteKind::Other(u8::from(other)),
    }
}

/// Any IPv4 route message as a [`RouteEntry`] (a default route has no destination attribute).
fn parse_entry(message: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<RouteEntry> {
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut entry = RouteEntry {
        dst: Ipv4Net::default(),
        gateway: None,
        dev: None,
        protocol: u8::from(message.header.protocol),
        table: u32::from(message.header.table),
        kind: route_kind(message.header.kind),
        metric: 0,
        mtu: None,
    };
    for attr in &message.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => dst = *addr,
            RouteAttribute::Destination(_) => return None,
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => entry.gateway = Some(*addr),
            RouteAttribute::Oif(index) => entry.dev = names.get(index).cloned(),
            RouteAttribute::Table(table) => entry.table = *table,
            RouteAttribute::Priority(metric) => entry.metric = *metric,
            RouteAttribute::Metrics(metrics) => {
                entry.mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(mtu) => Some(*mtu),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    entry.dst = Ipv4Net::new(dst, message.header.destination_prefix_length).ok()?;
    Some(entry)
}

fn parse_route(message: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<Route> {
    let mut dst = None;
    let mut gateway = None;
    let mut dev = None;
    for attr in &message.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => dst = Some(*addr),
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            RouteAttribute::Oif(index) => dev = names.get(index).cloned(),
            _ => {}
        }
    }
    let dst = Ipv4Net::new(dst?, message.header.destination_prefix_length).ok()?;
    let onlink = message.header.flags.contains(RouteFlags::Onlink);
    let via = match (gateway, dev) {
        (Some(gateway), Some(dev)) if onlink => NextHop::Onlink(gateway, dev),
        (Some(gateway), dev) => NextHop::Via(gateway, dev),
        (None, dev) => NextHop::Dev(dev?),
    };
    Some(Route { dst, via })
}

impl RouteDriver for NetlinkRoutes {
    /// Written only when off: containers usually see `/proc/sys` read-only, and the node (or
    /// the CNI) has commonly turned forwarding on already.
    fn enable_forwarding(&mut self) -> Result<()> {
        const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
        // /proc/sys/net is resolved in the network namespace of the thread that opens it.
        self.ns.run_blocking(|| {
            if std::fs::read_to_string(PATH).is_ok_and(|v| v.trim() == "1") {
                return Ok(());
            }
            std::fs::write(PATH, "1").map_err(|err| {
                Error::Io(std::io::Error::new(
                    err.kind(),
                    format!(
                        "IPv4 forwarding is off and cannot be turned on ({err}): set \
                         net.ipv4.ip_forward=1 on the node (sysctl), or run the pod privileged"
                    ),
                ))
            })
        })
    }

    fn link_up(&mut self, name: &str, mtu: Option<u32>) -> Result<()> {
        let (handle, name) = (self.handle.clone(), name.to_owned());
        self.ns
            .run(async move { set_up(&handle, &name, mtu).await })
    }

    fn ensure_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let (handle, owned) = (self.handle.clone(), spec.clone());
        self.ns
            .run(async move { ensure_vxlan(&handle, &owned).await })?;
        if spec.loose_rp_filter {
            let path = format!("/proc/sys/net/ipv4/conf/{}/rp_filter", spec.name);
            // Best effort: /proc/sys may be read-only in a container; the node's own setting
            // (0 or 2, as most distributions set) works as well.
            let target = path.clone();
            let written = self.ns.run_blocking(move || std::fs::write(&target, "2"));
            if let Err(error) = written {
                tracing::warn!(%error, %path, "cannot set loose reverse-path filtering");
            }
        }
        Ok(())
    }

    fn reach(&mut self, dst: Ipv4Addr) -> Result<Reach> {
        let route = self.lookup(dst)?;
        let mtu = match &route.dev {
            Some(dev) => self.links()?.into_iter().find(|l| &l.name == dev),
            None => None,
        };
        Ok(Reach {
            gateway: route.gateway,
            dev: route.dev,
            mtu: mtu.and_then(|l| l.mtu),
        })
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        let (handle, name) = (self.handle.clone(), name.to_owned());
        self.ns
            .run(async move { delete_link(&handle, &name).await })
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        let handle = self.handle.clone();
        let protocol = self.protocol;
        self.ns.run(async move {
            let names = Self::link_names(&handle).await?;
            let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
            let mut stream = handle.route().get(query).execute();
            let mut out = Vec::new();
            while let Some(message) = stream
                .try_next()
                .await
                .map_err(|e| Error::netlink("list routes", e))?
            {
                if message.header.protocol == RouteProtocol::Other(protocol) {
                    out.extend(parse_route(&message, &names));
                }
            }
            Ok(out)
        })
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        let message = self.message(route)?;
        let (handle, dst) = (self.handle.clone(), route.dst);
        self.ns.run(async move {
            let added = handle.route().add(message).replace().execute().await;
            added.map_err(|e| Error::netlink(format!("add route {dst}"), e))
        })
    }

    fn del_route(&mut self, route: &Route) -> Result<()> {
        let mut message = self.message(route)?;
        // Any scope matches (as `ip route del` asks): a route of ours that was re-added by hand
        // with scope link must still go.
        message.header.scope = RouteScope::NoWhere;
        let (handle, dst) = (self.handle.clone(), route.dst);
        self.ns.run(async move {
            let deleted = handle.route().del(message).execute().await;
            deleted.map_err(|e| Error::netlink(format!("delete route {dst}"), e))
        })
    }
}

/// What identifies an existing VXLAN link: VNI, port, remote, MAC.
type VxlanIdentity = (Option<u32>, Option<u16>, Option<Ipv4Addr>, Option<Vec<u8>>);

async fn vxlan_identity(handle: &Handle, name: &str) -> Result<Option<VxlanIdentity>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) | Err(_) => return Ok(None),
    };
    let (mut vni, mut port, mut remote, mut mac) = (None, None, None, None);
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Address(bytes) => mac = Some(bytes.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(data)) = info {
                        for d in data {
                            match d {
                                InfoVxlan::Id(id) => vni = Some(*id),
                                InfoVxlan::Port(p) => port = Some(*p),
                                InfoVxlan::Group(ip) => remote = Some(*ip),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some((vni, port, remote, mac)))
}

/// Creates (or recreates, when it differs) the VXLAN link, then its address, neighbor entries,
/// MTU and state.
async fn ensure_vxlan(handle: &Handle, spec: &VxlanSpec) -> Result<()> {
    let op = |what: &str| format!("vxlan {} {what}", spec.name);
    let wanted_mac = spec.mac.map(|m| m.to_vec());
    if let Some((vni, port, remote, mac)) = vxlan_identity(handle, &spec.name).await? {
        let same = vni == Some(spec.vni)
            && port == Some(spec.port)
            && remote == spec.remote
            && (wanted_mac.is_none() || mac == wanted_mac);
        if !same {
            delete_link(handle, &spec.name).await?;
        }
    }
    if link_index(handle, &spec.name).await?.is_none() {
        let mut builder = LinkVxlan::new(&spec.name, spec.vni)
            .port(spec.port)
            .learning(false)
            .mtu(spec.mtu);
        if let Some(dev) = &spec.dev {
            let index = link_index(handle, dev)
                .await?
                .ok_or_else(|| Error::netlink(op("create"), format!("no underlay link {dev}")))?;
            builder = builder.dev(index);
        }
        if let Some(local) = spec.local {
            builder = builder.local(local);
        }
        if let Some(remote) = spec.remote {
            builder = builder.remote(remote);
        }
        if let Some(mac) = &wanted_mac {
            builder = builder.address(mac.clone());
        }
        let added = handle.link().add(builder.build()).execute().await;
        added.map_err(|e| Error::netlink(op("create"), e))?;
    }
    let index = link_index(handle, &spec.name)
        .await?
        .ok_or_else(|| Error::netlink(op("create"), "link missing after creation"))?;
    if let Some(address) = spec.address {
        let added = handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .replace()
            .execute()
            .await;
        added.map_err(|e| Error::netlink(format!("address {address}"), e))?;
    }
    for (ip, mac) in &spec.neighbors {
        let added = handle
            .neighbours()
            .add(index, IpAddr::V4(*ip))
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await;
        added.map_err(|e| Error::netlink(op(&format!("neighbor {ip}")), e))?;
    }
    set_up(handle, &spec.name, Some(spec.mtu)).await
}
