//! Validation, pruning and defaulting of custom resources against their CRD's OpenAPI v3 schema
//! (pure). Checked: `type` (object, array, string, integer, number, boolean), `nullable`,
//! `required`, `enum`, `pattern`, `minLength`/`maxLength`, `minimum`/`maximum` (with the
//! boolean `exclusiveMinimum`/`exclusiveMaximum`), `minItems`/`maxItems`,
//! `minProperties`/`maxProperties`, `items`, `properties`, `additionalProperties` (schema form),
//! `allOf`/`anyOf`/`oneOf`/`not`, `x-kubernetes-int-or-string`,
//! `x-kubernetes-preserve-unknown-fields`. Unknown fields are pruned and `null` values of
//! non-nullable fields dropped, as the API server does (with `fieldValidation=Strict` unknown
//! fields are a 400 BadRequest instead); `default` values fill missing properties; string
//! `format`s as the API server checks them (see `format`). Not checked: `multipleOf`, `uniqueItems`, list-type/map-keys,
//! CEL `x-kubernetes-validations`, and the schema of `metadata`.

mod declared;
mod format;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value};

pub use declared::undeclared_fields;

use crate::error::{ApiError, Cause, Subject};
use crate::resource::ResourceType;

/// Validates a custom resource (in place: pruning and defaulting) against the schema of its
/// preferred version; built-in types and CRDs without a schema pass unchanged. With `strict`
/// (`fieldValidation=Strict`) unknown fields are a 400 instead of being pruned.
pub fn validate_object(ty: &ResourceType, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    let Some(schema) = ty.schemas.get(ty.preferred_version()) else {
        return Ok(());
    };
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    let kept: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let mut causes = Vec::new();
    check(schema, obj, "", &mut causes, true);
    let map = obj.as_object_mut().expect("still an object");
    for (k, v) in kept {
        map.insert(k, v);
    }
    let (unknown, causes): (Vec<Cause>, Vec<Cause>) =
        causes.into_iter().partition(|c| c.reason == UNKNOWN_FIELD);
    if strict && !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|c| format!("unknown field \"{}\"", c.field))
            .collect();
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            ty.kind,
            ty.preferred_version(),
            ty.kind,
            fields.join(", ")
        )));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = crate::meta::meta_str(obj, "name")
        .unwrap_or_default()
        .to_string();
    let subject = Subject {
        group: ty.group.clone(),
        kind: ty.kind.clone(),
        name,
    };
    Err(ApiError::Invalid { subject, causes })
}

/// Internal cause reason for a pruned field (an error only with `fieldValidation=Strict`).
const UNKNOWN_FIELD: &str = "UnknownField";

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn cause(causes: &mut Vec<Cause>, reason: &str, path: &str, message: String) {
    causes.push(Cause {
        reason: reason.into(),
        field: path.into(),
        message,
    });
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
    }
}

/// Validates `value` at `path`, pruning and defaulting when `prune` (not inside `anyOf` etc.).
fn check(schema: &Value, value: &mut Value, path: &str, causes: &mut Vec<Cause>, prune: bool) {
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            cause(causes, "FieldValueRequired", path, "Required value".into());
        }
        return;
    }
    let expected = if flag(schema, "x-kubernetes-int-or-string") {
        Some("integer or string")
    } else {
        schema.get("type").and_then(Value::as_str)
    };
    let type_ok = |ty: &str| match ty {
        "integer or string" => value.is_string() || type_matches("integer", value),
        ty => type_matches(ty, value),
    };
    if let Some(ty) = expected.filter(|ty| !type_ok(ty)) {
        let msg = format!("Invalid value: {value}: {path} in body must be of type {ty}");
        cause(causes, "FieldValueTypeInvalid", path, msg);
        return;
    }
    check_enum(schema, value, path, causes);
    check_format(schema, value, path, causes);
    check_scalar_bounds(schema, value, path, causes);
    check_combinators(schema, value, path, causes);
    match value {
        Value::Object(map) => check_object(schema, map, path, causes, prune),
        Value::Array(items) => check_array(schema, items, path, causes, prune),
        _ => {}
    }
}

fn check_enum(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.contains(value) {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        let msg = format!(
            "Unsupported value: {value}: supported values: {}",
            list.join(", ")
        );
        cause(causes, "FieldValueNotSupported", path, msg);
    }
}

fn check_format(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let (Some(format), Some(s)) = (schema.get("format").and_then(Value::as_str), value.as_str())
    else {
        return;
    };
    if !format::valid(format, s) {
        let msg =
            format!("Invalid value: {value}: {path} in body must be of type {format}: {value}");
        cause(causes, "FieldValueTypeInvalid", path, msg);
    }
}

fn check_scalar_bounds(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut invalid = |msg: String| {
        cause(
            causes,
            "FieldValueInvalid",
            path,
            format!("Invalid value: {value}: {path} in body {msg}"),
        )
    };
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| len < *m)
        {
            invalid(format!("should be at least {min} chars long"));
        }
        if let Some(max) = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|m| len > *m)
        {
            invalid(format!("may not be more than {max} characters"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match compiled(pattern) {
                Some(re) if !re.is_match(s) => invalid(format!("should match '{pattern}'")),
                Some(_) => {}
                None => invalid(format!("cannot be checked: invalid pattern '{pattern}'")),
            }
        }
    }
    if let Some(n) = value.as_f64().filter(|_| value.is_number()) {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                invalid(format!("should be {op} {}", schema["minimum"]));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                invalid(format!("should be {op} {}", schema["maximum"]));
            }
        }
    }
}

fn check_combinators(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let passes = |s: &Value| {
        let mut scratch = Vec::new();
        check(s, &mut value.clone(), path, &mut scratch, false);
        scratch.is_empty()
    };
    let list = |k: &str| {
        schema
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for sub in list("allOf") {
        check(&sub, &mut value.clone(), path, causes, false);
    }
    let any = list("anyOf");
    if !any.is_empty() && !any.iter().any(passes) {
        cause(
            causes,
            "FieldValueInvalid",
            path,
            format!(
                "Invalid value: {value}: {path} in body must match at least one schema (anyOf)"
            ),
        );
    }
    let one = list("oneOf");
    if !one.is_empty() && one.iter().filter(|s| passes(s)).count() != 1 {
        cause(
            causes,
            "FieldValueInvalid",
            path,
            format!("Invalid value: {value}: {path} in body must match exactly one schema (oneOf)"),
        );
    }
    if schema.get("not").is_some_and(passes) {
        cause(
            causes,
            "FieldValueInvalid",
            path,
            format!("Invalid value: {value}: {path} in body must not match the schema (not)"),
        );
    }
}

fn check_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    causes: &mut Vec<Cause>,
    prune: bool,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    if prune {
        for (k, prop) in props.into_iter().flatten() {
            if let Some(default) = prop.get("default").filter(|_| !map.contains_key(k)) {
                map.insert(k.clone(), default.clone());
            }
        }
    }
    check_properties(schema, map, path, causes, prune);
    let required = schema.get("required").and_then(Value::as_array);
    for k in required.into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(k) {
            cause(
                causes,
                "FieldValueRequired",
                &join(path, k),
                "Required value".into(),
            );
        }
    }
    let n = map.len() as u64;
    let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
    if let Some(min) = bound("minProperties").filter(|m| n < *m) {
        let msg = format!("{path} in body should have at least {min} properties");
        cause(causes, "FieldValueInvalid", path, msg);
    }
    if let Some(max) = bound("maxProperties").filter(|m| n > *m) {
        let msg = format!("{path} in body should have at most {max} properties");
        cause(causes, "FieldValueInvalid", path, msg);
    }
}

/// Checks each present property against `properties`/`additionalProperties`, pruning unknown
/// fields and nulls of non-nullable fields.
fn check_properties(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    causes: &mut Vec<Cause>,
    prune: bool,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let structural = props.is_some() || schema.get("type").is_some();
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        match props.and_then(|p| p.get(&k)).or(additional) {
            Some(sub) if prune && map[&k].is_null() && !flag(sub, "nullable") => {
                map.remove(&k);
            }
            Some(sub) => {
                let value = map.get_mut(&k).expect("key present");
                check(sub, value, &join(path, &k), causes, prune);
            }
            None if prune && !preserve && structural => {
                map.remove(&k);
                cause(
                    causes,
                    UNKNOWN_FIELD,
                    &join(path, &k),
                    "unknown field".into(),
                );
            }
            None => {}
        }
    }
}

fn check_array(
    schema: &Value,
    items: &mut [Value],
    path: &str,
    causes: &mut Vec<Cause>,
    prune: bool,
) {
    let n = items.len() as u64;
    if let Some(min) = schema
        .get("minItems")
        .and_then(Value::as_u64)
        .filter(|m| n < *m)
    {
        cause(
            causes,
            "FieldValueInvalid",
            path,
            format!("{path} in body should have at least {min} items"),
        );
    }
    if let Some(max) = schema
        .get("maxItems")
        .and_then(Value::as_u64)
        .filter(|m| n > *m)
    {
        cause(
            causes,
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        );
    }
    if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
        for (i, item) in items.iter_mut().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), causes, prune);
        }
    }
}

/// A schema `pattern`, compiled once: compiling `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$` costs
/// far more than matching it, and it was done for every string of every write. Shared as an
/// `Arc`: a cloned `Regex` starts with empty match caches of its own. The cache holds what the
/// installed CRDs declare; past 1,024 patterns it starts again (a bound, not an LRU).
fn compiled(pattern: &str) -> Option<Arc<regex::Regex>> {
    static CACHE: LazyLock<Mutex<HashMap<String, Option<Arc<regex::Regex>>>>> =
        LazyLock::new(Mutex::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(re) = cache.get(pattern) {
        return re.clone();
    }
    if cache.len() >= 1024 {
        cache.clear();
    }
    let re = regex::Regex::new(pattern).ok().map(Arc::new);
    cache.insert(pattern.to_string(), re.clone());
    re
}

#[cfg(test)]
mod tests;
