//! [`DurableIpam`]: the IPAM behind a mutex, with every change made durable before its reply.
//!
//! A request locks the state, plans, applies the effect in memory and queues it for the committer
//! thread, all under the lock (so the queue order is the apply order); it then waits, without the
//! lock, for the committer to report its batch durable. The committer takes everything queued
//! (and, after a slow write, what keeps arriving for a short while: the callers it just woke),
//! writes it with one store call (one fsync), and wakes every waiter: group commit. A request
//! that changes nothing but read state another request has not yet made durable waits for that
//! state too (a barrier), so nothing is ever acknowledged before it is durable.
//!
//! A store that cannot write for a while (the Kubernetes API is down or answers 5xx) is retried
//! with backoff: the batch stays in the committer's hands, its requests wait up to a bound and
//! then get `Unavailable` (their change is kept and made durable when the store returns), new
//! changes are refused at once, and [`DurableIpam::health`] says `Degraded` until a write
//! succeeds again. Only a permanent failure (another writer, corruption, a failed `fdatasync`)
//! stops the service: the state in memory may then hold changes that are not durable, so every
//! later request is refused until a restart recovers the durable state.
//!
//! Each change also says which block of which peer's NAT mapping it touches (asked of the IPAM
//! before it is applied); the committer folds those of a durable batch into one [`NatDirty`]
//! before it notifies subscribers, so the NatMapping publisher writes only what changed
//! ([`DurableIpam::take_nat_changes`]).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use isthmus_ipam::{
    Cidr, ClusterId, Effect, Ipam, IpamConfig, IpamError, IpamSnapshot, NatDirty, NatTouch,
    PeerNetworks,
};
use tokio::sync::oneshot;

use crate::{ServiceError, Store, StoreError};

/// Most jobs the committer folds into one write.
const MAX_BATCH: usize = 16_384;

/// The longest pause between two arriving jobs that [`gather`] still waits through.
const GATHER_GAP: Duration = Duration::from_micros(50);

type Waiter = oneshot::Sender<Result<(), String>>;

enum Job {
    Append(Effect, NatTouch, Waiter),
    Barrier(Waiter),
    Compact(Box<IpamSnapshot>),
}

struct Core {
    ipam: Ipam,
    queue: mpsc::Sender<Job>,
    enqueued: u64,
}

struct Shared {
    core: Mutex<Core>,
    durable: AtomicU64,
    compaction_wanted: AtomicBool,
    failure: OnceLock<String>,
    /// Whether the store is serving, retrying (and why) or failed.
    health: tokio::sync::watch::Sender<StoreHealth>,
    options: Options,
    store_name: String,
    /// Closed when the committer thread has ended and dropped its store.
    stopped: tokio::sync::watch::Receiver<()>,
    /// Count of effects made durable; bumped after each committed batch.
    committed: tokio::sync::watch::Sender<u64>,
    /// NAT mapping blocks changed by durable batches and not yet taken by the publisher.
    nat_dirty: Mutex<NatDirty>,
}

/// Whether the store can make changes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// Writes succeed.
    Serving,
    /// The last write failed with a transient error and is being retried; new changes are
    /// refused (`Unavailable`) until it succeeds.
    Degraded(String),
    /// A permanent failure: the service refuses everything until a restart.
    Failed(String),
}

/// Tunables of the durable layer.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a request waits for its change to be durable before it gets `Unavailable`.
    pub wait: Duration,
    /// First and largest delay between retries of a failed write.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wait: Duration::from_secs(5),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
        }
    }
}

/// The durable, concurrent IPAM. Cheap to clone.
#[derive(Clone)]
pub struct DurableIpam {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DurableIpam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableIpam")
            .field("store", &self.shared.store_name)
            .finish()
    }
}

/// The answer to `MapEndpointIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapReply {
    pub new_ip: Ipv4Addr,
    /// The peer's NAT mapping entry `(new IP, endpoint)` when an ExternalCIDR address was used.
    pub nat_entry: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// The answer to `UnmapEndpointIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmapReply {
    /// The NAT mapping entry (its new IP) that disappeared, if any.
    pub removed_new_ip: Option<Ipv4Addr>,
}

impl DurableIpam {
    /// Recovers the state from `store` (or initialises it from `config` and stores it), checks it
    /// against `config`, and starts the committer thread.
    pub async fn open<S: Store>(config: &IpamConfig, store: S) -> Result<Self, ServiceError> {
        Self::open_with(config, store, Options::default()).await
    }

    /// [`DurableIpam::open`] with other [`Options`].
    pub async fn open_with<S: Store>(
        config: &IpamConfig,
        store: S,
        options: Options,
    ) -> Result<Self, ServiceError> {
        let config = config.clone();
        let job = tokio::task::spawn_blocking(move || recover(&config, store));
        let (ipam, store) = job
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        let store_name = store.describe();
        let (queue, jobs) = mpsc::channel();
        let (stopping, stopped) = tokio::sync::watch::channel(());
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                ipam,
                queue,
                enqueued: 0,
            }),
            durable: AtomicU64::new(0),
            compaction_wanted: AtomicBool::new(false),
            failure: OnceLock::new(),
            health: tokio::sync::watch::Sender::new(StoreHealth::Serving),
            options,
            store_name,
            stopped,
            committed: tokio::sync::watch::Sender::new(0),
            nat_dirty: Mutex::default(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("ipam-commit".into())
            .spawn(move || {
                commit_loop(store, jobs, weak);
                drop(stopping);
            })
            .map_err(|e| ServiceError::Unavailable(format!("cannot start committer: {e}")))?;
        Ok(DurableIpam { shared })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Core>, ServiceError> {
        if let Some(f) = self.shared.failure.get() {
            return Err(ServiceError::Unavailable(f.clone()));
        }
        self.shared
            .core
            .lock()
            .map_err(|_| ServiceError::Unavailable("state lock poisoned".into()))
    }

    /// Plans with `plan`; applies and durably logs its effect; replies once durable.
    async fn mutate<T>(
        &self,
        plan: impl FnOnce(&Ipam) -> Result<(T, Option<Effect>), IpamError>,
    ) -> Result<T, ServiceError> {
        let (value, wait) = {
            let mut core = self.lock()?;
            let (value, effect) = plan(&core.ipam)?;
            let wait = match effect {
                Some(_) if self.degraded().is_some() => {
                    let why = self.degraded().unwrap_or_default();
                    return Err(ServiceError::Unavailable(format!(
                        "the IPAM state cannot be written right now ({why}); retry later"
                    )));
                }
                Some(e) => Some(self.enqueue(&mut core, e)?),
                None if self.shared.durable.load(Ordering::Acquire) < core.enqueued => {
                    let (tx, rx) = oneshot::channel();
                    send(&core.queue, Job::Barrier(tx))?;
                    Some(rx)
                }
                None => None,
            };
            (value, wait)
        };
        if let Some(rx) = wait {
            let limit = self.shared.options.wait;
            let Ok(outcome) = tokio::time::timeout(limit, rx).await else {
                let why = self
                    .degraded()
                    .unwrap_or_else(|| "the store is slow".into());
                return Err(ServiceError::Unavailable(format!(
                    "not durable after {limit:?} ({why}); the change is kept and made durable \
                     once the store can write"
                )));
            };
            let outcome =
                outcome.map_err(|_| ServiceError::Unavailable("committer gone".into()))?;
            outcome.map_err(ServiceError::Unavailable)?;
        }
        Ok(value)
    }

    /// Why the store is retrying, when it is.
    fn degraded(&self) -> Option<String> {
        match &*self.shared.health.borrow() {
            StoreHealth::Degraded(why) => Some(why.clone()),
            _ => None,
        }
    }

    fn enqueue(
        &self,
        core: &mut Core,
        effect: Effect,
    ) -> Result<oneshot::Receiver<Result<(), String>>, ServiceError> {
        let touch = core.ipam.nat_touch(&effect);
        core.ipam.apply(&effect)?;
        core.enqueued += 1;
        let (tx, rx) = oneshot::channel();
        send(&core.queue, Job::Append(effect, touch, tx))?;
        if self.shared.compaction_wanted.swap(false, Ordering::AcqRel) {
            send(&core.queue, Job::Compact(Box::new(core.ipam.snapshot())))?;
        }
        Ok(rx)
    }

    /// `MapEndpointIP` (seed Algorithm 3).
    pub async fn map_endpoint_ip(
        &self,
        cluster: &ClusterId,
        ip: Ipv4Addr,
    ) -> Result<MapReply, ServiceError> {
        self.mutate(|ipam| {
            let out = ipam.plan_map(cluster, ip)?;
            let nat_entry = out.nat_entry.then_some((out.new_ip, ip));
            Ok((
                MapReply {
                    new_ip: out.new_ip,
                    nat_entry,
                },
                out.effect,
            ))
        })
        .await
    }

    /// `UnmapEndpointIP` (seed Algorithm 4).
    pub async fn unmap_endpoint_ip(
        &self,
        cluster: &ClusterId,
        ip: Ipv4Addr,
    ) -> Result<UnmapReply, ServiceError> {
        self.mutate(|ipam| {
            let out = ipam.plan_unmap(cluster, ip)?;
            Ok((
                UnmapReply {
                    removed_new_ip: out.removed_new_ip,
                },
                out.effect,
            ))
        })
        .await
    }

    /// `GetHomePodIP`: how we address a pod of `cluster`.
    pub async fn home_pod_ip(
        &self,
        cluster: &ClusterId,
        ip: Ipv4Addr,
    ) -> Result<Ipv4Addr, ServiceError> {
        self.mutate(|ipam| Ok((ipam.home_pod_ip(cluster, ip)?, None)))
            .await
    }

    /// `BelongsToPodCIDR`. The Pod CIDR never changes at run time, so no barrier is needed.
    pub fn belongs_to_pod_cidr(&self, ip: Ipv4Addr) -> Result<bool, ServiceError> {
        Ok(self.lock()?.ipam.belongs_to_pod_cidr(ip))
    }

    /// Decides (or repeats the decision) how we address `cluster`'s networks.
    pub async fn upsert_peer(
        &self,
        cluster: &ClusterId,
        pod: Cidr,
        external: Cidr,
    ) -> Result<PeerNetworks, ServiceError> {
        self.mutate(|ipam| {
            let effect = ipam.plan_peer(cluster, pod, external)?;
            let Effect::PeerSet { networks, .. } = &effect else {
                return Err(IpamError::Corrupt("plan_peer gave no PeerSet".into()));
            };
            let unchanged = ipam.peer(cluster) == Some(networks);
            Ok((networks.clone(), (!unchanged).then_some(effect)))
        })
        .await
    }

    /// Records how `cluster` addresses our networks (`None` = as-is).
    pub async fn set_peer_view(
        &self,
        cluster: &ClusterId,
        pod_nat: Option<Cidr>,
        external_nat: Option<Cidr>,
    ) -> Result<PeerNetworks, ServiceError> {
        self.mutate(|ipam| {
            let effect = ipam.plan_peer_view(cluster, pod_nat, external_nat)?;
            let Effect::PeerSet { networks, .. } = &effect else {
                return Err(IpamError::Corrupt("plan_peer_view gave no PeerSet".into()));
            };
            let unchanged = ipam.peer(cluster) == Some(networks);
            Ok((networks.clone(), (!unchanged).then_some(effect)))
        })
        .await
    }

    /// Removes `cluster` and frees everything of it. Removing an unknown peer is a no-op.
    pub async fn remove_peer(&self, cluster: &ClusterId) -> Result<(), ServiceError> {
        self.mutate(|ipam| match ipam.plan_remove_peer(cluster) {
            Ok(e) => Ok(((), Some(e))),
            Err(IpamError::UnknownPeer(_)) => Ok(((), None)),
            Err(e) => Err(e),
        })
        .await
    }

    /// Reads the current state (which may include changes still being made durable; use it for
    /// status and metrics, never to answer a request).
    pub fn read<R>(&self, f: impl FnOnce(&Ipam) -> R) -> Result<R, ServiceError> {
        Ok(f(&self.lock()?.ipam))
    }

    /// Whether the service is alive: false after a permanent store failure only (a restart is
    /// then needed). A store that is retrying is alive.
    pub fn is_healthy(&self) -> bool {
        self.shared.failure.get().is_none()
    }

    /// Whether changes can be made durable now (not retrying, not failed).
    pub fn is_serving(&self) -> bool {
        *self.shared.health.borrow() == StoreHealth::Serving
    }

    /// The store's state now.
    pub fn health(&self) -> StoreHealth {
        self.shared.health.borrow().clone()
    }

    /// A receiver that changes whenever [`DurableIpam::health`] does (gRPC health follows it).
    pub fn watch_health(&self) -> tokio::sync::watch::Receiver<StoreHealth> {
        self.shared.health.subscribe()
    }

    /// A receiver that changes after every batch of changes is made durable (its value is the
    /// number of effects committed so far). Controllers that mirror IPAM state into resources
    /// (NatMappings) wait on it, then read the state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    /// Takes the NAT mapping blocks changed by the batches made durable since the last call
    /// (call it after [`DurableIpam::subscribe`] reported a change). Cheap: no IPAM lock, no
    /// state read; its size is bounded by the blocks touched, not by the state.
    pub fn take_nat_changes(&self) -> NatDirty {
        let mut dirty = self
            .shared
            .nat_dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *dirty)
    }

    /// Drops this handle and, once every other handle is gone too, waits until the committer
    /// has ended and dropped its store (which finishes a compaction in flight). A restart in the
    /// same process (tests, benchmarks) opens the store again only after this.
    pub async fn close(self) {
        let mut stopped = self.shared.stopped.clone();
        drop(self);
        while stopped.changed().await.is_ok() {}
    }

    /// The store in use, for logs.
    pub fn store_name(&self) -> &str {
        &self.shared.store_name
    }
}

fn send(queue: &mpsc::Sender<Job>, job: Job) -> Result<(), ServiceError> {
    queue
        .send(job)
        .map_err(|_| ServiceError::Unavailable("committer thread stopped".into()))
}

/// Loads and replays the store, or initialises it; runs on a blocking thread.
fn recover<S: Store>(config: &IpamConfig, mut store: S) -> Result<(Ipam, S), ServiceError> {
    let ipam = match store.load()? {
        None => {
            let ipam = Ipam::new(config)?;
            store.compact(&ipam.snapshot())?;
            tracing::info!(store = %store.describe(), "initialised a new IPAM state");
            ipam
        }
        Some(rec) => {
            let mut ipam = Ipam::from_snapshot(&rec.snapshot)?;
            for e in &rec.log {
                ipam.apply(e).map_err(|err| StoreError::Corrupt {
                    path: store.describe(),
                    message: format!("replaying {e:?}: {err}"),
                })?;
            }
            ipam.check_config(config)?;
            tracing::info!(
                store = %store.describe(),
                peers = ipam.peers().count(),
                endpoints = ipam.endpoint_count(),
                replayed = rec.log.len(),
                "recovered the IPAM state"
            );
            ipam
        }
    };
    Ok((ipam, store))
}

/// The committer: drains the queue, writes each batch with one store call, wakes the waiters.
fn commit_loop<S: Store>(mut store: S, jobs: mpsc::Receiver<Job>, shared: std::sync::Weak<Shared>) {
    let mut effects = Vec::new();
    let mut waiters = Vec::new();
    let limit = store.batch_limit().max(1);
    let mut last_write = Duration::ZERO;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        gather(&jobs, &mut batch, last_write / 4);
        let Some(sh) = shared.upgrade() else { return };
        let started = Instant::now();
        if let Some(f) = sh.failure.get() {
            fail_all(batch, f);
            continue;
        }
        let mut written = 0u64;
        let mut touched = NatDirty::default();
        let mut result = Ok(());
        for job in batch {
            match job {
                Job::Append(e, touch, w) => {
                    touched.add(touch);
                    effects.push(e);
                    waiters.push(w);
                    if effects.len() >= limit {
                        result = result
                            .and_then(|()| flush(&mut store, &mut effects, &mut written, &sh));
                    }
                }
                Job::Barrier(w) => waiters.push(w),
                Job::Compact(snap) => {
                    result =
                        result.and_then(|()| flush(&mut store, &mut effects, &mut written, &sh));
                    result = result.and_then(|()| store.compact(&snap));
                }
            }
        }
        result = result.and_then(|()| flush(&mut store, &mut effects, &mut written, &sh));
        last_write = started.elapsed();
        let reply = match result {
            Ok(()) => {
                let durable = sh.durable.fetch_add(written, Ordering::AcqRel) + written;
                if !touched.is_empty() {
                    let mut dirty = sh.nat_dirty.lock().unwrap_or_else(|e| e.into_inner());
                    dirty.merge(touched);
                }
                if written > 0 {
                    sh.committed.send_replace(durable);
                }
                sh.compaction_wanted
                    .store(store.wants_compaction(), Ordering::Release);
                Ok(())
            }
            Err(e) => {
                let msg = format!("{} failed: {e}", store.describe());
                tracing::error!(error = %msg, "IPAM store failed; refusing further requests");
                let _ = sh.failure.set(msg.clone());
                sh.health.send_replace(StoreHealth::Failed(msg.clone()));
                Err(msg)
            }
        };
        for w in waiters.drain(..) {
            let _ = w.send(reply.clone());
        }
    }
}

/// Takes the jobs queued behind the first of a batch; then, for at most `linger`, those that
/// keep coming (no gap longer than [`GATHER_GAP`]): the callers the previous batch woke are
/// still being scheduled, and a batch that starts without them leaves them for a batch of
/// their own, so that batches alternate small and large. `linger` is a quarter of the last
/// batch's write time: nothing for a fast store, and at most a quarter more per commit when
/// nobody comes.
fn gather(jobs: &mpsc::Receiver<Job>, batch: &mut Vec<Job>, linger: Duration) {
    batch.extend(jobs.try_iter().take(MAX_BATCH));
    if linger < GATHER_GAP * 2 {
        return;
    }
    let deadline = Instant::now() + linger;
    while batch.len() < MAX_BATCH && Instant::now() < deadline {
        match jobs.recv_timeout(GATHER_GAP) {
            Ok(job) => {
                batch.push(job);
                batch.extend(jobs.try_iter().take(MAX_BATCH));
            }
            Err(_) => return,
        }
    }
}

fn flush<S: Store>(
    store: &mut S,
    effects: &mut Vec<Effect>,
    written: &mut u64,
    sh: &Arc<Shared>,
) -> Result<(), StoreError> {
    if effects.is_empty() {
        return Ok(());
    }
    let r = append_retrying(store, effects, sh);
    *written += effects.len() as u64;
    effects.clear();
    r
}

/// Appends `effects`, retrying transient failures with backoff (the service is `Degraded`
/// meanwhile) until the write succeeds, a permanent error comes, or the service is dropped.
fn append_retrying<S: Store>(
    store: &mut S,
    effects: &[Effect],
    sh: &Arc<Shared>,
) -> Result<(), StoreError> {
    let mut delay = sh.options.retry_min;
    let mut attempts = 0u32;
    loop {
        match store.append(effects) {
            Ok(()) => {
                if attempts > 0 {
                    tracing::info!(store = %sh.store_name, attempts, "IPAM store writes again");
                    sh.health.send_replace(StoreHealth::Serving);
                }
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                attempts += 1;
                let why = format!("{} failed: {e}", store.describe());
                if attempts == 1 || attempts.is_power_of_two() {
                    tracing::warn!(error = %why, attempts, ?delay, "IPAM store write failed; retrying");
                }
                sh.health.send_replace(StoreHealth::Degraded(why));
                if Arc::strong_count(sh) <= 1 {
                    return Err(e); // every handle is gone: nobody waits for this write
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(sh.options.retry_max);
            }
            Err(e) => return Err(e),
        }
    }
}

fn fail_all(batch: Vec<Job>, failure: &str) {
    for job in batch {
        if let Job::Append(_, _, w) | Job::Barrier(w) = job {
            let _ = w.send(Err(failure.to_owned()));
        }
    }
}
