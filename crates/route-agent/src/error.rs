//! [`Error`]: everything the route agent can fail with.

use crate::config::ConfigError;

/// A failed start or sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("route driver: {0}")]
    Driver(#[from] isthmus_dataplane::Error),
    #[error("route driver task failed: {0}")]
    DriverTask(String),
    #[error("the TunnelEndpoint watch ended")]
    WatchEnded,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
