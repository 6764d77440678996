//! The one place where an IPAM error, or a refused caller, becomes a gRPC status code.

use isthmus_ipam::IpamError;
use isthmus_ipam_store::ServiceError;
use tonic::{Code, Status};

use super::auth::AuthError;

/// Maps a service error to the gRPC status a client sees.
pub fn to_status(err: &ServiceError) -> Status {
    let code = match err {
        ServiceError::Ipam(e) => match e {
            IpamError::UnknownPeer(_) => Code::NotFound,
            // transient: the peering is being established
            IpamError::PeerViewUnknown(_) => Code::Unavailable,
            IpamError::ExternalExhausted(_) | IpamError::PoolsExhausted { .. } => {
                Code::ResourceExhausted
            }
            IpamError::InvalidEndpoint { .. }
            | IpamError::ForbiddenEndpoint { .. }
            | IpamError::InvalidPeerNetwork { .. } => Code::InvalidArgument,
            IpamError::InvalidConfig(_) | IpamError::Overlap { .. } => Code::FailedPrecondition,
            IpamError::Corrupt(_) => Code::Internal,
        },
        ServiceError::Store(_) | ServiceError::Unavailable(_) => Code::Unavailable,
    };
    Status::new(code, err.to_string())
}

/// Maps a refused caller to the gRPC status it sees: who it is unknown → `UNAUTHENTICATED`;
/// known but not allowed → `PERMISSION_DENIED`; the check itself impossible → `UNAVAILABLE`.
pub fn auth_status(err: &AuthError) -> Status {
    let code = match err {
        AuthError::Missing | AuthError::Malformed | AuthError::Refused(_) => Code::Unauthenticated,
        AuthError::NotAllowed(_) => Code::PermissionDenied,
        AuthError::Unavailable(_) => Code::Unavailable,
    };
    Status::new(code, err.to_string())
}
