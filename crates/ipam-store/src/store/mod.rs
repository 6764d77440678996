//! The [`Store`] trait: how the durable layer persists IPAM effects, and its two
//! implementations.

mod file;
mod journal;
mod kube;

use isthmus_ipam::{Effect, IpamSnapshot};

pub use file::FileStore;
pub use kube::{
    BUCKET, CompactionPolicy, CrashHook, CrashPoint, KubeStore, LABEL_BUCKET, LABEL_IPAM,
    LABEL_ROLE, MAX_SEGMENT_ENTRIES, stored_snapshot,
};

use crate::StoreError;

/// What a store hands back at start: the last snapshot and the effects logged after it.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub snapshot: IpamSnapshot,
    pub log: Vec<Effect>,
}

/// Durable storage of the IPAM. Called from one committer thread; each call may block.
///
/// An `append` that fails with a transient error ([`StoreError::is_transient`]) is called again
/// with the same effects: the store must then make them durable exactly once.
pub trait Store: Send + 'static {
    /// The stored state, or `None` for an empty store.
    fn load(&mut self) -> Result<Option<Recovered>, StoreError>;
    /// Makes `effects` durable, in order, before returning.
    fn append(&mut self, effects: &[Effect]) -> Result<(), StoreError>;
    /// Replaces everything stored with `snapshot` (which already holds every appended effect).
    fn compact(&mut self, snapshot: &IpamSnapshot) -> Result<(), StoreError>;
    /// Whether the log has grown enough that a compaction would pay off.
    fn wants_compaction(&self) -> bool;
    /// Most effects one `append` may be given (one journal object must hold them).
    fn batch_limit(&self) -> usize {
        usize::MAX
    }
    /// A short name for logs (`file:/path`, `kube:ns/name`).
    fn describe(&self) -> String;
}
