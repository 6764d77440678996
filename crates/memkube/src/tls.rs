//! TLS for the HTTP server: the instance's self-signed certificate authority ([`ClusterCa`],
//! generated once per instance with rcgen on ring), serving certificates it signs for the
//! asked-for names ([`TlsOptions`]; 127.0.0.1 and `localhost` always), and the rustls server
//! configuration (ring provider, TLS 1.2/1.3, HTTP/1.1 by ALPN).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// Names the serving certificate is valid for, besides 127.0.0.1 and `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra IP subject alternative names (e.g. a lab node's address).
    pub ip_sans: Vec<IpAddr>,
    /// Extra DNS subject alternative names.
    pub dns_sans: Vec<String>,
}

/// 127.0.0.1, which every serving certificate carries anyway.
fn ips_has_localhost(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls {
        reason: format!("{what}: {e}"),
    }
}

/// Valid from yesterday (clock skew) for `years` years, at day precision.
fn set_validity(params: &mut CertificateParams, now: DateTime<Utc>, years: i64) {
    let date = |t: DateTime<Utc>| {
        let (m, d) = (
            t.month().try_into().unwrap_or(1),
            t.day().try_into().unwrap_or(1),
        );
        rcgen::date_time_ymd(t.year(), m, d)
    };
    params.not_before = date(now - Duration::days(1));
    params.not_after = date(now + Duration::days(365 * years));
}

/// The instance's certificate authority: it signs serving certificates, and its certificate
/// goes into kubeconfigs and ServiceAccount token Secrets (`ca.crt`).
pub(crate) struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A fresh self-signed CA (ECDSA P-256), valid for ten years.
    pub(crate) fn generate() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_error("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "memkube-ca");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, Utc::now(), 10);
        let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_error("CA certificate", e))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM-encoded.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for 127.0.0.1, `localhost` and `opts`'s names, signed by this CA,
    /// and its private key.
    fn serving_cert(
        &self,
        opts: &TlsOptions,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_error("serving parameters", e))?;
        let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        ips.extend(
            opts.ip_sans
                .iter()
                .copied()
                .filter(|ip| !ips_has_localhost(*ip)),
        );
        let mut sans: Vec<SanType> = ips.into_iter().map(SanType::IpAddress).collect();
        for name in std::iter::once("localhost").chain(opts.dns_sans.iter().map(String::as_str)) {
            let dns = name
                .to_string()
                .try_into()
                .map_err(|e| tls_error(&format!("DNS name {name:?}"), e))?;
            sans.push(SanType::DnsName(dns));
        }
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(DnType::CommonName, "memkube");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, Utc::now(), 1);
        let key = KeyPair::generate().map_err(|e| tls_error("serving key", e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_error("serving certificate", e))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key_der))
    }

    /// The rustls configuration of a server presenting a fresh serving certificate.
    pub(crate) fn server_config(&self, opts: &TlsOptions) -> Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = self.serving_cert(opts)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(|e| tls_error("serving certificate", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_config_is_built_for_extra_names() {
        let ca = ClusterCa::generate().unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let opts = TlsOptions {
            ip_sans: vec!["10.0.0.1".parse().unwrap()],
            dns_sans: vec!["api.lab".into()],
        };
        let config = ca.server_config(&opts).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn an_invalid_dns_name_is_an_error_not_a_panic() {
        let ca = ClusterCa::generate().unwrap();
        let opts = TlsOptions {
            dns_sans: vec!["bad name\u{e9}".into()],
            ..TlsOptions::default()
        };
        let err = ca.server_config(&opts).unwrap_err();
        assert!(err.to_string().contains("bad name"), "{err}");
    }
}
