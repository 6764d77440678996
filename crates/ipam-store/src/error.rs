//! Errors of the durable layer: [`StoreError`] (the store could not read or write) and
//! [`ServiceError`] (what a caller of [`crate::DurableIpam`] gets back).

use isthmus_ipam::IpamError;

/// A store failure. After one, the service refuses further requests (crash-only recovery).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt store {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("IpamStorage {name} was changed by another writer (resourceVersion conflict)")]
    Conflict { name: String },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Whether retrying the same write may succeed: every Kubernetes API error (5xx, timeouts,
    /// refused connections, and 4xx answers an operator can fix, such as RBAC) is; a conflict
    /// with another writer, corruption and local file errors are not (a failed `fdatasync`
    /// cannot be retried safely).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Kube(_))
    }
}

/// What a request to [`crate::DurableIpam`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The IPAM refused the request; nothing changed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The store could not be read or written at start.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be made durable; the service is stopped.
    #[error("IPAM storage failed, the service is stopped: {0}")]
    Unavailable(String),
}

/// Helpers that name the file an I/O error or corruption is about.
pub(crate) mod at {
    use std::fs::File;
    use std::path::Path;

    use super::StoreError;

    /// Wraps an I/O error on `path`.
    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Reports `path` as corrupt.
    pub(crate) fn corrupt(path: &Path, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Makes a directory's entries (a rename, a new file) durable.
    pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }
}
