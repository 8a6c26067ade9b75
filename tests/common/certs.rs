//! A test CA and a "localhost" + 127.0.0.1 server certificate made with rcgen, written as PEM
//! files for sipterm's `[sip] tls_*` keys, plus raw rustls client and server configurations
//! for test peers (tests/tls.rs, tests/tls_srtp.rs, tests/tls_hardening.rs).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

pub fn make_certs() -> Result<Certs, BoxError> {
    make_certs_for("localhost", &[[127, 0, 0, 1].into()])
}

/// A test CA and a server certificate for the DNS name `name` and the addresses `ips`.
pub fn make_certs_for(name: &str, ips: &[std::net::IpAddr]) -> Result<Certs, BoxError> {
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
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.distinguished_name.push(DnType::CommonName, name);
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

/// A path as a TOML string literal.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `[sip]` lines for a TLS listener on an ephemeral port with the test certificate.
pub fn tls_listener_keys(certs: &Certs) -> String {
    format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}\n",
        toml_path(&certs.cert_pem),
        toml_path(&certs.key_pem)
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;
pub type TlsServer = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// A blocking TLS client to `addr` trusting the test CA and verifying "localhost"; the
/// handshake happens on first read or write. Reads time out after `read_timeout`.
pub fn tls_client(
    certs: &Certs,
    addr: SocketAddr,
    read_timeout: Duration,
) -> Result<TlsClient, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca_der.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost")?)?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(read_timeout))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// A rustls server configuration presenting the test certificate.
pub fn server_config(certs: &Certs) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    Ok(Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![certs.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.key_der.clone())),
            )?,
    ))
}
