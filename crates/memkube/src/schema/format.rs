//! The string `format`s the API server validates in CRD schemas (pure), as kube-openapi's
//! default format registry checks them: `ipv4`, `ipv6`, `cidr`, `mac`, `uuid` (and `uuid3`,
//! `uuid4`, `uuid5`), `byte`, `date`, `date-time`. Formats the API server strips from CRD
//! schemas (`int32`, `int64`, `uint64`, anything unknown) validate nothing, as there; those
//! it supports that memkube does not check (`uri`, `email`, `hostname`, `duration`, ...) pass.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

static UUID: LazyLock<Regex> = LazyLock::new(|| uuid_re("[0-9a-f]"));
static UUID3: LazyLock<Regex> = LazyLock::new(|| uuid_re("3"));
static UUID4: LazyLock<Regex> = LazyLock::new(|| uuid_re("4"));
static UUID5: LazyLock<Regex> = LazyLock::new(|| uuid_re("5"));
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("constant expression"));
static LOCAL_DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?Z?$")
        .expect("constant expression")
});

/// A UUID pattern whose version digit matches `version`.
fn uuid_re(version: &str) -> Regex {
    let variant = if version == "[0-9a-f]" {
        "[0-9a-f]"
    } else {
        "[89ab]"
    };
    Regex::new(&format!(
        "(?i)^[0-9a-f]{{8}}-?[0-9a-f]{{4}}-?{version}[0-9a-f]{{3}}-?{variant}[0-9a-f]{{3}}-?[0-9a-f]{{12}}$"
    ))
    .expect("constant expression")
}

/// Whether `value` is valid in `format` (formats memkube does not check are valid).
pub fn valid(format: &str, value: &str) -> bool {
    let format = if format.contains('-') {
        std::borrow::Cow::Owned(format.replace('-', ""))
    } else {
        std::borrow::Cow::Borrowed(format)
    };
    match format.as_ref() {
        "ipv4" => {
            ipv4_sloppy(value).is_some()
                || (value.contains('.') && value.parse::<Ipv6Addr>().is_ok())
        }
        "ipv6" => value.contains(':') && value.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(value),
        "mac" => mac(value),
        "uuid" => UUID.is_match(value),
        "uuid3" => UUID3.is_match(value),
        "uuid4" => UUID4.is_match(value),
        "uuid5" => UUID5.is_match(value),
        "byte" => base64(value),
        "date" => {
            DATE.is_match(value) && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
        }
        "datetime" => date_time(value),
        _ => true,
    }
}

/// IPv4 as Go's sloppy parser reads it: four decimal parts of one to three digits, each at
/// most 255, leading zeros allowed.
fn ipv4_sloppy(value: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(parts) {
        let digits =
            !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit());
        *octet = part.parse::<u8>().ok().filter(|_| digits)?;
    }
    Some(Ipv4Addr::from(octets))
}

fn cidr(value: &str) -> bool {
    let Some((ip, prefix)) = value.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    if ipv4_sloppy(ip).is_some() {
        prefix <= 32
    } else {
        ip.parse::<Ipv6Addr>().is_ok() && prefix <= 128
    }
}

/// MAC addresses as Go's `net.ParseMAC` reads them: 6, 8 or 20 bytes, as hex pairs joined by
/// `:` or `-`, or hex quads joined by `.`.
fn mac(value: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let groups = |sep: char, width: usize| -> Option<usize> {
        let parts: Vec<&str> = value.split(sep).collect();
        parts
            .iter()
            .all(|p| hex(p, width))
            .then_some(parts.len() * width / 2)
    };
    let bytes = if value.contains('.') {
        groups('.', 4)
    } else if value.contains('-') {
        groups('-', 2)
    } else {
        groups(':', 2)
    };
    matches!(bytes, Some(6 | 8 | 20))
}

/// Standard base64 with padding.
fn base64(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    let padding = value.len() - body.len();
    value.len().is_multiple_of(4)
        && padding <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn date_time(value: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(value).is_ok() || LOCAL_DATE_TIME.is_match(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(valid("ipv4", "10.0.0.1") && valid("ipv4", "010.0.0.1"));
        assert!(
            !valid("ipv4", "not-an-ip") && !valid("ipv4", "10.0.0.256") && !valid("ipv4", "::1")
        );
        assert!(valid("ipv6", "fd00::1") && !valid("ipv6", "10.0.0.1"));
        assert!(valid("cidr", "10.0.0.0/8") && valid("cidr", "fd00::/64"));
        assert!(!valid("cidr", "10.0.0.0/33") && !valid("cidr", "10.0.0.0"));
        assert!(valid("mac", "00:00:5e:00:53:01") && valid("mac", "0000.5e00.5301"));
        assert!(!valid("mac", "00:00:5e:00:53"));
    }

    #[test]
    fn times_identifiers_and_bytes() {
        assert!(valid("date-time", "2026-12-05T10:00:00Z"));
        assert!(valid("date-time", "2026-12-05T10:00:00.123+01:00"));
        assert!(!valid("date-time", "yesterday"));
        assert!(valid("date", "2026-12-05") && !valid("date", "2026-13-05"));
        assert!(valid("uuid", "6f1c7e9a-0b1d-4c3e-9f8a-1b2c3d4e5f60"));
        assert!(!valid("uuid", "6f1c7e9a"));
        assert!(valid("uuid4", "6f1c7e9a-0b1d-4c3e-9f8a-1b2c3d4e5f60"));
        assert!(!valid("uuid3", "6f1c7e9a-0b1d-4c3e-9f8a-1b2c3d4e5f60"));
        assert!(valid("byte", "aGVsbG8=") && !valid("byte", "aGVsbG8"));
    }

    #[test]
    fn integer_and_unknown_formats_check_nothing() {
        assert!(valid("int64", "anything") && valid("uint32", "x") && valid("hostname", "?"));
    }
}
