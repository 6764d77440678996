//! Kubernetes Events (`events.k8s.io/v1`) on transitions an operator wants in `kubectl describe`
//! and `kubectl get events`: a peering accepted or refused, a tunnel connected or lost.
//!
//! Best effort: an Event that cannot be written is logged and dropped; it never fails or slows
//! the controller that raised it (publishing runs on a spawned task). Repeats of the same
//! event within minutes become one Event with a count (kube's recorder series).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// A publisher of Events for one controller instance; clones share the dedup cache.
#[derive(Clone)]
pub struct Events {
    recorder: Option<std::sync::Arc<Recorder>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("enabled", &self.recorder.is_some())
            .finish()
    }
}

impl Events {
    /// Publishes as `controller` (e.g. `isthmus-gateway`), instance `instance` (the pod name).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Events {
            recorder: Some(std::sync::Arc::new(Recorder::new(client, reporter))),
        }
    }

    /// Publishes nothing (tests, tools).
    pub fn disabled() -> Self {
        Events { recorder: None }
    }

    /// Publishes an Event about `regarding` in the background.
    pub fn publish(
        &self,
        regarding: ObjectReference,
        kind: EventKind,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let event = Event {
            type_: match kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &regarding).await {
                tracing::debug!(error = %err, reason = %event.reason, "event not recorded");
            }
        });
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::disabled()
    }
}

/// At most `max` bytes, cut on a character boundary (the API refuses notes over 1 kB).
fn truncate(mut note: String, max: usize) -> String {
    if note.len() > max {
        let mut cut = max;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(note, 1000);
        assert_eq!(cut.len(), 1000);
        assert!(truncate("short".into(), 1000) == "short");
    }
}
