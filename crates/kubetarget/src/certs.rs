//! Certificates for API servers this crate starts: a CA made for the occasion, a serving
//! certificate it signs for the given addresses and names, and the ServiceAccount token signing
//! key. ECDSA P-256 throughout (rcgen with ring).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A CA and one serving certificate it signed, as PEM.
#[derive(Debug, Clone)]
pub struct ServingPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn pki_error(e: rcgen::Error) -> Error {
    Error::Certificates(e.to_string())
}

/// A fresh CA and a serving certificate for `ips` and `names` (127.0.0.1 and `localhost` are
/// always included).
pub fn serving_pki(ips: &[IpAddr], names: &[&str]) -> Result<ServingPki, Error> {
    let ca_key = KeyPair::generate().map_err(pki_error)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "isthmus test API server CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).map_err(pki_error)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut dns: Vec<String> = vec!["localhost".into()];
    dns.extend(names.iter().map(|n| (*n).to_owned()));
    let mut params = CertificateParams::new(dns).map_err(pki_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let mut all_ips = vec![IpAddr::from([127, 0, 0, 1])];
    all_ips.extend(ips.iter().copied().filter(|ip| !ip.is_loopback()));
    params
        .subject_alt_names
        .extend(all_ips.into_iter().map(SanType::IpAddress));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(pki_error)?;
    let cert_pem = params.signed_by(&key, &issuer).map_err(pki_error)?.pem();
    Ok(ServingPki {
        ca_pem,
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// A private key (PKCS#8 PEM) for signing ServiceAccount tokens.
pub fn signing_key_pem() -> Result<String, Error> {
    Ok(KeyPair::generate().map_err(pki_error)?.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_certificate_is_a_pem_chain_with_its_key() {
        let pki = serving_pki(&["10.9.8.7".parse().unwrap()], &["api.lab"]).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(pki.ca_pem, pki.cert_pem);
        assert!(signing_key_pem().unwrap().contains("PRIVATE KEY"));
    }
}
