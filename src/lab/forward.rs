//! TCP forwarding between network namespaces, as a Service VIP or `kubectl port-forward` does:
//! the lab listens on an address in one namespace and relays each connection to an address in
//! another. It is how the lab's nodes reach their cluster's API (an address on the LAN), how the
//! clusters reach each other's APIs (an address on the underlay), and how this host reaches the
//! daemons inside the node namespaces (their gRPC and telemetry ports).
//!
//! A socket belongs to the namespace of the thread that creates it; so each listening socket is
//! created on a thread that entered the listening namespace, each outgoing connection on one that
//! entered the target's, and both are then driven from the ordinary runtime.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long an outgoing connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A network namespace, or this process's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Host,
    Netns(String),
}

impl Side {
    /// Runs `work` on a thread inside this namespace (or on a thread here, for the host).
    fn run<T: Send>(&self, work: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
        match self {
            Side::Host => work(),
            Side::Netns(ns) => isthmus_lab::in_netns(ns, || {
                work().map_err(|source| isthmus_lab::Error::Netns {
                    name: ns.clone(),
                    source,
                })
            })
            .map_err(std::io::Error::other),
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::Host => f.write_str("host"),
            Side::Netns(ns) => f.write_str(ns),
        }
    }
}

/// A running forward; dropping it stops listening (open connections finish on their own).
#[derive(Debug)]
pub struct Forward {
    /// The bound address (the real port when port 0 was asked for).
    pub listen: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forward {
    /// Listens on `listen` in `from` and relays every connection to `target` in `to`.
    pub async fn start(
        from: Side,
        listen: SocketAddr,
        to: Side,
        target: SocketAddr,
    ) -> std::io::Result<Forward> {
        let std_listener = {
            let from = from.clone();
            tokio::task::spawn_blocking(move || {
                from.run(|| {
                    let l = std::net::TcpListener::bind(listen)?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                })
            })
            .await
            .map_err(std::io::Error::other)??
        };
        let listener = TcpListener::from_std(std_listener)?;
        let bound = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, to, target));
        tracing::debug!(%from, listen = %bound, %target, "forwarding");
        Ok(Forward {
            listen: bound,
            task,
        })
    }
}

async fn accept_loop(listener: TcpListener, to: Side, target: SocketAddr) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let to = to.clone();
        tokio::spawn(async move {
            match connect(&to, target).await {
                Ok(mut outbound) => {
                    let mut inbound = inbound;
                    // Small writes (watch events) must not wait for the client's delayed ACK.
                    let _ = inbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(error) => {
                    tracing::debug!(%to, %target, %error, "forward: cannot connect");
                }
            }
        });
    }
}

/// A connection to `target`, made from inside `side`.
async fn connect(side: &Side, target: SocketAddr) -> std::io::Result<TcpStream> {
    let side = side.clone();
    let stream = tokio::task::spawn_blocking(move || {
        side.run(|| {
            let s = std::net::TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_cross_both_ways_on_the_host() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                .await
                .unwrap();
        });
        let fwd = Forward::start(
            Side::Host,
            "127.0.0.1:0".parse().unwrap(),
            Side::Host,
            target,
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(fwd.listen).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut answer = [0u8; 5];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HELLO");
    }
}
