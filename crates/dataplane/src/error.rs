//! The crate's error type: one enum for every driver, the planner and the lab.

use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the datapath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired state was rejected before anything touched the kernel.
    #[error("invalid desired state: {0}")]
    Invalid(String),
    /// A network namespace could not be opened or entered.
    #[error("network namespace {name}: {source}")]
    Netns {
        /// Namespace name.
        name: String,
        /// Underlying error.
        source: io::Error,
    },
    /// A WireGuard operation failed.
    #[error("wireguard {ifname}: {message}")]
    Tunnel {
        /// Interface the operation was on.
        ifname: String,
        /// What failed.
        message: String,
    },
    /// An nftables batch was refused or `nft` could not run.
    #[error("nftables: {0}")]
    Firewall(String),
    /// A DNAT element batch over netlink was refused or could not be sent.
    #[error("nftables over netlink: {0}")]
    NftNetlink(#[from] crate::firewall::netlink::NlNftError),
    /// A netlink request failed.
    #[error("netlink {op}: {message}")]
    Netlink {
        /// The operation (`add route 10.1.0.0/24`, ...).
        op: String,
        /// The kernel's answer.
        message: String,
    },
    /// A command of the lab or the benchmark failed.
    #[error("command `{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// Plain I/O.
    #[error(transparent)]
    Io(#[from] io::Error),
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
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub(crate) fn tunnel(ifname: &str, message: impl ToString) -> Self {
        Error::Tunnel {
            ifname: ifname.to_owned(),
            message: message.to_string(),
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, message: impl ToString) -> Self {
        Error::Netlink {
            op: op.into(),
            message: message.to_string(),
        }
    }

    /// Turns a list of teardown errors into one result.
    pub(crate) fn collect(errors: Vec<Error>) -> Result<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(errors))
        }
    }
}
