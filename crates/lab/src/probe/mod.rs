//! Connectivity probes run from inside a lab namespace (a pod's, usually): ICMP echo with
//! round-trip times ([`ping`], [`ping_rtt`], many at once with [`ping_all`]), a whoami TCP server and client ([`WhoamiServer`],
//! [`whoami`]) and a long-lived TCP echo session that reports when it breaks ([`EchoServer`],
//! [`EchoSession`]).
//!
//! Each probe creates its socket on a short-lived thread inside the namespace, then uses it from
//! the caller's thread (sockets stay in the namespace they were created in). The functions block
//! for up to their timeouts: from async code call them through `tokio::task::spawn_blocking`.
//! Servers and sessions run on their own threads and stop when dropped.

mod echo;
mod ping;
mod whoami;

pub use echo::{EchoServer, EchoSession, EchoStatus};
pub use ping::{PingReport, first_answer, ping, ping_all, ping_rtt};
pub use whoami::{WhoamiServer, whoami};

use std::net::{SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use crate::record::{NodeRecord, PodRecord};
use crate::{Error, Result};

/// Something that lives in a lab namespace: a pod, a node, or a namespace name.
pub trait Namespaced {
    /// The network namespace's name.
    fn namespace(&self) -> &str;
}

impl Namespaced for PodRecord {
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Namespaced for NodeRecord {
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Namespaced for str {
    fn namespace(&self) -> &str {
        self
    }
}

impl Namespaced for String {
    fn namespace(&self) -> &str {
        self
    }
}

/// A socket created inside `at`'s namespace.
fn socket_in(at: &(impl Namespaced + ?Sized), ty: Type, proto: Protocol) -> Result<Socket> {
    let ns = at.namespace();
    crate::kernel::in_netns(ns, || {
        Socket::new(Domain::IPV4, ty, Some(proto))
            .map_err(|e| Error::probe(format!("socket in {ns}"), e))
    })
}

/// A TCP listener on `0.0.0.0:port` inside `at`'s namespace (`port` 0: any free port).
fn listener_in(at: &(impl Namespaced + ?Sized), port: u16) -> Result<(Socket, SocketAddrV4)> {
    let socket = socket_in(at, Type::STREAM, Protocol::TCP)?;
    let what = || format!("listen on port {port} in {}", at.namespace());
    socket
        .set_reuse_address(true)
        .map_err(|e| Error::probe(what(), e))?;
    socket
        .bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .map_err(|e| Error::probe(what(), e))?;
    socket.listen(128).map_err(|e| Error::probe(what(), e))?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket_ipv4())
        .ok_or_else(|| Error::probe(what(), std::io::Error::other("no local address")))?;
    Ok((socket, local))
}
