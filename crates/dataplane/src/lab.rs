//! A namespace lab for tests and the benchmark: unique names, guaranteed cleanup, real traffic.
//!
//! Topology of a [`Lab`]: a `wan` namespace with a bridge (the underlay, 192.168.100.0/24), and per
//! site a gateway namespace (underlay `u0` = 192.168.100.(10+i), pod side `p0` = .1 of the PodCIDR)
//! and a pod namespace (`eth0` = .10 of the PodCIDR, default route via the gateway). Namespaces
//! are deleted when the lab is dropped, panics included. Scaffolding uses the `ip` command; the
//! drivers under test use netlink and nft themselves.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::{Netns, NsRuntime};
use crate::{Error, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails loudly unless running as root (kernel tests never skip).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, nft, TUN)"
    );
}

/// A short name unique on the host: `prefix` + pid + `x` + a per-process counter (≤ 15 characters
/// for prefixes of up to 4 characters, so it fits an interface name).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n:x}", std::process::id())
}

/// The pid inside a lab name (`ist<pid>x<counter>-...` or `iw<pid>x<counter>`), if it is one.
fn lab_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, tail) = rest.split_once('x')?;
    let counter = tail.split('-').next()?;
    let hex = !counter.is_empty() && counter.chars().all(|c| c.is_ascii_hexdigit());
    if hex { pid.parse().ok() } else { None }
}

/// Removes what labs of dead processes left behind (a benchmark killed by a signal): their
/// namespaces and userspace WireGuard sockets. Live processes' labs are never touched.
pub fn remove_stale() {
    let dead = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if lab_pid(name, "ist").is_some_and(dead) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    for entry in std::fs::read_dir(crate::tunnel::linux::UAPI_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".sock")
            .to_owned();
        if lab_pid(&name, "iw").is_some_and(dead) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs a command, returning stdout or an error with stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::Command {
            command: args.join(" "),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ...`
pub fn ip(ns: &str, args: &str) -> Result<String> {
    let mut full = vec!["ip", "-n", ns];
    full.extend(args.split_whitespace());
    run(&full)
}

/// A network namespace deleted on drop.
#[derive(Debug)]
pub struct NsGuard {
    /// Its name.
    pub name: String,
}

impl NsGuard {
    /// Creates `name` with loopback up.
    pub fn new(name: String) -> Result<Self> {
        run(&["ip", "netns", "add", &name])?;
        let guard = NsGuard { name };
        ip(&guard.name, "link set lo up")?;
        Ok(guard)
    }

    /// As a driver target.
    pub fn netns(&self) -> Netns {
        Netns::Named(self.name.clone())
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// One cluster of the lab: a gateway namespace and a pod namespace.
#[derive(Debug)]
pub struct Site {
    /// Gateway namespace.
    pub gw: NsGuard,
    /// Pod namespace.
    pub pod: NsGuard,
    /// Gateway underlay address.
    pub underlay: Ipv4Addr,
    /// The pod's address.
    pub pod_ip: Ipv4Addr,
    /// A WireGuard interface name unique on the host.
    pub ifname: String,
    /// Runtime in the gateway namespace.
    pub gw_rt: Arc<NsRuntime>,
    /// Runtime in the pod namespace.
    pub pod_rt: Arc<NsRuntime>,
}

/// The underlay and its sites. Sites are dropped before the underlay.
#[derive(Debug)]
pub struct Lab {
    /// Sites in creation order.
    pub sites: Vec<Site>,
    /// The underlay namespace.
    pub wan: NsGuard,
    tag: String,
}

impl Lab {
    /// A lab with an empty underlay bridge.
    pub fn new() -> Result<Self> {
        remove_stale();
        let tag = unique("ist");
        let wan = NsGuard::new(format!("{tag}-wan"))?;
        ip(&wan.name, "link add br0 type bridge")?;
        ip(&wan.name, "link set br0 up")?;
        Ok(Lab {
            sites: Vec::new(),
            wan,
            tag,
        })
    }

    /// Adds a site whose pods live in `pod_cidr` (gateway .1, pod .10).
    pub fn add_site(&mut self, pod_cidr: Ipv4Net) -> Result<&Site> {
        let i = self.sites.len() as u8;
        let gw = NsGuard::new(format!("{}-gw{i}", self.tag))?;
        let pod = NsGuard::new(format!("{}-pod{i}", self.tag))?;
        let underlay = Ipv4Addr::new(192, 168, 100, 10 + i);
        ip(
            &gw.name,
            &format!(
                "link add u0 type veth peer name u{i} netns {}",
                self.wan.name
            ),
        )?;
        ip(&self.wan.name, &format!("link set u{i} master br0 up"))?;
        ip(&gw.name, &format!("addr add {underlay}/24 dev u0"))?;
        ip(&gw.name, "link set u0 up")?;
        let host = |n: u32| Ipv4Addr::from(u32::from(pod_cidr.network()) + n);
        ip(
            &gw.name,
            &format!("link add p0 type veth peer name eth0 netns {}", pod.name),
        )?;
        ip(
            &gw.name,
            &format!("addr add {}/{} dev p0", host(1), pod_cidr.prefix_len()),
        )?;
        ip(&gw.name, "link set p0 up")?;
        ip(
            &pod.name,
            &format!("addr add {}/{} dev eth0", host(10), pod_cidr.prefix_len()),
        )?;
        ip(&pod.name, "link set eth0 up")?;
        ip(&pod.name, &format!("route add default via {}", host(1)))?;
        let gw_rt = NsRuntime::new(gw.netns(), 2)?;
        let pod_rt = NsRuntime::new(pod.netns(), 1)?;
        let ifname = unique("iw");
        self.sites.push(Site {
            gw,
            pod,
            underlay,
            pod_ip: host(10),
            ifname,
            gw_rt,
            pod_rt,
        });
        Ok(self.sites.last().expect("just pushed"))
    }
}

/// Starts a TCP server in `rt`'s namespace that answers every connection with the source
/// address it sees, then closes. Runs until the runtime is dropped.
pub fn start_whoami(rt: &NsRuntime, port: u16) -> Result<()> {
    let listener =
        rt.run_blocking(move || TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))?;
    rt.handle().spawn_blocking(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            if let Ok(peer) = stream.peer_addr() {
                let _ = writeln!(stream, "{}", peer.ip());
            }
        }
    });
    Ok(())
}

/// Like [`tcp_whoami`], with the client socket bound to `src` first.
pub fn tcp_whoami_from(rt: &NsRuntime, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Result<IpAddr> {
    rt.run_blocking(move || {
        let addr = SocketAddr::V4(SocketAddrV4::new(dst, port));
        let mut last = String::new();
        for _ in 0..5 {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
            match socket.connect_timeout(&addr.into(), Duration::from_secs(2)) {
                Ok(()) => return read_whoami(socket.into(), addr),
                Err(err) => last = err.to_string(),
            }
        }
        Err(Error::Command {
            command: format!("tcp connect {addr} from {src}"),
            message: last,
        })
    })
}

fn read_whoami(mut stream: TcpStream, addr: SocketAddr) -> Result<IpAddr> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    text.trim().parse::<IpAddr>().map_err(|e| Error::Command {
        command: format!("whoami {addr}"),
        message: e.to_string(),
    })
}

/// Connects from `rt`'s namespace to a whoami server and returns the source it saw.
/// Retries a few times: the first packet may wait for a WireGuard handshake.
pub fn tcp_whoami(rt: &NsRuntime, dst: Ipv4Addr, port: u16) -> Result<IpAddr> {
    rt.run_blocking(move || {
        let addr = SocketAddr::V4(SocketAddrV4::new(dst, port));
        let mut last = String::new();
        for _ in 0..5 {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(stream) => return read_whoami(stream, addr),
                Err(err) => last = err.to_string(),
            }
        }
        Err(Error::Command {
            command: format!("tcp connect {addr}"),
            message: last,
        })
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends ICMP echo requests from `rt`'s namespace (a raw socket) until one reply comes back
/// from `dst`, at most `tries` requests. Returns whether a reply arrived.
pub fn ping(rt: &NsRuntime, dst: Ipv4Addr, tries: u16) -> Result<bool> {
    rt.run_blocking(move || {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let target = SocketAddr::V4(SocketAddrV4::new(dst, 0)).into();
        let ident = (std::process::id() & 0xffff) as u16;
        for seq in 0..tries {
            let mut packet = vec![8u8, 0, 0, 0];
            packet.extend(ident.to_be_bytes());
            packet.extend(seq.to_be_bytes());
            packet.extend(b"isthmus-lab-ping");
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
            socket.send_to(&packet, &target)?;
            if got_reply(&socket, dst, ident)? {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

fn got_reply(socket: &Socket, dst: Ipv4Addr, ident: u16) -> Result<bool> {
    let mut buf = [0u8; 1500];
    for _ in 0..16 {
        // A raw IPv4 socket receives the whole IP header: source at bytes 12..16.
        let len = match (&*socket).read(&mut buf) {
            Ok(len) => len,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(err) => return Err(err.into()),
        };
        let bytes = &buf[..len];
        let header = usize::from(bytes[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
        let icmp = &bytes[header..];
        if from == dst
            && icmp.len() >= 8
            && icmp[0] == 0
            && u16::from_be_bytes([icmp[4], icmp[5]]) == ident
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_carry_their_pid() {
        assert_eq!(lab_pid("ist4242x1f-gw0", "ist"), Some(4242));
        assert_eq!(lab_pid("iw4242x3", "iw"), Some(4242));
        assert_eq!(lab_pid("istio-system", "ist"), None);
        assert_eq!(lab_pid("ist12xyz-wan", "ist"), None);
        assert!(unique("iw").len() <= 15);
    }
}
