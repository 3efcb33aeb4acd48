//! Which GStreamer elements carry each codec, and how they are tuned for calls.

use crate::props::{make, set, set_str};
use crate::{Codec, MediaError, StreamSpec};

/// Factory names for one codec, the first installed of each set of alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodecElements {
    pub encoder: &'static str,
    pub payloader: &'static str,
    pub depayloader: &'static str,
    /// Between depayloader and decoder (H.264 access units for the decoder).
    pub parser: Option<&'static str>,
    pub decoder: &'static str,
}

impl CodecElements {
    pub fn find(codec: Codec) -> Result<Self, MediaError> {
        let (encoders, payloader, depayloader, parser, decoders): (
            &[&'static str],
            _,
            _,
            _,
            &[&'static str],
        ) = match codec {
            Codec::Opus => (
                &["opusenc"],
                "rtpopuspay",
                "rtpopusdepay",
                None,
                &["opusdec"],
            ),
            Codec::Vp8 => (&["vp8enc"], "rtpvp8pay", "rtpvp8depay", None, &["vp8dec"]),
            Codec::H264 => (
                &["x264enc", "openh264enc"],
                "rtph264pay",
                "rtph264depay",
                Some("h264parse"),
                &["avdec_h264", "openh264dec"],
            ),
        };
        let mut missing = Vec::new();
        let mut pick = |candidates: &[&'static str]| {
            let found = candidates
                .iter()
                .copied()
                .find(|name| gst::ElementFactory::find(name).is_some());
            if found.is_none() {
                missing.push(candidates.join(" or "));
            }
            found.unwrap_or_default()
        };
        let elements = CodecElements {
            encoder: pick(encoders),
            payloader: pick(&[payloader]),
            depayloader: pick(&[depayloader]),
            parser: parser.map(|p| pick(&[p])),
            decoder: pick(decoders),
        };
        if missing.is_empty() {
            Ok(elements)
        } else {
            Err(MediaError::MissingElements {
                what: codec.to_string(),
                elements: missing,
            })
        }
    }
}

const VIDEO_BITRATE: u32 = 800_000;
/// A key frame at least every two seconds at 30 fps, so a lost one heals quickly.
const KEYFRAME_INTERVAL: u32 = 60;
const MTU: u32 = 1200;
/// libopus' default is 10, its most expensive setting. From 2 up, SILK quantises with
/// delayed decision (2–4 survivor states, for the frame and again for its FEC copy),
/// which is most of the encoder's time; 1 keeps the same bitrate, bandwidth, mode and
/// in-band FEC and quantises greedily, at a small cost in SNR. Measured on the 2-core VM
/// `benches/call.rs` runs on (20 ms mono frames, 32 kbit/s fullband, FEC for 10 % loss,
/// live 20 ms cadence): one encoder costs ~2.3 % of a core at 5, ~1.7 % at 3, ~1.0 % at 1,
/// out of a 5 % budget per peer for the whole call.
const OPUS_COMPLEXITY: i32 = 1;

/// Creates and tunes the encoder for a stream.
pub(crate) fn encoder(
    elements: &CodecElements,
    spec: &StreamSpec,
) -> Result<gst::Element, MediaError> {
    let what = spec.codec.to_string();
    let enc = make(elements.encoder, &what)?;
    match elements.encoder {
        "opusenc" => {
            set_str(&enc, "audio-type", "voice");
            set_str(&enc, "frame-size", "20");
            set(&enc, "bitrate", opus_bitrate(spec));
            set(&enc, "complexity", OPUS_COMPLEXITY);
            // RFC 7587 §6.1: FEC is on unless the receiver said useinbandfec=0.
            let fec = spec.fmtp("useinbandfec") != Some("0");
            set(&enc, "inband-fec", fec);
            if fec {
                // Opus only spends bits on FEC when it expects loss.
                set(&enc, "packet-loss-percentage", 10i32);
            }
            set(&enc, "dtx", spec.fmtp("usedtx") == Some("1"));
        }
        "vp8enc" => {
            set(&enc, "deadline", 1i64);
            // Negative: a fixed speed (6, as libwebrtc uses on desktops).
            set(&enc, "cpu-used", -6i32);
            set_str(&enc, "end-usage", "cbr");
            set(&enc, "target-bitrate", VIDEO_BITRATE as i32);
            set(&enc, "keyframe-max-dist", KEYFRAME_INTERVAL as i32);
            set(&enc, "lag-in-frames", 0i32);
            set_str(&enc, "error-resilient", "default");
        }
        "x264enc" => {
            set_str(&enc, "tune", "zerolatency");
            set_str(&enc, "speed-preset", "ultrafast");
            set(&enc, "bitrate", VIDEO_BITRATE / 1000);
            set(&enc, "key-int-max", KEYFRAME_INTERVAL);
        }
        "openh264enc" => {
            set(&enc, "bitrate", VIDEO_BITRATE);
            set(&enc, "gop-size", KEYFRAME_INTERVAL);
            set_str(&enc, "complexity", "low");
        }
        other => tracing::debug!(encoder = other, "no tuning for this encoder"),
    }
    Ok(enc)
}

fn opus_bitrate(spec: &StreamSpec) -> i32 {
    spec.fmtp("maxaveragebitrate")
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(32_000, |b| b.clamp(6_000, 510_000))
}

/// Caps that make H.264 encoders produce what RTP peers decode: constrained baseline.
pub(crate) fn encoder_output_caps(codec: Codec) -> Option<gst::Caps> {
    match codec {
        Codec::H264 => Some(
            gst::Caps::builder("video/x-h264")
                .field("profile", "constrained-baseline")
                .build(),
        ),
        Codec::Opus | Codec::Vp8 => None,
    }
}

/// Creates the payloader for the negotiated payload type and our SSRC.
pub(crate) fn payloader(
    elements: &CodecElements,
    spec: &StreamSpec,
) -> Result<gst::Element, MediaError> {
    let pay = make(elements.payloader, &spec.codec.to_string())?;
    set(&pay, "pt", u32::from(spec.payload_type));
    set(&pay, "ssrc", spec.ssrc);
    set(&pay, "mtu", MTU);
    match spec.codec {
        // 15-bit picture ids let the receiver spot lost frames (RFC 7741 §4.2).
        Codec::Vp8 => {
            set_str(&pay, "picture-id-mode", "15-bit");
        }
        Codec::H264 => {
            // SPS/PPS before every IDR, so a late joiner or a lost key frame recovers.
            set(&pay, "config-interval", -1i32);
            set_str(&pay, "aggregate-mode", "zero-latency");
            if spec.fmtp("packetization-mode") == Some("0") {
                tracing::warn!("peer asked for H.264 packetization-mode=0; sending mode 1");
            }
        }
        Codec::Opus => {}
    }
    Ok(pay)
}

/// Creates the depayloader, [parser] and decoder of the receive path, in link order.
pub(crate) fn decode_chain(
    elements: &CodecElements,
    codec: Codec,
) -> Result<Vec<gst::Element>, MediaError> {
    let what = codec.to_string();
    let depay = make(elements.depayloader, &what)?;
    if codec != Codec::Opus {
        // Ask the sender for a key frame (RTCP PLI via rtpbin) after loss, and show no
        // smeared frames until it arrives.
        set(&depay, "request-keyframe", true);
        set(&depay, "wait-for-keyframe", true);
    }
    let mut chain = vec![depay];
    if let Some(parser) = elements.parser {
        chain.push(make(parser, &what)?);
    }
    let dec = make(elements.decoder, &what)?;
    // A corrupt packet from the peer must not end the call: decoders post an error and
    // stop after 10 consecutive failures by default.
    set(&dec, "max-errors", -1i32);
    if codec == Codec::Opus {
        set(&dec, "plc", true);
        // Not use-inband-fec: in GStreamer 1.22 opusdec then decodes one packet late and,
        // after a packet it cannot decode, keeps retrying that same packet, silencing
        // the call for good. Loss is still concealed (PLC on rtpbin's lost events).
        set(&dec, "use-inband-fec", false);
    } else {
        set(&dec, "discard-corrupted-frames", true);
    }
    chain.push(dec);
    Ok(chain)
}

/// The caps rtpbin needs for the negotiated payload type (answer to `request-pt-map`).
pub(crate) fn rtp_caps(spec: &StreamSpec) -> gst::Caps {
    let mut caps = gst::Caps::builder("application/x-rtp")
        .field(
            "media",
            match spec.kind {
                crate::MediaKind::Audio => "audio",
                crate::MediaKind::Video => "video",
            },
        )
        .field("clock-rate", spec.clock_rate as i32)
        .field("encoding-name", spec.codec.encoding_name())
        .field("payload", i32::from(spec.payload_type));
    if spec.codec == Codec::Opus {
        caps = caps.field("encoding-params", "2");
    }
    if spec.kind == crate::MediaKind::Video {
        // rtpsession turns a depayloader's key unit request into RTCP PLI only when the
        // payload type's caps allow it; every Jingle/WebRTC peer understands PLI.
        caps = caps.field("rtcp-fb-nack-pli", true);
    }
    if spec.codec == Codec::H264 {
        caps = caps.field(
            "packetization-mode",
            spec.fmtp("packetization-mode").unwrap_or("1"),
        );
    }
    caps.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_bitrate_follows_fmtp_within_bounds() {
        let mut spec = StreamSpec::new(Codec::Opus, 111, 1);
        assert_eq!(opus_bitrate(&spec), 32_000);
        spec.fmtp
            .push(("maxaveragebitrate".into(), "1000000".into()));
        assert_eq!(opus_bitrate(&spec), 510_000);
        spec.fmtp = vec![("MaxAverageBitrate".into(), "24000".into())];
        assert_eq!(opus_bitrate(&spec), 24_000);
    }

    #[test]
    fn caps_carry_the_negotiated_payload_type() {
        if crate::init().is_err() {
            return;
        }
        let caps = rtp_caps(&StreamSpec::new(Codec::Vp8, 100, 1));
        let s = caps.structure(0);
        assert_eq!(s.and_then(|s| s.get::<i32>("payload").ok()), Some(100));
        assert_eq!(
            s.and_then(|s| s.get::<&str>("encoding-name").ok()),
            Some("VP8")
        );
    }
}
