//! The Helm chart in the lab: this binary carries `deploy/helm/isthmus` (every file, checked by a
//! test against the directory), writes it out, and installs it into a lab cluster's API with the
//! real `helm` and the lab's values, as an operator installs isthmus on a cluster. CRDs, RBAC,
//! ServiceAccounts, Services and the workloads are then created through the API by Helm; the
//! lab's kubelet runs the workloads.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

/// The release name, and its namespace.
pub const RELEASE: &str = "isthmus";

macro_rules! chart_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/isthmus/", $path)))),*]
    };
}

/// Every file of the chart: path inside the chart, contents.
pub const CHART_FILES: &[(&str, &str)] = chart_files![
    "Chart.yaml",
    "values.yaml",
    "crds/foreignclusters.net.isthmus.io.yaml",
    "crds/ipamstorages.net.isthmus.io.yaml",
    "crds/natmappings.net.isthmus.io.yaml",
    "crds/networkconfigs.net.isthmus.io.yaml",
    "crds/tunnelendpoints.net.isthmus.io.yaml",
    "templates/NOTES.txt",
    "templates/_helpers.tpl",
    "templates/cluster.yaml",
    "templates/gateway.yaml",
    "templates/ipam-access.yaml",
    "templates/network-manager.yaml",
    "templates/rbac.yaml",
    "templates/route-agent.yaml",
    "ci/loadbalancer-ha-values.yaml",
    "ci/minimal-values.yaml",
];

/// Writes the chart into `dir/isthmus`; its path.
pub fn write_chart(dir: &Path) -> std::io::Result<PathBuf> {
    let root = dir.join("isthmus");
    for (path, text) in CHART_FILES {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, text)?;
    }
    Ok(root)
}

/// What the lab sets for one cluster.
#[derive(Debug, Clone)]
pub struct LabValues {
    pub cluster_id: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub reserved: Vec<String>,
    pub pools: Vec<String>,
    /// `host:port` of the gateway on the underlay.
    pub gateway_endpoint: String,
    pub wg_interface: String,
    pub wireguard_port: u16,
    pub mtu: u32,
    /// `gateway.replicas`.
    pub gateway_replicas: usize,
}

/// A node label no real node carries: on a real cluster the chart's pods stay Pending, since
/// the lab runs them itself.
pub const LAB_ONLY_SELECTOR: (&str, &str) = ("isthmus.io/lab-runs-this", "true");

impl LabValues {
    /// The values file.
    pub fn render(&self) -> serde_json::Value {
        let selector = json!({ LAB_ONLY_SELECTOR.0: LAB_ONLY_SELECTOR.1 });
        json!({
            "clusterID": self.cluster_id,
            "podCIDR": self.pod_cidr,
            "serviceCIDR": self.service_cidr,
            "reserved": self.reserved,
            "pools": self.pools,
            "logLevel": "info",
            "networkManager": { "nodeSelector": selector },
            "gateway": {
                "endpoint": self.gateway_endpoint,
                "interface": self.wg_interface,
                "wireguardPort": self.wireguard_port,
                "mtu": self.mtu,
                "replicas": self.gateway_replicas,
                // fast detection in the lab: peers probed every second
                "keepalive": 10,
                "probeIntervalMs": 1000,
                "nodeSelector": selector,
            },
            "routeAgent": { "resync": "10s", "nodeSelector": selector },
        })
    }
}

/// `helm upgrade --install` of the chart at `chart` into the API of `kubeconfig`.
/// `openapi_validation`: off for memkube, which serves no OpenAPI v2 document (the chart's
/// objects are validated against the real schemas in CI by `scripts/check-chart`).
pub async fn install(
    chart: &Path,
    kubeconfig: &Path,
    values: &LabValues,
    work: &Path,
    openapi_validation: bool,
) -> anyhow::Result<()> {
    install_release(
        chart,
        kubeconfig,
        (RELEASE, RELEASE),
        values,
        work,
        openapi_validation,
    )
    .await
}

/// [`install`] as release `release.0` into namespace `release.1`.
pub async fn install_release(
    chart: &Path,
    kubeconfig: &Path,
    (release, namespace): (&str, &str),
    values: &LabValues,
    work: &Path,
    openapi_validation: bool,
) -> anyhow::Result<()> {
    let values_file = work.join(format!("values-{}.yaml", values.cluster_id));
    std::fs::write(&values_file, serde_yaml::to_string(&values.render())?)
        .with_context(|| format!("writing {}", values_file.display()))?;
    let mut cmd = tokio::process::Command::new("helm");
    cmd.arg("upgrade")
        .arg("--install")
        .arg(release)
        .arg(chart)
        .args(["--namespace", namespace, "--create-namespace"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--values")
        .arg(&values_file)
        .env("HELM_CACHE_HOME", work.join("helm-cache"))
        .env("HELM_CONFIG_HOME", work.join("helm-config"))
        .env("HELM_DATA_HOME", work.join("helm-data"));
    if !openapi_validation {
        cmd.arg("--disable-openapi-validation");
    }
    let out = cmd.output().await.map_err(|e| {
        anyhow::anyhow!("cannot run helm ({e}); `sudo scripts/setup lab` installs it")
    })?;
    if !out.status.success() {
        bail!(
            "helm install into cluster {} failed: {}",
            values.cluster_id,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_carries_every_file_of_the_chart() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/isthmus");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    on_disk.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = CHART_FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        carried.sort();
        assert_eq!(carried, on_disk, "update CHART_FILES in src/lab/chart.rs");
    }

    #[test]
    fn lab_values_keep_real_schedulers_away_and_name_the_interface() {
        let v = LabValues {
            cluster_id: "a".into(),
            pod_cidr: "10.0.0.0/16".into(),
            service_cidr: "10.96.0.0/16".into(),
            reserved: vec!["172.16.0.0/24".into()],
            pools: Vec::new(),
            gateway_endpoint: "192.168.100.10:51820".into(),
            gateway_replicas: 1,
            wg_interface: "il1x0-a".into(),
            wireguard_port: 51820,
            mtu: 1420,
        }
        .render();
        assert_eq!(v["gateway"]["interface"], "il1x0-a");
        assert_eq!(v["gateway"]["nodeSelector"][LAB_ONLY_SELECTOR.0], "true");
        assert_eq!(v["reserved"][0], "172.16.0.0/24");
    }
}
