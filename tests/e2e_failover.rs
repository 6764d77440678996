//! Gateway failover with real packets (root; real namespaces): clusters a and b with two
//! gateway replicas each, on node0 and node1, behind the lab's load balancer. While ICMP flows
//! run between every pod of a and every pod of b (one pod per node: the old gateway node, the
//! new one, a plain worker), a's active replica is killed and left down: the standby takes the
//! Lease, programs its node, reports itself in the TunnelEndpoint status (where the route agents
//! follow it), b's tunnel re-handshakes by roaming, and every flow carries packets again. The
//! killed pod restarts as standby and removes the NAT table it left on its node. Then the new
//! active replica stops cleanly and the lease moves back the same way. The time each took is
//! printed, not asserted (`isthmus lab failover` measures it).

use crate::e2e_common;

use std::time::Duration;

use e2e_common::*;
use isthmus::lab::failover::{self, Disruption, Round};
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus_api::ConnectionState;

/// a's TunnelEndpoint status names `node` as the gateway node, and b's tunnel to a is connected.
async fn moved_to(lab: &Lab, node: &str) {
    eventually(
        &format!("a's TunnelEndpoint reports gateway node {node}, b's tunnel connected"),
        Duration::from_secs(30),
        || async {
            let Ok(a_b) = lab.tunnel_endpoint(0, 1).await else {
                return false;
            };
            let Ok(b_a) = lab.tunnel_endpoint(1, 0).await else {
                return false;
            };
            let reported = a_b.status.as_ref().and_then(|s| s.gateway_node.as_deref());
            let b_state = b_a.status.as_ref().map(|s| s.connection.status);
            reported == Some(node) && b_state == Some(ConnectionState::Connected)
        },
    )
    .await;
}

fn check(round: &Round) {
    eprintln!(
        "{}: {} ({:?}) → {} ({:?}); slowest flow again after {:?}; table left {:?}, removed after {:?}",
        round.disruption,
        round.before.pod,
        round.before.node,
        round.after.pod,
        round.after.node,
        round.worst(),
        round.left_table,
        round.cleaned_after
    );
    assert_ne!(round.before.pod, round.after.pod, "the standby took over");
    assert_ne!(round.before.node, round.after.node, "on another node");
    assert_eq!(
        round.left_table,
        Some(true),
        "the disrupted replica's node still held the NAT table when its pod came back"
    );
    assert!(
        round.cleaned_after.is_some(),
        "its restart as standby removed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_takes_over_after_a_kill_and_a_clean_stop_and_the_old_node_is_cleaned() {
    let mut lab = lab_with(LabOptions {
        binary: options().binary,
        source: options().source,
        ..failover::lab_options()
    })
    .await;
    let mut flows = failover::flows(&lab, 1, 0);
    flows.extend(failover::flows(&lab, 0, 1));
    assert_eq!(flows.len(), 18, "3 pods on each side, both directions");

    let kill = failover::round(&mut lab, 0, Disruption::Kill, &flows)
        .await
        .expect("the kill round");
    check(&kill);
    moved_to(&lab, kill.after.node.as_deref().unwrap()).await;

    let stop = failover::round(&mut lab, 0, Disruption::CleanStop, &flows)
        .await
        .expect("the clean-stop round");
    check(&stop);
    moved_to(&lab, stop.after.node.as_deref().unwrap()).await;

    // Both replicas run again, one leads: the whole matrix answers.
    let matrix = lab.wait_full_connectivity(Duration::from_secs(30)).await;
    assert!(matrix.all_reachable(), "{}", matrix.render_list());
    lab.shutdown().await;
}
