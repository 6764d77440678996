//! [`GatewayConfig`]: everything one gateway controller needs before it starts (cluster,
//! namespace, interface, addresses it publishes, probe and leader-election timing), and the
//! validation that runs before anything touches the API or the kernel.

use std::net::Ipv4Addr;
use std::time::Duration;

use isthmus_api::ClusterId;

/// The longest a dead peer gateway may still be reported `connected` (README: status rules).
pub const MAX_DETECTION: Duration = Duration::from_secs(30);

/// Leader election over a `coordination.k8s.io/v1` Lease in the gateway namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// The node this replica runs on, written on the Lease while it holds it
    /// ([`crate::leader::NODE_ANNOTATION`]) so a standby knows where the datapath is.
    pub node: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews it (well below `lease_duration`).
    pub renew_period: Duration,
    /// How long the holder may fail to renew before it stops programming the kernel (shorter
    /// than `lease_duration`, so it stops before any standby may take over).
    pub renew_deadline: Duration,
    /// How often a non-holder tries to acquire it.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Default timing: a 3 s lease renewed every second, given up after 2 s without a renewal,
    /// campaigned for every 500 ms. A standby takes over a dead holder's lease 3-3.5 s after its
    /// last renewal and a released one within 500 ms (the failover targets are 5 s and 1 s);
    /// the price is one small write per second and two reads per second per standby, and a
    /// holder that cannot reach the API for 2 s stops programming (its datapath stays).
    pub fn new(lease_name: &str, identity: &str) -> Self {
        LeaderConfig {
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            node: String::new(),
            lease_duration: Duration::from_secs(3),
            renew_period: Duration::from_secs(1),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(500),
        }
    }
}

/// When a peer stops being `connected`, and when it becomes `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// Consecutive failed probes after which a connected peer is reported `connecting`.
    pub failures_to_connecting: u32,
    /// How long a peer may go without a probe reply before it is reported `error`.
    pub error_after: Duration,
}

impl Default for ConnectionPolicy {
    fn default() -> Self {
        ConnectionPolicy {
            failures_to_connecting: 2,
            error_after: Duration::from_secs(180),
        }
    }
}

/// Configuration of one gateway controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// This cluster's ID.
    pub cluster_id: ClusterId,
    /// Namespace of the TunnelEndpoints, NatMappings and the Lease.
    pub namespace: String,
    /// WireGuard interface name (unique per host).
    pub interface: String,
    /// UDP listen port.
    pub listen_port: u16,
    /// Tunnel MTU.
    pub mtu: u32,
    /// Persistent keepalive towards every peer, seconds.
    pub keepalive: Option<u16>,
    /// The node this gateway runs on (`status.gatewayNode`).
    pub node_name: String,
    /// The node's address in the cluster (`status.gatewayIP`): route agents' next hop.
    pub node_ip: Ipv4Addr,
    /// Period of the RTT probe and of the status refresh (and of the kernel repair pass).
    pub probe_interval: Duration,
    /// How long one probe waits for its reply.
    pub probe_timeout: Duration,
    /// How long a burst of TunnelEndpoint events is collected before one full reconcile
    /// (NatMapping changes do not wait).
    pub batch_window: Duration,
    /// Status rules.
    pub connection: ConnectionPolicy,
    /// Leader election.
    pub leader: LeaderConfig,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("namespace {0:?} is not a valid namespace name (DNS-1123 label)")]
    Namespace(String),
    #[error("interface name {0:?}: 1-15 characters of letters, digits, '-' or '_'")]
    Interface(String),
    #[error("listen port must not be 0")]
    Port,
    #[error("MTU {0} outside 576..=9000")]
    Mtu(u32),
    #[error("{0}")]
    Node(String),
    #[error("{0}")]
    Timing(String),
    #[error("leader election: {0}")]
    Leader(String),
}

impl GatewayConfig {
    /// A configuration with default timing: probes every 5 s (1 s timeout), lease 3 s.
    pub fn new(
        cluster_id: ClusterId,
        namespace: &str,
        interface: &str,
        node_name: &str,
        node_ip: Ipv4Addr,
        identity: &str,
    ) -> Self {
        GatewayConfig {
            cluster_id,
            namespace: namespace.to_owned(),
            interface: interface.to_owned(),
            listen_port: 51820,
            mtu: 1420,
            keepalive: Some(25),
            node_name: node_name.to_owned(),
            node_ip,
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
            batch_window: Duration::from_millis(2),
            connection: ConnectionPolicy::default(),
            leader: LeaderConfig {
                node: node_name.to_owned(),
                ..LeaderConfig::new("isthmus-gateway", identity)
            },
        }
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.namespace.parse::<ClusterId>().is_err() {
            return Err(ConfigError::Namespace(self.namespace.clone()));
        }
        let ifname_ok = !self.interface.is_empty()
            && self.interface.len() <= 15
            && self
                .interface
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ifname_ok {
            return Err(ConfigError::Interface(self.interface.clone()));
        }
        if self.listen_port == 0 {
            return Err(ConfigError::Port);
        }
        if !(576..=9000).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.node_name.is_empty() {
            return Err(ConfigError::Node(
                "node name is empty (set NODE_NAME)".into(),
            ));
        }
        if self.node_ip.is_unspecified() {
            return Err(ConfigError::Node("node IP is 0.0.0.0 (set NODE_IP)".into()));
        }
        self.validate_timing()?;
        self.validate_leader()
    }

    fn validate_timing(&self) -> Result<(), ConfigError> {
        let timing = |m: String| Err(ConfigError::Timing(m));
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return timing("probe interval and timeout must be > 0".into());
        }
        if self.probe_timeout > self.probe_interval {
            return timing(format!(
                "probe timeout {:?} exceeds the probe interval {:?}",
                self.probe_timeout, self.probe_interval
            ));
        }
        let policy = self.connection;
        if policy.failures_to_connecting == 0 {
            return timing("failures before 'connecting' must be >= 1".into());
        }
        let detection = self.detection_time();
        if detection > MAX_DETECTION {
            return timing(format!(
                "a dead peer would be noticed after {detection:?} ({} probes every {:?}); \
                 the limit is {MAX_DETECTION:?}",
                policy.failures_to_connecting, self.probe_interval
            ));
        }
        if policy.error_after < detection {
            return timing("error_after must not be shorter than the detection time".into());
        }
        Ok(())
    }

    fn validate_leader(&self) -> Result<(), ConfigError> {
        let l = &self.leader;
        let bad = |m: &str| Err(ConfigError::Leader(m.to_owned()));
        if l.lease_name.parse::<ClusterId>().is_err() {
            return bad("lease name is not a DNS-1123 label");
        }
        if l.identity.is_empty() {
            return bad("identity is empty (set POD_NAME)");
        }
        if l.renew_period.is_zero() || l.retry_period.is_zero() {
            return bad("renew and retry periods must be > 0");
        }
        if l.renew_deadline >= l.lease_duration || l.renew_deadline < l.renew_period {
            return bad(
                "the renew deadline must be at least the renew period and below the lease duration",
            );
        }
        if l.lease_duration < Duration::from_secs(1) || l.renew_period * 2 > l.lease_duration {
            return bad("lease duration must be >= 1 s and at least twice the renew period");
        }
        if l.lease_duration.subsec_nanos() != 0 {
            return bad("lease duration must be whole seconds (the Lease stores seconds)");
        }
        Ok(())
    }

    /// Worst case from the peer's death to `connecting`: the failed probes, each a full
    /// interval apart, the last one waiting its whole timeout.
    pub fn detection_time(&self) -> Duration {
        self.probe_interval * self.connection.failures_to_connecting + self.probe_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GatewayConfig {
        GatewayConfig::new(
            "a".parse().unwrap(),
            "isthmus",
            "isthmus0",
            "node-1",
            Ipv4Addr::new(172, 16, 0, 1),
            "gw-0",
        )
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn slow_detection_is_refused() {
        let mut c = config();
        c.probe_interval = Duration::from_secs(20);
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut c = config();
        c.interface = "much-too-long-interface".into();
        assert!(matches!(c.validate(), Err(ConfigError::Interface(_))));
        let mut c = config();
        c.node_ip = Ipv4Addr::UNSPECIFIED;
        assert!(matches!(c.validate(), Err(ConfigError::Node(_))));
        let mut c = config();
        c.leader.identity.clear();
        assert!(matches!(c.validate(), Err(ConfigError::Leader(_))));
        let mut c = config();
        c.leader.renew_period = Duration::from_secs(10);
        assert!(matches!(c.validate(), Err(ConfigError::Leader(_))));
        let mut c = config();
        c.leader.lease_duration = Duration::from_millis(3500);
        assert!(matches!(c.validate(), Err(ConfigError::Leader(_))));
    }
}
