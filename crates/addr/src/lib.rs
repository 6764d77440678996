//! Validated address types shared by every isthmus crate: [`Cidr`] (a canonical IPv4 network),
//! [`ClusterId`] (a peer's identity) and the reference thesis's `MapIPToNetwork` arithmetic.
//!
//! Pure: no I/O. Parsing is strict so that bad input is rejected at the edge with a message that
//! says what was wrong, and everything past the edge can rely on the invariants.

mod cidr;
mod cluster_id;

pub use cidr::{CIDR_PATTERN, Cidr, CidrError, none_as_absent};
pub use cluster_id::{CLUSTER_ID_PATTERN, ClusterId, ClusterIdError};
