//! Session-initiates shaped like those of deployed clients, to prove the
//! parsers tolerate what real peers send.

use minidom::Element;
use natter_protocol::jingle::{Action, Creator, Jingle, Senders};
use natter_protocol::jingle_dtls::Setup;
use natter_protocol::jingle_ice_udp::CandidateType;
use natter_protocol::jingle_rtp::Parameter;
use natter_protocol::{jmi, ns};

fn roundtrip(j: &Jingle) -> Jingle {
    let el: Element = j.clone().into();
    let mut buf = Vec::new();
    el.write_to(&mut buf).unwrap();
    let el: Element = String::from_utf8(buf).unwrap().parse().unwrap();
    Jingle::try_from(el).unwrap()
}

/// Audio-only call in the style of Dino: one content named after the
/// media, opus with in-band FEC, rtcp-mux, ICE credentials, a DTLS
/// fingerprint and a host candidate, plus elements we do not model.
const DINO_LIKE: &str = "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'
        initiator='alice@example.org/dino.7f3a' sid='b1e0c4a2-5d6f-4e1b-9a77-0c3d2e8f1a64'>
  <content creator='initiator' name='audio' senders='both'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'>
        <parameter name='useinbandfec' value='1'/>
      </payload-type>
      <payload-type id='112' name='speex' clockrate='32000'/>
      <payload-type id='0' name='PCMU' clockrate='8000'/>
      <payload-type id='101' name='telephone-event' clockrate='8000'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1'
                  uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
      <rtcp-mux/>
      <encryption xmlns='urn:xmpp:jingle:apps:rtp:1' required='0'/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='Yq7v' pwd='x3kP9aLmQ2rT8sWn4bZc1d'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>4F:0A:92:6B:11:C3:7D:E8:20:5A:B9:44:3C:D1:68:0E:F7:29:83:5B:A6:12:CE:90:3D:71:E4:08:B5:6C:2F:9A</fingerprint>
      <candidate component='1' foundation='1' generation='0' id='c0f1e2d3a4' ip='192.168.1.23'
                 network='0' port='50412' priority='2013266431' protocol='udp' type='host'/>
    </transport>
    <security xmlns='urn:xmpp:jingle:jet:0' name='0' type='urn:xmpp:jingle:jet-omemo:0'/>
  </content>
</jingle>";

#[test]
fn dino_like_session_initiate() {
    let el: Element = DINO_LIKE.parse().unwrap();
    let j = Jingle::try_from(el).unwrap();
    assert_eq!(j.action, Action::SessionInitiate);
    assert_eq!(j.contents.len(), 1);
    let c = &j.contents[0];
    assert_eq!((c.creator, c.senders), (Creator::Initiator, Senders::Both));
    let d = c.description.as_ref().unwrap();
    let opus = &d.payload_types[0];
    assert_eq!((opus.id, opus.name.as_deref()), (111, Some("opus")));
    assert_eq!(
        (opus.clockrate, opus.channels_or_default()),
        (Some(48000), 2)
    );
    assert_eq!(opus.parameters, [Parameter::new("useinbandfec", "1")]);
    assert!(d.rtcp_mux);
    assert_eq!(
        d.hdrexts[0].uri,
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    );
    let t = c.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("Yq7v"));
    let fp = t.fingerprint.as_ref().unwrap();
    assert_eq!(
        (fp.hash.as_str(), fp.setup),
        ("sha-256", Some(Setup::Actpass))
    );
    assert_eq!(t.candidates.len(), 1);
    assert_eq!(t.candidates[0].kind, CandidateType::Host);
    assert_eq!(t.candidates[0].port, 50412);
    assert_eq!(roundtrip(&j), j);
}

/// Audio+video call in the style of Conversations (WebRTC-generated SDP):
/// contents named by mid ("0", "1"), a BUNDLE group, rtcp-fb, header
/// extensions, sources with cname/msid and an FID ssrc-group.
const CONVERSATIONS_LIKE: &str = "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'
        sid='Qm9vdHN0cmFwU2Vzc2lvbg' initiator='bob@example.net/Conversations.Xp2q'>
  <content creator='initiator' name='0' senders='both'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'>
        <parameter name='minptime' value='10'/>
        <parameter name='useinbandfec' value='1'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
      </payload-type>
      <payload-type id='9' name='G722' clockrate='8000'/>
      <payload-type id='126' name='telephone-event' clockrate='8000'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1'
                  uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='3'
                  uri='http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'/>
      <extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1285740893'>
        <parameter name='cname' value='r8Fq2LkPz0aXw9Tb'/>
        <parameter name='msid' value='my-media-stream my-audio-track'/>
      </source>
      <rtcp-mux/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='Hn4e' pwd='aT0xQ9mPz2LrW8sKc3vB7n1y'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>
        9C:2E:51:0B:A4:7F:33:D8:6E:C1:08:95:FA:42:1D:B7:60:E3:2C:8A:5F:91:04:DB:7E:36:C9:A2:58:0F:B4:1E
      </fingerprint>
    </transport>
  </content>
  <content creator='initiator' name='1' senders='both'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
      <payload-type id='96' name='VP8' clockrate='90000'>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='goog-remb'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='ccm' subtype='fir'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
      </payload-type>
      <payload-type id='97' name='rtx' clockrate='90000'>
        <parameter name='apt' value='96'/>
      </payload-type>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='2'
                  uri='urn:ietf:params:rtp-hdrext:toffset'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='13'
                  uri='urn:3gpp:video-orientation'/>
      <extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>
      <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
        <source ssrc='2741635218'/>
        <source ssrc='3926540157'/>
      </ssrc-group>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2741635218'>
        <parameter name='cname' value='r8Fq2LkPz0aXw9Tb'/>
        <parameter name='msid' value='my-media-stream my-video-track'/>
      </source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3926540157'>
        <parameter name='cname' value='r8Fq2LkPz0aXw9Tb'/>
        <parameter name='msid' value='my-media-stream my-video-track'/>
      </source>
      <rtcp-mux/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='Hn4e' pwd='aT0xQ9mPz2LrW8sKc3vB7n1y'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>
        9C:2E:51:0B:A4:7F:33:D8:6E:C1:08:95:FA:42:1D:B7:60:E3:2C:8A:5F:91:04:DB:7E:36:C9:A2:58:0F:B4:1E
      </fingerprint>
    </transport>
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
    <content name='0'/>
    <content name='1'/>
  </group>
</jingle>";

#[test]
fn conversations_like_session_initiate() {
    let el: Element = CONVERSATIONS_LIKE.parse().unwrap();
    let j = Jingle::try_from(el).unwrap();
    let names: Vec<&str> = j.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["0", "1"]);
    let g = j.group.as_ref().unwrap();
    assert_eq!(
        (g.semantics.as_str(), g.contents.clone()),
        ("BUNDLE", vec!["0".into(), "1".into()])
    );

    let audio = j.contents[0].description.as_ref().unwrap();
    assert_eq!(audio.media, "audio");
    assert!(audio.rtcp_mux && audio.extmap_allow_mixed);
    assert_eq!(audio.payload_types[0].rtcp_fb[0].kind, "transport-cc");
    assert_eq!(audio.sources[0].ssrc, 1285740893);
    assert_eq!(audio.sources[0].parameters[1].name, "msid");

    let video = j.contents[1].description.as_ref().unwrap();
    assert_eq!(video.media, "video");
    assert_eq!(video.payload_types[0].rtcp_fb.len(), 5);
    assert_eq!(
        video.payload_types[0].rtcp_fb[2].subtype.as_deref(),
        Some("fir")
    );
    assert_eq!(
        video.payload_types[1].parameters,
        [Parameter::new("apt", "96")]
    );
    assert_eq!(video.ssrc_groups[0].sources, [2741635218, 3926540157]);
    assert_eq!(video.sources.len(), 2);

    for c in &j.contents {
        let t = c.transport.as_ref().unwrap();
        assert!(t.candidates.is_empty());
        assert!(t.fingerprint.as_ref().unwrap().value.starts_with("9C:2E"));
    }
    assert_eq!(roundtrip(&j), j);
}

/// A JMI propose as Conversations sends it: audio and video, with the
/// store hint and an unrelated sibling.
#[test]
fn jmi_propose_in_message() {
    let m: Element = "<message xmlns='jabber:client' to='alice@example.org' type='chat' id='m1'>
        <propose xmlns='urn:xmpp:jingle-message:0' id='Qm9vdHN0cmFwU2Vzc2lvbg'>
          <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>
          <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/>
        </propose>
        <request xmlns='urn:xmpp:receipts'/>
        <store xmlns='urn:xmpp:hints'/>
      </message>"
        .parse()
        .unwrap();
    let jm = jmi::find_in(&m).unwrap().unwrap();
    assert_eq!(jm.id(), "Qm9vdHN0cmFwU2Vzc2lvbg");
    let jmi::JingleMessage::Propose { descriptions, .. } = jm else {
        panic!("not a propose")
    };
    assert_eq!(descriptions.len(), 2);
    assert!(m.has_child("store", ns::HINTS));
}

/// Every attribute of the sample stanzas, replaced by hostile values or
/// removed: parsing must return (Ok or Err) and never panic.
#[test]
fn mutated_attributes_never_panic() {
    let hostile = [
        "",
        " ",
        "-1",
        "+1",
        "0",
        "256",
        "65536",
        "4294967296",
        "99999999999999999999999999",
        "1.5",
        "0x10",
        "é😀",
        "both initiator",
    ];
    let long = "9".repeat(5000);
    let mut checked = 0;
    for sample in [DINO_LIKE, CONVERSATIONS_LIKE] {
        let mut pos = 0;
        while let Some(off) = sample[pos..].find("='") {
            let value_start = pos + off + 2;
            let Some(len) = sample[value_start..].find('\'') else {
                break;
            };
            let value_end = value_start + len;
            let name_start = sample[..pos + off]
                .rfind(|c: char| c.is_whitespace())
                .map_or(0, |i| i + 1);
            let mut variants: Vec<String> = hostile
                .iter()
                .copied()
                .chain([long.as_str()])
                .map(|v| format!("{}{v}{}", &sample[..value_start], &sample[value_end..]))
                .collect();
            // And the attribute removed altogether.
            variants.push(format!(
                "{}{}",
                &sample[..name_start],
                &sample[value_end + 1..]
            ));
            for xml in variants {
                if let Ok(el) = xml.parse::<Element>() {
                    let _ = Jingle::try_from(el);
                    checked += 1;
                }
            }
            pos = value_end + 1;
        }
    }
    assert!(checked > 1000, "only {checked} variants checked");
}
