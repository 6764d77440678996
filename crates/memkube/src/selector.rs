//! Label and field selectors: parsing the query-string syntax and matching objects (pure).
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (absent),
//! comma-separated (AND). Fields: `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`
//! for custom resources; for built-in types a dotted path to a scalar (`involvedObject.name`,
//! `type`, `spec.nodeName`; `source` means `source.component`), once `field_labels` has
//! checked it is one the type's field set allows.

use std::collections::BTreeMap;

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_requirement(part: &str) -> Result<LabelReq, String> {
    let part = part.trim();
    let bad = || format!("unable to parse requirement: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(LabelReq::Absent(key.into()))
        } else {
            Err(bad())
        };
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(LabelReq::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().to_string();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return if valid_key(&key) {
            Ok(LabelReq::Exists(key))
        } else {
            Err(bad())
        };
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return parse_set(set)
            .map(|s| LabelReq::NotIn(key, s))
            .ok_or_else(bad);
    }
    if let Some(set) = rest.strip_prefix("in") {
        return parse_set(set).map(|s| LabelReq::In(key, s)).ok_or_else(bad);
    }
    Err(bad())
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let reqs = split_top_level(s).into_iter().map(parse_requirement);
        let reqs = reqs.collect::<Result<Vec<_>, _>>()?;
        if let Some(LabelReq::Eq(k, _) | LabelReq::NotEq(k, _)) = reqs
            .iter()
            .find(|r| matches!(r, LabelReq::Eq(k, _) | LabelReq::NotEq(k, _) if !valid_key(k)))
        {
            return Err(format!("invalid label key {k:?}"));
        }
        Ok(Self(reqs))
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            LabelReq::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::Absent(k) => !labels.contains_key(k),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.is_empty() || self.matches_labels(&labels_of(obj))
    }
}

/// `metadata.labels` as a map (non-string values are ignored).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    let Some(map) = obj.pointer("/metadata/labels").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// One field requirement: (JSON pointer, expected value, negated).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldReq {
    pointer: String,
    value: String,
    negated: bool,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldReq>);

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax. Unless `any_field`, only `metadata.name` and
    /// `metadata.namespace` are accepted (the rule for custom resources).
    pub fn parse(s: &str, any_field: bool) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: {part:?}; can't understand {part:?}"
                ));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace");
            let well_formed = !field.is_empty() && field.split('.').all(|s| !s.is_empty());
            if !(known || any_field && well_formed) {
                return Err(format!("field label not supported: {field}"));
            }
            // an Event's `source` selects by its component
            let pointer = match field {
                "source" => "/source/component".to_string(),
                _ => format!("/{}", field.replace('.', "/")),
            };
            reqs.push(FieldReq {
                pointer,
                value: value.trim().into(),
                negated,
            });
        }
        Ok(Self(reqs))
    }

    /// Whether the object satisfies every requirement (a missing field counts as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = match obj.pointer(&r.pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns1", "labels": labels}})
    }

    #[test]
    fn equality_and_inequality() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        assert!(LabelSelector::parse("app=web").unwrap().matches(&o));
        assert!(
            LabelSelector::parse("app==web,tier=front")
                .unwrap()
                .matches(&o)
        );
        assert!(!LabelSelector::parse("app=db").unwrap().matches(&o));
        assert!(LabelSelector::parse("app!=db").unwrap().matches(&o));
        assert!(LabelSelector::parse("missing!=x").unwrap().matches(&o));
    }

    #[test]
    fn set_based_and_existence() {
        let o = obj(json!({"app": "web"}));
        assert!(
            LabelSelector::parse("app in (db, web)")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !LabelSelector::parse("app notin (db,web)")
                .unwrap()
                .matches(&o)
        );
        assert!(
            LabelSelector::parse("tier notin (a),app")
                .unwrap()
                .matches(&o)
        );
        assert!(LabelSelector::parse("app,!tier").unwrap().matches(&o));
        assert!(!LabelSelector::parse("!app").unwrap().matches(&o));
        assert!(!LabelSelector::parse("tier").unwrap().matches(&o));
    }

    #[test]
    fn empty_matches_everything_and_garbage_is_rejected() {
        assert!(LabelSelector::parse("").unwrap().matches(&json!({})));
        assert!(LabelSelector::parse("app in db").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let o = obj(json!({}));
        assert!(
            FieldSelector::parse("metadata.name=a", false)
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("metadata.namespace==ns1", false)
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=a", false)
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.x=1", false).is_err());
        let event = json!({"involvedObject": {"name": "w1", "uid": "u"}, "count": 2});
        assert!(
            FieldSelector::parse("involvedObject.name=w1,count=2", true)
                .unwrap()
                .matches(&event)
        );
        assert!(
            !FieldSelector::parse("involvedObject.uid=x", true)
                .unwrap()
                .matches(&event)
        );
        assert!(FieldSelector::parse("a..b=1", true).is_err());
    }
}
