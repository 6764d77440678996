//! Validation of Events as the API server does it (pure), on the stored core/v1 shape. Every
//! Event gets the legacy rules (namespaces agree; an Event with `eventTime` names its reporting
//! controller and instance, action and reason, and keeps its note to 1,024 characters);
//! Events written through events.k8s.io/v1 also need `eventTime` and a `Normal` or `Warning`
//! type, must leave the deprecated fields unset, and may change little but their series.
//! Field names in the causes are the API server's.

use serde_json::Value;

use crate::error::Cause;

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// Fields events.k8s.io/v1 may not change, with the names the API server reports.
const IMMUTABLE: &[(&str, &str)] = &[
    ("involvedObject", "involvedObject"),
    ("reason", "reason"),
    ("message", "message"),
    ("source", "source"),
    ("firstTimestamp", "firstTimestamp"),
    ("lastTimestamp", "lastTimestamp"),
    ("count", "count"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("related", "related"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

fn text<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether a time field is unset (Go's zero time).
fn unset(event: &Value, pointer: &str) -> bool {
    match event.pointer(pointer) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        field: field.into(),
        message: "Required value".into(),
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        field: field.into(),
        message: format!("Invalid value: {value}: {detail}"),
    }
}

fn empty_invalid(field: &str, detail: &str) -> Cause {
    invalid(field, &Value::String(String::new()), detail)
}

fn check_namespaces(event: &Value, causes: &mut Vec<Cause>) {
    let ns = text(event, "/metadata/namespace");
    let involved = text(event, "/involvedObject/namespace");
    let mismatch = if unset(event, "/eventTime") {
        if involved.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved
        }
    } else {
        involved.is_empty() && ns != "default" && ns != "kube-system"
    };
    if mismatch {
        let value = Value::String(involved.to_string());
        causes.push(invalid(
            "involvedObject.namespace",
            &value,
            "does not match event.namespace",
        ));
    }
}

fn check_reporter(event: &Value, causes: &mut Vec<Cause>) {
    let controller = text(event, "/reportingComponent");
    if controller.is_empty() {
        causes.push(required("reportingController"));
    }
    for msg in crate::object_meta::qualified_name(controller) {
        causes.push(invalid(
            "reportingController",
            &Value::String(controller.into()),
            &msg,
        ));
    }
    let limited = [
        (
            "reportingInstance",
            "/reportingInstance",
            REPORTING_INSTANCE_LIMIT,
            true,
        ),
        ("action", "/action", ACTION_LIMIT, true),
        ("reason", "/reason", REASON_LIMIT, true),
        ("message", "/message", NOTE_LIMIT, false),
    ];
    for (field, pointer, limit, needed) in limited {
        let value = text(event, pointer);
        if needed && value.is_empty() {
            causes.push(required(field));
        }
        if value.len() > limit {
            causes.push(empty_invalid(
                field,
                &format!("can have at most {limit} characters"),
            ));
        }
    }
}

/// The rules every Event is held to, through either API.
fn legacy(event: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check_namespaces(event, &mut causes);
    if !unset(event, "/eventTime") {
        check_reporter(event, &mut causes);
    }
    let ns = text(event, "/metadata/namespace");
    if crate::meta::validate_name(ns).is_err() {
        let msg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
        causes.push(invalid("namespace", &Value::String(ns.into()), msg));
    }
    causes
}

fn check_series(event: &Value, causes: &mut Vec<Cause>) {
    let Some(series) = event.get("series").filter(|s| !s.is_null()) else {
        return;
    };
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        causes.push(empty_invalid("series.count", "should be at least 2"));
    }
    if unset(series, "/lastObservedTime") {
        causes.push(required("series.lastObservedTime"));
    }
}

/// The causes of refusing to create `event`, written through events.k8s.io/v1 or not.
pub fn validate_create(event: &Value, events_v1: bool) -> Vec<Cause> {
    let mut causes = legacy(event);
    if !events_v1 {
        return causes;
    }
    check_series(event, &mut causes);
    if unset(event, "/eventTime") {
        causes.push(required("eventTime"));
    }
    let ty = text(event, "/type");
    if ty != "Normal" && ty != "Warning" {
        causes.push(empty_invalid("type", &format!("has invalid value: {ty}")));
    }
    for (pointer, field) in [
        ("/firstTimestamp", "firstTimestamp"),
        ("/lastTimestamp", "lastTimestamp"),
    ] {
        if !unset(event, pointer) {
            causes.push(empty_invalid(field, "needs to be unset"));
        }
    }
    if event.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        causes.push(empty_invalid("count", "needs to be unset"));
    }
    if !text(event, "/source/component").is_empty() || !text(event, "/source/host").is_empty() {
        causes.push(empty_invalid("source", "needs to be unset"));
    }
    causes
}

/// The causes of refusing to update `old` to `new`.
pub fn validate_update(new: &Value, old: &Value, events_v1: bool) -> Vec<Cause> {
    let mut causes = legacy(new);
    if !events_v1 {
        return causes;
    }
    if new.get("series") != old.get("series") {
        check_series(new, &mut causes);
    }
    for (stored, field) in IMMUTABLE {
        let value = new.get(*stored).cloned().unwrap_or(Value::Null);
        if old.get(*stored).cloned().unwrap_or(Value::Null) != value {
            causes.push(invalid(field, &value, "field is immutable"));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An Event as kube's `Recorder` writes it, in the stored shape.
    fn recorded() -> Value {
        json!({"metadata": {"name": "w.1", "namespace": "default"},
            "involvedObject": {"kind": "Widget", "name": "w", "namespace": "default"},
            "eventTime": "2026-12-05T10:00:00.000000Z", "reason": "Synced", "action": "Reconcile",
            "type": "Normal", "message": "ok", "reportingComponent": "ctl", "reportingInstance": "ctl-0"})
    }

    fn fields(causes: Vec<Cause>) -> Vec<String> {
        causes.into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn a_recorded_event_passes_both_apis() {
        assert!(validate_create(&recorded(), true).is_empty());
        assert!(validate_create(&recorded(), false).is_empty());
    }

    #[test]
    fn events_v1_needs_event_time_reporter_and_a_short_note() {
        let mut e = recorded();
        e["reportingComponent"] = json!("");
        e["reportingInstance"] = json!("");
        e["message"] = json!("x".repeat(1025));
        assert_eq!(
            fields(validate_create(&e, true)),
            [
                "reportingController",
                "reportingController",
                "reportingController",
                "reportingInstance",
                "message"
            ]
        );
        let mut e = recorded();
        e.as_object_mut().unwrap().remove("eventTime");
        assert_eq!(fields(validate_create(&e, true)), ["eventTime"]);
        assert!(
            validate_create(&e, false).is_empty(),
            "core/v1 events may omit it"
        );
    }

    #[test]
    fn events_v1_updates_may_change_the_series_only() {
        let old = recorded();
        let mut new = recorded();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-12-05T10:00:01.000000Z"});
        assert!(validate_update(&new, &old, true).is_empty());
        new["message"] = json!("changed");
        new["series"]["count"] = json!(1);
        assert_eq!(
            fields(validate_update(&new, &old, true)),
            ["series.count", "message"]
        );
        assert!(validate_update(&new, &old, false).is_empty());
    }
}
