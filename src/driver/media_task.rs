//! One tokio task per call's media: paces 20 ms frames from the audio source into RTP, and
//! plays received RTP through the jitter buffer into the audio sink. The pure pieces (codecs,
//! RTP, DTMF, jitter buffer, statistics) live in `media/`; this file only moves data and reads
//! the clock.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::call_audio::{CallAudio, Opened, ProcessingConfig};
use super::capture::PacketTap;
use super::command::AudioCommand;
use super::ice_task::{IceLink, IceSender, IceStatus};
use super::transport::{canonical, on_socket_family};
use crate::event::{Direction, Event, IceReport, KeyTransport, MicReport, PeerReport, SrtpStats};
use crate::ice::Inbound;
use crate::media::codec::{self, CodecKind, Decoder, Encoder};
use crate::media::dtmf::{DtmfReceiver, DtmfSender};
use crate::media::fec::FecPolicy;
use crate::media::inband_dtmf::InbandDtmf;
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::mixer::ConferenceLeg;
use crate::media::ptime::{self, Packetizer};

/// Initial playout delay of the jitter buffer, in frames (it adapts to the measured jitter).
const JITTER_FRAMES: u32 = 3;
/// A send tick that finds the microphone's frame incomplete looks again every
/// `CAPTURE_RETRY`, for up to `CAPTURE_WAIT_MAX` after the tick. The sound server delivers
/// capture unevenly (PulseAudio's null sinks: a spread of about 6 ms); waiting those few
/// milliseconds beats sending 20 ms of silence and then holding a frame more for a second.
const CAPTURE_RETRY: Duration = Duration::from_millis(1);
const CAPTURE_WAIT_MAX: Duration = Duration::from_millis(8);
use crate::media::audio::AudioDevice;
use crate::media::quality;
use crate::media::rtcp::{RtcpEvent, RtcpSession, is_rtcp};
use crate::media::rtp::RtpPacket;
use crate::media::session::{ReceiveOutcome, RtpReceiver, RtpSender, clock_units};
use crate::media::srtp::SrtpSession;
use crate::media::tones::{LevelMeter, ToneGenerator, ToneRegion};
use crate::media::wav::{FrameSink, FrameSource, WavSink, WavSource};
use crate::nat::latch::{Evidence, Latch, Negotiated, Screen};
use crate::nat::stun::is_stun;
use crate::sdp::{Codec, MediaParams, SrtpParams};

/// Frame duration: every codec here runs at 20 ms packets.
const FRAME: Duration = Duration::from_millis(20);
/// How often a running call reports its statistics.
const STATS_EVERY: u32 = 100; // frames: 2 s
/// How often a running call reports its audio levels (VU meters).
const LEVELS_EVERY: u32 = 5; // frames: 100 ms
/// Largest RTP datagram we read; bigger ones are truncated garbage.
const MAX_RTP: usize = 1500;
/// Concealment of missing frames in a row lasts this long; then the output is silence.
const MAX_CONCEALED_MS: u32 = 100;
/// RTP port range for calls (even ports; RTCP on the next odd one).
const RTP_PORTS: std::ops::Range<u16> = 16384..32768;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioEndpoint {
    Null,
    Wav(PathBuf),
    /// A sound card by name ("default", a cpal device id); see `media::audio`. A device that
    /// cannot be opened falls back to `Null` with a warning.
    Device(String),
}

/// Where each call's audio comes from and goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaIo {
    pub input: AudioEndpoint,
    pub output: AudioEndpoint,
    /// Latch onto the peer's RTP source even when its SDP address is public (`nat::latch`).
    pub rtp_latching: bool,
    /// A WAV output keeps what it holds (the tone the tone player recorded for this call just
    /// before) and the call's audio follows it; otherwise each call starts the file afresh.
    pub append_output: bool,
    /// `[audio] echo_cancel`, `noise_suppression`, `auto_gain`.
    pub processing: ProcessingConfig,
    /// `--pcap-out`: every RTP/RTCP datagram sent or received goes here too (never waiting).
    pub capture: Option<PacketTap>,
}

#[derive(Debug)]
pub enum MediaControl {
    Update(MediaParams),
    Mute(bool),
    Dtmf(String),
    /// DTMF as dual tones in the outgoing audio (`dtmf = "inband"`).
    DtmfInband(String),
    /// Join a local conference as this leg (`None`: leave it): the call then sends the other
    /// legs' audio too, and only the host leg plays to the local output (`media::mixer`).
    Conference(Option<Box<ConferenceLeg>>),
    /// Call waiting: mix this region's call-waiting tone into what the call plays (`None`
    /// stops it). Sent by the SIP task while another call is `incoming`.
    CallWaiting(Option<ToneRegion>),
    /// Recording, processing, devices (`driver::call_audio`).
    Audio(AudioCommand),
    Stop,
}

pub struct MediaHandle {
    pub control: mpsc::UnboundedSender<MediaControl>,
    pub task: JoinHandle<()>,
}

/// Binds an even RTP port and the odd RTCP port above it on `ip`.
pub async fn bind_rtp_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let span = u32::from((RTP_PORTS.end - RTP_PORTS.start) / 2);
    let start = std::process::id().wrapping_mul(2654435761)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    let mut last_error = None;
    for attempt in 0..64u32 {
        let slot = (start.wrapping_add(attempt.wrapping_mul(7919))) % span;
        let port = RTP_PORTS.start + (slot as u16) * 2;
        let rtp = match UdpSocket::bind(SocketAddr::new(ip, port)).await {
            Ok(s) => s,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free RTP port pair")))
}

/// `ice`: media goes over the pair the call's ICE selects (`driver::ice_task`) instead of
/// `rtp`, which then only keeps the port.
pub fn spawn(
    call: u64,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    params: MediaParams,
    io: MediaIo,
    events: mpsc::Sender<Event>,
    ice: Option<IceLink>,
) -> MediaHandle {
    let (control, rx) = mpsc::unbounded_channel();
    // The sockets move to the call's own runtime (`spawn_dedicated`): registered with its
    // reactor, their packets wake the media thread directly.
    let sockets = rtp.into_std().and_then(|rtp| Ok((rtp, rtcp.into_std()?)));
    let body = async move {
        let started = async {
            let (rtp, rtcp) = sockets
                .and_then(|(rtp, rtcp)| Ok((UdpSocket::from_std(rtp)?, UdpSocket::from_std(rtcp)?)))
                .map_err(|error| format!("media sockets: {error}"))?;
            let (opened_tx, opened_rx) = mpsc::unbounded_channel();
            let media = CallMedia::new(call, params, &io, events.clone(), opened_tx).await?;
            Ok::<_, String>((rtp, rtcp, opened_rx, media))
        };
        let (rtp, rtcp, opened_rx, mut media) = match started.await {
            Ok(started) => started,
            Err(message) => {
                let _ = events
                    .send(Event::Error {
                        message: format!("call {call}: {message}"),
                    })
                    .await;
                return;
            }
        };
        let ice_in = ice.map(|link| {
            media.ice = Some(link.sender);
            media.ice_status = Some(link.status);
            link.incoming
        });
        media.run(rtp, rtcp, rx, opened_rx, ice_in).await;
    };
    let task = spawn_dedicated(format!("sipterm-media-{call}"), body);
    MediaHandle { control, task }
}

/// Runs a call's media on a thread of its own, with a single-threaded runtime, so that its
/// 20 ms ticks wait for the OS scheduler only. On the shared multi-threaded runtime a timer
/// fires when a worker next looks at the timer wheel: while the worker holding it ran another
/// task, a playout tick came up to 9.4 ms late (4 ticks of 30,000 were 7+ ms late in a
/// 10-minute call), and one ran the speaker dry (its slack is 7 ms). The handle works from any
/// runtime (await, abort); the thread ends when the task does.
fn spawn_dedicated<F>(name: String, body: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "media: no runtime of its own; sharing the main one");
            return tokio::spawn(body);
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let _done = done_tx;
        body.await;
    });
    // `done_rx` resolves when the task ends or is aborted (its sender is dropped either way).
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(async move { done_rx.await.ok() }));
    if let Err(error) = thread {
        // The runtime went with the closure, and the task with it: the call has no media.
        tracing::error!(%error, "media: cannot start the call's media thread");
    }
    task
}

/// The echo service's media: every RTP packet goes back to where it came from, unchanged
/// (with SRTP: decrypted with the caller's key and encrypted again with ours).
///
/// Deliberately not filtered by source (`nat::latch`): a stranger's packets only ever go back
/// to the stranger, never to the caller, so nothing of theirs is played to anyone; a source
/// filter would need the SDP address here and would only stop a one-to-one reflection (no
/// amplification) that the sender could as well send directly.
pub fn spawn_echo(rtp: UdpSocket, srtp: Option<SrtpParams>) -> MediaHandle {
    let (control, mut rx) = mpsc::unbounded_channel::<MediaControl>();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_RTP];
        let mut srtp = srtp.and_then(|params| SrtpSession::new(&params).ok());
        loop {
            tokio::select! {
                received = rtp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received
                        && let Some(bytes) = buf.get(..n)
                        && RtpPacket::parse(bytes).is_ok()
                    {
                        match &mut srtp {
                            Some(srtp) => {
                                if let Some(echo) = srtp.unprotect_rtp(bytes).and_then(|plain| srtp.protect_rtp(&plain).ok()) {
                                    let _ = rtp.send_to(&echo, from).await;
                                }
                            }
                            None => {
                                let _ = rtp.send_to(bytes, from).await;
                            }
                        }
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(MediaControl::Stop) | None => return,
                    Some(_) => {}
                },
            }
        }
    });
    MediaHandle { control, task }
}

fn kind_of(codec: Codec) -> CodecKind {
    match codec {
        Codec::Opus => CodecKind::Opus,
        Codec::Pcmu => CodecKind::Pcmu,
        Codec::Pcma => CodecKind::Pcma,
        Codec::G722 => CodecKind::G722,
    }
}

struct CallMedia {
    call: u64,
    params: MediaParams,
    kind: CodecKind,
    encoder: Box<dyn Encoder>,
    /// Frames missing in a row at playout: concealed up to `MAX_CONCEALED_MS`, then silence.
    missing_run: u32,
    /// How much FEC the encoder spends, from the peer's receiver reports.
    fec: FecPolicy,
    decoder: Box<dyn Decoder>,
    source: FrameSource,
    sink: FrameSink,
    sender: RtpSender,
    receiver: RtpReceiver,
    jitter: JitterBuffer,
    /// Gathers audio into packets of the peer's ptime; `packet_pcm` holds one packet's PCM.
    packetizer: Packetizer,
    packet_pcm: Vec<i16>,
    /// The jitter buffer's frame: 20 ms, or 10 ms for peers sending 10/30/50 ms packets.
    receive_frame_ms: u32,
    dtmf_out: DtmfSender,
    dtmf_in: DtmfReceiver,
    muted: bool,
    events: mpsc::Sender<Event>,
    rtcp: RtcpSession,
    /// Which sources are the peer's and where our RTP goes (symmetric RTP when the SDP address
    /// is private or `rtp_latching` is set): every RTP and RTCP datagram asks it first.
    latch: Latch,
    /// Our RTP socket's address, for the `media` event, the socket family and `--pcap-out`.
    local: Option<SocketAddr>,
    /// Our RTCP socket's address (`--pcap-out`), read once like `local`.
    local_rtcp: Option<SocketAddr>,
    /// Sound devices (when an endpoint is `Device`; they take over from `source`/`sink`),
    /// voice processing and recording.
    audio: CallAudio,
    /// This tick's frame went to the voice processing and has not come back yet.
    awaiting_processing: bool,
    /// What we captured (silence while muted) and played since the last `levels` event.
    mic_level: LevelMeter,
    speaker_level: LevelMeter,
    /// SRTP/SRTCP when the SDP negotiated keys (`params.srtp`).
    srtp: Option<SrtpSession>,
    /// The call-waiting tone being mixed into playout, at the codec's rate.
    call_waiting: Option<(ToneRegion, ToneGenerator)>,
    /// For the `media` event: the last stranger's address, packets received and lost at the
    /// last report (the MOS scores the interval), where the microphone audio comes from, why
    /// the device failed, and the loudest unmuted 100 ms since the last report.
    last_foreign: Option<SocketAddr>,
    received_at_last_report: u64,
    lost_at_last_report: u64,
    mic_source: Option<String>,
    mic_failure: Option<String>,
    mic_peak_db: Option<f32>,
    /// In-band DTMF digits replacing the microphone while they sound.
    inband_dtmf: InbandDtmf,
    /// This call's leg of a local conference, while it is in one.
    conference: Option<Box<ConferenceLeg>>,
    /// With ICE: where our RTP and RTCP go (the selected pair), and what ICE is doing.
    ice: Option<IceSender>,
    ice_status: Option<watch::Receiver<IceStatus>>,
    /// Consent losses warned about so far (one warning per loss).
    consent_warned: u32,
    /// TURN connection problems (`IceStatus::turn_errors`) warned about so far.
    turn_warned: usize,
    /// `--pcap-out`: datagrams as they went on the wire (SRTP stays encrypted).
    capture: Option<PacketTap>,
}

impl CallMedia {
    async fn new(
        call: u64,
        params: MediaParams,
        io: &MediaIo,
        events: mpsc::Sender<Event>,
        opened: mpsc::UnboundedSender<Opened>,
    ) -> Result<Self, String> {
        let kind = kind_of(params.codec);
        let rate = kind.sample_rate();
        let source = match &io.input {
            AudioEndpoint::Wav(path) => match WavSource::open(path, rate) {
                Ok(s) => FrameSource::Wav(Box::new(s)),
                Err(e) => {
                    warn(
                        &events,
                        format!("cannot read {}: {e}; sending silence", path.display()),
                    )
                    .await;
                    FrameSource::null(rate)
                }
            },
            AudioEndpoint::Null => FrameSource::null(rate),
            // Captured by `device` below; this silent source only keeps the frame clock.
            AudioEndpoint::Device(_) => FrameSource::null(rate),
        };
        let (device, mic_failure) = open_devices(io, rate, &events).await;
        let settings = io.processing.resolve(
            device.as_ref().is_some_and(|d| d.has_capture()),
            device.as_ref().is_some_and(|d| d.has_playback()),
        );
        let (audio, warnings) = CallAudio::new(call, rate, device, settings, opened);
        for warning in warnings {
            warn(&events, warning).await;
        }
        let sink = match &io.output {
            AudioEndpoint::Wav(path) => match create_sink(path, rate, io.append_output) {
                Ok(s) => FrameSink::Wav(Box::new(s)),
                Err(e) => {
                    warn(
                        &events,
                        format!(
                            "cannot write {}: {e}; discarding received audio",
                            path.display()
                        ),
                    )
                    .await;
                    FrameSink::null()
                }
            },
            _ => FrameSink::null(),
        };
        // SSRC, first sequence number and timestamp (RFC 3550 §5.1 wants them random: an
        // off-path attacker who can guess them can inject into the stream) from the thread's
        // ChaCha12 generator, seeded by the OS.
        let seed: u64 = rand::random();
        let sender = RtpSender::new(seed, params.payload_type, kind.timestamp_step());
        let cname = format!("sipterm-{:08x}@{}", sender.ssrc(), params.remote.ip());
        Ok(CallMedia {
            rtcp: RtcpSession::new(
                sender.ssrc(),
                &cname,
                kind.clock_rate(),
                seed.rotate_left(17),
            ),
            call,
            kind,
            encoder: codec::encoder(kind).map_err(|e| e.to_string())?,
            fec: FecPolicy::default(),
            missing_run: 0,
            decoder: codec::decoder(kind).map_err(|e| e.to_string())?,
            source,
            sink,
            sender,
            receiver: match params.telephone_event_pt {
                Some(pt) => RtpReceiver::new(kind.clock_rate()).with_event_payload_type(pt),
                None => RtpReceiver::new(kind.clock_rate()),
            },
            jitter: jitter_buffer(kind, ptime::receive_frame_ms(kind, params.ptime_ms)),
            packetizer: Packetizer::new(kind, ptime::send_ptime_ms(kind, params.ptime_ms)),
            packet_pcm: Vec::with_capacity(kind.samples_per_frame() * 3),
            receive_frame_ms: ptime::receive_frame_ms(kind, params.ptime_ms),
            dtmf_out: DtmfSender::with_defaults(kind.clock_rate()).map_err(|e| e.to_string())?,
            dtmf_in: DtmfReceiver::new(),
            muted: false,
            events,
            latch: Latch::new(Negotiated::of(&params), io.rtp_latching),
            local: None,
            local_rtcp: None,
            audio,
            awaiting_processing: false,
            srtp: match &params.srtp {
                Some(keys) => Some(SrtpSession::new(keys).map_err(|e| e.to_string())?),
                None => None,
            },
            params,
            mic_level: LevelMeter::default(),
            speaker_level: LevelMeter::default(),
            call_waiting: None,
            last_foreign: None,
            received_at_last_report: 0,
            lost_at_last_report: 0,
            mic_source: match &io.input {
                AudioEndpoint::Null => None,
                AudioEndpoint::Wav(path) => Some(format!("file {}", path.display())),
                AudioEndpoint::Device(name) => Some(format!("device {name}")),
            },
            mic_failure,
            mic_peak_db: None,
            inband_dtmf: InbandDtmf::new(rate),
            conference: None,
            ice: None,
            ice_status: None,
            consent_warned: 0,
            turn_warned: 0,
            capture: io.capture.clone(),
        })
    }

    async fn run(
        &mut self,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        mut control: mpsc::UnboundedReceiver<MediaControl>,
        mut opened: mpsc::UnboundedReceiver<Opened>,
        mut ice_in: Option<mpsc::Receiver<Inbound>>,
    ) {
        self.local = rtp.local_addr().ok();
        self.local_rtcp = rtcp.local_addr().ok();
        let mut tick = tokio::time::interval(FRAME);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        // Received audio plays on a clock of its own: its phase follows the packets' arrival
        // (`JitterBuffer::pop_frame_at`), so a packet waits a few milliseconds for its pop
        // rather than up to a frame for the next send tick.
        let mut playout = tokio::time::interval(FRAME);
        playout.set_missed_tick_behavior(MissedTickBehavior::Burst);
        // A microphone frame not all there when the send tick fires is waited for a little
        // (`CAPTURE_RETRY`, up to `CAPTURE_WAIT_MAX`) rather than sent as silence.
        let capture_retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(capture_retry);
        let mut capture_deadline: Option<Instant> = None;
        let mut played_pcm: Vec<i16> = Vec::with_capacity(960);
        let started = Instant::now();
        let mut frames: u32 = 0;
        let mut buf = vec![0u8; MAX_RTP];
        let mut rtcp_buf = vec![0u8; MAX_RTP];
        let mut pcm: Vec<i16> = Vec::with_capacity(960);
        let mut payload: Vec<u8> = Vec::with_capacity(MAX_RTP);
        let mut packet: Vec<u8> = Vec::with_capacity(MAX_RTP);
        loop {
            tokio::select! {
                scheduled_send = tick.tick() => {
                    frames += 1;
                    if let Some(warning) = self.audio.poll() {
                        if warning.starts_with("sound input") {
                            self.mic_failure = Some(warning.clone());
                        }
                        warn(&self.events, warning).await;
                    }
                    if let Some(leg) = &mut self.conference {
                        leg.gather(self.kind.samples_per_frame());
                    }
                    if capture_deadline.take().is_some() {
                        // Still waiting for the last frame when the next is due (a stall):
                        // that one goes as it is.
                        self.audio.capture_late();
                        self.capture_and_send(&rtp, &mut pcm, &mut payload, &mut packet).await;
                    }
                    if self.awaiting_processing {
                        // The voice thread missed a whole frame (or just got the one above):
                        // send it as captured, so that one frame at most is in processing.
                        self.awaiting_processing = false;
                        self.audio.processing_late();
                        self.send_frame(&rtp, &mut pcm, &mut payload, &mut packet).await;
                    }
                    if self.audio.capture_ready() {
                        self.capture_and_send(&rtp, &mut pcm, &mut payload, &mut packet).await;
                    } else {
                        capture_deadline = Some(scheduled_send + CAPTURE_WAIT_MAX);
                        capture_retry.as_mut().reset(Instant::now() + CAPTURE_RETRY);
                    }
                    let now = started.elapsed();
                    if now >= self.rtcp.poll_timeout() {
                        let report = self.rtcp.poll_report(now, &self.sender.stats(), &self.receiver.stats(), self.sender.timestamp());
                        if let Some(report) = report {
                            self.send_rtcp(&rtp, &rtcp, &report).await;
                        }
                    }
                    if frames.is_multiple_of(LEVELS_EVERY) {
                        self.report_levels();
                    }
                    if let Some(event) = self.audio.poll_event() {
                        let _ = self.events.send(event).await;
                    }
                    if frames.is_multiple_of(STATS_EVERY) {
                        self.report().await;
                    }
                }
                _ = &mut capture_retry, if capture_deadline.is_some() => {
                    let ready = self.audio.capture_ready();
                    let expired = capture_deadline.is_some_and(|deadline| Instant::now() >= deadline);
                    if ready || expired {
                        capture_deadline = None;
                        if !ready {
                            self.audio.capture_late();
                        }
                        self.capture_and_send(&rtp, &mut pcm, &mut payload, &mut packet).await;
                    } else {
                        capture_retry.as_mut().reset(Instant::now() + CAPTURE_RETRY);
                    }
                }
                done = self.audio.processed(), if self.awaiting_processing => {
                    let ready = match done {
                        Some(done) => self.audio.take_processed(done, &mut pcm),
                        // The thread is gone: the frame goes as captured.
                        None => true,
                    };
                    if ready {
                        self.awaiting_processing = false;
                        self.send_frame(&rtp, &mut pcm, &mut payload, &mut packet).await;
                    }
                }
                scheduled = playout.tick() => {
                    let now = clock_units(started.elapsed(), self.kind.clock_rate());
                    self.play_frame(&mut played_pcm, now);
                    if let Some(units) = self.jitter.take_phase_advance() {
                        let advance = Duration::from_nanos(
                            u64::from(units) * 1_000_000_000 / u64::from(self.kind.clock_rate().max(1)),
                        );
                        playout.reset_at(scheduled + FRAME.saturating_sub(advance));
                    }
                }
                received = rtp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        let from = canonical(from);
                        let arrival = started.elapsed();
                        let bytes = buf.get(..n).unwrap_or_default();
                        self.tap(Direction::In, self.local, from, bytes);
                        // rtcp-mux (RFC 5761): RTCP shares the RTP port when negotiated. A late
                        // STUN answer (our Binding before the call) is neither, and no media:
                        // not counted as foreign. (SRTP leaves the header, so the RTCP test
                        // works before decryption.)
                        if is_stun(bytes) {
                        } else if is_rtcp(bytes) {
                            self.receive_rtcp(bytes, from, arrival);
                        } else {
                            self.receive_rtp(bytes, from, arrival).await;
                        }
                    }
                }
                Some(inbound) = recv_ice(&mut ice_in) => match inbound {
                    // ICE hands over what came on the selected pair (unwrapped from TURN):
                    // the peer's, as its negotiated address would be.
                    Inbound::Media(bytes) => {
                        self.tap_ice(Direction::In, &bytes);
                        let from = self.params.remote;
                        let arrival = started.elapsed();
                        if is_rtcp(&bytes) {
                            self.receive_rtcp(&bytes, from, arrival);
                        } else {
                            self.receive_rtp(&bytes, from, arrival).await;
                        }
                    }
                    // Someone else's: the latch screens it as without ICE (counted as
                    // foreign, never played unless it proves to be the peer's).
                    Inbound::Stranger { from, bytes } => {
                        let arrival = started.elapsed();
                        if is_rtcp(&bytes) {
                            self.receive_rtcp(&bytes, from, arrival);
                        } else {
                            self.receive_rtp(&bytes, from, arrival).await;
                        }
                    }
                },
                received = rtcp.recv_from(&mut rtcp_buf) => {
                    if let Ok((n, from)) = received {
                        let from = canonical(from);
                        let bytes = rtcp_buf.get(..n).unwrap_or_default();
                        self.tap(Direction::In, self.local_rtcp, from, bytes);
                        self.receive_rtcp(bytes, from, started.elapsed());
                    }
                }
                cmd = control.recv() => match cmd {
                    Some(MediaControl::Update(params)) => self.update(params),
                    Some(MediaControl::Mute(on)) => self.muted = on,
                    Some(MediaControl::Dtmf(digits)) => {
                        if let Err(e) = self.dtmf_out.queue_digits(&digits) {
                            let _ = self.events.send(Event::Error { message: format!("dtmf: {e}") }).await;
                        }
                    }
                    Some(MediaControl::DtmfInband(digits)) => {
                        if let Err(e) = self.inband_dtmf.queue(&digits) {
                            let _ = self.events.send(Event::Error { message: format!("dtmf: {e}") }).await;
                        }
                    }
                    Some(MediaControl::Conference(leg)) => {
                        tracing::info!(call = self.call, ?leg, "conference");
                        self.conference = leg.map(|mut leg| {
                            leg.set_rate(self.kind.sample_rate());
                            leg
                        });
                    }
                    Some(MediaControl::CallWaiting(region)) => {
                        let rate = self.kind.sample_rate();
                        self.call_waiting = region.map(|r| (r, r.call_waiting(rate)));
                    }
                    Some(MediaControl::Audio(change)) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        if let Some(message) = self.audio.handle_command(change, now) {
                            warn(&self.events, message).await;
                        }
                    }
                    Some(MediaControl::Stop) | None => break,
                },
                Some(done) = opened.recv() => {
                    if let Some(message) = self.audio.handle_opened(done) {
                        warn(&self.events, message).await;
                    }
                }
            }
        }
        if let Some(path) = self.audio.stop_recording() {
            tracing::info!(call = self.call, "recording saved: {}", path.display());
        }
        if let Some(event) = self.audio.poll_event() {
            let _ = self.events.send(event).await;
        }
        self.report().await;
        let bye = self.rtcp.bye(None);
        self.send_rtcp(&rtp, &rtcp, &bye).await;
        let sink = std::mem::replace(&mut self.sink, FrameSink::null());
        if let Err(e) = sink.finalize() {
            warn(
                &self.events,
                format!("cannot finish the received-audio file: {e}"),
            )
            .await;
        }
    }

    fn destination(&self) -> SocketAddr {
        self.latch.destination()
    }

    /// Captures this tick's frame and sends it, or hands it to the voice processing (which
    /// sends it when it comes back).
    async fn capture_and_send(
        &mut self,
        rtp: &UdpSocket,
        pcm: &mut Vec<i16>,
        payload: &mut Vec<u8>,
        packet: &mut Vec<u8>,
    ) {
        if self.capture_frame(pcm) {
            self.send_frame(rtp, pcm, payload, packet).await;
        } else {
            self.awaiting_processing = true;
        }
    }

    /// This tick's frame into `pcm`: true when it is ready to send, false when it went to the
    /// voice processing (`awaiting_processing`).
    fn capture_frame(&mut self, pcm: &mut Vec<i16>) -> bool {
        pcm.clear();
        // The source advances in real time whether or not we send (hold keeps the file's clock).
        let _ = self.source.next_frame(pcm);
        self.audio.capture(pcm)
    }

    /// Sends the frame in `pcm` (captured, and processed when processing is on).
    async fn send_frame(
        &mut self,
        socket: &UdpSocket,
        pcm: &mut Vec<i16>,
        payload: &mut Vec<u8>,
        packet: &mut Vec<u8>,
    ) {
        let sending = self.params.direction.sends() && !self.muted;
        self.audio.sent(sending.then_some(pcm.as_slice()));
        if self.muted {
            self.mic_level.add_silence(pcm.len());
        } else {
            self.mic_level.add(pcm);
        }
        // A muted conference still passes the other parties on: only the microphone goes.
        let conferencing = self.conference.is_some();
        if self.muted && conferencing {
            pcm.fill(0);
        }
        let inband = self.inband_dtmf.fill(pcm);
        if let Some(leg) = &self.conference {
            leg.add_others(pcm);
        }
        packet.clear();
        // Audio for the peer's packet time gathers here (`media::ptime`); a tick that sends
        // none drops it and the RTP clock skips the time it covered.
        let mut skipped = 0;
        let dtmf = match self.params.telephone_event_pt {
            Some(pt) => self
                .dtmf_out
                .poll_packet(self.sender.timestamp())
                .map(|p| (pt, p)),
            None => None,
        };
        if let Some((pt, dtmf)) = dtmf {
            if self.sender.packetize_event(pt, &dtmf, packet).is_err() {
                packet.clear();
            }
            skipped = self.packetizer.discard(self.kind);
        } else if self.params.direction.sends() && (!self.muted || conferencing || inband) {
            self.packetizer.push(pcm);
            let units = self.packetizer.units_per_packet();
            while self.packetizer.pop(&mut self.packet_pcm) {
                payload.clear();
                packet.clear();
                if self.encoder.encode(&self.packet_pcm, payload).is_err()
                    || self
                        .sender
                        .packetize_audio_units(payload, units, packet)
                        .is_err()
                {
                    packet.clear();
                    self.sender.skip_units(units);
                }
                self.send_rtp(socket, packet).await;
            }
            packet.clear();
        } else {
            self.sender.skip_frame();
            skipped = self.packetizer.discard(self.kind);
        }
        self.sender.skip_units(skipped);
        self.send_rtp(socket, packet).await;
    }

    async fn send_rtp(&mut self, socket: &UdpSocket, packet: &[u8]) {
        if !packet.is_empty()
            && let Some(wire) = self.protect(packet, false)
        {
            if let Some(ice) = &self.ice {
                ice.send(&wire);
                self.tap_ice(Direction::Out, &wire);
                return;
            }
            let dest = self.destination();
            let _ = socket.send_to(&wire, on_socket_of(self.local, dest)).await;
            self.tap(Direction::Out, self.local, dest, &wire);
        }
    }

    /// `--pcap-out`: a copy of the datagram to the recorder (a no-op without it).
    /// `local` is the socket's address read at the start of the call, not asked per packet.
    fn tap(&self, dir: Direction, local: Option<SocketAddr>, peer: SocketAddr, bytes: &[u8]) {
        if let Some(tap) = &self.capture
            && let Some(local) = local
        {
            tap.offer(dir, canonical(local), canonical(peer), bytes);
        }
    }

    /// `--pcap-out` with ICE: the datagram as carried on the selected pair (its two ends; a
    /// relayed pair shows the relay's address). Nothing before a pair is selected.
    fn tap_ice(&self, dir: Direction, bytes: &[u8]) {
        if self.capture.is_none() {
            return;
        }
        let pair = self
            .ice_status
            .as_ref()
            .and_then(|status| status.borrow().selected.clone());
        if let Some(pair) = pair {
            self.tap(dir, Some(pair.local.address), pair.remote.address, bytes);
        }
    }

    /// The packet as it goes on the wire: SRTP/SRTCP when negotiated. `None`: drop it (only
    /// after 2^48 packets on one key).
    fn protect<'a>(&mut self, packet: &'a [u8], rtcp: bool) -> Option<Cow<'a, [u8]>> {
        let Some(srtp) = &mut self.srtp else {
            return Some(Cow::Borrowed(packet));
        };
        let sealed = if rtcp {
            srtp.protect_rtcp(packet)
        } else {
            srtp.protect_rtp(packet)
        };
        sealed.ok().map(Cow::Owned)
    }

    /// The plain packet from the wire; `None` when SRTP authentication fails (counted).
    fn unprotect<'a>(&mut self, datagram: &'a [u8], rtcp: bool) -> Option<Cow<'a, [u8]>> {
        let Some(srtp) = &mut self.srtp else {
            return Some(Cow::Borrowed(datagram));
        };
        let plain = if rtcp {
            srtp.unprotect_rtcp(datagram)
        } else {
            srtp.unprotect_rtp(datagram)
        };
        plain.map(Cow::Owned)
    }

    /// Plays the frame due at `now` (clock units, the arrival clock of `receive`).
    fn play_frame(&mut self, pcm: &mut Vec<i16>, now: u32) {
        pcm.clear();
        let frame = self.kind.samples_per_frame();
        // One 20 ms tick is one jitter frame, or two of 10 ms (`media::ptime`), popped
        // together: only 20 ms frames are popped on the timed schedule.
        let timed = self.receive_frame_ms == 20;
        let mut ok = true;
        for _ in 0..20 / self.receive_frame_ms {
            let playout = if timed {
                self.jitter.pop_frame_at(now)
            } else {
                self.jitter.pop_frame()
            };
            if matches!(playout, Playout::Missing) {
                self.missing_run = self.missing_run.saturating_add(1);
            } else {
                self.missing_run = 0;
            }
            ok &= match playout {
                Playout::Frame(payload) => self.decoder.decode(Some(&payload), pcm).is_ok(),
                // The peer stopped sending (hold, mute without packets, a dead link): after
                // `MAX_CONCEALED_MS` of concealment, silence. Opus's CELT-mode concealment
                // would otherwise go on repeating the last sound at a slowly falling level.
                Playout::Missing if self.missing_run * self.receive_frame_ms > MAX_CONCEALED_MS => {
                    false
                }
                Playout::Missing => match self.jitter.peek_next() {
                    // Opus rebuilds a lost frame from the next packet's in-band FEC.
                    Some(next) => {
                        let next = next.to_vec();
                        self.decoder.decode_lost_with_next(&next, pcm).is_ok()
                    }
                    None => self.decoder.decode(None, pcm).is_ok(),
                },
                Playout::Buffering => false,
            };
        }
        if !ok || pcm.is_empty() {
            pcm.clear();
        }
        // Whatever the packets held, the tick plays exactly one frame.
        pcm.resize(frame, 0);
        // In a conference the other legs hear this peer; the local output gets the whole mix
        // once, from the host leg.
        if let Some(leg) = &mut self.conference {
            leg.publish(pcm);
            if leg.is_host() {
                leg.add_others(pcm);
            } else {
                pcm.fill(0);
            }
        }
        if let Some((_, tone)) = &mut self.call_waiting {
            tone.mix(pcm);
        }
        self.speaker_level.add(pcm);
        let _ = self.sink.write_frame(pcm);
        if let Some(message) = self.audio.play(pcm) {
            tracing::warn!("{message}");
            let _ = self.events.try_send(Event::Warning { message });
        }
    }

    /// VU levels of the last 100 ms. Dropped rather than waited for when the front end lags
    /// (the next ones follow 100 ms later).
    fn report_levels(&mut self) {
        let mic_db = round_db(self.mic_level.take_dbfs());
        if !self.muted {
            self.mic_peak_db = Some(self.mic_peak_db.map_or(mic_db, |peak| peak.max(mic_db)));
        }
        let _ = self.events.try_send(Event::Levels {
            call: self.call.to_string(),
            mic_db,
            speaker_db: round_db(self.speaker_level.take_dbfs()),
        });
    }

    fn negotiated(&self, payload_type: u8) -> bool {
        payload_type == self.params.payload_type
            || Some(payload_type) == self.params.telephone_event_pt
    }

    /// An RTP datagram from the wire. Only the peer's sources get past `latch` (see
    /// `nat::latch` for the rules); a stranger's packet is counted there and touches nothing
    /// else: not the SRTP counters, the RTP statistics, the jitter buffer or the decoder.
    async fn receive_rtp(&mut self, datagram: &[u8], from: SocketAddr, arrival: Duration) {
        let (plain, from_peer) = match self.latch.screen_rtp(from) {
            Screen::Foreign => {
                self.note_foreign(from, false);
                return;
            }
            Screen::Peer => {
                // An SRTP failure here is the peer's stream damaged or forged: counted by SRTP.
                let Some(plain) = self.unprotect(datagram, false) else {
                    return;
                };
                (plain, true)
            }
            Screen::Candidate => {
                // Latching applies and the source is new: the packet must prove it is the
                // peer's (SRTP authentication, or a signalling IP or the known SSRC) before
                // the latch moves to it. SRTP is consulted only to authenticate it.
                let plain = match &mut self.srtp {
                    Some(srtp) => srtp.authenticate_rtp(datagram).map(Cow::Owned),
                    None => Some(Cow::Borrowed(datagram)),
                };
                let evidence =
                    plain
                        .as_deref()
                        .and_then(|p| RtpPacket::parse(p).ok())
                        .map(|packet| Evidence {
                            ssrc: packet.ssrc(),
                            negotiated: self.negotiated(packet.payload_type()),
                            authenticated: self.srtp.is_some(),
                        });
                match (self.latch.consider(from, evidence, arrival), plain) {
                    (Some(to), Some(plain)) => {
                        tracing::info!(call = self.call, sdp = %self.params.remote, %to, "RTP latched: sending to where the peer's RTP comes from");
                        (plain, false)
                    }
                    _ => {
                        self.note_foreign(from, false);
                        return;
                    }
                }
            }
        };
        let Ok(packet) = RtpPacket::parse(&plain) else {
            return;
        };
        if from_peer {
            // Its SSRC is the peer's stream: a later source that keeps it may move the latch.
            self.latch.heard(packet.ssrc(), arrival);
        }
        self.receive(&packet, arrival).await;
    }

    /// An RTCP datagram (on the RTCP socket, or muxed on the RTP one) from `from`: read only
    /// when it comes from the peer's RTCP address or beside its latched RTP source.
    fn receive_rtcp(&mut self, datagram: &[u8], from: SocketAddr, arrival: Duration) {
        if !self.latch.screen_rtcp(from) {
            self.note_foreign(from, true);
            return;
        }
        if let Some(plain) = self.unprotect(datagram, true) {
            // Malformed reports are dropped; the call goes on without them.
            let Ok(events) = self.rtcp.handle_packet(&plain, arrival) else {
                return;
            };
            for event in events {
                if let RtcpEvent::ReportAboutUs { report, .. } = event
                    && let Some(percent) = self.fec.handle_report(report.fraction_lost)
                {
                    // A codec without FEC ignores it; a failed ctl keeps the old setting.
                    let _ = self.encoder.set_expected_loss(percent);
                }
            }
        }
    }

    /// Says once per call in the log that a stranger sends to us (the count is in the `media`
    /// event; a log line per packet would let the stranger fill the disk).
    fn note_foreign(&mut self, from: SocketAddr, rtcp: bool) {
        self.last_foreign = Some(from);
        if self.latch.stats().foreign() == 1 {
            let what = if rtcp { "RTCP" } else { "RTP" };
            tracing::info!(call = self.call, %from, sdp = %self.params.remote, latched = ?self.latch.latched(), "dropping {what} from a source that is not the peer's (further ones are only counted)");
        }
    }

    /// A plain RTP packet from the peer: DTMF, or audio into the jitter buffer.
    async fn receive(&mut self, packet: &RtpPacket<'_>, arrival: Duration) {
        let pt = packet.payload_type();
        let arrival_units = clock_units(arrival, self.kind.clock_rate());
        let outcome = self.receiver.handle_packet(packet, arrival_units);
        if Some(pt) == self.params.telephone_event_pt {
            if let Ok(Some(digit)) = self
                .dtmf_in
                .handle_packet(packet.timestamp(), packet.payload())
            {
                let _ = self
                    .events
                    .send(Event::Dtmf {
                        call: self.call.to_string(),
                        digit: digit.digit.to_string(),
                    })
                    .await;
            }
            return;
        }
        if pt != self.params.payload_type {
            return;
        }
        match outcome {
            ReceiveOutcome::Accepted { restarted, .. } => {
                if restarted {
                    self.jitter.reset();
                }
                if ptime::is_sample_codec(self.kind) {
                    let units = (self.kind.clock_rate() * self.receive_frame_ms / 1000) as usize;
                    for (timestamp, piece) in
                        ptime::split_payload(packet.timestamp(), packet.payload(), units)
                    {
                        self.jitter.insert_at(timestamp, piece, arrival_units);
                    }
                } else {
                    self.jitter
                        .insert_at(packet.timestamp(), packet.payload(), arrival_units);
                }
            }
            ReceiveOutcome::Duplicate | ReceiveOutcome::Discarded => {}
        }
    }

    fn update(&mut self, params: MediaParams) {
        if params.codec != self.params.codec {
            let kind = kind_of(params.codec);
            if let (Ok(enc), Ok(dec)) = (codec::encoder(kind), codec::decoder(kind)) {
                self.kind = kind;
                for message in self.audio.set_codec_rate(kind.sample_rate()) {
                    tracing::warn!("{message}");
                    let _ = self.events.try_send(Event::Warning { message });
                }
                self.encoder = enc;
                let _ = self
                    .encoder
                    .set_expected_loss(self.fec.expected_loss_percent());
                self.decoder = dec;
                if let Some((region, tone)) = &mut self.call_waiting {
                    *tone = region.call_waiting(kind.sample_rate());
                }
                self.inband_dtmf.set_rate(kind.sample_rate());
                if let Some(leg) = &mut self.conference {
                    leg.set_rate(kind.sample_rate());
                }
                self.receive_frame_ms = ptime::receive_frame_ms(kind, params.ptime_ms);
                self.jitter = jitter_buffer(kind, self.receive_frame_ms);
                self.packetizer =
                    Packetizer::new(kind, ptime::send_ptime_ms(kind, params.ptime_ms));
                self.sender = RtpSender::new(
                    u64::from(self.sender.ssrc()) << 16 | 1,
                    params.payload_type,
                    kind.timestamp_step(),
                );
            }
        } else if params.ptime_ms != self.params.ptime_ms {
            // Same codec, another packet time (a re-INVITE): what waits for the old one goes.
            let skipped = self.packetizer.discard(self.kind);
            self.sender.skip_units(skipped);
            self.packetizer =
                Packetizer::new(self.kind, ptime::send_ptime_ms(self.kind, params.ptime_ms));
            let frame_ms = ptime::receive_frame_ms(self.kind, params.ptime_ms);
            if frame_ms != self.receive_frame_ms {
                self.receive_frame_ms = frame_ms;
                self.jitter = jitter_buffer(self.kind, frame_ms);
            }
        }
        // A new SDP address forgets the latched source; the counters and the SSRC heard stay.
        self.latch.update(Negotiated::of(&params));
        if params.srtp != self.params.srtp {
            // A re-INVITE changed the keys (or, with optional SRTP, dropped or added them).
            self.srtp = match (self.srtp.take(), &params.srtp) {
                (Some(mut session), Some(keys)) => session.rekey(keys).ok().map(|()| session),
                (None, Some(keys)) => SrtpSession::new(keys).ok(),
                (_, None) => None,
            };
        }
        self.params = params;
    }

    /// RTCP goes to the peer's RTCP address, or over the RTP socket with rtcp-mux.
    async fn send_rtcp(&mut self, rtp: &UdpSocket, rtcp: &UdpSocket, bytes: &[u8]) {
        let Some(bytes) = self.protect(bytes, true) else {
            return;
        };
        let bytes = bytes.as_ref();
        // ICE: on the RTCP component's pair, or multiplexed on the RTP one (`ice_task`).
        if let Some(ice) = &self.ice {
            ice.send_rtcp(bytes);
            self.tap_ice(Direction::Out, bytes);
            return;
        }
        // Latched: beside the latched RTP source, where its RTCP is accepted from too.
        let dest = self.latch.rtcp_destination();
        let (socket, local) = if self.params.rtcp_mux {
            (rtp, self.local)
        } else {
            (rtcp, self.local_rtcp)
        };
        let _ = socket.send_to(bytes, on_socket_of(self.local, dest)).await;
        self.tap(Direction::Out, local, dest, bytes);
    }

    async fn report(&mut self) {
        let stats = self.receiver.stats();
        let remote = self.rtcp.remote_stats();
        let rtt_ms = remote
            .and_then(|r| r.rtt)
            .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
        let loss_pct = if stats.expected > 0 {
            100.0 * stats.lost.max(0) as f64 / stats.expected as f64
        } else {
            0.0
        };
        // One-way delay estimate: half the RTT when known, plus our playout buffer.
        let delay_ms = rtt_ms.map(|r| r / 2.0).unwrap_or(0.0)
            + f64::from(self.jitter.target_delay() * self.receive_frame_ms);
        // The score of what arrived since the last report (none: no score for silence).
        let lost = stats.lost.max(0) as u64;
        let mos = quality::interval_mos(
            stats.received.saturating_sub(self.received_at_last_report),
            lost.saturating_sub(self.lost_at_last_report),
            self.kind,
            delay_ms as f32,
            stats.jitter_ms as f32,
        );
        self.received_at_last_report = stats.received;
        self.lost_at_last_report = lost;
        let (reports, about_us) = self.rtcp.report_counts();
        let peer = (reports > 0).then(|| PeerReport {
            reports,
            about_us,
            loss_pct: remote.map(|r| (f64::from(r.loss_percent()) * 10.0).round() / 10.0),
            jitter_ms: remote.map(|r| (r.jitter_ms * 10.0).round() / 10.0),
            highest_seq: remote.map(|r| r.highest_sequence),
        });
        let mic = self.mic_source.clone().map(|source| MicReport {
            source,
            peak_db: self.mic_peak_db.take(),
            muted: self.muted,
            failed: self.mic_failure.clone(),
        });
        // Each loss warns once, even when a restart repaired it before this report.
        let consent_lost = self.ice_status.as_ref().and_then(|s| {
            let s = s.borrow();
            (s.consent_losses > self.consent_warned)
                .then(|| s.lost_pair.clone().map(|pair| (s.consent_losses, pair)))
                .flatten()
        });
        let turn_errors: Vec<String> = self
            .ice_status
            .as_ref()
            .map(|s| {
                s.borrow()
                    .turn_errors
                    .iter()
                    .skip(self.turn_warned)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for error in turn_errors {
            self.turn_warned += 1;
            let message = format!("call {}: {error}", self.call);
            let _ = self.events.send(Event::Warning { message }).await;
        }
        if let Some((losses, pair)) = consent_lost {
            self.consent_warned = losses;
            let message = format!(
                "call {}: the peer stopped answering ICE consent checks on {pair} for {} s \
                 (RFC 7675): media stopped; an ICE restart (`ice-restart`, or the caller's own) \
                 may bring it back",
                self.call,
                crate::ice::agent::CONSENT_TIMEOUT.as_secs()
            );
            let _ = self.events.send(Event::Warning { message }).await;
        }
        let _ = self
            .events
            .send(Event::Media {
                ice: self
                    .ice_status
                    .as_ref()
                    .map(|s| Box::new(ice_report(&s.borrow()))),
                call: self.call.to_string(),
                codec: format!(
                    "{}/{}",
                    self.params.codec.encoding_name().to_ascii_lowercase(),
                    self.kind.clock_rate()
                ),
                sent: self.sender.stats().packets,
                received: stats.received,
                lost: stats.lost.max(0) as u64,
                jitter_ms: (stats.jitter_ms * 100.0).round() / 100.0,
                loss_pct: (loss_pct * 100.0).round() / 100.0,
                rtt_ms,
                mos: mos.map(|mos| (f64::from(mos) * 100.0).round() / 100.0),
                // With ICE, the selected pair's ends.
                remote: Some(
                    self.ice_status
                        .as_ref()
                        .and_then(|s| s.borrow().selected.as_ref().map(|p| p.remote.address))
                        .unwrap_or_else(|| self.destination())
                        .to_string(),
                ),
                local: self
                    .ice_status
                    .as_ref()
                    .and_then(|s| s.borrow().selected.as_ref().map(|p| p.local.address))
                    .or(self.local)
                    .map(|a| a.to_string()),
                foreign: self.latch.stats().foreign(),
                encrypted: self.srtp.is_some(),
                srtp: self.srtp.as_ref().map(|srtp| SrtpStats {
                    suite: srtp.suite().name(),
                    auth_failures: srtp.auth_failures(),
                    keys: if self.params.signalling_tls {
                        KeyTransport::Tls
                    } else {
                        KeyTransport::Clear
                    },
                }),
                foreign_from: self.last_foreign.map(|a| a.to_string()),
                peer,
                mic,
            })
            .await;
    }
}

/// Creates the call's WAV output; with `keep`, what the file held (a tone recorded just
/// before, at any rate) is resampled to `rate` and written first.
fn create_sink(
    path: &std::path::Path,
    rate: u32,
    keep: bool,
) -> Result<WavSink, crate::media::MediaError> {
    let mut before = Vec::new();
    if keep && let Ok(mut previous) = WavSource::open(path, rate) {
        // A tone lasts minutes at most; bound it anyway (10 min).
        let limit = rate as usize * 600;
        while before.len() < limit {
            match previous.next_frame(&mut before) {
                Ok(crate::media::wav::SourceStatus::Playing) => {}
                _ => break,
            }
        }
    }
    let mut sink = WavSink::create(path, rate)?;
    if !before.is_empty() {
        sink.write_frame(&before)?;
    }
    Ok(sink)
}

/// Opens the sound devices of `Device` endpoints (on a blocking thread: backends take time);
/// failures become warnings and that direction stays silent. Also returns why the input
/// device is not there, when it is not (the diagnosis says so).
async fn open_devices(
    io: &MediaIo,
    rate: u32,
    events: &mpsc::Sender<Event>,
) -> (Option<crate::media::audio::AudioIo>, Option<String>) {
    let name = |e: &AudioEndpoint| match e {
        AudioEndpoint::Device(name) => Some(name.clone()),
        _ => None,
    };
    let (input, output) = (name(&io.input), name(&io.output));
    if input.is_none() && output.is_none() {
        return (None, None);
    }
    let wants_input = input.is_some();
    let failed = |message: String| wants_input.then_some(message);
    let (input, output) = (
        input.unwrap_or_else(|| "null".into()),
        output.unwrap_or_else(|| "null".into()),
    );
    let opened = tokio::task::spawn_blocking(move || AudioDevice::open(&input, &output)).await;
    let (mut device, warnings) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            let message = format!("sound devices: {e}; using silence");
            warn(events, message.clone()).await;
            return (None, failed(message));
        }
        Err(e) => {
            let message = format!("sound devices: {e}; using silence");
            warn(events, message.clone()).await;
            return (None, failed(message));
        }
    };
    let mut input_failure = None;
    for warning in warnings {
        if warning.0.starts_with("sound input") {
            input_failure = Some(warning.0.clone());
        }
        warn(events, warning.0).await;
    }
    if let Err(e) = device.set_codec_rate(rate) {
        let message = format!("sound devices: {e}; using silence");
        warn(events, message.clone()).await;
        return (None, failed(message));
    }
    if wants_input && !device.has_capture() {
        input_failure.get_or_insert_with(|| "the input device did not open".into());
    }
    let device = (device.has_capture() || device.has_playback()).then_some(device);
    (device, input_failure)
}

/// A jitter buffer of `frame_ms` frames starting at the usual delay (`JITTER_FRAMES` of 20 ms).
fn jitter_buffer(kind: CodecKind, frame_ms: u32) -> JitterBuffer {
    JitterBuffer::new(
        kind.clock_rate() * frame_ms / 1000,
        JITTER_FRAMES * 20 / frame_ms.max(1),
    )
}

fn round_db(db: f32) -> f32 {
    (db * 10.0).round() / 10.0
}

async fn warn(events: &mpsc::Sender<Event>, message: String) {
    tracing::warn!("{message}");
    let _ = events.send(Event::Warning { message }).await;
}

/// The next media packet from ICE; never, without ICE.
async fn recv_ice(ice: &mut Option<mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match ice {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// ICE's part of the `media` event.
fn ice_report(status: &IceStatus) -> IceReport {
    let mut report = ice_path_report(status);
    report.consent_losses = status.consent_losses;
    report.lost_pair = status.lost_pair.as_ref().map(ToString::to_string);
    report
}

fn ice_path_report(status: &IceStatus) -> IceReport {
    let rtcp = status.rtcp.as_ref().map(ToString::to_string);
    match (&status.selected, &status.failed) {
        (_, Some(tried)) => IceReport {
            path: "failed".to_owned(),
            local: None,
            remote: None,
            relay: None,
            tried: tried.iter().map(ToString::to_string).collect(),
            rtcp,
            consent_losses: 0,
            lost_pair: None,
        },
        (Some(pair), None) => IceReport {
            path: if status.consent_lost {
                "consent-lost".to_owned()
            } else {
                pair.path().to_owned()
            },
            local: Some(format!("{} {}", pair.local.kind, pair.local.address)),
            remote: Some(format!("{} {}", pair.remote.kind, pair.remote.address)),
            relay: pair.relay.map(str::to_owned),
            tried: Vec::new(),
            rtcp,
            consent_losses: 0,
            lost_pair: None,
        },
        (None, None) => IceReport {
            path: "checking".to_owned(),
            local: None,
            remote: None,
            relay: None,
            tried: Vec::new(),
            rtcp,
            consent_losses: 0,
            lost_pair: None,
        },
    }
}

/// `dest` as the media sockets can take it: an IPv4 peer of a dual-stack (`[::]`) RTP socket is
/// reached at its IPv4-mapped address. `local` is the RTP socket's address, read once per call
/// (RTP and RTCP sockets are bound alike): asking the kernel per packet was a getsockname(2)
/// per packet sent.
fn on_socket_of(local: Option<SocketAddr>, dest: SocketAddr) -> SocketAddr {
    match local {
        Some(local) => on_socket_family(dest, local),
        None => dest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's media runs on a thread of its own: its timers keep firing while every thread
    /// of the runtime that started it is busy (blocked here outright: on the shared runtime
    /// the ticks below could not run and the wait would end empty), the thread carries the
    /// call's name, and aborting the handle ends the task.
    #[tokio::test(flavor = "current_thread")]
    async fn media_ticks_on_its_own_thread_while_the_spawning_runtime_is_busy() {
        let (ticked, ticks) = std::sync::mpsc::channel::<Option<String>>();
        let task = spawn_dedicated("sipterm-media-7".to_string(), async move {
            let mut tick = tokio::time::interval(FRAME);
            for _ in 0..3 {
                tick.tick().await;
            }
            let _ = ticked.send(std::thread::current().name().map(str::to_string));
            std::future::pending::<()>().await;
        });
        // Blocks this runtime's only thread until the media ticked three times.
        let name = ticks
            .recv_timeout(Duration::from_secs(20))
            .expect("the media ticked while its spawner was blocked");
        assert_eq!(name.as_deref(), Some("sipterm-media-7"));
        task.abort();
        let ended = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the aborted task ends");
        assert!(ended.is_err_and(|e| e.is_cancelled()));
    }
}
