//! [`ClusterId`]: the identity of a cluster, usable as a Kubernetes object name suffix and label
//! value (a DNS-1123 label: 1-63 of `a-z0-9-`, starting and ending alphanumeric).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid cluster ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterIdError {
    #[error("empty cluster ID")]
    Empty,
    #[error("cluster ID {0:?} is longer than 63 characters")]
    TooLong(String),
    #[error(
        "cluster ID {0:?} must consist of lower-case letters, digits and '-', \
         and start and end with a letter or digit"
    )]
    Charset(String),
}

/// A validated cluster ID. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(Arc<str>);

/// Pattern of a cluster ID, for the OpenAPI schema.
pub const CLUSTER_ID_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

impl ClusterId {
    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClusterId {
    type Err = ClusterIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ClusterIdError::Empty);
        }
        if s.len() > 63 {
            return Err(ClusterIdError::TooLong(s.to_owned()));
        }
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let body_ok = s.chars().all(|c| ok_char(c) || c == '-');
        let ends_ok = s.starts_with(ok_char) && s.ends_with(ok_char);
        if !(body_ok && ends_ok) {
            return Err(ClusterIdError::Charset(s.to_owned()));
        }
        Ok(ClusterId(Arc::from(s)))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ClusterId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ClusterId {
    fn schema_name() -> Cow<'static, str> {
        "ClusterId".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A cluster ID: a DNS-1123 label (lower-case alphanumerics and '-').",
            "pattern": CLUSTER_ID_PATTERN,
            "maxLength": 63,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_uuids() {
        for ok in ["a", "cluster-1", "3f1c2d9e-4b5a-4e7f-9a0b-1c2d3e4f5a6b"] {
            assert_eq!(ok.parse::<ClusterId>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_the_rest() {
        assert_eq!("".parse::<ClusterId>(), Err(ClusterIdError::Empty));
        for bad in ["-a", "a-", "A", "a_b", "a b", "a.b"] {
            assert!(
                matches!(bad.parse::<ClusterId>(), Err(ClusterIdError::Charset(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "a".repeat(64).parse::<ClusterId>(),
            Err(ClusterIdError::TooLong(_))
        ));
    }
}
