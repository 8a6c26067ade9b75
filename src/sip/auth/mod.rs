//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760, RFC 3261 §22), sans-IO.
//!
//! - [`parse_challenges`] / [`challenges_of`] read WWW-Authenticate and Proxy-Authenticate.
//! - [`authorization`] computes one Authorization / Proxy-Authorization value.
//! - [`Authenticator`] keeps the per-account state (nonce counts, cnonces, which realms were
//!   already answered) and decides when retrying would loop.
//! - [`verify`] is the server side, for test registrars.
//!
//! This module parses its own header values because the challenge grammar (commas that separate
//! both parameters and challenges, quoted strings with escapes) is specific to it.

mod authenticator;
mod digest;
mod params;

use std::fmt;

use thiserror::Error;

use super::message::Headers;

pub use authenticator::Authenticator;
pub use digest::{
    DigestAuthorization, authorization, parse_authorization, verify, verify_with_body,
};

/// Digest hash algorithms (RFC 7616 §3.3, RFC 8760 for SIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    /// SHA-512/256 (RFC 8760 §2.2).
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter (case-insensitive); `None` for algorithms we cannot
    /// compute, whose challenges are then skipped.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        const NAMES: [(&str, Algorithm); 6] = [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|(_, algorithm)| *algorithm)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// True for the `-sess` variants, whose HA1 also covers the nonce and cnonce.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Higher is stronger; used to answer the strongest of several offered challenges.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 2,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection: `auth` covers method and URI, `auth-int` the body too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    Auth,
    AuthInt,
}

impl Qop {
    pub fn from_token(token: &str) -> Option<Qop> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// One usable Digest challenge from a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The qop values offered that we support; empty means RFC 2069 mode (no qop, nc, cnonce).
    pub qop: Vec<Qop>,
    pub stale: bool,
    /// Came from a 407 / Proxy-Authenticate: answer with Proxy-Authorization.
    pub proxy: bool,
}

impl Challenge {
    /// The header that carries our answer to this challenge.
    pub fn answer_header_name(&self) -> &'static str {
        if self.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        }
    }

    /// The qop we answer with: `auth` when offered (cheapest, and what every server checks),
    /// else `auth-int`; `None` for RFC 2069 challenges.
    pub fn chosen_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        }
    }
}

/// A password that never shows up in Debug or Display output.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The secret itself, for hashing. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Password::new(password)
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Password(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A digest username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub password: Password,
}

impl DigestCredentials {
    pub fn new(username: impl Into<String>, password: impl Into<Password>) -> Self {
        DigestCredentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Why authentication could not proceed. No variant ever carries the password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A header value broke the grammar or a limit; the text says which rule, never the input.
    #[error("malformed authentication header: {0}")]
    Malformed(&'static str),
    #[error("no usable Digest challenge in the response")]
    NoUsableChallenge,
    /// The realm challenged again a request that already carried our answer: the password is
    /// wrong (or the account unknown). Retrying would loop.
    #[error("credentials rejected by realm \"{realm}\"")]
    CredentialsRejected { realm: String },
    #[error("status {status} is not an authentication challenge (401 or 407)")]
    NotAChallenge { status: u16 },
    /// Credentials name an algorithm or qop we cannot compute.
    #[error("unsupported digest {what}")]
    Unsupported { what: &'static str },
}

/// Most challenges taken from one response (all header lines together).
const MAX_CHALLENGES: usize = 16;

/// Parses one WWW-Authenticate (`proxy == false`) or Proxy-Authenticate (`proxy == true`)
/// header value. Returns the usable Digest challenges in the order written; other schemes and
/// Digest challenges with an unknown algorithm or only unknown qop values are skipped. A syntax
/// error, or a Digest challenge without realm or nonce, is `AuthError::Malformed`.
pub fn parse_challenges(header_value: &str, proxy: bool) -> Result<Vec<Challenge>, AuthError> {
    let items = params::parse_auth_items(header_value)?;
    let mut challenges = Vec::new();
    for item in &items {
        if let Some(challenge) = digest_challenge(item, proxy)? {
            challenges.push(challenge);
        }
    }
    Ok(challenges)
}

fn digest_challenge(item: &params::AuthItem, proxy: bool) -> Result<Option<Challenge>, AuthError> {
    if !item.is_scheme("Digest") {
        return Ok(None);
    }
    if item.token68.is_some() {
        return Err(AuthError::Malformed("Digest challenge with a token68"));
    }
    let realm = item
        .param("realm")
        .ok_or(AuthError::Malformed("Digest challenge without realm"))?;
    let nonce = item
        .param("nonce")
        .filter(|nonce| !nonce.is_empty())
        .ok_or(AuthError::Malformed("Digest challenge without nonce"))?;
    let algorithm = match item.param("algorithm") {
        None => Algorithm::Md5,
        Some(token) => match Algorithm::from_token(token) {
            Some(algorithm) => algorithm,
            None => return Ok(None),
        },
    };
    let mut qop = Vec::new();
    if let Some(offered) = item.param("qop") {
        for token in offered.split(',') {
            if let Some(known) = Qop::from_token(token.trim())
                && !qop.contains(&known)
            {
                qop.push(known);
            }
        }
        if qop.is_empty() {
            // Only qop values we cannot produce (e.g. auth-conf): answering without qop
            // would be rejected, so this challenge is unusable.
            return Ok(None);
        }
    }
    Ok(Some(Challenge {
        realm: realm.to_string(),
        nonce: nonce.to_string(),
        opaque: item.param("opaque").map(str::to_string),
        algorithm,
        qop,
        stale: item
            .param("stale")
            .is_some_and(|stale| stale.eq_ignore_ascii_case("true")),
        proxy,
    }))
}

/// Every usable Digest challenge of a 401 (WWW-Authenticate lines) or 407 (Proxy-Authenticate
/// lines), strongest algorithm first, the server's order kept among equals. Lines that do not
/// parse are skipped so that one bad line does not hide good ones. Any other status: empty.
pub fn challenges_of(headers: &Headers, status: u16) -> Vec<Challenge> {
    let (header_name, proxy) = match status {
        401 => ("WWW-Authenticate", false),
        407 => ("Proxy-Authenticate", true),
        _ => return Vec::new(),
    };
    let mut challenges: Vec<Challenge> = headers
        .get_all(header_name)
        .filter_map(|value| parse_challenges(value, proxy).ok())
        .flatten()
        .take(MAX_CHALLENGES)
        .collect();
    challenges.sort_by_key(|challenge| std::cmp::Reverse(challenge.algorithm.strength()));
    challenges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_sip_challenge() {
        let challenges = parse_challenges(
            r#"Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5"#,
            false,
        )
        .unwrap();
        assert_eq!(
            challenges,
            [Challenge {
                realm: "atlanta.com".into(),
                nonce: "f84f1cec41e6cbe5aea9c8e88d359".into(),
                opaque: Some(String::new()),
                algorithm: Algorithm::Md5,
                qop: vec![Qop::Auth],
                stale: false,
                proxy: false,
            }]
        );
    }

    #[test]
    fn accepts_odd_but_valid_forms() {
        let challenges = parse_challenges(
            "  digest   NONCE=abc ,realm = \"r\",  algorithm = sha-256-SESS , qop=\"auth-int , auth\", Stale=TRUE, x-unknown=\"1,2\"",
            true,
        )
        .unwrap();
        let challenge = &challenges[0];
        assert_eq!(challenge.nonce, "abc");
        assert_eq!(challenge.realm, "r");
        assert_eq!(challenge.algorithm, Algorithm::Sha256Sess);
        assert_eq!(challenge.qop, [Qop::AuthInt, Qop::Auth]);
        assert_eq!(challenge.chosen_qop(), Some(Qop::Auth));
        assert!(challenge.stale);
        assert!(challenge.proxy);
        assert_eq!(challenge.answer_header_name(), "Proxy-Authorization");
    }

    #[test]
    fn missing_algorithm_means_md5_and_missing_qop_means_rfc2069() {
        let challenges = parse_challenges(r#"Digest realm="r", nonce="n""#, false).unwrap();
        assert_eq!(challenges[0].algorithm, Algorithm::Md5);
        assert!(challenges[0].qop.is_empty());
        assert_eq!(challenges[0].chosen_qop(), None);
    }

    #[test]
    fn skips_other_schemes_unknown_algorithms_and_unknown_qops() {
        let challenges = parse_challenges(
            r#"Basic realm="b", Digest realm="x", nonce="1", algorithm=SHA-1024, Digest realm="y", nonce="2", qop="auth-conf", Digest realm="z", nonce="3""#,
            false,
        )
        .unwrap();
        let realms: Vec<_> = challenges.iter().map(|c| c.realm.as_str()).collect();
        assert_eq!(realms, ["z"]);
    }

    #[test]
    fn rejects_digest_without_realm_or_nonce() {
        for bad in [
            r#"Digest nonce="n""#,
            r#"Digest realm="r""#,
            r#"Digest realm="r", nonce="""#,
            "Digest abc==",
            r#"Digest realm="r", nonce="n", realm="s""#,
        ] {
            assert!(
                matches!(parse_challenges(bad, false), Err(AuthError::Malformed(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn challenges_of_reads_the_right_header_and_orders_by_strength() {
        let mut headers = Headers::new();
        headers.push("WWW-Authenticate", r#"Digest realm="r", nonce="md5""#);
        headers.push("www-authenticate", "Digest realm=\"r\", nonce=\"broken");
        headers.push(
            "WWW-Authenticate",
            r#"Digest realm="r", nonce="sha", algorithm=SHA-256, Digest realm="r", nonce="sha512", algorithm=SHA-512-256"#,
        );
        headers.push("Proxy-Authenticate", r#"Digest realm="p", nonce="proxy""#);
        let nonces: Vec<_> = challenges_of(&headers, 401)
            .into_iter()
            .map(|c| c.nonce)
            .collect();
        assert_eq!(nonces, ["sha512", "sha", "md5"]);
        let proxy = challenges_of(&headers, 407);
        assert_eq!(proxy.len(), 1);
        assert!(proxy[0].proxy);
        assert!(challenges_of(&headers, 403).is_empty());
    }

    #[test]
    fn password_is_masked_in_debug_and_display() {
        let credentials = DigestCredentials::new("alice", "hunter2-secret");
        assert!(!format!("{credentials:?}").contains("hunter2-secret"));
        assert_eq!(format!("{}", credentials.password), "***");
        assert_eq!(credentials.password.expose(), "hunter2-secret");
    }
}
