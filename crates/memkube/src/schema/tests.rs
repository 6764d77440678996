//! Unit tests of schema validation, pruning and defaulting.

use serde_json::{Value, json};

use super::validate_object;
use crate::error::ApiError;
use crate::resource::ResourceType;

fn ty(schema: Value) -> ResourceType {
    let mut ty = crate::builtin::builtin_types().remove(0);
    ty.custom = true;
    ty.kind = "Thing".into();
    ty.schemas.insert("v1".into(), std::sync::Arc::new(schema));
    ty
}

fn spec_schema(spec: Value) -> ResourceType {
    ty(json!({"type": "object", "properties": {"spec": spec}}))
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec})
}

/// The (field, reason) pairs of a failed validation.
fn causes(ty: &ResourceType, mut o: Value) -> Vec<(String, String)> {
    match validate_object(ty, &mut o, false) {
        Ok(()) => Vec::new(),
        Err(ApiError::Invalid { causes, .. }) => {
            causes.into_iter().map(|c| (c.field, c.reason)).collect()
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

fn fields(ty: &ResourceType, o: Value) -> Vec<String> {
    let mut fields: Vec<String> = causes(ty, o).into_iter().map(|(f, _)| f).collect();
    fields.sort();
    fields
}

#[test]
fn types_are_checked() {
    let t = spec_schema(json!({"type": "object", "properties": {
        "i": {"type": "integer"}, "s": {"type": "string"}, "b": {"type": "boolean"},
        "n": {"type": "number"}, "a": {"type": "array"}, "o": {"type": "object"}}}));
    assert!(
        causes(
            &t,
            obj(json!({"i": 1, "s": "x", "b": true, "n": 1.5, "a": [], "o": {}}))
        )
        .is_empty()
    );
    assert_eq!(
        causes(&t, obj(json!({"i": 1.5}))),
        [("spec.i".to_string(), "FieldValueTypeInvalid".to_string())]
    );
    assert_eq!(
        fields(&t, obj(json!({"s": 1, "b": "true", "a": {}, "o": []}))),
        ["spec.a", "spec.b", "spec.o", "spec.s"]
    );
    assert!(
        causes(&t, obj(json!({"i": 2.0}))).is_empty(),
        "integral floats are integers"
    );
}

#[test]
fn required_enum_and_bounds() {
    let t = spec_schema(
        json!({"type": "object", "required": ["port"], "properties": {
        "port": {"type": "integer", "minimum": 1, "maximum": 10},
        "exclusive": {"type": "integer", "minimum": 0, "exclusiveMinimum": true},
        "mode": {"type": "string", "enum": ["A", "B"]},
        "name": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
        "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}}}}),
    );
    assert!(
        causes(
            &t,
            obj(json!({"port": 5, "mode": "A", "name": "ab", "list": ["x"]}))
        )
        .is_empty()
    );
    assert_eq!(
        causes(&t, obj(json!({}))),
        [("spec.port".to_string(), "FieldValueRequired".to_string())]
    );
    assert_eq!(fields(&t, obj(json!({"port": 11}))), ["spec.port"]);
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "exclusive": 0}))),
        ["spec.exclusive"]
    );
    assert_eq!(
        causes(&t, obj(json!({"port": 1, "mode": "C"})))[0].1,
        "FieldValueNotSupported"
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "name": "a"}))),
        ["spec.name"]
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "name": "abcd"}))),
        ["spec.name"]
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "name": "A1"}))),
        ["spec.name"]
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "list": []}))),
        ["spec.list"]
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "list": ["a", 2]}))),
        ["spec.list[1]"]
    );
    assert_eq!(
        fields(&t, obj(json!({"port": 1, "list": ["a", "b", "c"]}))),
        ["spec.list"]
    );
}

#[test]
fn unknown_fields_are_pruned_unless_preserved() {
    let t = spec_schema(json!({"type": "object", "properties": {
        "known": {"type": "string"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}}}}));
    let mut o = obj(json!({"known": "k", "extra": 1, "free": {"anything": [1]}, "map": {"a": 1}}));
    o["toplevel"] = json!(true);
    validate_object(&t, &mut o, false).unwrap();
    assert_eq!(
        o["spec"],
        json!({"known": "k", "free": {"anything": [1]}, "map": {"a": 1}})
    );
    assert!(o.get("toplevel").is_none());
    assert_eq!(o["metadata"]["name"], "t", "metadata is never pruned");
    assert_eq!(fields(&t, obj(json!({"map": {"a": "x"}}))), ["spec.map.a"]);
}

#[test]
fn defaults_fill_and_nulls_drop() {
    let t = spec_schema(json!({"type": "object", "properties": {
        "replicas": {"type": "integer", "default": 1},
        "opt": {"type": "string", "nullable": true},
        "plain": {"type": "string"}}}));
    let mut o = obj(json!({"opt": null, "plain": null}));
    validate_object(&t, &mut o, false).unwrap();
    assert_eq!(o["spec"], json!({"replicas": 1, "opt": null}));
}

#[test]
fn int_or_string_and_combinators() {
    let t = spec_schema(json!({"type": "object", "properties": {
        "ios": {"x-kubernetes-int-or-string": true},
        "any": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "one": {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        "not": {"not": {"type": "string"}}}}));
    assert!(
        causes(
            &t,
            obj(json!({"ios": 1, "any": "s", "one": {"a": 1}, "not": 3}))
        )
        .is_empty()
    );
    assert_eq!(fields(&t, obj(json!({"ios": true}))), ["spec.ios"]);
    assert_eq!(fields(&t, obj(json!({"any": true}))), ["spec.any"]);
    assert_eq!(
        fields(&t, obj(json!({"one": {"a": 1, "b": 2}}))),
        ["spec.one"]
    );
    assert_eq!(fields(&t, obj(json!({"not": "s"}))), ["spec.not"]);
}

#[test]
fn types_without_schema_pass_unchanged() {
    let mut t = spec_schema(json!({}));
    t.schemas.clear();
    let mut o = obj(json!({"anything": 1}));
    validate_object(&t, &mut o, false).unwrap();
    assert_eq!(o["spec"]["anything"], 1);
}

#[test]
fn strict_field_validation_rejects_unknown_fields() {
    let t = spec_schema(json!({"type": "object", "properties": {"known": {"type": "string"}}}));
    let mut o = obj(json!({"known": "k", "extra": 1}));
    match validate_object(&t, &mut o, true) {
        Err(ApiError::BadRequest(msg)) => {
            assert!(msg.contains("unknown field \"spec.extra\""), "{msg}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut fine = obj(json!({"known": "k"}));
    assert!(validate_object(&t, &mut fine, true).is_ok());
}
