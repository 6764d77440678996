//! The compactor: the thread that writes a planned [`Compaction`] (the changed blocks, then the
//! root, then the deletions) while the committer goes on creating journal segments. It owns
//! everything only compactions write: the root's and the blocks' last seen versions and the
//! segment buckets already deleted. One compaction at a time; its outcome goes back to the
//! committer with the plan, so a failed one is planned again.
//!
//! Why running it beside the commits is exact: a plan is taken from the committer's layout at
//! commit C, so its blocks hold exactly the state at C (`seq` = C) and its root says
//! `checkpoint` = C; commits after C are segments C+1.. that the compaction never deletes (it
//! deletes only buckets wholly at or before C, after the root is written). Whatever prefix of
//! the compaction's writes and of the later segments has landed, the replay applies each
//! segment past C to the blocks written at C, and each segment past the old checkpoint to the
//! blocks not yet written: the committed state.

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::layout::Compaction;
use super::writes::{Objects, Versions};
use super::{BUCKET, CrashHook, CrashPoint};
use crate::StoreError;

/// A compaction written, or not, and its plan.
pub(super) type Outcome = (Compaction, Result<(), StoreError>);

/// What the compactor writes with.
pub(super) struct BlockWriter {
    objects: Objects,
    versions: Versions,
    /// Segment buckets below this one are deleted.
    deleted_buckets: u64,
    hook: Option<CrashHook>,
}

impl BlockWriter {
    /// A writer that knows the objects' `versions` (from the recovery's LIST) and that the
    /// segment buckets below `deleted_buckets` are gone.
    pub fn new(
        objects: Objects,
        versions: Versions,
        deleted_buckets: u64,
        hook: Option<CrashHook>,
    ) -> Self {
        BlockWriter {
            objects,
            versions,
            deleted_buckets,
            hook,
        }
    }

    /// The writes of `plan`, in order: blocks, root (the switch), dropped blocks, old segments.
    pub fn write(&mut self, plan: &Compaction) -> Result<(), StoreError> {
        let unpeering = plan.root_changed && !plan.drop_blocks.is_empty();
        for (name, spec) in &plan.blocks {
            self.objects
                .put(&mut self.versions, name, spec.clone(), "block")?;
            self.crash_point(CrashPoint::BlockWritten { unpeering });
        }
        let root = self.objects.root.clone();
        self.objects
            .put(&mut self.versions, &root, plan.root.clone(), "root")?;
        self.crash_point(CrashPoint::RootWritten { unpeering });
        for name in &plan.drop_blocks {
            self.objects.delete(name)?;
            self.versions.remove(name);
        }
        self.delete_old_segments(plan.checkpoint)
    }

    fn crash_point(&self, point: CrashPoint) {
        if let Some(hook) = &self.hook {
            hook(point);
        }
    }

    /// Deletes the segment buckets wholly at or before `checkpoint`.
    fn delete_old_segments(&mut self, checkpoint: u64) -> Result<(), StoreError> {
        let done = (checkpoint + 1) / BUCKET;
        if done > self.deleted_buckets {
            self.objects.delete_buckets(self.deleted_buckets, done)?;
            self.deleted_buckets = done;
        }
        Ok(())
    }
}

/// The compactor thread and the compaction it is writing, if any.
pub(super) struct Compactor {
    plans: Option<mpsc::SyncSender<Box<Compaction>>>,
    outcomes: mpsc::Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl Compactor {
    /// Starts the thread.
    pub fn start(mut writer: BlockWriter) -> Result<Self, StoreError> {
        let (plans, todo) = mpsc::sync_channel::<Box<Compaction>>(1);
        let (done, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ipam-compact".into())
            .spawn(move || {
                for plan in todo {
                    let result = writer.write(&plan);
                    if done.send((*plan, result)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Other(format!("cannot start the IPAM compactor: {e}")))?;
        Ok(Compactor {
            plans: Some(plans),
            outcomes,
            thread: Some(thread),
            busy: false,
        })
    }

    /// Whether a compaction is being written.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Hands `plan` to the thread (none may be in flight).
    pub fn submit(&mut self, plan: Compaction) -> Result<(), StoreError> {
        debug_assert!(!self.busy, "one compaction at a time");
        let plans = self.plans.as_ref().ok_or_else(stopped)?;
        if plans.send(Box::new(plan)).is_err() {
            return Err(stopped());
        }
        self.busy = true;
        Ok(())
    }

    /// The outcome of the compaction in flight, if it is done.
    pub fn poll(&mut self) -> Option<Result<Outcome, StoreError>> {
        if !self.busy {
            return None;
        }
        match self.outcomes.try_recv() {
            Ok(outcome) => {
                self.busy = false;
                Some(Ok(outcome))
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.busy = false;
                Some(Err(stopped()))
            }
        }
    }

    /// Waits for the compaction in flight, if any.
    pub fn wait(&mut self) -> Option<Result<Outcome, StoreError>> {
        if !self.busy {
            return None;
        }
        self.busy = false;
        Some(self.outcomes.recv().map_err(|_| stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::Other("the IPAM compactor thread stopped".into())
}

impl Drop for Compactor {
    /// Lets the compaction in flight finish (a restart in the same process must not race it).
    fn drop(&mut self) {
        self.plans = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
