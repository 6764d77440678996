//! A long-lived TCP connection probe: an echo server, and a session that sends a numbered line
//! every interval, checks the echo, and records when (and why) the connection broke. The lead
//! uses it to show that established connections survive a component restart.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Protocol, Type};

use super::whoami::TcpServer;
use super::{Namespaced, socket_in};
use crate::{Error, Result};

/// A TCP server in a namespace echoing every line back. Stops (and cuts its connections) on drop.
#[derive(Debug)]
pub struct EchoServer {
    server: TcpServer,
}

impl EchoServer {
    /// Listens on `0.0.0.0:port` in `at`'s namespace (`port` 0: any free port).
    pub fn start(at: &(impl Namespaced + ?Sized), port: u16) -> Result<Self> {
        let handler = Arc::new(|stream: TcpStream| {
            let Ok(mut writer) = stream.try_clone() else {
                return;
            };
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if writeln!(writer, "{line}").is_err() {
                    return;
                }
            }
        });
        Ok(EchoServer {
            server: TcpServer::start(at, port, handler)?,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// What an echo session has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoStatus {
    /// The session's own address (source port included), as bound in its namespace.
    pub local: SocketAddr,
    /// Lines sent and echoed back correctly.
    pub exchanges: u64,
    /// Why the connection broke (write or read error, EOF, timeout, wrong echo); `None` while it
    /// holds.
    pub broken: Option<String>,
    /// Slowest exchange so far.
    pub max_round_trip: Duration,
}

/// A TCP connection kept busy in the background: one line every `interval`, each echo awaited for
/// at most `timeout`. The first failure ends it and is kept in [`EchoStatus::broken`].
#[derive(Debug)]
pub struct EchoSession {
    status: Arc<Mutex<EchoStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoSession {
    /// Connects from `from`'s namespace to an echo server at `dst:port` (within `timeout`) and
    /// starts exchanging lines. Fails if the connection cannot be opened. Blocks while connecting.
    pub fn open(
        from: &(impl Namespaced + ?Sized),
        dst: Ipv4Addr,
        port: u16,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self> {
        let addr = SocketAddr::V4(SocketAddrV4::new(dst, port));
        let what = || format!("echo session {} -> {addr}", from.namespace());
        let socket = socket_in(from, Type::STREAM, Protocol::TCP)?;
        socket
            .connect_timeout(&addr.into(), timeout)
            .map_err(|e| Error::probe(what(), e))?;
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| Error::probe(what(), e))?;
        let local = stream.local_addr().map_err(|e| Error::probe(what(), e))?;
        let status = Arc::new(Mutex::new(EchoStatus {
            local,
            exchanges: 0,
            broken: None,
            max_round_trip: Duration::ZERO,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (status2, stop2) = (status.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("lab-echo".into())
            .spawn(move || exchange_loop(stream, interval, &status2, &stop2))
            .map_err(|e| Error::probe(what(), e))?;
        Ok(EchoSession {
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// What the session has seen so far (it keeps running).
    pub fn status(&self) -> EchoStatus {
        self.status.lock().expect("echo status lock").clone()
    }

    /// Whether the connection has broken.
    pub fn is_broken(&self) -> bool {
        self.status().broken.is_some()
    }

    /// Stops the session (after the exchange in flight) and returns the final status.
    pub fn stop(mut self) -> EchoStatus {
        self.halt();
        self.status()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EchoSession {
    fn drop(&mut self) {
        self.halt();
    }
}

fn exchange_loop(
    stream: TcpStream,
    interval: Duration,
    status: &Mutex<EchoStatus>,
    stop: &AtomicBool,
) {
    let Ok(mut writer) = stream.try_clone() else {
        status.lock().expect("echo status lock").broken = Some("cannot clone the socket".into());
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let outcome = exchange(&mut writer, &mut reader, seq);
        let mut st = status.lock().expect("echo status lock");
        match outcome {
            Ok(()) => {
                st.exchanges += 1;
                st.max_round_trip = st.max_round_trip.max(started.elapsed());
            }
            Err(why) => {
                st.broken = Some(format!("exchange {seq}: {why}"));
                return;
            }
        }
        drop(st);
        seq += 1;
        sleep_unless_stopped(interval.saturating_sub(started.elapsed()), stop);
    }
}

fn exchange(
    writer: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    seq: u64,
) -> Result<(), String> {
    let line = format!("isthmus-lab {seq}");
    writeln!(writer, "{line}").map_err(|e| format!("write: {e}"))?;
    let mut echoed = String::new();
    match reader.read_line(&mut echoed) {
        Ok(0) => Err("connection closed by the peer".into()),
        Ok(_) if echoed.trim_end() == line => Ok(()),
        Ok(_) => Err(format!("expected {line:?}, got {:?}", echoed.trim_end())),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn sleep_unless_stopped(mut left: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(20);
    while !left.is_zero() && !stop.load(Ordering::Acquire) {
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
}
