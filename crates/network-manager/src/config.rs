//! [`NetworkManagerConfig`]: what one network-manager needs to know before it starts (its cluster
//! ID, the namespaces it writes to, the local gateway's public parameters, timings), and the
//! validation that runs before any controller starts.

use std::time::Duration;

use isthmus_api::{ClusterId, peer_namespace, validate_endpoint};

use crate::nat_shards::Pacing;

/// The local gateway's public connection parameters, advertised to every peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGateway {
    /// `host:port` peers reach the gateway at.
    pub endpoint: String,
    /// The gateway's WireGuard public key (base64, 32 bytes). Never a private key.
    pub public_key: String,
}

/// Retry timing for failed reconciles: exponential from `min`, capped at `max`.
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

/// Configuration of the network-manager controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkManagerConfig {
    /// This cluster's ID.
    pub cluster_id: ClusterId,
    /// Namespace of our own objects (TunnelEndpoints, NatMappings); received NetworkConfigs are
    /// in each peer's namespace derived from it ([`Self::received_namespace`]).
    pub namespace: String,
    /// The namespace isthmus is installed in in each peer's cluster; our NetworkConfig goes into
    /// the namespace that peer created for us there ([`Self::sent_namespace`]).
    pub peer_namespace: String,
    /// The local gateway's public parameters.
    pub gateway: LocalGateway,
    /// Retries of failed reconciles (an unreachable peer API, a conflict).
    pub backoff: Backoff,
    /// How often a peering is re-checked while waiting for the other side (watches usually
    /// trigger much earlier).
    pub pending_recheck: Duration,
    /// How often a settled peering is re-checked.
    pub resync: Duration,
    /// How the NatMapping publisher batches a burst of IPAM changes into fewer writes.
    pub nat_pacing: Pacing,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("namespace {0:?} is not a valid namespace name (DNS-1123 label)")]
    Namespace(String),
    #[error("gateway endpoint: {0}")]
    Endpoint(String),
    #[error("gateway public key: {0}")]
    PublicKey(String),
    #[error("{0}")]
    Timing(String),
}

impl NetworkManagerConfig {
    /// A configuration with default timings.
    pub fn new(cluster_id: ClusterId, namespace: &str, gateway: LocalGateway) -> Self {
        NetworkManagerConfig {
            cluster_id,
            namespace: namespace.to_owned(),
            peer_namespace: namespace.to_owned(),
            gateway,
            backoff: Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_secs(60),
            },
            pending_recheck: Duration::from_secs(5),
            resync: Duration::from_secs(300),
            nat_pacing: Pacing::default(),
        }
    }

    /// Where our NetworkConfig goes in every peer's API: the namespace the peer made for us.
    pub fn sent_namespace(&self) -> String {
        peer_namespace(&self.peer_namespace, &self.cluster_id)
    }

    /// Where peer `peer` writes its NetworkConfig in our API: the namespace we made for it.
    pub fn received_namespace(&self, peer: &ClusterId) -> String {
        peer_namespace(&self.namespace, peer)
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for ns in [&self.namespace, &self.peer_namespace] {
            if !is_dns_label(ns) {
                return Err(ConfigError::Namespace(ns.clone()));
            }
        }
        validate_endpoint(&self.gateway.endpoint)
            .map_err(|e| ConfigError::Endpoint(e.to_string()))?;
        validate_public_key(&self.gateway.public_key)?;
        if self.backoff.min.is_zero() || self.backoff.min > self.backoff.max {
            return Err(ConfigError::Timing(format!(
                "backoff must satisfy 0 < min <= max (min {:?}, max {:?})",
                self.backoff.min, self.backoff.max
            )));
        }
        for (what, d) in [
            ("pending recheck", self.pending_recheck),
            ("resync", self.resync),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Timing(format!("{what} interval must be > 0")));
            }
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    s.parse::<ClusterId>().is_ok()
}

/// A WireGuard public key: 44 characters of standard base64 encoding 32 bytes (one `=` of
/// padding).
fn validate_public_key(key: &str) -> Result<(), ConfigError> {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    let body = key.strip_suffix('=').unwrap_or("");
    if key.len() != 44 || body.len() != 43 || !body.chars().all(b64) {
        return Err(ConfigError::PublicKey(format!(
            "{key:?} is not a base64-encoded 32-byte key (44 characters ending in '=')"
        )));
    }
    // 43 base64 characters hold 258 bits; the last character's low 2 bits must be zero.
    let last = body.chars().last().unwrap_or('A');
    let value = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        .find(last)
        .unwrap_or(0);
    if value & 0b11 != 0 {
        return Err(ConfigError::PublicKey(format!(
            "{key:?} is not canonical base64 for 32 bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn config() -> NetworkManagerConfig {
        let gw = LocalGateway {
            endpoint: "192.168.100.1:51820".into(),
            public_key: KEY.into(),
        };
        NetworkManagerConfig::new("cluster-a".parse().unwrap(), "isthmus", gw)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = config();
        c.namespace = "Bad_NS".into();
        assert!(matches!(c.validate(), Err(ConfigError::Namespace(_))));
        let mut c = config();
        c.gateway.endpoint = "192.168.100.1".into();
        assert!(matches!(c.validate(), Err(ConfigError::Endpoint(_))));
        for key in ["", "short=", &KEY.replace('=', "A"), &KEY.replace('D', "*")] {
            let mut c = config();
            c.gateway.public_key = key.to_owned();
            assert!(
                matches!(c.validate(), Err(ConfigError::PublicKey(_))),
                "{key}"
            );
        }
        let mut c = config();
        c.backoff.min = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(400));
        assert_eq!(b.delay(4), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }
}
