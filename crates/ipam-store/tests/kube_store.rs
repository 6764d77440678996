//! The durable IPAM over `IpamStorage` objects, against kube's `tower-test` mock answering like
//! an API server would (create, replace with resourceVersion checks, list by label). Checks the
//! sharded layout, that a change rewrites only what it touched, recovery, and that a stale writer
//! is stopped by a conflict.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use isthmus_ipam::{ClusterId, IpamConfig, default_pools};
use isthmus_ipam_store::{DurableIpam, KubeStore, ServiceError};
use kube::client::Body;
use serde_json::{Value, json};

/// The objects of the fake API and a log of the write verbs it served.
#[derive(Default)]
struct FakeApi {
    objects: BTreeMap<String, Value>,
    version: u64,
    writes: Vec<(Method, String)>,
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":reason,"code":code.as_u16(),"message":reason});
    Response::builder()
        .status(code)
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap()
}

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(v.to_string().into_bytes()))
        .unwrap()
}

fn handle(api: &Mutex<FakeApi>, method: Method, path: &str, body: &[u8]) -> Response<Body> {
    let mut api = api.lock().unwrap();
    let name = path.rsplit('/').next().unwrap_or_default().to_owned();
    match method {
        Method::GET => {
            let items: Vec<Value> = api.objects.values().cloned().collect();
            let rv = api.version.to_string();
            ok(
                &json!({"apiVersion":"net.isthmus.io/v1alpha1","kind":"IpamStorageList","metadata":{"resourceVersion":rv},"items":items}),
            )
        }
        Method::POST | Method::PUT => {
            let mut obj: Value = serde_json::from_slice(body).unwrap();
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            let existing = api
                .objects
                .get(&name)
                .map(|o| o["metadata"]["resourceVersion"].clone());
            match (&method, existing) {
                (&Method::POST, Some(_)) => return status(StatusCode::CONFLICT, "AlreadyExists"),
                (&Method::PUT, None) => return status(StatusCode::NOT_FOUND, "NotFound"),
                (&Method::PUT, Some(rv)) if rv != obj["metadata"]["resourceVersion"] => {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                _ => {}
            }
            api.version += 1;
            obj["metadata"]["resourceVersion"] = json!(api.version.to_string());
            api.writes.push((method, name.clone()));
            api.objects.insert(name, obj.clone());
            ok(&obj)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} {name}")),
    }
}

/// A kube client whose requests the fake API answers.
fn client(api: Arc<Mutex<FakeApi>>) -> kube::Client {
    let (svc, mut handle_rx) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle_rx.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            send.send_response(handle(&api, parts.method, parts.uri.path(), &bytes));
        }
    });
    kube::Client::new(svc, "default")
}

fn config() -> IpamConfig {
    IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: None,
        external_cidr: None,
        pools: default_pools(),
        reserved: vec![],
    }
}

fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

async fn open(api: &Arc<Mutex<FakeApi>>) -> Result<DurableIpam, ServiceError> {
    let store = KubeStore::new(client(api.clone()), "isthmus", "ipam", 4);
    DurableIpam::open(&config(), store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_sharded_recovered_and_written_incrementally() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let ipam = open(&api).await.unwrap();
    assert_eq!(
        api.lock().unwrap().objects.len(),
        5,
        "root + 4 shards created"
    );
    ipam.upsert_peer(
        &id("b"),
        "10.0.0.0/16".parse().unwrap(),
        "10.5.0.0/16".parse().unwrap(),
    )
    .await
    .unwrap();
    api.lock().unwrap().writes.clear();
    let reply = ipam
        .map_endpoint_ip(&id("b"), Ipv4Addr::new(172, 20, 0, 1))
        .await
        .unwrap();
    let writes = std::mem::take(&mut api.lock().unwrap().writes);
    assert_eq!(writes.len(), 1, "one shard rewritten: {writes:?}");
    assert_eq!(writes[0].0, Method::PUT);
    let before = ipam.read(|i| i.snapshot()).unwrap();
    drop(ipam);
    let again = open(&api).await.unwrap();
    assert_eq!(again.read(|i| i.snapshot()).unwrap(), before);
    let same = again
        .map_endpoint_ip(&id("b"), Ipv4Addr::new(172, 20, 0, 1))
        .await
        .unwrap();
    assert_eq!(same, reply);
    let root = api.lock().unwrap().objects["ipam"].clone();
    assert_eq!(
        root["spec"]["clusterSubnets"]["b"]["remoteNATPodCIDR"],
        "10.2.0.0/16"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_is_stopped_by_a_conflict() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let first = open(&api).await.unwrap();
    first
        .upsert_peer(
            &id("b"),
            "10.50.0.0/16".parse().unwrap(),
            "10.51.0.0/16".parse().unwrap(),
        )
        .await
        .unwrap();
    // A second replica takes over and writes.
    let second = open(&api).await.unwrap();
    second.remove_peer(&id("b")).await.unwrap();
    // The first one's next write conflicts: it must refuse, and keep refusing.
    let err = first.remove_peer(&id("b")).await.unwrap_err();
    assert!(
        err.to_string().contains("changed by another writer"),
        "{err}"
    );
    assert!(!first.is_healthy());
    let err = first
        .map_endpoint_ip(&id("b"), Ipv4Addr::new(1, 2, 3, 4))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)));
}
