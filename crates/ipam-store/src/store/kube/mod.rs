//! [`KubeStore`]: the IPAM state as `IpamStorage` objects (root, blocks, journal segments; see
//! [`layout`]). Each group commit is one segment create; every so often the store plans a
//! compaction (blocks, then root, then deletions) and hands it to the [`compactor`] thread,
//! so commits do not wait for it; a journal grown to its bound ([`CompactionPolicy::journal`])
//! makes the next commit wait (backpressure). This file does the I/O the pure [`layout`] and
//! [`recovery`] plan.
//!
//! Writes are recognised when retried: each object carries this process's `writer` ID, so a
//! create answered `AlreadyExists` (or a replace answered `Conflict`) whose object is exactly
//! what we wrote was our own earlier attempt whose answer was lost. Anything else is another
//! writer: [`StoreError::Conflict`], which stops the IPAM (fencing). Every other API error is
//! returned as is; the durable layer retries it ([`StoreError::is_transient`]).

pub(crate) mod codec;
mod compactor;
pub(crate) mod layout;
pub(crate) mod recovery;
mod writes;

use std::sync::Arc;

use isthmus_api::{IpamStorage, IpamStorageSpec};
use isthmus_ipam::{Effect, IpamSnapshot};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use tokio::runtime::Handle;

use self::compactor::{BlockWriter, Compactor, Outcome};
use self::layout::Layout;
use self::recovery::Stored;
use self::writes::{Objects, Versions};
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

/// When the store compacts, and how far the journal may run ahead of the compactions.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// After this many segments since the last compaction.
    pub segments: u64,
    /// Or once this many blocks changed.
    pub dirty_blocks: usize,
    /// Backpressure: at this many segments past the durable checkpoint (a compaction slower
    /// than the commits, or failing), a commit first waits for the compaction in flight, or
    /// compacts itself. Bounds the journal, hence the recovery's replay.
    pub journal: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            segments: 2 * BUCKET,
            dirty_blocks: 64,
            journal: 8 * BUCKET,
        }
    }
}

/// `IpamStorage` objects through a Kubernetes client. Runs on the committer thread; its
/// compactions run on a thread of their own ([`compactor`]), one at a time, while commits go on.
pub struct KubeStore {
    objects: Objects,
    raw: Api<DynamicObject>,
    layout: Option<Layout>,
    /// This writer's first segment: kept, so that a stale writer's next create collides.
    first_commit: Option<u64>,
    policy: CompactionPolicy,
    /// Started by `load`, with the versions its LIST saw.
    compactor: Option<Compactor>,
    /// The commit the last compaction handed to the compactor was planned at.
    planned: u64,
    fenced: Option<String>,
    /// Compaction failed (transiently): not retried before this many more commits.
    compaction_hold: u64,
    hook: Option<CrashHook>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("name", &self.objects.root)
            .field("writer", &self.objects.writer)
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
            objects: Objects {
                api: Api::namespaced(client.clone(), namespace),
                runtime: Handle::current(),
                root: name.to_owned(),
                writer: format!("{}-{nanos:x}", std::process::id()),
            },
            raw: Api::namespaced_with(client, namespace, &resource),
            layout: None,
            first_commit: None,
            policy: CompactionPolicy::default(),
            compactor: None,
            planned: 0,
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
        &self.objects.writer
    }

    fn layout(&mut self) -> Result<&mut Layout, StoreError> {
        self.layout
            .as_mut()
            .ok_or_else(|| StoreError::Other("the IPAM store was not loaded".into()))
    }

    fn compactor(&mut self) -> Result<&mut Compactor, StoreError> {
        self.compactor
            .as_mut()
            .ok_or_else(|| StoreError::Other("the IPAM store was not loaded".into()))
    }

    /// Every object of the state, parsed one by one so a bad one is named, and their versions.
    /// Read in pages of [`LIST_PAGE`] objects, all from one snapshot (the `continue` token pins
    /// its version): only one page's JSON (with its managedFields) is held at a time, not the
    /// whole state's, which bounds the memory a restart takes.
    fn list(&mut self) -> Result<(Vec<(String, IpamStorageSpec)>, Versions), StoreError> {
        let selector = format!("{LABEL_IPAM}={}", self.objects.root);
        let mut out = Vec::new();
        let mut versions = Versions::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().labels(&selector).limit(LIST_PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let raw = self.raw.clone();
            let page = self.objects.runtime.block_on(raw.list(&lp))?;
            for o in page.items {
                let (name, spec, rv) = parse(o)?;
                if let Some(rv) = rv {
                    versions.insert(name.clone(), rv);
                }
                out.push((name, spec));
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok((out, versions));
            }
        }
    }

    /// Hands the compactor a plan of everything changed since the last one.
    fn submit(&mut self) -> Result<(), StoreError> {
        let writer = self.objects.writer.clone();
        let plan = self.layout()?.compaction(&writer);
        self.planned = plan.checkpoint;
        self.compactor()?.submit(plan)
    }

    /// Takes in a compaction's outcome: the checkpoint moves, or what it covered is dirty
    /// again (a conflict fences this writer; anything else waits some commits).
    fn settle(&mut self, outcome: Result<Outcome, StoreError>) -> Result<(), StoreError> {
        let (plan, result) = outcome?;
        let layout = self.layout()?;
        let Err(e) = result else {
            layout.compacted(&plan);
            return Ok(());
        };
        layout.compaction_failed(&plan);
        match &e {
            StoreError::Conflict { name } => {
                tracing::error!(object = %name, "IpamStorage written by another writer");
                self.fenced = Some(name.clone());
            }
            e => {
                tracing::warn!(error = %e, "IpamStorage compaction failed; retried later");
                self.compaction_hold = 16;
            }
        }
        Err(e)
    }

    /// Takes in the outcome of the compaction in flight if it is done; `wait`s for it if asked.
    fn collect(&mut self, wait: bool) -> Result<(), StoreError> {
        let compactor = self.compactor()?;
        let outcome = if wait {
            compactor.wait()
        } else {
            compactor.poll()
        };
        match outcome {
            Some(Ok(o)) => {
                // a failed compaction is planned again: its error is already acted on
                let _ = self.settle(Ok(o));
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Compacts everything now and waits for it (the claim at start, an upgrade, a snapshot).
    fn compact_now(&mut self) -> Result<(), StoreError> {
        self.collect(true)?;
        self.check_fenced()?;
        self.submit()?;
        let outcome = self
            .compactor()?
            .wait()
            .ok_or_else(|| StoreError::Other("no compaction in flight".into()))?;
        self.settle(outcome)
    }

    fn check_fenced(&self) -> Result<(), StoreError> {
        match &self.fenced {
            Some(name) => Err(StoreError::Conflict { name: name.clone() }),
            None => Ok(()),
        }
    }

    /// Segments past the durable checkpoint.
    fn lag(&self) -> u64 {
        self.layout
            .as_ref()
            .map_or(0, |l| l.commit.saturating_sub(l.checkpoint))
    }

    /// Backpressure: with the journal at its bound, waits for the compaction in flight, and if
    /// that is not enough (or none was in flight), compacts now. Its error fails the commit
    /// before its segment exists, so the durable layer retries it whole.
    fn bound_journal(&mut self) -> Result<(), StoreError> {
        if self.lag() < self.policy.journal {
            return Ok(());
        }
        self.collect(true)?;
        if self.lag() < self.policy.journal {
            return Ok(());
        }
        tracing::debug!(
            lag = self.lag(),
            "IpamStorage journal at its bound: compacting now"
        );
        self.compact_now()
    }

    /// Starts a compaction when the policy says so and none is in flight.
    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        let since = layout.commit - self.planned;
        let due = since >= self.policy.segments || layout.dirty.len() >= self.policy.dirty_blocks;
        if self.compaction_hold > 0 {
            self.compaction_hold -= 1;
            return Ok(());
        }
        if !due || self.fenced.is_some() || self.compactor()?.busy() {
            return Ok(());
        }
        self.submit()
    }

    fn upgrade(&mut self, snapshot: &IpamSnapshot, shards: Vec<String>) -> Result<(), StoreError> {
        tracing::info!(store = %self.describe(), shards = shards.len(),
            endpoints = snapshot.endpoints.len(), "upgrading the sharded IpamStorage layout");
        self.layout = Some(Layout::from_snapshot(&self.objects.root, snapshot, 0));
        self.compact_now()?;
        for name in shards {
            self.objects.delete(&name)?;
        }
        Ok(())
    }

    /// Starts the compactor, knowing the listed `versions` and the state's checkpoint.
    fn start_compactor(&mut self, versions: Versions, checkpoint: u64) -> Result<(), StoreError> {
        let writer = BlockWriter::new(
            self.objects.clone(),
            versions,
            checkpoint / BUCKET,
            self.hook.clone(),
        );
        self.compactor = Some(Compactor::start(writer)?);
        Ok(())
    }
}

impl Store for KubeStore {
    fn load(&mut self) -> Result<Option<Recovered>, StoreError> {
        let (objects, versions) = self.list()?;
        let stored = recovery::recover(&self.objects.root, objects)?;
        let checkpoint = match &stored {
            Stored::Current { layout, .. } => layout.checkpoint,
            _ => 0,
        };
        self.start_compactor(versions, checkpoint)?;
        let snapshot = match stored {
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
                self.planned = layout.checkpoint;
                self.layout = Some(layout);
                // The claim: our root write fences any earlier writer's compactions.
                self.compact_now()?;
                for name in garbage {
                    self.objects.delete(&name)?;
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
        self.collect(false)?;
        self.check_fenced()?;
        self.bound_journal()?;
        let writer = self.objects.writer.clone();
        let layout = self.layout()?;
        let commit = layout.commit + 1;
        let entries = layout.entries(effects)?;
        let spec = layout.segment(commit, entries.clone(), &writer);
        let name = layout.segment_name(commit);
        let keep = self.first_commit.is_none();
        self.objects.create_segment(&name, commit, spec, keep)?;
        self.first_commit.get_or_insert(commit);
        self.layout()?.apply(&entries, commit)?;
        // the segment is durable: a compaction that cannot start now is tried again later
        if let Err(e) = self.maybe_compact() {
            tracing::warn!(error = %e, "IpamStorage compaction not started");
        }
        Ok(())
    }

    fn compact(&mut self, snapshot: &IpamSnapshot) -> Result<(), StoreError> {
        self.collect(true)?;
        let commit = self.layout.as_ref().map_or(0, |l| l.commit);
        let mut fresh = Layout::from_snapshot(&self.objects.root, snapshot, commit);
        if let Some(old) = self.layout.take() {
            for key in old.blocks.keys().chain(&old.dirty) {
                if !fresh.blocks.contains_key(key) {
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
        format!(
            "kube:{}/{}",
            self.objects.api.resource_url(),
            self.objects.root
        )
    }
}

/// Objects per page of the recovery's LIST: ~2 MiB of JSON at most (blocks of ~60 KiB).
const LIST_PAGE: u32 = 32;

/// The name, spec and resourceVersion of a listed object; an unreadable spec is named.
fn parse(o: DynamicObject) -> Result<(String, IpamStorageSpec, Option<String>), StoreError> {
    let name = o.metadata.name.clone().unwrap_or_default();
    let spec = o.data.get("spec").cloned().unwrap_or_default();
    let spec = serde_json::from_value(spec).map_err(|e| StoreError::Corrupt {
        path: format!("IpamStorage {name}"),
        message: format!("unreadable: {e}"),
    })?;
    Ok((name, spec, o.metadata.resource_version))
}

/// Most changes in one segment: the largest entry (a PeerSet with six CIDRs and a 63-character
/// cluster ID) is under 420 bytes, so a segment stays below 256 KiB (checked by a test).
pub const MAX_SEGMENT_ENTRIES: usize = 512;
