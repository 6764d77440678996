//! How isthmus's daemons talk to a Kubernetes API, in one place:
//!
//! - **every request has a deadline**: connecting, sending and waiting for each part of the
//!   answer are bounded ([`with_timeouts`]), so a hung API server or a dead connection turns into
//!   an error the caller retries, never a task stuck forever;
//! - **every watch notices a dead connection**: watches ask the server to end them after
//!   [`WATCH_TIMEOUT_SECS`] ([`watcher_config`]) and are restarted from where they were; a stream
//!   silent for longer than that (a conntrack flush, a NAT or load balancer that dropped the
//!   connection without a reset) is treated as dead by the watcher and restarted, so a change is
//!   never missed for longer than about half a minute.

use std::time::Duration;

use kube_runtime::watcher;

/// The watch length asked of the server (`timeoutSeconds`). kube's watcher restarts a watch that
/// has been silent for this plus 5 s.
pub const WATCH_TIMEOUT_SECS: u32 = 25;
/// Longest wait for a TCP connection to the API.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time to send a request.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading an answer (longer than a watch may stay silent).
pub const READ_TIMEOUT: Duration = Duration::from_secs(45);

/// The watcher configuration every controller uses.
pub fn watcher_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

/// Bounds every request made through clients built from `config`.
pub fn with_timeouts(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    // the read deadline counts from when the request was sent, not from when its pooled
    // connection went idle
    config.reset_reader_on_write = true;
    config
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The daemon's client: in-cluster or `KUBECONFIG`, with [`with_timeouts`].
pub async fn client() -> Result<kube::Client, ClientError> {
    let config = with_timeouts(kube::Config::infer().await?);
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_watch_is_restarted_before_a_read_times_out() {
        // kube's watcher gives up on a watch silent for its timeout + 5 s; the read deadline must
        // be longer, or a quiet but healthy watch would fail as an error instead.
        let watch_idle = Duration::from_secs(u64::from(WATCH_TIMEOUT_SECS) + 5);
        assert!(READ_TIMEOUT > watch_idle);
        assert_eq!(watcher_config().timeout, Some(WATCH_TIMEOUT_SECS));
        let c = with_timeouts(kube::Config::new("http://127.0.0.1:1".parse().unwrap()));
        assert_eq!(c.read_timeout, Some(READ_TIMEOUT));
        assert!(c.reset_reader_on_write);
    }
}
