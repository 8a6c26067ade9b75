//! Per-account client state: which realms we hold a nonce for, their nonce counts and cnonces,
//! and how the last answer for each came about, so that a wrong password ends in an error
//! instead of an endless 401 loop.

use super::digest::{authorization, parse_authorization};
use super::{AuthError, Challenge, DigestCredentials, challenges_of};
use crate::sip::message::{Request, Response};

/// Most realms remembered per account (registrar plus a couple of proxies is the usual case);
/// the oldest is forgotten beyond this so that hostile responses cannot grow the table.
const MAX_REALMS: usize = 8;

/// How the last answer for a realm was produced; decides whether another challenge for the
/// same realm deserves a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerKind {
    /// Answer to a challenge: a new non-stale challenge means the password is wrong.
    Challenged,
    /// Second answer after `stale=true`: any new challenge means give up.
    StaleRetry,
    /// Nonce re-used without a challenge: the server may have forgotten it, so one fresh
    /// challenge is answered whatever its `stale` flag says.
    Preemptive,
}

#[derive(Debug, Clone)]
struct RealmState {
    challenge: Challenge,
    cnonce: String,
    /// The nonce count of the last answer sent with this nonce.
    nc: u32,
    last_answer: AnswerKind,
}

/// Answers Digest challenges for one account across requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    credentials: DigestCredentials,
    /// SplitMix64 state for cnonces. The caller seeds it (from the OS at the edge) so that this
    /// core stays deterministic under test.
    rng_state: u64,
    realms: Vec<RealmState>,
}

impl Authenticator {
    /// `seed` drives cnonce generation; give each run a different one (e.g. from `rand` in the
    /// driver) so that cnonces do not repeat across restarts.
    pub fn new(creds: DigestCredentials, seed: u64) -> Self {
        Authenticator {
            credentials: creds,
            rng_state: seed,
            realms: Vec::new(),
        }
    }

    pub fn credentials(&self) -> &DigestCredentials {
        &self.credentials
    }

    /// Given the request that was challenged and its 401/407, returns the credential headers
    /// for the retried request. The list is complete: the retry carries these instead of every
    /// Authorization and Proxy-Authorization header of the challenged request (answers for
    /// realms not challenged this time are repeated with the next nonce count, unknown ones
    /// copied). Every realm challenged is answered, each with its strongest challenge.
    ///
    /// Errors: `NotAChallenge` for other statuses, `NoUsableChallenge` when no Digest challenge
    /// can be answered, `CredentialsRejected` when a realm challenges a request that already
    /// carried our answer to its challenge (after `stale=true` one retry with the new nonce is
    /// allowed). On error the state is unchanged.
    pub fn respond(
        &mut self,
        request: &Request,
        response: &Response,
    ) -> Result<Vec<(String, String)>, AuthError> {
        let proxy = match response.code {
            401 => false,
            407 => true,
            status => return Err(AuthError::NotAChallenge { status }),
        };
        let mut picked: Vec<Challenge> = Vec::new();
        for challenge in challenges_of(&response.headers, response.code) {
            // Sorted strongest first, so the first one per realm is the one to answer.
            if !picked.iter().any(|p| p.realm == challenge.realm) {
                picked.push(challenge);
            }
        }
        if picked.is_empty() {
            return Err(AuthError::NoUsableChallenge);
        }
        let header_name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };

        // Decide for every realm before changing anything, so an error leaves no trace.
        let mut next_kinds = Vec::with_capacity(picked.len());
        for challenge in &picked {
            next_kinds.push(self.next_answer_kind(request, header_name, challenge)?);
        }

        let mut headers = self.carried_over_credentials(request, proxy, &picked);
        let method = request.method.as_str();
        let digest_uri = request.uri.to_string();
        for (challenge, kind) in picked.into_iter().zip(next_kinds) {
            let cnonce = self.next_cnonce();
            // A new nonce restarts the nonce count.
            let value = authorization(
                &challenge,
                &self.credentials,
                method,
                &digest_uri,
                &request.body,
                &cnonce,
                1,
            );
            self.adopt(challenge, cnonce, kind);
            headers.push((header_name.to_string(), value));
        }
        Ok(headers)
    }

    /// Credential headers for a new request (not a retry) to the realms already answered, e.g.
    /// a REGISTER refresh: the known nonces re-used with the next nonce count. Empty until a
    /// first challenge has been answered.
    pub fn preemptive(&mut self, request: &Request) -> Vec<(String, String)> {
        let method = request.method.as_str();
        let digest_uri = request.uri.to_string();
        let mut headers = Vec::with_capacity(self.realms.len());
        for state in &mut self.realms {
            state.nc = state.nc.saturating_add(1);
            state.last_answer = AnswerKind::Preemptive;
            headers.push((
                state.challenge.answer_header_name().to_string(),
                authorization(
                    &state.challenge,
                    &self.credentials,
                    method,
                    &digest_uri,
                    &request.body,
                    &state.cnonce,
                    state.nc,
                ),
            ));
        }
        headers
    }

    /// Forgets every nonce (e.g. after the account's password changed).
    pub fn reset(&mut self) {
        self.realms.clear();
    }

    /// How the answer to `challenge` will count, or `CredentialsRejected` when answering would
    /// loop.
    fn next_answer_kind(
        &self,
        request: &Request,
        header_name: &str,
        challenge: &Challenge,
    ) -> Result<AnswerKind, AuthError> {
        let answered_nonce = request
            .headers
            .get_all(header_name)
            .filter_map(|value| parse_authorization(value).ok())
            .find(|credentials| credentials.realm == challenge.realm)
            .map(|credentials| credentials.nonce);
        let Some(answered_nonce) = answered_nonce else {
            return Ok(AnswerKind::Challenged);
        };
        let last_answer = self
            .state(challenge.proxy, &challenge.realm)
            .filter(|state| state.challenge.nonce == answered_nonce)
            .map(|state| state.last_answer);
        let rejected = || AuthError::CredentialsRejected {
            realm: challenge.realm.clone(),
        };
        match last_answer {
            // The request carried credentials we no longer track (another request already
            // moved this realm to a newer nonce): answer afresh.
            None => Ok(AnswerKind::Challenged),
            Some(AnswerKind::Preemptive) => Ok(AnswerKind::Challenged),
            Some(AnswerKind::Challenged) if challenge.stale => Ok(AnswerKind::StaleRetry),
            Some(AnswerKind::Challenged) | Some(AnswerKind::StaleRetry) => Err(rejected()),
        }
    }

    /// The challenged request's credentials for realms not challenged this time: ours are
    /// recomputed with the next nonce count (a replayed nc may be refused), others copied.
    fn carried_over_credentials(
        &mut self,
        request: &Request,
        proxy: bool,
        replaced: &[Challenge],
    ) -> Vec<(String, String)> {
        let method = request.method.as_str();
        let digest_uri = request.uri.to_string();
        let mut headers = Vec::new();
        for (header_name, is_proxy) in [("Authorization", false), ("Proxy-Authorization", true)] {
            for value in request.headers.get_all(header_name) {
                let parsed = parse_authorization(value).ok();
                let realm = parsed
                    .as_ref()
                    .map(|credentials| credentials.realm.as_str());
                if is_proxy == proxy
                    && replaced
                        .iter()
                        .any(|challenge| Some(challenge.realm.as_str()) == realm)
                {
                    continue;
                }
                let known = parsed.and_then(|credentials| {
                    self.realms.iter_mut().find(|state| {
                        state.challenge.proxy == is_proxy
                            && state.challenge.realm == credentials.realm
                            && state.challenge.nonce == credentials.nonce
                    })
                });
                let value = match known {
                    Some(state) => {
                        state.nc = state.nc.saturating_add(1);
                        authorization(
                            &state.challenge,
                            &self.credentials,
                            method,
                            &digest_uri,
                            &request.body,
                            &state.cnonce,
                            state.nc,
                        )
                    }
                    None => value.to_string(),
                };
                headers.push((header_name.to_string(), value));
            }
        }
        headers
    }

    fn state(&self, proxy: bool, realm: &str) -> Option<&RealmState> {
        self.realms
            .iter()
            .find(|state| state.challenge.proxy == proxy && state.challenge.realm == realm)
    }

    /// Records a new nonce for the challenge's realm, answered once (nc = 1).
    fn adopt(&mut self, challenge: Challenge, cnonce: String, kind: AnswerKind) {
        let fresh = RealmState {
            challenge,
            cnonce,
            nc: 1,
            last_answer: kind,
        };
        let existing = self.realms.iter_mut().find(|state| {
            state.challenge.proxy == fresh.challenge.proxy
                && state.challenge.realm == fresh.challenge.realm
        });
        match existing {
            Some(state) => *state = fresh,
            None => {
                if self.realms.len() >= MAX_REALMS {
                    self.realms.remove(0);
                }
                self.realms.push(fresh);
            }
        }
    }

    /// 128 random-looking bits as 32 hex digits (SplitMix64; unpredictability comes from the
    /// seed, which is all a cnonce needs against a passive observer).
    fn next_cnonce(&mut self) -> String {
        let high = self.next_random();
        let low = self.next_random();
        format!("{high:016x}{low:016x}")
    }

    fn next_random(&mut self) -> u64 {
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Method;
    use crate::sip::uri::Uri;

    fn options() -> Request {
        Request::new(Method::Options, Uri::sip(Some("bob"), "example.org", None))
    }

    fn challenge_for(realm: &str) -> Response {
        let mut response = Response::new(401, "Unauthorized");
        response.headers.push(
            "WWW-Authenticate",
            format!(r#"Digest realm="{realm}", nonce="n-{realm}", qop=auth"#),
        );
        response
    }

    fn realms_of(headers: &[(String, String)]) -> Vec<String> {
        headers
            .iter()
            .filter_map(|(_, value)| parse_authorization(value).ok())
            .map(|credentials| credentials.realm)
            .collect()
    }

    #[test]
    fn remembers_a_bounded_number_of_realms_forgetting_the_oldest() {
        let mut auth = Authenticator::new(DigestCredentials::new("alice", "pw"), 1);
        for index in 0..MAX_REALMS + 2 {
            auth.respond(&options(), &challenge_for(&format!("realm{index}")))
                .unwrap();
        }
        let realms = realms_of(&auth.preemptive(&options()));
        assert_eq!(realms.len(), MAX_REALMS);
        assert!(!realms.contains(&"realm0".to_string()));
        assert!(!realms.contains(&"realm1".to_string()));
        assert!(realms.contains(&format!("realm{}", MAX_REALMS + 1)));
    }

    #[test]
    fn credentials_we_did_not_produce_are_carried_over_verbatim() {
        let mut auth = Authenticator::new(DigestCredentials::new("alice", "pw"), 1);
        let foreign =
            r#"Digest username="x", realm="elsewhere", nonce="z", uri="sip:a", response="00""#;
        let mut request = options();
        request.headers.push("Authorization", foreign);
        request.headers.push("Authorization", "Bearer abc");
        let headers = auth.respond(&request, &challenge_for("here")).unwrap();
        let values: Vec<_> = headers.iter().map(|(_, value)| value.as_str()).collect();
        assert_eq!(values[..2], [foreign, "Bearer abc"]);
        assert_eq!(realms_of(&headers[2..]), ["here"]);
    }

    #[test]
    fn reset_forgets_every_nonce() {
        let mut auth = Authenticator::new(DigestCredentials::new("alice", "pw"), 1);
        auth.respond(&options(), &challenge_for("here")).unwrap();
        assert_eq!(auth.preemptive(&options()).len(), 1);
        auth.reset();
        assert!(auth.preemptive(&options()).is_empty());
    }
}
