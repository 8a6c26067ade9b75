//! Media rules: no audio from the peer (and why), the peer hears nothing of us (its RTCP), the
//! microphone gives silence or failed, and quality bad enough to hurt (loss, jitter, round
//! trip, in each direction). Fed by the `media` events every two seconds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::trace::{is_private, is_unroutable};
use super::{Diagnoser, Evidence, Finding, Severity, listing, seconds};
use crate::event::{CallState, Event, MicReport, PeerReport};
use crate::media::codec::CodecKind;
use crate::media::quality;

/// No audio for this long while we send is a finding (the 5 s).
pub const NO_AUDIO_AFTER: Duration = Duration::from_secs(5);
/// A microphone at digital silence this long is a finding.
pub const MIC_SILENT_AFTER: Duration = Duration::from_secs(5);
/// Quieter than this (dBFS) is digital silence: a live microphone always has some noise.
pub const SILENCE_DB: f32 = -90.0;
/// We must have sent this long before the peer's reports can say it hears nothing.
pub const PEER_DEAF_AFTER: Duration = Duration::from_secs(6);
/// A report the peer sent this long after our stream began (or last got through) counts.
const PEER_REPORT_GRACE: Duration = Duration::from_secs(3);
/// Loss over the recent window above this hurts (raise); below the lower one it ended.
pub const LOSS_PCT_HIGH: f64 = 3.0;
const LOSS_PCT_OK: f64 = 1.5;
/// Interarrival jitter (RFC 3550) that makes the jitter buffer grow and drop late packets.
pub const JITTER_MS_HIGH: f64 = 30.0;
const JITTER_MS_OK: f64 = 20.0;
/// A round trip past this makes people talk over each other (one way past G.107's knee).
pub const RTT_MS_HIGH: f64 = 400.0;
const RTT_MS_OK: f64 = 300.0;
/// How far back the loss of received audio is measured.
const LOSS_WINDOW: Duration = Duration::from_secs(6);

/// One `media` event, as the rules read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSample {
    pub call: u64,
    pub codec: String,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub remote: Option<String>,
    pub local: Option<String>,
    pub foreign: u64,
    pub foreign_from: Option<String>,
    pub auth_failures: u64,
    pub peer: Option<PeerReport>,
    pub mic: Option<MicReport>,
    /// We do ICE with the peer ourselves: its candidates are then no reason for silence.
    pub ice: bool,
    /// ICE's path word (`srflx`, `consent-lost`, ...) and the selected pair's two ends.
    pub ice_path: Option<String>,
    pub ice_local: Option<String>,
    pub ice_remote: Option<String>,
    /// Consent losses in the call so far, and the pair that last lost it.
    pub ice_consent_losses: u32,
    pub ice_lost_pair: Option<String>,
}

impl MediaSample {
    pub fn of(event: &Event) -> Option<MediaSample> {
        let Event::Media {
            call,
            codec,
            sent,
            received,
            lost,
            jitter_ms,
            rtt_ms,
            remote,
            local,
            foreign,
            srtp,
            foreign_from,
            peer,
            mic,
            ice,
            ..
        } = event
        else {
            return None;
        };
        Some(MediaSample {
            call: call.parse().ok()?,
            codec: codec.clone(),
            sent: *sent,
            received: *received,
            lost: *lost,
            jitter_ms: *jitter_ms,
            rtt_ms: *rtt_ms,
            remote: remote.clone(),
            local: local.clone(),
            foreign: *foreign,
            foreign_from: foreign_from.clone(),
            auth_failures: srtp.as_ref().map_or(0, |s| s.auth_failures),
            peer: peer.clone(),
            mic: mic.clone(),
            ice: ice.is_some(),
            ice_path: ice.as_ref().map(|i| i.path.clone()),
            ice_local: ice.as_ref().and_then(|i| i.local.clone()),
            ice_remote: ice.as_ref().and_then(|i| i.remote.clone()),
            ice_consent_losses: ice.as_ref().map_or(0, |i| i.consent_losses),
            ice_lost_pair: ice.as_ref().and_then(|i| i.lost_pair.clone()),
        })
    }

    fn codec_kind(&self) -> CodecKind {
        let name = self.codec.to_ascii_lowercase();
        if name.starts_with("pcmu") {
            CodecKind::Pcmu
        } else if name.starts_with("pcma") {
            CodecKind::Pcma
        } else {
            CodecKind::Opus
        }
    }
}

/// What a call's media did over time.
#[derive(Debug, Clone, Default)]
pub struct MediaTrack {
    last: Option<MediaSample>,
    /// When audio last arrived (or the call was answered or resumed).
    heard_at: Option<Instant>,
    /// Foreign and SRTP-rejected packets counted by then.
    foreign_when_heard: u64,
    auth_failures_when_heard: u64,
    /// When we began sending (this time round).
    sending_since: Option<Instant>,
    /// When the peer's reports last showed our packets arriving, and when its reports (any)
    /// last grew.
    peer_heard_us_at: Option<Instant>,
    peer_reported_at: Option<Instant>,
    /// When the microphone last gave more than silence (or was muted).
    mic_alive_at: Option<Instant>,
    /// (when, received, lost) of recent samples, for the loss of the last few seconds.
    window: VecDeque<(Instant, u64, u64)>,
}

impl MediaTrack {
    /// The call was answered or resumed: judge from now on.
    pub fn restart(&mut self, now: Instant) {
        self.heard_at = Some(now);
        self.sending_since = None;
        self.peer_heard_us_at = None;
        self.mic_alive_at = Some(now);
        self.window.clear();
        if let Some(last) = &self.last {
            self.foreign_when_heard = last.foreign;
            self.auth_failures_when_heard = last.auth_failures;
        }
    }
}

impl Diagnoser {
    pub(super) fn media_sample(&mut self, sample: MediaSample, now: Instant) {
        let id = sample.call;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let up = call.state == Some(CallState::Confirmed);
        let track = &mut call.media;
        let previous = track.last.replace(sample.clone());
        let prev_losses = previous.as_ref().map_or(0, |p| p.ice_consent_losses);
        let (prev_sent, prev_received, prev_reports, prev_about_us) =
            previous.as_ref().map_or((0, 0, 0, 0), |p| {
                (
                    p.sent,
                    p.received,
                    p.peer.as_ref().map_or(0, |r| r.reports),
                    p.peer.as_ref().map_or(0, |r| r.about_us),
                )
            });
        let sending = sample.sent > prev_sent;
        let heard = sample.received > prev_received;
        if heard || track.heard_at.is_none() {
            track.heard_at = Some(now);
            track.foreign_when_heard = sample.foreign;
            track.auth_failures_when_heard = sample.auth_failures;
        }
        if !sending {
            track.sending_since = None;
        } else if track.sending_since.is_none() {
            track.sending_since = Some(now);
        }
        // The peer's reports: a new block about us whose highest sequence moved means our
        // packets reach it.
        let report = sample.peer.clone().unwrap_or_default();
        let prev_highest = previous
            .as_ref()
            .and_then(|p| p.peer.as_ref())
            .and_then(|r| r.highest_seq);
        if report.reports > prev_reports {
            track.peer_reported_at = Some(now);
        }
        if report.about_us > prev_about_us && report.highest_seq != prev_highest {
            track.peer_heard_us_at = Some(now);
        }
        track.window.push_back((now, sample.received, sample.lost));
        while track
            .window
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) > LOSS_WINDOW)
        {
            track.window.pop_front();
        }
        let mic_alive = match &sample.mic {
            None => true,
            Some(mic) => mic.muted || mic.peak_db.is_none_or(|db| db > SILENCE_DB),
        };
        if mic_alive || track.mic_alive_at.is_none() {
            track.mic_alive_at = Some(now);
        }
        let track = track.clone();
        self.no_audio_rule(id, up && sending, &sample, &track, now);
        self.peer_deaf_rule(id, up && sending, &sample, &track, now);
        self.mic_rules(id, up, &sample, &track, now);
        self.quality_rules(id, up, &sample, &track);
        self.consent_rule(id, &sample, prev_losses);
    }

    /// ICE consent lost (RFC 7675): the peer stopped answering the checks on the selected
    /// pair for 30 s, and we stopped sending. Raised while the path says so, or when a loss
    /// happened since the last report (an automatic restart may have repaired it already:
    /// the 30 s of silence still want explaining); cleared at the next report that finds a
    /// pair carrying media again, or when the call ends.
    fn consent_rule(&mut self, call: u64, sample: &MediaSample, prev_losses: u32) {
        let lost_now = sample.ice_path.as_deref() == Some("consent-lost");
        if !lost_now && sample.ice_consent_losses <= prev_losses {
            self.clear(ICE_CONSENT_LOST, Some(call));
            return;
        }
        let pair = sample.ice_lost_pair.clone().unwrap_or_else(|| {
            format!(
                "{} -> {}",
                sample.ice_local.clone().unwrap_or_default(),
                sample.ice_remote.clone().unwrap_or_default()
            )
        });
        let message = format!(
            "The other side stopped answering ICE consent checks on the media path ({pair}) \
             for {} s, so sipterm stopped sending (RFC 7675): the path broke (a NAT dropped or \
             moved its mapping, a network changed) or the other side is gone.",
            crate::ice::agent::CONSENT_TIMEOUT.as_secs()
        );
        let advice = "The caller's sipterm restarts ICE once by itself; otherwise run \
                      `ice-restart` to look for a new path. If no path is found, hang up and \
                      call again.";
        let evidence = Evidence::new()
            .with("pair", &pair)
            .with("losses", sample.ice_consent_losses)
            .with("path_now", sample.ice_path.clone().unwrap_or_default())
            .with("sent", sample.sent)
            .with("received", sample.received);
        self.raise(
            Finding::new(
                ICE_CONSENT_LOST,
                Severity::Error,
                "ICE consent lost",
                message,
                advice,
            )
            .on_call(call)
            .with_evidence(evidence),
        );
    }

    /// No audio from the peer for `NO_AUDIO_AFTER` while we send, with the likeliest cause.
    fn no_audio_rule(
        &mut self,
        call: u64,
        sending: bool,
        sample: &MediaSample,
        track: &MediaTrack,
        now: Instant,
    ) {
        let their_sdp = self.call_dialog(call).and_then(|d| d.theirs.clone());
        let their_signalling = self.call_dialog(call).and_then(|d| d.theirs_from);
        let our_address = self
            .call_dialog(call)
            .and_then(|d| d.ours.as_ref())
            .and_then(|s| s.media_addr());
        let silent_for = track
            .heard_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let expected = their_sdp.as_ref().is_none_or(|s| s.peer_sends());
        let holds = sending && expected && silent_for >= NO_AUDIO_AFTER;
        let finding = holds.then(|| {
            no_audio_finding(
                call,
                sample,
                track,
                their_sdp.as_ref(),
                their_signalling,
                our_address,
                silent_for,
            )
        });
        let code = finding.as_ref().map(|f| f.code);
        for other in NO_AUDIO_CODES {
            if Some(*other) != code {
                self.clear(other, Some(call));
            }
        }
        if let Some(finding) = finding {
            self.raise(finding);
        }
    }

    /// The peer's RTCP says none of our packets arrive: one-way audio the other way.
    fn peer_deaf_rule(
        &mut self,
        call: u64,
        sending: bool,
        sample: &MediaSample,
        track: &MediaTrack,
        now: Instant,
    ) {
        let since = match (track.sending_since, track.peer_heard_us_at) {
            (Some(sending), Some(heard)) => Some(sending.max(heard)),
            (Some(sending), None) => Some(sending),
            _ => None,
        };
        let holds = sending
            && since.is_some_and(|since| {
                now.saturating_duration_since(since) >= PEER_DEAF_AFTER
                    && track
                        .peer_reported_at
                        .is_some_and(|reported| reported >= since + PEER_REPORT_GRACE)
            });
        if !holds {
            self.clear(PEER_HEARS_NOTHING, Some(call));
            return;
        }
        let report = sample.peer.clone().unwrap_or_default();
        let their_sdp = self.call_dialog(call).and_then(|d| d.theirs.clone());
        let remote = sample.remote.clone().unwrap_or_else(|| "the peer".into());
        let private = their_sdp
            .as_ref()
            .and_then(|s| s.address)
            .filter(|ip| is_private(*ip) || is_unroutable(*ip));
        let message = match private {
            Some(ip) => format!(
                "The other side hears nothing from you: its RTCP reports say none of our audio \
                 arrives, and we send it to {remote}, the private address {ip} its SDP gave, \
                 which does not reach it from here."
            ),
            None => format!(
                "The other side hears nothing from you: its RTCP reports say none of our audio \
                 sent to {remote} arrives, so a firewall or NAT on the way drops it (or the \
                 peer listens elsewhere than its SDP said)."
            ),
        };
        let advice = "Check firewalls and NAT rules on the way for UDP to that address; behind \
                      a NAT yourself, set `stun_server` so your SDP carries your public \
                      address; a proxy that anchors media (rtpengine) avoids both.";
        let since = since.unwrap_or(now);
        let evidence = Evidence::new()
            .with("sent", sample.sent)
            .with("sent_to", &remote)
            .with("peer_reports", report.reports)
            .with("peer_reports_about_us", report.about_us)
            .with_some("peer_highest_seq", report.highest_seq)
            .with("unheard_for", seconds(now.saturating_duration_since(since)));
        self.raise(
            Finding::new(
                PEER_HEARS_NOTHING,
                Severity::Error,
                "they hear nothing",
                message,
                advice,
            )
            .on_call(call)
            .with_evidence(evidence),
        );
    }

    fn mic_rules(
        &mut self,
        call: u64,
        up: bool,
        sample: &MediaSample,
        track: &MediaTrack,
        now: Instant,
    ) {
        let Some(mic) = &sample.mic else {
            self.clear(MIC_FAILED, Some(call));
            self.clear(MIC_SILENT, Some(call));
            return;
        };
        match &mic.failed {
            Some(why) => self.raise(
                Finding::new(
                    MIC_FAILED,
                    Severity::Error,
                    "mic failed",
                    format!(
                        "Your microphone ({}) cannot be used, so the other side hears only \
                         silence: {why}.",
                        mic.source
                    ),
                    "Check `[audio] input` against `sipterm --list-devices`, and that no other \
                     program holds the device; sipterm opens it again at the next call.",
                )
                .on_call(call)
                .with_evidence(
                    Evidence::new()
                        .with("input", &mic.source)
                        .with("error", why),
                ),
            ),
            None => self.clear(MIC_FAILED, Some(call)),
        }
        let quiet_for = track
            .mic_alive_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        if !(up && mic.failed.is_none() && quiet_for >= MIC_SILENT_AFTER) {
            self.clear(MIC_SILENT, Some(call));
            return;
        }
        let (message, advice) = if mic.source.starts_with("file ") {
            (
                format!(
                    "The audio input {} gives pure silence (or has ended), so the other side \
                     hears nothing from you.",
                    mic.source
                ),
                "Check the file given with --audio-in.",
            )
        } else {
            (
                format!(
                    "Your microphone ({}) gives pure digital silence, so the other side hears \
                     nothing from you: it is muted in the system mixer, or it is the wrong \
                     input device.",
                    mic.source
                ),
                "Unmute the input in the system mixer (pavucontrol, alsamixer), or pick another \
                 `[audio] input` from `sipterm --list-devices`.",
            )
        };
        self.raise(
            Finding::new(MIC_SILENT, Severity::Error, "mic silent", message, advice)
                .on_call(call)
                .with_evidence(
                    Evidence::new()
                        .with("input", &mic.source)
                        .with(
                            "peak_db",
                            mic.peak_db.map_or("-".into(), |db| format!("{db:.1}")),
                        )
                        .with("silent_for", seconds(quiet_for))
                        .with("sent", sample.sent),
                ),
        );
    }

    /// Loss, jitter and round trip, each way, when they hurt the MOS.
    fn quality_rules(&mut self, call: u64, up: bool, sample: &MediaSample, track: &MediaTrack) {
        let kind = sample.codec_kind();
        // Loss of what we receive, over the recent window.
        let loss_in = match (track.window.front(), track.window.back()) {
            (Some((_, r0, l0)), Some((_, r1, l1))) if r1 + l1 > r0 + l0 => {
                let lost = l1.saturating_sub(*l0) as f64;
                let expected = (r1 + l1).saturating_sub(r0 + l0) as f64;
                Some(100.0 * lost / expected)
            }
            _ => None,
        };
        let report = sample.peer.as_ref();
        let measures = [
            (
                LOSS_IN,
                loss_in,
                LOSS_PCT_HIGH,
                LOSS_PCT_OK,
                Measure::Loss,
                true,
            ),
            (
                LOSS_OUT,
                report.and_then(|r| r.loss_pct),
                LOSS_PCT_HIGH,
                LOSS_PCT_OK,
                Measure::Loss,
                false,
            ),
            (
                JITTER_IN,
                (sample.received > 0).then_some(sample.jitter_ms),
                JITTER_MS_HIGH,
                JITTER_MS_OK,
                Measure::Jitter,
                true,
            ),
            (
                JITTER_OUT,
                report.and_then(|r| r.jitter_ms),
                JITTER_MS_HIGH,
                JITTER_MS_OK,
                Measure::Jitter,
                false,
            ),
            (
                HIGH_RTT,
                sample.rtt_ms,
                RTT_MS_HIGH,
                RTT_MS_OK,
                Measure::RoundTrip,
                true,
            ),
        ];
        for (code, value, high, ok, measure, inbound) in measures {
            let active = self.is_active(code, Some(call));
            let holds = up && value.is_some_and(|v| if active { v >= ok } else { v >= high });
            match (holds, value) {
                (true, Some(value)) => {
                    let finding = quality_finding(code, measure, inbound, value, kind, sample);
                    self.raise(finding.on_call(call));
                }
                _ => self.clear(code, Some(call)),
            }
        }
    }
}

pub const NO_AUDIO_SRTP: &str = "media.no_audio.srtp";
pub const NO_AUDIO_FOREIGN: &str = "media.no_audio.foreign_source";
pub const NO_AUDIO_ICE: &str = "media.no_audio.ice";
pub const NO_AUDIO_PRIVATE: &str = "media.no_audio.private_address";
pub const NO_AUDIO_NOTHING: &str = "media.no_audio.nothing_arrives";
const NO_AUDIO_CODES: &[&str] = &[
    NO_AUDIO_SRTP,
    NO_AUDIO_FOREIGN,
    NO_AUDIO_ICE,
    NO_AUDIO_PRIVATE,
    NO_AUDIO_NOTHING,
];
pub const PEER_HEARS_NOTHING: &str = "media.peer_hears_nothing";
pub const ICE_CONSENT_LOST: &str = "media.ice_consent_lost";
pub const MIC_SILENT: &str = "media.mic_silent";
pub const MIC_FAILED: &str = "media.mic_failed";
pub const LOSS_IN: &str = "quality.loss_in";
pub const LOSS_OUT: &str = "quality.loss_out";
pub const JITTER_IN: &str = "quality.jitter_in";
pub const JITTER_OUT: &str = "quality.jitter_out";
pub const HIGH_RTT: &str = "quality.round_trip";

/// Picks the likeliest reason nothing arrives, in order: packets that arrive but fail SRTP,
/// packets from an address the SDP did not name, a peer waiting for ICE, an address that
/// cannot be reached, else nothing at all arrives.
fn no_audio_finding(
    call: u64,
    sample: &MediaSample,
    track: &MediaTrack,
    their_sdp: Option<&super::SdpView>,
    their_signalling: Option<SocketAddr>,
    our_address: Option<SocketAddr>,
    silent_for: Duration,
) -> Finding {
    let sdp_addr = their_sdp.and_then(|s| s.media_addr());
    let sdp_text = sdp_addr.map_or_else(|| "its SDP address".to_string(), |a| a.to_string());
    let local = sample
        .local
        .clone()
        .unwrap_or_else(|| "our RTP port".into());
    // Where the peer was told to send: our SDP's address (the socket may be bound to 0.0.0.0).
    let announced = our_address.map_or_else(|| local.clone(), |a| a.to_string());
    let rejected = sample
        .auth_failures
        .saturating_sub(track.auth_failures_when_heard);
    let foreign = sample.foreign.saturating_sub(track.foreign_when_heard);
    let mut evidence = Evidence::new()
        .with("silent_for", seconds(silent_for))
        .with("received", sample.received)
        .with("sent", sample.sent)
        .with_some("sent_to", sample.remote.as_ref())
        .with("local", &local)
        .with_some("sdp_address", sdp_addr);
    let unreachable = sdp_addr.map(|a| a.ip()).filter(|ip| {
        is_unroutable(*ip)
            || (is_private(*ip) && their_signalling.is_some_and(|from| from.ip() != *ip))
    });
    let finding = if rejected > 0 {
        evidence = evidence.with("srtp_auth_failures", rejected);
        Finding::new(
            NO_AUDIO_SRTP,
            Severity::Error,
            "no audio in",
            format!(
                "No audio arrives from the peer: {rejected} of its packets came but failed SRTP \
                 authentication, so it encrypts with another key than the one in its SDP (or \
                 does not encrypt at all)."
            ),
            "Something between you rewrites the SDP keys (an SBC or proxy), or the peer's SRTP \
             is broken; `srtp = \"off\"` in the account shows whether plain RTP works.",
        )
    } else if foreign > 0 {
        let from = sample
            .foreign_from
            .clone()
            .unwrap_or_else(|| "another address".into());
        evidence = evidence
            .with("foreign_packets", foreign)
            .with("foreign_from", &from);
        // Same IP, another port: the peer's NAT gives each destination its own port (a
        // symmetric NAT), so the address it learned (STUN) is not the one we see.
        let same_ip = from
            .parse::<SocketAddr>()
            .ok()
            .zip(sdp_addr)
            .is_some_and(|(from, sdp)| from.ip() == sdp.ip());
        let (why, advice) = if same_ip {
            (
                "the peer's NAT gives every destination its own port (a symmetric NAT), so the \
                 address it announced is not the one its packets come from",
                "Set `rtp_latching = true` in [sip]: sipterm then answers and accepts the \
                 peer's media where it really comes from (its signalling IP); or the peer \
                 needs a TURN relay.",
            )
        } else {
            (
                "the peer is behind a NAT it does not know about",
                "The peer should announce its public address (STUN on the phone), or its proxy \
                 should fix the SDP (Kamailio nathelper, rtpengine).",
            )
        };
        Finding::new(
            NO_AUDIO_FOREIGN,
            Severity::Error,
            "no audio in",
            format!(
                "No audio plays from the peer: its packets come from {from}, not from \
                 {sdp_text} where its SDP said they would, so they are dropped; {why}."
            ),
            advice,
        )
    } else if let Some(sdp) = their_sdp.filter(|s| !s.ice_candidates.is_empty() && !sample.ice) {
        evidence = evidence.with("ice_candidates", sdp.ice_candidates.join(", "));
        Finding::new(
            NO_AUDIO_ICE,
            Severity::Error,
            "no audio in",
            format!(
                "No audio arrives from the peer: its SDP lists ICE candidates ({}), so it \
                 waits for ICE connectivity checks before sending, which sipterm does not do.",
                listing(&sdp.ice_candidates)
            ),
            "Turn ICE off on the peer or its gateway, or let a media relay (rtpengine) sit \
             between you.",
        )
    } else if let Some(ip) = unreachable {
        let why = if is_unroutable(ip) {
            format!("the address {ip}, which media can never reach")
        } else {
            format!("the private address {ip}, which cannot be reached from here")
        };
        Finding::new(
            NO_AUDIO_PRIVATE,
            Severity::Error,
            "no audio in",
            format!(
                "No audio arrives from the peer: its SDP gives {why}, and nothing comes from \
                 it; the peer is behind a NAT and announces its inside address."
            ),
            "The peer needs STUN or its public address in its SDP, or its proxy must rewrite \
             the SDP (Kamailio nathelper, rtpengine).",
        )
    } else {
        Finding::new(
            NO_AUDIO_NOTHING,
            Severity::Error,
            "no audio in",
            format!(
                "No audio arrives from the peer: none of its packets reach us at {announced} \
                 although we send to {}; a firewall or NAT on the way drops them, or the peer \
                 sends nothing.",
                sample.remote.as_deref().unwrap_or("it")
            ),
            "Check firewalls on both sides for UDP to our RTP port; ask whether the other side \
             hears you (if not, the path is blocked both ways).",
        )
    };
    finding.on_call(call).with_evidence(evidence)
}

#[derive(Debug, Clone, Copy)]
enum Measure {
    Loss,
    Jitter,
    RoundTrip,
}

fn quality_finding(
    code: &'static str,
    measure: Measure,
    inbound: bool,
    value: f64,
    codec: CodecKind,
    sample: &MediaSample,
) -> Finding {
    // What the E-model says this alone costs.
    let clean = quality::mos(codec, 20.0, 0.0, 0.0);
    let hurt = match measure {
        Measure::Loss => quality::mos(codec, 20.0, value as f32, 0.0),
        Measure::Jitter => quality::mos(codec, 20.0, 0.0, value as f32),
        Measure::RoundTrip => quality::mos(codec, (value / 2.0) as f32, 0.0, 0.0),
    };
    let (label, message, advice) = match (measure, inbound) {
        (Measure::Loss, true) => (
            "loss in",
            format!(
                "{value:.1} % of the audio from the peer is lost on the way, which drags the \
                 quality from MOS {clean:.1} to {hurt:.1}: a congested or wireless link \
                 between you."
            ),
            "Use a wired connection, stop big downloads or uploads meanwhile; if it persists, \
             the peer's network or the provider's path is at fault.",
        ),
        (Measure::Loss, false) => (
            "loss out",
            format!(
                "The peer loses {value:.1} % of your audio on the way (its RTCP reports), \
                 which drags its quality from MOS {clean:.1} to {hurt:.1}: your uplink is \
                 congested or the link between you is lossy."
            ),
            "Stop uploads on your side and prefer a wired connection; a lower-bitrate codec \
             helps a thin uplink.",
        ),
        (Measure::Jitter, true) => (
            "jitter in",
            format!(
                "Audio from the peer arrives unevenly ({value:.0} ms jitter), so the jitter \
                 buffer adds delay and drops late packets (MOS {clean:.1} -> {hurt:.1}): a \
                 busy or wireless link between you."
            ),
            "Use a wired connection or a less loaded network; the peer's uplink may be busy.",
        ),
        (Measure::Jitter, false) => (
            "jitter out",
            format!(
                "Your audio reaches the peer unevenly ({value:.0} ms jitter in its RTCP \
                 reports), so it hears gaps and delay (MOS {clean:.1} -> {hurt:.1}): your \
                 uplink is busy or wireless."
            ),
            "Stop uploads on your side and prefer a wired connection.",
        ),
        (Measure::RoundTrip, _) => (
            "slow path",
            format!(
                "The round trip to the peer takes {value:.0} ms, so you will talk over each \
                 other (MOS {clean:.1} -> {hurt:.1}): a long or congested path (VPN, \
                 satellite, an overloaded link)."
            ),
            "Avoid VPNs and overloaded links for calls; a provider server nearer to both of \
             you shortens the path.",
        ),
    };
    let evidence = Evidence::new()
        .with(
            match measure {
                Measure::Loss => "loss_pct",
                Measure::Jitter => "jitter_ms",
                Measure::RoundTrip => "rtt_ms",
            },
            format!("{value:.1}"),
        )
        .with(
            "direction",
            match (measure, inbound) {
                (Measure::RoundTrip, _) => "both",
                (_, true) => "in",
                (_, false) => "out",
            },
        )
        .with("codec", &sample.codec)
        .with("mos_without", format!("{clean:.2}"))
        .with("mos_with", format!("{hurt:.2}"));
    let severity = if hurt < 3.6 {
        Severity::Error
    } else {
        Severity::Warning
    };
    Finding::new(code, severity, label, message, advice).with_evidence(evidence)
}
