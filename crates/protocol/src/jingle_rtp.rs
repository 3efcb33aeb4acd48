//! XEP-0167: Jingle RTP Sessions (the `<description/>` element)
//!
//! Together with the extensions that live inside it:
//! XEP-0293 (RTCP feedback), XEP-0294 (RTP header extensions) and
//! XEP-0339 (source-specific media attributes).
//! SRTP `<encryption/>` and `<bandwidth/>` children are skipped.

use minidom::Element;

use crate::jingle::Senders;
use crate::ns;
use crate::util::{check, children_ns, opt_parse, opt_string, req_attr, req_parse, BuilderExt};
use crate::ParseError;

/// A `<parameter/>` (name/value pair) of a payload type or a source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameter {
    /// The parameter name, e.g. "useinbandfec" or "cname".
    pub name: String,
    /// The value; empty when the attribute was absent (allowed for sources).
    pub value: String,
}

impl Parameter {
    /// A name/value pair.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Parameter {
            name: name.into(),
            value: value.into(),
        }
    }

    fn parse(el: &Element) -> Result<Self, ParseError> {
        Ok(Parameter {
            name: req_attr(el, "parameter", "name")?.to_owned(),
            value: el.attr("value").unwrap_or_default().to_owned(),
        })
    }

    /// `always_value`: XEP-0167 requires the attribute, XEP-0339 omits it
    /// for value-less source attributes.
    fn to_element(&self, namespace: &'static str, always_value: bool) -> Element {
        let value = (always_value || !self.value.is_empty()).then_some(self.value.as_str());
        Element::builder("parameter", namespace)
            .with("name", self.name.as_str())
            .with("value", value)
            .build()
    }
}

/// An XEP-0293 `<rtcp-fb/>` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtcpFb {
    /// The feedback type (attribute `type`): "nack", "ccm", "goog-remb", …
    pub kind: String,
    /// The optional subtype, e.g. "pli" or "fir".
    pub subtype: Option<String>,
}

impl TryFrom<Element> for RtcpFb {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "rtcp-fb", ns::JINGLE_RTCP_FB)?;
        Ok(RtcpFb {
            kind: req_attr(&el, "rtcp-fb", "type")?.to_owned(),
            subtype: opt_string(&el, "subtype"),
        })
    }
}

impl From<RtcpFb> for Element {
    fn from(fb: RtcpFb) -> Element {
        Element::builder("rtcp-fb", ns::JINGLE_RTCP_FB)
            .with("type", fb.kind)
            .with("subtype", fb.subtype)
            .build()
    }
}

/// Parses an XEP-0293 `<rtcp-fb-trr-int/>` value.
fn parse_trr_int(el: &Element) -> Result<u32, ParseError> {
    req_parse(el, "rtcp-fb-trr-int", "value")
}

fn trr_int_element(value: u32) -> Element {
    Element::builder("rtcp-fb-trr-int", ns::JINGLE_RTCP_FB)
        .with("value", value)
        .build()
}

/// An XEP-0294 `<rtp-hdrext/>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHdrext {
    /// The extension id (1-256 or 4096-4351 in practice).
    pub id: u16,
    /// The URI naming the extension.
    pub uri: String,
    /// Direction restriction; absent means both.
    pub senders: Option<Senders>,
}

impl TryFrom<Element> for RtpHdrext {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "rtp-hdrext", ns::JINGLE_RTP_HDREXT)?;
        Ok(RtpHdrext {
            id: req_parse(&el, "rtp-hdrext", "id")?,
            uri: req_attr(&el, "rtp-hdrext", "uri")?.to_owned(),
            senders: opt_parse(&el, "rtp-hdrext", "senders")?,
        })
    }
}

impl From<RtpHdrext> for Element {
    fn from(h: RtpHdrext) -> Element {
        Element::builder("rtp-hdrext", ns::JINGLE_RTP_HDREXT)
            .with("id", h.id)
            .with("uri", h.uri)
            .with("senders", h.senders.map(|s| s.as_str()))
            .build()
    }
}

/// An XEP-0339 `<source/>` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    /// The SSRC.
    pub ssrc: u32,
    /// Its attributes (cname, msid, …).
    pub parameters: Vec<Parameter>,
}

impl TryFrom<Element> for Source {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "source", ns::JINGLE_SSMA)?;
        Ok(Source {
            ssrc: req_parse(&el, "source", "ssrc")?,
            parameters: el
                .children()
                .filter(|c| c.is("parameter", ns::JINGLE_SSMA))
                .map(Parameter::parse)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Source> for Element {
    fn from(s: Source) -> Element {
        Element::builder("source", ns::JINGLE_SSMA)
            .with("ssrc", s.ssrc)
            .append_all(
                s.parameters
                    .iter()
                    .map(|p| p.to_element(ns::JINGLE_SSMA, false)),
            )
            .build()
    }
}

/// An XEP-0339 `<ssrc-group/>` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SsrcGroup {
    /// The semantics, e.g. "FID" or "SIM".
    pub semantics: String,
    /// The SSRCs of the group, in order.
    pub sources: Vec<u32>,
}

impl TryFrom<Element> for SsrcGroup {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "ssrc-group", ns::JINGLE_SSMA)?;
        Ok(SsrcGroup {
            semantics: req_attr(&el, "ssrc-group", "semantics")?.to_owned(),
            sources: el
                .children()
                .filter(|c| c.is("source", ns::JINGLE_SSMA))
                .map(|c| req_parse(c, "source", "ssrc"))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<SsrcGroup> for Element {
    fn from(g: SsrcGroup) -> Element {
        Element::builder("ssrc-group", ns::JINGLE_SSMA)
            .with("semantics", g.semantics)
            .append_all(g.sources.into_iter().map(|ssrc| {
                Element::builder("source", ns::JINGLE_SSMA)
                    .with("ssrc", ssrc)
                    .build()
            }))
            .build()
    }
}

/// A `<payload-type/>` (one codec).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayloadType {
    /// The RTP payload type number.
    pub id: u8,
    /// The codec name, e.g. "opus".
    pub name: Option<String>,
    /// The clock rate in Hz.
    pub clockrate: Option<u32>,
    /// The channel count (XEP default 1, see [`PayloadType::channels_or_default`]).
    pub channels: Option<u8>,
    /// Packet time in milliseconds.
    pub ptime: Option<u32>,
    /// Maximum packet time in milliseconds.
    pub maxptime: Option<u32>,
    /// Format parameters (SDP `a=fmtp`).
    pub parameters: Vec<Parameter>,
    /// XEP-0293 feedback for this payload type only.
    pub rtcp_fb: Vec<RtcpFb>,
}

impl PayloadType {
    /// The channel count, defaulting to 1 as XEP-0167 specifies.
    pub fn channels_or_default(&self) -> u8 {
        self.channels.unwrap_or(1)
    }
}

impl TryFrom<Element> for PayloadType {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        const E: &str = "payload-type";
        check(&el, E, ns::JINGLE_RTP)?;
        let mut pt = PayloadType {
            id: req_parse(&el, E, "id")?,
            name: opt_string(&el, "name"),
            clockrate: opt_parse(&el, E, "clockrate")?,
            channels: opt_parse(&el, E, "channels")?,
            ptime: opt_parse(&el, E, "ptime")?,
            maxptime: opt_parse(&el, E, "maxptime")?,
            parameters: Vec::new(),
            rtcp_fb: Vec::new(),
        };
        for child in el.children() {
            if child.is("parameter", ns::JINGLE_RTP) {
                pt.parameters.push(Parameter::parse(child)?);
            } else if child.is("rtcp-fb", ns::JINGLE_RTCP_FB) {
                pt.rtcp_fb.push(RtcpFb::try_from(child.clone())?);
            } else if child.is("rtcp-fb-trr-int", ns::JINGLE_RTCP_FB) {
                // Per-payload trr-int is not kept, but must still be valid.
                parse_trr_int(child)?;
            }
        }
        Ok(pt)
    }
}

impl From<PayloadType> for Element {
    fn from(pt: PayloadType) -> Element {
        Element::builder("payload-type", ns::JINGLE_RTP)
            .with("id", pt.id)
            .with("name", pt.name)
            .with("clockrate", pt.clockrate)
            .with("channels", pt.channels)
            .with("ptime", pt.ptime)
            .with("maxptime", pt.maxptime)
            .append_all(
                pt.parameters
                    .iter()
                    .map(|p| p.to_element(ns::JINGLE_RTP, true)),
            )
            .append_all(pt.rtcp_fb.into_iter().map(Element::from))
            .build()
    }
}

/// An RTP `<description/>` (one media stream of a content).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpDescription {
    /// The media type: "audio" or "video".
    pub media: String,
    /// The sender's SSRC (old-style attribute; see also `sources`).
    pub ssrc: Option<u32>,
    /// Offered/accepted codecs, in preference order.
    pub payload_types: Vec<PayloadType>,
    /// Whether `<rtcp-mux/>` is present.
    pub rtcp_mux: bool,
    /// XEP-0293 feedback applying to all payload types.
    pub rtcp_fb: Vec<RtcpFb>,
    /// XEP-0293 `<rtcp-fb-trr-int/>` for the whole description.
    pub rtcp_fb_trr_int: Option<u32>,
    /// XEP-0294 header extensions.
    pub hdrexts: Vec<RtpHdrext>,
    /// XEP-0294 `<extmap-allow-mixed/>`.
    pub extmap_allow_mixed: bool,
    /// XEP-0339 sources.
    pub sources: Vec<Source>,
    /// XEP-0339 source groups.
    pub ssrc_groups: Vec<SsrcGroup>,
}

impl RtpDescription {
    /// An empty description for `media` (as used in a JMI propose).
    pub fn new(media: impl Into<String>) -> Self {
        RtpDescription {
            media: media.into(),
            ..Default::default()
        }
    }
}

impl TryFrom<Element> for RtpDescription {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "description", ns::JINGLE_RTP)?;
        let mut d = RtpDescription::new(req_attr(&el, "description", "media")?);
        d.ssrc = opt_parse(&el, "description", "ssrc")?;
        for child in children_ns(&el, ns::JINGLE_RTP) {
            match child.name() {
                "payload-type" => d.payload_types.push(PayloadType::try_from(child.clone())?),
                "rtcp-mux" => d.rtcp_mux = true,
                _ => {}
            }
        }
        for child in children_ns(&el, ns::JINGLE_RTCP_FB) {
            match child.name() {
                "rtcp-fb" => d.rtcp_fb.push(RtcpFb::try_from(child.clone())?),
                "rtcp-fb-trr-int" if d.rtcp_fb_trr_int.is_none() => {
                    d.rtcp_fb_trr_int = Some(parse_trr_int(child)?);
                }
                _ => {}
            }
        }
        for child in children_ns(&el, ns::JINGLE_RTP_HDREXT) {
            match child.name() {
                "rtp-hdrext" => d.hdrexts.push(RtpHdrext::try_from(child.clone())?),
                "extmap-allow-mixed" => d.extmap_allow_mixed = true,
                _ => {}
            }
        }
        for child in children_ns(&el, ns::JINGLE_SSMA) {
            match child.name() {
                "source" => d.sources.push(Source::try_from(child.clone())?),
                "ssrc-group" => d.ssrc_groups.push(SsrcGroup::try_from(child.clone())?),
                _ => {}
            }
        }
        Ok(d)
    }
}

impl From<RtpDescription> for Element {
    fn from(d: RtpDescription) -> Element {
        Element::builder("description", ns::JINGLE_RTP)
            .with("media", d.media)
            .with("ssrc", d.ssrc)
            .append_all(d.payload_types.into_iter().map(Element::from))
            .append_all(d.rtcp_fb.into_iter().map(Element::from))
            .append_all(d.rtcp_fb_trr_int.map(trr_int_element))
            .append_all(d.hdrexts.into_iter().map(Element::from))
            .append_all(
                d.extmap_allow_mixed
                    .then(|| Element::bare("extmap-allow-mixed", ns::JINGLE_RTP_HDREXT)),
            )
            .append_all(d.sources.into_iter().map(Element::from))
            .append_all(d.ssrc_groups.into_iter().map(Element::from))
            .append_all(
                d.rtcp_mux
                    .then(|| Element::bare("rtcp-mux", ns::JINGLE_RTP)),
            )
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    #[test]
    fn xep_0167_description_roundtrip() {
        let d: RtpDescription = parse(
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
               <payload-type id='96' name='speex' clockrate='16000'/>
               <payload-type id='97' name='speex' clockrate='8000'/>
               <payload-type id='18' name='G729'/>
               <payload-type id='0' name='PCMU'/>
               <payload-type id='103' name='L16' clockrate='16000' channels='2'/>
               <payload-type id='98' name='x-ISAC' clockrate='8000'/>
               <encryption required='1'>
                 <crypto crypto-suite='AES_CM_128_HMAC_SHA1_80'
                   key-params='inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32'
                   session-params='KDR=1 UNENCRYPTED_SRTCP' tag='1'/>
               </encryption>
             </description>",
        );
        assert_eq!(d.media, "audio");
        assert_eq!(d.payload_types.len(), 6);
        let pcmu = &d.payload_types[3];
        assert_eq!((pcmu.id, pcmu.name.as_deref()), (0, Some("PCMU")));
        assert_eq!(pcmu.clockrate, None);
        assert_eq!(pcmu.channels_or_default(), 1);
        assert_eq!(d.payload_types[4].channels_or_default(), 2);
        assert!(!d.rtcp_mux);
        assert_eq!(reserialise(&d), d);
    }

    #[test]
    fn xep_0293_rtcp_fb_roundtrip() {
        let d: RtpDescription = parse(
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
               <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
               <payload-type id='96' name='H264' clockrate='90000'>
                 <rtcp-fb-trr-int xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' value='100'/>
                 <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='sli'/>
               </payload-type>
               <payload-type id='34' name='H263' clockrate='90000'/>
             </description>",
        );
        assert_eq!(
            d.rtcp_fb,
            [RtcpFb {
                kind: "nack".into(),
                subtype: Some("pli".into())
            }]
        );
        assert_eq!(
            d.payload_types[0].rtcp_fb[0].subtype.as_deref(),
            Some("sli")
        );
        assert_eq!(reserialise(&d), d);

        let d: RtpDescription = parse(
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
               <rtcp-fb-trr-int xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' value='0'/>
               <payload-type id='96' name='H264' clockrate='90000'/>
               <payload-type id='34' name='H263' clockrate='90000'/>
             </description>",
        );
        assert_eq!(d.rtcp_fb_trr_int, Some(0));
        assert_eq!(reserialise(&d), d);
    }

    #[test]
    fn xep_0294_hdrext_roundtrip() {
        let d: RtpDescription = parse(
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
               <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1' uri='URI-toffset'/>
               <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'
                           id='2' uri='URI-gps-string' senders='initiator'/>
               <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='3' uri='URI-frametype'/>
               <extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>
             </description>",
        );
        assert_eq!(d.hdrexts.len(), 3);
        assert_eq!(d.hdrexts[1].id, 2);
        assert_eq!(d.hdrexts[1].senders, Some(Senders::Initiator));
        assert_eq!(d.hdrexts[0].senders, None);
        assert!(d.extmap_allow_mixed);
        assert_eq!(reserialise(&d), d);
    }

    #[test]
    fn xep_0339_sources_roundtrip() {
        let d: RtpDescription = parse(
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
               <payload-type id='100' name='VP8' clockrate='90000'/>
               <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
                 <source ssrc='2301230316'/>
                 <source ssrc='386328120'/>
               </ssrc-group>
               <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
                 <source ssrc='3139499595'/>
                 <source ssrc='2613715171'/>
               </ssrc-group>
               <source ssrc='2301230316' xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'>
                 <parameter name='cname' value='T5qvrIZj42v//eYQ'/>
               </source>
               <source ssrc='386328120' xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'>
                 <parameter name='cname' value='uEYgNtStZyTF74sM'/>
               </source>
               <source ssrc='3139499595' xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'>
                 <parameter name='cname' value='re8jhxkly9bxzuxr'/>
               </source>
               <source ssrc='2613715171' xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'>
                 <parameter name='cname' value='f83avsiw6n1m7vi'/>
                 <parameter name='novalue'/>
               </source>
             </description>",
        );
        assert_eq!(d.ssrc_groups.len(), 2);
        assert_eq!(d.ssrc_groups[1].sources, [3139499595, 2613715171]);
        assert_eq!(d.sources.len(), 4);
        assert_eq!(d.sources[0].ssrc, 2301230316);
        assert_eq!(
            d.sources[0].parameters[0],
            Parameter::new("cname", "T5qvrIZj42v//eYQ")
        );
        assert_eq!(d.sources[3].parameters[1], Parameter::new("novalue", ""));
        assert_eq!(reserialise(&d), d);
        // A value-less source parameter stays value-less on the wire.
        let el = Element::from(d.sources[3].clone());
        let p = el.children().nth(1).unwrap();
        assert_eq!(p.attr("value"), None);
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<RtpDescription>(&[
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1'/>",
            "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5' media='audio'/>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio' ssrc='-1'/>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio' ssrc='4294967296'/>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type name='opus'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='256'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='111' clockrate='fast'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='111' channels='300'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='111'><parameter value='1'/></payload-type></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' subtype='pli'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <rtcp-fb-trr-int xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' value='x'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='70000' uri='u'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1' uri='u' senders='all'/>\
             </description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'/></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'><source ssrc='1e3'/>\
             </ssrc-group></description>",
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'/></description>",
        ]);
        assert_all_rejected::<PayloadType>(&[
            "<payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' id=''/>",
        ]);
        assert_all_rejected::<RtcpFb>(&[
            "<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:1' type='nack'/>",
        ]);
        assert_all_rejected::<Source>(&[
            "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc=' '/>",
        ]);
    }
}
