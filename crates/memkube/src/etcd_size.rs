//! The size limits of the storage under a real API server, pure: an object is written to etcd
//! as one transaction, which must fit two limits.
//!
//! * etcd refuses a raft request over `--max-request-bytes` (1,572,864 by default):
//!   `etcdserver: request is too large`. The request holds the key twice (create) or three
//!   times (update: the comparison, the put, and the get run when the comparison fails), the
//!   value, and some framing; with a 48-byte key the largest value that can be created is
//!   1,572,728 bytes and the largest that can be updated 1,572,674 bytes, as measured.
//! * the API server's gRPC client refuses to send a message over 2,097,152 bytes:
//!   `rpc error: code = ResourceExhausted desc = trying to send message larger than max`.
//!
//! The key is `/registry/<prefix>/<namespace>/<name>` (the prefix is the group and resource
//! for custom resources, the resource alone for most built-ins); the value of a custom resource
//! is its JSON without `resourceVersion`, plus a newline. The sizes below are the protobuf
//! encodings of etcd's `InternalRaftRequest` and `TxnRequest` for those writes.

use serde_json::Value;

use crate::error::ApiError;
use crate::resource::ResourceType;

/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1_572_864;

/// The largest gRPC message the API server sends to etcd.
pub const MAX_SEND_MESSAGE_BYTES: usize = 2_097_152;

/// The request header's id is a 64-bit number with its high bits set (10 bytes as a varint).
const HEADER_ID_LEN: usize = 10;

/// The etcd transaction a write becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    /// POST: put if the key does not exist.
    Create,
    /// Everything else (PUT, PATCH, server-side apply, also when it creates): put if the key's
    /// modification revision is still this one, else get it.
    Update {
        /// The object's resourceVersion (0 when apply creates it).
        mod_revision: u64,
    },
}

/// The etcd key of an object.
pub fn key(ty: &ResourceType, ns: Option<&str>, name: &str) -> String {
    let prefix = match (ty.group.as_str(), ty.plural.as_str()) {
        ("", "services") => "services/specs".to_string(),
        ("", "endpoints") => "services/endpoints".to_string(),
        ("", "nodes") => "minions".to_string(),
        ("" | "apps" | "coordination.k8s.io" | "discovery.k8s.io" | "events.k8s.io", plural) => {
            plural.to_string()
        }
        (group, plural) => format!("{group}/{plural}"),
    };
    match ns {
        Some(ns) if ty.namespaced => format!("/registry/{prefix}/{ns}/{name}"),
        _ => format!("/registry/{prefix}/{name}"),
    }
}

/// Counts bytes written, to size JSON without building it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of the stored value: compact JSON without `metadata.resourceVersion`, and the
/// newline the API server's encoder ends it with.
pub fn value_len(obj: &Value) -> usize {
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, obj);
    let meta = obj.get("metadata").and_then(Value::as_object);
    let rv = meta.and_then(|m| m.get("resourceVersion")?.as_str());
    // `"resourceVersion":"N"`, and the comma separating it from a neighbour if it has one
    let rv_len = rv.map_or(0, |rv| {
        let comma = usize::from(meta.is_some_and(|m| m.len() > 1));
        "\"resourceVersion\":\"\"".len() + rv.len() + comma
    });
    counter.0 - rv_len + 1
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A length-delimited field with a one-byte tag: tag, length, payload.
fn field(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// The encoded `TxnRequest` (what the gRPC client sends).
pub fn txn_len(key_len: usize, value_len: usize, txn: Txn) -> usize {
    let mod_revision = match txn {
        Txn::Create => 0,
        Txn::Update { mod_revision } => mod_revision,
    };
    // target MOD (2 bytes), key, mod_revision (always encoded: it is a oneof)
    let compare = 2 + field(key_len) + 1 + varint_len(mod_revision);
    let put = field(key_len) + field(value_len);
    let success = field(field(put));
    let failure = match txn {
        Txn::Create => 0,
        Txn::Update { .. } => field(field(field(key_len))),
    };
    field(compare) + success + failure
}

/// The encoded `InternalRaftRequest` etcd checks against `--max-request-bytes`.
pub fn raft_request_len(key_len: usize, value_len: usize, txn: Txn) -> usize {
    let header = 1 + HEADER_ID_LEN;
    // the header is field 100: a two-byte tag
    let header_field = 2 + varint_len(header as u64) + header;
    field(txn_len(key_len, value_len, txn)) + header_field
}

/// Whether an object can be written with this transaction; the error is what the API server
/// answers when it cannot.
pub fn check(key: &str, obj: &Value, txn: Txn) -> Result<(), ApiError> {
    let value = value_len(obj);
    let sent = txn_len(key.len(), value, txn);
    if sent > MAX_SEND_MESSAGE_BYTES {
        return Err(ApiError::Plain {
            code: 500,
            message: format!(
                "rpc error: code = ResourceExhausted desc = trying to send message larger than \
                 max ({sent} vs. {MAX_SEND_MESSAGE_BYTES})"
            ),
        });
    }
    if raft_request_len(key.len(), value, txn) > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    Ok(())
}

/// etcd's refusal of a request over its limit.
pub fn too_large() -> ApiError {
    ApiError::Plain {
        code: 500,
        message: "etcdserver: request is too large".into(),
    }
}

/// Whether an error is one the API server retries without `managedFields` (both size limits).
pub fn is_too_large(err: &ApiError) -> bool {
    match err {
        ApiError::Plain { code: 500, message } => {
            message == "etcdserver: request is too large"
                || message.contains("trying to send message larger than max")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The largest value that fits a transaction, by search.
    fn largest_value(key_len: usize, txn: Txn) -> usize {
        let fits = |v| raft_request_len(key_len, v, txn) <= MAX_REQUEST_BYTES;
        let (mut lo, mut hi) = (0, MAX_REQUEST_BYTES);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        lo
    }

    #[test]
    fn the_measured_limits_for_a_48_byte_key() {
        assert_eq!(largest_value(48, Txn::Create), 1_572_728);
        assert_eq!(
            largest_value(48, Txn::Update { mod_revision: 100 }),
            1_572_674
        );
        // a revision needing two varint bytes costs one byte more
        assert_eq!(
            largest_value(48, Txn::Update { mod_revision: 1000 }),
            1_572_673
        );
    }

    #[test]
    fn keys_follow_the_registry_layout() {
        let builtins = crate::builtin::builtin_types();
        let by_plural = |p: &str| builtins.iter().find(|t| t.plural == p).unwrap().clone();
        assert_eq!(
            key(&by_plural("configmaps"), Some("default"), "a"),
            "/registry/configmaps/default/a"
        );
        assert_eq!(
            key(&by_plural("services"), Some("ns"), "s"),
            "/registry/services/specs/ns/s"
        );
        assert_eq!(
            key(&by_plural("namespaces"), None, "x"),
            "/registry/namespaces/x"
        );
        let mut cr = by_plural("configmaps");
        cr.group = "net.isthmus.io".into();
        cr.plural = "natmappings".into();
        assert_eq!(
            key(&cr, Some("isthmus"), "b"),
            "/registry/net.isthmus.io/natmappings/isthmus/b"
        );
    }

    #[test]
    fn stored_value_omits_the_resource_version_and_ends_with_a_newline() {
        let with = json!({"metadata": {"name": "a", "resourceVersion": "12"}, "x": 1});
        let without = json!({"metadata": {"name": "a"}, "x": 1});
        let expected = serde_json::to_vec(&without).unwrap().len() + 1;
        assert_eq!(value_len(&with), expected);
        assert_eq!(value_len(&without), expected);
    }

    #[test]
    fn oversized_objects_fail_with_the_api_server_messages() {
        let big = |n: usize| json!({"metadata": {"name": "a"}, "data": {"k": "x".repeat(n)}});
        assert!(check("/registry/configmaps/default/a", &big(1_000), Txn::Create).is_ok());
        let err = check(
            "/registry/configmaps/default/a",
            &big(1_600_000),
            Txn::Create,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "etcdserver: request is too large");
        assert!(is_too_large(&err));
        let err = check(
            "/registry/configmaps/default/a",
            &big(2_200_000),
            Txn::Create,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rpc error: code = ResourceExhausted")
        );
        assert!(is_too_large(&err));
    }
}
