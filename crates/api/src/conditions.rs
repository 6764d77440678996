//! Kubernetes-style status conditions (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`) and the one function that updates a list of them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The three values of a condition's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Sets condition `type_` in `conditions`. `lastTransitionTime` moves to `now` only when the
/// status changes, as Kubernetes does; reason, message and generation are always refreshed.
/// Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = status.as_str();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let unchanged = c.status == status
            && c.reason == reason
            && c.message == message
            && c.observed_generation == generation;
        if unchanged {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status.to_owned();
        c.reason = reason.to_owned();
        c.message = message.to_owned();
        c.observed_generation = generation;
        return true;
    }
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: Time(now),
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            "Ready",
            ConditionStatus::False,
            "Wait",
            "",
            Some(1),
            t0
        ));
        assert!(!set_condition(
            &mut cs,
            "Ready",
            ConditionStatus::False,
            "Wait",
            "",
            Some(1),
            t1
        ));
        assert!(set_condition(
            &mut cs,
            "Ready",
            ConditionStatus::False,
            "Other",
            "m",
            Some(1),
            t1
        ));
        assert_eq!(cs[0].last_transition_time.0, t0);
        assert!(set_condition(
            &mut cs,
            "Ready",
            ConditionStatus::True,
            "Up",
            "",
            Some(2),
            t1
        ));
        assert_eq!(cs[0].last_transition_time.0, t1);
        assert_eq!(cs.len(), 1);
    }
}
