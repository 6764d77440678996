//! OpenAPI schemas for the Kubernetes types our CRDs embed (`Condition`, `Time`), written here so
//! that `k8s-openapi` is built without its `schemars` feature (which doubles its compile time).
//! The fields are used only through `#[schemars(with = …)]`; they describe exactly what
//! `k8s-openapi`'s own types serialize to.

#![allow(dead_code)]

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// A point in time: an RFC 3339 string, as `metav1.Time` serializes.
pub struct Time;

impl JsonSchema for Time {
    fn schema_name() -> Cow<'static, str> {
        "Time".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// An optional 64-bit integer field that is neither required nor nullable nor defaulted (no
/// `Serialize`, so the schema carries no default value).
#[derive(Default)]
pub struct Int64;

impl JsonSchema for Int64 {
    fn schema_name() -> Cow<'static, str> {
        "int64".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "format": "int64" })
    }
}

/// Condition contains details for one aspect of the current state of this API Resource.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[schemars(
        description = "lastTransitionTime is the last time the condition transitioned \
        from one status to another. This should be when the underlying condition changed.  If \
        that is not known, then using the time when the API field changed is acceptable."
    )]
    last_transition_time: Time,
    #[schemars(
        description = "message is a human readable message indicating details about \
        the transition. This may be an empty string."
    )]
    message: String,
    #[schemars(
        description = "observedGeneration represents the .metadata.generation that the \
        condition was set based upon. For instance, if .metadata.generation is currently 12, but \
        the .status.conditions[x].observedGeneration is 9, the condition is out of date with \
        respect to the current state of the instance."
    )]
    #[serde(default)]
    observed_generation: Int64,
    #[schemars(
        description = "reason contains a programmatic identifier indicating the reason \
        for the condition's last transition. Producers of specific condition types may define \
        expected values and meanings for this field, and whether the values are considered a \
        guaranteed API. The value should be a CamelCase string. This field may not be empty."
    )]
    reason: String,
    #[schemars(description = "status of the condition, one of True, False, Unknown.")]
    status: String,
    #[schemars(description = "type of condition in CamelCase or in foo.example.com/CamelCase.")]
    #[serde(rename = "type")]
    type_: String,
}
