//! Fault injection: what a test or the lab can make one instance do wrong, through a cheap,
//! cloneable [`Faults`] handle ([`crate::MemKube::faults`]). Every fault is off by default.
//!
//! * latency added to each write (and optionally each read), as etcd's fsync adds it;
//! * 5xx answers for a class of verbs, a fixed number of times or with a probability, with the
//!   `Status` bodies a real API server sends ([`ServerError`]);
//! * every open watch stream cut at the connection level ([`Faults::drop_watches`]: no 410, the
//!   stream just ends mid-way, as after a conntrack flush), or left open but silent
//!   ([`Faults::silence_watches`]: no events, no bookmarks, until the client gives up, as
//!   behind an expired NAT entry);
//! * an outage of a given duration that ends by itself ([`Faults::outage`]): over HTTP nothing
//!   listens and open connections are closed; in process the `tower::Service` fails with
//!   [`ConnectionRefused`], which `kube::Client` reports as a transport error, not a status.
//!
//! This file owns the fault state and the decisions taken from it; `service` applies them to
//! requests, `watch_stream` and `server` react to the signals.

use std::ops::BitOr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ApiError;

/// Which requests a failure rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbs {
    reads: bool,
    writes: bool,
    watches: bool,
}

impl Verbs {
    /// get and list (and discovery).
    pub const READS: Self = Self {
        reads: true,
        writes: false,
        watches: false,
    };
    /// create, update, patch, delete.
    pub const WRITES: Self = Self {
        reads: false,
        writes: true,
        watches: false,
    };
    /// Opening a watch.
    pub const WATCHES: Self = Self {
        reads: false,
        writes: false,
        watches: true,
    };
    /// Every request.
    pub const ALL: Self = Self {
        reads: true,
        writes: true,
        watches: true,
    };

    fn contains(self, class: VerbClass) -> bool {
        match class {
            VerbClass::Read => self.reads,
            VerbClass::Write => self.writes,
            VerbClass::Watch => self.watches,
        }
    }
}

impl BitOr for Verbs {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self {
            reads: self.reads || other.reads,
            writes: self.writes || other.writes,
            watches: self.watches || other.watches,
        }
    }
}

/// The class of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerbClass {
    Read,
    Write,
    Watch,
}

impl VerbClass {
    /// Classifies a request by method and `watch` parameter.
    pub(crate) fn of(method: &Method, watch: bool) -> Self {
        match *method {
            Method::GET | Method::HEAD if watch => Self::Watch,
            Method::GET | Method::HEAD => Self::Read,
            _ => Self::Write,
        }
    }
}

/// The 5xx an injected failure answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError {
    /// 500 without a `reason`, as the API server passes on an etcd timeout:
    /// `etcdserver: request timed out`.
    EtcdTimeout,
    /// 503 `ServiceUnavailable`: `the server is currently unable to handle the request`.
    Unavailable,
}

impl ServerError {
    fn to_api_error(self) -> ApiError {
        match self {
            Self::EtcdTimeout => ApiError::Plain {
                code: 500,
                message: "etcdserver: request timed out".into(),
            },
            Self::Unavailable => ApiError::ServiceUnavailable(
                "the server is currently unable to handle the request".into(),
            ),
        }
    }
}

/// What an outage makes the in-process service return: the error a client gets when nothing
/// listens on the API server's address (an `io::Error` of kind `ConnectionRefused` is its
/// source, as in a real failed connect).
#[derive(Debug, thiserror::Error)]
#[error("tcp connect error: {source}")]
pub struct ConnectionRefused {
    #[source]
    source: std::io::Error,
}

impl ConnectionRefused {
    pub(crate) fn new() -> Self {
        Self {
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
    }
}

#[derive(Debug, Clone)]
enum Budget {
    Count(u32),
    Probability(f64),
}

#[derive(Debug, Clone)]
struct FailureRule {
    verbs: Verbs,
    budget: Budget,
    error: ServerError,
}

#[derive(Debug, Default)]
struct Settings {
    write_latency: Duration,
    read_latency: Duration,
    failures: Vec<FailureRule>,
    down_until: Option<Instant>,
}

/// Counters that open watch streams and the HTTP listener follow: each fault that acts on
/// connections already open bumps one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Signal {
    /// Open streams must end abruptly (drops and outage starts).
    pub(crate) cuts: u64,
    /// Open streams must go silent.
    pub(crate) silences: u64,
    /// Outage starts, ends and changes (the listener re-checks).
    pub(crate) outages: u64,
}

#[derive(Debug)]
struct Shared {
    settings: Mutex<Settings>,
    signal: watch::Sender<Signal>,
}

/// A handle on one instance's faults; cheap to clone, shared by every clone of the
/// [`crate::MemKube`] it came from.
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                settings: Mutex::new(Settings::default()),
                signal: watch::channel(Signal::default()).0,
            }),
        }
    }
}

impl Faults {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.shared
            .settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delays every write (create, update, patch, delete) by `latency` before it is handled.
    pub fn set_write_latency(&self, latency: Duration) {
        self.settings().write_latency = latency;
    }

    /// Delays every get and list by `latency` before it is handled.
    pub fn set_read_latency(&self, latency: Duration) {
        self.settings().read_latency = latency;
    }

    /// Answers the next `count` requests of `verbs` with `error`.
    pub fn fail_next(&self, verbs: Verbs, count: u32, error: ServerError) {
        let rule = FailureRule {
            verbs,
            budget: Budget::Count(count),
            error,
        };
        self.settings().failures.push(rule);
    }

    /// Answers each request of `verbs` with `error` with the given probability (0 to 1),
    /// until [`Faults::clear_failures`].
    pub fn fail_randomly(&self, verbs: Verbs, probability: f64, error: ServerError) {
        let rule = FailureRule {
            verbs,
            budget: Budget::Probability(probability.clamp(0.0, 1.0)),
            error,
        };
        self.settings().failures.push(rule);
    }

    /// Removes every failure rule.
    pub fn clear_failures(&self) {
        self.settings().failures.clear();
    }

    /// Ends every open watch stream abruptly, without a 410 or a final event: the client sees
    /// the connection end mid-stream and must resume. Watches opened later are unaffected.
    pub fn drop_watches(&self) {
        self.shared.signal.send_modify(|s| s.cuts += 1);
    }

    /// Silences every open watch stream: it stays open but carries nothing more (no events,
    /// no bookmarks, not even its timeout's end) until the client gives up on it. Watches
    /// opened later are unaffected.
    pub fn silence_watches(&self) {
        self.shared.signal.send_modify(|s| s.silences += 1);
    }

    /// Takes the API server down for `duration`, from now: every request fails as against a
    /// stopped server, open connections and watches are cut. It comes back by itself.
    pub fn outage(&self, duration: Duration) {
        self.settings().down_until = Some(Instant::now() + duration);
        self.shared.signal.send_modify(|s| {
            s.cuts += 1;
            s.outages += 1;
        });
    }

    /// Ends an outage early.
    pub fn end_outage(&self) {
        self.settings().down_until = None;
        self.shared.signal.send_modify(|s| s.outages += 1);
    }

    /// Whether an outage is in progress.
    pub fn is_down(&self) -> bool {
        self.down_until().is_some()
    }

    /// Turns every fault off: no latency, no failures, no outage.
    pub fn clear(&self) {
        let mut settings = self.settings();
        let was_down = settings.down_until.take().is_some();
        *settings = Settings::default();
        drop(settings);
        if was_down {
            self.shared.signal.send_modify(|s| s.outages += 1);
        }
    }

    /// When the current outage ends, if one is in progress.
    pub(crate) fn down_until(&self) -> Option<Instant> {
        let mut settings = self.settings();
        match settings.down_until {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                settings.down_until = None;
                None
            }
            None => None,
        }
    }

    /// The latency to add before handling a request of `class`.
    pub(crate) fn latency(&self, class: VerbClass) -> Duration {
        let settings = self.settings();
        match class {
            VerbClass::Write => settings.write_latency,
            VerbClass::Read => settings.read_latency,
            VerbClass::Watch => Duration::ZERO,
        }
    }

    /// Whether any failure rule is set.
    pub(crate) fn has_failures(&self) -> bool {
        !self.settings().failures.is_empty()
    }

    /// The injected failure for a request of `class`, if a rule fires (counted rules are
    /// consumed).
    pub(crate) fn injected_failure(&self, class: VerbClass) -> Option<ApiError> {
        let mut settings = self.settings();
        let mut fired = None;
        for rule in settings.failures.iter_mut() {
            if !rule.verbs.contains(class) {
                continue;
            }
            let fires = match &mut rule.budget {
                Budget::Count(0) => false,
                Budget::Count(n) => {
                    *n -= 1;
                    true
                }
                Budget::Probability(p) => fastrand::f64() < *p,
            };
            if fires {
                fired = Some(rule.error);
                break;
            }
        }
        settings
            .failures
            .retain(|r| !matches!(r.budget, Budget::Count(0)));
        fired.map(ServerError::to_api_error)
    }

    /// A receiver of the connection-level signals.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Signal> {
        self.shared.signal.subscribe()
    }

    /// Waits until no outage is in progress.
    pub(crate) async fn wait_until_up(&self) {
        let mut signals = self.subscribe();
        while let Some(until) = self.down_until() {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                _ = signals.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_failures_fire_exactly_for_their_verbs() {
        let faults = Faults::default();
        faults.fail_next(Verbs::WRITES, 2, ServerError::EtcdTimeout);
        assert!(faults.injected_failure(VerbClass::Read).is_none());
        let err = faults.injected_failure(VerbClass::Write).unwrap();
        assert_eq!(err.code(), 500);
        assert_eq!(err.to_string(), "etcdserver: request timed out");
        assert!(faults.injected_failure(VerbClass::Write).is_some());
        assert!(faults.injected_failure(VerbClass::Write).is_none());
    }

    #[test]
    fn probabilities_of_zero_and_one_are_never_and_always() {
        let faults = Faults::default();
        faults.fail_randomly(Verbs::READS | Verbs::WATCHES, 0.0, ServerError::Unavailable);
        assert!((0..100).all(|_| faults.injected_failure(VerbClass::Read).is_none()));
        faults.clear_failures();
        faults.fail_randomly(Verbs::ALL, 1.0, ServerError::Unavailable);
        let err = faults.injected_failure(VerbClass::Watch).unwrap();
        assert_eq!((err.code(), err.reason()), (503, "ServiceUnavailable"));
    }

    #[test]
    fn latency_is_per_class_and_clear_turns_everything_off() {
        let faults = Faults::default();
        faults.set_write_latency(Duration::from_millis(5));
        assert_eq!(faults.latency(VerbClass::Write), Duration::from_millis(5));
        assert_eq!(faults.latency(VerbClass::Read), Duration::ZERO);
        faults.fail_next(Verbs::ALL, 9, ServerError::EtcdTimeout);
        faults.clear();
        assert_eq!(faults.latency(VerbClass::Write), Duration::ZERO);
        assert!(faults.injected_failure(VerbClass::Write).is_none());
    }

    #[tokio::test]
    async fn an_outage_ends_by_itself_and_signals_a_cut() {
        let faults = Faults::default();
        let signals = faults.subscribe();
        faults.outage(Duration::from_millis(30));
        assert!(faults.is_down());
        assert_eq!(signals.borrow().cuts, 1);
        faults.wait_until_up().await;
        assert!(!faults.is_down());
    }

    #[test]
    fn method_and_watch_flag_classify_requests() {
        assert_eq!(VerbClass::of(&Method::GET, true), VerbClass::Watch);
        assert_eq!(VerbClass::of(&Method::GET, false), VerbClass::Read);
        assert_eq!(VerbClass::of(&Method::PATCH, false), VerbClass::Write);
        assert_eq!(VerbClass::of(&Method::DELETE, false), VerbClass::Write);
    }
}
