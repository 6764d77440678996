//! ICMP echo from a namespace through a raw socket, with the round-trip time of every reply.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Protocol, Socket, Type};

use super::{Namespaced, socket_in};
use crate::{Error, Result};

static IDENT: AtomicU16 = AtomicU16::new(0);

/// What a ping run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReport {
    /// Echo requests sent.
    pub sent: u16,
    /// Round-trip times of the replies, in the order they came.
    pub rtts: Vec<Duration>,
}

impl PingReport {
    /// Whether any reply came back.
    pub fn reached(&self) -> bool {
        !self.rtts.is_empty()
    }

    /// Median round-trip time (the lower middle for an even count), `None` without replies.
    pub fn median(&self) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort();
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }

    /// Smallest round-trip time.
    pub fn min(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }
}

/// Sends `count` echo requests to `dst` from `from`'s namespace, one after the other, each waiting
/// up to `timeout` for its reply. Unreachable destinations are lost requests, not errors. Blocks.
pub fn ping(
    from: &(impl Namespaced + ?Sized),
    dst: Ipv4Addr,
    count: u16,
    timeout: Duration,
) -> Result<PingReport> {
    let what = || format!("ping {dst} from {}", from.namespace());
    let socket = socket_in(from, Type::RAW, Protocol::ICMPV4)?;
    // Distinct per call (and per process), so concurrent pings in one namespace keep apart.
    let ident =
        (std::process::id() as u16).wrapping_mul(31) ^ IDENT.fetch_add(1, Ordering::Relaxed);
    let target = SocketAddr::V4(SocketAddrV4::new(dst, 0)).into();
    let mut report = PingReport {
        sent: 0,
        rtts: Vec::new(),
    };
    for seq in 0..count {
        let packet = echo_request(ident, seq);
        let sent_at = Instant::now();
        report.sent += 1;
        match socket.send_to(&packet, &target) {
            Ok(_) => {}
            Err(e) if is_unreachable(&e) => continue,
            Err(e) => return Err(Error::probe(what(), e)),
        }
        if await_reply(&socket, dst, ident, seq, sent_at + timeout)
            .map_err(|e| Error::probe(what(), e))?
        {
            report.rtts.push(sent_at.elapsed());
        }
    }
    Ok(report)
}

/// Sends an echo request to `dst` every `every` without waiting for earlier ones, until any of
/// them is answered; returns when the first answer arrived, `None` after `timeout`. Every request
/// carries its own identifier, so each is a new flow for conntrack (an earlier request's entry,
/// made before a NAT rule existed, cannot mask the rule), and a late answer to an earlier
/// request counts as soon as it arrives. For timing when a path starts carrying packets.
/// Blocks.
pub fn first_answer(
    from: &(impl Namespaced + ?Sized),
    dst: Ipv4Addr,
    every: Duration,
    timeout: Duration,
) -> Result<Option<Instant>> {
    let what = || format!("echo stream to {dst} from {}", from.namespace());
    let socket = socket_in(from, Type::RAW, Protocol::ICMPV4)?;
    let base = (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(IDENT.fetch_add(4096, Ordering::Relaxed));
    let target = SocketAddr::V4(SocketAddrV4::new(dst, 0)).into();
    let deadline = Instant::now() + timeout;
    let mut sent: u16 = 0;
    while Instant::now() < deadline {
        let ident = base.wrapping_add(sent);
        match socket.send_to(&echo_request(ident, 0), &target) {
            Ok(_) => sent = sent.wrapping_add(1),
            Err(e) if is_unreachable(&e) => {}
            Err(e) => return Err(Error::probe(what(), e)),
        }
        let next = (Instant::now() + every).min(deadline);
        let answered =
            |bytes: &[u8]| reply_ident(bytes, dst).is_some_and(|id| id.wrapping_sub(base) < sent);
        if await_any(&socket, next, answered).map_err(|e| Error::probe(what(), e))? {
            return Ok(Some(Instant::now()));
        }
    }
    Ok(None)
}

/// Reads until a packet `answered` accepts arrives (→ `true`) or `deadline` passes. The wait
/// is a `ppoll` with a nanosecond timeout: a socket's read timeout counts in kernel ticks (4 ms
/// at 250 Hz), which made `first_answer`'s 200 µs between echo requests several milliseconds
/// and added a wait of up to ~10 ms to every B2 figure measured through it.
fn await_any(
    socket: &Socket,
    deadline: Instant,
    answered: impl Fn(&[u8]) -> bool,
) -> std::io::Result<bool> {
    socket.set_nonblocking(true)?;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable_within(socket, left)? {
            return Ok(false);
        }
        match (&*socket).read(&mut buf) {
            Ok(len) if answered(&buf[..len]) => return Ok(true),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether `socket` may have something to read within `wait` (`false` once it has passed; a
/// signal's wake-up says `true`, and the caller's read and deadline sort it out).
fn readable_within(socket: &Socket, wait: Duration) -> std::io::Result<bool> {
    let timeout = rustix::event::Timespec {
        tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: wait.subsec_nanos().into(),
    };
    let mut fds = [rustix::event::PollFd::new(
        socket,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// The identifier of an echo reply from `dst` (raw IPv4 bytes), if it is one.
fn reply_ident(bytes: &[u8], dst: Ipv4Addr) -> Option<u16> {
    if bytes.len() < 20 {
        return None;
    }
    let header = usize::from(bytes[0] & 0x0f) * 4;
    let from = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
    let icmp = bytes.get(header..).filter(|i| i.len() >= 8)?;
    (from == dst && icmp[0] == 0).then(|| u16::from_be_bytes([icmp[4], icmp[5]]))
}

/// [`ping`]'s median round-trip time; `None` when no reply came back. Blocks.
pub fn ping_rtt(
    from: &(impl Namespaced + ?Sized),
    dst: Ipv4Addr,
    count: u16,
    timeout: Duration,
) -> Result<Option<Duration>> {
    Ok(ping(from, dst, count, timeout)?.median())
}

/// Runs [`ping_rtt`] for every `(from, dst)` pair, up to `parallel` at a time (the time is mostly
/// spent waiting, so this can exceed the core count), and returns the results in input order.
/// For connectivity matrices. Blocks.
pub fn ping_all<P: Namespaced + Sync + ?Sized>(
    probes: &[(&P, Ipv4Addr)],
    count: u16,
    timeout: Duration,
    parallel: usize,
) -> Vec<Result<Option<Duration>>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Option<Duration>>>>> =
        probes.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, probes.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((from, dst)) = probes.get(i) else {
                        return;
                    };
                    let result = ping_rtt(*from, *dst, count, timeout);
                    *results[i].lock().expect("result slot") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("result slot")
                .expect("every probe ran")
        })
        .collect()
}

fn is_unreachable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable | ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(nix::libc::EINVAL)
}

fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![8u8, 0, 0, 0];
    packet.extend(ident.to_be_bytes());
    packet.extend(seq.to_be_bytes());
    packet.extend(b"isthmus-lab-probe");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
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

/// Reads until the echo reply (`ident`, `seq`) from `dst` arrives or `deadline` passes.
fn await_reply(
    socket: &Socket,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    deadline: Instant,
) -> std::io::Result<bool> {
    await_any(socket, deadline, |bytes| {
        is_our_reply(bytes, dst, ident, seq)
    })
}

/// A raw IPv4 socket gets the IP header: source at bytes 12..16, ICMP after `IHL * 4` bytes.
fn is_our_reply(bytes: &[u8], dst: Ipv4Addr, ident: u16, seq: u16) -> bool {
    let header = usize::from(bytes.first().copied().unwrap_or(0) & 0x0f) * 4;
    reply_ident(bytes, dst) == Some(ident)
        && bytes
            .get(header + 6..header + 8)
            .is_some_and(|s| u16::from_be_bytes([s[0], s[1]]) == seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_min() {
        let ms = Duration::from_millis;
        let report = PingReport {
            sent: 4,
            rtts: vec![ms(4), ms(1), ms(3), ms(2)],
        };
        assert_eq!(report.median(), Some(ms(2)));
        assert_eq!(report.min(), Some(ms(1)));
        let none = PingReport {
            sent: 2,
            rtts: vec![],
        };
        assert_eq!(none.median(), None);
        assert!(!none.reached());
    }

    #[test]
    fn request_checksum_verifies() {
        assert_eq!(checksum(&echo_request(7, 9)), 0);
    }
}
