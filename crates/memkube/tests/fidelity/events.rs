//! events.k8s.io/v1 Events: `eventTime`, `reportingController`, `reportingInstance` required,
//! a note of at most 1,024 characters; what kube's `Recorder` writes passes.

use http::Method;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource};
use serde_json::{Value, json};

use super::raw;
use crate::common::{Widget, widget};

fn event(note: &str) -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
        "eventTime": "2026-12-05T10:00:00.000000Z", "reason": "Synced", "action": "Reconcile",
        "type": "Normal", "note": note, "reportingController": "example.io/ctl",
        "reportingInstance": "ctl-0", "regarding": {"kind": "Widget", "name": "w"}})
}

async fn causes(client: &Client, path: &str, body: &Value) -> Vec<String> {
    let answer = raw::json(client, Method::POST, path, body).await;
    assert_eq!(answer.code, 422, "{}", answer.body);
    let causes = answer.body["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    causes
        .iter()
        .map(|c| c["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Missing eventTime, reportingController or reportingInstance, or a long note, is 422.
pub async fn events_v1_requires_the_reporting_fields(client: Client, ns: &str) {
    let path = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
    let regarding_ns = |mut e: Value| {
        e["regarding"]["namespace"] = json!(ns);
        e
    };
    for (field, shown) in [
        ("eventTime", "eventTime"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        let mut e = regarding_ns(event("ok"));
        e.as_object_mut().unwrap().remove(field);
        assert!(
            causes(&client, &path, &e).await.iter().any(|f| f == shown),
            "{field}"
        );
    }
    let long = regarding_ns(event(&"x".repeat(1025)));
    assert_eq!(causes(&client, &path, &long).await, ["message"]);
    let fine = regarding_ns(event(&"x".repeat(1024)));
    assert_eq!(
        raw::json(&client, Method::POST, &path, &fine).await.code,
        201
    );
}

/// kube's `Recorder` (create, then a merge patch of the series) passes.
pub async fn recorder_events_pass(client: Client, ns: &str) {
    let widgets: Api<Widget> = Api::namespaced(client.clone(), ns);
    let w = widgets
        .create(&Default::default(), &widget("w", 80))
        .await
        .unwrap();
    let reporter = Reporter {
        controller: "example.io/ctl".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let e = Event {
        type_: EventType::Warning,
        reason: "Failed".into(),
        note: Some("went wrong".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&e, &w.object_ref(&())).await.unwrap();
    recorder.publish(&e, &w.object_ref(&())).await.unwrap();
}
