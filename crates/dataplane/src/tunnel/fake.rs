//! A recording tunnel driver and a fake kernel probe for unit tests.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{Backend, DeviceConfig, KernelProbe, PeerStatus, TunnelDriver, TunnelPeer};
use crate::Result;
use crate::keys::PublicKey;

/// A probe that answers what it is told.
#[derive(Debug, Clone, Copy)]
pub struct FakeProbe {
    /// Answer of `module_loaded`.
    pub module: bool,
    /// Answer of `can_create_link`.
    pub create: bool,
}

impl KernelProbe for FakeProbe {
    fn module_loaded(&self) -> bool {
        self.module
    }
    fn can_create_link(&self) -> bool {
        self.create
    }
}

/// Keeps the device and peers in memory and logs every call.
#[derive(Debug, Clone)]
pub struct FakeTunnel {
    /// Backend it pretends to be.
    pub backend: Backend,
    /// Device config, once ensured.
    pub device: Option<DeviceConfig>,
    /// Peers by key.
    pub peers: BTreeMap<PublicKey, TunnelPeer>,
    /// Every call (`set <key>`, `remove <key>`, ...).
    pub calls: Vec<String>,
    /// What `peers` reports for a peer's handshake and counters (tests set it; absent = no
    /// handshake, no traffic).
    pub traffic: BTreeMap<PublicKey, FakeTraffic>,
}

/// Handshake and counters the fake reports for one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeTraffic {
    /// Last handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

impl FakeTunnel {
    /// A fake of the given backend.
    pub fn new(backend: Backend) -> Self {
        FakeTunnel {
            backend,
            device: None,
            peers: BTreeMap::new(),
            calls: Vec::new(),
            traffic: BTreeMap::new(),
        }
    }
}

impl TunnelDriver for FakeTunnel {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn ensure_device(&mut self, config: &DeviceConfig) -> Result<bool> {
        self.calls.push(format!("ensure {}", config.ifname));
        let created = self.device.is_none();
        if self
            .device
            .as_ref()
            .is_some_and(|d| d.private_key != config.private_key)
        {
            self.peers.clear();
        }
        self.device = Some(config.clone());
        Ok(created)
    }

    fn peers(&self) -> Result<Vec<PeerStatus>> {
        Ok(self
            .peers
            .values()
            .map(|peer| {
                let mut allowed_ips = peer.allowed_ips.clone();
                allowed_ips.sort();
                let traffic = self
                    .traffic
                    .get(&peer.public_key)
                    .copied()
                    .unwrap_or_default();
                PeerStatus {
                    public_key: peer.public_key.clone(),
                    endpoint: peer.endpoint,
                    last_handshake: traffic.last_handshake,
                    rx_bytes: traffic.rx_bytes,
                    tx_bytes: traffic.tx_bytes,
                    keepalive: peer.keepalive,
                    allowed_ips,
                }
            })
            .collect())
    }

    fn set_peer(&mut self, peer: &TunnelPeer) -> Result<()> {
        self.calls.push(format!("set {}", peer.public_key));
        self.peers.insert(peer.public_key.clone(), peer.clone());
        Ok(())
    }

    fn remove_peer(&mut self, key: &PublicKey) -> Result<()> {
        self.calls.push(format!("remove {key}"));
        self.peers.remove(key);
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.calls.push("stop".into());
        if self.backend != Backend::Kernel {
            self.device = None;
            self.peers.clear();
        }
        Ok(())
    }

    fn remove_device(&mut self) -> Result<()> {
        self.calls.push("remove device".into());
        self.device = None;
        self.peers.clear();
        Ok(())
    }

    fn remove_leftover(&mut self, ifname: &str) -> Result<bool> {
        self.calls.push(format!("remove leftover {ifname}"));
        let found = self.device.as_ref().is_some_and(|d| d.ifname == ifname);
        if found {
            self.device = None;
            self.peers.clear();
        }
        Ok(found)
    }
}
