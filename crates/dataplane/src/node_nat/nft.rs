//! The Linux driver of the node's exemption table: JSON batches through the `nft` binary, run
//! inside the node's namespace; the kernel's table read back to repair outside edits.

use std::sync::Arc;

use nftables::helper::{self, DEFAULT_ARGS, DEFAULT_NFT, NftablesError};
use serde_json::Value;

use super::{NODE_TABLE, NodeNatApplied, NodeNatDriver, NodeNatPlan, apply_with, render};
use crate::firewall::nft::read_table;
use crate::firewall::view::{TableView, diff};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// Drives `inet isthmus-node` in one namespace and remembers what it applied.
#[derive(Debug)]
pub struct NftNodeNat {
    ns: Arc<NsRuntime>,
    applied: Option<NodeNatPlan>,
}

impl NftNodeNat {
    /// A driver for [`NODE_TABLE`] in the runtime's namespace; the first apply rebuilds it.
    pub fn new(ns: Arc<NsRuntime>) -> Self {
        NftNodeNat { ns, applied: None }
    }

    fn send(ns: &NsRuntime, batch: &Value) -> Result<()> {
        let payload = batch.to_string();
        ns.run_blocking(move || helper::apply_ruleset_raw(&payload, DEFAULT_NFT, DEFAULT_ARGS))
            .map(drop)
            .map_err(|err| {
                Error::Firewall(match err {
                    NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
                    other => other.to_string(),
                })
            })
    }

    /// Whether the kernel's table is exactly what `plan` renders to.
    fn holds(ns: &NsRuntime, plan: &NodeNatPlan) -> Result<bool> {
        let Some(listing) = read_table(ns, &plan.table)? else {
            return Ok(false);
        };
        let want = TableView::from_batch(&render::render(plan), &plan.table);
        let have = TableView::from_listing(&listing, &plan.table);
        let diff = diff(&want, &have);
        if !diff.is_empty() {
            tracing::debug!(?diff, "the node nat table differs from what was applied");
        }
        Ok(diff.is_empty())
    }
}

impl NodeNatDriver for NftNodeNat {
    fn apply(&mut self, plan: &NodeNatPlan) -> Result<NodeNatApplied> {
        let ns = self.ns.clone();
        apply_with(
            &mut self.applied,
            plan,
            |p| Self::holds(&ns, p),
            |batch| Self::send(&ns, batch),
        )
    }

    fn remove(&mut self) -> Result<()> {
        let table = self.applied.take().map_or(NODE_TABLE.into(), |p| p.table);
        Self::send(&self.ns, &crate::firewall::render::render_removal(&table))
    }
}
