//! How a network-manager reaches a peer's API: the [`PeerResolver`] trait and its two
//! implementations, [`KubeconfigPeers`] (production: a kubeconfig stored in the Secret the
//! ForeignCluster references, read by `peer_kubeconfig`, which refuses anything that would run
//! or read something inside the network-manager) and [`LabPeers`] (tests and the lab: a map from
//! lab cluster name to a client). Each client comes as a [`PeerClient`] whose version changes
//! whenever the client does (a rotated token), so that what holds a client can renew it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use isthmus_api::ForeignCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::peer_kubeconfig::{self, Refusal};

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
    /// The kubeconfig asks for something the network-manager refuses; names the field only.
    #[error("secret {namespace}/{name}, key {key:?}: kubeconfig refused: {refusal}")]
    Refused {
        namespace: String,
        name: String,
        key: String,
        refusal: Box<Refusal>,
    },
    /// No client can be built from the accepted kubeconfig (its certificates or key).
    #[error(
        "secret {namespace}/{name}, key {key:?}: no client can be built from the kubeconfig's \
         CA, client certificate or key"
    )]
    Client {
        namespace: String,
        name: String,
        key: String,
    },
}

impl ResolveError {
    /// Whether the peer's kubeconfig was refused (a field to fix, not an outage).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ResolveError::Refused { .. })
    }
}

/// A client for a peer's API and its version: a different version is a different client (new
/// credentials), the same version the same client.
#[derive(Clone)]
pub struct PeerClient {
    pub client: Client,
    pub version: u64,
}

impl PeerClient {
    /// `client` with a version no other `PeerClient` of this process has.
    pub fn new(client: Client) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PeerClient {
            client,
            version: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Resolves a ForeignCluster to a client for the peer's API.
pub trait PeerResolver: Send + Sync + std::fmt::Debug {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<PeerClient, ResolveError>>;
}

/// Lab and tests: lab cluster name → client. Entries can be added, replaced (a new version) and
/// removed while running.
#[derive(Default, Clone)]
pub struct LabPeers {
    clusters: Arc<RwLock<HashMap<String, PeerClient>>>,
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
        self.write()
            .insert(name.to_owned(), PeerClient::new(client));
    }

    /// Makes lab cluster `name` unreachable.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PeerClient>> {
        self.clusters.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl PeerResolver for LabPeers {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<PeerClient, ResolveError>> {
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
type ClientCache = HashMap<(String, String), (String, PeerClient)>;

/// Production: reads the kubeconfig from the referenced Secret (key `kubeconfig` unless given),
/// accepts it only in the restricted form of `peer_kubeconfig`, and builds a client from it.
/// Clients are cached per Secret `resourceVersion`: an edited Secret (a rotated token) gives a
/// new client, with a new version, at the next resolve.
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

    async fn client_for(&self, fc: &ForeignCluster) -> Result<PeerClient, ResolveError> {
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
        // the Secret changed: its old client is not used again, whatever the new one gives
        self.lock().remove(&key);
        let data_key = r.key.as_deref().unwrap_or("kubeconfig");
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(data_key))
            .ok_or_else(|| secret_err(format!("has no key {data_key:?}")))?;
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| secret_err(format!("key {data_key:?} is not UTF-8")))?;
        let client = client_from_kubeconfig(text).map_err(|e| e.in_secret(r, data_key))?;
        let client = PeerClient::new(client);
        self.lock().insert(key, (version, client.clone()));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`client_from_kubeconfig`] gave no client; never quotes the kubeconfig.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig refused: {0}")]
    Refused(Refusal),
    #[error("no client can be built from the kubeconfig's CA, client certificate or key")]
    Client,
}

impl KubeconfigError {
    fn in_secret(self, r: &isthmus_api::SecretKeyRef, key: &str) -> ResolveError {
        let (namespace, name, key) = (r.namespace.clone(), r.name.clone(), key.to_owned());
        match self {
            KubeconfigError::Refused(refusal) => ResolveError::Refused {
                namespace,
                name,
                key,
                refusal: Box::new(refusal),
            },
            KubeconfigError::Client => ResolveError::Client {
                namespace,
                name,
                key,
            },
        }
    }
}

/// Builds a client from kubeconfig YAML: its current context, in the restricted form of
/// `peer_kubeconfig` (inline credentials and CA, `https://`), never through kube's loader.
pub fn client_from_kubeconfig(text: &str) -> Result<Client, KubeconfigError> {
    let accepted = peer_kubeconfig::parse(text).map_err(KubeconfigError::Refused)?;
    let config = peer_kubeconfig::client_config(&accepted);
    // kube's TLS errors are not shown: only our checks have said what the bytes hold
    Client::try_from(config).map_err(|_| KubeconfigError::Client)
}

impl PeerResolver for KubeconfigPeers {
    fn resolve<'a>(
        &'a self,
        fc: &'a ForeignCluster,
    ) -> BoxFuture<'a, Result<PeerClient, ResolveError>> {
        Box::pin(self.client_for(fc))
    }
}
