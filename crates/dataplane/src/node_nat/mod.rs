//! Node NAT exemption: the route agent's own nftables table (`inet isthmus-node`) on every node
//! that routes peers' ranges to the gateway node.
//!
//! A CNI masquerades pod traffic leaving for "outside" ranges (kindnet, flannel, Calico's
//! natOutgoing, ip-masq-agent: a nat rule at `postrouting` priority `srcnat`). A pod's packet to a
//! peer's range would be masqueraded to the node's address before it reaches the gateway. A
//! connection gets one source NAT binding and the first nat chain that makes it wins, so our
//! chain, at [`SRCNAT_PRIORITY`] (before `srcnat`), binds every connection from the local Pod
//! CIDR to a peer's range to its own source address (`snat ip to ip saddr`, a null binding):
//! every later nat chain at the hook is then skipped for it, whatever tool installed it.
//!
//! [`NodeNatPlan`] is pure data; [`render`] turns it into one atomic batch; [`NodeNatDriver`] has
//! a Linux implementation ([`nft::NftNodeNat`]) and a recording fake ([`fake::FakeNodeNat`]).

pub mod fake;
pub mod nft;
pub mod render;

use ipnet::Ipv4Net;

use crate::Result;
pub use crate::firewall::render::SRCNAT_PRIORITY;

/// The table the route agent owns (never the gateway's `isthmus`, which may share the node).
pub const NODE_TABLE: &str = "isthmus-node";

/// What the node's table holds: connections from `sources` to `destinations` are bound to their
/// own source address. Empty (no source or no destination): no table at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNatPlan {
    /// Table name ([`NODE_TABLE`]).
    pub table: String,
    /// Our Pod CIDR(s): the sources a CNI masquerades. Sorted, no duplicates.
    pub sources: Vec<Ipv4Net>,
    /// The peers' ranges this node routes to the gateway node. Sorted, no duplicates.
    pub destinations: Vec<Ipv4Net>,
}

impl NodeNatPlan {
    /// The plan for these sources and destinations (sorted and deduplicated here).
    pub fn new(
        sources: impl IntoIterator<Item = Ipv4Net>,
        destinations: impl IntoIterator<Item = Ipv4Net>,
    ) -> NodeNatPlan {
        let sorted = |it: &mut dyn Iterator<Item = Ipv4Net>| {
            let mut v: Vec<Ipv4Net> = it.collect();
            v.sort();
            v.dedup();
            v
        };
        NodeNatPlan {
            table: NODE_TABLE.into(),
            sources: sorted(&mut sources.into_iter()),
            destinations: sorted(&mut destinations.into_iter()),
        }
    }

    /// True when nothing is to be exempted: the table is removed.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() || self.destinations.is_empty()
    }
}

/// How an apply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeNatApplied {
    /// The kernel already held the plan.
    Unchanged,
    /// The table was (re)built in one batch.
    Replaced,
    /// The plan was empty: the table was removed (or was already absent).
    Removed,
}

/// The node's exemption table.
pub trait NodeNatDriver: Send {
    /// Makes our table match `plan` in one atomic batch; an empty plan removes it. Nothing is
    /// sent when the last applied plan is the same and the kernel still holds it.
    fn apply(&mut self, plan: &NodeNatPlan) -> Result<NodeNatApplied>;
    /// Deletes our table (absent already is fine). Other tables are never touched.
    fn remove(&mut self) -> Result<()>;
}

/// The apply logic both drivers share. `intact` says whether the kernel still holds `plan`
/// (asked only when it is also the last plan applied); `send` sends one batch.
pub(crate) fn apply_with(
    applied: &mut Option<NodeNatPlan>,
    plan: &NodeNatPlan,
    intact: impl FnOnce(&NodeNatPlan) -> Result<bool>,
    mut send: impl FnMut(&serde_json::Value) -> Result<()>,
) -> Result<NodeNatApplied> {
    if plan.is_empty() {
        // Also when nothing is recorded: a table left by an earlier run goes away.
        send(&crate::firewall::render::render_removal(&plan.table))?;
        *applied = Some(plan.clone());
        return Ok(NodeNatApplied::Removed);
    }
    if applied.as_ref() == Some(plan) && intact(plan)? {
        return Ok(NodeNatApplied::Unchanged);
    }
    *applied = None;
    send(&render::render(plan))?;
    tracing::debug!(table = %plan.table, sources = plan.sources.len(), destinations = plan.destinations.len(), "node nat exemption applied");
    *applied = Some(plan.clone());
    Ok(NodeNatApplied::Replaced)
}
