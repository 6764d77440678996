//! `metadata` as the API server checks and normalizes it for every type (pure): label keys
//! and values, annotation keys and total size, finalizer names, ownerReferences, with the
//! apimachinery messages; and the normalization a round trip through `ObjectMeta` gives (empty
//! labels, annotations, finalizers and ownerReferences are dropped, as Go's `omitempty` does).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::Cause;

/// The most bytes all annotations (keys and values) may take together.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// apimachinery's `RegexError`: the message, examples and the expression.
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{re}')",
        examples.join(" or ")
    )
}

/// An expression matching whole strings.
fn anchored(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).expect("a constant expression")
}

static LABEL_KEY_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_KEY_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(&format!("({LABEL_KEY_FMT})?")));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push("must be no more than 253 bytes".into());
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// apimachinery's `IsQualifiedName` (a label key): the problems, none when valid.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            let re = regex_error(
                LABEL_KEY_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"],
            );
            return vec![format!(
                "a valid label key {re} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".into());
    }
    if !LABEL_KEY_RE.is_match(name) {
        let re = regex_error(
            LABEL_KEY_MSG,
            LABEL_KEY_FMT,
            &["MyName", "my.name", "123-abc"],
        );
        errs.push(format!("name part {re}"));
    }
    errs
}

fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 bytes".into());
    }
    if !LABEL_VALUE_RE.is_match(value) {
        let fmt = format!("({LABEL_KEY_FMT})?");
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            &fmt,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn invalid(field: &str, value: &Value, message: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        field: field.into(),
        message: format!("Invalid value: {value}: {message}"),
    }
}

fn string_map(meta: &Map<String, Value>, key: &str) -> Vec<(String, String)> {
    let map = meta.get(key).and_then(Value::as_object);
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn check_labels(meta: &Map<String, Value>, causes: &mut Vec<Cause>) {
    for (k, v) in string_map(meta, "labels") {
        for msg in qualified_name(&k) {
            causes.push(invalid("metadata.labels", &Value::String(k.clone()), &msg));
        }
        for msg in label_value(&v) {
            causes.push(invalid("metadata.labels", &Value::String(v.clone()), &msg));
        }
    }
}

fn check_annotations(meta: &Map<String, Value>, causes: &mut Vec<Cause>) {
    let annotations = string_map(meta, "annotations");
    for (k, _) in &annotations {
        for msg in qualified_name(&k.to_lowercase()) {
            causes.push(invalid(
                "metadata.annotations",
                &Value::String(k.clone()),
                &msg,
            ));
        }
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            field: "metadata.annotations".into(),
            message: format!("Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        });
    }
}

fn check_finalizers(meta: &Map<String, Value>, causes: &mut Vec<Cause>) {
    let finalizers: Vec<String> = meta
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect();
    for f in &finalizers {
        for msg in qualified_name(f) {
            causes.push(invalid(
                "metadata.finalizers",
                &Value::String(f.clone()),
                &msg,
            ));
        }
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has("orphan") && has("foregroundDeletion") {
        let value = serde_json::to_value(&finalizers).unwrap_or_default();
        let msg = "finalizer orphan and foregroundDeletion cannot be both set";
        causes.push(invalid("metadata.finalizers", &value, msg));
    }
}

fn check_owner_references(meta: &Map<String, Value>, causes: &mut Vec<Cause>) {
    let refs = meta.get("ownerReferences").and_then(Value::as_array);
    let mut controller: Option<String> = None;
    for r in refs.into_iter().flatten() {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let version = text("apiVersion").rsplit('/').next().unwrap_or_default();
        for (field, empty, msg) in [
            (
                "apiVersion",
                version.is_empty(),
                "version must not be empty",
            ),
            ("kind", text("kind").is_empty(), "must not be empty"),
            ("name", text("name").is_empty(), "must not be empty"),
            ("uid", text("uid").is_empty(), "must not be empty"),
        ] {
            if empty {
                let value = Value::String(text(field).to_string());
                let path = format!("metadata.ownerReferences.{field}");
                causes.push(invalid(&path, &value, msg));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let this = format!("{}/{}", text("kind"), text("name"));
            match &controller {
                Some(first) => {
                    let msg = format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    );
                    let value = Value::Array(refs.cloned().unwrap_or_default());
                    causes.push(invalid("metadata.ownerReferences", &value, &msg));
                }
                None => controller = Some(this),
            }
        }
    }
}

/// The problems with an object's labels, annotations, finalizers and ownerReferences.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    check_labels(meta, &mut causes);
    check_annotations(meta, &mut causes);
    check_owner_references(meta, &mut causes);
    check_finalizers(meta, &mut causes);
    causes
}

/// Drops empty (or null) labels, annotations, finalizers and ownerReferences: the API server
/// never stores them.
pub fn normalize(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match meta.get(key) {
            Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qualified_names_follow_the_label_key_rules() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/App_1.x").is_empty());
        let errs = qualified_name("bad key!");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0],
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
             regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert!(qualified_name("Upper.Case/x")[0].starts_with("prefix part a lowercase RFC 1123"));
        assert!(qualified_name("a/b/c")[0].starts_with("a valid label key"));
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            ["name part must be no more than 63 bytes"]
        );
    }

    #[test]
    fn labels_annotations_finalizers_and_owners_are_checked() {
        let obj = json!({"metadata": {
            "labels": {"ok": "fine", "bad key": "v", "k": "bad value!"},
            "annotations": {"Example.com/Mixed": "ok", "no spaces allowed": "x"},
            "finalizers": ["example.com/f", "not a name"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "", "name": "a", "uid": "u"}],
        }});
        let fields: Vec<String> = validate(&obj).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels",
                "metadata.annotations",
                "metadata.ownerReferences.kind",
                "metadata.finalizers"
            ]
        );
        let causes = validate(&json!({"metadata": {"labels": {"k": "bad value!"}}}));
        assert!(
            causes[0]
                .message
                .starts_with("Invalid value: \"bad value!\": a valid label")
        );
        assert_eq!(causes[0].reason, "FieldValueInvalid");
    }

    #[test]
    fn oversized_annotations_and_two_controllers_are_refused() {
        let big = json!({"metadata": {"annotations": {"a": "x".repeat(262_144)}}});
        assert_eq!(validate(&big)[0].reason, "FieldValueTooLong");
        let owner = |n: &str| json!({"apiVersion": "v1", "kind": "K", "name": n, "uid": n, "controller": true});
        let two = json!({"metadata": {"ownerReferences": [owner("a"), owner("b")]}});
        assert!(
            validate(&two)[0]
                .message
                .contains("Only one reference can have Controller")
        );
    }

    #[test]
    fn empty_collections_are_dropped() {
        let mut obj = json!({"metadata": {"name": "a", "labels": {}, "finalizers": [], "annotations": null, "ownerReferences": [1]}});
        normalize(&mut obj);
        assert_eq!(
            obj,
            json!({"metadata": {"name": "a", "ownerReferences": [1]}})
        );
    }
}
