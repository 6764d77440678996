//! B2 hop by hop, for `isthmus lab bench`: when each new DNAT entry became visible in the hub's
//! API (a NatMapping watch of the bench's own, as the gateway's sees it), and what the
//! network-manager's NatMapping publisher and the gateway's NAT fast path cost per run, read from
//! their own `/metrics` (`isthmus_reconcile_duration_seconds`) before and after the sequential
//! mappings. The hops between: reply → entry in the API (IPAM commit, publisher, API write,
//! watch event) → packets carried (gateway watch event, batch window, element batch, one echo).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use isthmus_api::NatMapping;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Each NatMapping entry (new IP) with the instant a watch first saw it, in arrival order.
type Sightings = Arc<Mutex<Vec<(Ipv4Addr, Instant)>>>;

/// A watch of one namespace's NatMappings that records when each entry appears.
#[derive(Debug)]
pub struct NatWatch {
    seen: Sightings,
    task: JoinHandle<()>,
}

impl NatWatch {
    /// Starts watching `namespace` of the API `client` reaches; returns once the initial list is
    /// in (entries present then are not sightings).
    pub async fn start(client: Client, namespace: &str) -> NatWatch {
        let api: Api<NatMapping> = Api::namespaced(client, namespace);
        let seen: Sightings = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut known: HashMap<String, BTreeSet<Ipv4Addr>> = HashMap::new();
            let mut stream = nat_events(api).boxed();
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                match event {
                    Event::InitApply(nm) => {
                        known.insert(nm.name_any(), keys(&nm));
                    }
                    Event::InitDone => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Apply(nm) => {
                        let now = Instant::now();
                        let new = keys(&nm);
                        let old = known.remove(&nm.name_any()).unwrap_or_default();
                        let mut seen = record.lock().unwrap_or_else(|e| e.into_inner());
                        seen.extend(new.difference(&old).map(|ip| (*ip, now)));
                        known.insert(nm.name_any(), new);
                    }
                    Event::Delete(nm) => {
                        known.remove(&nm.name_any());
                    }
                    Event::Init => known.clear(),
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
        NatWatch { seen, task }
    }

    /// When the watch first saw entry `ip` appear at or after `since`, if it did.
    pub fn seen_after(&self, ip: Ipv4Addr, since: Instant) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|(seen_ip, _)| *seen_ip == ip)
            .map(|(_, at)| *at)
            .find(|at| *at >= since)
    }
}

impl Drop for NatWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn nat_events(
    api: Api<NatMapping>,
) -> impl futures::Stream<Item = watcher::Result<Event<NatMapping>>> {
    watcher::watcher(api, watcher::Config::default())
}

fn keys(nm: &NatMapping) -> BTreeSet<Ipv4Addr> {
    nm.spec.cluster_mappings.keys().copied().collect()
}

/// `isthmus_reconcile_duration_seconds{controller=…}`'s sum and count, from `/metrics` at `addr`.
pub async fn reconcile_totals(addr: SocketAddr, controller: &str) -> anyhow::Result<(f64, f64)> {
    let labels = format!("controller=\"{controller}\"");
    histogram_totals(addr, "isthmus_reconcile_duration_seconds", &labels).await
}

/// The sum and count of histogram `name`'s series with exactly `labels` (as rendered, e.g.
/// `method="MapEndpointIP",code="OK"`), from `/metrics` at `addr`.
pub async fn histogram_totals(
    addr: SocketAddr,
    name: &str,
    labels: &str,
) -> anyhow::Result<(f64, f64)> {
    let samples = scrape(addr).await?;
    let series = |suffix: &str| {
        let name = format!("{name}_{suffix}{{{labels}}}");
        samples.get(&name).copied().unwrap_or(0.0)
    };
    Ok((series("sum"), series("count")))
}

/// The mean of the runs between two [`reconcile_totals`], and how many there were.
pub fn mean_between(before: (f64, f64), after: (f64, f64)) -> Option<(Duration, u64)> {
    let runs = after.1 - before.1;
    (runs > 0.0).then(|| {
        let mean = (after.0 - before.0) / runs;
        (Duration::from_secs_f64(mean.max(0.0)), runs as u64)
    })
}

/// The cumulative buckets of histogram `name` (no labels) from `/metrics` at `addr`: (upper
/// bound, count) in ascending order, `+Inf` last.
pub async fn histogram(addr: SocketAddr, name: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = scrape(addr)
        .await?
        .into_iter()
        .filter_map(|(series, count)| {
            let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(buckets)
}

/// The bucket bound under which fraction `q` of the observations between two [`histogram`]
/// scrapes fell (an upper bound of the quantile), or `None` with no observation or only past
/// the last finite bound.
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<Duration> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - earlier)
        })
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let (le, _) = counts.iter().find(|(_, n)| *n >= q * total)?;
    le.is_finite().then(|| Duration::from_secs_f64(*le))
}

/// Every sample of a scrape: `name{labels}` → value.
async fn scrape(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = "GET /metrics HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}
