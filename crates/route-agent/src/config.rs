//! [`RouteAgentConfig`]: what one route agent needs before it starts (its node, the namespace of
//! the TunnelEndpoints, timings), and the validation that runs before any watch opens.

use std::time::Duration;

use isthmus_dataplane::routes::overlay::OverlaySettings;

/// Retry timing for failed syncs: exponential from `min`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): `min * 2^attempt`, at most `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// Configuration of one route agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAgentConfig {
    /// The node this agent runs on (the Kubernetes node name): on the gateway node itself the
    /// agent installs nothing.
    pub node_name: String,
    /// Namespace of the TunnelEndpoints.
    pub namespace: String,
    /// How often the routes are re-synced without a TunnelEndpoint change (repairs routes
    /// removed from outside).
    pub resync: Duration,
    /// Retries of failed syncs.
    pub backoff: Backoff,
    /// The node overlay to the gateway node: mode (`auto`: when the gateway node is not
    /// on-link), VXLAN VNI and UDP port.
    pub overlay: OverlaySettings,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node name {0:?} is not a valid node name (DNS-1123 subdomain)")]
    NodeName(String),
    #[error("namespace {0:?} is not a valid namespace name (DNS-1123 label)")]
    Namespace(String),
    #[error("{0}")]
    Timing(String),
    #[error("{0}")]
    Overlay(String),
}

impl RouteAgentConfig {
    /// A configuration with default timings (resync every 30 s, retries from 200 ms to 30 s).
    pub fn new(node_name: &str, namespace: &str) -> Self {
        RouteAgentConfig {
            node_name: node_name.to_owned(),
            namespace: namespace.to_owned(),
            resync: Duration::from_secs(30),
            backoff: Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(30),
            },
            overlay: OverlaySettings::default(),
        }
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_subdomain(&self.node_name) {
            return Err(ConfigError::NodeName(self.node_name.clone()));
        }
        if self.namespace.len() > 63 || !is_dns_label(&self.namespace) {
            return Err(ConfigError::Namespace(self.namespace.clone()));
        }
        if self.resync.is_zero() {
            return Err(ConfigError::Timing("resync interval must be > 0".into()));
        }
        if self.backoff.min.is_zero() || self.backoff.min > self.backoff.max {
            return Err(ConfigError::Timing(format!(
                "backoff must satisfy 0 < min <= max (min {:?}, max {:?})",
                self.backoff.min, self.backoff.max
            )));
        }
        let OverlaySettings { vni, port, .. } = self.overlay;
        if !(1..=0xFF_FFFF).contains(&vni) {
            return Err(ConfigError::Overlay(format!(
                "overlay VNI {vni} must be between 1 and 16777215"
            )));
        }
        if port == 0 {
            return Err(ConfigError::Overlay(
                "overlay UDP port must not be 0".into(),
            ));
        }
        Ok(())
    }
}

/// A DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|l| l.len() <= 63 && is_dns_label(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            RouteAgentConfig::new("node-1", "isthmus").validate(),
            Ok(())
        );
        let fqdn = RouteAgentConfig::new("worker-1.lab.example", "isthmus");
        assert_eq!(fqdn.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        for node in ["", "Node_1", "-a", "a.", &"a".repeat(64)] {
            let c = RouteAgentConfig::new(node, "isthmus");
            assert!(
                matches!(c.validate(), Err(ConfigError::NodeName(_))),
                "{node}"
            );
        }
        let c = RouteAgentConfig::new("n", "a.b");
        assert!(matches!(c.validate(), Err(ConfigError::Namespace(_))));
        let mut c = RouteAgentConfig::new("n", "isthmus");
        c.resync = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
        let mut c = RouteAgentConfig::new("n", "isthmus");
        c.backoff.min = Duration::from_secs(60);
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
        for (vni, port) in [(0, 4801), (1 << 24, 4801), (1, 0)] {
            let mut c = RouteAgentConfig::new("n", "isthmus");
            c.overlay.vni = vni;
            c.overlay.port = port;
            assert!(matches!(c.validate(), Err(ConfigError::Overlay(_))));
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(3), Duration::from_millis(800));
        assert_eq!(b.delay(4), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }
}
