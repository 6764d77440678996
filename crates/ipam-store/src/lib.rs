//! The IPAM made durable. [`DurableIpam`] serialises requests over the pure
//! [`isthmus_ipam::Ipam`], logs every change through a [`Store`] and answers only once the change
//! is durable; concurrent requests share one write (group commit).
//!
//! Two stores: [`FileStore`] (a snapshot plus an fsync'd journal in a directory; standalone mode
//! and the lab) and [`KubeStore`] (`IpamStorage` objects through `kube::Client`: a journal of segment
//! objects compacted into per-peer block objects).

mod durable;
pub(crate) mod error;
mod store;

pub use durable::{DurableIpam, MapReply, Options, StoreHealth, UnmapReply};
pub use error::{ServiceError, StoreError};
pub use store::{
    BUCKET, CompactionPolicy, CrashHook, CrashPoint, FileStore, KubeStore, LABEL_BUCKET,
    LABEL_IPAM, LABEL_ROLE, MAX_SEGMENT_ENTRIES, Recovered, Store, stored_snapshot,
};
