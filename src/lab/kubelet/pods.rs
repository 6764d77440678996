//! The lab's kubelet, pure part: which processes the chart's workloads become on the lab's nodes.
//! A Deployment's replicas are placed on the nodes in order (replica 0 on the gateway node), a
//! DaemonSet runs on every node; each pod keeps its container's arguments exactly as rendered,
//! its ServiceAccount, and its environment with the downward-API fields filled in from the node
//! (every isthmus pod runs in the node's network, as the gateway and route agent do on a
//! cluster). Anything the lab cannot provide is an error naming it, never silently dropped.

use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{EnvVar, PodSpec};

/// A lab node a pod can run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// One pod of the chart, as a process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProcess {
    /// `app.kubernetes.io/component` of the workload (`gateway`, …).
    pub component: String,
    pub pod_name: String,
    pub namespace: String,
    pub node: LabNode,
    pub service_account: String,
    /// The container's arguments, after the `isthmus` binary.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What the lab cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("{workload}: {reason}")]
    Unsupported { workload: String, reason: String },
}

/// The pods of every workload, in order.
pub fn pods(
    deployments: &[Deployment],
    daemon_sets: &[DaemonSet],
    nodes: &[LabNode],
) -> Result<Vec<PodProcess>, PodError> {
    let mut out = Vec::new();
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let spec = &d.spec;
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let labels = workload_labels(&d.metadata);
        for i in 0..replicas {
            let node = &nodes[i % nodes.len()];
            let pod = format!("{name}-{i}");
            out.push(pod_process(
                &name,
                &labels,
                &spec.template.spec,
                pod,
                &d.metadata,
                node,
            )?);
        }
    }
    for ds in daemon_sets {
        let name = ds.metadata.name.clone().unwrap_or_default();
        let spec = &ds.spec;
        let labels = workload_labels(&ds.metadata);
        for node in nodes {
            let pod = format!("{name}-{}", node.name);
            out.push(pod_process(
                &name,
                &labels,
                &spec.template.spec,
                pod,
                &ds.metadata,
                node,
            )?);
        }
    }
    Ok(out)
}

fn unsupported(workload: &str, reason: impl Into<String>) -> PodError {
    PodError::Unsupported {
        workload: workload.to_owned(),
        reason: reason.into(),
    }
}

fn workload_labels(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> std::collections::BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn pod_process(
    workload: &str,
    labels: &std::collections::BTreeMap<String, String>,
    spec: &Option<PodSpec>,
    pod_name: String,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    node: &LabNode,
) -> Result<PodProcess, PodError> {
    let spec = spec
        .as_ref()
        .ok_or_else(|| unsupported(workload, "no pod spec"))?;
    let [container] = spec.containers.as_slice() else {
        return Err(unsupported(
            workload,
            "the lab runs pods of exactly one container",
        ));
    };
    if let Some(command) = &container.command
        && !command.iter().all(|c| c.ends_with("isthmus"))
    {
        return Err(unsupported(
            workload,
            format!("command {command:?} is not the isthmus binary"),
        ));
    }
    let namespace = meta.namespace.clone().unwrap_or_default();
    let fields = Downward {
        pod_name: &pod_name,
        namespace: &namespace,
        node,
    };
    let env = container
        .env
        .iter()
        .flatten()
        .map(|var| fields.resolve(workload, var))
        .collect::<Result<Vec<_>, _>>()?;
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(unsupported(workload, "envFrom is not supported by the lab"));
    }
    Ok(PodProcess {
        component: labels
            .get("app.kubernetes.io/component")
            .cloned()
            .unwrap_or_else(|| workload.to_owned()),
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        args: container.args.clone().unwrap_or_default(),
        env,
        pod_name,
        namespace,
        node: node.clone(),
    })
}

/// The downward API's values for one pod.
struct Downward<'a> {
    pod_name: &'a str,
    namespace: &'a str,
    node: &'a LabNode,
}

impl Downward<'_> {
    fn resolve(&self, workload: &str, var: &EnvVar) -> Result<(String, String), PodError> {
        if let Some(value) = &var.value {
            return Ok((var.name.clone(), value.clone()));
        }
        let Some(from) = &var.value_from else {
            return Ok((var.name.clone(), String::new()));
        };
        let Some(field) = &from.field_ref else {
            return Err(unsupported(
                workload,
                format!("env {}: only fieldRef values are supported", var.name),
            ));
        };
        let value = match field.field_path.as_str() {
            "metadata.name" => self.pod_name.to_owned(),
            "metadata.namespace" => self.namespace.to_owned(),
            "spec.nodeName" => self.node.name.clone(),
            // every lab pod runs in its node's network
            "status.hostIP" | "status.podIP" => self.node.ip.to_string(),
            other => {
                return Err(unsupported(
                    workload,
                    format!("env {}: field {other} is not provided", var.name),
                ));
            }
        };
        Ok((var.name.clone(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<LabNode> {
        (0..2)
            .map(|j| LabNode {
                name: format!("node{j}"),
                netns: format!("il1x0-a-node{j}"),
                ip: Ipv4Addr::new(172, 16, 0, 10 + j),
            })
            .collect()
    }

    fn deployment(replicas: i32, env: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "isthmus-gateway", "namespace": "isthmus",
                "labels": {"app.kubernetes.io/component": "gateway"}},
            "spec": {"replicas": replicas, "selector": {}, "template": {"spec": {
                "serviceAccountName": "isthmus-gateway",
                "containers": [{"name": "gateway", "args": ["gateway", "--mtu=1420"], "env": env}]
            }}}
        }))
        .unwrap()
    }

    #[test]
    fn replicas_land_on_nodes_in_order_with_the_downward_api_filled_in() {
        let env = serde_json::json!([
            {"name": "RUST_LOG", "value": "info"},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]);
        let out = pods(&[deployment(2, env)], &[], &nodes()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].pod_name, "isthmus-gateway-1");
        assert_eq!(out[1].node.name, "node1");
        assert_eq!(out[0].component, "gateway");
        assert_eq!(out[0].service_account, "isthmus-gateway");
        assert_eq!(out[0].args, ["gateway", "--mtu=1420"]);
        assert_eq!(
            out[1].env,
            [
                ("RUST_LOG".into(), "info".into()),
                ("NODE_NAME".into(), "node1".into()),
                ("NODE_IP".into(), "172.16.0.11".into()),
                ("POD_NAME".into(), "isthmus-gateway-1".into()),
            ]
        );
    }

    #[test]
    fn what_the_lab_cannot_provide_is_named() {
        let env = serde_json::json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
        let err = pods(&[deployment(1, env)], &[], &nodes()).unwrap_err();
        assert!(err.to_string().contains("env X: only fieldRef"), "{err}");
        let env = serde_json::json!([{"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]);
        let err = pods(&[deployment(1, env)], &[], &nodes()).unwrap_err();
        assert!(err.to_string().contains("metadata.uid"), "{err}");
    }

    #[test]
    fn a_daemon_set_runs_on_every_node() {
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "isthmus-route-agent", "namespace": "isthmus"},
            "spec": {"selector": {}, "template": {"spec": {
                "containers": [{"name": "ra", "args": ["route-agent"]}]
            }}}
        }))
        .unwrap();
        let out = pods(&[], &[ds], &nodes()).unwrap();
        assert_eq!(
            out.iter().map(|p| p.pod_name.as_str()).collect::<Vec<_>>(),
            ["isthmus-route-agent-node0", "isthmus-route-agent-node1"]
        );
        assert_eq!(out[0].service_account, "default");
        assert_eq!(out[0].component, "isthmus-route-agent");
    }
}
