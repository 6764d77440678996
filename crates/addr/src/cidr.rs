//! [`Cidr`]: a canonical IPv4 network (no host bits set), its parsing, serde form and the
//! address arithmetic the IPAM and the datapath need (containment, overlap, 1:1 remapping).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid isthmus CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("empty CIDR")]
    Empty,
    #[error("{0:?} is not a CIDR (expected a.b.c.d/len)")]
    Syntax(String),
    #[error("{0:?} is an IPv6 network: isthmus supports IPv4 only")]
    Ipv6(String),
    #[error("{0:?}: prefix length must be 0..=32")]
    PrefixLength(String),
    #[error("{given:?} has host bits set; did you mean {canonical}?")]
    HostBits { given: String, canonical: Cidr },
}

/// A canonical IPv4 network: `addr/len` with every host bit of `addr` zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    base: u32,
    len: u8,
}

impl Cidr {
    /// Builds a CIDR from a network address and a prefix length, rejecting host bits.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, CidrError> {
        if len > 32 {
            return Err(CidrError::PrefixLength(format!("{addr}/{len}")));
        }
        let base = u32::from(addr);
        let canonical = Cidr {
            base: base & mask(len),
            len,
        };
        if canonical.base != base {
            return Err(CidrError::HostBits {
                given: format!("{addr}/{len}"),
                canonical,
            });
        }
        Ok(canonical)
    }

    /// The network of prefix length `len` that contains `addr` (host bits cleared).
    pub fn containing(addr: Ipv4Addr, len: u8) -> Result<Self, CidrError> {
        if len > 32 {
            return Err(CidrError::PrefixLength(format!("{addr}/{len}")));
        }
        Ok(Cidr {
            base: u32::from(addr) & mask(len),
            len,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The first address, as an integer.
    pub fn first_u32(&self) -> u32 {
        self.base
    }

    /// The last address (broadcast), as an integer.
    pub fn last_u32(&self) -> u32 {
        self.base | !mask(self.len)
    }

    /// The last address (broadcast).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last_u32())
    }

    /// How many addresses the network holds (2^(32-len)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` lies inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.base
    }

    /// Whether the two networks share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first_u32() <= other.last_u32() && other.first_u32() <= self.last_u32()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.len <= other.len && self.contains(other.network())
    }

    /// The reference thesis's `MapIPToNetwork`: keep the host bits of `ip`, take the network bits of `self`.
    pub fn map_ip(&self, ip: Ipv4Addr) -> Ipv4Addr {
        let m = mask(self.len);
        Ipv4Addr::from(self.base | (u32::from(ip) & !m))
    }

    /// The `index`-th address of the network, if the network is that large.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.base + index as u32))
    }
}

/// The netmask of a prefix length, as an integer.
pub(crate) fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.to_owned()))?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
        let IpAddr::V4(addr) = addr else {
            return Err(CidrError::Ipv6(s.to_owned()));
        };
        let len: u8 = len
            .parse()
            .map_err(|_| CidrError::PrefixLength(s.to_owned()))?;
        Cidr::new(addr, len).map_err(|e| match e {
            CidrError::HostBits { canonical, .. } => CidrError::HostBits {
                given: s.to_owned(),
                canonical,
            },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for an optional CIDR that also accepts Liqo's string `"None"` (and `""`) as
/// absent, for compatibility with the reference thesis's resources. Absent values are written as absent.
pub mod none_as_absent {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Cidr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(c) => s.collect_str(c),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cidr>, D::Error> {
        let s = Option::<Cow<str>>::deserialize(d)?;
        match s.as_deref().map(str::trim) {
            None | Some("") | Some("None") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// Pattern of a dotted-quad IPv4 CIDR, for the OpenAPI schema (canonical form is checked in code).
pub const CIDR_PATTERN: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$";

impl schemars::JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IPv4 network in CIDR notation with no host bits set, e.g. 10.0.0.0/16.",
            "pattern": CIDR_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_canonical_networks() {
        assert_eq!(c("10.0.0.0/24").to_string(), "10.0.0.0/24");
        assert_eq!(c(" 0.0.0.0/0 ").size(), 1 << 32);
        assert_eq!(
            c("192.168.1.7/32").broadcast(),
            Ipv4Addr::new(192, 168, 1, 7)
        );
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Empty));
        assert!(matches!(
            "10.0.0.0".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.300/8".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixLength(_))
        ));
        assert!(matches!(
            "fd00::/64".parse::<Cidr>(),
            Err(CidrError::Ipv6(_))
        ));
        let err = "10.0.0.5/24".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.0.0.5/24\" has host bits set; did you mean 10.0.0.0/24?"
        );
    }

    #[test]
    fn maps_ip_to_network_keeping_host_bits() {
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(
            c("192.168.3.0/24").map_ip(ip),
            Ipv4Addr::new(192, 168, 3, 5)
        );
        assert_eq!(
            c("172.16.0.0/12")
                .map_ip(Ipv4Addr::new(10, 1, 2, 3))
                .to_string(),
            "172.17.2.3"
        );
    }

    #[test]
    fn overlap_and_cover() {
        assert!(c("10.0.0.0/8").overlaps(&c("10.5.0.0/16")));
        assert!(!c("10.0.0.0/24").overlaps(&c("10.0.1.0/24")));
        assert!(c("10.0.0.0/8").covers(&c("10.5.0.0/16")));
        assert!(!c("10.5.0.0/16").covers(&c("10.0.0.0/8")));
    }

    #[test]
    fn serde_round_trip_and_none_compat() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(
                default,
                with = "none_as_absent",
                skip_serializing_if = "Option::is_none"
            )]
            nat: Option<Cidr>,
        }
        let none: S = serde_json::from_str(r#"{"nat":"None"}"#).unwrap();
        assert_eq!(none, S { nat: None });
        let some: S = serde_json::from_str(r#"{"nat":"10.1.0.0/16"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"nat":"10.1.0.0/16"}"#
        );
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
        assert!(serde_json::from_str::<S>(r#"{"nat":"10.1.0.1/16"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn map_ip_lands_in_target_and_is_reversible(ip: u32, a: u32, b: u32, len in 0u8..=32) {
            let from = Cidr::containing(Ipv4Addr::from(a), len).unwrap();
            let to = Cidr::containing(Ipv4Addr::from(b), len).unwrap();
            let inside = from.map_ip(Ipv4Addr::from(ip));
            let mapped = to.map_ip(inside);
            proptest::prop_assert!(to.contains(mapped));
            proptest::prop_assert_eq!(from.map_ip(mapped), inside);
        }
    }
}
