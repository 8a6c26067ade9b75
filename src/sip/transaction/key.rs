//! Transaction matching (RFC 3261 §17.1.3 and §17.2.3).
//!
//! The few header fields matching needs (top Via branch and sent-by, CSeq, tags) are read from
//! the raw header text by the small private helpers at the bottom of this file. They are a
//! stop-gap until the typed headers (`Headers::top_via()` and friends) land; every helper returns
//! `None` on anything it cannot read, so a malformed message becomes a stray, never a panic.

use crate::sip::message::{Headers, Method, Request, Response};

/// The RFC 3261 magic cookie that marks a branch as globally unique.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Longest key component we keep. Longer values are hostile or broken; such messages are
/// treated as unmatched instead of being copied into long-lived keys.
const MAX_KEY_PART_LEN: usize = 512;

/// The key of a server transaction, built from a received request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TsxKey {
    /// RFC 3261: the top Via carries a branch starting with the magic cookie.
    Rfc3261 {
        branch: String,
        /// Lower-cased host[:port] of the top Via.
        sent_by: String,
        /// The request method with ACK folded into INVITE (an ACK for a non-2xx final belongs to
        /// the INVITE transaction). CANCEL stays CANCEL: it is a transaction of its own.
        method: Method,
    },
    /// RFC 2543 fallback (§17.2.3) for branches without the cookie.
    Rfc2543 {
        request_uri: String,
        /// The To tag for non-INVITE requests. Left out for INVITE and ACK because the ACK
        /// carries the tag of our response, which the INVITE did not have.
        to_tag: Option<String>,
        from_tag: Option<String>,
        call_id: String,
        cseq: u32,
        /// As in `Rfc3261`: ACK folded into INVITE.
        method: Method,
        /// The whole top Via value, whitespace removed.
        top_via: String,
    },
}

impl TsxKey {
    /// The server transaction key of a request, or `None` when the request lacks a readable
    /// top Via or CSeq.
    pub fn for_server(request: &Request) -> Option<TsxKey> {
        let method = fold_ack(&request.method);
        Self::for_server_with_method(request, method)
    }

    /// The key of the INVITE server transaction a CANCEL refers to (RFC 3261 §9.2: same
    /// matching as for the CANCEL itself, with the method INVITE).
    pub fn for_cancelled_invite(cancel: &Request) -> Option<TsxKey> {
        Self::for_server_with_method(cancel, Method::Invite)
    }

    fn for_server_with_method(request: &Request, method: Method) -> Option<TsxKey> {
        let via = TopVia::of(&request.headers)?;
        let (cseq, _) = cseq(&request.headers)?;
        match via.branch.filter(|b| b.starts_with(BRANCH_COOKIE)) {
            Some(branch) => Some(TsxKey::Rfc3261 {
                branch: bounded(branch)?,
                sent_by: bounded(&via.sent_by)?.to_ascii_lowercase(),
                method,
            }),
            None => {
                let to_tag = if method == Method::Invite {
                    None
                } else {
                    tag(request.headers.get("To")?)
                };
                Some(TsxKey::Rfc2543 {
                    request_uri: bounded(&request.uri.to_string())?,
                    to_tag: bounded_optional(to_tag)?,
                    from_tag: bounded_optional(tag(request.headers.get("From")?))?,
                    call_id: bounded(request.headers.get("Call-ID")?)?,
                    cseq,
                    method,
                    top_via: bounded(&via.raw.split_whitespace().collect::<String>())?,
                })
            }
        }
    }
}

/// The key of a client transaction: branch of the top Via plus the CSeq method (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: Method,
}

impl ClientKey {
    /// The key under which a request we send waits for its responses. The method is the
    /// request's own (CSeq carries the same).
    pub fn for_request(request: &Request) -> Option<ClientKey> {
        let via = TopVia::of(&request.headers)?;
        Some(ClientKey {
            branch: bounded(via.branch?)?,
            method: request.method.clone(),
        })
    }

    /// The key a received response matches.
    pub fn for_response(response: &Response) -> Option<ClientKey> {
        let via = TopVia::of(&response.headers)?;
        let (_, method) = cseq(&response.headers)?;
        Some(ClientKey {
            branch: bounded(via.branch?)?,
            method,
        })
    }
}

fn fold_ack(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

fn bounded(value: &str) -> Option<String> {
    (value.len() <= MAX_KEY_PART_LEN).then(|| value.to_string())
}

/// `Some(None)` for an absent value, `None` for an oversized one.
fn bounded_optional(value: Option<&str>) -> Option<Option<String>> {
    match value {
        Some(value) => bounded(value).map(Some),
        None => Some(None),
    }
}

/// The parts of the top Via that matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopVia<'a> {
    /// The whole top Via value (first comma-separated element of the first Via line).
    pub raw: &'a str,
    /// host[:port], inner whitespace removed.
    pub sent_by: String,
    pub branch: Option<&'a str>,
}

impl<'a> TopVia<'a> {
    /// Reads the top Via, e.g. `SIP/2.0/UDP pc33.atlanta.com:5060;branch=z9hG4bK776asdhds`.
    pub(crate) fn of(headers: &'a Headers) -> Option<TopVia<'a>> {
        let line = headers.get("Via")?;
        let raw = split_outside_quotes(line, ',').next()?.trim();
        let mut parts = split_outside_quotes(raw, ';');
        let protocol_and_sent_by = parts.next()?;
        // "SIP / 2.0 / UDP host : port": the sent-by follows the transport token that comes
        // after the last '/'.
        let (_, transport_and_sent_by) = protocol_and_sent_by.rsplit_once('/')?;
        let (_transport, sent_by) = transport_and_sent_by
            .trim()
            .split_once(char::is_whitespace)?;
        let sent_by: String = sent_by.split_whitespace().collect();
        if sent_by.is_empty() {
            return None;
        }
        let branch = parts.find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("branch")
                .then(|| value.trim())
        });
        Some(TopVia {
            raw,
            sent_by,
            branch,
        })
    }
}

/// The CSeq number and method, e.g. `4711 INVITE`.
pub(crate) fn cseq(headers: &Headers) -> Option<(u32, Method)> {
    let mut words = headers.get("CSeq")?.split_whitespace();
    let number = words.next()?.parse().ok()?;
    let method = words.next()?;
    if words.next().is_some() || method.len() > MAX_KEY_PART_LEN {
        return None;
    }
    Some((number, Method::from_token(method)))
}

/// The `tag` parameter of a From or To value (`"A" <sip:a@x;p=1>;tag=12`): header parameters
/// follow the closing '>' of a name-addr, or the first ';' of a bare addr-spec.
pub(crate) fn tag(value: &str) -> Option<&str> {
    let params = match find_outside_quotes(value, '<') {
        Some(open) => {
            let after_open = value.get(open..)?;
            let close = after_open.find('>')?;
            after_open.get(close + 1..)?
        }
        None => value,
    };
    split_outside_quotes(params, ';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| value.trim())
    })
}

fn find_outside_quotes(text: &str, wanted: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == wanted && !in_quotes => return Some(at),
            _ => {}
        }
    }
    None
}

/// Splits on `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match find_outside_quotes(current, separator) {
            Some(at) => {
                rest = current.get(at + separator.len_utf8()..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::Uri;

    fn request(method: Method, via: &str) -> Request {
        let mut request = Request::new(method, Uri::sip(Some("bob"), "biloxi.com", None));
        request.headers.push("Via", via);
        request
            .headers
            .push("From", "Alice <sip:alice@atlanta.com>;tag=1928301774");
        request.headers.push("To", "Bob <sip:bob@biloxi.com>");
        request.headers.push("Call-ID", "a84b4c76e66710");
        request.headers.push("CSeq", "314159 INVITE");
        request
    }

    #[test]
    fn top_via_reads_sent_by_and_branch_with_odd_spacing() {
        let mut headers = Headers::new();
        headers.push(
            "v",
            "SIP / 2.0 / UDP first.example.com: 4000;ttl=16 ;branch = z9hG4bKa7c6a8dlze.1, SIP/2.0/TCP second",
        );
        let via = TopVia::of(&headers).expect("readable Via");
        assert_eq!(via.sent_by, "first.example.com:4000");
        assert_eq!(via.branch, Some("z9hG4bKa7c6a8dlze.1"));
    }

    #[test]
    fn unreadable_via_or_cseq_gives_no_key() {
        let mut no_via = request(Method::Invite, "x");
        no_via.headers.remove("Via");
        assert_eq!(TsxKey::for_server(&no_via), None);

        let garbage_via = request(Method::Invite, "garbage");
        assert_eq!(TsxKey::for_server(&garbage_via), None);

        let mut bad_cseq = request(Method::Invite, "SIP/2.0/UDP h;branch=z9hG4bK1");
        bad_cseq.headers.set("CSeq", "notanumber INVITE");
        assert_eq!(TsxKey::for_server(&bad_cseq), None);
    }

    #[test]
    fn ack_folds_into_invite_but_cancel_does_not() {
        let via = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
        let invite = TsxKey::for_server(&request(Method::Invite, via));
        let ack = TsxKey::for_server(&request(Method::Ack, via));
        let cancel = TsxKey::for_server(&request(Method::Cancel, via));
        assert!(invite.is_some());
        assert_eq!(invite, ack);
        assert_ne!(invite, cancel);
        assert_eq!(
            TsxKey::for_cancelled_invite(&request(Method::Cancel, via)),
            invite
        );
    }

    #[test]
    fn same_branch_from_another_sent_by_is_another_transaction() {
        let a = TsxKey::for_server(&request(
            Method::Invite,
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        ));
        let b = TsxKey::for_server(&request(
            Method::Invite,
            "SIP/2.0/UDP b.example.com;branch=z9hG4bK1",
        ));
        assert_ne!(a, b);
    }

    #[test]
    fn branch_without_cookie_uses_rfc_2543_fields() {
        let via = "SIP/2.0/UDP old.example.com;branch=1234";
        let invite = TsxKey::for_server(&request(Method::Invite, via));
        assert!(matches!(invite, Some(TsxKey::Rfc2543 { .. })));

        // The ACK carries the To tag of our response; it still matches the INVITE.
        let mut ack = request(Method::Ack, via);
        ack.headers
            .set("To", "Bob <sip:bob@biloxi.com>;tag=a6c85cf");
        ack.headers.set("CSeq", "314159 ACK");
        assert_eq!(TsxKey::for_server(&ack), invite);

        // Another Call-ID is another transaction.
        let mut other = request(Method::Invite, via);
        other.headers.set("Call-ID", "different");
        assert_ne!(TsxKey::for_server(&other), invite);
    }

    #[test]
    fn tag_is_read_from_header_params_not_uri_params() {
        assert_eq!(tag("<sip:a@x;tag=uri>;tag=hdr"), Some("hdr"));
        assert_eq!(tag("\"a<b>;tag=q\" <sip:a@x>;tag=real"), Some("real"));
        assert_eq!(tag("sip:a@x;tag=bare"), Some("bare"));
        assert_eq!(tag("<sip:a@x>"), None);
    }

    #[test]
    fn client_key_pairs_request_with_response_by_branch_and_cseq_method() {
        let invite = request(Method::Invite, "SIP/2.0/UDP h;branch=z9hG4bKabc");
        let mut response = Response::new(200, "OK");
        response
            .headers
            .push("Via", "SIP/2.0/UDP h;branch=z9hG4bKabc;received=1.2.3.4");
        response.headers.push("CSeq", "314159 INVITE");
        assert_eq!(
            ClientKey::for_request(&invite),
            ClientKey::for_response(&response)
        );
        response.headers.set("CSeq", "314159 CANCEL");
        assert_ne!(
            ClientKey::for_request(&invite),
            ClientKey::for_response(&response)
        );
    }

    #[test]
    fn oversized_branch_is_not_keyed() {
        let long = format!("SIP/2.0/UDP h;branch=z9hG4bK{}", "x".repeat(4096));
        assert_eq!(TsxKey::for_server(&request(Method::Invite, &long)), None);
    }
}
