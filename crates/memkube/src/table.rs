//! Server-side printing (pure): `meta.k8s.io/v1` `Table`s as kubectl requests them, with a
//! Name column plus the CRD's `additionalPrinterColumns` (or Age when it has none).
//!
//! Printer-column JSONPath subset: `.a.b`, `.a[0].b`, `.a[*].b` (values joined by `,`) and
//! filters `.a[?(@.k=="v")].b`. `date` columns print as a relative age like `5m`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resource::{PrinterColumn, ResourceType};

/// What each row carries in `object` (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query value; anything unknown means the default.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn columns(ty: &ResourceType, version: &str) -> Vec<PrinterColumn> {
    let name = PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        json_path: ".metadata.name".into(),
        priority: 0,
    };
    let mut cols = vec![name];
    match ty.printer_columns.get(version).filter(|c| !c.is_empty()) {
        Some(custom) => cols.extend(custom.iter().cloned()),
        None => cols.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            json_path: ".metadata.creationTimestamp".into(),
            priority: 0,
        }),
    }
    cols
}

/// A Table of `objs` (already presented at `version`).
pub fn table(
    ty: &ResourceType,
    version: &str,
    objs: &[Value],
    include: IncludeObject,
    rv: Option<u64>,
    now: DateTime<Utc>,
) -> Value {
    let cols = columns(ty, version);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objs.iter().map(|o| row(&cols, o, include, now)).collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

fn row(cols: &[PrinterColumn], obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let cells: Vec<Value> = cols.iter().map(|c| cell(c, obj, now)).collect();
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = obj.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
    }
    row
}

fn cell(col: &PrinterColumn, obj: &Value, now: DateTime<Utc>) -> Value {
    let values = eval_path(obj, &col.json_path);
    let Some(first) = values.first() else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "date" => match first
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        {
            Some(t) => json!(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
            None => Value::Null,
        },
        "string" if values.len() > 1 => {
            let parts: Vec<String> = values.iter().map(plain).collect();
            json!(parts.join(","))
        }
        "string" => json!(plain(first)),
        _ => first.clone(),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One step of a parsed path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, Value),
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let (key, value) = filter.split_once("==")?;
                let value = serde_json::from_str(value.trim().replace('\'', "\"").as_str()).ok()?;
                Step::Filter(key.trim().to_string(), value)
            } else {
                Step::Index(inner.parse().ok()?)
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Evaluates a JSONPath (subset) and returns every matching value.
pub fn eval_path(obj: &Value, path: &str) -> Vec<Value> {
    let Some(steps) = parse_path(path) else {
        return Vec::new();
    };
    let mut current = vec![obj.clone()];
    for step in steps {
        current = current
            .iter()
            .flat_map(|v| -> Vec<Value> {
                match &step {
                    Step::Field(f) => v.get(f).cloned().into_iter().collect(),
                    Step::Index(i) => v.get(*i).cloned().into_iter().collect(),
                    Step::All => v.as_array().cloned().unwrap_or_default(),
                    Step::Filter(k, want) => {
                        let items = v.as_array().cloned().unwrap_or_default();
                        items
                            .into_iter()
                            .filter(|item| item.get(k) == Some(want))
                            .collect()
                    }
                }
            })
            .collect();
    }
    current
}

/// Relative age in the API server's style (`45s`, `3m20s`, `5h`, `2d3h`, `1y20d`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        with(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        with(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        with(d, "d", h % 24, "h")
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        with(d / 365, "y", d % 365, "d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let obj = json!({"status": {"conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "True"}],
                         "ips": ["1.1.1.1", "2.2.2.2"]}});
        assert_eq!(
            eval_path(&obj, ".status.conditions[1].type"),
            vec![json!("Ready")]
        );
        assert_eq!(
            eval_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(eval_path(&obj, ".status.ips[*]").len(), 2);
        assert!(eval_path(&obj, ".status.missing").is_empty());
        assert!(eval_path(&obj, "status[").is_empty());
    }

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 2 + 3600 * 3), "2d3h");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn table_uses_printer_columns_or_age() {
        let mut ty = crate::builtin::builtin_types().remove(2);
        let now = Utc::now();
        let created = crate::meta::timestamp(now - chrono::Duration::seconds(30));
        let obj =
            json!({"metadata": {"name": "s1", "creationTimestamp": created}, "spec": {"port": 7}});
        let t = table(
            &ty,
            "v1",
            std::slice::from_ref(&obj),
            IncludeObject::Metadata,
            Some(4),
            now,
        );
        assert_eq!(t["rows"][0]["cells"], json!(["s1", "30s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let port = PrinterColumn {
            name: "Port".into(),
            type_: "integer".into(),
            format: String::new(),
            description: String::new(),
            json_path: ".spec.port".into(),
            priority: 0,
        };
        ty.printer_columns.insert("v1".into(), vec![port]);
        let t = table(&ty, "v1", &[obj], IncludeObject::None, None, now);
        assert_eq!(t["rows"][0]["cells"], json!(["s1", 7]));
        assert_eq!(t["columnDefinitions"][1]["name"], "Port");
    }
}
