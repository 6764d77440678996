//! Kubernetes protobuf request bodies (pure), decoded only as far as the create-only endpoints
//! need: kubectl's typed clients post SelfSubjectAccessReview (`auth can-i`),
//! SelfSubjectRulesReview (`auth can-i --list`), SelfSubjectReview (`auth whoami`) and
//! TokenRequest (`create token`) as `application/vnd.kubernetes.protobuf`. The body is the
//! `k8s\0` magic and a `runtime.Unknown` whose `raw` is the object; the object's fields are
//! turned into the JSON the endpoints read, by the field numbers of `k8s.io/api`'s
//! `generated.proto`. Fields not listed here are skipped; responses are always JSON.

use serde_json::{Map, Value, json};

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Strings,
    Int,
    Msg(&'static [Field]),
}

/// (field number, JSON name, kind)
type Field = (u32, &'static str, Kind);

const META: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[(1, "path", Kind::Str), (2, "verb", Kind::Str)];
const ACCESS_SPEC: &[Field] = &[
    (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Kind::Str),
    (4, "groups", Kind::Strings),
    (6, "uid", Kind::Str),
];
const RULES_SPEC: &[Field] = &[(1, "namespace", Kind::Str)];
const BOUND_OBJECT: &[Field] = &[
    (1, "kind", Kind::Str),
    (2, "apiVersion", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
];
const TOKEN_REQUEST_SPEC: &[Field] = &[
    (1, "audiences", Kind::Strings),
    (3, "boundObjectRef", Kind::Msg(BOUND_OBJECT)),
    (4, "expirationSeconds", Kind::Int),
];
const TOKEN_REVIEW_SPEC: &[Field] = &[(1, "token", Kind::Str), (2, "audiences", Kind::Strings)];

/// The top-level fields of a kind: metadata (1) and, for kinds with one, spec (2).
fn object_fields(kind: &str) -> Option<&'static [Field]> {
    const ACCESS: &[Field] = &[
        (1, "metadata", Kind::Msg(META)),
        (2, "spec", Kind::Msg(ACCESS_SPEC)),
    ];
    const RULES: &[Field] = &[
        (1, "metadata", Kind::Msg(META)),
        (2, "spec", Kind::Msg(RULES_SPEC)),
    ];
    const TOKEN: &[Field] = &[
        (1, "metadata", Kind::Msg(META)),
        (2, "spec", Kind::Msg(TOKEN_REQUEST_SPEC)),
    ];
    const REVIEW: &[Field] = &[
        (1, "metadata", Kind::Msg(META)),
        (2, "spec", Kind::Msg(TOKEN_REVIEW_SPEC)),
    ];
    const META_ONLY: &[Field] = &[(1, "metadata", Kind::Msg(META))];
    Some(match kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => ACCESS,
        "SelfSubjectRulesReview" => RULES,
        "TokenRequest" => TOKEN,
        "TokenReview" => REVIEW,
        "SelfSubjectReview" => META_ONLY,
        _ => return None,
    })
}

/// One decoded wire value.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let (mut pos, mut out) = (0, Vec::new());
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = &buf[pos..end];
                pos = end;
                Wire::Bytes(bytes)
            }
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Wire::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, wire));
    }
    Ok(out)
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// Decodes a message by its field table into a JSON object.
fn message(buf: &[u8], schema: &'static [Field]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, wire) in fields(buf)? {
        let Some((_, name, kind)) = schema.iter().find(|f| f.0 == number) else {
            continue;
        };
        let name = (*name).to_string();
        match (kind, wire) {
            (Kind::Str, Wire::Bytes(b)) => {
                out.insert(name, Value::String(utf8(b)?));
            }
            (Kind::Strings, Wire::Bytes(b)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(Value::String(utf8(b)?));
                }
            }
            (Kind::Int, Wire::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (Kind::Msg(inner), Wire::Bytes(b)) => {
                out.insert(name, message(b, inner)?);
            }
            _ => {
                return Err(format!(
                    "field {number} ({name}) has an unexpected wire type"
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body holding a `kind` object into its JSON form.
pub fn decode(kind: &str, body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic")?;
    let (mut raw, mut sent_kind, mut encoding) = (None, String::new(), String::new());
    for (number, wire) in fields(envelope)? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                for (n, w) in fields(type_meta)? {
                    if let (2, Wire::Bytes(k)) = (n, w) {
                        sent_kind = utf8(k)?;
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = Some(bytes),
            (3, Wire::Bytes(e)) => encoding = utf8(e)?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(format!("content encoding {encoding:?} is not supported"));
    }
    if !sent_kind.is_empty() && sent_kind != kind {
        return Err(format!("expected a {kind}, got a {sent_kind}"));
    }
    let schema =
        object_fields(kind).ok_or_else(|| format!("protobuf is not supported for {kind}"))?;
    let mut object = message(raw.unwrap_or_default(), schema)?;
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(number: u32, wire: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut v = u64::from(number) << 3 | u64::from(wire);
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = key(number, 2);
        out.push(u8::try_from(payload.len()).unwrap());
        out.extend_from_slice(payload);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [
            bytes(1, b"authorization.k8s.io/v1"),
            bytes(2, kind.as_bytes()),
        ]
        .concat();
        [b"k8s\0".to_vec(), bytes(1, &type_meta), bytes(2, raw)].concat()
    }

    #[test]
    fn a_self_subject_access_review_decodes() {
        let attrs = [bytes(1, b"ns"), bytes(2, b"list"), bytes(5, b"secrets")].concat();
        let spec = bytes(1, &attrs);
        let raw = [bytes(1, &bytes(1, b"")), bytes(2, &spec)].concat();
        let value = decode(
            "SelfSubjectAccessReview",
            &envelope("SelfSubjectAccessReview", &raw),
        )
        .unwrap();
        assert_eq!(
            value["spec"]["resourceAttributes"],
            json!({"namespace": "ns", "verb": "list", "resource": "secrets"})
        );
    }

    #[test]
    fn token_requests_keep_numbers_and_lists() {
        let mut spec = [bytes(1, b"a"), bytes(1, b"b"), key(4, 0)].concat();
        spec.extend_from_slice(&[0xd8, 0x04]);
        let raw = bytes(2, &spec);
        let value = decode("TokenRequest", &envelope("TokenRequest", &raw)).unwrap();
        assert_eq!(
            value["spec"],
            json!({"audiences": ["a", "b"], "expirationSeconds": 600})
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(decode("TokenRequest", b"{}").is_err());
        assert!(decode("TokenRequest", &envelope("SelfSubjectReview", &[])).is_err());
        assert!(decode("TokenRequest", b"k8s\0\x12\x05ab").is_err());
        assert!(decode("Pod", &envelope("Pod", &[])).is_err());
    }
}
