//! The Linux tunnel driver: kernel WireGuard over netlink, or an in-process userspace engine
//! (or, for the benchmark's reference, a `wireguard-go` child) over the UAPI socket — all
//! configured through `defguard_wireguard_rs`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{
    InterfaceConfiguration, Kernel, Userspace, WGApi, WireguardInterfaceApi,
};
use gotatun::device::{DefaultDeviceTransports, Device, DeviceBuilder, uapi::UapiServer};
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::{Handle, LinkWireguard};

use super::{
    Backend, DeviceConfig, DeviceView, KernelProbe, ModuleState, PeerStatus, TunnelDriver,
    TunnelPeer, module_state, select_backend,
};
use crate::keys::PublicKey;
use crate::netlink::{
    connect, delete_link, link_index, link_kind, set_only_address, set_txqueuelen, set_up,
};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// Directory of the userspace UAPI sockets (shared by every namespace on the host).
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// UDP socket buffers of the userspace engine (wireguard-go uses 7 MiB; rmem_max caps it).
const UDP_BUFFER: usize = 4 << 20;

/// Transmit queue of the tunnel link. The default (500) overflows when a userspace engine
/// falls behind for a moment on a busy host, and every drop costs TCP a retransmission.
const TUN_TXQUEUELEN: u32 = 2000;

/// What runs the packets for a userspace interface.
enum Engine {
    None,
    Gotatun(Device<DefaultDeviceTransports>),
    WireguardGo(Child),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::None => "None",
            Engine::Gotatun(_) => "Gotatun",
            Engine::WireguardGo(_) => "WireguardGo",
        })
    }
}

/// One WireGuard interface in one namespace.
#[derive(Debug)]
pub struct WireguardTunnel {
    ns: Arc<NsRuntime>,
    handle: Handle,
    backend: Backend,
    ifname: Option<String>,
    engine: Engine,
}

/// Probes the kernel of the runtime's namespace.
#[derive(Debug)]
pub struct LinuxProbe {
    ns: Arc<NsRuntime>,
}

impl LinuxProbe {
    /// A probe working in `ns`.
    pub fn new(ns: Arc<NsRuntime>) -> Self {
        LinuxProbe { ns }
    }
}

impl KernelProbe for LinuxProbe {
    fn module_loaded(&self) -> bool {
        std::path::Path::new("/sys/module/wireguard").exists()
    }

    fn can_create_link(&self) -> bool {
        let Ok(handle) = connect(&self.ns) else {
            return false;
        };
        let name = format!("istprobe{}", std::process::id() % 100_000);
        self.ns.run(async move {
            let created = handle
                .link()
                .add(LinkWireguard::new(&name).build())
                .execute()
                .await
                .is_ok();
            if created {
                let _ = delete_link(&handle, &name).await;
            }
            created
        })
    }
}

/// What the running kernel's files say about the WireGuard module (reads only; unlike
/// [`detect_backend`] it creates no test link and loads nothing).
pub fn wireguard_module() -> ModuleState {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let read = |file: &str| std::fs::read_to_string(format!("/lib/modules/{release}/{file}")).ok();
    module_state(
        std::path::Path::new("/sys/module/wireguard").exists(),
        &release,
        read("modules.dep").as_deref(),
        read("modules.builtin").as_deref(),
    )
}

/// Reads the WireGuard device `ifname` of the runtime's namespace without changing it: a link
/// of kind `wireguard` is read over netlink, anything else through the userspace UAPI socket.
/// `None` when there is no link of that name.
pub fn read_device(ns: &Arc<NsRuntime>, ifname: &str) -> Result<Option<DeviceView>> {
    let handle = connect(ns)?;
    let name = ifname.to_owned();
    let kind = ns.run(async move { link_kind(&handle, &name).await })?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let backend = if kind.as_deref() == Some("wireguard") {
        Backend::Kernel
    } else if socket_path(ifname).exists() {
        Backend::Userspace
    } else {
        return Err(Error::tunnel(
            ifname,
            format!(
                "a {} link without a WireGuard UAPI socket ({})",
                kind.as_deref().unwrap_or("(unknown kind)"),
                socket_path(ifname).display()
            ),
        ));
    };
    let name = ifname.to_owned();
    let host = ns.run_blocking(move || {
        if backend == Backend::Kernel {
            let api = WGApi::<Kernel>::new(name.clone()).map_err(tunnel_err(&name))?;
            api.read_interface_data().map_err(tunnel_err(&name))
        } else {
            let api = WGApi::<Userspace>::new(name.clone()).map_err(tunnel_err(&name))?;
            api.read_host().map_err(|e| Error::tunnel(&name, e))
        }
    })?;
    let mut peers: Vec<PeerStatus> = host.peers.values().map(from_peer).collect();
    peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    Ok(Some(DeviceView {
        backend,
        listen_port: host.listen_port,
        peers,
    }))
}

/// The backend this namespace's kernel supports: kernel if possible, userspace otherwise.
pub fn detect_backend(ns: &Arc<NsRuntime>) -> Backend {
    select_backend(&LinuxProbe::new(ns.clone()))
}

fn tunnel_err(
    ifname: &str,
) -> impl Fn(defguard_wireguard_rs::error::WireguardInterfaceError) -> Error + '_ {
    move |err| Error::tunnel(ifname, err)
}

fn to_peer(peer: &TunnelPeer) -> Peer {
    let mut out = Peer::new(peer.public_key.to_key());
    out.endpoint = peer.endpoint;
    out.persistent_keepalive_interval = peer.keepalive;
    out.allowed_ips = peer
        .allowed_ips
        .iter()
        .map(|net| IpAddrMask::new(IpAddr::V4(net.network()), net.prefix_len()))
        .collect();
    out
}

fn from_peer(peer: &Peer) -> PeerStatus {
    let mut allowed_ips: Vec<Ipv4Net> = peer
        .allowed_ips
        .iter()
        .filter_map(|mask| match IpNet::new(mask.address, mask.cidr) {
            Ok(IpNet::V4(net)) => Some(net.trunc()),
            _ => None,
        })
        .collect();
    allowed_ips.sort();
    PeerStatus {
        public_key: PublicKey::from_key(&peer.public_key),
        endpoint: peer.endpoint,
        last_handshake: peer.last_handshake.filter(|t| *t != std::time::UNIX_EPOCH),
        rx_bytes: peer.rx_bytes,
        tx_bytes: peer.tx_bytes,
        keepalive: peer.persistent_keepalive_interval.filter(|k| *k != 0),
        allowed_ips,
    }
}

fn socket_path(ifname: &str) -> PathBuf {
    PathBuf::from(format!("{UAPI_DIR}/{ifname}.sock"))
}

impl WireguardTunnel {
    /// A driver with the backend chosen by probing the namespace's kernel.
    pub fn auto(ns: Arc<NsRuntime>) -> Result<Self> {
        let backend = detect_backend(&ns);
        Self::with_backend(ns, backend)
    }

    /// A driver with a given backend.
    pub fn with_backend(ns: Arc<NsRuntime>, backend: Backend) -> Result<Self> {
        let handle = connect(&ns)?;
        Ok(WireguardTunnel {
            ns,
            handle,
            backend,
            ifname: None,
            engine: Engine::None,
        })
    }

    fn ifname(&self) -> Result<String> {
        self.ifname
            .clone()
            .ok_or_else(|| Error::tunnel("(none)", "device not created yet"))
    }

    fn exists(&self, ifname: &str) -> Result<bool> {
        let (handle, name) = (self.handle.clone(), ifname.to_owned());
        Ok(self
            .ns
            .run(async move { link_index(&handle, &name).await })?
            .is_some())
    }

    /// Creates the interface: a kernel link, or a userspace engine on the namespace's threads.
    fn create(&mut self, config: &DeviceConfig) -> Result<()> {
        let name = config.ifname.clone();
        if self.backend != Backend::Kernel
            && std::os::unix::net::UnixStream::connect(socket_path(&name)).is_ok()
        {
            // The socket directory is shared by all namespaces: never take over a live engine.
            return Err(Error::tunnel(
                &name,
                "a userspace engine with this name runs on this host",
            ));
        }
        match self.backend {
            Backend::Kernel => self.ns.run_blocking(move || {
                let mut api = WGApi::<Kernel>::new(name.clone()).map_err(tunnel_err(&name))?;
                api.create_interface().map_err(tunnel_err(&name))
            })?,
            Backend::Userspace => {
                // Key and port are set afterwards over UAPI: only a change of them makes the
                // engine bind its UDP socket (on this namespace's threads).
                let device = self.ns.run(async move {
                    let uapi = UapiServer::default_unix_socket(&name, None, None)
                        .map_err(|e| Error::tunnel(&name, e))?;
                    let udp = DeviceBuilder::new().with_default_udp();
                    let udp = udp
                        .udp_recv_buffer_size(UDP_BUFFER)
                        .udp_send_buffer_size(UDP_BUFFER);
                    let builder = udp.create_tun(&name);
                    let builder = builder.map_err(|e| Error::tunnel(&name, e))?;
                    let builder = builder.with_uapi(uapi);
                    builder.build().await.map_err(|e| Error::tunnel(&name, e))
                })?;
                self.engine = Engine::Gotatun(device);
            }
            Backend::WireguardGo => {
                let child = self.ns.run_blocking(move || {
                    Command::new("wireguard-go")
                        .arg("-f")
                        .arg(&name)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                })?;
                self.engine = Engine::WireguardGo(child);
                wait_for_socket(&config.ifname)?;
            }
        }
        Ok(())
    }

    fn read_host(&self, ifname: &str) -> Result<Host> {
        let name = ifname.to_owned();
        let kernel = self.backend == Backend::Kernel;
        self.ns.run_blocking(move || {
            if kernel {
                let api = WGApi::<Kernel>::new(name.clone()).map_err(tunnel_err(&name))?;
                api.read_interface_data().map_err(tunnel_err(&name))
            } else {
                let api = WGApi::<Userspace>::new(name.clone()).map_err(tunnel_err(&name))?;
                api.read_host().map_err(|e| Error::tunnel(&name, e))
            }
        })
    }

    /// Sets key and port (this replaces the peer list, so it is only done when they differ).
    fn write_host(&self, config: &DeviceConfig) -> Result<()> {
        let name = config.ifname.clone();
        let key = Key::new(config.private_key.secret_bytes());
        let port = config.listen_port;
        let kernel = self.backend == Backend::Kernel;
        self.ns.run_blocking(move || {
            if kernel {
                let api = WGApi::<Kernel>::new(name.clone()).map_err(tunnel_err(&name))?;
                let config = InterfaceConfiguration {
                    name: name.clone(),
                    prvkey: key.to_string(),
                    addresses: Vec::new(),
                    port,
                    peers: Vec::new(),
                    mtu: None,
                    fwmark: None,
                };
                api.configure_interface(&config).map_err(tunnel_err(&name))
            } else {
                let api = WGApi::<Userspace>::new(name.clone()).map_err(tunnel_err(&name))?;
                api.write_host(&Host::new(port, key))
                    .map_err(|e| Error::tunnel(&name, e))
            }
        })
    }

    fn stop_engine(&mut self, ifname: &str) -> Result<()> {
        match std::mem::replace(&mut self.engine, Engine::None) {
            Engine::None => {}
            Engine::Gotatun(device) => self.ns.run(async move { device.stop().await }),
            Engine::WireguardGo(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        match std::fs::remove_file(socket_path(ifname)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
            _ => {}
        }
        self.wait_link_gone(ifname)
    }

    /// The engine's last tasks close the TUN device shortly after it stops; wait for the link
    /// to go so that a new engine can take the name at once.
    fn wait_link_gone(&self, ifname: &str) -> Result<()> {
        let start = Instant::now();
        while self.exists(ifname)? {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(Error::tunnel(
                    ifname,
                    "interface still present after the engine stopped",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

fn wait_for_socket(ifname: &str) -> Result<()> {
    let path = socket_path(ifname);
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(Error::tunnel(
                ifname,
                "wireguard-go did not open its UAPI socket",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl TunnelDriver for WireguardTunnel {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn ensure_device(&mut self, config: &DeviceConfig) -> Result<bool> {
        let running = match self.backend {
            Backend::Kernel => self.exists(&config.ifname)?,
            _ => !matches!(self.engine, Engine::None),
        };
        if !running {
            if self.backend != Backend::Kernel && self.exists(&config.ifname)? {
                return Err(Error::tunnel(
                    &config.ifname,
                    "an interface with this name already exists",
                ));
            }
            self.create(config)?;
        }
        self.ifname = Some(config.ifname.clone());
        let host = self.read_host(&config.ifname)?;
        let key_ok =
            host.private_key.as_ref().map(Key::as_array) == Some(config.private_key.secret_bytes());
        if !key_ok || host.listen_port != config.listen_port {
            self.write_host(config)?;
        }
        let (handle, name, mtu) = (self.handle.clone(), config.ifname.clone(), config.mtu);
        let address = config.address;
        self.ns.run(async move {
            set_up(&handle, &name, Some(mtu)).await?;
            set_txqueuelen(&handle, &name, TUN_TXQUEUELEN).await?;
            set_only_address(&handle, &name, address).await
        })?;
        Ok(!running)
    }

    fn peers(&self) -> Result<Vec<PeerStatus>> {
        let ifname = self.ifname()?;
        let host = self.read_host(&ifname)?;
        let mut peers: Vec<PeerStatus> = host.peers.values().map(from_peer).collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        Ok(peers)
    }

    fn set_peer(&mut self, peer: &TunnelPeer) -> Result<()> {
        let name = self.ifname()?;
        let peer = to_peer(peer);
        let kernel = self.backend == Backend::Kernel;
        self.ns.run_blocking(move || {
            if kernel {
                WGApi::<Kernel>::new(name.clone()).and_then(|api| api.configure_peer(&peer))
            } else {
                WGApi::<Userspace>::new(name.clone()).and_then(|api| api.configure_peer(&peer))
            }
            .map_err(tunnel_err(&name))
        })
    }

    fn remove_peer(&mut self, key: &PublicKey) -> Result<()> {
        let name = self.ifname()?;
        let key = key.to_key();
        let kernel = self.backend == Backend::Kernel;
        self.ns.run_blocking(move || {
            if kernel {
                WGApi::<Kernel>::new(name.clone()).and_then(|api| api.remove_peer(&key))
            } else {
                WGApi::<Userspace>::new(name.clone()).and_then(|api| api.remove_peer(&key))
            }
            .map_err(tunnel_err(&name))
        })
    }

    fn stop(&mut self) -> Result<()> {
        match self.ifname.clone() {
            Some(ifname) if !matches!(self.engine, Engine::None) => self.stop_engine(&ifname),
            _ => Ok(()),
        }
    }

    fn remove_leftover(&mut self, ifname: &str) -> Result<bool> {
        self.remove_leftover_link(ifname)
    }

    fn remove_device(&mut self) -> Result<()> {
        let Some(ifname) = self.ifname.take() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        if let Err(err) = self.stop_engine(&ifname) {
            errors.push(err);
        }
        let handle = self.handle.clone();
        let name = ifname.clone();
        if let Err(err) = self
            .ns
            .run(async move { delete_link(&handle, &name).await })
        {
            errors.push(err);
        }
        Error::collect(errors)
    }
}

impl WireguardTunnel {
    /// [`TunnelDriver::remove_leftover`].
    fn remove_leftover_link(&mut self, ifname: &str) -> Result<bool> {
        if self.ifname.as_deref() == Some(ifname) {
            return Ok(false);
        }
        let socket = socket_path(ifname);
        // Someone answers on the UAPI socket: a live engine (in the lab, another node's),
        // not a leftover.
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(false);
        }
        match std::fs::remove_file(&socket) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
            _ => {}
        }
        if !self.exists(ifname)? {
            return Ok(false);
        }
        let (handle, name) = (self.handle.clone(), ifname.to_owned());
        self.ns
            .run(async move { delete_link(&handle, &name).await })?;
        Ok(true)
    }
}

impl Drop for WireguardTunnel {
    /// A userspace engine dies with its driver; its socket file must not outlive it. Inside an
    /// async context the engine is stopped in the background instead of blocking.
    fn drop(&mut self) {
        let Some(ifname) = self.ifname.clone() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = self.stop_engine(&ifname);
            return;
        }
        match std::mem::replace(&mut self.engine, Engine::None) {
            Engine::Gotatun(device) => {
                drop(self.ns.handle().spawn(async move { device.stop().await }))
            }
            Engine::WireguardGo(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Engine::None => return,
        }
        let _ = std::fs::remove_file(socket_path(&ifname));
    }
}
