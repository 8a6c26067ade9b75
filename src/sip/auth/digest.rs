//! The digest computation (RFC 7616 §3.4.1–3.4.3) and the Authorization value, both ways.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::params::{self, quote};
use super::{Algorithm, AuthError, Challenge, DigestCredentials, Qop};

/// Hex digest of the concatenation of `parts`, with the hash the algorithm names.
fn hash_hex(algorithm: Algorithm, parts: &[&[u8]]) -> String {
    fn run<D: Digest>(parts: &[&[u8]]) -> String {
        let mut hasher = D::new();
        for part in parts {
            hasher.update(part);
        }
        hex::encode(hasher.finalize())
    }
    match algorithm {
        Algorithm::Md5 | Algorithm::Md5Sess => run::<Md5>(parts),
        Algorithm::Sha256 | Algorithm::Sha256Sess => run::<Sha256>(parts),
        Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => run::<Sha512_256>(parts),
    }
}

/// Everything the response digest covers, borrowed from either side (client or verifier).
struct DigestInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    method: &'a str,
    digest_uri: &'a str,
    body: &'a [u8],
    /// `None` in RFC 2069 mode.
    qop: Option<Qop>,
    /// The nonce count exactly as written on the wire (normally 8 hex digits).
    nc: &'a str,
    cnonce: &'a str,
}

impl DigestInput<'_> {
    fn response(&self) -> String {
        let alg = self.algorithm;
        let mut ha1 = hash_hex(
            alg,
            &[
                self.username.as_bytes(),
                b":",
                self.realm.as_bytes(),
                b":",
                self.password.as_bytes(),
            ],
        );
        if alg.is_session() {
            ha1 = hash_hex(
                alg,
                &[
                    ha1.as_bytes(),
                    b":",
                    self.nonce.as_bytes(),
                    b":",
                    self.cnonce.as_bytes(),
                ],
            );
        }
        let ha2 = match self.qop {
            Some(Qop::AuthInt) => {
                let body_hash = hash_hex(alg, &[self.body]);
                hash_hex(
                    alg,
                    &[
                        self.method.as_bytes(),
                        b":",
                        self.digest_uri.as_bytes(),
                        b":",
                        body_hash.as_bytes(),
                    ],
                )
            }
            _ => hash_hex(
                alg,
                &[self.method.as_bytes(), b":", self.digest_uri.as_bytes()],
            ),
        };
        match self.qop {
            Some(qop) => hash_hex(
                alg,
                &[
                    ha1.as_bytes(),
                    b":",
                    self.nonce.as_bytes(),
                    b":",
                    self.nc.as_bytes(),
                    b":",
                    self.cnonce.as_bytes(),
                    b":",
                    qop.as_str().as_bytes(),
                    b":",
                    ha2.as_bytes(),
                ],
            ),
            None => hash_hex(
                alg,
                &[
                    ha1.as_bytes(),
                    b":",
                    self.nonce.as_bytes(),
                    b":",
                    ha2.as_bytes(),
                ],
            ),
        }
    }
}

/// The Authorization / Proxy-Authorization header value answering `ch` for this request.
/// `digest_uri` is the Request-URI as printed; `body` only matters for qop=auth-int; `nc` is
/// written as 8 hex digits. Without qop in the challenge (RFC 2069) nc and cnonce are left out,
/// except that a `-sess` algorithm still sends its cnonce since HA1 depends on it.
pub fn authorization(
    ch: &Challenge,
    creds: &DigestCredentials,
    method: &str,
    digest_uri: &str,
    body: &[u8],
    cnonce: &str,
    nc: u32,
) -> String {
    let qop = ch.chosen_qop();
    let nc_text = format!("{nc:08x}");
    let response = DigestInput {
        algorithm: ch.algorithm,
        username: &creds.username,
        realm: &ch.realm,
        password: creds.password.expose(),
        nonce: &ch.nonce,
        method,
        digest_uri,
        body,
        qop,
        nc: &nc_text,
        cnonce,
    }
    .response();

    let mut value = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(&creds.username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(digest_uri),
        ch.algorithm.as_str(),
    );
    if qop.is_some() || ch.algorithm.is_session() {
        value.push_str(", cnonce=");
        value.push_str(&quote(cnonce));
    }
    if let Some(opaque) = &ch.opaque {
        value.push_str(", opaque=");
        value.push_str(&quote(opaque));
    }
    if let Some(qop) = qop {
        value.push_str(&format!(", qop={}, nc={nc_text}", qop.as_str()));
    }
    value
}

/// The Digest credentials of an Authorization / Proxy-Authorization value, as a verifier needs
/// them (a test registrar checks realm, nonce and uri against its own state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAuthorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<Qop>,
    /// As written (normally 8 hex digits); `nc_value()` gives the number.
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl DigestAuthorization {
    /// The nonce count as a number, when present and valid hex.
    pub fn nc_value(&self) -> Option<u32> {
        let nc = self.nc.as_deref()?;
        if nc.is_empty() || nc.len() > 8 {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }
}

/// Parses the first Digest credentials of an Authorization / Proxy-Authorization value.
pub fn parse_authorization(value: &str) -> Result<DigestAuthorization, AuthError> {
    let items = params::parse_auth_items(value)?;
    let item = items
        .iter()
        .find(|item| item.is_scheme("Digest"))
        .ok_or(AuthError::Malformed("no Digest credentials"))?;
    let required = |name: &'static str, missing: &'static str| {
        item.param(name)
            .map(str::to_string)
            .ok_or(AuthError::Malformed(missing))
    };
    let algorithm = match item.param("algorithm") {
        None => Algorithm::Md5,
        Some(token) => {
            Algorithm::from_token(token).ok_or(AuthError::Unsupported { what: "algorithm" })?
        }
    };
    let qop = match item.param("qop") {
        None => None,
        Some(token) => Some(Qop::from_token(token).ok_or(AuthError::Unsupported { what: "qop" })?),
    };
    let credentials = DigestAuthorization {
        username: required("username", "credentials without username")?,
        realm: required("realm", "credentials without realm")?,
        nonce: required("nonce", "credentials without nonce")?,
        uri: required("uri", "credentials without uri")?,
        response: required("response", "credentials without response")?,
        algorithm,
        qop,
        nc: item.param("nc").map(str::to_string),
        cnonce: item.param("cnonce").map(str::to_string),
        opaque: item.param("opaque").map(str::to_string),
    };
    if credentials.qop.is_some() && (credentials.nc.is_none() || credentials.cnonce.is_none()) {
        return Err(AuthError::Malformed("qop without nc or cnonce"));
    }
    if algorithm.is_session() && credentials.cnonce.is_none() {
        return Err(AuthError::Malformed("session algorithm without cnonce"));
    }
    Ok(credentials)
}

/// Server side: does this Authorization value carry the right response for this password and
/// method? Covers the digest only: the caller checks that realm, nonce (freshness, nc replay)
/// and uri are its own. qop=auth-int is checked against an empty body; use
/// [`verify_with_body`] for requests with one.
pub fn verify(authorization_value: &str, method: &str, password: &str) -> Result<bool, AuthError> {
    verify_with_body(authorization_value, method, password, &[])
}

/// [`verify`] with the request body, for qop=auth-int.
pub fn verify_with_body(
    authorization_value: &str,
    method: &str,
    password: &str,
    body: &[u8],
) -> Result<bool, AuthError> {
    let credentials = parse_authorization(authorization_value)?;
    let expected = DigestInput {
        algorithm: credentials.algorithm,
        username: &credentials.username,
        realm: &credentials.realm,
        password,
        nonce: &credentials.nonce,
        method,
        digest_uri: &credentials.uri,
        body,
        qop: credentials.qop,
        nc: credentials.nc.as_deref().unwrap_or(""),
        cnonce: credentials.cnonce.as_deref().unwrap_or(""),
    }
    .response();
    Ok(constant_time_eq(
        expected.as_bytes(),
        credentials.response.to_ascii_lowercase().as_bytes(),
    ))
}

/// Compares without an early exit, so that timing does not reveal how many leading characters
/// of a guessed response were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(algorithm: Algorithm, qop: Vec<Qop>) -> Challenge {
        Challenge {
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
            algorithm,
            qop,
            stale: false,
            proxy: false,
        }
    }

    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn mufasa() -> DigestCredentials {
        DigestCredentials::new("Mufasa", "Circle of Life")
    }

    fn response_of(value: &str) -> String {
        parse_authorization(value).unwrap().response
    }

    // Expected values for the -sess variants were computed independently (Python hashlib) from
    // the RFC 7616 §3.9.1 inputs, since the RFC gives no -sess example.
    #[test]
    fn session_variants_hash_nonce_and_cnonce_into_ha1() {
        let cases = [
            (Algorithm::Md5Sess, "e783283f46242139c486a698fec7211d"),
            (
                Algorithm::Sha256Sess,
                "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7",
            ),
        ];
        for (algorithm, expected) in cases {
            let value = authorization(
                &challenge(algorithm, vec![Qop::Auth]),
                &mufasa(),
                "GET",
                "/dir/index.html",
                b"",
                RFC7616_CNONCE,
                1,
            );
            assert_eq!(response_of(&value), expected, "{algorithm}");
            assert!(value.contains(&format!("algorithm={algorithm}")));
        }
    }

    #[test]
    fn rfc2069_mode_leaves_out_qop_nc_and_cnonce() {
        let value = authorization(
            &challenge(Algorithm::Md5, vec![]),
            &mufasa(),
            "REGISTER",
            "sip:example.org",
            b"",
            "ignored",
            1,
        );
        assert!(!value.contains("qop="));
        assert!(!value.contains("nc="));
        assert!(!value.contains("cnonce="));
        assert_eq!(verify(&value, "REGISTER", "Circle of Life"), Ok(true));
    }

    #[test]
    fn auth_int_covers_the_body() {
        let value = authorization(
            &challenge(Algorithm::Sha256, vec![Qop::AuthInt]),
            &mufasa(),
            "INVITE",
            "sip:bob@example.org",
            b"v=0\r\n",
            "c",
            7,
        );
        assert!(value.contains("qop=auth-int, nc=00000007"));
        assert_eq!(
            verify_with_body(&value, "INVITE", "Circle of Life", b"v=0\r\n"),
            Ok(true)
        );
        assert_eq!(
            verify_with_body(&value, "INVITE", "Circle of Life", b"v=1\r\n"),
            Ok(false)
        );
    }

    #[test]
    fn verify_checks_method_and_rejects_incomplete_credentials() {
        let value = authorization(
            &challenge(Algorithm::Md5, vec![Qop::Auth]),
            &mufasa(),
            "REGISTER",
            "sip:example.org",
            b"",
            "c",
            1,
        );
        assert_eq!(verify(&value, "INVITE", "Circle of Life"), Ok(false));
        for bad in [
            r#"Digest username="u", realm="r", nonce="n", uri="u""#,
            r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth"#,
            r#"Basic dXNlcjpwYXNz"#,
        ] {
            assert!(matches!(
                verify(bad, "GET", "p"),
                Err(AuthError::Malformed(_))
            ));
        }
        assert_eq!(
            verify(
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-1"#,
                "GET",
                "p"
            ),
            Err(AuthError::Unsupported { what: "algorithm" })
        );
    }

    #[test]
    fn escapes_quotes_in_username_and_verifies_them() {
        let creds = DigestCredentials::new(r#"ali"ce\"#, "pw");
        let value = authorization(
            &challenge(Algorithm::Md5, vec![Qop::Auth]),
            &creds,
            "GET",
            "/",
            b"",
            "c",
            1,
        );
        assert_eq!(parse_authorization(&value).unwrap().username, r#"ali"ce\"#);
        assert_eq!(verify(&value, "GET", "pw"), Ok(true));
    }

    #[test]
    fn nc_value_reads_hex() {
        let value = authorization(
            &challenge(Algorithm::Md5, vec![Qop::Auth]),
            &mufasa(),
            "GET",
            "/",
            b"",
            "c",
            0x1a,
        );
        let parsed = parse_authorization(&value).unwrap();
        assert_eq!(parsed.nc.as_deref(), Some("0000001a"));
        assert_eq!(parsed.nc_value(), Some(26));
    }
}
