//! DNAT map elements over netlink: the NatMapping fast path without an `nft` process.
//!
//! Exactly what [`apply_delta`](super::FirewallDriver::apply_delta) needs: delete and add
//! elements of existing `ipv4_addr : ipv4_addr` maps of one table, all in one nfnetlink batch
//! (`NFNL_MSG_BATCH_BEGIN`, `NFT_MSG_DELSETELEM`…, `NFT_MSG_NEWSETELEM`…, `NFNL_MSG_BATCH_END`)
//! that the kernel applies atomically, every message acknowledged. [`encode`] builds the bytes
//! and reads the acknowledgements (pure); [`socket`] sends a batch on a `NETLINK_NETFILTER`
//! socket and waits for every acknowledgement. Tables, chains and rules stay with `nft -j`.
//!
//! An `add` of a key that exists with another value fails in the kernel (`EEXIST`), so a changed
//! value is a delete and an add of the key in the same batch, as
//! [`element_changes`](super::delta::element_changes) already plans it.

pub mod encode;
pub mod socket;

use std::fmt;
use std::io;

/// What one message of a batch does to a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    /// `NFT_MSG_NEWSETELEM` with `NLM_F_CREATE`: add elements.
    Add,
    /// `NFT_MSG_DELSETELEM`: delete elements by key.
    Delete,
}

impl fmt::Display for ElementOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementOp::Add => "add elements",
            ElementOp::Delete => "delete elements",
        })
    }
}

/// How a netlink element batch failed.
#[derive(Debug, thiserror::Error)]
pub enum NlNftError {
    /// The kernel refused one message of the batch; the whole batch was rolled back.
    #[error("{op} of map {table}/{map} refused: {source}")]
    Refused {
        /// What the message did.
        op: ElementOp,
        /// The table.
        table: String,
        /// The map.
        map: String,
        /// The kernel's errno.
        source: io::Error,
    },
    /// The kernel refused the batch as a whole (its begin or end message).
    #[error("element batch on table {table} refused: {source}")]
    Batch {
        /// The table.
        table: String,
        /// The kernel's errno.
        source: io::Error,
    },
    /// The batch does not fit in one netlink message to the kernel.
    #[error("element batch of {bytes} bytes is too large for one netlink send")]
    TooLarge {
        /// Encoded size.
        bytes: usize,
    },
    /// Opening, sending on or reading the socket failed (a timeout included).
    #[error("netfilter netlink socket, {step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
}
