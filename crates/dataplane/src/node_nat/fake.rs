//! A recording node NAT driver for unit tests: keeps every batch and the table it would hold,
//! touches no kernel.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::{NodeNatApplied, NodeNatDriver, NodeNatPlan, apply_with};
use crate::{Error, Result};

/// What the fake saw, shared with the test.
#[derive(Debug, Default)]
pub struct NodeNatLog {
    /// Every batch sent, in order.
    pub batches: Vec<Value>,
    /// The plan the "kernel" holds now (`None`: no table).
    pub table: Option<NodeNatPlan>,
    /// Makes every batch fail while set.
    pub failing: bool,
}

/// Recording fake of [`NodeNatDriver`]. Clones share the log.
#[derive(Debug, Default, Clone)]
pub struct FakeNodeNat {
    /// Shared log.
    pub log: Arc<Mutex<NodeNatLog>>,
    applied: Option<NodeNatPlan>,
}

impl FakeNodeNat {
    fn lock(&self) -> std::sync::MutexGuard<'_, NodeNatLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan the fake kernel holds (`None`: no table).
    pub fn table(&self) -> Option<NodeNatPlan> {
        self.lock().table.clone()
    }

    /// Simulates `nft delete table inet isthmus-node` from outside.
    pub fn delete_from_outside(&self) {
        self.lock().table = None;
    }
}

impl NodeNatDriver for FakeNodeNat {
    fn apply(&mut self, plan: &NodeNatPlan) -> Result<NodeNatApplied> {
        let log = self.log.clone();
        let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = apply_with(
            &mut self.applied,
            plan,
            |p| Ok(lock().table.as_ref() == Some(p)),
            |batch| {
                let mut log = lock();
                if log.failing {
                    return Err(Error::Firewall("injected failure".into()));
                }
                log.batches.push(batch.clone());
                Ok(())
            },
        )?;
        lock().table = (outcome != NodeNatApplied::Removed).then(|| plan.clone());
        Ok(outcome)
    }

    fn remove(&mut self) -> Result<()> {
        let mut log = self.lock();
        if log.failing {
            return Err(Error::Firewall("injected failure".into()));
        }
        log.table = None;
        drop(log);
        self.applied = None;
        Ok(())
    }
}
