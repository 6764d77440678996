//! [`Error`]: everything the gateway controller can fail with, per peer or as a whole, and the
//! one place an error becomes a condition reason ([`Error::reason`]).

use crate::config::ConfigError;

/// A failed start, reconcile or per-peer problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The TunnelEndpoint cannot become a WireGuard peer (bad key, IPv6, bad ranges ...).
    #[error("{0}")]
    InvalidPeer(String),
    /// Another TunnelEndpoint already claims the peer, its key or overlapping ranges.
    #[error("{0}")]
    PeerConflict(String),
    /// TunnelEndpoints disagree on our ExternalCIDR (the transit address lives in it).
    #[error("localExternalCIDR {found} differs from {expected} of the other TunnelEndpoints")]
    ExternalCidrMismatch { found: String, expected: String },
    /// The peer's endpoint host did not resolve to an IPv4 address.
    #[error("endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    /// The datapath refused or failed.
    #[error("datapath: {0}")]
    Dataplane(#[from] isthmus_dataplane::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(String),
    /// The gateway Secret exists but its key does not parse (the key is never echoed).
    #[error("Secret {0}: {1}")]
    KeySecret(String, String),
    /// Another replica holds the Lease now: this one stops programming the kernel.
    #[error("leadership lost: {0}")]
    LeadershipLost(String),
    /// The Lease could not be renewed within the renew deadline (the API is unreachable or
    /// failing): this replica stops programming the kernel until it can renew, and keeps the
    /// datapath as it is, since nobody else can have taken a lease the API cannot hand out.
    #[error("lease not renewed: {0}")]
    RenewalFailed(String),
}

impl Error {
    /// The condition reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config(_) => "InvalidConfiguration",
            Error::InvalidPeer(_) => "InvalidTunnelEndpoint",
            Error::PeerConflict(_) => "PeerConflict",
            Error::ExternalCidrMismatch { .. } => "ExternalCIDRMismatch",
            Error::Endpoint { .. } => "EndpointUnresolvable",
            Error::Dataplane(_) => "DatapathError",
            Error::Kube(_) | Error::Watch(_) => "APIError",
            Error::KeySecret(..) => "InvalidKeySecret",
            Error::LeadershipLost(_) => "LeadershipLost",
            Error::RenewalFailed(_) => "LeaseRenewalFailed",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_problem_has_its_own_reason() {
        let reasons = [
            Error::InvalidPeer(String::new()).reason(),
            Error::PeerConflict(String::new()).reason(),
            Error::ExternalCidrMismatch {
                found: String::new(),
                expected: String::new(),
            }
            .reason(),
            Error::Endpoint {
                endpoint: String::new(),
                message: String::new(),
            }
            .reason(),
        ];
        let unique: std::collections::BTreeSet<_> = reasons.iter().collect();
        assert_eq!(unique.len(), reasons.len());
    }
}
