//! The kubeconfig a peer's network-manager uses to reach a cluster's API: the server URL, the CA
//! inline (`certificate-authority-data`), the bearer token inline. Nothing that runs a command
//! (`exec`) or reads a file, so it works inside the network-manager's image, which has neither
//! cloud CLIs nor the user's files. The renderer is the one every isthmus component uses.

pub use isthmus_kubeclient::kubeconfig::{
    Credential, KubeconfigSpec, base64, pem_certificate, render,
};
