//! Dialog state (RFC 3261 §12): identifiers, sequence numbers, remote target and route set, and
//! the construction of requests inside the dialog.

use super::header::NameAddr;
use super::message::{Method, Request, Response};
use super::uri::Uri;

#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From/To value (name-addr with our tag printed separately).
    pub local_uri: NameAddr,
    pub remote_uri: NameAddr,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go: the peer's Contact.
    pub remote_target: Uri,
    /// Route set, in the order requests must carry it.
    pub route_set: Vec<NameAddr>,
    pub local_contact: Uri,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    #[error("message lacks {0}")]
    Missing(&'static str),
}

impl Dialog {
    /// The UAC side, from our INVITE and a response carrying a To tag (1xx or 2xx). The route
    /// set is the Record-Route list reversed (RFC 3261 §12.1.2).
    pub fn from_uac(
        request: &Request,
        response: &Response,
        local_contact: Uri,
    ) -> Result<Dialog, DialogError> {
        let from = request
            .headers
            .from()
            .map_err(|_| DialogError::Missing("From"))?;
        let to = response
            .headers
            .to()
            .map_err(|_| DialogError::Missing("To"))?;
        let remote_tag = to.tag().ok_or(DialogError::Missing("To tag"))?.to_string();
        let local_tag = from
            .tag()
            .ok_or(DialogError::Missing("From tag"))?
            .to_string();
        let call_id = request
            .headers
            .call_id()
            .map_err(|_| DialogError::Missing("Call-ID"))?
            .to_string();
        let local_seq = request
            .headers
            .cseq()
            .map(|c| c.seq)
            .map_err(|_| DialogError::Missing("CSeq"))?;
        let remote_target = response
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri)
            .unwrap_or_else(|| request.uri.clone());
        let mut route_set = response.headers.record_routes().unwrap_or_default();
        route_set.reverse();
        Ok(Dialog {
            call_id,
            local_tag,
            remote_tag,
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            local_seq,
            remote_seq: None,
            remote_target,
            route_set,
            local_contact,
        })
    }

    /// The UAS side, from a request that creates a dialog and the tag we chose. The route set
    /// is the Record-Route list in order (RFC 3261 §12.1.1).
    pub fn from_uas(
        request: &Request,
        local_tag: &str,
        local_contact: Uri,
    ) -> Result<Dialog, DialogError> {
        let from = request
            .headers
            .from()
            .map_err(|_| DialogError::Missing("From"))?;
        let to = request
            .headers
            .to()
            .map_err(|_| DialogError::Missing("To"))?;
        let remote_tag = from.tag().unwrap_or_default().to_string();
        let call_id = request
            .headers
            .call_id()
            .map_err(|_| DialogError::Missing("Call-ID"))?
            .to_string();
        let remote_seq = request
            .headers
            .cseq()
            .map(|c| c.seq)
            .map_err(|_| DialogError::Missing("CSeq"))?;
        let remote_target = request
            .headers
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri)
            // RFC 2543 requests may omit Contact (RFC 4475 §3.4.1): the From URI is the best target.
            .unwrap_or_else(|| from.uri.clone());
        Ok(Dialog {
            call_id,
            local_tag: local_tag.to_string(),
            remote_tag,
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            local_seq: 0,
            remote_seq: Some(remote_seq),
            remote_target,
            route_set: request.headers.record_routes().unwrap_or_default(),
            local_contact,
        })
    }

    /// Does this message belong to us? (Call-ID and both tags; for requests the peer's From tag
    /// is its tag.)
    pub fn matches_request(&self, request: &Request) -> bool {
        let Ok(call_id) = request.headers.call_id() else {
            return false;
        };
        let from_tag = request
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string));
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        call_id == self.call_id
            && from_tag.as_deref() == Some(&self.remote_tag)
            && to_tag.as_deref() == Some(&self.local_tag)
    }

    /// A new request in this dialog. ACK and CANCEL reuse the INVITE's number: pass `seq`.
    pub fn request(&mut self, method: Method, seq: Option<u32>) -> Request {
        let seq = match seq {
            Some(seq) => seq,
            None => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        let mut request = Request::new(method.clone(), self.remote_target.clone());
        match self.route_set.split_first() {
            // A strict router (RFC 2543, no `lr`) first in the route set (RFC 3261 §12.2.1.1):
            // it routes by the Request-URI, so that is its URI (without the parameters a
            // Request-URI may not carry); the rest of the route set follows in Route, and the
            // remote target goes last so that the last strict router can put it back.
            Some((first, rest)) if first.uri.param("lr").is_none() => {
                let mut uri = first.uri.clone();
                uri.remove_param("method");
                uri.headers.clear();
                request.uri = uri;
                for route in rest {
                    request.headers.push("Route", route.to_string());
                }
                request
                    .headers
                    .push("Route", format!("<{}>", self.remote_target));
            }
            // Loose routing: the Request-URI is the remote target, the route set goes in Route.
            _ => {
                for route in &self.route_set {
                    request.headers.push("Route", route.to_string());
                }
            }
        }
        request
            .headers
            .push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        let to = if self.remote_tag.is_empty() {
            self.remote_uri.to_string()
        } else {
            format!("{};tag={}", self.remote_uri, self.remote_tag)
        };
        request.headers.push("To", to);
        request.headers.push("Call-ID", self.call_id.clone());
        request.headers.push("CSeq", format!("{seq} {method}"));
        if matches!(
            method,
            Method::Invite | Method::Refer | Method::Notify | Method::Update | Method::Subscribe
        ) {
            request
                .headers
                .push("Contact", format!("<{}>", self.local_contact));
        }
        request
    }

    /// The URI the next hop is taken from (RFC 3261 §8.1.2): the first route, else the remote
    /// target. (A strict router's URI is also the Request-URI then: the same hop.)
    pub fn next_hop_uri(&self) -> &Uri {
        self.route_set
            .first()
            .map(|r| &r.uri)
            .unwrap_or(&self.remote_target)
    }

    /// A target refresh (re-INVITE/UPDATE 2xx or request) may move the remote target.
    pub fn refresh_target(&mut self, contact: Option<Uri>) {
        if let Some(uri) = contact {
            self.remote_target = uri;
        }
    }
}

fn without_tag(mut addr: NameAddr) -> NameAddr {
    addr.params
        .retain(|(name, _)| !name.eq_ignore_ascii_case("tag"));
    addr
}
