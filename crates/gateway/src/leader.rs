//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder programs the kernel and
//! writes status. Every write carries the `resourceVersion` it read (optimistic concurrency: a
//! 409 means someone else wrote first). A lease is taken over when its holder released it or
//! left the record unchanged for a whole lease duration measured on our own monotonic clock
//! since we first saw it (as client-go does). Its `renewTime` is written for people and tools but
//! never compared with our wall clock: a standby whose clock runs fast must not take a live
//! lease. The holder also writes its node on the Lease ([`NODE_ANNOTATION`]), so that a
//! replica starting as standby knows whether the datapath it may have left on its own node is
//! stale (the holder runs elsewhere) and removes it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::config::LeaderConfig;
use crate::error::{Error, Result};

/// Annotation on the Lease: the node of the replica holding it.
pub const NODE_ANNOTATION: &str = "net.isthmus.io/holder-node";

/// Who holds the lease, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// `holderIdentity` (empty: nobody).
    pub identity: String,
    /// Its node, when it wrote one.
    pub node: Option<String>,
}

impl Holder {
    /// Who holds `lease` (empty identity: nobody), and on which node ([`NODE_ANNOTATION`]).
    pub fn of(lease: &Lease) -> Holder {
        Holder {
            identity: lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            node: lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_ANNOTATION).cloned()),
        }
    }
}

/// What to do with the lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it, held by us.
    Create,
    /// Ours: renew it.
    Renew,
    /// Released or expired: take it over.
    Take,
    /// Someone else holds it.
    Wait,
}

/// Pure decision. `unchanged_for`: how long we have seen this exact record, on our monotonic
/// clock (zero when we have just read it for the first time).
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if unchanged_for >= duration {
        Decision::Take
    } else {
        Decision::Wait
    }
}

/// Resolves once `rx` turns true or its sender is gone (holds no borrow across awaits).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// One replica's view of the lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    seen: Option<(Option<String>, Instant)>,
    holder: Option<Holder>,
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    /// An elector for the lease `config.lease_name` in `namespace`.
    pub fn new(client: Client, namespace: &str, config: LeaderConfig) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            config,
            seen: None,
            holder: None,
        }
    }

    /// Whether the last read showed the lease held by another replica on another node: then
    /// whatever datapath is on our node is a leftover of an earlier leader here.
    pub fn held_on_another_node(&self) -> bool {
        self.holder.as_ref().is_some_and(|h| {
            !h.identity.is_empty()
                && h.identity != self.config.identity
                && h.node.as_deref().is_some_and(|n| n != self.config.node)
        })
    }

    /// Our node as an annotation on the Lease we write.
    fn annotate(&self, meta: &mut ObjectMeta) {
        if self.config.node.is_empty() {
            return;
        }
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(NODE_ANNOTATION.to_owned(), self.config.node.clone());
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>, take: bool) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: if take {
                Some(MicroTime(now))
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if take && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// One round: read the lease, decide, write. Returns whether we hold it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let name = self.config.lease_name.clone();
        let current = self.api.get_opt(&name).await?;
        self.holder = Some(current.as_ref().map(Holder::of).unwrap_or_default());
        let version = current
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        let now_i = Instant::now();
        let unchanged_for = match &self.seen {
            Some((v, at)) if *v == version => now_i.duration_since(*at),
            _ => {
                self.seen = Some((version, now_i));
                Duration::ZERO
            }
        };
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let now = Timestamp::now();
        let decision = decide(
            spec,
            &self.config.identity,
            unchanged_for,
            self.config.lease_duration,
        );
        let result = match (decision, current.clone()) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) => {
                let mut lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, true)),
                };
                self.annotate(&mut lease.metadata);
                self.api.create(&PostParams::default(), &lease).await
            }
            (decision, Some(mut lease)) => {
                let take = decision == Decision::Take;
                lease.spec = Some(self.spec(now, lease.spec.as_ref(), take));
                self.annotate(&mut lease.metadata);
                if take {
                    tracing::info!(lease = %name, identity = %self.config.identity,
                        previous = ?spec.and_then(|s| s.holder_identity.clone()), "taking the lease");
                }
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Tries every `retry_period` until the lease is ours, or `stop` turns true (→ `false`).
    pub async fn campaign(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        self.campaign_with(stop, async |_| {}).await
    }

    /// [`Self::campaign`], calling `standby` once, with the holder, the first time the lease is
    /// seen held by another replica on another node ([`Self::held_on_another_node`]).
    pub async fn campaign_with(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        standby: impl AsyncFnOnce(Holder),
    ) -> bool {
        let mut standby = Some(standby);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) if self.held_on_another_node() => {
                    if let (Some(call), Some(holder)) = (standby.take(), self.holder.clone()) {
                        call(holder).await;
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "lease campaign failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stopped(stop) => return false,
            }
        }
    }

    /// Renews every `renew_period` (every `retry_period` after a failure) until `stop` turns
    /// true (then releases, → `Ok`), or until the lease is lost: held by another
    /// ([`Error::LeadershipLost`]), or not renewed within the renew deadline
    /// ([`Error::RenewalFailed`]).
    pub async fn hold(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut renewed = Instant::now();
        let mut failing = false;
        loop {
            let pause = if failing {
                self.config.retry_period
            } else {
                self.config.renew_period
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped(&mut stop) => {
                    if let Err(err) = self.release().await {
                        tracing::warn!(error = %err, "releasing the lease failed");
                    }
                    return Ok(());
                }
            }
            failing = false;
            // A renewal that hangs must not keep us programming past the deadline: the standby
            // takes over one lease duration after our last renewal, whatever we are waiting for.
            let remaining = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(remaining, self.try_acquire_or_renew()).await;
            let Ok(attempt) = attempt else {
                return Err(Error::RenewalFailed(format!(
                    "lease {}: a renewal got no answer within the renew deadline ({} s)",
                    self.config.lease_name,
                    self.config.renew_deadline.as_secs()
                )));
            };
            match attempt {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    // Not renewed (someone wrote first): find out who holds it now. An
                    // unanswered read is a failed renewal, not a lost lease.
                    let remaining = self.config.renew_deadline.saturating_sub(renewed.elapsed());
                    let read = self.api.get_opt(&self.config.lease_name);
                    match tokio::time::timeout(remaining, read).await {
                        Ok(Ok(current)) => {
                            let holder = current
                                .and_then(|l| l.spec)
                                .and_then(|s| s.holder_identity)
                                .unwrap_or_default();
                            if holder != self.config.identity {
                                let holder = if holder.is_empty() { "nobody" } else { &holder };
                                return Err(Error::LeadershipLost(format!(
                                    "lease {} is held by {holder}",
                                    self.config.lease_name
                                )));
                            }
                        }
                        Ok(Err(_)) | Err(_) => failing = true,
                    }
                }
                Err(err) => {
                    failing = true;
                    tracing::warn!(error = %err, "lease renewal failed");
                }
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                return Err(Error::RenewalFailed(format!(
                    "lease {} not renewed for {} s",
                    self.config.lease_name,
                    self.config.renew_deadline.as_secs()
                )));
            }
        }
    }

    /// Gives the lease up (holder cleared), so a successor takes it at once.
    pub async fn release(&mut self) -> Result<()> {
        let name = &self.config.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %name, "lease released");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held(by: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let zero = Duration::ZERO;
        assert_eq!(decide(None, "a", zero, D), Decision::Create);
        assert_eq!(decide(Some(&held("a", 100)), "a", zero, D), Decision::Renew);
        assert_eq!(decide(Some(&held("b", 100)), "a", zero, D), Decision::Wait);
        assert_eq!(
            decide(Some(&held("b", 100)), "a", D - Duration::from_millis(1), D),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&held("b", 200)), "a", D, D),
            Decision::Take,
            "expired by our own observation"
        );
        let released = LeaseSpec {
            holder_identity: None,
            ..held("b", 100)
        };
        assert_eq!(decide(Some(&released), "a", zero, D), Decision::Take);
    }

    #[test]
    fn a_renew_time_long_past_by_our_clock_is_not_expiry() {
        // renewed at second 0 of the epoch: by any wall clock decades ago, but we have just
        // read this record, so its holder may be alive with a clock far behind ours
        assert_eq!(
            decide(Some(&held("b", 0)), "a", Duration::ZERO, D),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&held("b", 0)), "a", Duration::from_secs(14), D),
            Decision::Wait
        );
    }
}
