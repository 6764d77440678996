//! The lab's kubelet: it runs what the Helm chart installed into a lab cluster's API. It reads the
//! release's Deployments and DaemonSets back from the API, places their pods on the lab's nodes
//! ([`pods`]), gives each pod a kubeconfig with a token of the pod's own ServiceAccount minted
//! through the TokenRequest API (so the chart's RBAC is exactly what each daemon gets), and runs
//! each pod as an OS process in its node's network namespace ([`process`]), supervised like a
//! pod: restarted with back-off when it fails. Tokens are re-minted before they expire and the
//! daemons re-read them, as with a kubelet's projected ServiceAccount tokens.

pub mod pods;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use isthmus_kubetarget::{ApiServer, Credential};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::Api;
use kube::api::ListParams;
use tokio::task::JoinHandle;

use crate::lab::component::{Component, Failures};
use pods::{LabNode, PodProcess};
use process::Launch;

/// Lifetime of the tokens the lab mints (a real kubelet asks for one hour too).
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How often they are renewed (well before they expire).
const TOKEN_RENEWAL: Duration = Duration::from_secs(20 * 60);

/// Where a cluster's pods reach its API, and where their files go.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The `isthmus` binary the pods run.
    pub binary: PathBuf,
    /// Kubeconfigs, token files and logs of this cluster's pods.
    pub dir: PathBuf,
    /// The API's URL as the nodes reach it (the lab's forward on the LAN).
    pub api_url_on_nodes: String,
    /// The chart's release namespace.
    pub namespace: String,
}

/// The running pods of one cluster.
#[derive(Debug)]
pub struct Kubelet {
    pods: Vec<(PodProcess, Option<Component>, Launch)>,
    renewal: JoinHandle<()>,
    cluster: String,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl Kubelet {
    /// Reads the release's workloads, mints the tokens and starts every pod.
    pub async fn start(
        cluster: &str,
        api: Arc<ApiServer>,
        nodes: &[LabNode],
        config: KubeletConfig,
    ) -> anyhow::Result<Kubelet> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("creating {}", config.dir.display()))?;
        let ns = &config.namespace;
        let deployments = Api::<Deployment>::namespaced(api.admin(), ns)
            .list(&ListParams::default())
            .await
            .context("listing the chart's Deployments")?
            .items;
        let daemon_sets = Api::<DaemonSet>::namespaced(api.admin(), ns)
            .list(&ListParams::default())
            .await
            .context("listing the chart's DaemonSets")?
            .items;
        let planned = pods::pods(&deployments, &daemon_sets, nodes)?;
        let accounts: Vec<String> = {
            let mut a: Vec<String> = planned.iter().map(|p| p.service_account.clone()).collect();
            a.sort();
            a.dedup();
            a
        };
        let kubeconfigs = write_credentials(&api, &config, &accounts).await?;
        let renewal = tokio::spawn(renew_tokens(api.clone(), config.clone(), accounts));
        let mut kubelet = Kubelet {
            pods: Vec::new(),
            renewal,
            cluster: cluster.to_owned(),
        };
        for pod in planned {
            let launch = Launch {
                binary: config.binary.clone(),
                kubeconfig: kubeconfigs[&pod.service_account].clone(),
                log: config.dir.join(format!("{}.log", pod.pod_name)),
                pod: pod.clone(),
                pid: Arc::default(),
            };
            kubelet.pods.push((pod, None, launch));
        }
        for i in 0..kubelet.pods.len() {
            kubelet.start_pod(i);
        }
        Ok(kubelet)
    }

    fn label(&self, pod: &PodProcess) -> String {
        format!("{}/{}", self.cluster, pod.pod_name)
    }

    fn start_pod(&mut self, i: usize) {
        let label = self.label(&self.pods[i].0);
        let starter = self.pods[i].2.clone().starter();
        self.pods[i].1 = Some(Component::spawn(label, starter));
    }

    /// Indexes of the pods of `component` (`gateway`, `network-manager`, `route-agent`).
    fn of(&self, component: &str) -> Vec<usize> {
        (0..self.pods.len())
            .filter(|i| self.pods[*i].0.component == component)
            .collect()
    }

    /// Stops the pods of `component` cleanly (they stay stopped until [`Self::resume`]).
    pub async fn stop(&mut self, component: &str) {
        for i in self.of(component) {
            if let Some(c) = self.pods[i].1.take() {
                c.stop().await;
            }
        }
    }

    /// Starts the stopped pods of `component`.
    pub fn resume(&mut self, component: &str) {
        for i in self.of(component) {
            if self.pods[i].1.is_none() {
                self.start_pod(i);
            }
        }
    }

    /// Kills the pods of `component` (SIGKILL, as a crash) and starts them again.
    pub fn crash(&mut self, component: &str) {
        for i in self.of(component) {
            if let Some(c) = self.pods[i].1.take() {
                c.kill();
            }
            self.start_pod(i);
        }
    }

    /// The index of pod `pod_name`, or an error naming the pods there are.
    fn pod_index(&self, pod_name: &str) -> anyhow::Result<usize> {
        (0..self.pods.len())
            .find(|i| self.pods[*i].0.pod_name == pod_name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.pods.iter().map(|p| p.0.pod_name.as_str()).collect();
                anyhow::anyhow!(
                    "no pod {pod_name} in cluster {} (pods: {names:?})",
                    self.cluster
                )
            })
    }

    /// Kills one pod (SIGKILL, as a node lost or a crash) and leaves it stopped, as if its
    /// node were gone, until [`Self::start_pod_named`].
    pub fn kill_pod(&mut self, pod_name: &str) -> anyhow::Result<()> {
        let i = self.pod_index(pod_name)?;
        if let Some(c) = self.pods[i].1.take() {
            c.kill();
        }
        Ok(())
    }

    /// Stops one pod cleanly (SIGTERM, as a rolling upgrade or a drain) and leaves it stopped.
    pub async fn stop_pod(&mut self, pod_name: &str) -> anyhow::Result<()> {
        let i = self.pod_index(pod_name)?;
        if let Some(c) = self.pods[i].1.take() {
            c.stop().await;
        }
        Ok(())
    }

    /// Starts one stopped pod again (no-op when it runs).
    pub fn start_pod_named(&mut self, pod_name: &str) -> anyhow::Result<()> {
        let i = self.pod_index(pod_name)?;
        if self.pods[i].1.is_none() {
            self.start_pod(i);
        }
        Ok(())
    }

    /// Every pod that has failed at least once, with its failures.
    pub fn failing(&self) -> Vec<(String, Failures)> {
        self.pods
            .iter()
            .filter_map(|(pod, c, _)| c.as_ref().map(|c| (self.label(pod), c.failures())))
            .filter(|(_, f)| f.count > 0)
            .collect()
    }

    /// The pods and their log files.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        self.pods
            .iter()
            .map(|(pod, _, launch)| (self.label(pod), launch.log.clone()))
            .collect()
    }

    /// Every running pod: its label (`a/isthmus-gateway-0`), component and pid.
    pub fn pids(&self) -> Vec<(String, String, u32)> {
        self.pods
            .iter()
            .filter(|(_, c, _)| c.is_some())
            .map(|(pod, _, launch)| {
                let pid = launch.pid.load(std::sync::atomic::Ordering::Acquire);
                (self.label(pod), pod.component.clone(), pid)
            })
            .filter(|(.., pid)| *pid != 0)
            .collect()
    }

    /// The pods, as planned.
    pub fn pods(&self) -> impl Iterator<Item = &PodProcess> {
        self.pods.iter().map(|(p, ..)| p)
    }

    /// Stops every pod.
    pub async fn shutdown(mut self) {
        for (_, component, _) in &mut self.pods {
            if let Some(c) = component.take() {
                c.stop().await;
            }
        }
    }
}

fn token_file(dir: &Path, account: &str) -> PathBuf {
    dir.join(format!("{account}.token"))
}

/// Mints a token per ServiceAccount and writes its token file and kubeconfig.
async fn write_credentials(
    api: &ApiServer,
    config: &KubeletConfig,
    accounts: &[String],
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for account in accounts {
        refresh_token(api, config, account).await?;
        let kubeconfig = config.dir.join(format!("{account}.kubeconfig"));
        let token = token_file(&config.dir, account);
        let yaml = api.kubeconfig_with(
            Credential::TokenFile(&token),
            &config.namespace,
            Some(&config.api_url_on_nodes),
        );
        write_private(&kubeconfig, yaml.as_bytes())?;
        out.insert(account.clone(), kubeconfig);
    }
    Ok(out)
}

async fn refresh_token(
    api: &ApiServer,
    config: &KubeletConfig,
    account: &str,
) -> anyhow::Result<()> {
    let token = api
        .token(&config.namespace, account, TOKEN_TTL)
        .await
        .with_context(|| format!("a token for the chart's ServiceAccount {account}"))?;
    write_private(&token_file(&config.dir, account), token.as_bytes())
}

/// Writes a file readable by root only, atomically (a reader never sees half a token).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

async fn renew_tokens(api: Arc<ApiServer>, config: KubeletConfig, accounts: Vec<String>) {
    loop {
        tokio::time::sleep(TOKEN_RENEWAL).await;
        for account in &accounts {
            if let Err(error) = refresh_token(&api, &config, account).await {
                tracing::warn!(%account, "renewing the token failed: {error:#}");
            }
        }
    }
}
