//! What the engine tells its front ends (TUI, headless). One stream of small events; the
//! headless front end prints each as one JSON line.

use serde::{Serialize, Serializer};

pub use crate::sip::registration::RegistrationState;
pub use crate::sip::ua::CallState;

/// A call's state goes on the wire as the word `CallState::as_str` gives (`"confirmed"`).
impl Serialize for CallState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A registration's state goes on the wire as `RegistrationState::as_str` (`"registered"`).
impl Serialize for RegistrationState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    In,
    Out,
}

/// An account and its SIP address, in `ready` and `account` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountListen {
    pub name: String,
    pub listen: String,
}

/// An instant message in or out (`message` event): `dir` in with the text; out once with
/// `status` `sending` (and the text), then `delivered` or `failed` with the response code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct MessageEvent {
    pub account: String,
    pub dir: Direction,
    /// Our message number (outgoing messages; per account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The other side's URI.
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// `Media` is the big one (a few hundred bytes), sent every 2 s per call: boxing it would
// cost every reader a dereference for nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The engine is up; `listen` is the address really bound (port 0 resolved).
    Ready {
        listen: String,
        /// The TLS listener's address, when `[sip] tls_listen` is set and it started.
        #[serde(skip_serializing_if = "Option::is_none")]
        tls_listen: Option<String>,
        /// Every running account and its address (`listen` is the default account's).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        accounts: Vec<AccountListen>,
    },
    Registration {
        account: String,
        state: RegistrationState,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<u32>,
    },
    /// One SIP message in or out. `raw` is the whole message for the log pane; the JSON
    /// front end leaves it out.
    Sip {
        dir: Direction,
        peer: String,
        summary: String,
        #[serde(skip)]
        raw: std::sync::Arc<[u8]>,
    },
    Call {
        call: String,
        state: CallState,
        remote: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The SIP Call-ID of the call's dialog (so a front end can find the call's messages
        /// in the trace); absent before the UA has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        sip_call_id: Option<String>,
        /// The account the call is on.
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// Media statistics of a call, sent every few seconds and when the call ends.
    Media {
        call: String,
        codec: String,
        sent: u64,
        received: u64,
        lost: u64,
        jitter_ms: f64,
        /// Cumulative loss of what the peer sent us, in percent.
        loss_pct: f64,
        /// Round-trip time from RTCP (RFC 3550 §6.4.1), once the peer has reported.
        #[serde(skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
        /// Estimated MOS (ITU-T G.107 E-model, simplified) of the audio received lately;
        /// absent while none arrives: silence gets no score.
        #[serde(skip_serializing_if = "Option::is_none")]
        mos: Option<f64>,
        /// Where our RTP goes: the SDP address, or the latched source (`nat::latch`).
        #[serde(skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        /// Our RTP socket's own address (the port a peer's SDP was told, before any NAT).
        #[serde(skip_serializing_if = "Option::is_none")]
        local: Option<String>,
        /// RTP and RTCP packets dropped because they came from neither the peer's negotiated
        /// address nor its latched source (a stranger's stream is never played).
        foreign: u64,
        /// SRTP protects the call's RTP and RTCP.
        encrypted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        srtp: Option<SrtpStats>,
        /// The source of the last foreign packet (who sends to us instead of the peer).
        #[serde(skip_serializing_if = "Option::is_none")]
        foreign_from: Option<String>,
        /// What the peer's RTCP reports say about our stream, once it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerReport>,
        /// What the microphone gave since the last report; absent with no microphone (`null`).
        #[serde(skip_serializing_if = "Option::is_none")]
        mic: Option<MicReport>,
        /// The call's ICE: which candidate pair carries the media, or which were tried when
        /// none worked. Absent without ICE.
        #[serde(skip_serializing_if = "Option::is_none")]
        ice: Option<Box<IceReport>>,
    },
    /// A finding of the live diagnosis (`crate::diagnosis`) became active or cleared.
    Diagnosis {
        state: crate::diagnosis::FindingState,
        #[serde(flatten)]
        finding: crate::diagnosis::Finding,
    },
    /// Audio levels of a call for VU meters, about ten times a second while audio flows.
    /// dBFS of the last 100 ms (RMS): `mic_db` what we capture and send, `speaker_db` what we
    /// play. -96 means silence (or muted). The headless front end leaves these out unless
    /// asked (they would drown the other lines).
    Levels {
        call: String,
        mic_db: f32,
        speaker_db: f32,
    },
    Dtmf {
        call: String,
        digit: String,
    },
    /// The peer of `call` asks us to call `target` (REFER): answer with `accept-transfer` or
    /// `refuse-transfer` (refused by itself after a minute).
    #[serde(rename = "transfer_request")]
    TransferRequest {
        call: String,
        target: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        referred_by: Option<String>,
    },
    /// How the transfer we asked the peer of `call` for goes (its NOTIFYs); `done` on the
    /// last one. A 2xx there ends `call`.
    Transfer {
        call: String,
        code: u16,
        reason: String,
        done: bool,
    },
    /// Incoming call `call` replaces our call `replaces` (attended transfer): it is answered
    /// at once and `replaces` ends.
    Replaces {
        call: String,
        replaces: String,
    },
    /// A call refused before it rang: do-not-disturb (486/480) or forwarded (302).
    Missed {
        remote: String,
        code: u16,
        reason: String,
    },
    /// The calls mixed in the local conference now (empty: no conference).
    Conference {
        calls: Vec<String>,
    },
    /// Do-not-disturb is on (new calls get `code`) or off.
    Dnd {
        on: bool,
        code: u16,
    },
    /// Call-forward-always target (absent: off).
    Forward {
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    Message(MessageEvent),
    /// A watched contact's busy lamp: available, busy, ringing, offline or unknown.
    Presence {
        account: String,
        contact: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Voicemail waiting on an account (RFC 3842), with the counts when the server gives them.
    Voicemail {
        account: String,
        waiting: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        new: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        old: Option<u32>,
    },
    /// An account was enabled (started, with its address) or disabled at run time.
    Account {
        account: String,
        enabled: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    },
    /// A call's audio set-up: at its start and whenever it changes (devices, processing,
    /// recording). `processing`: the stages that run (`AEC NS AGC`, `-` for none).
    Audio {
        call: String,
        processing: String,
        /// The WAV file being recorded, while recording.
        #[serde(skip_serializing_if = "Option::is_none")]
        recording: Option<String>,
        /// Sound devices in use (absent: none, e.g. WAV files).
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    Error {
        message: String,
    },
    /// Warnings the user should see but that change nothing (e.g. trace events dropped).
    Warning {
        message: String,
    },
}

/// SRTP details of a call's `media` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrtpStats {
    /// `AES_CM_128_HMAC_SHA1_80` or `AES_CM_128_HMAC_SHA1_32`.
    pub suite: &'static str,
    /// Incoming packets dropped: bad authentication tag, replay, or not SRTP at all.
    pub auth_failures: u64,
    /// How the keys travelled (SDES, in the SDP).
    pub keys: KeyTransport,
}

/// How a call's SDES keys travelled: `"tls"` when the SIP hop was TLS, `"clear"` over UDP or
/// TCP, where anyone on the path could read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyTransport {
    Tls,
    Clear,
}

/// What the peer's RTCP receiver reports (RFC 3550 §6.4) say about the stream we send.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PeerReport {
    /// SR and RR packets the peer sent so far.
    pub reports: u64,
    /// How many of them had a report block about our stream (a peer that hears nothing of
    /// us reports on no stream).
    pub about_us: u64,
    /// From its latest block about us: loss in its last interval (percent), interarrival
    /// jitter, and the highest sequence number it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_seq: Option<u32>,
}

/// The microphone side of a call's `media` event.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct MicReport {
    /// Where the audio comes from: `device NAME` or `file PATH`.
    pub source: String,
    /// The loudest 100 ms (dBFS) since the last report; absent while muted throughout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_db: Option<f32>,
    pub muted: bool,
    /// The device could not be opened, or failed: what it said (the call sends silence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The first line of a SIP message as text (the `summary` of a trace), bounded in length.
pub fn first_line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(bytes.len())
        .min(200);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// ICE's part of the `media` event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IceReport {
    /// `host`, `srflx`, `prflx` or `relay` (the pair's most indirect side), `checking` while
    /// no pair is selected yet, `failed` when none works.
    pub path: String,
    /// The selected pair's local and remote candidates (`relay 198.51.100.1:49152`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Our side relays through TURN: how we reach the TURN server (`udp`, `tcp`, `tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// When ICE failed: the pairs tried (`host 10.0.0.2:4000 -> srflx 203.0.113.9:5000`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// The RTCP component's selected pair, for a peer without rtcp-mux
    /// (`host 10.0.0.2:4001 -> srflx 203.0.113.9:5001`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp: Option<String>,
    /// How often consent (RFC 7675) was lost in this call, and the pair that last lost it
    /// (a restart may have repaired it since the last report).
    #[serde(skip_serializing_if = "is_zero")]
    pub consent_losses: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_pair: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_headless_contract_says() {
        let e = Event::Registration {
            account: "alice".into(),
            state: RegistrationState::Registered,
            code: Some(200),
            reason: None,
            expires: Some(600),
        };
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(
                r#"{"event":"registration","account":"alice","state":"registered","code":200,"expires":600}"#
            )
        );
        let s = Event::Sip {
            dir: Direction::In,
            peer: "127.0.0.1:5060".into(),
            summary: first_line(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n"),
            raw: std::sync::Arc::from(&b"x"[..]),
        };
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some(
                r#"{"event":"sip","dir":"in","peer":"127.0.0.1:5060","summary":"OPTIONS sip:a@b SIP/2.0"}"#
            )
        );
    }

    /// Every call and registration state keeps the word the headless contract names.
    #[test]
    fn states_serialize_as_the_words_of_the_contract() {
        fn json(state: impl Serialize) -> String {
            serde_json::to_string(&state).ok().unwrap_or_default()
        }
        let words = [
            (json(CallState::Calling), "calling"),
            (json(CallState::Incoming), "incoming"),
            (json(CallState::Ringing), "ringing"),
            (json(CallState::Early), "early"),
            (json(CallState::Confirmed), "confirmed"),
            (json(CallState::Held), "held"),
            (json(CallState::Terminated), "terminated"),
            (json(RegistrationState::Unregistered), "unregistered"),
            (json(RegistrationState::Registering), "registering"),
            (json(RegistrationState::Registered), "registered"),
            (json(RegistrationState::Failed), "failed"),
            (json(RegistrationState::Unregistering), "unregistering"),
        ];
        for (serialized, word) in words {
            assert_eq!(serialized, format!("\"{word}\""));
        }
    }

    #[test]
    fn message_presence_and_voicemail_events_serialize() {
        let e = Event::Message(MessageEvent {
            account: "work".into(),
            dir: Direction::In,
            peer: "sip:bob@h".into(),
            text: Some("Grüße".into()),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(
                r#"{"event":"message","account":"work","dir":"in","peer":"sip:bob@h","text":"Grüße"}"#
            )
        );
        let e = Event::Voicemail {
            account: "work".into(),
            waiting: true,
            new: Some(2),
            old: None,
        };
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(r#"{"event":"voicemail","account":"work","waiting":true,"new":2}"#)
        );
    }

    #[test]
    fn call_events_carry_the_sip_call_id_only_when_known() {
        let mut e = Event::Call {
            call: "1".into(),
            state: CallState::Calling,
            remote: "sip:bob@b".into(),
            code: None,
            reason: None,
            sip_call_id: None,
            account: None,
        };
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(r#"{"event":"call","call":"1","state":"calling","remote":"sip:bob@b"}"#)
        );
        if let Event::Call { sip_call_id, .. } = &mut e {
            *sip_call_id = Some("abc@h".into());
        }
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(
                r#"{"event":"call","call":"1","state":"calling","remote":"sip:bob@b","sip_call_id":"abc@h"}"#
            )
        );
    }

    /// The `event` name of each kind; the match is exhaustive, so a new kind must be named
    /// here, and the test below then wants it in the README.
    fn name_of(event: &Event) -> &'static str {
        match event {
            Event::Ready { .. } => "ready",
            Event::Registration { .. } => "registration",
            Event::Sip { .. } => "sip",
            Event::Call { .. } => "call",
            Event::Media { .. } => "media",
            Event::Diagnosis { .. } => "diagnosis",
            Event::Levels { .. } => "levels",
            Event::Dtmf { .. } => "dtmf",
            Event::TransferRequest { .. } => "transfer_request",
            Event::Transfer { .. } => "transfer",
            Event::Replaces { .. } => "replaces",
            Event::Missed { .. } => "missed",
            Event::Conference { .. } => "conference",
            Event::Dnd { .. } => "dnd",
            Event::Forward { .. } => "forward",
            Event::Audio { .. } => "audio",
            Event::Message(_) => "message",
            Event::Presence { .. } => "presence",
            Event::Voicemail { .. } => "voicemail",
            Event::Account { .. } => "account",
            Event::Error { .. } => "error",
            Event::Warning { .. } => "warning",
        }
    }

    /// README's headless section shows an example line of every event kind, and names each
    /// field the `ready`, `registration`, `media` and `levels` events can carry.
    #[test]
    fn readme_shows_every_event_and_field() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        let warning = Event::Warning {
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&warning).ok().as_deref(),
            Some(r#"{"event":"warning","message":"m"}"#)
        );
        for name in [
            "ready",
            "registration",
            "sip",
            "call",
            "media",
            "diagnosis",
            "levels",
            "dtmf",
            "transfer_request",
            "transfer",
            "replaces",
            "missed",
            "conference",
            "dnd",
            "forward",
            "audio",
            "message",
            "presence",
            "voicemail",
            "account",
            "error",
            "warning",
        ] {
            assert!(
                readme.contains(&format!("{{\"event\":\"{name}\"")),
                "README has no {name} event line"
            );
        }
        assert_eq!(name_of(&warning), "warning");
        for field in [
            "\"tls_listen\"",
            "\"expires\"",
            "\"loss_pct\"",
            "\"rtt_ms\"",
            "\"mos\"",
            "\"foreign_from\"",
            "\"peer\"",
            "\"mic\"",
            "\"keys\"",
            "\"auth_failures\"",
            "\"mic_db\"",
            "\"speaker_db\"",
            "\"sip_call_id\"",
            "\"referred_by\"",
            "\"accounts\"",
        ] {
            assert!(
                readme.contains(field),
                "README never shows the field {field}"
            );
        }
    }
}
