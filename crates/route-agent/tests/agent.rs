//! The route agent against memkube with a recording route driver: routes follow the
//! TunnelEndpoints' gateway status, failover replaces them, deletion removes them, the gateway
//! node installs none, outside deletions are repaired, failures are retried, and a restart
//! removes nothing.

use crate::common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use isthmus_dataplane::node_nat::fake::FakeNodeNat;
use isthmus_route_agent::RouteAgentTelemetry;

const GW_A: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const LONG: Duration = Duration::from_secs(3600);

fn via(routes: &[&str], gw: Ipv4Addr) -> Vec<String> {
    routes.iter().map(|r| format!("{r} via {gw}")).collect()
}

#[tokio::test]
async fn routes_follow_the_gateway_status_through_failover_and_deletion() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let agent = Agent::start(config("worker-1", LONG), &client, driver.clone());
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    // A second peer proves the agent has processed "b" without a gateway address.
    create_tep(&client, "c", "10.5.0.0/16", "10.6.0.0/16").await;
    set_gateway(&client, "c", "gw-1", GW_A).await;
    let c_routes = via(&["10.5.0.0/16", "10.6.0.0/16"], GW_A);
    eventually("c's routes", || async { driver.routes() == c_routes }).await;

    set_gateway(&client, "b", "gw-1", GW_A).await;
    let mut want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_A);
    want.extend(c_routes.clone());
    eventually("b's routes via gw-1", || async { driver.routes() == want }).await;

    // Failover: the gateway moves to another node.
    set_gateway(&client, "b", "gw-2", GW_B).await;
    let mut want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_B);
    want.extend(c_routes.clone());
    eventually("b's routes via gw-2", || async { driver.routes() == want }).await;

    delete_tep(&client, "b").await;
    eventually("b's routes gone", || async { driver.routes() == c_routes }).await;
    agent.stop().await;
}

#[tokio::test]
async fn the_gateway_node_installs_nothing() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let agent = Agent::start(config("gw-1", LONG), &client, driver.clone());
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    // Peer c's gateway runs elsewhere: this node routes to it, which shows b was seen too.
    create_tep(&client, "c", "10.5.0.0/16", "10.6.0.0/16").await;
    set_gateway(&client, "c", "gw-2", GW_B).await;
    let c_routes = via(&["10.5.0.0/16", "10.6.0.0/16"], GW_B);
    eventually("c's routes only", || async { driver.routes() == c_routes }).await;
    // b's gateway moves away from this node: now this node routes b too.
    set_gateway(&client, "b", "gw-2", GW_B).await;
    eventually("b routed after failover", || async {
        driver.routes().len() == 4
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn routes_deleted_from_outside_are_repaired_on_resync() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let agent = Agent::start(
        config("worker-1", Duration::from_millis(200)),
        &client,
        driver.clone(),
    );
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    let want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_A);
    eventually("routes", || async { driver.routes() == want }).await;
    driver
        .lock()
        .routes
        .retain(|r| r.dst.to_string() != "10.3.0.0/16");
    assert_eq!(driver.routes().len(), 1);
    eventually("route repaired", || async { driver.routes() == want }).await;
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_driver_is_retried_until_the_routes_are_in() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    *driver.fail_adds.lock().unwrap() = 3;
    let telemetry = RouteAgentTelemetry::default();
    let agent = Agent::observed(
        config("worker-1", LONG),
        telemetry.clone(),
        &client,
        driver.clone(),
    );
    assert!(
        !telemetry.health.readiness().ok(),
        "not ready before the first sync"
    );
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    let want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_A);
    eventually("routes after retries", || async { driver.routes() == want }).await;
    assert_eq!(*driver.fail_adds.lock().unwrap(), 0);
    eventually("ready after the sync", || async {
        telemetry.health.readiness().ok()
    })
    .await;
    assert!(telemetry.reconciles.count("routes", false) >= 3);
    assert!(telemetry.reconciles.count("routes", true) >= 1);
    assert_eq!(telemetry.routes.get(), 2);
    assert!(telemetry.health.liveness(std::time::Instant::now()).ok());
    agent.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_the_routes_and_converges() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let agent = Agent::start(config("worker-1", LONG), &client, driver.clone());
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    let want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_A);
    eventually("routes", || async { driver.routes() == want }).await;
    agent.stop().await;
    assert_eq!(driver.routes(), want, "stopping removes nothing");

    // While the agent is down the gateway fails over; the next start converges without
    // ever removing b's ranges.
    set_gateway(&client, "b", "gw-2", GW_B).await;
    driver.lock().calls.clear();
    let agent = Agent::start(config("worker-1", LONG), &client, driver.clone());
    let want = via(&["10.3.0.0/16", "10.4.0.0/16"], GW_B);
    eventually("routes via the new gateway", || async {
        driver.routes() == want
    })
    .await;
    let calls = driver.calls();
    assert!(
        calls.iter().all(|c| c.starts_with("add ")),
        "replaced in place, never removed: {calls:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_bad_configuration_is_refused_before_the_watch_opens() {
    let (kube, client) = api().await;
    let before = kube.watch_count();
    let r = isthmus_route_agent::run(
        config("Not_A_Node", LONG),
        client,
        SharedRoutes::default(),
        isthmus_dataplane::node_nat::fake::FakeNodeNat::default(),
        std::future::pending(),
    )
    .await;
    assert!(
        matches!(r, Err(isthmus_route_agent::Error::Config(_))),
        "{r:?}"
    );
    assert_eq!(kube.watch_count(), before);
}

#[tokio::test]
async fn routes_of_an_endpoint_deleted_while_the_agent_was_down_go_at_start() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let agent = Agent::start(config("worker-1", LONG), &client, driver.clone());
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    eventually("routes", || async { driver.routes().len() == 2 }).await;
    agent.stop().await;

    delete_tep(&client, "b").await;
    let agent = Agent::start(config("worker-1", LONG), &client, driver.clone());
    eventually("stale routes removed", || async {
        driver.routes().is_empty()
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn the_nat_exemption_follows_the_routes_and_is_repaired() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let nat = FakeNodeNat::default();
    let agent = Agent::with_nat(
        config("worker-1", Duration::from_millis(100)),
        &client,
        driver.clone(),
        nat.clone(),
    );
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    let exempted = |nat: &FakeNodeNat| {
        nat.table().map(|p| {
            (
                p.sources.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                p.destinations
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
            )
        })
    };
    eventually("exemption for b's ranges", || async {
        exempted(&nat)
            == Some((
                vec!["10.0.0.0/16".into()],
                vec!["10.3.0.0/16".into(), "10.4.0.0/16".into()],
            ))
    })
    .await;
    assert_eq!(driver.routes().len(), 2);

    // Deleted from outside: the next resync puts it back.
    nat.delete_from_outside();
    eventually("exemption repaired", || async { nat.table().is_some() }).await;

    // The gateway moves to this node: the gateway's table covers it, ours goes.
    set_gateway(&client, "b", "worker-1", GW_A).await;
    eventually("no exemption on the gateway node", || async {
        nat.table().is_none() && driver.routes().is_empty()
    })
    .await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    eventually("exemption back", || async { nat.table().is_some() }).await;

    // Stopping leaves it in place (like the routes); the last peering going removes it.
    agent.stop().await;
    assert!(nat.table().is_some(), "left in place across a restart");
    let agent = Agent::with_nat(
        config("worker-1", LONG),
        &client,
        driver.clone(),
        nat.clone(),
    );
    delete_tep(&client, "b").await;
    eventually("exemption removed with the peering", || async {
        nat.table().is_none() && driver.routes().is_empty()
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_nat_apply_installs_no_route_and_is_retried() {
    let (_kube, client) = api().await;
    let driver = SharedRoutes::default();
    let nat = FakeNodeNat::default();
    nat.log.lock().unwrap().failing = true;
    let agent = Agent::with_nat(
        config("worker-1", LONG),
        &client,
        driver.clone(),
        nat.clone(),
    );
    create_tep(&client, "b", "10.3.0.0/16", "10.4.0.0/16").await;
    set_gateway(&client, "b", "gw-1", GW_A).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(driver.routes().is_empty(), "no route before its exemption");
    nat.log.lock().unwrap().failing = false;
    eventually("routes after the retry", || async {
        driver.routes().len() == 2 && nat.table().is_some()
    })
    .await;
    agent.stop().await;
}
