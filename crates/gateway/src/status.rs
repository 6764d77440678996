//! The TunnelEndpoint status the gateway reports, built purely from what it planned and
//! observed: phase, connection, counters, latency, where the gateway runs, and the
//! `TunnelConfigured` / `Connected` conditions. The caller patches it only when it differs.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use isthmus_api::{
    ConditionStatus, ConnectionState, ConnectionStatus, TunnelEndpointStatus, set_condition,
};
use isthmus_dataplane::PeerObserved;
use isthmus_dataplane::tunnel::Backend;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::connection::Verdict;

/// Condition: the peer is programmed into the datapath.
pub const TUNNEL_CONFIGURED: &str = "TunnelConfigured";
/// Condition: handshake done and the peer gateway answers probes.
pub const CONNECTED: &str = "Connected";

/// What every TunnelEndpoint of this gateway shares.
#[derive(Debug, Clone)]
pub struct Reporter<'a> {
    /// WireGuard interface.
    pub interface: &'a str,
    /// Backend in use, once known.
    pub backend: Option<Backend>,
    /// The gateway's node.
    pub node_name: &'a str,
    /// The gateway node's cluster address.
    pub node_ip: Ipv4Addr,
    /// Now, for condition transition times.
    pub now: Timestamp,
}

/// One TunnelEndpoint's situation.
#[derive(Debug, Clone)]
pub enum PeerState<'a> {
    /// Left out of the datapath (or the datapath failed): a condition reason and message.
    Failed {
        /// Condition reason (`Error::reason`).
        reason: &'static str,
        /// Why.
        message: String,
    },
    /// In the datapath.
    Configured {
        /// What the kernel reports for it.
        observed: Option<&'a PeerObserved>,
        /// The connection verdict.
        verdict: &'a Verdict,
    },
}

/// `0.42ms`: a round-trip time for people.
pub fn format_latency(rtt: Duration) -> String {
    format!("{:.2}ms", rtt.as_secs_f64() * 1000.0)
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Kernel => "kernel",
        Backend::Userspace | Backend::WireguardGo => "userspace",
    }
}

fn time(at: SystemTime) -> Option<Time> {
    Timestamp::try_from(at).ok().map(Time)
}

/// The status to report, starting from the previous one (condition transition times persist).
pub fn desired_status(
    previous: Option<&TunnelEndpointStatus>,
    generation: Option<i64>,
    reporter: &Reporter<'_>,
    state: &PeerState<'_>,
) -> TunnelEndpointStatus {
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    let mut set = |type_: &str, status, reason: &str, message: &str| {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            reporter.now,
        );
    };
    let (phase, connection) = match state {
        PeerState::Failed { reason, message } => {
            set(TUNNEL_CONFIGURED, ConditionStatus::False, reason, message);
            set(CONNECTED, ConditionStatus::False, reason, message);
            let connection = ConnectionStatus {
                status: ConnectionState::Error,
                message: message.clone(),
                ..ConnectionStatus::default()
            };
            ("Error", connection)
        }
        PeerState::Configured { observed, verdict } => {
            set(TUNNEL_CONFIGURED, ConditionStatus::True, "Configured", "");
            let connected = if verdict.state == ConnectionState::Connected {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            set(CONNECTED, connected, verdict.reason, &verdict.message);
            let connection = ConnectionStatus {
                status: verdict.state,
                message: verdict.message.clone(),
                last_handshake: observed.and_then(|o| o.last_handshake).and_then(time),
                rx_bytes: observed.map_or(0, |o| o.rx_bytes),
                tx_bytes: observed.map_or(0, |o| o.tx_bytes),
                latency: verdict.latency.map(format_latency),
                latency_micros: verdict.latency.map(|d| d.as_micros() as u64),
            };
            ("Ready", connection)
        }
    };
    TunnelEndpointStatus {
        phase: Some(phase.to_owned()),
        connection,
        interface_name: Some(reporter.interface.to_owned()),
        backend: reporter.backend.map(|b| backend_name(b).to_owned()),
        gateway_node: Some(reporter.node_name.to_owned()),
        gateway_ip: Some(reporter.node_ip),
        observed_generation: generation,
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(now: i64) -> Reporter<'static> {
        Reporter {
            interface: "isthmus0",
            backend: Some(Backend::Userspace),
            node_name: "node-1",
            node_ip: Ipv4Addr::new(172, 16, 0, 1),
            now: Timestamp::from_second(now).unwrap(),
        }
    }

    fn connected() -> Verdict {
        Verdict {
            state: ConnectionState::Connected,
            reason: "HandshakeAndProbe",
            message: String::new(),
            latency: Some(Duration::from_micros(420)),
        }
    }

    #[test]
    fn a_connected_peer_reports_latency_and_conditions() {
        let v = connected();
        let state = PeerState::Configured {
            observed: None,
            verdict: &v,
        };
        let s = desired_status(None, Some(3), &reporter(1000), &state);
        assert_eq!(s.connection.status, ConnectionState::Connected);
        assert_eq!(s.connection.latency.as_deref(), Some("0.42ms"));
        assert_eq!(s.connection.latency_micros, Some(420));
        assert_eq!(s.phase.as_deref(), Some("Ready"));
        assert_eq!(s.backend.as_deref(), Some("userspace"));
        assert_eq!(s.gateway_ip, Some(Ipv4Addr::new(172, 16, 0, 1)));
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.conditions.iter().all(|c| c.status == "True"));
        // Same situation later: identical status, so nothing is patched.
        assert_eq!(
            desired_status(Some(&s), Some(3), &reporter(2000), &state),
            s
        );
    }

    #[test]
    fn a_failed_peer_reports_error_with_its_reason() {
        let state = PeerState::Failed {
            reason: "InvalidTunnelEndpoint",
            message: "peer b: bad key".into(),
        };
        let s = desired_status(None, Some(1), &reporter(1000), &state);
        assert_eq!(s.connection.status, ConnectionState::Error);
        assert_eq!(s.phase.as_deref(), Some("Error"));
        let c = s.conditions.iter().find(|c| c.type_ == TUNNEL_CONFIGURED);
        assert_eq!(c.unwrap().reason, "InvalidTunnelEndpoint");
    }

    #[test]
    fn latency_is_human() {
        assert_eq!(format_latency(Duration::from_micros(1234)), "1.23ms");
        assert_eq!(format_latency(Duration::from_micros(42)), "0.04ms");
    }
}
