//! Numbers as the API server stores them (pure): it decodes JSON numbers into Go values and
//! encodes them again, and Go writes a float with no fractional part (below 1e21) as an integer,
//! so `2.0` is stored, and read back, as `2` — which a client decoding into an integer type
//! needs.

use serde_json::{Number, Value};

/// Rewrites every integral float in `value` as an integer.
pub fn normalize(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(int) = n.as_f64().and_then(integral) {
                *n = int;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(map) => map.values_mut().for_each(normalize),
        _ => {}
    }
}

fn integral(f: f64) -> Option<Number> {
    if f.fract() != 0.0 || f.abs() >= 1e21 {
        return None;
    }
    if f >= 0.0 && f <= u64::MAX as f64 {
        Some(Number::from(f as u64))
    } else if f < 0.0 && f >= i64::MIN as f64 {
        Some(Number::from(f as i64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut v: Value = serde_json::from_str(
            r#"{"a": 2.0, "b": [1.5, -3.0, 0.0], "c": {"d": 1e3}, "e": 7, "f": "2.0"}"#,
        )
        .unwrap();
        normalize(&mut v);
        assert_eq!(
            v,
            json!({"a": 2, "b": [1.5, -3, 0], "c": {"d": 1000}, "e": 7, "f": "2.0"})
        );
        assert!(v["a"].is_u64() && v["b"][1].is_i64());
    }
}
