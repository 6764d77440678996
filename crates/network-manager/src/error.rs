//! [`Error`]: everything a network-manager controller can fail with, and the one place each error
//! is turned into a condition reason ([`Error::reason`]).

use isthmus_api::ClusterId;
use isthmus_ipam_store::ServiceError;

use crate::config::ConfigError;
use crate::peers::ResolveError;

/// A failed reconcile or start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot reach the API of peer {peer}: {source}")]
    PeerUnreachable {
        peer: ClusterId,
        #[source]
        source: ResolveError,
    },
    #[error("API of peer {peer}: {source}")]
    PeerApi {
        peer: ClusterId,
        #[source]
        source: kube::Error,
    },
    #[error("local API: {0}")]
    Kube(#[from] kube::Error),
    #[error("IPAM: {0}")]
    Ipam(#[from] ServiceError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("object without {0}")]
    MissingField(&'static str),
    #[error("cleanup incomplete: {}", .0.join("; "))]
    Cleanup(Vec<String>),
}

impl Error {
    /// The condition reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config(_) => "InvalidConfiguration",
            Error::PeerUnreachable { source, .. } if source.is_refusal() => {
                crate::plan::REASON_KUBECONFIG_REFUSED
            }
            Error::PeerUnreachable { .. } | Error::PeerApi { .. } => "PeerUnreachable",
            Error::Kube(_) => "LocalAPIError",
            Error::Ipam(_) => "IPAMError",
            Error::Finalizer(_) | Error::Cleanup(_) => "CleanupFailed",
            Error::MissingField(_) => "InvalidObject",
        }
    }

    /// Whether this error is a refused peer kubeconfig (a field to fix, named in the message).
    pub fn is_kubeconfig_refused(&self) -> bool {
        matches!(self, Error::PeerUnreachable { source, .. } if source.is_refusal())
    }

    /// Whether this error means the peer's API could not be used.
    pub fn is_peer_unreachable(&self) -> bool {
        matches!(self, Error::PeerUnreachable { .. } | Error::PeerApi { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
