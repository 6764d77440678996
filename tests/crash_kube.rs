//! Crash safety of the IPAM's Kubernetes store, as `crash.rs` proves it for the file store: the
//! real binary (`network-manager --standalone --ipam-store kubernetes`: the same `DurableIpam`
//! over the same `KubeStore` as the Kubernetes mode, without the controllers) keeps its state in
//! IpamStorage objects of an API server that outlives it, and is killed while concurrent clients
//! map and unmap:
//! - SIGKILL at random instants, with a compaction (blocks, then root: a multi-object write)
//!   every 2 commits so that kills land inside them, with ~2 ms per write and 2 % of writes
//!   failing with a 503 on memkube (what a loaded real API server does);
//! - an abort at each compaction point (`--test-crash-at block|root`), wherever it comes first
//!   (the recovery's own claim, or a compaction under load);
//! - an unpeer (a peer dropped from the peers file) aborted after its first block delete was
//!   planned and after its root was written (`unpeer-block`, `unpeer-root`), and SIGKILLed at
//!   random instants.
//!
//! After every crash the objects are read as a restart would read them: every acknowledged
//! change is there, an unacknowledged one entirely or not at all, no address is held twice, and
//! the restarted server starts and answers. The API server is memkube, or the real one named by
//! `ISTHMUS_KUBECONFIGS` / `KUBEBUILDER_ASSETS` (then in a namespace of its own, removed after).

use crate::common;
use crate::crash::{Known, Ledger, answers_unchanged, check, client_loop, map, next, settle};

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use isthmus::daemons::network_manager::IPAM_STORAGE_NAME;
use isthmus_api::IpamStorage;
use isthmus_ipam::{ClusterId, Ipam};
use isthmus_ipam_store::LABEL_IPAM;
use isthmus_kubetarget::{ApiServer, Source};
use isthmus_memkube::{ServerError, Verbs};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};

const EXTERNAL: &str = "10.2.0.0/16";
const PEER_C: &str = "\
- clusterID: cluster-c
  podCIDR: 10.80.0.0/16
  externalCIDR: 10.81.0.0/16
";
const PEER_D: &str = "\
- clusterID: cluster-d
  podCIDR: 10.90.0.0/16
  externalCIDR: 10.91.0.0/16
";

/// The API server the rounds run against, with its admin kubeconfig on disk.
struct Target {
    server: ApiServer,
    namespace: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Target {
    async fn start() -> Target {
        let source = Source::from_env().expect("ISTHMUS_KUBECONFIGS / KUBEBUILDER_ASSETS");
        let name = match &source {
            Source::Kubeconfigs(list) => list[0].name.clone(),
            _ => "crash".to_owned(),
        };
        let server = isthmus_kubetarget::start(&source, &[&name])
            .await
            .expect("an API server")
            .remove(0);
        eprintln!("crash_kube: against {}", source.describe());
        let namespace = if server.is_real() {
            format!("isthmus-crash-{}", std::process::id())
        } else {
            "isthmus".to_owned()
        };
        install_crds(&server.admin()).await;
        server.ensure_namespace(&namespace).await.unwrap();
        if let Some(kube) = server.memkube_instance() {
            kube.faults().set_write_latency(Duration::from_millis(2));
            kube.faults()
                .fail_randomly(Verbs::WRITES, 0.02, ServerError::Unavailable);
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.admin_kubeconfig().unwrap()).unwrap();
        Target {
            server,
            namespace,
            kubeconfig,
            _dir: dir,
        }
    }

    fn start_server(&self, dir: &Path, peers: &str, extra: &[&str]) -> Server {
        self.try_start_server(dir, peers, extra)
            .unwrap_or_else(|status| panic!("the server did not start: {status}"))
    }

    fn try_start_server(
        &self,
        dir: &Path,
        peers: &str,
        extra: &[&str],
    ) -> Result<Server, std::process::ExitStatus> {
        let mut args = vec!["--ipam-compact-every", "2"];
        args.extend_from_slice(extra);
        Server::try_start_kube(
            dir,
            &self.kubeconfig,
            &self.namespace,
            EXTERNAL,
            peers,
            &args,
        )
    }

    /// The IPAM state the IpamStorage objects hold, read as a restart reads them.
    async fn durable(&self) -> Ipam {
        let api: Api<IpamStorage> = Api::namespaced(self.server.admin(), &self.namespace);
        let all = api.list(&ListParams::default()).await.unwrap().items;
        let own: Vec<IpamStorage> = all
            .into_iter()
            .filter(|s| {
                let label = s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_IPAM));
                label.map(String::as_str) == Some(IPAM_STORAGE_NAME)
                    || s.metadata.name.as_deref() == Some(IPAM_STORAGE_NAME)
            })
            .collect();
        let snapshot = isthmus_ipam_store::stored_snapshot(IPAM_STORAGE_NAME, &own)
            .expect("the objects recover")
            .expect("a state is stored");
        Ipam::from_snapshot(&snapshot).expect("the stored state is consistent")
    }

    async fn durable_mappings(&self, peer: &str) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        let c: ClusterId = peer.parse().unwrap();
        self.durable().await.nat_mapping(&c).unwrap_or_default()
    }

    async fn finish(self) {
        if self.server.is_real() {
            let ns: Api<Namespace> = Api::all(self.server.admin());
            let _ = ns.delete(&self.namespace, &DeleteParams::default()).await;
        }
    }
}

/// Installs (or updates) the CRDs through the API, as Helm would.
async fn install_crds(admin: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in isthmus_api::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("isthmus-crash-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    // a real API server serves a new CRD a moment after accepting it
    let storage: Api<IpamStorage> = Api::all(admin.clone());
    for _ in 0..100 {
        if storage.list(&ListParams::default().limit(1)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the IpamStorage CRD is not served");
}

/// Runs clients against `server` until it dies or `stop_after` passes (then SIGKILL); returns the
/// ledger and whether the server died by itself.
async fn load_until_death(
    server: &mut Server,
    ledger: HashMap<Ipv4Addr, Known>,
    rng: &mut u64,
    stop_after: Duration,
) -> (HashMap<Ipv4Addr, Known>, bool) {
    let shared: Ledger = Arc::new(Mutex::new(ledger));
    let url = format!("http://{}", server.addr);
    let tasks: Vec<_> = (0..8u32)
        .map(|t| tokio::spawn(client_loop(url.clone(), shared.clone(), t, next(rng) | 1)))
        .collect();
    let deadline = tokio::time::Instant::now() + stop_after;
    let mut died = false;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            died = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let ledger = std::mem::take(&mut *shared.lock().unwrap());
    (ledger, died)
}

/// Starts a server that is to abort at `point`; returns whether it did within `limit`, and the
/// ledger after the load it served meanwhile. The abort may come during recovery, before the
/// port is open: then no client got an answer.
async fn until_abort(
    target: &Target,
    dir: &Path,
    peers: &str,
    point: &str,
    ledger: HashMap<Ipv4Addr, Known>,
    rng: &mut u64,
) -> (HashMap<Ipv4Addr, Known>, bool) {
    let args = ["--test-crash-at", point];
    match target.try_start_server(dir, peers, &args) {
        Ok(mut server) => {
            let (ledger, died) =
                load_until_death(&mut server, ledger, rng, Duration::from_secs(30)).await;
            (ledger, died && aborted(&mut server))
        }
        // exited before listening: aborted in the recovery's own compaction, or failed
        Err(status) => (ledger, by_abort(status)),
    }
}

/// Whether the (dead) server ended by the test hook's abort.
fn aborted(server: &mut Server) -> bool {
    server.child.wait().is_ok_and(by_abort)
}

fn by_abort(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let abort = status.signal() == Some(6);
    assert!(
        abort,
        "the server ended otherwise than by the test hook: {status}"
    );
    abort
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_store_loses_nothing_acknowledged_at_any_crash() {
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let both = format!("{PEER_C}{PEER_D}");
    let mut rng = 0xD1B5_4A32_D192_ED03u64;

    // d's reflections, which the unpeer at the end removes (blocks of their own).
    let d_endpoints: Vec<Ipv4Addr> = (1..=40).map(|i| Ipv4Addr::new(100, 65, 0, i)).collect();
    let d_mapped = {
        let server = target.start_server(dir.path(), &both, &[]);
        let mut mapped = BTreeMap::new();
        for ep in &d_endpoints {
            mapped.insert(map(&server, "cluster-d", *ep).await, *ep);
        }
        mapped
    };

    let mut ledger: HashMap<Ipv4Addr, Known> = HashMap::new();
    let mut settled = 0;
    // random SIGKILLs under load
    for round in 0..6 {
        let mut server = target.start_server(dir.path(), &both, &[]);
        let after = Duration::from_millis(50 + next(&mut rng) % 400);
        let (l, _) =
            load_until_death(&mut server, std::mem::take(&mut ledger), &mut rng, after).await;
        ledger = l;
        let durable = target.durable_mappings("cluster-c").await;
        settled += check(&ledger, &durable);
        settle(&mut ledger, &durable);
        assert_eq!(
            target.durable_mappings("cluster-d").await,
            d_mapped,
            "round {round}: d's mappings"
        );
        eprintln!(
            "round {round}: {} endpoints of c mapped durably",
            durable.len()
        );
    }
    // an abort at each compaction point
    for point in ["block", "root"] {
        let (l, aborted) = until_abort(
            &target,
            dir.path(),
            &both,
            point,
            std::mem::take(&mut ledger),
            &mut rng,
        )
        .await;
        assert!(aborted, "the server never reached compaction point {point}");
        ledger = l;
        let durable = target.durable_mappings("cluster-c").await;
        settled += check(&ledger, &durable);
        settle(&mut ledger, &durable);
        assert_eq!(
            target.durable_mappings("cluster-d").await,
            d_mapped,
            "after {point}: d's mappings"
        );
    }
    assert!(
        settled > 100,
        "the load did too little to prove anything ({settled})"
    );

    // unpeering d: aborted at both of its points, then SIGKILLed at random instants
    for point in ["unpeer-block", "unpeer-root"] {
        let (l, aborted) = until_abort(
            &target,
            dir.path(),
            PEER_C,
            point,
            std::mem::take(&mut ledger),
            &mut rng,
        )
        .await;
        ledger = l;
        let state = target.durable().await;
        let d: ClusterId = "cluster-d".parse().unwrap();
        let d_now = state.nat_mapping(&d).unwrap_or_default();
        assert!(
            d_now.is_empty() || d_now == d_mapped,
            "after {point} (aborted: {aborted}): d half removed: {} of {}",
            d_now.len(),
            d_mapped.len()
        );
        let durable = target.durable_mappings("cluster-c").await;
        check(&ledger, &durable);
        settle(&mut ledger, &durable);
    }
    for _ in 0..3 {
        let mut server = target.start_server(dir.path(), PEER_C, &[]);
        let after = Duration::from_millis(next(&mut rng) % 200);
        let (l, _) =
            load_until_death(&mut server, std::mem::take(&mut ledger), &mut rng, after).await;
        ledger = l;
        let durable = target.durable_mappings("cluster-c").await;
        check(&ledger, &durable);
        settle(&mut ledger, &durable);
    }

    // The restarted server starts, has forgotten d, and answers every durable mapping of c with
    // the same address, none twice.
    let server = target.start_server(dir.path(), PEER_C, &[]);
    let state = target.durable().await;
    assert!(
        state.peer(&"cluster-d".parse().unwrap()).is_none(),
        "d is unpeered"
    );
    answers_unchanged(&server, &ledger).await;
    drop(server);
    target.finish().await;
}
