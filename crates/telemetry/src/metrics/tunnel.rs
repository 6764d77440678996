//! Per-peer tunnel series, sampled by the gateway each probe interval and encoded at scrape:
//!
//! - `isthmus_tunnel_receive_bytes_total{peer}`, `isthmus_tunnel_transmit_bytes_total{peer}`:
//!   WireGuard's counters for the peer (they restart from 0 when the peer is re-created);
//! - `isthmus_tunnel_state{peer,state}`: 1 for the current state (`connected`, `connecting`,
//!   `error`), 0 for the others;
//! - `isthmus_tunnel_last_handshake_age_seconds{peer}`: now − last handshake, computed at scrape
//!   (absent before the first handshake);
//! - `isthmus_tunnel_rtt_seconds{peer}`: last probe round trip (absent when unanswered);
//! - `isthmus_tunnel_nat_mappings{peer}`: DNAT entries programmed for the peer.
//!
//! A peer that is gone disappears from the next scrape.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Connection state of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    Connected,
    Connecting,
    Error,
}

impl TunnelState {
    const ALL: [TunnelState; 3] = [
        TunnelState::Connected,
        TunnelState::Connecting,
        TunnelState::Error,
    ];

    fn name(self) -> &'static str {
        match self {
            TunnelState::Connected => "connected",
            TunnelState::Connecting => "connecting",
            TunnelState::Error => "error",
        }
    }
}

/// One peer as the gateway last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSample {
    pub peer: String,
    pub state: TunnelState,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub last_handshake: Option<SystemTime>,
    pub rtt: Option<Duration>,
    pub nat_mappings: u64,
}

/// The latest samples; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Tunnels {
    samples: Arc<Mutex<Vec<PeerSample>>>,
}

impl Tunnels {
    /// Registers the collector.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// Replaces every sample (peers absent from `samples` disappear).
    pub fn publish(&self, mut samples: Vec<PeerSample>) {
        samples.sort_by(|a, b| a.peer.cmp(&b.peer));
        *self.samples.lock().unwrap_or_else(|p| p.into_inner()) = samples;
    }

    /// The current samples.
    pub fn samples(&self) -> Vec<PeerSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Encodes one family with one series per sample that has a value.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[PeerSample],
    value: impl Fn(&PeerSample) -> Option<M>,
    kind: prometheus_client::metrics::MetricType,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for sample in samples {
        if let Some(metric) = value(sample) {
            let labels = [("peer", sample.peer.as_str())];
            metric.encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for Tunnels {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        let samples = self.samples();
        let now = SystemTime::now();
        let e = &mut encoder;
        family(
            e,
            "isthmus_tunnel_receive_bytes",
            "Bytes received from the peer through the tunnel",
            &samples,
            |s| Some(ConstCounter::new(s.rx_bytes)),
            Counter,
        )?;
        family(
            e,
            "isthmus_tunnel_transmit_bytes",
            "Bytes sent to the peer through the tunnel",
            &samples,
            |s| Some(ConstCounter::new(s.tx_bytes)),
            Counter,
        )?;
        family(
            e,
            "isthmus_tunnel_last_handshake_age_seconds",
            "Seconds since the last WireGuard handshake with the peer",
            &samples,
            |s| {
                s.last_handshake.map(|at| {
                    ConstGauge::new(now.duration_since(at).unwrap_or_default().as_secs_f64())
                })
            },
            Gauge,
        )?;
        family(
            e,
            "isthmus_tunnel_rtt_seconds",
            "Round trip of the last probe through the tunnel to the peer gateway",
            &samples,
            |s| s.rtt.map(|rtt| ConstGauge::new(rtt.as_secs_f64())),
            Gauge,
        )?;
        family(
            e,
            "isthmus_tunnel_nat_mappings",
            "DNAT entries programmed for the peer",
            &samples,
            |s| {
                Some(ConstGauge::new(
                    i64::try_from(s.nat_mappings).unwrap_or(i64::MAX),
                ))
            },
            Gauge,
        )?;
        let mut states = encoder.encode_descriptor(
            "isthmus_tunnel_state",
            "1 for the peer's current connection state, 0 for the others",
            None,
            Gauge,
        )?;
        for sample in &samples {
            for state in TunnelState::ALL {
                let labels = [("peer", sample.peer.as_str()), ("state", state.name())];
                ConstGauge::new(i64::from(sample.state == state))
                    .encode(states.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn samples_become_series_and_vanish_with_their_peer() {
        let tunnels = Tunnels::default();
        let mut registry = Registry::default();
        tunnels.register(&mut registry);
        tunnels.publish(vec![PeerSample {
            peer: "b".into(),
            state: TunnelState::Connected,
            rx_bytes: 1234,
            tx_bytes: 99,
            last_handshake: Some(SystemTime::now() - Duration::from_secs(7)),
            rtt: Some(Duration::from_micros(420)),
            nat_mappings: 3,
        }]);
        let text = scrape(&registry);
        assert!(
            text.contains("isthmus_tunnel_receive_bytes_total{peer=\"b\"} 1234"),
            "{text}"
        );
        assert!(
            text.contains("isthmus_tunnel_transmit_bytes_total{peer=\"b\"} 99"),
            "{text}"
        );
        assert!(
            text.contains("isthmus_tunnel_state{peer=\"b\",state=\"connected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("isthmus_tunnel_state{peer=\"b\",state=\"error\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("isthmus_tunnel_rtt_seconds{peer=\"b\"} 0.00042"),
            "{text}"
        );
        assert!(
            text.contains("isthmus_tunnel_nat_mappings{peer=\"b\"} 3"),
            "{text}"
        );
        let age = text
            .lines()
            .find(|l| l.starts_with("isthmus_tunnel_last_handshake_age_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((7.0..60.0).contains(&age), "{age}");
        tunnels.publish(Vec::new());
        assert!(!scrape(&registry).contains("peer=\"b\""));
    }

    #[test]
    fn a_peer_without_handshake_or_answer_has_no_age_or_rtt() {
        let tunnels = Tunnels::default();
        let mut registry = Registry::default();
        tunnels.register(&mut registry);
        tunnels.publish(vec![PeerSample {
            peer: "c".into(),
            state: TunnelState::Connecting,
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake: None,
            rtt: None,
            nat_mappings: 0,
        }]);
        let text = scrape(&registry);
        assert!(!text.contains("isthmus_tunnel_rtt_seconds{"), "{text}");
        assert!(
            !text.contains("isthmus_tunnel_last_handshake_age_seconds{"),
            "{text}"
        );
        assert!(text.contains("isthmus_tunnel_state{peer=\"c\",state=\"connecting\"} 1"));
    }
}
