//! `isthmus diagnose`: checks this node's datapath against what the cluster's resources say it
//! should be, and says for every check what is wrong and how to fix it.
//!
//! The layers, in order:
//!
//! - resources: TunnelEndpoints and NatMappings from the API ([`diagnose`]);
//! - [`facts`]: what the node holds, behind [`facts::NodeObserver`] (the Linux observer in
//!   [`linux`] reads netlink, `nft` and `/proc` inside a network namespace; tests use
//!   [`facts::FixtureObserver`]);
//! - [`desired`]: the real gateway and route-agent planners and the real nftables renderer turn
//!   the resources into what the node should hold (pure);
//! - [`checks`]: one pure function per check, (desired, facts, time) → findings;
//! - [`report`]: verdicts rendered as text or JSON; [`cli`]: options, API and namespace choice.
//!
//! `docs/diagnose.md` explains each check, what it proves and what it cannot.

pub mod checks;
pub mod cli;
pub mod desired;
pub mod facts;
pub mod linux;
pub mod report;

use std::sync::Arc;
use std::time::SystemTime;

use isthmus_api::{NatMapping, TunnelEndpoint};
use isthmus_dataplane::PrivateKey;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

pub use cli::Args;
pub use desired::Target;
pub use facts::{FixtureObserver, NodeFacts, NodeObserver, ObserveRequest};
pub use linux::LinuxObserver;
pub use report::{Check, CheckId, Finding, Report, Status};

/// Why diagnose could not run at all (a failed check is a [`Report`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what} from the Kubernetes API: {source}")]
    Api {
        what: &'static str,
        source: kube::Error,
    },
    #[error("observing the node: {0}")]
    Observe(String),
    #[error("{0}")]
    Setup(String),
}

/// The resources diagnose reads from the API.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub teps: Vec<TunnelEndpoint>,
    pub nat_mappings: Vec<NatMapping>,
    /// Why the NatMappings could not be listed (a route agent's account may not): they are then
    /// taken as none, and DNAT map elements are not compared.
    pub nat_mappings_error: Option<String>,
}

/// Lists the TunnelEndpoints and NatMappings of the target's namespace.
pub async fn fetch(client: kube::Client, namespace: &str) -> Result<Resources, Error> {
    let lp = ListParams::default();
    let teps = Api::<TunnelEndpoint>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .map_err(|source| Error::Api {
            what: "TunnelEndpoints",
            source,
        })?
        .items;
    let (nat_mappings, nat_mappings_error) = match Api::<NatMapping>::namespaced(client, namespace)
        .list(&lp)
        .await
    {
        Ok(list) => (list.items, None),
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    Ok(Resources {
        teps,
        nat_mappings,
        nat_mappings_error,
    })
}

/// Reads the resources, observes the node and runs every check that applies to it.
pub async fn diagnose(
    client: kube::Client,
    target: &Target,
    observer: Arc<dyn NodeObserver>,
) -> Result<Report, Error> {
    let resources = fetch(client, &target.namespace).await?;
    let target = &desired::with_reported_interface(target, &resources.teps);
    let request = ObserveRequest {
        interface: target.interface.clone(),
        endpoints: resources
            .teps
            .iter()
            .map(|t| t.spec.endpoint.clone())
            .collect(),
        gateways: gateway_addresses(&resources.teps),
    };
    let facts = tokio::task::spawn_blocking(move || observer.observe(&request))
        .await
        .map_err(|e| Error::Observe(e.to_string()))?;
    Ok(evaluate(
        target,
        &resources,
        &facts,
        SystemTime::now(),
        &PrivateKey::generate(),
    ))
}

/// Every gateway node address the TunnelEndpoints publish (`status.gatewayIP`), once each.
fn gateway_addresses(teps: &[isthmus_api::TunnelEndpoint]) -> Vec<std::net::Ipv4Addr> {
    let mut out: Vec<_> = teps
        .iter()
        .filter_map(|t| t.status.as_ref()?.gateway_ip)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The pure part: resources + facts + time → the report. `key` stands in for the gateway's
/// private key, which diagnose never reads (planning only needs a key to exist).
pub fn evaluate(
    target: &Target,
    resources: &Resources,
    facts: &NodeFacts,
    now: SystemTime,
    key: &PrivateKey,
) -> Report {
    let teps = &resources.teps;
    let reach = facts
        .reach
        .iter()
        .filter_map(|(ip, r)| Some((*ip, r.clone().ok()?)))
        .collect();
    let desired = desired::desired(target, resources, (&facts.endpoints, &reach), key);
    let tunnel_here = facts.link(&target.interface).is_some();
    let role = desired::role(target.node_name.as_deref(), teps, tunnel_here);
    let inputs = checks::Inputs {
        target,
        role: &role,
        desired: &desired,
        facts,
        now,
    };
    let (checks, skipped) = checks::run(&inputs);
    let mut names: Vec<String> = teps
        .iter()
        .map(|t| format!("{} (peer {})", t.name_any(), t.spec.cluster_id))
        .collect();
    names.sort();
    let context = report::Context {
        api: target.api.clone(),
        namespace: target.namespace.clone(),
        node: target.node_name.clone(),
        role: if role.gateway { "gateway" } else { "node" }.into(),
        role_basis: role.basis.clone(),
        interface: target.interface.clone(),
        tunnel_endpoints: names,
        nat_mappings: resources.nat_mappings.len(),
    };
    Report::new(context, checks, skipped)
}

#[cfg(test)]
mod tests {
    use isthmus_memkube::MemKube;
    use kube::api::PostParams;

    use super::checks::fixtures::World;
    use super::*;

    /// The orchestration against an API: resources listed from the namespace, the observer asked
    /// for the reported interface and every peer's endpoint, the report built from both.
    #[tokio::test]
    async fn lists_the_namespace_observes_and_reports() {
        let world = World::healthy();
        let kube = MemKube::new();
        for crd in isthmus_api::all_crds() {
            kube.register_crd(&crd).unwrap();
        }
        kube.create_namespace("isthmus").unwrap();
        let pp = PostParams::default();
        let teps: Api<TunnelEndpoint> = Api::namespaced(kube.client(), "isthmus");
        for t in &world.teps {
            let created = teps.create(&pp, t).await.unwrap();
            let mut with_status = created.clone();
            with_status.status = t.status.clone();
            teps.replace_status(&t.name_any(), &pp, &with_status)
                .await
                .unwrap();
        }
        let nats: Api<NatMapping> = Api::namespaced(kube.client(), "isthmus");
        for n in &world.nats {
            nats.create(&pp, n).await.unwrap();
        }
        let observer = Arc::new(FixtureObserver::new(world.facts.clone()));
        // No --interface: the one every TunnelEndpoint reports is inspected.
        let target = Target {
            interface: "isthmus-default".into(),
            ..world.target.clone()
        };
        let report = diagnose(kube.client(), &target, observer.clone())
            .await
            .unwrap();
        let requests = observer.requests.lock().unwrap().clone();
        assert_eq!(
            requests,
            [ObserveRequest {
                interface: "isthmus0".into(),
                endpoints: vec!["192.168.100.10:51820".into(), "192.168.100.12:51820".into()],
                gateways: vec!["172.16.0.10".parse().unwrap()],
            }]
        );
        assert_eq!(
            report.context.tunnel_endpoints,
            ["a (peer a)", "c (peer c)"]
        );
        assert_eq!(report.context.nat_mappings, 1);
        assert_eq!(report.context.role, "gateway");
        let nft = report.check(CheckId::Nftables).unwrap();
        assert_eq!(nft.status, Status::Ok, "{nft:#?}");
    }
}
