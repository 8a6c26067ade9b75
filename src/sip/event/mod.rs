//! SIP-specific event notification (RFC 6665) and what sipterm does with it, sans-IO:
//! subscribing to other people's presence, dialog state and our voicemail (`subscription`),
//! publishing our own state (`publication`, RFC 3903), answering subscriptions to our state
//! (`notifier`), and the bodies: PIDF / dialog-info (`presence`), message-summary (`mwi`).

pub mod mwi;
pub mod notifier;
pub mod presence;
pub mod publication;
pub mod subscription;
pub mod xml;

/// The event packages sipterm speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Package {
    /// RFC 3856, bodies in PIDF (RFC 3863).
    Presence,
    /// RFC 4235, bodies in dialog-info.
    Dialog,
    /// RFC 3842, bodies in message-summary.
    MessageSummary,
}

impl Package {
    pub fn as_str(self) -> &'static str {
        match self {
            Package::Presence => "presence",
            Package::Dialog => "dialog",
            Package::MessageSummary => "message-summary",
        }
    }

    /// The body type of its NOTIFYs (and PUBLISHes).
    pub fn content_type(self) -> &'static str {
        match self {
            Package::Presence => "application/pidf+xml",
            Package::Dialog => "application/dialog-info+xml",
            Package::MessageSummary => "application/simple-message-summary",
        }
    }

    /// From an Event header value (`presence;id=1` is `presence`). None: not one of ours.
    pub fn from_event_header(value: &str) -> Option<Package> {
        let token = value.split(';').next().unwrap_or("").trim();
        [Package::Presence, Package::Dialog, Package::MessageSummary]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(token))
    }
}

/// A Subscription-State header (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    Active {
        expires: Option<u32>,
    },
    Pending {
        expires: Option<u32>,
    },
    Terminated {
        reason: Option<String>,
        retry_after: Option<u32>,
    },
}

impl SubscriptionState {
    pub fn parse(value: &str) -> Option<SubscriptionState> {
        let mut parts = value.split(';').map(str::trim);
        let state = parts.next()?.to_ascii_lowercase();
        let mut expires = None;
        let mut reason = None;
        let mut retry_after = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "expires" => expires = value.trim().parse().ok(),
                "reason" => reason = Some(value.trim().to_ascii_lowercase()),
                "retry-after" => retry_after = value.trim().parse().ok(),
                _ => {}
            }
        }
        match state.as_str() {
            "active" => Some(SubscriptionState::Active { expires }),
            "pending" => Some(SubscriptionState::Pending { expires }),
            "terminated" => Some(SubscriptionState::Terminated {
                reason,
                retry_after,
            }),
            _ => None,
        }
    }
}

/// What a busy lamp shows for a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Availability {
    /// Nothing known yet (no NOTIFY, or the subscription failed).
    #[default]
    Unknown,
    Available,
    /// In a call, or marked busy / do-not-disturb.
    Busy,
    /// A call is ringing in (dialog state early).
    Ringing,
    /// Not online (PIDF basic `closed`).
    Offline,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Unknown => "unknown",
            Availability::Available => "available",
            Availability::Busy => "busy",
            Availability::Ringing => "ringing",
            Availability::Offline => "offline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_headers() {
        assert_eq!(
            SubscriptionState::parse("active;expires=600"),
            Some(SubscriptionState::Active { expires: Some(600) })
        );
        assert_eq!(
            SubscriptionState::parse("terminated; reason=timeout ;retry-after=20"),
            Some(SubscriptionState::Terminated {
                reason: Some("timeout".into()),
                retry_after: Some(20)
            })
        );
        assert_eq!(SubscriptionState::parse("bogus"), None);
        assert_eq!(
            Package::from_event_header("Presence;id=3"),
            Some(Package::Presence)
        );
        assert_eq!(Package::from_event_header("refer"), None);
    }
}
