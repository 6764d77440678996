//! `isthmus unpeer`: the same checks as `peer` (minus the peer identities), then in each
//! cluster the ForeignClusters for the other are deleted, and the command waits until the
//! network-managers have finished (the ForeignCluster, the TunnelEndpoint and the NatMapping are
//! gone) and the gateways have removed the peer from the kernel (the TunnelEndpoint's gateway
//! finalizer makes its disappearance mean exactly that). Only then are the peer namespaces
//! `isthmus peer` made deleted (with the peer's ServiceAccount, so its tokens stop working, and
//! the kubeconfig Secret): the network-manager needs that Secret to remove its NetworkConfig
//! from the peer. On a timeout they are kept, and the reason is printed.

use isthmus_api::{ClusterId, ForeignCluster, LABEL_PEER_CLUSTER};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta};
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use crate::peer::args::UnpeerArgs;
use crate::peer::console::{self, Console};
use crate::peer::error::{PeerError, Result};
use crate::peer::preflight::{Facts, Purpose, api_error};
use crate::peer::{POLL, checked_pair, observe_both, pair, report};

/// What `unpeer` deletes in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removal {
    /// ForeignClusters for the other cluster.
    pub foreign_clusters: Vec<String>,
    /// The other cluster's namespace `isthmus peer` made (its identity, our kubeconfig Secret
    /// for it; deleted last).
    pub namespaces: Vec<String>,
    /// Secrets those ForeignClusters name that `isthmus peer` did not write (left alone).
    pub kept_secrets: Vec<String>,
}

/// What to delete in a cluster whose ForeignClusters and peer namespaces are these, to unpeer
/// `peer`.
pub fn removal(
    fcs: &[ForeignCluster],
    peer_namespaces: &[ObjectMeta],
    peer: &ClusterId,
) -> Removal {
    let mine: Vec<&ForeignCluster> = fcs
        .iter()
        .filter(|fc| fc.spec.cluster_id == *peer)
        .collect();
    let namespaces: Vec<String> = peer_namespaces
        .iter()
        .filter(|m| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_PEER_CLUSTER))
                .is_some_and(|v| v == peer.as_str())
        })
        .filter_map(|m| m.name.clone())
        .collect();
    let kept_secrets = mine
        .iter()
        .filter_map(|fc| fc.spec.kubeconfig_secret_ref.as_ref())
        .filter(|r| !namespaces.contains(&r.namespace))
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect();
    Removal {
        foreign_clusters: mine.iter().map(|fc| fc.name_any()).collect(),
        namespaces,
        kept_secrets,
    }
}

fn describe(facts: &Facts, r: &Removal) -> String {
    let mut parts: Vec<String> = r
        .foreign_clusters
        .iter()
        .map(|n| format!("ForeignCluster {n}"))
        .collect();
    parts.extend(r.namespaces.iter().map(|n| format!("Namespace {n} (last)")));
    match parts.is_empty() {
        true => format!("{}: nothing of isthmus peer to delete", facts.id()),
        false => format!("{}: delete {}", facts.id(), parts.join(", ")),
    }
}

/// `isthmus unpeer`.
pub async fn run_unpeer(args: &UnpeerArgs, console: &mut Console) -> Result<()> {
    let refs = args.clusters.refs(None, None);
    let (local, remote) = checked_pair(refs, args.clusters.timeout, Purpose::Unpeer).await?;
    let plans = [
        removal(&local.foreign_clusters, &local.peer_namespaces, remote.id()),
        removal(
            &remote.foreign_clusters,
            &remote.peer_namespaces,
            local.id(),
        ),
    ];
    for (facts, r) in [(&local, &plans[0]), (&remote, &plans[1])] {
        console.say(&describe(facts, r))?;
        for s in &r.kept_secrets {
            console.say(&format!(
                "{}: Secret {s} was not written by isthmus peer: it is left",
                facts.id()
            ))?;
        }
    }
    if args.dry_run {
        console.say("dry run: nothing was deleted")?;
        return Ok(());
    }
    for (facts, r) in [(&local, &plans[0]), (&remote, &plans[1])] {
        delete_foreign_clusters(facts, &r.foreign_clusters).await?;
    }
    wait_unpeered(&local, &remote, args.clusters.timeout, console).await?;
    for (facts, r) in [(&local, &plans[0]), (&remote, &plans[1])] {
        delete_namespaces(facts, &r.namespaces).await?;
    }
    console.say(&format!(
        "unpeered {} and {}: ForeignClusters, TunnelEndpoints, NatMappings and the peer namespaces \
         (identities, kubeconfig Secrets) removed, the gateways' kernel state with them",
        local.id(),
        remote.id()
    ))?;
    Ok(())
}

async fn delete_foreign_clusters(facts: &Facts, names: &[String]) -> Result<()> {
    let api: Api<ForeignCluster> = Api::all(facts.conn.client.clone());
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(api_error(
                    &facts.conn,
                    &format!("deleting ForeignCluster {name}"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

async fn delete_namespaces(facts: &Facts, names: &[String]) -> Result<()> {
    let api: Api<Namespace> = Api::all(facts.conn.client.clone());
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(api_error(
                    &facts.conn,
                    &format!("deleting Namespace {name}"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

async fn wait_unpeered(
    local: &Facts,
    remote: &Facts,
    timeout: std::time::Duration,
    console: &mut Console,
) -> Result<()> {
    let (pl, pr) = (pair(local, remote), pair(remote, local));
    let seen = console::wait_for(
        console,
        Instant::now() + timeout,
        POLL,
        async || observe_both(local, remote).await,
        |(a, b)| {
            vec![
                report::unpeer_progress(pl, a),
                report::unpeer_progress(pr, b),
            ]
        },
        |(a, b)| report::unpeered(a) && report::unpeered(b),
    )
    .await?;
    let Err((a, b)) = seen else {
        return Ok(());
    };
    let now = Timestamp::now();
    let mut reasons = report::why_not_unpeered(pl, &a, now);
    reasons.extend(report::why_not_unpeered(pr, &b, now));
    reasons.push(
        "the peer namespaces and their kubeconfig Secrets are kept: the network-managers need \
         them to finish; run \
         `isthmus unpeer` again once the cause is fixed"
            .to_owned(),
    );
    Err(PeerError::Timeout {
        after: timeout,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::{ForeignClusterSpec, SecretKeyRef};
    use std::collections::BTreeMap;

    fn fc(name: &str, peer: &str, secret: &str) -> ForeignCluster {
        ForeignCluster::new(
            name,
            ForeignClusterSpec {
                cluster_id: peer.parse().unwrap(),
                kubeconfig_secret_ref: Some(SecretKeyRef {
                    name: secret.into(),
                    namespace: "isthmus".into(),
                    key: None,
                }),
                lab_cluster: None,
            },
        )
    }

    fn space(name: &str, peer: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                LABEL_PEER_CLUSTER.to_owned(),
                peer.to_owned(),
            )])),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_foreign_clusters_for_the_peer_go_and_only_our_namespace_with_them() {
        let b: ClusterId = "cluster-b".parse().unwrap();
        let mut ours = fc("cluster-b", "cluster-b", "isthmus-peer-cluster-b");
        if let Some(r) = ours.spec.kubeconfig_secret_ref.as_mut() {
            r.namespace = "isthmus-peer-cluster-b".into();
        }
        let fcs = [
            ours,
            fc("by-hand-b", "cluster-b", "peer-cluster-b"),
            fc("cluster-c", "cluster-c", "isthmus-peer-cluster-c"),
        ];
        let spaces = [
            space("isthmus-peer-cluster-b", "cluster-b"),
            space("isthmus-peer-cluster-c", "cluster-c"),
        ];
        let r = removal(&fcs, &spaces, &b);
        assert_eq!(r.foreign_clusters, ["cluster-b", "by-hand-b"]);
        assert_eq!(r.namespaces, ["isthmus-peer-cluster-b"]);
        assert_eq!(r.kept_secrets, ["isthmus/peer-cluster-b"]);
        assert_eq!(removal(&[], &[], &b), Removal::default());
    }
}
