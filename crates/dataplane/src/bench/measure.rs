//! Measurements: sequential HTTP request-response and iperf3 TCP throughput with the
//! best and worst runs dropped, plus the small statistics they need.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::NsRuntime;
use crate::{Error, Result};

/// HTTP port of the benchmark server.
pub const HTTP_PORT: u16 = 8081;
/// iperf3 port.
pub const IPERF_PORT: u16 = 5201;

/// Latency distribution in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
}

impl Latency {
    /// Summarises samples (microseconds).
    pub fn from_samples(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
            p50_us: pick(0.5),
            p99_us: pick(0.99),
            max_us: *samples.last().expect("not empty"),
        }
    }
}

/// Throughput over repeated runs, in Mbit/s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    /// Mean of the runs without the best and the worst.
    pub trimmed_mean_mbps: f64,
    /// Every run, in order.
    pub runs_mbps: Vec<f64>,
}

impl Throughput {
    /// Summarises runs, dropping the best and the worst when there are at least three.
    pub fn from_runs(runs_mbps: Vec<f64>) -> Throughput {
        let mut sorted = runs_mbps.clone();
        sorted.sort_by(f64::total_cmp);
        let kept = if sorted.len() >= 3 {
            &sorted[1..sorted.len() - 1]
        } else {
            &sorted[..]
        };
        let trimmed_mean_mbps = if kept.is_empty() {
            0.0
        } else {
            kept.iter().sum::<f64>() / kept.len() as f64
        };
        Throughput {
            trimmed_mean_mbps,
            runs_mbps,
        }
    }
}

/// A minimal HTTP/1.1 server in `rt`'s namespace: one `200 ok` per connection, then close.
pub fn start_http_server(rt: &NsRuntime) -> Result<()> {
    let listener =
        rt.run_blocking(|| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], HTTP_PORT))))?;
    rt.handle().spawn_blocking(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    Ok(())
}

fn one_request(addr: &SocketAddr) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("unexpected HTTP answer"));
    }
    Ok(start.elapsed())
}

/// `count` sequential requests from `rt`'s namespace, each on a new connection like `curl`.
/// A warm-up request (not counted) completes the WireGuard handshake first.
pub fn http_request_response(rt: &NsRuntime, dst: Ipv4Addr, count: usize) -> Result<Latency> {
    http_samples(rt, dst, count).map(Latency::from_samples)
}

/// [`http_request_response`]'s samples, in microseconds, in order.
pub fn http_samples(rt: &NsRuntime, dst: Ipv4Addr, count: usize) -> Result<Vec<f64>> {
    let addr = SocketAddr::V4(SocketAddrV4::new(dst, HTTP_PORT));
    let samples = rt.run_blocking(move || {
        let mut warm = Err(std::io::Error::other("no attempt"));
        for _ in 0..5 {
            warm = one_request(&addr);
            if warm.is_ok() {
                break;
            }
        }
        warm?;
        (0..count)
            .map(|_| one_request(&addr).map(|d| d.as_secs_f64() * 1e6))
            .collect::<std::io::Result<Vec<f64>>>()
    })?;
    Ok(samples)
}

/// An `iperf3 -s` child in a namespace, killed on drop.
#[derive(Debug)]
pub struct IperfServer(Child);

impl IperfServer {
    /// Starts `iperf3 -s` in `rt`'s namespace.
    pub fn start(rt: &NsRuntime) -> Result<Self> {
        let child = rt.run_blocking(|| {
            Command::new("iperf3")
                .args(["-s", "-p", &IPERF_PORT.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        });
        let child = child.map_err(|e| Error::Command {
            command: "iperf3 -s".into(),
            message: e.to_string(),
        })?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(IperfServer(child))
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One iperf3 TCP run of `seconds` from `rt`'s namespace: received Mbit/s.
pub fn iperf_once(rt: &NsRuntime, dst: Ipv4Addr, seconds: u32) -> Result<f64> {
    let args = vec![
        "-c".to_owned(),
        dst.to_string(),
        "-p".into(),
        IPERF_PORT.to_string(),
        "-t".into(),
        seconds.to_string(),
        "--connect-timeout".into(),
        "3000".into(),
        "-J".into(),
    ];
    let out = rt.run_blocking(move || Command::new("iperf3").args(&args).output());
    let out = out.map_err(|e| Error::Command {
        command: "iperf3 -c".into(),
        message: e.to_string(),
    })?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Command {
            command: "iperf3 -c".into(),
            message: e.to_string(),
        })?;
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e6)
        .ok_or_else(|| Error::Command {
            command: format!("iperf3 -c {dst}"),
            message: json["error"].as_str().unwrap_or("no result").to_owned(),
        })
}

/// One run, retried while the server is still finishing the previous test (it then answers
/// "server is busy" or resets the control connection).
fn iperf_retrying(rt: &NsRuntime, dst: Ipv4Addr, seconds: u32) -> Result<f64> {
    let mut attempt = 0;
    loop {
        match iperf_once(rt, dst, seconds) {
            Err(Error::Command { message, .. }) if attempt < 20 => {
                tracing::debug!(%message, "iperf3 run refused; retrying");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// `runs` iperf3 runs (the first preceded by a short warm-up that is not counted).
pub fn iperf_runs(rt: &NsRuntime, dst: Ipv4Addr, runs: usize, seconds: u32) -> Result<Throughput> {
    iperf_retrying(rt, dst, 1)?;
    let runs = (0..runs)
        .map(|_| iperf_retrying(rt, dst, seconds))
        .collect::<Result<Vec<_>>>()?;
    Ok(Throughput::from_runs(runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_mean_drops_best_and_worst() {
        let t = Throughput::from_runs(vec![100.0, 1.0, 10.0, 20.0]);
        assert_eq!(t.trimmed_mean_mbps, 15.0);
    }

    #[test]
    fn percentiles() {
        let l = Latency::from_samples((1..=100).map(f64::from).collect());
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (51.0, 99.0, 100.0));
    }
}
