//! Object-metadata rules (pure): name validation, generated names, uids, timestamps, and the
//! comparisons the write path needs (did the spec change? is this write a no-op?).

use serde_json::{Map, Value};

/// Kubernetes timestamp format (RFC 3339, second precision, UTC).
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A random RFC 4122 version-4 UUID string.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `generateName` plus five random characters from the API server's alphabet.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Checks a DNS-1123 subdomain (the rule for most object names); returns the problem if any.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name or generateName is required".into());
    }
    if name.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (got {name:?})"
        ));
    }
    Ok(())
}

/// The object's `metadata` map, created if missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    let list = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// The uids in `metadata.ownerReferences`.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    refs.into_iter()
        .flatten()
        .filter_map(|r| r.get("uid")?.as_str().map(String::from))
        .collect()
}

/// Everything except `apiVersion`, `kind`, `metadata` and `status`: what `generation` tracks.
pub fn spec_part(obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    for k in ["apiVersion", "kind", "metadata", "status"] {
        map.remove(k);
    }
    map
}

/// The object without server-maintained bookkeeping (`resourceVersion`, `managedFields`), used to
/// detect no-op writes, which keep the old resourceVersion and emit no event.
pub fn comparable(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    obj
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn uid_looks_like_uuid_v4() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.as_bytes()[14], b'4');
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn generated_names_have_prefix_and_five_chars() {
        let name = generated_name("peer-");
        assert!(name.starts_with("peer-") && name.len() == 10);
        assert!(validate_name(&name).is_ok());
    }

    #[test]
    fn names_are_dns_subdomains() {
        assert!(validate_name("a.b-c1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Upper").is_err());
        assert!(validate_name("-lead").is_err());
        assert!(validate_name("trail.").is_err());
        assert!(validate_name(&"a".repeat(254)).is_err());
    }

    #[test]
    fn spec_part_ignores_metadata_and_status() {
        let a =
            json!({"kind": "X", "metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"s": 1}});
        let b =
            json!({"kind": "X", "metadata": {"name": "b"}, "spec": {"x": 1}, "status": {"s": 2}});
        assert_eq!(spec_part(&a), spec_part(&b));
        let c = json!({"spec": {"x": 2}});
        assert_ne!(spec_part(&a), spec_part(&c));
    }

    #[test]
    fn comparable_drops_bookkeeping() {
        let a = json!({"metadata": {"resourceVersion": "1", "managedFields": [1]}, "x": 1});
        let b = json!({"metadata": {"resourceVersion": "2"}, "x": 1});
        assert_eq!(comparable(&a), comparable(&b));
        assert_eq!(
            owner_uids(&json!({"metadata": {"ownerReferences": [{"uid": "u"}]}})),
            vec!["u"]
        );
    }
}
