//! The connection state of one peer, from what the gateway observes: WireGuard's handshake and
//! the periodic probe of the peer gateway's transit address. Pure: time is passed in.
//!
//! Rules (also in the crate README):
//! - `connected`: a handshake happened, a probe was answered, and fewer than
//!   `failures_to_connecting` probes in a row went unanswered since;
//! - `connecting`: otherwise, until no probe was answered for `error_after`;
//! - `error`: no probe answered for `error_after` (or never, that long after tracking began).
//!
//! WireGuard's handshake age alone would take 2-3 minutes to notice a dead peer; probe
//! failures notice it within `failures_to_connecting` probe intervals.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use isthmus_api::ConnectionState;

use crate::config::ConnectionPolicy;

/// The verdict for one peer after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `connected`, `connecting` or `error`.
    pub state: ConnectionState,
    /// Condition reason of `Connected`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// The latest round-trip time, when connected.
    pub latency: Option<Duration>,
}

impl Verdict {
    /// Before the first probe of a newly configured peer.
    pub fn waiting() -> Self {
        Verdict {
            state: ConnectionState::Connecting,
            reason: "Probing",
            message: "waiting for the first probe of the peer gateway".into(),
            latency: None,
        }
    }
}

/// Probe history of one peer.
#[derive(Debug, Clone)]
pub struct Tracker {
    target: Ipv4Addr,
    since: Instant,
    last_reply: Option<Instant>,
    last_rtt: Option<Duration>,
    failures: u32,
}

impl Tracker {
    /// Starts tracking a peer whose gateway answers at `target`.
    pub fn new(target: Ipv4Addr, now: Instant) -> Self {
        Tracker {
            target,
            since: now,
            last_reply: None,
            last_rtt: None,
            failures: 0,
        }
    }

    /// The probed address.
    pub fn target(&self) -> Ipv4Addr {
        self.target
    }

    /// Records one probe (`Some(rtt)` = answered) and the handshake state, and judges.
    pub fn observe(
        &mut self,
        probe: Option<Duration>,
        handshake: bool,
        now: Instant,
        policy: &ConnectionPolicy,
    ) -> Verdict {
        match probe {
            Some(rtt) => {
                self.failures = 0;
                self.last_reply = Some(now);
                self.last_rtt = Some(rtt);
            }
            None => self.failures = self.failures.saturating_add(1),
        }
        self.judge(handshake, now, policy)
    }

    fn judge(&self, handshake: bool, now: Instant, policy: &ConnectionPolicy) -> Verdict {
        let answered = self.last_reply.is_some() && self.failures < policy.failures_to_connecting;
        if handshake && answered {
            return Verdict {
                state: ConnectionState::Connected,
                reason: "HandshakeAndProbe",
                message: String::new(),
                latency: self.last_rtt,
            };
        }
        let silent = now.saturating_duration_since(self.last_reply.unwrap_or(self.since));
        let target = self.target;
        if silent >= policy.error_after {
            return Verdict {
                state: ConnectionState::Error,
                reason: "PeerUnreachable",
                message: format!(
                    "the peer gateway ({target}) has not answered for {}s",
                    silent.as_secs()
                ),
                latency: None,
            };
        }
        let (reason, message) = if !handshake {
            (
                "NoHandshake",
                "no WireGuard handshake with the peer yet".to_owned(),
            )
        } else if self.last_reply.is_none() {
            ("ProbeFailing", format!("no probe of {target} answered yet"))
        } else {
            (
                "ProbeFailing",
                format!("{} probes of {target} unanswered in a row", self.failures),
            )
        };
        Verdict {
            state: ConnectionState::Connecting,
            reason,
            message,
            latency: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> ConnectionPolicy {
        ConnectionPolicy {
            failures_to_connecting: 2,
            error_after: Duration::from_secs(60),
        }
    }

    fn tracker(t0: Instant) -> Tracker {
        Tracker::new(Ipv4Addr::new(10, 201, 0, 1), t0)
    }

    #[test]
    fn connected_needs_a_handshake_and_an_answer() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let v = t.observe(Some(MS), false, t0, &policy());
        assert_eq!(
            (v.state, v.reason),
            (ConnectionState::Connecting, "NoHandshake")
        );
        let v = t.observe(None, true, t0 + 5 * MS, &policy());
        assert_eq!(
            v.state,
            ConnectionState::Connected,
            "one lost probe is tolerated"
        );
        let v = t.observe(Some(2 * MS), true, t0 + 10 * MS, &policy());
        assert_eq!(v.state, ConnectionState::Connected);
        assert_eq!(v.latency, Some(2 * MS));
    }

    #[test]
    fn failing_probes_turn_connecting_then_error_then_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = tracker(t0);
        assert_eq!(
            t.observe(Some(MS), true, t0, &policy()).state,
            ConnectionState::Connected
        );
        t.observe(None, true, t0 + s, &policy());
        let v = t.observe(None, true, t0 + 2 * s, &policy());
        assert_eq!(
            (v.state, v.reason),
            (ConnectionState::Connecting, "ProbeFailing")
        );
        assert!(v.message.contains("2 probes"), "{}", v.message);
        assert_eq!(v.latency, None);
        let v = t.observe(None, true, t0 + 61 * s, &policy());
        assert_eq!(
            (v.state, v.reason),
            (ConnectionState::Error, "PeerUnreachable")
        );
        let v = t.observe(Some(MS), true, t0 + 62 * s, &policy());
        assert_eq!(v.state, ConnectionState::Connected);
    }

    #[test]
    fn a_peer_never_answering_errors_after_the_window() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let v = t.observe(None, false, t0 + Duration::from_secs(59), &policy());
        assert_eq!(v.state, ConnectionState::Connecting);
        let v = t.observe(None, false, t0 + Duration::from_secs(60), &policy());
        assert_eq!(v.state, ConnectionState::Error);
    }
}
