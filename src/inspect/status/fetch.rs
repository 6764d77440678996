//! The I/O of `isthmus status`: one LIST per kind, all five at once (no per-peer GET). Items are
//! listed untyped and parsed one by one, so one invalid object (a NetworkConfig with a bad CIDR)
//! becomes an [`Unreadable`] instead of failing the whole list. Failed lists are classified into
//! the [`StatusError`] an operator can act on.

use isthmus_api::{ForeignCluster, IpamStorage, NatMapping, NetworkConfig, TunnelEndpoint};
use kube::api::ListParams;
use kube::core::{ObjectList, Request};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::inspect::status::error::StatusError;
use crate::inspect::status::input::{Fetched, Unreadable};

type Listed<K> = Result<(Vec<K>, Vec<Unreadable>), kube::Error>;

/// Lists every object of kind `K` (in `namespace`, or cluster-wide when `None`), each item
/// parsed on its own from the raw list.
async fn list<K>(client: &Client, namespace: Option<&str>, kind: &'static str) -> Listed<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let request = Request::new(K::url_path(&(), namespace))
        .list(&ListParams::default())
        .map_err(kube::Error::BuildRequest)?;
    let list: ObjectList<Value> = client.request(request).await?;
    let mut typed = Vec::with_capacity(list.items.len());
    let mut unreadable = Vec::new();
    for raw in list.items {
        match K::deserialize(&raw) {
            Ok(obj) => typed.push(obj),
            Err(e) => unreadable.push(Unreadable::from_raw(kind, &raw, e.to_string())),
        }
    }
    Ok((typed, unreadable))
}

/// How one failed list counts.
enum Failure {
    Unreachable(kube::Error),
    Missing(&'static str),
    Denied(&'static str, String),
    Other(&'static str, kube::Error),
}

fn classify(kind: &'static str, e: kube::Error) -> Failure {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) => Failure::Unreachable(e),
        kube::Error::Api(s) if s.code == 404 => Failure::Missing(kind),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => Failure::Denied(kind, s.message),
        e => Failure::Other(kind, e),
    }
}

/// The most useful error among the failed lists: unreachable, then missing CRDs, then denied.
fn worst(failures: Vec<Failure>, server: &str) -> Option<StatusError> {
    let server = server.to_owned();
    let mut missing = Vec::new();
    let mut rest = None;
    for f in failures {
        match f {
            Failure::Unreachable(error) => {
                return Some(StatusError::Unreachable { server, error });
            }
            Failure::Missing(kind) => missing.push(kind),
            Failure::Denied(kind, message) => {
                rest.get_or_insert(StatusError::Denied {
                    kind,
                    server: server.clone(),
                    message,
                });
            }
            Failure::Other(kind, error) => {
                rest.get_or_insert(StatusError::Api {
                    kind,
                    server: server.clone(),
                    error,
                });
            }
        }
    }
    if !missing.is_empty() {
        return Some(StatusError::CrdsMissing {
            server,
            kinds: missing,
        });
    }
    rest
}

fn take<K>(
    result: Listed<K>,
    kind: &'static str,
    failures: &mut Vec<Failure>,
    unreadable: &mut Vec<Unreadable>,
) -> Vec<K> {
    match result {
        Ok((typed, bad)) => {
            unreadable.extend(bad);
            typed
        }
        Err(e) => {
            failures.push(classify(kind, e));
            Vec::new()
        }
    }
}

/// Reads every isthmus object of the cluster: the namespaced kinds in `namespace`,
/// ForeignClusters cluster-wide, and the NetworkConfigs peers sent, each in its own namespace
/// (`<namespace>-peer-<peer>`; listed cluster-wide, those elsewhere left out).
pub async fn fetch(client: &Client, namespace: &str, server: &str) -> Result<Fetched, StatusError> {
    let ns = Some(namespace);
    let (teps, ncs, fcs, nms, ipams) = tokio::join!(
        list::<TunnelEndpoint>(client, ns, "TunnelEndpoint"),
        list::<NetworkConfig>(client, None, "NetworkConfig"),
        list::<ForeignCluster>(client, None, "ForeignCluster"),
        list::<NatMapping>(client, ns, "NatMapping"),
        list::<IpamStorage>(client, ns, "IpamStorage"),
    );
    let (mut failures, mut unreadable) = (Vec::new(), Vec::new());
    let fetched = Fetched {
        tunnel_endpoints: take(teps, "TunnelEndpoint", &mut failures, &mut unreadable),
        network_configs: take(ncs, "NetworkConfig", &mut failures, &mut unreadable)
            .into_iter()
            .filter(|nc| {
                let home = isthmus_api::peer_namespace(namespace, &nc.spec.origin_cluster_id);
                nc.metadata.namespace.as_deref() == Some(home.as_str())
            })
            .collect(),
        foreign_clusters: take(fcs, "ForeignCluster", &mut failures, &mut unreadable),
        nat_mappings: take(nms, "NatMapping", &mut failures, &mut unreadable),
        ipam_storages: take(ipams, "IpamStorage", &mut failures, &mut unreadable),
        unreadable: Vec::new(),
    };
    if let Some(e) = worst(failures, server) {
        return Err(e);
    }
    // an unreadable NetworkConfig counts only in a peer namespace of this release
    let prefix = format!("{namespace}-peer-");
    unreadable.retain(|u| {
        u.kind != "NetworkConfig"
            || u.namespace
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
    });
    Ok(Fetched {
        unreadable,
        ..fetched
    })
}
