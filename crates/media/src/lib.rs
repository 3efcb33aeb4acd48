//! natter-media: the GStreamer side of a call.
//!
//! One [`CallMedia`] is one GStreamer pipeline with one `rtpbin`; every Jingle content
//! (audio, video) added with [`CallMedia::add_stream`] is one rtpbin session. SRTP never
//! runs inside GStreamer: plain RTP/RTCP leaves through `appsink`s into the caller's
//! `outgoing` callback (which protects it and sends it over ICE), and plain RTP/RTCP
//! coming back (already unprotected) enters through [`CallMedia::push_incoming`], which
//! demultiplexes rtcp-mux itself (RFC 5761) into two `appsrc`s.
//!
//! Per session `N` the pipeline looks like this:
//!
//! ```text
//! send:    source → convert/scale/rate → [webrtcdsp] → volume | black-frame probe
//!          → encoder → payloader(pt, ssrc) → rtpbin.send_rtp_sink_N
//!          rtpbin.send_rtp_src_N  → appsink → outgoing(RTP)
//!          rtpbin.send_rtcp_src_N → appsink → outgoing(RTCP)
//! receive: appsrc(RTP)  → rtpbin.recv_rtp_sink_N    (caps from request-pt-map)
//!          appsrc(RTCP) → rtpbin.recv_rtcp_sink_N
//!          rtpbin.recv_rtp_src_N_<ssrc>_<pt> → funnel → depayloader → decoder
//!            audio: → level → spectrum → [webrtcechoprobe] → autoaudiosink | fakesink
//!            video: → videoconvert → RGBA → appsink → on_video_frame
//! ```
//!
//! Every remote SSRC of a session goes through the session's `funnel`, so a peer that
//! changes SSRC keeps playing and no rtpbin pad is ever left unlinked.
//!
//! GStreamer 1.22 details this relies on:
//! - rtpsession sends RTCP PLI for a depayloader's key frame request only if the payload
//!   type's caps (from `request-pt-map`) carry `rtcp-fb-nack-pli`; video caps do.
//! - opusdec runs without `use-inband-fec`: with it, one undecodable packet makes it
//!   retry that packet forever (silence). We still send FEC; loss is concealed by PLC.

mod codec;
mod devices;
mod packet;
mod pipeline;
mod props;
mod stats;
mod stream;

use std::fmt;
use std::sync::OnceLock;

pub use devices::{list_devices, Device};
pub use pipeline::CallMedia;
pub use stats::StreamStats;

/// Errors of the media engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("{what} needs GStreamer element(s) that are not installed: {}", .elements.join(", "))]
    MissingElements { what: String, elements: Vec<String> },
    #[error("invalid media configuration: {0}")]
    InvalidConfig(String),
    #[error("no {kind} device named {name:?}")]
    DeviceNotFound { kind: MediaKind, name: String },
    #[error("could not build the media pipeline: {0}")]
    Pipeline(String),
    #[error("the media pipeline refused to change state: {0}")]
    StateChange(String),
    #[error("the media pipeline has been stopped")]
    Stopped,
}

/// Initialises GStreamer once; later calls return the first result.
pub fn init() -> Result<(), MediaError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(MediaError::Init)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    H264,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            Codec::Vp8 | Codec::H264 => MediaKind::Video,
        }
    }

    /// The RTP encoding name, as in SDP/Jingle `<payload-type name=…>`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "OPUS",
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
        }
    }

    /// The only RTP clock rate each codec is defined with (RFC 7587, RFC 7741, RFC 6184).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::H264 => 90_000,
        }
    }

    /// Whether the GStreamer elements to send and receive this codec are installed.
    pub fn is_available(self) -> bool {
        init().is_ok() && codec::CodecElements::find(self).is_ok()
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// The codecs this installation can send and receive, to offer in Jingle.
pub fn available_codecs() -> Vec<Codec> {
    [Codec::Opus, Codec::Vp8, Codec::H264]
        .into_iter()
        .filter(|c| c.is_available())
        .collect()
}

/// One negotiated Jingle content.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub kind: MediaKind,
    pub codec: Codec,
    /// The negotiated payload type; must be dynamic (96–127).
    pub payload_type: u8,
    pub clock_rate: u32,
    /// Our SSRC for this stream.
    pub ssrc: u32,
    /// Negotiated format parameters, e.g. `useinbandfec=1`.
    pub fmtp: Vec<(String, String)>,
}

impl StreamSpec {
    /// A spec with the codec's kind and clock rate and no fmtp.
    pub fn new(codec: Codec, payload_type: u8, ssrc: u32) -> Self {
        StreamSpec {
            kind: codec.kind(),
            codec,
            payload_type,
            clock_rate: codec.clock_rate(),
            ssrc,
            fmtp: Vec::new(),
        }
    }

    pub(crate) fn fmtp(&self, name: &str) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn validate(&self) -> Result<(), MediaError> {
        if self.kind != self.codec.kind() {
            return Err(MediaError::InvalidConfig(format!(
                "{} is not a {} codec",
                self.codec, self.kind
            )));
        }
        // The GStreamer payloaders only accept dynamic payload types.
        if !(96..=127).contains(&self.payload_type) {
            return Err(MediaError::InvalidConfig(format!(
                "payload type {} for {} is outside the dynamic range 96–127",
                self.payload_type, self.codec
            )));
        }
        if self.clock_rate != self.codec.clock_rate() {
            return Err(MediaError::InvalidConfig(format!(
                "{} runs at {} Hz, not {} Hz",
                self.codec,
                self.codec.clock_rate(),
                self.clock_rate
            )));
        }
        Ok(())
    }
}

/// Where the media we send comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Live test sources: a sine tone and a `videotestsrc` pattern (e.g. "smpte", "ball").
    Test {
        audio_freq: f64,
        video_pattern: String,
    },
    /// Capture devices by display name (see [`list_devices`]); `None` picks the default.
    Devices {
        microphone: Option<String>,
        camera: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    pub source: Source,
    /// `false` plays remote audio into a `fakesink` (tests, machines without sound).
    pub play_audio: bool,
    pub echo_cancellation: bool,
    pub video_size: (u32, u32),
    pub framerate: u32,
    /// Run `spectrum` on the decoded remote audio (its peak frequency in
    /// [`StreamStats`]): tests and diagnostics. An FFT ten times a second is not free, so
    /// calls leave it off; `level` (loudness) always runs.
    pub analyse_audio: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            source: Source::Devices {
                microphone: None,
                camera: None,
            },
            play_audio: true,
            echo_cancellation: true,
            video_size: (640, 480),
            framerate: 30,
            analyse_audio: false,
        }
    }
}

/// Receives every plain RTP and RTCP packet a stream sends (see [`CallMedia::add_stream`]).
pub type PacketCallback = Box<dyn Fn(&[u8]) + Send + Sync>;

/// A stream of one [`CallMedia`]; its number is the rtpbin session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub(crate) u32);

impl StreamId {
    pub fn session(self) -> u32 {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// One decoded remote video frame.
#[derive(Clone, PartialEq)]
pub struct VideoFrame {
    pub stream: StreamId,
    pub width: u32,
    pub height: u32,
    /// Bytes per row of `data`.
    pub stride: usize,
    /// RGBA, `stride * height` bytes.
    pub data: Vec<u8>,
}

impl fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoFrame")
            .field("stream", &self.stream)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Something the pipeline reported while running.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// An element failed; the call's media has most likely stopped flowing.
    Error {
        element: String,
        message: String,
    },
    Warning {
        element: String,
        message: String,
    },
}
