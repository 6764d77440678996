//! Tunnel: the WireGuard driver trait, its plain-data types, and the choice of backend.
//!
//! The kernel backend is used when the `wireguard` module is there (or a test link of kind
//! `wireguard` can be created); otherwise the userspace engine runs in-process. Both are
//! configured through `defguard_wireguard_rs` (netlink for the kernel, the UAPI socket for
//! userspace), so peers are added, updated in place and removed the same way.

pub mod fake;
pub mod linux;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use ipnet::Ipv4Net;

use crate::Result;
use crate::keys::{PrivateKey, PublicKey};

/// Which WireGuard implementation carries the packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The Linux kernel module.
    Kernel,
    /// The in-process userspace engine (Mullvad's `gotatun`), chosen by measurement.
    Userspace,
    /// Debian's `wireguard-go` as a child process: the benchmark's reference only.
    WireguardGo,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace (gotatun)",
            Backend::WireguardGo => "wireguard-go",
        })
    }
}

/// Device-level settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Interface name (unique on the host).
    pub ifname: String,
    /// Private key (redacted in `Debug`).
    pub private_key: PrivateKey,
    /// UDP listen port.
    pub listen_port: u16,
    /// MTU.
    pub mtu: u32,
    /// The interface's only address (a /32): the gateway's transit address. It makes the
    /// gateway answer probes through the tunnel and gives packets it sends into the tunnel a
    /// source its peers accept. `None` leaves the interface without an address.
    pub address: Option<Ipv4Addr>,
}

/// One peer as WireGuard sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPeer {
    /// Public key.
    pub public_key: PublicKey,
    /// Endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive seconds.
    pub keepalive: Option<u16>,
    /// AllowedIPs.
    pub allowed_ips: Vec<Ipv4Net>,
}

/// A peer as read back from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Public key.
    pub public_key: PublicKey,
    /// Current endpoint (updated by roaming).
    pub endpoint: Option<SocketAddr>,
    /// Last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Keepalive seconds.
    pub keepalive: Option<u16>,
    /// AllowedIPs, sorted.
    pub allowed_ips: Vec<Ipv4Net>,
}

impl PeerStatus {
    /// Whether the device already has `peer` exactly (so no update is needed).
    pub fn matches(&self, peer: &TunnelPeer) -> bool {
        let endpoint_ok = peer.endpoint.is_none() || peer.endpoint == self.endpoint;
        endpoint_ok && self.matches_but_endpoint(peer)
    }

    /// Whether the device has `peer`'s keepalive and allowed IPs, whatever its endpoint.
    pub fn matches_but_endpoint(&self, peer: &TunnelPeer) -> bool {
        let mut want = peer.allowed_ips.clone();
        want.sort();
        self.keepalive == peer.keepalive && self.allowed_ips == want
    }
}

/// A WireGuard device as read back for inspection: who runs it, its port, its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// The kernel module (a `wireguard` link) or a userspace engine (TUN + UAPI socket).
    pub backend: Backend,
    /// UDP listen port (0: none).
    pub listen_port: u16,
    /// Peers, sorted by key.
    pub peers: Vec<PeerStatus>,
}

/// Whether the running kernel offers WireGuard, as its files say (nothing is loaded or created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// `/sys/module/wireguard` exists.
    Loaded,
    /// Compiled into the kernel (`modules.builtin`).
    Builtin,
    /// Installed for this kernel (`modules.dep`) but not loaded: `modprobe wireguard` loads it.
    Loadable,
    /// Not found for kernel `release`; `modules_dir` says whether `/lib/modules/<release>` exists.
    Missing {
        /// `uname -r`.
        release: String,
        /// Whether the kernel's module directory exists at all.
        modules_dir: bool,
    },
}

/// Decides the [`ModuleState`] from what the files hold (pure).
pub fn module_state(
    loaded: bool,
    release: &str,
    modules_dep: Option<&str>,
    modules_builtin: Option<&str>,
) -> ModuleState {
    let lists = |text: Option<&str>| {
        text.unwrap_or_default().lines().any(|line| {
            let path = line.split(':').next().unwrap_or_default().trim();
            let file = path.rsplit('/').next().unwrap_or_default();
            file == "wireguard.ko" || file.starts_with("wireguard.ko.")
        })
    };
    if loaded {
        ModuleState::Loaded
    } else if lists(modules_builtin) {
        ModuleState::Builtin
    } else if lists(modules_dep) {
        ModuleState::Loadable
    } else {
        ModuleState::Missing {
            release: release.to_owned(),
            modules_dir: modules_dep.is_some() || modules_builtin.is_some(),
        }
    }
}

/// One WireGuard interface in one namespace.
pub trait TunnelDriver: Send {
    /// The backend in use.
    fn backend(&self) -> Backend;
    /// Creates the interface if needed and sets key, port, MTU and address (exactly the one
    /// asked for, idempotently); existing peers are kept when key and port are unchanged.
    /// Returns whether the interface was created now.
    fn ensure_device(&mut self, config: &DeviceConfig) -> Result<bool>;
    /// Peers and their statistics.
    fn peers(&self) -> Result<Vec<PeerStatus>>;
    /// Adds a peer, or updates it in place (its session survives).
    fn set_peer(&mut self, peer: &TunnelPeer) -> Result<()>;
    /// Removes a peer; the others are not disturbed.
    fn remove_peer(&mut self, key: &PublicKey) -> Result<()>;
    /// Removes the interface (and stops the engine).
    fn remove_device(&mut self) -> Result<()>;
    /// Removes an interface named `ifname` that this driver does not run: what an earlier
    /// leader left on this node (a kernel link, a userspace engine's stale socket). One this
    /// driver runs, or a userspace socket someone still answers on, is left alone. Returns
    /// whether an interface was removed.
    fn remove_leftover(&mut self, ifname: &str) -> Result<bool>;
    /// Clean shutdown (SIGTERM): stops a userspace engine, whose interface goes with it, and
    /// removes its socket; a kernel interface stays so traffic flows across a restart.
    fn stop(&mut self) -> Result<()>;
}

/// What the host offers for WireGuard.
pub trait KernelProbe {
    /// `/sys/module/wireguard` exists.
    fn module_loaded(&self) -> bool;
    /// A link of kind `wireguard` can be created (autoloads the module where allowed).
    fn can_create_link(&self) -> bool;
}

/// Kernel when the module is there or can be loaded, the userspace engine otherwise.
pub fn select_backend(probe: &dyn KernelProbe) -> Backend {
    if probe.module_loaded() || probe.can_create_link() {
        Backend::Kernel
    } else {
        Backend::Userspace
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::fake::FakeProbe;

    #[test]
    fn kernel_is_chosen_when_the_module_is_loaded() {
        let probe = FakeProbe {
            module: true,
            create: false,
        };
        assert_eq!(select_backend(&probe), Backend::Kernel);
    }

    #[test]
    fn kernel_is_chosen_when_a_link_can_be_created() {
        let probe = FakeProbe {
            module: false,
            create: true,
        };
        assert_eq!(select_backend(&probe), Backend::Kernel);
    }

    #[test]
    fn module_state_reads_the_module_lists() {
        let dep = "kernel/net/ipv4/udp_tunnel.ko:\nkernel/drivers/net/wireguard/wireguard.ko.xz: kernel/net/ipv4/udp_tunnel.ko\n";
        assert_eq!(
            module_state(false, "6.1.0", Some(dep), Some("")),
            ModuleState::Loadable
        );
        assert_eq!(module_state(true, "6.1.0", None, None), ModuleState::Loaded);
        let builtin = "kernel/drivers/net/wireguard/wireguard.ko\n";
        assert_eq!(
            module_state(false, "6.1.0", Some(""), Some(builtin)),
            ModuleState::Builtin
        );
        assert_eq!(
            module_state(false, "6.18", None, None),
            ModuleState::Missing {
                release: "6.18".into(),
                modules_dir: false
            }
        );
        let other = "kernel/drivers/net/wireguard_extra.ko:\n";
        assert!(matches!(
            module_state(false, "6.1.0", Some(other), None),
            ModuleState::Missing {
                modules_dir: true,
                ..
            }
        ));
    }

    #[test]
    fn userspace_is_the_fallback() {
        let probe = FakeProbe {
            module: false,
            create: false,
        };
        assert_eq!(select_backend(&probe), Backend::Userspace);
    }
}
