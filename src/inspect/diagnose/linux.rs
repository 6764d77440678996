//! The Linux [`NodeObserver`]: reads one network namespace through the dataplane's own drivers
//! (routes, links and route lookups over rtnetlink, the nftables table with `nft -j`, the
//! WireGuard device over netlink or its UAPI socket, the module state from the kernel's files)
//! plus the namespace's UDP sockets from `/proc/thread-self/net/udp{,6}`. It changes nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use isthmus_dataplane::firewall::view::TableView;
use isthmus_dataplane::firewall::{TABLE, nft};
use isthmus_dataplane::node_nat::NODE_TABLE;
use isthmus_dataplane::routes::RouteDriver as _;
use isthmus_dataplane::routes::linux::NetlinkRoutes;
use isthmus_dataplane::routes::overlay::OVERLAY_LINK;
use isthmus_dataplane::tunnel::linux::{read_device, wireguard_module};
use isthmus_dataplane::{Netns, NsRuntime};

use super::Error;
use super::facts::{NodeFacts, NodeObserver, ObserveRequest, Observed};

/// Observes the kernel of one network namespace.
#[derive(Debug)]
pub struct LinuxObserver {
    ns: Arc<NsRuntime>,
}

impl LinuxObserver {
    /// An observer inside `netns` (the current one, or a named one such as a lab node's).
    pub fn new(netns: Netns) -> Result<Self, Error> {
        let ns = NsRuntime::new(netns, 1).map_err(|e| Error::Setup(e.to_string()))?;
        Ok(LinuxObserver { ns })
    }
}

fn text<T, E: ToString>(r: Result<T, E>) -> Observed<T> {
    r.map_err(|e| e.to_string())
}

/// `host:port` → an IPv4 socket address, as the gateway resolves endpoints.
fn resolve(endpoint: &str) -> Observed<SocketAddr> {
    match endpoint.parse::<SocketAddr>() {
        Ok(addr @ SocketAddr::V4(_)) => Ok(addr),
        Ok(SocketAddr::V6(_)) => Err("IPv6 endpoints are not supported".into()),
        Err(_) => endpoint
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| "no IPv4 address".into()),
    }
}

/// Local addresses of the sockets in a `/proc/net/udp` or `udp6` table (pure).
pub fn parse_proc_udp(table: &str) -> Vec<SocketAddr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| parse_local(line.split_whitespace().nth(1)?))
        .collect()
}

fn parse_local(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address as a number in the host's byte order:
    // the number's native bytes are the address bytes in network order.
    let bytes: Vec<u8> = (0..addr.len() / 8)
        .map(|k| u32::from_str_radix(addr.get(k * 8..k * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?
        .into_iter()
        .flat_map(u32::to_ne_bytes)
        .collect();
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

impl LinuxObserver {
    /// `rp_filter` of `all` and of every link, from the namespace's `/proc/sys`.
    fn rp_filter(&self) -> Observed<std::collections::BTreeMap<String, u8>> {
        self.ns.run_blocking(|| {
            let dir = "/proc/sys/net/ipv4/conf";
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
            let mut out = std::collections::BTreeMap::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let value = std::fs::read_to_string(entry.path().join("rp_filter"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                if let Some(value) = value {
                    out.insert(name, value);
                }
            }
            Ok(out)
        })
    }

    fn udp_sockets(&self) -> Observed<Vec<SocketAddr>> {
        self.ns.run_blocking(|| {
            let mut out = Vec::new();
            for file in ["udp", "udp6"] {
                // thread-self: /proc/self/net would show the namespace of the process's main thread.
                match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
                    Ok(table) => out.extend(parse_proc_udp(&table)),
                    Err(err) if file == "udp6" && err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(format!("/proc/thread-self/net/{file}: {err}")),
                }
            }
            Ok(out)
        })
    }
}

impl NodeObserver for LinuxObserver {
    fn observe(&self, request: &ObserveRequest) -> NodeFacts {
        let routes = NetlinkRoutes::new(self.ns.clone());
        let (links, all, lookup) = match &routes {
            Ok(r) => (text(r.links()), text(r.all_routes()), Some(r)),
            Err(err) => (Err(err.to_string()), Err(err.to_string()), None),
        };
        let endpoints: std::collections::BTreeMap<String, Observed<SocketAddr>> = request
            .endpoints
            .iter()
            .map(|e| (e.clone(), resolve(e)))
            .collect();
        let mut lookups = std::collections::BTreeMap::new();
        for addr in endpoints.values().flatten() {
            if let (IpAddr::V4(v4), Some(r)) = (addr.ip(), lookup) {
                lookups.insert(v4, text(r.lookup(v4)));
            }
        }
        let table = text(nft::read_table(&self.ns, TABLE))
            .map(|listing| listing.map(|l| TableView::from_listing(&l, TABLE)));
        let node_table = text(nft::read_table(&self.ns, NODE_TABLE))
            .map(|listing| listing.map(|l| TableView::from_listing(&l, NODE_TABLE)));
        let mut reach = std::collections::BTreeMap::new();
        let overlay = match &routes {
            Ok(r) => {
                let mut driver = NetlinkRoutes::new(self.ns.clone());
                for gateway in &request.gateways {
                    let found = match &mut driver {
                        Ok(d) => text(d.reach(*gateway)),
                        Err(err) => Err(err.to_string()),
                    };
                    reach.insert(*gateway, found);
                }
                text(r.vxlan(OVERLAY_LINK))
            }
            Err(err) => Err(err.to_string()),
        };
        NodeFacts {
            module: wireguard_module(),
            links,
            routes: all,
            table,
            device: text(read_device(&self.ns, &request.interface)),
            udp_sockets: self.udp_sockets(),
            endpoints,
            lookups,
            reach,
            overlay,
            node_table,
            rp_filter: self.rp_filter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_udp_tables_parse_both_families() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                  12: 00000000:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0\n\
                  13: 0A64A8C0:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0\n";
        assert_eq!(
            parse_proc_udp(v4),
            [
                "0.0.0.0:51820".parse::<SocketAddr>().unwrap(),
                "192.168.100.10:53".parse().unwrap()
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st\n\
                  5: 00000000000000000000000001000000:CA6C 00000000000000000000000000000000:0000 07\n";
        assert_eq!(
            parse_proc_udp(v6),
            ["[::1]:51820".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn endpoints_resolve_like_the_gateway_does() {
        assert_eq!(resolve("192.168.100.10:51820").unwrap().port(), 51820);
        assert!(resolve("[::1]:51820").unwrap_err().contains("IPv6"));
        assert!(resolve("no-such-host.invalid:51820").is_err());
    }
}
