//! Test certificates made with rcgen: a test CA and a server certificate for "localhost" and
//! 127.0.0.1 signed by it (tests/tls.rs, tests/tls_srtp.rs).

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;

/// A test CA and a server certificate for "localhost" + IP 127.0.0.1 signed by it, as PEM
/// files in a temp dir, plus the DER forms for the raw rustls peers of some tests.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

pub fn make_certs() -> Result<Certs, Box<dyn std::error::Error>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let dir = tempfile::Builder::new().prefix("sipterm-tls-").tempdir()?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipterm test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer)?;
    let ca_pem = dir.path().join("ca.pem");
    let cert_pem = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&ca_pem, ca_cert.pem())?;
    std::fs::write(&cert_pem, cert.pem())?;
    std::fs::write(&key_pem, key.serialize_pem())?;
    Ok(Certs {
        ca_der: ca_cert.der().clone(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        dir,
        ca_pem,
        cert_pem,
        key_pem,
    })
}
