//! The media engine's pure parts: RTP packets, codecs, resampling, WAV files, DTMF, tones, the
//! RTP session (sequence/jitter/loss bookkeeping) and the playout buffer.
//!
//! Everything here is sans-IO and deterministic: no sockets, no tokio, no clock reads. Time comes
//! in as arguments (RTP clock units or frame ticks), so the tokio media task drives it and tests
//! run on virtual time. The media task's loop per 20 ms tick is, roughly:
//!
//! ```text
//! capture frame --Resampler--> codec rate --Encoder--> RtpSender::packetize_audio --> socket
//! socket --RtpPacket::parse--> RtpReceiver::handle_packet --> JitterBuffer::insert
//! tick --> JitterBuffer::pop_frame --Decoder (None = conceal)--> Resampler --> playback frame
//! ```

pub mod audio;
pub mod backlog;
pub mod codec;
pub mod dtmf;
pub mod fec;
pub mod inband_dtmf;
pub mod jitter;
pub mod mixer;
pub mod ptime;
pub mod quality;
pub mod record;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;
pub mod tones;
pub mod voice;
pub mod wav;

/// Every frame the engine moves is this long; ptime is fixed at 20 ms for now.
pub const FRAME_MS: u32 = 20;

/// Samples in one 20 ms mono frame at `rate` Hz (160 at 8 kHz, 960 at 48 kHz).
pub const fn samples_per_frame(rate: u32) -> usize {
    (rate / (1000 / FRAME_MS)) as usize
}

/// Errors of the media layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("RTP packet of {len} bytes is shorter than its header needs ({needed} bytes)")]
    RtpTruncated { len: usize, needed: usize },
    #[error("unsupported RTP version {0} (only 2 is defined)")]
    RtpVersion(u8),
    #[error("RTP padding length {padding} does not fit in the {available} bytes after the header")]
    RtpPadding { padding: usize, available: usize },
    #[error("cannot build RTP packet: {0}")]
    RtpBuild(&'static str),
    #[error("frame has {got} samples but the codec takes exactly {expected}")]
    FrameSize { expected: usize, got: usize },
    #[error("opus codec: {0}")]
    Opus(#[from] audiopus::Error),
    #[error("cannot set up resampler: {0}")]
    ResamplerSetup(#[from] rubato::ResamplerConstructionError),
    #[error("resampling failed: {0}")]
    Resample(#[from] rubato::ResampleError),
    #[error("sample rate {0} Hz is unsupported (must be a positive multiple of 50 Hz)")]
    UnsupportedRate(u32),
    #[error("WAV file: {0}")]
    Wav(#[from] hound::Error),
    #[error("unsupported WAV format: {0}")]
    WavFormat(&'static str),
    #[error("voice processing: {0}")]
    Voice(#[from] aec3::graph::GraphError),
    #[error("{0:?} is not a DTMF digit (0-9 * # A-D)")]
    DtmfDigit(char),
    #[error("telephone-event payload of {0} bytes is shorter than 4")]
    DtmfPayloadTruncated(usize),
    #[error("more than {0} DTMF digits waiting to be sent")]
    DtmfQueueFull(usize),
    #[error(
        "DTMF duration {duration_ms} ms does not fit the 16-bit duration field at {clock_rate} Hz"
    )]
    DtmfDuration { duration_ms: u32, clock_rate: u32 },
}
