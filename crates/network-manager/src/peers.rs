//! How a network-manager reaches a peer's API: the [`PeerResolver`] trait and its two
//! implementations, [`KubeconfigPeers`] (production: a kubeconfig stored in the Secret the
//! ForeignCluster references) and [`LabPeers`] (tests and the lab: a map from lab cluster name to
//! a client).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use isthmus_api::ForeignCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Why a peer's API could not be resolved to a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("the ForeignCluster names no {0}")]
    NotConfigured(&'static str),
    #[error("lab cluster {0:?} is unknown")]
    UnknownLabCluster(String),
    #[error("secret {namespace}/{name}: {message}")]
    Secret {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

/// Resolves a ForeignCluster to a client for the peer's API.
pub trait PeerResolver: Send + Sync + std::fmt::Debug {
    fn resolve<'a>(&'a self, fc: &'a ForeignCluster)
    -> BoxFuture<'a, Result<Client, ResolveError>>;
}

/// Lab and tests: lab cluster name → client. Entries can be added and removed while running.
#[derive(Default, Clone)]
pub struct LabPeers {
    clusters: Arc<RwLock<HashMap<String, Client>>>,
}

impl std::fmt::Debug for LabPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.clusters.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        f.debug_struct("LabPeers")
            .field("clusters", &names)
            .finish()
    }
}

impl LabPeers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes lab cluster `name` reachable through `client`.
    pub fn insert(&self, name: &str, client: Client) {
        self.write().insert(name.to_owned(), client);
    }

    /// Makes lab cluster `name` unreachable.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Client>> {
        self.clusters.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl PeerResolver for LabPeers {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<Client, ResolveError>> {
        let result = match &fc.spec.lab_cluster {
            None => Err(ResolveError::NotConfigured("labCluster")),
            Some(name) => {
                let map = self.clusters.read().unwrap_or_else(|e| e.into_inner());
                map.get(name)
                    .cloned()
                    .ok_or_else(|| ResolveError::UnknownLabCluster(name.clone()))
            }
        };
        Box::pin(async move { result })
    }
}

/// Clients by Secret (namespace, name), with the Secret's resourceVersion they were built from.
type ClientCache = HashMap<(String, String), (String, Client)>;

/// Production: reads the kubeconfig from the referenced Secret (key `kubeconfig` unless given)
/// and builds a client from it. Clients are cached per Secret `resourceVersion`.
#[derive(Clone)]
pub struct KubeconfigPeers {
    local: Client,
    cache: Arc<Mutex<ClientCache>>,
}

impl std::fmt::Debug for KubeconfigPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigPeers").finish_non_exhaustive()
    }
}

impl KubeconfigPeers {
    pub fn new(local: Client) -> Self {
        KubeconfigPeers {
            local,
            cache: Arc::default(),
        }
    }

    async fn client_for(&self, fc: &ForeignCluster) -> Result<Client, ResolveError> {
        let r = fc
            .spec
            .kubeconfig_secret_ref
            .as_ref()
            .ok_or(ResolveError::NotConfigured("kubeconfigSecretRef"))?;
        let secret_err = |message: String| ResolveError::Secret {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            message,
        };
        let api: Api<Secret> = Api::namespaced(self.local.clone(), &r.namespace);
        let secret = api
            .get(&r.name)
            .await
            .map_err(|e| secret_err(e.to_string()))?;
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let key = (r.namespace.clone(), r.name.clone());
        if let Some((v, client)) = self.lock().get(&key)
            && *v == version
        {
            return Ok(client.clone());
        }
        let data_key = r.key.as_deref().unwrap_or("kubeconfig");
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(data_key))
            .ok_or_else(|| secret_err(format!("has no key {data_key:?}")))?;
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| secret_err(format!("key {data_key:?} is not UTF-8")))?;
        let client = client_from_kubeconfig(text).await?;
        self.lock().insert(key, (version, client.clone()));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds a client from kubeconfig YAML (its current context).
pub async fn client_from_kubeconfig(text: &str) -> Result<Client, ResolveError> {
    let kc = Kubeconfig::from_yaml(text).map_err(|e| ResolveError::Kubeconfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ResolveError::Kubeconfig(e.to_string()))?;
    let config = isthmus_kubeclient::with_timeouts(config);
    Client::try_from(config).map_err(|e| ResolveError::Kubeconfig(e.to_string()))
}

impl PeerResolver for KubeconfigPeers {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<Client, ResolveError>> {
        Box::pin(self.client_for(fc))
    }
}
