//! A recording firewall for unit tests: keeps every batch it was given, touches no kernel.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::delta::{MapDelta, apply_delta_with};
use super::{Applied, FirewallDriver, NatPlan, TABLE, apply_with, render};
use crate::{Error, Result};

/// What the fake saw, shared with the test.
#[derive(Debug, Default)]
pub struct FirewallLog {
    /// Every batch sent, in order.
    pub batches: Vec<Value>,
    /// Simulates an outside flush: `intact` answers false until the next full apply.
    pub flushed: bool,
    /// Makes the next batch fail.
    pub fail_next: bool,
    /// Makes every batch fail while set (a kernel that keeps refusing).
    pub failing: bool,
}

/// Recording fake of [`FirewallDriver`].
#[derive(Debug, Default, Clone)]
pub struct FakeFirewall {
    /// Shared log.
    pub log: Arc<Mutex<FirewallLog>>,
    applied: Option<NatPlan>,
}

impl FakeFirewall {
    fn send(log: &Mutex<FirewallLog>, batch: &Value) -> Result<()> {
        let mut log = log.lock().expect("log lock");
        if std::mem::take(&mut log.fail_next) || log.failing {
            return Err(Error::Firewall("injected failure".into()));
        }
        if batch.to_string().contains("\"chain\"") {
            log.flushed = false;
        }
        log.batches.push(batch.clone());
        Ok(())
    }
}

impl FirewallDriver for FakeFirewall {
    fn apply(&mut self, plan: &NatPlan) -> Result<Applied> {
        let log = self.log.clone();
        apply_with(&mut self.applied, plan, |batch| Self::send(&log, batch))
    }

    fn apply_delta(&mut self, deltas: &[MapDelta]) -> Result<Applied> {
        let log = self.log.clone();
        apply_delta_with(&mut self.applied, deltas, |table, changes| {
            Self::send(&log, &render::render_elements(table, changes))
        })
    }

    fn intact(&mut self) -> Result<bool> {
        Ok(self.applied.is_some() && !self.log.lock().expect("log lock").flushed)
    }

    fn applied(&self) -> Option<&NatPlan> {
        self.applied.as_ref()
    }

    fn forget(&mut self) {
        self.applied = None;
    }

    fn remove(&mut self) -> Result<()> {
        Self::send(&self.log, &render::render_removal(TABLE))?;
        self.applied = None;
        Ok(())
    }
}
