//! Sorting incoming rtcp-mux packets into RTP and RTCP (RFC 5761 §4) and rejecting what
//! cannot be ours before it reaches GStreamer.

/// What [`classify`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    Rtp,
    Rtcp,
    Rejected(Reject),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    TooShort,
    NotVersion2,
    /// The header claims CSRCs, an extension or padding beyond the packet's end.
    BadLength,
    /// An RTP payload type other than the negotiated one.
    PayloadType(u8),
}

const RTP_HEADER: usize = 12;
const RTCP_HEADER: usize = 8;

/// Classifies `packet` for a stream whose negotiated payload type is `payload_type`.
///
/// Only one payload type is negotiated per Jingle content, so anything else is dropped
/// here: rtpbin would otherwise ask `request-pt-map` for it on every packet.
pub(crate) fn classify(packet: &[u8], payload_type: u8) -> Packet {
    if packet.len() < 2 {
        return Packet::Rejected(Reject::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Packet::Rejected(Reject::NotVersion2);
    }
    // RFC 5761 §4: RTCP packet types 192–223 occupy the second byte where RTP would put
    // the marker bit and payload types 64–95, which are never used with rtcp-mux.
    if (192..=223).contains(&packet[1]) {
        return classify_rtcp(packet);
    }
    classify_rtp(packet, payload_type)
}

fn classify_rtcp(packet: &[u8]) -> Packet {
    if packet.len() < RTCP_HEADER {
        return Packet::Rejected(Reject::TooShort);
    }
    // The first packet's length (in 32-bit words minus one) must fit in the datagram.
    let words = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if (words + 1) * 4 > packet.len() {
        return Packet::Rejected(Reject::BadLength);
    }
    Packet::Rtcp
}

fn classify_rtp(packet: &[u8], payload_type: u8) -> Packet {
    if packet.len() < RTP_HEADER {
        return Packet::Rejected(Reject::TooShort);
    }
    let pt = packet[1] & 0x7f;
    if pt != payload_type {
        return Packet::Rejected(Reject::PayloadType(pt));
    }
    let padding = packet[0] & 0x20 != 0;
    let extension = packet[0] & 0x10 != 0;
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut header = RTP_HEADER + 4 * csrc_count;
    if extension {
        let Some(ext) = packet.get(header..header + 4) else {
            return Packet::Rejected(Reject::BadLength);
        };
        header += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let pad = if padding {
        packet.last().map_or(0, |&p| usize::from(p))
    } else {
        0
    };
    if header + pad > packet.len() || (padding && pad == 0) {
        return Packet::Rejected(Reject::BadLength);
    }
    Packet::Rtp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
        p.extend_from_slice(&[0xfc; 20]);
        p
    }

    #[test]
    fn rtp_with_the_negotiated_type_passes() {
        assert_eq!(classify(&rtp(111), 111), Packet::Rtp);
        // Marker bit set.
        assert_eq!(classify(&rtp(0x80 | 111), 111), Packet::Rtp);
    }

    #[test]
    fn other_payload_types_are_rejected() {
        assert_eq!(
            classify(&rtp(96), 111),
            Packet::Rejected(Reject::PayloadType(96))
        );
    }

    #[test]
    fn rtcp_is_told_apart_by_its_second_byte() {
        // A receiver report with no report blocks: length 1 word + 1.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(classify(&rr, 111), Packet::Rtcp);
        let sr_too_long = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert_eq!(
            classify(&sr_too_long, 111),
            Packet::Rejected(Reject::BadLength)
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(classify(&[], 96), Packet::Rejected(Reject::TooShort));
        assert_eq!(classify(&[0x80], 96), Packet::Rejected(Reject::TooShort));
        assert_eq!(
            classify(&[0x00, 96, 0, 0], 96),
            Packet::Rejected(Reject::NotVersion2)
        );
        assert_eq!(
            classify(&rtp(96)[..11], 96),
            Packet::Rejected(Reject::TooShort)
        );
        // 15 CSRCs announced, none present.
        let mut p = rtp(96);
        p[0] |= 0x0f;
        p.truncate(20);
        assert_eq!(classify(&p, 96), Packet::Rejected(Reject::BadLength));
        // Extension header cut off.
        let mut p = rtp(96);
        p[0] |= 0x10;
        p.truncate(14);
        assert_eq!(classify(&p, 96), Packet::Rejected(Reject::BadLength));
        // Padding longer than the packet.
        let mut p = rtp(96);
        p[0] |= 0x20;
        if let Some(last) = p.last_mut() {
            *last = 200;
        }
        assert_eq!(classify(&p, 96), Packet::Rejected(Reject::BadLength));
    }
}
