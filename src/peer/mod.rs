//! `isthmus peer` and `isthmus unpeer`: one command that peers two clusters (what
//! `docs/operations.md` used to do by hand) and one that takes a peering apart, waiting until the
//! network-managers and the gateways have finished.
//!
//! `peer`: connect to both clusters (`side`), check both before anything is written
//! (`preflight`), decide what to write (`plan`, pure), mint the two tokens and write each
//! cluster's Secret and ForeignCluster (`apply`), then wait until both TunnelEndpoints are
//! `connected` (`observe` reads, `report` words it, `console` shows it) and print both tunnels,
//! or say why not. `unpeer` (`unpeer`): the same checks, delete both ForeignClusters, wait until
//! the ForeignClusters, TunnelEndpoints (the gateway's finalizer: the kernel is clean) and
//! NatMappings are gone, then delete the peer namespaces (each holding the peer's identity and
//! the kubeconfig Secret for reaching it).

pub mod access;
pub mod apply;
pub mod args;
pub mod console;
pub mod error;
pub mod kubeconfig;
pub mod observe;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod side;
pub mod token;
pub mod unpeer;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

pub use args::{PeerArgs, UnpeerArgs};
pub use console::Console;
pub use error::{PeerError, Result};
pub use token::{TokenRequests, TokenSource};

use crate::peer::observe::{PeeringView, observe};
use crate::peer::plan::{Plan, PlanSide};
use crate::peer::preflight::{Facts, Purpose};
use crate::peer::report::Pair;

/// How often the wait loops look.
pub const POLL: Duration = Duration::from_millis(500);

/// What `peer` did.
#[derive(Debug, Clone)]
pub struct PeerOutcome {
    pub plan: Plan,
    /// None with `--dry-run`.
    pub applied: Option<apply::Applied>,
}

/// The timeout of each API request: the command's, at most 10 s.
fn request_timeout(total: Duration) -> Duration {
    total.clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Connects to both clusters and runs the preflight of `purpose` on each, then across them.
pub async fn checked_pair(
    refs: [side::ClusterRef; 2],
    timeout: Duration,
    purpose: Purpose,
) -> Result<(Facts, Facts)> {
    let [l, r] = refs;
    let t = request_timeout(timeout);
    let local = side::connect(&l, t).await?;
    let remote = side::connect(&r, t).await?;
    let (local, remote) = tokio::try_join!(
        preflight::inspect(local, purpose),
        preflight::inspect(remote, purpose)
    )?;
    preflight::check_pair(&local, &remote, purpose)?;
    Ok((local, remote))
}

/// How messages name one direction.
pub fn pair<'a>(facts: &'a Facts, peer: &'a Facts) -> Pair<'a> {
    Pair {
        side: facts.id().as_str(),
        peer: peer.id().as_str(),
        namespace: &facts.conn.namespace,
        public_key: &facts.info.gateway_public_key,
        lease: &facts.info.gateway_lease,
    }
}

/// Both clusters' views of the peering.
pub async fn observe_both(local: &Facts, remote: &Facts) -> (PeeringView, PeeringView) {
    tokio::join!(observe(local, remote.id()), observe(remote, local.id()))
}

fn describe_side(f: &Facts) -> String {
    format!("{} ({}, {})", f.id(), f.conn.label.context, f.conn.server)
}

/// `isthmus peer`: checks, writes, waits; `tokens` mints the peer tokens.
pub async fn run_peer(
    args: &PeerArgs,
    tokens: &dyn TokenSource,
    console: &mut Console,
) -> Result<PeerOutcome> {
    let refs = args
        .clusters
        .refs(args.api_url.clone(), args.remote_api_url.clone());
    let (local, remote) = checked_pair(refs, args.clusters.timeout, Purpose::Peer).await?;
    console.say(&format!(
        "checked {} and {}: isthmus installed, peer identities present",
        describe_side(&local),
        describe_side(&remote)
    ))?;
    let plan = plan::plan(&PlanSide::of(&local), &PlanSide::of(&remote));
    for w in &plan.warnings {
        console.say(&format!("warning: {w}"))?;
    }
    if args.dry_run {
        console.say(plan::describe(&plan).trim_end())?;
        console.say("dry run: nothing was written")?;
        return Ok(PeerOutcome {
            plan,
            applied: None,
        });
    }
    let applied = apply::apply(&plan, &local.conn, &remote.conn, tokens).await?;
    for d in &plan.directions {
        console.say(&format!(
            "{}: applied Secret {}/{} and ForeignCluster {}",
            d.holder_id, d.namespace, d.secret_name, d.reached.cluster_id
        ))?;
    }
    wait_connected(&local, &remote, args.clusters.timeout, console).await?;
    for (reached, expires) in &applied.expiries {
        let when = expires.as_deref().unwrap_or("an unknown time");
        console.say(&format!(
            "the token for {reached}'s API expires {when}; run `isthmus peer` again before then"
        ))?;
    }
    Ok(PeerOutcome {
        plan,
        applied: Some(applied),
    })
}

/// Waits until both TunnelEndpoints are `connected`; prints both tunnels, or says why not.
async fn wait_connected(
    local: &Facts,
    remote: &Facts,
    timeout: Duration,
    console: &mut Console,
) -> Result<()> {
    let (pl, pr) = (pair(local, remote), pair(remote, local));
    console.say(&format!(
        "waiting up to {}s for both tunnels (interrupting stops the wait, not the peering)",
        timeout.as_secs()
    ))?;
    let seen = console::wait_for(
        console,
        Instant::now() + timeout,
        POLL,
        async || observe_both(local, remote).await,
        |(a, b)| vec![report::progress(pl, a), report::progress(pr, b)],
        |(a, b)| report::connected(a) && report::connected(b),
    )
    .await?;
    match seen {
        Ok((a, b)) => {
            console.say(&format!("peered {} and {}:", local.id(), remote.id()))?;
            console.say(report::table(&[(pl, &a), (pr, &b)]).trim_end())?;
            Ok(())
        }
        Err((a, b)) => {
            let now = Timestamp::now();
            let mut reasons = Vec::new();
            for (p, v) in [(pl, &a), (pr, &b)] {
                if !report::connected(v) {
                    reasons.extend(report::why_not_connected(p, v, now));
                }
            }
            reasons.push(
                "the Secrets and ForeignClusters stay: once the cause is fixed the tunnels come \
                 up by themselves (`isthmus status` shows them); `isthmus unpeer` removes them"
                    .to_owned(),
            );
            Err(PeerError::Timeout {
                after: timeout,
                reasons,
            })
        }
    }
}

/// `isthmus peer` from the command line (the real TokenRequest API, standard output).
pub async fn peer_main(args: PeerArgs) -> anyhow::Result<()> {
    run_peer(&args, &TokenRequests, &mut Console::stdout()).await?;
    Ok(())
}

/// `isthmus unpeer` from the command line.
pub async fn unpeer_main(args: UnpeerArgs) -> anyhow::Result<()> {
    unpeer::run_unpeer(&args, &mut Console::stdout()).await?;
    Ok(())
}
