//! The node overlay, planned as pure data: whether a node reaches the gateway node directly or
//! over VXLAN ([`choose`]), and the VXLAN link each role wants ([`sender_link`],
//! [`receiver_link`]).
//!
//! No overlay addressing: a node routes the remote ranges `via <gateway node IP> dev isthmus-vx0
//! onlink`, with a permanent neighbor entry that gives that next hop the gateway node's overlay
//! MAC, and the link's default (all-zeros) FDB entry sends every frame unicast to the gateway
//! node's IP (no multicast, no learning). The MAC is derived from the gateway node's IP
//! ([`overlay_mac`]), so the gateway node's link (no remote: it only receives) and every sender
//! agree without exchanging anything: no node list, no extra permission. Replies to the node's
//! pods come back the way any pod traffic between nodes does (the CNI's path), hence loose
//! reverse-path filtering on the receiving link, which also carries a link-local address
//! ([`RECEIVER_ADDRESS`]) because the kernel's reverse-path check refuses packets arriving on a
//! link with none.

use std::net::Ipv4Addr;

use super::VxlanSpec;

/// The overlay link's name on every node that uses or terminates it.
pub const OVERLAY_LINK: &str = "isthmus-vx0";
/// Default VXLAN network identifier.
pub const DEFAULT_VNI: u32 = 4801;
/// Default UDP port: not 4789 (Calico, Antrea, the kernel's IANA default) nor 8472 (flannel,
/// Cilium), so a CNI's own VXLAN never shares our socket.
pub const DEFAULT_PORT: u16 = 4801;
/// The receiving end's own address (link-local, a /32 of no subnet). The kernel's reverse-path
/// check refuses every packet arriving on a link without an IPv4 address whenever `rp_filter`
/// is on (strict or loose); with it, loose filtering accepts the worker pods' packets whose
/// replies leave by the CNI's path.
pub const RECEIVER_ADDRESS: &str = "169.254.48.1/32";
/// What VXLAN adds to an inner packet on an IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 +
/// inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The underlay MTU assumed where none can be read (the receiving link never sends).
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;

/// When a node uses the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayMode {
    /// When the gateway node is not on-link (the kernel's route to it has a gateway).
    #[default]
    Auto,
    /// Always, even on the gateway node's L2.
    Always,
    /// Never: a direct next hop only (nodes share the gateway node's L2); no link anywhere.
    Never,
}

impl std::str::FromStr for OverlayMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(OverlayMode::Auto),
            "always" => Ok(OverlayMode::Always),
            "never" => Ok(OverlayMode::Never),
            other => Err(format!(
                "overlay mode {other:?} is not one of auto, always, never"
            )),
        }
    }
}

impl std::fmt::Display for OverlayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OverlayMode::Auto => "auto",
            OverlayMode::Always => "always",
            OverlayMode::Never => "never",
        })
    }
}

/// The overlay's configuration (chart values `routeAgent.overlay.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlaySettings {
    pub mode: OverlayMode,
    pub vni: u32,
    pub port: u16,
}

impl Default for OverlaySettings {
    fn default() -> Self {
        OverlaySettings {
            mode: OverlayMode::Auto,
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
        }
    }
}

/// How the kernel of this node reaches an address (`ip route get`), as the driver observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The next hop, when the address is not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// The output device.
    pub dev: Option<String>,
    /// That device's MTU.
    pub mtu: Option<u32>,
}

impl Reach {
    /// Directly connected on `dev`.
    pub fn on_link(dev: &str, mtu: u32) -> Self {
        Reach {
            gateway: None,
            dev: Some(dev.to_owned()),
            mtu: Some(mtu),
        }
    }

    /// Through the router `gateway` on `dev`.
    pub fn routed(gateway: Ipv4Addr, dev: &str, mtu: u32) -> Self {
        Reach {
            gateway: Some(gateway),
            ..Reach::on_link(dev, mtu)
        }
    }
}

/// Whether to reach the gateway node over the overlay: `reach` is the kernel's route to it
/// (`None`: unknown, no route; the overlay cannot help either, so direct, which fails loudly).
pub fn choose(mode: OverlayMode, reach: Option<&Reach>) -> bool {
    match mode {
        OverlayMode::Always => true,
        OverlayMode::Never => false,
        OverlayMode::Auto => reach.is_some_and(|r| r.gateway.is_some()),
    }
}

/// The overlay MAC of the node whose underlay address is `ip`: locally administered, unicast,
/// `02:49:` + the four address bytes ("I" for isthmus).
pub fn overlay_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x49, a, b, c, d]
}

/// The link of a node that sends to the gateway node `gateway`, reached as `reach`: remote and
/// neighbor entry pointing at the gateway node, MTU the underlay's minus [`VXLAN_OVERHEAD`].
/// `own_mac` is set when this node also receives as a gateway node (during a gateway move).
pub fn sender_link(
    settings: &OverlaySettings,
    gateway: Ipv4Addr,
    reach: Option<&Reach>,
    own_mac: Option<[u8; 6]>,
) -> VxlanSpec {
    let underlay = reach.and_then(|r| r.mtu).unwrap_or(DEFAULT_UNDERLAY_MTU);
    let receiver = receiver_link(settings, gateway);
    VxlanSpec {
        mac: own_mac,
        address: own_mac.and(receiver.address),
        remote: Some(gateway),
        neighbors: vec![(gateway, overlay_mac(gateway))],
        mtu: underlay.saturating_sub(VXLAN_OVERHEAD),
        ..receiver
    }
}

/// The link of the gateway node whose address (the TunnelEndpoints' `gatewayIP`) is `gateway`:
/// no remote, the MAC every sender expects, loose reverse-path filtering (replies leave by the
/// CNI's path, not this link).
pub fn receiver_link(settings: &OverlaySettings, gateway: Ipv4Addr) -> VxlanSpec {
    VxlanSpec {
        name: OVERLAY_LINK.to_owned(),
        vni: settings.vni,
        port: settings.port,
        mtu: DEFAULT_UNDERLAY_MTU - VXLAN_OVERHEAD,
        mac: Some(overlay_mac(gateway)),
        dev: None,
        local: None,
        remote: None,
        address: Some(RECEIVER_ADDRESS.parse().expect("literal")),
        neighbors: Vec::new(),
        loose_rp_filter: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn auto_uses_the_overlay_only_when_the_gateway_node_is_routed() {
        let on_link = Reach::on_link("eth0", 1500);
        let routed = Reach::routed(ip("172.16.1.1"), "eth0", 1500);
        assert!(!choose(OverlayMode::Auto, Some(&on_link)));
        assert!(choose(OverlayMode::Auto, Some(&routed)));
        assert!(!choose(OverlayMode::Auto, None));
        assert!(choose(OverlayMode::Always, Some(&on_link)));
        assert!(!choose(OverlayMode::Never, Some(&routed)));
    }

    #[test]
    fn both_ends_agree_on_the_gateway_mac() {
        let settings = OverlaySettings::default();
        let gw = ip("172.16.0.10");
        let reach = Reach::routed(ip("172.16.1.1"), "eth0", 9000);
        let sender = sender_link(&settings, gw, Some(&reach), None);
        let receiver = receiver_link(&settings, gw);
        assert_eq!(sender.neighbors, vec![(gw, [2, 0x49, 172, 16, 0, 10])]);
        assert_eq!(receiver.mac, Some([2, 0x49, 172, 16, 0, 10]));
        assert_eq!((sender.remote, receiver.remote), (Some(gw), None));
        assert_eq!(sender.address, None);
        assert_eq!(receiver.address.unwrap().to_string(), "169.254.48.1/32");
        assert_eq!(sender.mtu, 8950);
        assert_eq!(sender_link(&settings, gw, None, None).mtu, 1450);
        assert_eq!((sender.vni, sender.port), (4801, 4801));
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in ["auto", "always", "never"] {
            assert_eq!(mode.parse::<OverlayMode>().unwrap().to_string(), mode);
        }
        assert!("sometimes".parse::<OverlayMode>().is_err());
    }
}
