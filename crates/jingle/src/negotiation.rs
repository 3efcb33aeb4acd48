//! XEP-0167 offer/answer for one content: which codecs we offer, how we choose from an
//! offer (by name and clock rate, answering with the offerer's payload ids), and what
//! both sides agreed on. XEP-0293 feedback is kept where both sides support it; XEP-0294
//! header extensions, XEP-0339 sources and BUNDLE groups are tolerated but not used.

use natter_protocol::jingle_rtp::{Parameter, PayloadType, RtcpFb, RtpDescription};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    pub fn parse(media: &str) -> Option<MediaKind> {
        match media {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecName {
    Opus,
    Vp8,
    H264,
}

impl CodecName {
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecName::Opus => "opus",
            CodecName::Vp8 => "VP8",
            CodecName::H264 => "H264",
        }
    }

    fn clock_rate(self) -> u32 {
        match self {
            CodecName::Opus => 48_000,
            CodecName::Vp8 | CodecName::H264 => 90_000,
        }
    }

    fn kind(self) -> MediaKind {
        match self {
            CodecName::Opus => MediaKind::Audio,
            CodecName::Vp8 | CodecName::H264 => MediaKind::Video,
        }
    }
}

/// What this build can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// H264 is offered only when an encoder and decoder exist.
    pub h264: bool,
}

/// The outcome of negotiation for one content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub kind: MediaKind,
    pub codec: CodecName,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: u8,
    pub parameters: Vec<(String, String)>,
    /// XEP-0293 feedback both sides support (`nack`, `nack pli`, `ccm fir`, `goog-remb`).
    pub rtcp_fb: Vec<(String, Option<String>)>,
    /// The SSRC the peer announced for its stream (XEP-0339), if any.
    pub remote_ssrc: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("unknown media {0:?}")]
    UnknownMedia(String),
    #[error("no codec in common for {0}")]
    NoCommonCodec(&'static str),
    #[error("the peer does not multiplex RTCP with RTP (rtcp-mux)")]
    NoRtcpMux,
}

const VIDEO_FEEDBACK: [(&str, Option<&str>); 4] = [
    ("nack", None),
    ("nack", Some("pli")),
    ("ccm", Some("fir")),
    ("goog-remb", None),
];

fn fb(kind: &str, subtype: Option<&str>) -> RtcpFb {
    RtcpFb {
        kind: kind.to_owned(),
        subtype: subtype.map(str::to_owned),
    }
}

fn ours(codec: CodecName, id: u8) -> PayloadType {
    let (channels, parameters, rtcp_fb) = match codec {
        CodecName::Opus => (
            Some(2),
            vec![Parameter {
                name: "useinbandfec".into(),
                value: "1".into(),
            }],
            vec![],
        ),
        CodecName::Vp8 => (
            None,
            vec![],
            VIDEO_FEEDBACK.iter().map(|(k, s)| fb(k, *s)).collect(),
        ),
        CodecName::H264 => (
            None,
            vec![
                Parameter {
                    name: "profile-level-id".into(),
                    value: "42e01f".into(),
                },
                Parameter {
                    name: "packetization-mode".into(),
                    value: "1".into(),
                },
            ],
            VIDEO_FEEDBACK.iter().map(|(k, s)| fb(k, *s)).collect(),
        ),
    };
    PayloadType {
        id,
        name: Some(codec.encoding_name().to_owned()),
        clockrate: Some(codec.clock_rate()),
        channels,
        ptime: None,
        maxptime: None,
        parameters,
        rtcp_fb,
    }
}

fn supported(kind: MediaKind, caps: Capabilities) -> Vec<(CodecName, u8)> {
    match kind {
        MediaKind::Audio => vec![(CodecName::Opus, 111)],
        MediaKind::Video if caps.h264 => vec![(CodecName::Vp8, 96), (CodecName::H264, 97)],
        MediaKind::Video => vec![(CodecName::Vp8, 96)],
    }
}

fn empty_description(kind: MediaKind, ssrc: u32) -> RtpDescription {
    RtpDescription {
        media: kind.as_str().to_owned(),
        ssrc: Some(ssrc),
        payload_types: vec![],
        rtcp_mux: true,
        rtcp_fb: vec![],
        rtcp_fb_trr_int: None,
        hdrexts: vec![],
        extmap_allow_mixed: false,
        sources: vec![],
        ssrc_groups: vec![],
    }
}

/// Our offer for one medium.
pub fn offer(kind: MediaKind, caps: Capabilities, ssrc: u32) -> RtpDescription {
    let mut d = empty_description(kind, ssrc);
    d.payload_types = supported(kind, caps)
        .into_iter()
        .map(|(c, id)| ours(c, id))
        .collect();
    d
}

/// Which of our codecs a remote payload type is, by name and clock rate (RFC 3551
/// names are case-insensitive).
fn recognise(pt: &PayloadType, kind: MediaKind, caps: Capabilities) -> Option<CodecName> {
    let name = pt.name.as_deref()?;
    supported(kind, caps).into_iter().find_map(|(c, _)| {
        (name.eq_ignore_ascii_case(c.encoding_name())
            && pt.clockrate.unwrap_or(0) == c.clock_rate()
            && c.kind() == kind)
            .then_some(c)
    })
}

fn common_feedback(
    pt: &PayloadType,
    description: &RtpDescription,
) -> Vec<(String, Option<String>)> {
    let theirs: Vec<&RtcpFb> = pt
        .rtcp_fb
        .iter()
        .chain(description.rtcp_fb.iter())
        .collect();
    VIDEO_FEEDBACK
        .iter()
        .filter(|(k, s)| {
            theirs
                .iter()
                .any(|f| f.kind == *k && f.subtype.as_deref() == *s)
        })
        .map(|(k, s)| ((*k).to_owned(), s.map(str::to_owned)))
        .collect()
}

fn negotiated(
    kind: MediaKind,
    codec: CodecName,
    pt: &PayloadType,
    description: &RtpDescription,
) -> Negotiated {
    Negotiated {
        kind,
        codec,
        payload_type: pt.id,
        clock_rate: codec.clock_rate(),
        channels: pt.channels.unwrap_or(1),
        parameters: pt
            .parameters
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect(),
        rtcp_fb: if kind == MediaKind::Video {
            common_feedback(pt, description)
        } else {
            vec![]
        },
        remote_ssrc: description
            .ssrc
            .or_else(|| description.sources.first().map(|s| s.ssrc)),
    }
}

/// Answers an offer: the first offered payload type we support (the offerer's order is
/// its preference), with the offerer's id.
pub fn answer(
    offer: &RtpDescription,
    caps: Capabilities,
    ssrc: u32,
) -> Result<(RtpDescription, Negotiated), NegotiationError> {
    let kind = MediaKind::parse(&offer.media)
        .ok_or_else(|| NegotiationError::UnknownMedia(offer.media.clone()))?;
    if !offer.rtcp_mux {
        return Err(NegotiationError::NoRtcpMux);
    }
    let (codec, pt) = offer
        .payload_types
        .iter()
        .find_map(|pt| recognise(pt, kind, caps).map(|c| (c, pt)))
        .ok_or(NegotiationError::NoCommonCodec(kind.as_str()))?;
    let agreed = negotiated(kind, codec, pt, offer);
    let mut mine = ours(codec, pt.id);
    if kind == MediaKind::Video {
        mine.rtcp_fb = agreed
            .rtcp_fb
            .iter()
            .map(|(k, s)| fb(k, s.as_deref()))
            .collect();
    }
    let mut d = empty_description(kind, ssrc);
    d.payload_types = vec![mine];
    Ok((d, agreed))
}

/// Reads the peer's answer to our offer.
pub fn accept_answer(
    ours_offered: &RtpDescription,
    answer: &RtpDescription,
    caps: Capabilities,
) -> Result<Negotiated, NegotiationError> {
    let kind = MediaKind::parse(&answer.media)
        .ok_or_else(|| NegotiationError::UnknownMedia(answer.media.clone()))?;
    if !answer.rtcp_mux {
        return Err(NegotiationError::NoRtcpMux);
    }
    answer
        .payload_types
        .iter()
        .find_map(|pt| {
            let codec = recognise(pt, kind, caps)?;
            // Only what we offered, under the id we offered it with.
            ours_offered
                .payload_types
                .iter()
                .any(|o| o.id == pt.id)
                .then(|| negotiated(kind, codec, pt, answer))
        })
        .ok_or(NegotiationError::NoCommonCodec(kind.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(id: u8, name: &str, clock: u32) -> PayloadType {
        PayloadType {
            id,
            name: Some(name.into()),
            clockrate: Some(clock),
            channels: None,
            ptime: None,
            maxptime: None,
            parameters: vec![],
            rtcp_fb: vec![],
        }
    }

    #[test]
    fn answers_with_the_offerers_payload_id() {
        let mut offer = empty_description(MediaKind::Audio, 1);
        offer.payload_types = vec![pt(0, "PCMU", 8000), pt(109, "OPUS", 48000)];
        let (ans, agreed) = answer(&offer, Capabilities { h264: false }, 7).expect("answer");
        assert_eq!(agreed.codec, CodecName::Opus);
        assert_eq!(agreed.payload_type, 109);
        assert_eq!(ans.payload_types.len(), 1);
        assert_eq!(ans.payload_types[0].id, 109);
        assert!(ans.rtcp_mux);
    }

    #[test]
    fn opus_at_another_clock_rate_is_not_opus() {
        let mut offer = empty_description(MediaKind::Audio, 1);
        offer.payload_types = vec![pt(111, "opus", 16000)];
        assert_eq!(
            answer(&offer, Capabilities { h264: false }, 7).err(),
            Some(NegotiationError::NoCommonCodec("audio"))
        );
    }

    #[test]
    fn h264_only_when_we_have_it() {
        let mut offer = empty_description(MediaKind::Video, 1);
        offer.payload_types = vec![pt(102, "H264", 90000), pt(100, "VP8", 90000)];
        let (_, a) = answer(&offer, Capabilities { h264: false }, 7).expect("vp8");
        assert_eq!((a.codec, a.payload_type), (CodecName::Vp8, 100));
        let (_, b) = answer(&offer, Capabilities { h264: true }, 7).expect("h264");
        assert_eq!((b.codec, b.payload_type), (CodecName::H264, 102));
    }

    #[test]
    fn feedback_kept_only_when_both_sides_have_it() {
        let mut offer = empty_description(MediaKind::Video, 1);
        let mut vp8 = pt(96, "VP8", 90000);
        vp8.rtcp_fb = vec![
            fb("nack", None),
            fb("nack", Some("pli")),
            fb("transport-cc", None),
        ];
        offer.payload_types = vec![vp8];
        let (ans, agreed) = answer(&offer, Capabilities { h264: false }, 7).expect("answer");
        assert_eq!(
            agreed.rtcp_fb,
            vec![("nack".into(), None), ("nack".into(), Some("pli".into()))]
        );
        assert_eq!(ans.payload_types[0].rtcp_fb.len(), 2);
    }

    #[test]
    fn without_rtcp_mux_there_is_no_call() {
        let mut offer = offer(MediaKind::Audio, Capabilities { h264: false }, 1);
        offer.rtcp_mux = false;
        assert_eq!(
            answer(&offer, Capabilities { h264: false }, 7).err(),
            Some(NegotiationError::NoRtcpMux)
        );
    }

    #[test]
    fn an_answer_must_use_an_offered_id() {
        let ours = offer(MediaKind::Audio, Capabilities { h264: false }, 1);
        let mut theirs = empty_description(MediaKind::Audio, 2);
        theirs.payload_types = vec![pt(120, "opus", 48000)];
        assert!(accept_answer(&ours, &theirs, Capabilities { h264: false }).is_err());
        theirs.payload_types = vec![pt(111, "opus", 48000)];
        let agreed = accept_answer(&ours, &theirs, Capabilities { h264: false }).expect("ok");
        assert_eq!(agreed.payload_type, 111);
        assert_eq!(agreed.remote_ssrc, Some(2));
    }
}
