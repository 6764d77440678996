//! The Kubernetes API servers that isthmus's tests and lab run against, behind one type,
//! [`ApiServer`]: memkube in this process (the default, and what CI runs), a real API server a
//! user already has (named by a kubeconfig), or a real control plane started here from envtest's
//! binaries. [`Source::from_env`] picks one from the environment; each server gives an admin
//! client, ServiceAccount tokens minted through the TokenRequest API, and kubeconfigs carrying
//! them, the same way whatever is behind it.

mod certs;
pub mod envtest;
pub mod kubeconfig;
mod server;
mod source;

pub use certs::{ServingPki, serving_pki, signing_key_pem};
pub use kubeconfig::{KubeconfigSpec, base64};
pub use server::{ApiServer, Backend, start};
pub use source::{ASSETS_VAR, KUBECONFIGS_VAR, NamedKubeconfig, Source, parse_kubeconfigs};

/// Why an API server could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{KUBECONFIGS_VAR}: {0}")]
    Source(String),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("envtest: {0}")]
    Envtest(String),
    #[error("memkube: {0}")]
    Memkube(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Setup(String),
}

impl Error {
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Api {
            what: what.into(),
            source,
        }
    }
}
