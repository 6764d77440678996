//! Network namespaces: which one a driver works on, and a runtime whose every thread lives in it.
//!
//! Sockets, TUN devices and child processes are bound to the network namespace of the thread that
//! creates them. [`NsRuntime`] owns a small tokio runtime whose threads (workers and blocking pool)
//! all enter the namespace when they start, so anything created there lands in the right place and
//! can then be used from anywhere. It is also the "helper thread" the userspace WireGuard engine is
//! created on, which keeps its signal mask away from the caller's threads.

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sched::{CloneFlags, setns};

use crate::{Error, Result};

/// A network namespace a driver works on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Netns {
    /// The namespace the process runs in.
    Current,
    /// A named namespace, as `ip netns add NAME` creates it (`/run/netns/NAME`).
    Named(String),
}

impl Netns {
    /// The bind-mount path of a named namespace.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Netns::Current => None,
            Netns::Named(name) => Some(PathBuf::from(format!("/run/netns/{name}"))),
        }
    }

    /// A short label for logs.
    pub fn label(&self) -> &str {
        match self {
            Netns::Current => "(current)",
            Netns::Named(name) => name,
        }
    }

    /// Prefix to run a command in this namespace (`ip netns exec NAME`), empty for the current one.
    pub fn exec_prefix(&self) -> Vec<String> {
        match self {
            Netns::Current => Vec::new(),
            Netns::Named(name) => vec!["ip".into(), "netns".into(), "exec".into(), name.clone()],
        }
    }
}

/// A tokio runtime whose threads all run inside one network namespace.
///
/// The methods block the calling thread: call them from synchronous code, or from
/// `tokio::task::spawn_blocking` in async code.
#[derive(Debug)]
pub struct NsRuntime {
    netns: Netns,
    runtime: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    /// Starts a runtime in `netns` with `workers` worker threads.
    pub fn new(netns: Netns, workers: usize) -> Result<Arc<Self>> {
        let ns_file = match netns.path() {
            None => None,
            Some(path) => Some(Arc::new(File::open(&path).map_err(|source| {
                Error::Netns {
                    name: netns.label().to_owned(),
                    source,
                }
            })?)),
        };
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(workers.max(1))
            .enable_all()
            .thread_name("isthmus-netns");
        if let Some(file) = ns_file {
            // Every thread of this runtime (workers and blocking pool) enters the namespace before
            // it runs anything. A failure here would leave a thread in the wrong namespace, so it
            // aborts that thread loudly instead.
            builder.on_thread_start(move || {
                if let Err(err) = setns(file.as_ref(), CloneFlags::CLONE_NEWNET) {
                    panic!("setns into network namespace failed: {err}");
                }
            });
        }
        let runtime = builder.build()?;
        Ok(Arc::new(NsRuntime {
            netns,
            runtime: Some(runtime),
        }))
    }

    /// The namespace this runtime lives in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("runtime is only taken on drop")
    }

    /// Handle to spawn long-lived tasks (servers, engines) inside the namespace.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt().handle().clone()
    }

    /// Runs a future on a thread inside the namespace and waits for it.
    pub fn run<F, T>(&self, future: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.rt().spawn(future);
        match self.rt().block_on(task) {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Runs blocking code (netlink calls, `nft`) on a thread inside the namespace and waits for it.
    pub fn run_blocking<F, T>(&self, work: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = self.rt().spawn_blocking(work);
        match self.rt().block_on(task) {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_its_threads_and_from_spawn_blocking() {
        let ns = NsRuntime::new(Netns::Current, 1).unwrap();
        assert_eq!(ns.run(async { 40 + 2 }), 42);
        assert_eq!(ns.run_blocking(|| 7), 7);
        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let inner = ns.clone();
        let got = outer.block_on(async move {
            tokio::task::spawn_blocking(move || inner.run(async { 5 })).await
        });
        assert_eq!(got.unwrap(), 5);
    }
}
