//! The IPAM made durable. [`DurableIpam`] serialises requests over the pure
//! [`isthmus_ipam::Ipam`], logs every change through a [`Store`] and answers only once the change
//! is durable; concurrent requests share one write (group commit).
//!
//! Two stores: [`FileStore`] (a snapshot plus an fsync'd journal in a directory; standalone mode
//! and the lab) and [`KubeStore`] (`IpamStorage` objects through `kube::Client`, sharded).

mod durable;
pub(crate) mod error;
mod store;

pub use durable::{DurableIpam, MapReply, UnmapReply};
pub use error::{ServiceError, StoreError};
pub use store::{FileStore, KubeStore, LABEL_IPAM, Recovered, Store};
