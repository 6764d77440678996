//! Gateway failover in the lab: disrupt the active gateway replica of a cluster (SIGKILL with
//! the pod left down, as when its node is lost; a clean stop, as in a rolling upgrade or a
//! drain; a crash the lab's kubelet restarts at once) while ICMP flows cross the tunnels, and
//! measure the time from the disruption until every flow carries packets again. Afterwards the
//! disrupted pod is started again and must come back as the standby that removes the kernel
//! state it left on its node. `isthmus lab failover` prints the figures; `tests/e2e_failover.rs`
//! asserts the behaviour (not the timing).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use isthmus_lab::PodRecord;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::lab::cluster::NAMESPACE;
use crate::lab::plan::Shape;
use crate::lab::runner::{Lab, LabOptions};

/// The gateway's Lease in a lab cluster (the chart's `<fullname>-gateway`).
pub const LEASE: &str = "isthmus-gateway";
/// How often each flow sends one echo request.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long one echo request waits for its reply.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// Gaps between replies up to this long are the prober's own jitter, not an outage (a single
/// lost echo already makes a gap of about `PROBE_TIMEOUT + PROBE_EVERY`).
const JITTER: Duration = Duration::from_millis(80);
/// The longest a disruption may take to recover before the round fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// How long every flow must carry packets after its gap before the round ends.
const SETTLED: Duration = Duration::from_secs(2);

/// How the active gateway is disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Disruption {
    /// SIGKILL, and the pod stays down (its node is lost): the standby takes the lease once it
    /// expires.
    Kill,
    /// SIGTERM, and the pod stays down (a rolling upgrade, a drain): it releases the lease and
    /// the standby takes it at its next try.
    CleanStop,
    /// SIGKILL, restarted at once as a kubelet restarts a crashed container: the same pod (same
    /// identity) takes its own lease back, or the standby does if it is quicker.
    Crash,
}

impl fmt::Display for Disruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disruption::Kill => "SIGKILL, pod left down",
            Disruption::CleanStop => "clean stop (SIGTERM), pod left down",
            Disruption::Crash => "SIGKILL, restarted at once",
        })
    }
}

/// One ICMP flow through the tunnels: `from` pings `dst`.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub from: PodRecord,
    pub dst: Ipv4Addr,
}

/// The lease as read: holder identity (the pod name) and its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pod: String,
    pub node: Option<String>,
}

/// What one disruption did.
#[derive(Debug, Clone)]
pub struct Round {
    pub disruption: Disruption,
    pub before: Holder,
    pub after: Holder,
    /// Per flow: disruption → packets flowing again (zero: no gap longer than two probes).
    pub recovery: Vec<(String, Duration)>,
    /// The disrupted pod's node held our NAT table when its pod was started again.
    pub left_table: Option<bool>,
    /// Restart → that table gone (the standby's cleanup), when there was one.
    pub cleaned_after: Option<Duration>,
}

impl Round {
    /// The slowest flow's recovery.
    pub fn worst(&self) -> Duration {
        self.recovery
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }
}

/// The lease holder of cluster `cluster`.
pub async fn holder(lab: &Lab, cluster: usize) -> anyhow::Result<Holder> {
    let api: Api<Lease> = Api::namespaced(lab.clusters[cluster].client(), NAMESPACE);
    let lease = api.get(LEASE).await.context("reading the gateway Lease")?;
    let held = isthmus_gateway::leader::Holder::of(&lease);
    if held.identity.is_empty() {
        bail!("nobody holds the gateway Lease");
    }
    Ok(Holder {
        pod: held.identity,
        node: held.node,
    })
}

/// Waits until the lease is held by someone other than `not` (any holder when `None`).
async fn new_holder(lab: &Lab, cluster: usize, not: Option<&str>) -> anyhow::Result<Holder> {
    let started = Instant::now();
    loop {
        if let Ok(h) = holder(lab, cluster).await
            && not != Some(h.pod.as_str())
        {
            return Ok(h);
        }
        if started.elapsed() > RECOVERY_LIMIT {
            bail!("no other replica took the gateway Lease within {RECOVERY_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Flows from every pod of `from` to every pod of `to` (at the addresses `from` was handed).
pub fn flows(lab: &Lab, from: usize, to: usize) -> Vec<Flow> {
    let mut out = Vec::new();
    for client in lab.pods(from) {
        for server in lab.pods(to) {
            let Some(r) = lab
                .reflections
                .iter()
                .find(|r| r.from == from && r.to == to && r.pod == server.name)
            else {
                continue;
            };
            out.push(Flow {
                name: format!(
                    "{}/{} → {}/{}",
                    lab.clusters[from].site.id, client.name, lab.clusters[to].site.id, server.name
                ),
                from: client.clone(),
                dst: r.address(),
            });
        }
    }
    out
}

/// A flow pinging in the background; the instants of its replies.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Instant>>,
}

impl Prober {
    fn start(flow: &Flow) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, from, dst) = (stop.clone(), flow.from.clone(), flow.dst);
        let thread = std::thread::spawn(move || {
            let mut replies = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answered = isthmus_lab::probe::ping(&from, dst, 1, PROBE_TIMEOUT)
                    .is_ok_and(|r| !r.rtts.is_empty());
                if answered {
                    replies.push(Instant::now());
                }
                std::thread::sleep(PROBE_EVERY.saturating_sub(sent.elapsed()));
            }
            replies
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Vec<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// From `at` to the end of the longest gap between replies after `at` (zero when no gap is
/// longer than [`JITTER`]), or `None` when no reply came after `at`.
pub fn recovery(replies: &[Instant], at: Instant) -> Option<Duration> {
    let after: Vec<Instant> = replies.iter().filter(|r| **r > at).copied().collect();
    let first = *after.first()?;
    let mut worst = (first.duration_since(at), first);
    for pair in after.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        if gap > worst.0 {
            worst = (gap, pair[1]);
        }
    }
    Some(if worst.0 <= JITTER {
        Duration::ZERO
    } else {
        worst.1.duration_since(at)
    })
}

/// Whether `flows` have all answered since `since`, each for at least [`SETTLED`] after its
/// last gap: checked by probing once more at the end.
async fn settle(flows: &[Flow]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        tokio::time::sleep(SETTLED).await;
        let checks = flows.iter().map(|f| {
            let (from, dst) = (f.from.clone(), f.dst);
            tokio::task::spawn_blocking(move || {
                isthmus_lab::probe::ping(&from, dst, 3, Duration::from_millis(500))
                    .is_ok_and(|r| r.rtts.len() == 3)
            })
        });
        let all = futures::future::join_all(checks).await;
        if all.into_iter().all(|ok| ok.unwrap_or(false)) {
            return Ok(());
        }
        if started.elapsed() > RECOVERY_LIMIT {
            bail!("the flows did not settle within {RECOVERY_LIMIT:?} after the failover");
        }
    }
}

/// Whether node namespace `netns` holds the gateway's NAT table (`inet isthmus`).
fn has_gateway_table(netns: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "list", "table", "inet", "isthmus",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespace of node `name` of cluster `cluster`.
fn node_netns(lab: &Lab, cluster: usize, name: &str) -> anyhow::Result<String> {
    lab.topology.clusters[cluster]
        .nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.namespace.clone())
        .with_context(|| format!("no node {name}"))
}

/// Disrupts the active gateway of `cluster` while `flows` run, waits for them to recover and
/// settle, then starts the disrupted pod again and waits until its node is clean.
pub async fn round(
    lab: &mut Lab,
    cluster: usize,
    how: Disruption,
    flows: &[Flow],
) -> anyhow::Result<Round> {
    let before = holder(lab, cluster).await?;
    let probers: Vec<Prober> = flows.iter().map(Prober::start).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = Instant::now();
    match how {
        Disruption::Kill => lab.clusters[cluster].kill_pod(&before.pod)?,
        Disruption::CleanStop => lab.clusters[cluster].stop_pod(&before.pod).await?,
        Disruption::Crash => {
            lab.clusters[cluster].kill_pod(&before.pod)?;
            lab.clusters[cluster].start_pod(&before.pod)?;
        }
    }
    let after = match how {
        Disruption::Crash => holder(lab, cluster).await?,
        _ => new_holder(lab, cluster, Some(&before.pod)).await?,
    };
    let waited = settle(flows).await;
    let replies: Vec<Vec<Instant>> = probers.into_iter().map(Prober::finish).collect();
    waited?;
    let mut recovered = Vec::new();
    for (flow, replies) in flows.iter().zip(&replies) {
        let Some(d) = recovery(replies, at) else {
            bail!("{}: no reply after the disruption", flow.name);
        };
        recovered.push((flow.name.clone(), d));
    }
    let (left_table, cleaned_after) = if how == Disruption::Crash {
        (None, None)
    } else {
        let (left, cleaned) = restart_as_standby(lab, cluster, &before).await?;
        (Some(left), cleaned)
    };
    Ok(Round {
        disruption: how,
        before,
        after,
        recovery: recovered,
        left_table,
        cleaned_after,
    })
}

/// Starts the disrupted pod again; returns whether its node held our table then, and how long
/// its cleanup as standby took.
async fn restart_as_standby(
    lab: &mut Lab,
    cluster: usize,
    old: &Holder,
) -> anyhow::Result<(bool, Option<Duration>)> {
    let node = old
        .node
        .clone()
        .context("the old holder wrote no node on the Lease")?;
    let netns = node_netns(lab, cluster, &node)?;
    let left = {
        let ns = netns.clone();
        tokio::task::spawn_blocking(move || has_gateway_table(&ns)).await?
    };
    let started = Instant::now();
    lab.clusters[cluster].start_pod(&old.pod)?;
    if !left {
        return Ok((false, None));
    }
    loop {
        let ns = netns.clone();
        if !tokio::task::spawn_blocking(move || has_gateway_table(&ns)).await? {
            return Ok((true, Some(started.elapsed())));
        }
        if started.elapsed() > RECOVERY_LIMIT {
            bail!(
                "{} restarted as standby but left the NAT table on {node}",
                old.pod
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `isthmus lab failover`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverOptions {
    /// Rounds of each disruption.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Which disruptions (default: all three).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Disruption::Kill, Disruption::CleanStop, Disruption::Crash])]
    pub disruptions: Vec<Disruption>,
}

/// The lab the failover runs in: clusters a and b peered, two gateway replicas each (node0
/// and node1 on the underlay), a third node with pods and no gateway.
pub fn lab_options() -> LabOptions {
    LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        workers: 2,
        gateway_replicas: 2,
        exposure: isthmus_lab::exposure::Exposure::LoadBalancer,
        ..LabOptions::default()
    }
}

/// Every round's figures.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    pub rounds: Vec<Round>,
    pub flows: usize,
}

/// Runs the rounds on a fresh lab and removes it.
pub async fn run(options: FailoverOptions) -> anyhow::Result<FailoverReport> {
    let (mut lab, matrix) = Lab::up(lab_options()).await?;
    if !matrix.all_reachable() {
        lab.shutdown().await;
        bail!(
            "the lab did not reach full connectivity:\n{}",
            matrix.render_list()
        );
    }
    let result = rounds(&mut lab, &options).await;
    lab.shutdown().await;
    result
}

async fn rounds(lab: &mut Lab, options: &FailoverOptions) -> anyhow::Result<FailoverReport> {
    // b's pods to every pod of a, and a's pods back: a's gateway is the one disrupted.
    let mut all = flows(lab, 1, 0);
    all.extend(flows(lab, 0, 1));
    let mut out = Vec::new();
    for _ in 0..options.rounds {
        for how in &options.disruptions {
            let r = round(lab, 0, *how, &all).await?;
            eprintln!(
                "{how}: {} → {}, packets again after {}",
                r.before.pod,
                r.after.pod,
                ms(r.worst())
            );
            out.push(r);
        }
    }
    Ok(FailoverReport {
        rounds: out,
        flows: all.len(),
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = isthmus_gateway::LeaderConfig::new(LEASE, "");
        writeln!(
            f,
            "gateway failover in cluster a (2 replicas on node0 and node1; lease {} s, renewed \
             every {} ms, renew deadline {} ms, standby retry {} ms; {} ICMP flows a ↔ b, one \
             echo every {} ms)",
            lease.lease_duration.as_secs(),
            lease.renew_period.as_millis(),
            lease.renew_deadline.as_millis(),
            lease.retry_period.as_millis(),
            self.flows,
            PROBE_EVERY.as_millis()
        )?;
        for how in [Disruption::Kill, Disruption::CleanStop, Disruption::Crash] {
            let rounds: Vec<&Round> = self.rounds.iter().filter(|r| r.disruption == how).collect();
            if rounds.is_empty() {
                continue;
            }
            let worst: Vec<String> = rounds.iter().map(|r| ms(r.worst())).collect();
            writeln!(
                f,
                "  {how}: packets flowing again after (slowest flow, per round) {}",
                worst.join(", ")
            )?;
            for r in &rounds {
                let moved = match (&r.before.node, &r.after.node) {
                    (Some(a), Some(b)) => format!("{a} → {b}"),
                    _ => format!("{} → {}", r.before.pod, r.after.pod),
                };
                let cleanup = match (r.left_table, r.cleaned_after) {
                    (Some(true), Some(d)) => {
                        format!(
                            "; its restart as standby removed the NAT table left there in {}",
                            ms(d)
                        )
                    }
                    (Some(false), _) => "; nothing was left on the old node".to_owned(),
                    _ => String::new(),
                };
                writeln!(f, "    {moved}{cleanup}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_the_end_of_the_longest_gap_after_the_disruption() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let steady: Vec<Instant> = (0..100).map(|i| at(i * 20)).collect();
        assert_eq!(recovery(&steady, at(500)), Some(Duration::ZERO));
        // one echo lost: a gap of a timeout and a period is an outage
        let mut lost: Vec<Instant> = (0..30).map(|i| at(i * 20)).collect();
        lost.extend((0..30).map(|i| at(700 + i * 20)));
        assert_eq!(recovery(&lost, at(590)), Some(Duration::from_millis(110)));
        let mut gap: Vec<Instant> = (0..30).map(|i| at(i * 20)).collect();
        gap.extend((0..30).map(|i| at(3000 + i * 20)));
        assert_eq!(recovery(&gap, at(500)), Some(Duration::from_millis(2500)));
        assert_eq!(recovery(&gap[..30], at(1000)), None);
    }
}
