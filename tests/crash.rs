//! Crash safety of the standalone IPAM: SIGKILL the real server at random instants while
//! concurrent clients map and unmap, then check the files it left behind and the restarted server:
//! every acknowledged change survived, an unacknowledged one is either fully there or not at all,
//! and no address is ever held by two endpoints.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use isthmus::grpc::pb::{MapRequest, UnmapRequest};
use isthmus_ipam::{ClusterId, Ipam};
use isthmus_ipam_store::{FileStore, Store};

/// What a client knows about one endpoint: the last acknowledged state (mapped to an address, or
/// not) and an operation sent whose answer never came.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    pub(crate) acked: Option<Ipv4Addr>,
    pub(crate) in_flight: Option<Op>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Map,
    Unmap,
}

pub(crate) type Ledger = Arc<Mutex<HashMap<Ipv4Addr, Known>>>;

/// xorshift: deterministic per seed, no extra dependency.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub(crate) async fn client_loop(server: String, ledger: Ledger, task: u32, mut rng: u64) {
    let Ok(mut c) = isthmus::grpc::pb::ipam_client::IpamClient::connect(server).await else {
        return;
    };
    loop {
        let ep = Ipv4Addr::new(100, 64, task as u8, (next(&mut rng) % 40) as u8 + 1);
        let op = match ledger.lock().unwrap().entry(ep).or_default() {
            k if k.in_flight.is_some() => return,
            k => {
                let op = if k.acked.is_some() {
                    Op::Unmap
                } else {
                    Op::Map
                };
                k.in_flight = Some(op);
                op
            }
        };
        let (cluster_id, ip) = ("cluster-c".to_string(), ep.to_string());
        let answer = match op {
            Op::Map => c
                .map_endpoint_ip(MapRequest { cluster_id, ip })
                .await
                .map(|r| Some(r.into_inner().ip)),
            Op::Unmap => c
                .unmap_endpoint_ip(UnmapRequest { cluster_id, ip })
                .await
                .map(|_| None),
        };
        let Ok(answer) = answer else { return }; // the server died: the op stays in flight
        let mut l = ledger.lock().unwrap();
        let k = l.get_mut(&ep).unwrap();
        k.in_flight = None;
        k.acked = answer.map(|ip| ip.parse().unwrap());
    }
}

/// The mappings durable in the state directory: new IP (in c's view) → endpoint.
fn durable_mappings(state_dir: &std::path::Path) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    let rec = FileStore::open(state_dir)
        .unwrap()
        .load()
        .unwrap()
        .expect("state exists");
    let mut ipam = Ipam::from_snapshot(&rec.snapshot).unwrap();
    for e in &rec.log {
        ipam.apply(e).unwrap();
    }
    let c: ClusterId = "cluster-c".parse().unwrap();
    ipam.nat_mapping(&c).unwrap()
}

pub(crate) fn check(
    ledger: &HashMap<Ipv4Addr, Known>,
    durable: &BTreeMap<Ipv4Addr, Ipv4Addr>,
) -> usize {
    let by_endpoint: HashMap<Ipv4Addr, Ipv4Addr> = durable.iter().map(|(n, e)| (*e, *n)).collect();
    assert_eq!(
        by_endpoint.len(),
        durable.len(),
        "an address is held by two endpoints"
    );
    let mut settled = 0;
    for (ep, k) in ledger {
        let found = by_endpoint.get(ep).copied();
        match (k.in_flight, k.acked) {
            (None, acked) => {
                assert_eq!(found, acked, "acknowledged state of {ep} lost");
                settled += 1;
            }
            // An unacknowledged map may or may not have happened.
            (Some(Op::Map), None) => {}
            (Some(Op::Unmap), Some(a)) => {
                assert!(
                    found.is_none() || found == Some(a),
                    "{ep}: {found:?} vs acked {a}"
                )
            }
            (op, acked) => panic!("{ep}: impossible ledger {op:?}/{acked:?}"),
        }
    }
    settled
}

/// After a restart, the outcome of an in-flight op is whatever is durable: resolve it.
pub(crate) fn settle(
    ledger: &mut HashMap<Ipv4Addr, Known>,
    durable: &BTreeMap<Ipv4Addr, Ipv4Addr>,
) {
    let by_endpoint: HashMap<Ipv4Addr, Ipv4Addr> = durable.iter().map(|(n, e)| (*e, *n)).collect();
    for (ep, k) in ledger.iter_mut() {
        if k.in_flight.take().is_some() {
            k.acked = by_endpoint.get(ep).copied();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_instants_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger: HashMap<Ipv4Addr, Known> = HashMap::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut total_settled = 0;
    for round in 0..8 {
        let mut server = Server::start(dir.path(), "10.2.0.0/16");
        let shared: Ledger = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let url = format!("http://{}", server.addr);
        let tasks: Vec<_> = (0..8u32)
            .map(|t| {
                tokio::spawn(client_loop(
                    url.clone(),
                    shared.clone(),
                    t,
                    next(&mut rng) | 1,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30 + next(&mut rng) % 300)).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }
        ledger = std::mem::take(&mut *shared.lock().unwrap());
        let durable = durable_mappings(&server.state_dir);
        total_settled += check(&ledger, &durable);
        settle(&mut ledger, &durable);
        eprintln!("round {round}: {} endpoints mapped durably", durable.len());
    }
    assert!(
        total_settled > 100,
        "the load did too little to prove anything ({total_settled})"
    );
    // The restarted server answers every durable mapping with the same address.
    let server = Server::start(dir.path(), "10.2.0.0/16");
    answers_unchanged(&server, &ledger).await;
}

/// `MapEndpointIP(cluster, endpoint)` on `server`: the address answered.
pub(crate) async fn map(server: &Server, cluster: &str, endpoint: Ipv4Addr) -> Ipv4Addr {
    let req = MapRequest {
        cluster_id: cluster.into(),
        ip: endpoint.to_string(),
    };
    let mut c = server.client().await;
    let reply = c.map_endpoint_ip(req).await.unwrap().into_inner();
    reply.ip.parse().unwrap()
}

/// A restarted `server` answers every acknowledged mapping of cluster-c in `ledger` with the
/// same address, and no address twice.
pub(crate) async fn answers_unchanged(server: &Server, ledger: &HashMap<Ipv4Addr, Known>) {
    let mut seen = HashSet::new();
    for (ep, k) in ledger {
        let Some(addr) = k.acked else { continue };
        let got = map(server, "cluster-c", *ep).await;
        assert_eq!(got, addr, "{ep} moved after restart");
        assert!(seen.insert(got), "{got} handed out twice");
    }
}
