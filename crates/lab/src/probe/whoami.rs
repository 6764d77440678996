//! A TCP server thread in a namespace (shared by the whoami and echo servers), and the whoami
//! probe: a server answering every connection with the source address it saw, and its client.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Protocol, Socket, Type};

use super::{Namespaced, listener_in, socket_in};
use crate::{Error, Result};

type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// Open connections (a clone of each, to cut them when the server stops), by connection number.
type Connections = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A listening socket served by an accept thread; stops (and cuts its connections) on drop.
#[derive(Debug)]
pub(crate) struct TcpServer {
    local: SocketAddrV4,
    listener: Socket,
    stop: Arc<AtomicBool>,
    connections: Connections,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Serves `0.0.0.0:port` in `at`'s namespace; each connection runs `handler` on its own thread.
    pub(crate) fn start(
        at: &(impl Namespaced + ?Sized),
        port: u16,
        handler: Handler,
    ) -> Result<Self> {
        let (socket, local) = listener_in(at, port)?;
        let listener: TcpListener = socket
            .try_clone()
            .map_err(|e| Error::probe("clone listener", e))?
            .into();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Connections::default();
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lab-tcp-{port}"))
            .spawn(move || accept_loop(&listener, &stop2, &conns2, &handler))
            .map_err(|e| Error::probe("spawn server thread", e))?;
        Ok(TcpServer {
            local,
            listener: socket,
            stop,
            connections,
            thread: Some(thread),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.local.port()
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    connections: &Connections,
    handler: &Handler,
) {
    let mut next: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        let id = next;
        next += 1;
        if let Ok(clone) = stream.try_clone() {
            connections
                .lock()
                .expect("connections lock")
                .insert(id, clone);
        }
        let (handler, connections) = (handler.clone(), connections.clone());
        std::thread::spawn(move || {
            handler(stream);
            connections.lock().expect("connections lock").remove(&id);
        });
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Shutting a listening socket down wakes the blocked accept (Linux).
        let _ = self.listener.shutdown(std::net::Shutdown::Both);
        for (_, conn) in self.connections.lock().expect("connections lock").drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP server in a namespace answering every connection with the source address it saw (one
/// line), then closing. Stops when dropped.
#[derive(Debug)]
pub struct WhoamiServer {
    server: TcpServer,
}

impl WhoamiServer {
    /// Listens on `0.0.0.0:port` in `at`'s namespace (`port` 0: any free port).
    pub fn start(at: &(impl Namespaced + ?Sized), port: u16) -> Result<Self> {
        let handler: Handler = Arc::new(|mut stream: TcpStream| {
            if let Ok(peer) = stream.peer_addr() {
                let _ = writeln!(stream, "{}", peer.ip());
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
        Ok(WhoamiServer {
            server: TcpServer::start(at, port, handler)?,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// Connects from `from`'s namespace to a whoami server at `dst:port` and returns the source
/// address the server saw; `None` when the connection failed (refused, unreachable, no answer
/// within `timeout` for the connect and again for the answer). Blocks.
pub fn whoami(
    from: &(impl Namespaced + ?Sized),
    dst: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<Option<IpAddr>> {
    let socket = socket_in(from, Type::STREAM, Protocol::TCP)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(dst, port));
    if socket.connect_timeout(&addr.into(), timeout).is_err() {
        return Ok(None);
    }
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| Error::probe(format!("whoami {addr}"), e))?;
    let mut text = String::new();
    if stream.read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    Ok(text.trim().parse().ok())
}
