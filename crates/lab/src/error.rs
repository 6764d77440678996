//! The crate's error type: spec validation, kernel commands, state files, probes and teardown.

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, probing or destroying a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology spec was refused before anything touched the kernel.
    #[error("invalid lab spec: {0}")]
    Spec(String),
    /// A command (`ip`, …) failed.
    #[error("command `{command}` failed: {message}")]
    Command {
        /// The command line (and the batch namespace, if any).
        command: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// A network namespace could not be opened or entered.
    #[error("network namespace {name}: {source}")]
    Netns {
        /// Namespace name.
        name: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The state file could not be read, written or removed.
    #[error("state file {}: {source}", path.display())]
    StateFile {
        /// Its path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The state file is not a lab record.
    #[error("state file {}: {source}", path.display())]
    StateFormat {
        /// Its path.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A probe (ping, TCP) could not run: its socket failed, not the network.
    #[error("probe {what}: {source}")]
    Probe {
        /// What the probe was doing.
        what: String,
        /// Underlying error.
        source: io::Error,
    },
    /// An error from the dataplane crate's lab helpers.
    #[error(transparent)]
    Dataplane(#[from] isthmus_dataplane::Error),
    /// Building failed, and so did removing what had been built.
    #[error("{cause} (removing what was already built failed too: {rollback})")]
    RollbackFailed {
        /// Why the build failed.
        cause: Box<Error>,
        /// What the rollback reported.
        rollback: Box<Error>,
    },
    /// Teardown collected several errors; it did not stop at the first.
    #[error("{} errors during teardown: {}", .0.len(), join(.0))]
    Teardown(Vec<Error>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub(crate) fn spec(message: impl Into<String>) -> Self {
        Error::Spec(message.into())
    }

    pub(crate) fn probe(what: impl Into<String>, source: io::Error) -> Self {
        Error::Probe {
            what: what.into(),
            source,
        }
    }

    /// Turns a list of teardown errors into one result (flattening nested teardown errors).
    pub(crate) fn collect(errors: Vec<Error>) -> Result<()> {
        let mut flat = Vec::new();
        for error in errors {
            match error {
                Error::Teardown(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(flat))
        }
    }
}
