//! Digest authentication through the public API: the RFC worked examples, and an Authenticator
//! talking to a small in-test registrar/proxy that checks answers with `verify`.

use sipterm::sip::auth::{
    Algorithm, AuthError, Authenticator, DigestCredentials, Qop, authorization, challenges_of,
    parse_authorization, parse_challenges, verify,
};
use sipterm::sip::message::{Method, Request, Response};
use sipterm::sip::uri::Uri;

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

fn rfc7616_challenge_line(algorithm: &str) -> String {
    format!(
        r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}""#
    )
}

#[test]
fn rfc7616_section_3_9_1_md5_and_sha256_examples() {
    let mufasa = DigestCredentials::new("Mufasa", "Circle of Life");
    let mut response = Response::new(401, "Unauthorized");
    // The RFC lists SHA-256 first; MD5 first here shows the stronger one is still preferred.
    response
        .headers
        .push("WWW-Authenticate", rfc7616_challenge_line("MD5"));
    response
        .headers
        .push("WWW-Authenticate", rfc7616_challenge_line("SHA-256"));
    let challenges = challenges_of(&response.headers, 401);
    assert_eq!(challenges.len(), 2);
    assert_eq!(challenges[0].algorithm, Algorithm::Sha256);
    assert_eq!(challenges[1].algorithm, Algorithm::Md5);
    assert_eq!(challenges[0].qop, [Qop::Auth, Qop::AuthInt]);
    assert_eq!(challenges[0].opaque.as_deref(), Some(RFC7616_OPAQUE));

    let expected = [
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        "8ca523f5e9506fed4657c9700eebdbec",
    ];
    for (challenge, expected_response) in challenges.iter().zip(expected) {
        let value = authorization(
            challenge,
            &mufasa,
            "GET",
            "/dir/index.html",
            b"",
            RFC7616_CNONCE,
            1,
        );
        let parsed = parse_authorization(&value).unwrap();
        assert_eq!(parsed.response, expected_response);
        assert_eq!(parsed.username, "Mufasa");
        assert_eq!(parsed.uri, "/dir/index.html");
        assert_eq!(parsed.qop, Some(Qop::Auth));
        assert_eq!(parsed.nc.as_deref(), Some("00000001"));
        assert_eq!(parsed.cnonce.as_deref(), Some(RFC7616_CNONCE));
        assert_eq!(parsed.opaque.as_deref(), Some(RFC7616_OPAQUE));
        assert_eq!(parsed.algorithm, challenge.algorithm);
    }
}

#[test]
fn verify_accepts_the_rfc7616_sha256_authorization_as_printed_in_the_rfc() {
    let value = format!(
        r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="{RFC7616_OPAQUE}""#
    );
    assert_eq!(verify(&value, "GET", "Circle of Life"), Ok(true));
    assert_eq!(verify(&value, "GET", "Circle of life"), Ok(false));
}

#[test]
fn rfc2617_section_3_5_example() {
    let challenge = parse_challenges(
        r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        false,
    )
    .unwrap()
    .remove(0);
    let value = authorization(
        &challenge,
        &DigestCredentials::new("Mufasa", "Circle Of Life"),
        "GET",
        "/dir/index.html",
        b"",
        "0a4f113b",
        1,
    );
    assert_eq!(
        parse_authorization(&value).unwrap().response,
        "6629fae49393a05397450978507c4ef1"
    );

    // The RFC's own Authorization header, as printed there (with its line folding undone).
    let rfc_value = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
    assert_eq!(verify(rfc_value, "GET", "Circle Of Life"), Ok(true));
}

#[test]
fn verify_accepts_what_authorization_produces_for_every_algorithm_and_rejects_wrong_password() {
    for algorithm in [
        "MD5",
        "MD5-sess",
        "SHA-256",
        "SHA-256-sess",
        "SHA-512-256",
        "SHA-512-256-sess",
    ] {
        for qop in ["", r#", qop="auth""#, r#", qop="auth-int""#] {
            let line =
                format!(r#"Digest realm="sip.example", nonce="abc", algorithm={algorithm}{qop}"#);
            let challenge = parse_challenges(&line, false).unwrap().remove(0);
            let value = authorization(
                &challenge,
                &DigestCredentials::new("alice", "s3cret"),
                "REGISTER",
                "sip:sip.example",
                b"",
                "0123abcd",
                3,
            );
            assert_eq!(verify(&value, "REGISTER", "s3cret"), Ok(true), "{line}");
            assert_eq!(verify(&value, "REGISTER", "s3cret!"), Ok(false), "{line}");
        }
    }
}

/// SHA-512-256 and qop=auth-int against digests computed outside sipterm: Python 3's hashlib
/// (`hashlib.new("sha512_256")`, OpenSSL's SHA-512/256; it gives FIPS 180-4's "abc" example,
/// 53048e26...e7af23) with RFC 7616 §3.4.1-3.4.3's formulas written out by hand:
/// HA1 = H(user:realm:password), for -sess H(HA1:nonce:cnonce); HA2 = H(method:uri), for
/// auth-int H(method:uri:H(body)); response = H(HA1:nonce:nc:cnonce:qop:HA2).
/// (RFC 7616 §3.9.2's own SHA-512-256 example is not used: its printed response does not
/// follow from its inputs, a known erratum.)
#[test]
fn sha512_256_and_auth_int_match_an_independent_implementation() {
    let answer = |algorithm: &str,
                  qop: &str,
                  (user, realm, password): (&str, &str, &str),
                  (nonce, cnonce, nc): (&str, &str, u32),
                  (method, uri, body): (&str, &str, &[u8])| {
        let line = format!(
            r#"Digest realm="{realm}", nonce="{nonce}", qop="{qop}", algorithm={algorithm}"#
        );
        let challenge = parse_challenges(&line, false)
            .expect("challenge parses")
            .remove(0);
        let value = authorization(
            &challenge,
            &DigestCredentials::new(user, password),
            method,
            uri,
            body,
            cnonce,
            nc,
        );
        let parsed = parse_authorization(&value).expect("our Authorization parses");
        assert_eq!(parsed.qop.map(Qop::as_str), Some(qop), "{value}");
        parsed.response
    };
    // RFC 7616 §3.9.1's inputs (Mufasa), with the algorithm the RFC has no worked example for.
    let mufasa = ("Mufasa", "http-auth@example.org", "Circle of Life");
    let rfc = (RFC7616_NONCE, RFC7616_CNONCE, 1);
    let get = ("GET", "/dir/index.html", &b""[..]);
    assert_eq!(
        answer("SHA-512-256", "auth", mufasa, rfc, get),
        "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0"
    );
    assert_eq!(
        answer("SHA-512-256-sess", "auth", mufasa, rfc, get),
        "3f2a34f923c38b0fb26dce2fdfc2ce326c23cecf86fbb1444f3e51fbbc2cb92e"
    );
    // auth-int over an INVITE's SDP body, every algorithm.
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let alice = ("alice", "atlanta.example", "s3cret");
    let second = ("n0nce", "0a4f113b", 2);
    let invite = ("INVITE", "sip:bob@biloxi.example", &sdp[..]);
    for (algorithm, expected) in [
        ("MD5", "93053917055123b828fcfa6ad2dbafa0"),
        ("MD5-sess", "dfe9d4f2f71dac94919893b39f65e01c"),
        (
            "SHA-256",
            "17e9c430962063348f5745e9dba50c6d573fc90fbf8e6ee93da258afb775eecd",
        ),
        (
            "SHA-256-sess",
            "8cea8f49ec4454fceee973fa20a402167b80512b89ab51972a9138d46e5027d7",
        ),
        (
            "SHA-512-256",
            "9ea406219391465bc29bad3560bf459f449d7b28af1f9cbfd84f458fa3f9fdaf",
        ),
        (
            "SHA-512-256-sess",
            "cbde4d24eabc1e1acd31e217f3741cba285c48bfea7e01c02a7e30e7c6be47e1",
        ),
    ] {
        assert_eq!(
            answer(algorithm, "auth-int", alice, second, invite),
            expected,
            "{algorithm} auth-int"
        );
    }
    // auth-int with no body hashes the empty string (a REGISTER).
    assert_eq!(
        answer(
            "SHA-512-256",
            "auth-int",
            alice,
            ("n0nce", "0a4f113b", 1),
            ("REGISTER", "sip:atlanta.example", &b""[..])
        ),
        "c3a6bc4da78fb00be734a59f8e8b93a7115849b9511bf39a2d899c9b6f2bd31b"
    );
}

// ---------------------------------------------------------------------------------------------
// A test registrar / proxy: issues nonces, checks answers with `verify`, tracks nonce counts.

const PASSWORD: &str = "correct horse battery staple";

struct TestServer {
    realm: String,
    proxy: bool,
    password: String,
    nonce: String,
    issued: u32,
    last_nc: u32,
    /// Makes the next check fail as if the nonce had expired.
    nonce_expired: bool,
}

impl TestServer {
    fn new(realm: &str, proxy: bool) -> Self {
        TestServer {
            realm: realm.to_string(),
            proxy,
            password: PASSWORD.to_string(),
            nonce: String::new(),
            issued: 0,
            last_nc: 0,
            nonce_expired: false,
        }
    }

    fn challenge(&mut self, stale: bool) -> Response {
        self.issued += 1;
        self.nonce = format!("{}-nonce-{}", self.realm, self.issued);
        self.last_nc = 0;
        self.nonce_expired = false;
        let (code, header) = if self.proxy {
            (407, "Proxy-Authenticate")
        } else {
            (401, "WWW-Authenticate")
        };
        let mut response = Response::new(code, "Challenge");
        response.headers.push(
            header,
            format!(
                r#"Digest realm="{}", nonce="{}", qop="auth", algorithm=MD5, opaque="op"{}"#,
                self.realm,
                self.nonce,
                if stale { ", stale=true" } else { "" }
            ),
        );
        response
    }

    /// What this server answers to `request`: None when it lets the request through.
    fn handle(&mut self, request: &Request) -> Option<Response> {
        let header = if self.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let Some(value) = request.headers.get_all(header).find(|value| {
            parse_authorization(value).is_ok_and(|credentials| credentials.realm == self.realm)
        }) else {
            return Some(self.challenge(false));
        };
        let credentials = parse_authorization(value).unwrap();
        assert_eq!(credentials.uri, request.uri.to_string());
        assert_eq!(credentials.opaque.as_deref(), Some("op"));
        let digest_ok = verify(value, request.method.as_str(), &self.password).unwrap();
        if !digest_ok {
            return Some(self.challenge(false));
        }
        if credentials.nonce != self.nonce || self.nonce_expired {
            return Some(self.challenge(true));
        }
        let nc = credentials.nc_value().unwrap();
        assert!(nc > self.last_nc, "nonce count replayed: {nc}");
        self.last_nc = nc;
        None
    }
}

fn register() -> Request {
    let mut request = Request::new(Method::Register, Uri::sip(None, "sip.example", None));
    request.headers.push("CSeq", "1 REGISTER");
    request
}

/// The retry: the challenged request with its credentials replaced by `headers`.
fn retry(request: &Request, headers: Vec<(String, String)>) -> Request {
    let mut retried = request.clone();
    retried.headers.remove("Authorization");
    retried.headers.remove("Proxy-Authorization");
    for (name, value) in headers {
        retried.headers.push(name, value);
    }
    retried
}

fn alice(password: &str) -> Authenticator {
    Authenticator::new(DigestCredentials::new("alice", password), 42)
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn register_is_challenged_then_accepted() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let first = register();
    assert!(auth.preemptive(&first).is_empty());
    let challenge = registrar.handle(&first).unwrap();
    let headers = auth.respond(&first, &challenge).unwrap();
    assert_eq!(header_names(&headers), ["Authorization"]);
    let second = retry(&first, headers);
    assert_eq!(registrar.handle(&second), None);
    let credentials = parse_authorization(second.headers.get("Authorization").unwrap()).unwrap();
    assert_eq!(credentials.nc.as_deref(), Some("00000001"));
    assert_eq!(credentials.uri, "sip:sip.example");
}

#[test]
fn wrong_password_is_rejected_after_one_answer_instead_of_looping() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice("wrong-password-123");
    let first = register();
    let challenge = registrar.handle(&first).unwrap();
    let second = retry(&first, auth.respond(&first, &challenge).unwrap());
    let again = registrar.handle(&second).unwrap();
    let error = auth.respond(&second, &again).unwrap_err();
    assert_eq!(
        error,
        AuthError::CredentialsRejected {
            realm: "sip.example".into()
        }
    );
    assert!(!error.to_string().contains("wrong-password-123"));
    assert!(!format!("{error:?}").contains("wrong-password-123"));
    assert!(!format!("{auth:?}").contains("wrong-password-123"));
}

#[test]
fn preemptive_reuse_increments_nc_and_is_accepted() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let first = register();
    let challenge = registrar.handle(&first).unwrap();
    assert_eq!(
        registrar.handle(&retry(&first, auth.respond(&first, &challenge).unwrap())),
        None
    );
    let mut cnonces = Vec::new();
    for expected_nc in ["00000002", "00000003"] {
        let refresh = retry(&register(), auth.preemptive(&register()));
        let credentials =
            parse_authorization(refresh.headers.get("Authorization").unwrap()).unwrap();
        assert_eq!(credentials.nc.as_deref(), Some(expected_nc));
        cnonces.push(credentials.cnonce.unwrap());
        assert_eq!(registrar.handle(&refresh), None);
    }
    assert_eq!(cnonces[0], cnonces[1], "one cnonce per nonce");
}

#[test]
fn stale_nonce_is_retried_once_with_the_new_nonce() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let first = register();
    let challenge = registrar.handle(&first).unwrap();
    let second = retry(&first, auth.respond(&first, &challenge).unwrap());
    // The registrar expires the nonce before it sees our answer.
    registrar.nonce_expired = true;
    let stale = registrar.handle(&second).unwrap();
    assert!(challenges_of(&stale.headers, 401)[0].stale);
    let third = retry(&second, auth.respond(&second, &stale).unwrap());
    let credentials = parse_authorization(third.headers.get("Authorization").unwrap()).unwrap();
    assert_eq!(credentials.nonce, "sip.example-nonce-2");
    assert_eq!(credentials.nc.as_deref(), Some("00000001"));
    assert_eq!(registrar.handle(&third), None);
}

#[test]
fn a_second_stale_challenge_in_a_row_is_rejected() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let first = register();
    let challenge = registrar.handle(&first).unwrap();
    let second = retry(&first, auth.respond(&first, &challenge).unwrap());
    registrar.nonce_expired = true;
    let stale = registrar.handle(&second).unwrap();
    let third = retry(&second, auth.respond(&second, &stale).unwrap());
    registrar.nonce_expired = true;
    let stale_again = registrar.handle(&third).unwrap();
    assert!(matches!(
        auth.respond(&third, &stale_again),
        Err(AuthError::CredentialsRejected { .. })
    ));
}

#[test]
fn a_forgotten_preemptive_nonce_gets_a_fresh_answer_even_without_stale() {
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let first = register();
    let challenge = registrar.handle(&first).unwrap();
    assert_eq!(
        registrar.handle(&retry(&first, auth.respond(&first, &challenge).unwrap())),
        None
    );
    // The registrar restarts and no longer knows the nonce; it cannot tell it is stale.
    registrar = TestServer::new("sip.example", false);
    registrar.issued = 10;
    let refresh = retry(&register(), auth.preemptive(&register()));
    let fresh_challenge = registrar.challenge(false);
    let answer = retry(&refresh, auth.respond(&refresh, &fresh_challenge).unwrap());
    assert_eq!(registrar.handle(&answer), None);
}

#[test]
fn proxy_challenge_is_answered_with_proxy_authorization_and_kept_for_the_registrar() {
    let mut proxy = TestServer::new("proxy.example", true);
    let mut registrar = TestServer::new("sip.example", false);
    let mut auth = alice(PASSWORD);
    let through = |proxy: &mut TestServer, registrar: &mut TestServer, request: &Request| {
        proxy.handle(request).or_else(|| registrar.handle(request))
    };
    let first = register();
    let challenge = through(&mut proxy, &mut registrar, &first).unwrap();
    assert_eq!(challenge.code, 407);
    let headers = auth.respond(&first, &challenge).unwrap();
    assert_eq!(header_names(&headers), ["Proxy-Authorization"]);
    let second = retry(&first, headers);
    let challenge = through(&mut proxy, &mut registrar, &second).unwrap();
    assert_eq!(challenge.code, 401);
    let headers = auth.respond(&second, &challenge).unwrap();
    assert_eq!(
        header_names(&headers),
        ["Proxy-Authorization", "Authorization"]
    );
    let third = retry(&second, headers);
    assert_eq!(through(&mut proxy, &mut registrar, &third), None);

    // Both realms are pre-answered on the next request.
    let refresh = retry(&register(), auth.preemptive(&register()));
    assert_eq!(through(&mut proxy, &mut registrar, &refresh), None);
}

#[test]
fn every_realm_of_a_multi_realm_challenge_is_answered() {
    let mut response = Response::new(407, "Proxy Authentication Required");
    response.headers.push(
        "Proxy-Authenticate",
        r#"Digest realm="edge", nonce="e1", qop=auth, Digest realm="core", nonce="c1""#,
    );
    response.headers.push(
        "Proxy-Authenticate",
        r#"Digest realm="edge", nonce="e2", algorithm=SHA-256, qop=auth"#,
    );
    let mut auth = alice(PASSWORD);
    let headers = auth.respond(&register(), &response).unwrap();
    let answered: Vec<_> = headers
        .iter()
        .map(|(name, value)| {
            let credentials = parse_authorization(value).unwrap();
            (name.as_str(), credentials.realm, credentials.nonce)
        })
        .collect();
    assert_eq!(
        answered,
        [
            ("Proxy-Authorization", "edge".to_string(), "e2".to_string()),
            ("Proxy-Authorization", "core".to_string(), "c1".to_string()),
        ]
    );
    for (_, value) in &headers {
        assert_eq!(verify(value, "REGISTER", PASSWORD), Ok(true));
    }
}

#[test]
fn unusable_responses_are_errors() {
    let mut auth = alice(PASSWORD);
    let ok = Response::new(200, "OK");
    assert_eq!(
        auth.respond(&register(), &ok),
        Err(AuthError::NotAChallenge { status: 200 })
    );
    let mut basic_only = Response::new(401, "Unauthorized");
    basic_only
        .headers
        .push("WWW-Authenticate", r#"Basic realm="x""#);
    basic_only.headers.push(
        "WWW-Authenticate",
        "Digest realm=\"x\", nonce=\"unterminated",
    );
    assert_eq!(
        auth.respond(&register(), &basic_only),
        Err(AuthError::NoUsableChallenge)
    );
    // A 401 whose challenge sits in Proxy-Authenticate is not answered either.
    let mut misplaced = Response::new(401, "Unauthorized");
    misplaced
        .headers
        .push("Proxy-Authenticate", r#"Digest realm="x", nonce="n""#);
    assert_eq!(
        auth.respond(&register(), &misplaced),
        Err(AuthError::NoUsableChallenge)
    );
}

#[test]
fn cnonces_follow_the_seed() {
    let mut response = Response::new(401, "Unauthorized");
    response.headers.push(
        "WWW-Authenticate",
        r#"Digest realm="r", nonce="n", qop=auth"#,
    );
    let cnonce_for = |seed: u64| {
        let mut auth = Authenticator::new(DigestCredentials::new("alice", PASSWORD), seed);
        let headers = auth.respond(&register(), &response).unwrap();
        parse_authorization(&headers[0].1).unwrap().cnonce.unwrap()
    };
    assert_eq!(cnonce_for(7), cnonce_for(7));
    assert_ne!(cnonce_for(7), cnonce_for(8));
    let cnonce = cnonce_for(7);
    assert_eq!(cnonce.len(), 32);
    assert!(cnonce.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn hostile_header_values_never_panic() {
    let inputs = [
        "",
        ",,,,",
        "Digest",
        "Digest ,",
        "Digest realm",
        "Digest realm=\"",
        "Digest realm=\"\\",
        "Digest realm=\"r\"nonce=\"n\"",
        "=====",
        "Digest realm=\u{e9}\u{1F600}, nonce=\"\u{1F600}\"",
        "\"Digest\"",
        "Digest \u{0}",
    ];
    // None of these is a usable challenge or credentials: each must come back as an error
    // or, for a line with no challenge in it at all, as no challenge (never a panic, and
    // never a half-parsed challenge we would answer).
    for input in inputs {
        let challenges = parse_challenges(input, false);
        assert!(
            challenges.as_ref().map_or(true, Vec::is_empty),
            "{input:?} parsed as a challenge: {challenges:?}"
        );
        assert!(
            verify(input, "REGISTER", PASSWORD).is_err(),
            "{input:?} verified: {:?}",
            verify(input, "REGISTER", PASSWORD)
        );
    }
    let huge = format!("Digest realm=\"r\", nonce=\"{}\"", "n".repeat(100_000));
    assert!(matches!(
        parse_challenges(&huge, false),
        Err(AuthError::Malformed(_))
    ));
}
