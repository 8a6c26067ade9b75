//! SIP over TLS (RFC 3261 §26.2, RFC 5630): rustls client and server configurations built
//! from the `[sip]` TLS keys. The connections themselves are streams like TCP and share its
//! framing and keep-alive code in `transport.rs`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The TLS settings of `[sip]`, straight from config.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM), on top of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only; a warning event says so at start).
    pub insecure: bool,
    /// The server side: where to accept TLS connections, with our certificate chain and key.
    pub listen: Option<std::net::SocketAddr>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What building the configurations reported besides the result: shown to the user as
/// `warning` (the first list) or `error` (the second) events; none of them stops sipterm.
#[derive(Debug, Default)]
pub struct Notes {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration: system roots plus `ca_file`, or no verification with `insecure`.
/// A missing or unreadable CA file is reported and the system roots are used alone.
pub fn client_config(options: &TlsOptions, notes: &mut Notes) -> Option<Arc<ClientConfig>> {
    let builder = match ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            notes.errors.push(format!("TLS: {e}"));
            return None;
        }
    };
    if options.insecure {
        notes.warnings.push(
            "TLS: tls_insecure = true: server certificates are NOT verified; anyone on the path \
             can read and change your calls"
                .to_string(),
        );
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth();
        return Some(Arc::new(config));
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        errors = native.errors.len(),
        "system TLS roots loaded"
    );
    if let Some(path) = &options.ca_file {
        match read_certs("tls_ca_file", path) {
            Ok(certs) if certs.is_empty() => notes.errors.push(format!(
                "TLS: tls_ca_file {}: no certificate in it",
                path.display()
            )),
            Ok(certs) => {
                let (_, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    notes.warnings.push(format!(
                        "TLS: tls_ca_file {}: {ignored} certificate(s) could not be used",
                        path.display()
                    ));
                }
            }
            Err(e) => notes.errors.push(e),
        }
    }
    Some(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// The server configuration from `cert_file` (chain, leaf first) and `key_file`.
pub fn server_config(options: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&options.cert_file, &options.key_file) else {
        return Err("TLS: tls_listen needs tls_cert and tls_key".to_string());
    };
    let certs = read_certs("tls_cert", cert)?;
    if certs.is_empty() {
        return Err(format!(
            "TLS: tls_cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("TLS: tls_key {}: {}", key.display(), pem_error(e)))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map(Arc::new)
        .map_err(|e| format!("TLS: certificate/key: {e}"))
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: rustls_pki_types::pem::Error| {
        format!("TLS: {key} {}: {}", path.display(), pem_error(e))
    };
    CertificateDer::pem_file_iter(path)
        .map_err(what)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(what)
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item found".to_string(),
        other => format!("{other:?}"),
    }
}

/// The name to verify the server against: a DNS name (sent as SNI), or for an IP literal the
/// address itself (no SNI; rustls checks the certificate's IP SANs).
pub fn server_name(host: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    if let Some(host) = host {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_err()
            && let Ok(name) = ServerName::try_from(host.to_string())
        {
            return name;
        }
    }
    ServerName::IpAddress(ip.into())
}

/// A rustls/IO error as the user reads it: "TLS: invalid peer certificate: UnknownIssuer".
pub fn describe(error: &std::io::Error) -> String {
    format!("TLS: {error}")
}

/// What a failed handshake means, for the diagnosis: the certificate check's verdict (with
/// the names and dates it compared), or the server's refusal.
pub fn classify(error: &std::io::Error) -> crate::diagnosis::TlsFailure {
    use crate::diagnosis::TlsFailure;
    use rustls::CertificateError;
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => TlsFailure::Refused {
                why: format!("it closed the connection during the handshake: {error}"),
            },
            _ => TlsFailure::Other(error.to_string()),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::NotValidForName => TlsFailure::NameMismatch {
                expected: String::new(),
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TlsFailure::NameMismatch {
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|name| presented_name(name)).collect(),
            },
            CertificateError::Expired => TlsFailure::Expired { days_ago: None },
            CertificateError::ExpiredContext { time, not_after } => TlsFailure::Expired {
                days_ago: time
                    .as_secs()
                    .checked_sub(not_after.as_secs())
                    .map(|secs| secs / 86_400),
            },
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsFailure::NotYetValid
            }
            other => TlsFailure::Other(format!("invalid certificate: {other}")),
        },
        rustls::Error::AlertReceived(alert) => TlsFailure::Refused {
            why: format!("it sent the alert {alert:?}"),
        },
        rustls::Error::PeerIncompatible(why) => TlsFailure::Refused {
            why: format!("no TLS version or cipher in common: {why:?}"),
        },
        rustls::Error::InvalidMessage(_) => TlsFailure::Refused {
            why: "it does not answer in TLS".to_string(),
        },
        other => TlsFailure::Other(other.to_string()),
    }
}

/// `DnsName("sip.example.com")` -> `sip.example.com`, `IpAddress(192.0.2.1)` -> `192.0.2.1`
/// (how webpki lists a certificate's names).
fn presented_name(name: &str) -> String {
    let inner = name
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(name);
    inner.trim_matches('"').to_string()
}

/// `tls_insecure`: every certificate is accepted; signatures are still checked so the
/// handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for a `turns:` server: the system roots plus `[sip]
/// tls_ca_file`. Certificates are always verified (`tls_insecure` is for SIP only).
pub fn client_config_for_turn(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut notes = Notes::default();
    let options = TlsOptions {
        ca_file: ca_file.map(Path::to_path_buf),
        ..TlsOptions::default()
    };
    let config = client_config(&options, &mut notes)
        .ok_or_else(|| format!("no TLS for TURN: {}", notes.errors.join("; ")))?;
    for note in notes.warnings.iter().chain(&notes.errors) {
        tracing::warn!("turns: {note}");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_for_hosts_and_ip_literals() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(matches!(
            server_name(Some("sip.example.com"), ip),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name(Some("127.0.0.1"), ip),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(Some("[::1]"), ip),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(server_name(None, ip), ServerName::IpAddress(_)));
    }

    #[test]
    fn missing_files_are_reported_not_fatal() {
        let mut notes = Notes::default();
        let options = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert!(client_config(&options, &mut notes).is_some());
        assert!(
            notes
                .errors
                .iter()
                .any(|e| e.contains("/nonexistent/ca.pem")),
            "{notes:?}"
        );
        let options = TlsOptions {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsOptions::default()
        };
        let error = server_config(&options).unwrap_err();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }

    #[test]
    fn insecure_warns() {
        let mut notes = Notes::default();
        let options = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(client_config(&options, &mut notes).is_some());
        assert!(notes.warnings.iter().any(|w| w.contains("NOT verified")));
    }
}
