//! Publishing our own state to a presence server (RFC 3903 PUBLISH): the first PUBLISH
//! carries the document, the server's SIP-ETag names it; changes go with SIP-If-Match, and
//! so do refreshes (without a body) before it expires. A server that does not take PUBLISH
//! (405, 501, 489) is left alone from then on.

use std::time::{Duration, Instant};

use super::Package;
use crate::sip::message::{Method, Request, Response};
use crate::sip::uri::Uri;

pub const DEFAULT_EXPIRES: u32 = 600;
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(900);

#[derive(Debug)]
pub struct Publication {
    package: Package,
    /// Our AOR: the Request-URI, From and To of a PUBLISH.
    aor: Uri,
    from: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    etag: Option<String>,
    /// The document the server should have (None: nothing published yet).
    document: Option<String>,
    /// A newer document than the one in flight.
    queued: bool,
    pending: Option<Request>,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The server refused PUBLISH for good.
    unsupported: bool,
}

impl Publication {
    pub fn new(
        package: Package,
        aor: Uri,
        from: String,
        call_id: String,
        from_tag: String,
    ) -> Self {
        Publication {
            package,
            aor,
            from,
            call_id,
            from_tag,
            cseq: 0,
            expires: DEFAULT_EXPIRES,
            etag: None,
            document: None,
            queued: false,
            pending: None,
            refresh_at: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            unsupported: false,
        }
    }

    pub fn is_unsupported(&self) -> bool {
        self.unsupported
    }

    /// The PUBLISH waiting for its response, as built (for a digest retry).
    pub fn pending_request(&self) -> Option<Request> {
        self.pending.clone()
    }

    pub fn package(&self) -> Package {
        self.package
    }

    fn request(&mut self, body: Option<&str>, expires: u32) -> Request {
        self.cseq += 1;
        let mut request = Request::new(Method::Publish, self.aor.clone());
        request
            .headers
            .push("From", format!("{};tag={}", self.from, self.from_tag));
        request.headers.push("To", format!("<{}>", self.aor));
        request.headers.push("Call-ID", self.call_id.clone());
        request
            .headers
            .push("CSeq", format!("{} PUBLISH", self.cseq));
        request.headers.push("Event", self.package.as_str());
        request.headers.push("Expires", expires.to_string());
        if let Some(etag) = &self.etag {
            request.headers.push("SIP-If-Match", etag.clone());
        }
        if let Some(body) = body {
            request
                .headers
                .push("Content-Type", self.package.content_type());
            request.body = body.as_bytes().to_vec();
        }
        request
    }

    /// Publishes `document` (now, or once the PUBLISH in flight is answered).
    pub fn publish(&mut self, document: String) -> Option<Request> {
        if self.unsupported || self.document.as_deref() == Some(document.as_str()) {
            return None;
        }
        self.document = Some(document);
        if self.pending.is_some() {
            self.queued = true;
            return None;
        }
        self.send_document()
    }

    fn send_document(&mut self) -> Option<Request> {
        let document = self.document.clone()?;
        let request = self.request(Some(&document), self.expires);
        self.pending = Some(request.clone());
        self.refresh_at = None;
        self.retry_at = None;
        Some(request)
    }

    /// Removes our state from the server (Expires: 0), when something is published.
    pub fn remove(&mut self) -> Option<Request> {
        self.document = None;
        self.refresh_at = None;
        self.retry_at = None;
        let _etag = self.etag.as_ref()?;
        if self.pending.is_some() || self.unsupported {
            return None;
        }
        let request = self.request(None, 0);
        self.etag = None;
        self.pending = Some(request.clone());
        Some(request)
    }

    pub fn note_resent(&mut self, request: &Request) {
        if let Ok(cseq) = request.headers.cseq() {
            self.cseq = self.cseq.max(cseq.seq);
        }
        self.pending = Some(request.clone());
    }

    /// The final response to our PUBLISH; may give the next one to send.
    pub fn handle_response(&mut self, response: &Response, now: Instant) -> Option<Request> {
        if !response.is_final() {
            return None;
        }
        let sent = self.pending.take()?;
        if response.is_success() {
            self.backoff = FIRST_BACKOFF;
            if sent.headers.expires().ok().flatten() == Some(0) {
                return None;
            }
            self.etag = response
                .headers
                .get("SIP-ETag")
                .map(|e| e.trim().to_string());
            let granted = response
                .headers
                .expires()
                .ok()
                .flatten()
                .unwrap_or(self.expires)
                .max(1);
            let secs = u64::from(granted);
            let refresh = if secs > 64 {
                secs - 32
            } else {
                (secs / 2).max(1)
            };
            self.refresh_at = Some(now + Duration::from_secs(refresh));
            if std::mem::take(&mut self.queued) {
                return self.send_document();
            }
            return None;
        }
        match response.code {
            // The server lost our entity tag: publish the whole document again.
            412 => {
                self.etag = None;
                self.send_document()
            }
            423 => {
                let min = response.headers.min_expires()?;
                if min <= self.expires {
                    return None;
                }
                self.expires = min;
                self.send_document()
            }
            405 | 501 | 489 => {
                self.unsupported = true;
                None
            }
            _ => {
                self.etag = None;
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }

    pub fn handle_failure(&mut self, now: Instant) {
        self.pending = None;
        self.etag = None;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() || self.unsupported {
            return None;
        }
        [self.refresh_at, self.retry_at].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        if self.pending.is_some() || self.unsupported {
            return None;
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            return self.send_document();
        }
        if self.refresh_at.is_some_and(|at| now >= at) {
            self.refresh_at = None;
            if self.etag.is_none() {
                return self.send_document();
            }
            let request = self.request(None, self.expires);
            self.pending = Some(request.clone());
            return Some(request);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::build_response;

    fn publication() -> Publication {
        Publication::new(
            Package::Presence,
            "sip:alice@example.com".parse().expect("uri"),
            "<sip:alice@example.com>".into(),
            "cid".into(),
            "tag".into(),
        )
    }

    fn ok(request: &Request, etag: &str, expires: u32) -> Response {
        let mut r = build_response(request, 200, "OK", None, "t");
        r.headers.push("SIP-ETag", etag);
        r.headers.push("Expires", expires.to_string());
        r
    }

    #[test]
    fn etag_flow_refresh_modify_and_412() {
        let t0 = crate::test_clock::t0();
        let mut p = publication();
        let first = p.publish("<a/>".into()).expect("sent");
        assert!(first.headers.get("SIP-If-Match").is_none());
        assert_eq!(first.body, b"<a/>");
        // A change while the first is in flight waits for it.
        assert_eq!(p.publish("<b/>".into()), None);
        let second = p
            .handle_response(&ok(&first, "e1", 300), t0)
            .expect("queued one goes");
        assert_eq!(second.headers.get("SIP-If-Match"), Some("e1"));
        assert_eq!(second.body, b"<b/>");
        assert_eq!(p.handle_response(&ok(&second, "e2", 300), t0), None);
        // The refresh carries no body.
        let due = p.poll_timeout().expect("refresh due");
        assert_eq!(due, t0 + Duration::from_secs(268));
        let refresh = p.handle_timeout(due).expect("refresh");
        assert!(refresh.body.is_empty());
        assert_eq!(refresh.headers.get("SIP-If-Match"), Some("e2"));
        // The server forgot the tag: the whole document again, without If-Match.
        let again = p
            .handle_response(
                &build_response(&refresh, 412, "Conditional Request Failed", None, "t"),
                due,
            )
            .expect("full document");
        assert!(again.headers.get("SIP-If-Match").is_none());
        assert_eq!(again.body, b"<b/>");
        // The same document twice is not published twice.
        p.handle_response(&ok(&again, "e3", 300), due);
        assert_eq!(p.publish("<b/>".into()), None);
        let gone = p.remove().expect("removal");
        assert_eq!(gone.headers.get("Expires"), Some("0"));
    }

    #[test]
    fn a_server_without_publish_is_left_alone() {
        let mut p = publication();
        let first = p.publish("<a/>".into()).expect("sent");
        let refused = build_response(&first, 405, "Method Not Allowed", None, "t");
        assert_eq!(p.handle_response(&refused, crate::test_clock::t0()), None);
        assert!(p.is_unsupported());
        assert_eq!(p.publish("<b/>".into()), None);
        assert_eq!(p.poll_timeout(), None);
    }
}
