//! Validation that the OpenAPI schema cannot express: cross-field rules and endpoint syntax.
//! Every resource exposes `validate()` built on these; controllers call it before acting.

use std::net::SocketAddr;

/// A resource that is syntactically valid JSON but violates an isthmus rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

impl ValidationError {
    pub(crate) fn field(field: &'static str, message: impl Into<String>) -> Self {
        ValidationError::Field {
            field,
            message: message.into(),
        }
    }
}

/// Checks a gateway endpoint `host:port` (an IPv4 address or a DNS name, and a non-zero port).
pub fn validate_endpoint(endpoint: &str) -> Result<(), ValidationError> {
    let bad = |m: &str| ValidationError::field("endpoint", format!("{endpoint:?}: {m}"));
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        if addr.is_ipv6() {
            return Err(bad("IPv6 endpoints are not supported"));
        }
        if addr.port() == 0 {
            return Err(bad("port must not be 0"));
        }
        return Ok(());
    }
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port is not a number in 1..=65535"))?;
    if port == 0 {
        return Err(bad("port must not be 0"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad("host is neither an IPv4 address nor a DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(validate_endpoint("192.168.1.10:51820").is_ok());
        assert!(validate_endpoint("gw.example.com:443").is_ok());
        assert!(validate_endpoint("192.168.1.10").is_err());
        assert!(validate_endpoint("192.168.1.10:0").is_err());
        assert!(validate_endpoint("[::1]:51820").is_err());
        assert!(validate_endpoint("bad_host:1").is_err());
    }
}
