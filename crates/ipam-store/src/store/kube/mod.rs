//! [`KubeStore`]: the IPAM state as `IpamStorage` objects (root, blocks, journal segments; see
//! [`layout`]). Each group commit is one segment create; every so often the store compacts
//! (blocks, then root, then deletions). This file does the I/O the pure [`layout`] and
//! [`recovery`] plan.
//!
//! Writes are recognised when retried: each object carries this process's `writer` ID, so a
//! create answered `AlreadyExists` (or a replace answered `Conflict`) whose object is exactly
//! what we wrote was our own earlier attempt whose answer was lost. Anything else is another
//! writer: [`StoreError::Conflict`], which stops the IPAM (fencing). Every other API error is
//! returned as is; the durable layer retries it ([`StoreError::is_transient`]).

pub(crate) mod codec;
pub(crate) mod layout;
pub(crate) mod recovery;
mod writes;

use std::collections::HashMap;
use std::sync::Arc;

use isthmus_api::{IpamStorage, IpamStorageSpec};
use isthmus_ipam::{Effect, IpamSnapshot};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use tokio::runtime::Handle;

use self::layout::{Block, Layout};
use self::recovery::Stored;
use super::{Recovered, Store};
use crate::StoreError;

pub use self::recovery::stored_snapshot;

/// Label naming the IPAM a storage object belongs to.
pub const LABEL_IPAM: &str = "net.isthmus.io/ipam";
/// Label saying which part of the state an object is: `root`, `block` or `segment`.
pub const LABEL_ROLE: &str = "net.isthmus.io/ipam-role";
/// Label grouping journal segments by 64 commits, so a compaction deletes them in one call.
pub const LABEL_BUCKET: &str = "net.isthmus.io/ipam-bucket";
/// Commits per segment bucket.
pub const BUCKET: u64 = 64;

/// Where a test can make the process die in the middle of a compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A block was written, the root not yet.
    BlockWritten { unpeering: bool },
    /// The root was written, nothing deleted yet.
    RootWritten { unpeering: bool },
}

/// Called at each [`CrashPoint`]; a test hook aborts the process there.
pub type CrashHook = Arc<dyn Fn(CrashPoint) + Send + Sync>;

/// When the store compacts.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// After this many segments since the checkpoint.
    pub segments: u64,
    /// Or once this many blocks changed.
    pub dirty_blocks: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            segments: 2 * BUCKET,
            dirty_blocks: 64,
        }
    }
}

/// `IpamStorage` objects through a Kubernetes client.
pub struct KubeStore {
    api: Api<IpamStorage>,
    raw: Api<DynamicObject>,
    runtime: Handle,
    name: String,
    writer: String,
    layout: Option<Layout>,
    /// Last seen resourceVersion of the root and the blocks.
    versions: HashMap<String, String>,
    /// This writer's first segment: kept, so that a stale writer's next create collides.
    first_commit: Option<u64>,
    /// Segment buckets below this one are deleted.
    deleted_buckets: u64,
    policy: CompactionPolicy,
    fenced: Option<String>,
    /// Compaction failed (transiently): not retried before this many more commits.
    compaction_hold: u64,
    hook: Option<CrashHook>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("name", &self.name)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// The state rooted at `name` in `namespace`. Must be used off the runtime's worker threads
    /// (the durable layer calls it from its committer thread).
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        let resource = ApiResource::erase::<IpamStorage>(&());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        KubeStore {
            api: Api::namespaced(client.clone(), namespace),
            raw: Api::namespaced_with(client, namespace, &resource),
            runtime: Handle::current(),
            name: name.to_owned(),
            writer: format!("{}-{nanos:x}", std::process::id()),
            layout: None,
            versions: HashMap::new(),
            first_commit: None,
            deleted_buckets: 0,
            policy: CompactionPolicy::default(),
            fenced: None,
            compaction_hold: 0,
            hook: None,
        }
    }

    /// Compacts on another schedule (tests force compactions with small values).
    pub fn with_compaction(mut self, policy: CompactionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Calls `hook` at each [`CrashPoint`] (crash tests).
    pub fn with_crash_hook(mut self, hook: CrashHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// This process's writer ID, as written in every object.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    fn layout(&mut self) -> Result<&mut Layout, StoreError> {
        self.layout
            .as_mut()
            .ok_or_else(|| StoreError::Other("the IPAM store was not loaded".into()))
    }

    /// Every object of the state, parsed one by one so a bad one is named.
    fn list(&mut self) -> Result<Vec<(String, IpamStorageSpec)>, StoreError> {
        let lp = ListParams::default().labels(&format!("{LABEL_IPAM}={}", self.name));
        let raw = self.raw.clone();
        let list = self.runtime.block_on(raw.list(&lp))?;
        let mut out = Vec::with_capacity(list.items.len());
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let spec = o.data.get("spec").cloned().unwrap_or_default();
            let spec: IpamStorageSpec =
                serde_json::from_value(spec).map_err(|e| StoreError::Corrupt {
                    path: format!("IpamStorage {name}"),
                    message: format!("unreadable: {e}"),
                })?;
            if let Some(rv) = o.metadata.resource_version {
                self.versions.insert(name.clone(), rv);
            }
            out.push((name, spec));
        }
        Ok(out)
    }

    /// Writes the blocks and root the layout needs, then deletes what the new root drops.
    fn compact_now(&mut self) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        let layout = self.layout()?;
        let plan = layout.compaction(&writer);
        let unpeering = !plan.drop_blocks.is_empty() && layout.root_dirty;
        for (name, spec) in &plan.blocks {
            self.put(name, spec.clone(), "block")?;
            self.crash_point(CrashPoint::BlockWritten { unpeering });
        }
        let root = self.name.clone();
        self.put(&root, plan.root.clone(), "root")?;
        self.crash_point(CrashPoint::RootWritten { unpeering });
        self.layout()?.compacted(&plan);
        for name in &plan.drop_blocks {
            self.delete(name)?;
            self.versions.remove(name);
        }
        self.delete_old_segments(plan.checkpoint)
    }

    fn crash_point(&self, point: CrashPoint) {
        if let Some(hook) = &self.hook {
            hook(point);
        }
    }

    /// Compacts when the policy says so; a transient failure waits some commits, fencing sticks.
    fn maybe_compact(&mut self) {
        let Some(layout) = &self.layout else { return };
        let since = layout.commit - layout.checkpoint;
        if self.compaction_hold > 0 {
            self.compaction_hold -= 1;
            return;
        }
        if since < self.policy.segments && layout.dirty.len() < self.policy.dirty_blocks {
            return;
        }
        match self.compact_now() {
            Ok(()) => {}
            Err(StoreError::Conflict { name }) => {
                tracing::error!(object = %name, "IpamStorage written by another writer");
                self.fenced = Some(name);
            }
            Err(e) => {
                tracing::warn!(error = %e, "IpamStorage compaction failed; retried later");
                self.compaction_hold = 16;
            }
        }
    }

    fn upgrade(&mut self, snapshot: &IpamSnapshot, shards: Vec<String>) -> Result<(), StoreError> {
        tracing::info!(store = %self.describe(), shards = shards.len(),
            endpoints = snapshot.endpoints.len(), "upgrading the sharded IpamStorage layout");
        self.layout = Some(Layout::from_snapshot(&self.name, snapshot, 0));
        self.compact_now()?;
        for name in shards {
            self.delete(&name)?;
        }
        Ok(())
    }
}

impl Store for KubeStore {
    fn load(&mut self) -> Result<Option<Recovered>, StoreError> {
        let objects = self.list()?;
        let snapshot = match recovery::recover(&self.name, objects)? {
            Stored::Empty => return Ok(None),
            Stored::Legacy { snapshot, shards } => {
                self.upgrade(&snapshot, shards)?;
                snapshot
            }
            Stored::Current {
                layout,
                garbage,
                replayed,
            } => {
                let snapshot = layout.snapshot()?;
                self.deleted_buckets = layout.checkpoint / BUCKET;
                self.layout = Some(layout);
                // The claim: our root write fences any earlier writer's compactions.
                self.compact_now()?;
                for name in garbage {
                    self.delete(&name)?;
                }
                tracing::debug!(store = %self.describe(), replayed, "IpamStorage recovered");
                snapshot
            }
        };
        Ok(Some(Recovered {
            snapshot,
            log: Vec::new(),
        }))
    }

    fn append(&mut self, effects: &[Effect]) -> Result<(), StoreError> {
        if let Some(name) = &self.fenced {
            return Err(StoreError::Conflict { name: name.clone() });
        }
        let writer = self.writer.clone();
        let layout = self.layout()?;
        let commit = layout.commit + 1;
        let entries = effects
            .iter()
            .map(|e| layout.entry(e))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = layout.segment(commit, entries.clone(), &writer);
        let name = layout.segment_name(commit);
        self.create_segment(&name, commit, spec)?;
        self.first_commit.get_or_insert(commit);
        self.layout()?.apply(&entries, commit)?;
        self.maybe_compact();
        Ok(())
    }

    fn compact(&mut self, snapshot: &IpamSnapshot) -> Result<(), StoreError> {
        let commit = self.layout.as_ref().map_or(0, |l| l.commit);
        let mut fresh = Layout::from_snapshot(&self.name, snapshot, commit);
        if let Some(old) = self.layout.take() {
            for key in old.blocks.keys() {
                if !fresh.blocks.contains_key(key) {
                    fresh.blocks.insert(key.clone(), Block::default());
                    fresh.dirty.insert(key.clone());
                }
            }
        }
        self.layout = Some(fresh);
        self.compact_now()
    }

    fn wants_compaction(&self) -> bool {
        false
    }

    fn batch_limit(&self) -> usize {
        MAX_SEGMENT_ENTRIES
    }

    fn describe(&self) -> String {
        format!("kube:{}/{}", self.api.resource_url(), self.name)
    }
}

/// Most changes in one segment: the largest entry (a PeerSet with six CIDRs and a 63-character
/// cluster ID) is under 420 bytes, so a segment stays below 256 KiB (checked by a test).
pub const MAX_SEGMENT_ENTRIES: usize = 512;
