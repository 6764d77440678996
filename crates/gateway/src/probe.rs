//! Probing a peer gateway: one ICMP echo to its transit address through the tunnel, answered by
//! the peer's kernel (the transit address is on its WireGuard interface).
//!
//! [`Prober`] is the trait the controller uses; [`IcmpProber`] sends from a raw socket created
//! inside the gateway's network namespace; [`FakeProber`] answers what a test scripts.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use isthmus_dataplane::NsRuntime;
use socket2::{Domain, Protocol, Socket, Type};

/// Measures the round trip to a peer gateway.
pub trait Prober: Send + Sync + Debug {
    /// One probe of `target`: `Some(rtt)` when answered within `timeout`, `None` otherwise.
    fn probe(&self, target: Ipv4Addr, timeout: Duration) -> BoxFuture<'static, Option<Duration>>;
}

/// ICMP echo from a raw socket in one network namespace (needs `CAP_NET_RAW`).
#[derive(Debug, Clone)]
pub struct IcmpProber {
    ns: Arc<NsRuntime>,
    ident: u16,
    seq: Arc<AtomicU16>,
}

impl IcmpProber {
    /// A prober whose sockets live in `ns`'s namespace (the gateway's).
    pub fn new(ns: Arc<NsRuntime>) -> Self {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let ident = (std::process::id() as u16) ^ NEXT.fetch_add(0x1f3, Ordering::Relaxed);
        IcmpProber {
            ns,
            ident,
            seq: Arc::new(AtomicU16::new(0)),
        }
    }
}

impl Prober for IcmpProber {
    fn probe(&self, target: Ipv4Addr, timeout: Duration) -> BoxFuture<'static, Option<Duration>> {
        let (ident, seq) = (self.ident, self.seq.fetch_add(1, Ordering::Relaxed));
        // The socket must be created on a thread inside the namespace: the runtime's blocking pool.
        let task = self
            .ns
            .handle()
            .spawn_blocking(move || echo(target, ident, seq, timeout));
        Box::pin(async move {
            match task.await {
                Ok(Ok(rtt)) => rtt,
                Ok(Err(err)) => {
                    tracing::debug!(%target, error = %err, "probe failed");
                    None
                }
                Err(_) => None,
            }
        })
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![8u8, 0, 0, 0];
    packet.extend(ident.to_be_bytes());
    packet.extend(seq.to_be_bytes());
    packet.extend(b"isthmus-gateway-probe");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// Whether a raw IPv4 datagram is the echo reply from `target` to our request.
fn is_reply(bytes: &[u8], target: Ipv4Addr, ident: u16, seq: u16) -> bool {
    if bytes.len() < 20 {
        return false;
    }
    let header = usize::from(bytes[0] & 0x0f) * 4;
    let from = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
    let Some(icmp) = bytes.get(header..) else {
        return false;
    };
    from == target
        && icmp.len() >= 8
        && icmp[0] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == ident
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

fn echo(
    target: Ipv4Addr,
    ident: u16,
    seq: u16,
    timeout: Duration,
) -> std::io::Result<Option<Duration>> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let start = Instant::now();
    socket.send_to(
        &echo_request(ident, seq),
        &SocketAddr::V4(SocketAddrV4::new(target, 0)).into(),
    )?;
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match (&socket).read(&mut buf) {
            Ok(len) if is_reply(&buf[..len], target, ident, seq) => {
                return Ok(Some(start.elapsed()));
            }
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        }
    }
}

/// A prober answering what the test sets per address (unset: the default answer, none unless
/// [`FakeProber::answer_every`] set one); records every probe. While [`FakeProber::hold`] is
/// on, probes do not return (a peer that never answers, as long as the test likes).
#[derive(Debug, Clone)]
pub struct FakeProber {
    answers: Arc<Mutex<BTreeMap<Ipv4Addr, Duration>>>,
    every: Arc<Mutex<Option<Duration>>>,
    probes: Arc<Mutex<Vec<Ipv4Addr>>>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for FakeProber {
    fn default() -> Self {
        FakeProber {
            answers: Arc::default(),
            every: Arc::default(),
            probes: Arc::default(),
            held: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl FakeProber {
    /// `true`: probes from now on (and those waiting) do not return until it is `false` again.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// `target` answers after `rtt` (`None`: stops answering).
    pub fn answer(&self, target: Ipv4Addr, rtt: Option<Duration>) {
        let mut answers = self.answers.lock().expect("fake prober lock");
        match rtt {
            Some(rtt) => answers.insert(target, rtt),
            None => answers.remove(&target),
        };
    }

    /// Every address without an answer of its own answers after `rtt` (`None`: stops).
    pub fn answer_every(&self, rtt: Option<Duration>) {
        *self.every.lock().expect("fake prober lock") = rtt;
    }

    /// Every probed address, in order.
    pub fn probes(&self) -> Vec<Ipv4Addr> {
        self.probes.lock().expect("fake prober lock").clone()
    }
}

impl Prober for FakeProber {
    fn probe(&self, target: Ipv4Addr, _timeout: Duration) -> BoxFuture<'static, Option<Duration>> {
        self.probes.lock().expect("fake prober lock").push(target);
        let answer = self
            .answers
            .lock()
            .expect("fake prober lock")
            .get(&target)
            .copied()
            .or(*self.every.lock().expect("fake prober lock"));
        let mut held = self.held.subscribe();
        Box::pin(async move {
            // the sender lives as long as the prober; gone, nothing holds the probe any more
            let _ = held.wait_for(|held| !held).await;
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero_and_replies_are_matched() {
        let request = echo_request(7, 9);
        assert_eq!(checksum(&request), 0);
        let target = Ipv4Addr::new(10, 201, 0, 1);
        let mut reply = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 201, 0, 1, 10, 200, 0, 1,
        ];
        let mut icmp = request.clone();
        icmp[0] = 0;
        reply.extend(&icmp);
        assert!(is_reply(&reply, target, 7, 9));
        assert!(!is_reply(&reply, target, 7, 10));
        assert!(!is_reply(&reply, Ipv4Addr::new(10, 201, 0, 2), 7, 9));
    }
}
