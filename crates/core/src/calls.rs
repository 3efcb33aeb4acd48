//! Calls: the glue between the session (it sends and receives the stanzas), natter-jingle
//! (XEP-0353/0166 signalling, ICE, DTLS-SRTP) and natter-media (GStreamer).

use std::collections::HashMap;
use std::sync::Arc;

use natter_jingle::{CallManager, CodecName, ContentMedia, MediaKind, TransportConfig};
use natter_media::{CallMedia, Codec, MediaConfig, StreamId, StreamSpec};
use tokio::task::JoinHandle;

pub use natter_jingle::{CallEvent, CallInput, CallOutput, CallState, EndReason};
pub use natter_media::StreamStats;

/// How this account places and answers calls.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Capture and playback (devices, or test sources for tests and `natter-call`).
    pub media: MediaConfig,
    /// ICE: STUN/TURN servers, which candidates to offer, timeouts.
    pub transport: TransportConfig,
    /// Ask the server for STUN/TURN services (XEP-0215) before each call.
    pub external_services: bool,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            media: MediaConfig::default(),
            transport: TransportConfig::default(),
            external_services: true,
        }
    }
}

/// What GStreamer here can encode and decode. Asked once, at the first call: starting
/// GStreamer (a plugin registry scan) is not work for every sign-in.
pub(crate) fn capabilities() -> natter_jingle::Capabilities {
    static CAPS: std::sync::OnceLock<natter_jingle::Capabilities> = std::sync::OnceLock::new();
    *CAPS.get_or_init(|| natter_jingle::Capabilities {
        h264: Codec::H264.is_available(),
    })
}

/// A call's running media: the pipeline and the tasks feeding it from the network.
pub(crate) struct ActiveMedia {
    pub(crate) media: Arc<CallMedia>,
    pub(crate) streams: Vec<(String, StreamId, MediaKind)>,
    feeders: Vec<JoinHandle<()>>,
}

impl Drop for ActiveMedia {
    fn drop(&mut self) {
        for f in &self.feeders {
            f.abort();
        }
        self.media.stop();
    }
}

/// Statistics of one content of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentStats {
    pub content: String,
    pub kind: MediaKind,
    pub stats: StreamStats,
}

fn codec(c: CodecName) -> Codec {
    match c {
        CodecName::Opus => Codec::Opus,
        CodecName::Vp8 => Codec::Vp8,
        CodecName::H264 => Codec::H264,
    }
}

/// Builds the pipeline for the connected contents and wires RTP both ways.
pub(crate) fn start_media(
    config: MediaConfig,
    contents: Vec<ContentMedia>,
) -> Result<ActiveMedia, natter_media::MediaError> {
    let mut active = ActiveMedia {
        media: Arc::new(CallMedia::new(config)?),
        streams: Vec::new(),
        feeders: Vec::new(),
    };
    for content in contents {
        active.add(content)?;
    }
    active.media.start()?;
    Ok(active)
}

impl ActiveMedia {
    /// Adds one connected content: before [`CallMedia::start`], or to the running
    /// pipeline (a content added mid-call, XEP-0166 content-add).
    pub(crate) fn add(&mut self, content: ContentMedia) -> Result<(), natter_media::MediaError> {
        let n = &content.negotiated;
        let mut spec = StreamSpec::new(codec(n.codec), n.payload_type, content.local_ssrc);
        spec.fmtp = n.parameters.clone();
        let sender = content.sender.clone();
        let id = self
            .media
            .add_stream(spec, Box::new(move |packet| sender.send(packet)))?;
        let mut incoming = content.incoming;
        let m = self.media.clone();
        self.feeders.push(tokio::spawn(async move {
            while let Some(packet) = incoming.recv().await {
                m.push_incoming(id, &packet);
            }
        }));
        self.streams.push((content.name, id, n.kind));
        Ok(())
    }
}

/// The calls of one session.
pub(crate) struct Calls {
    pub(crate) manager: CallManager,
    pub(crate) settings: CallSettings,
    pub(crate) media: HashMap<String, ActiveMedia>,
}

impl Calls {
    pub(crate) fn stats(&self, sid: &str) -> Option<Vec<ContentStats>> {
        let active = self.media.get(sid)?;
        Some(
            active
                .streams
                .iter()
                .map(|(content, id, kind)| ContentStats {
                    content: content.clone(),
                    kind: *kind,
                    stats: active.media.stats(*id),
                })
                .collect(),
        )
    }
}

/// The STUN and TURN services of a XEP-0215 answer that webrtc-ice can use (UDP only).
pub(crate) fn ice_servers(
    services: &natter_protocol::extdisco::Services,
) -> Vec<natter_jingle::IceServer> {
    services
        .services
        .iter()
        .filter(|s| {
            matches!(s.kind.as_str(), "stun" | "turn")
                && s.transport.as_deref().is_none_or(|t| t == "udp")
        })
        .map(|s| natter_jingle::IceServer {
            turn: s.kind == "turn",
            host: s.host.clone(),
            port: s.port.unwrap_or(3478),
            username: s.username.clone(),
            password: s.password.clone(),
        })
        .collect()
}

/// When the first of the announced credentials expires (XEP-0215 `expires`, RFC 3339).
pub(crate) fn earliest_expiry(
    services: &natter_protocol::extdisco::Services,
) -> Option<chrono::DateTime<chrono::Utc>> {
    services
        .services
        .iter()
        .filter_map(|s| s.expires.as_deref())
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_protocol::extdisco::{Service, Services};

    fn service(kind: &str, transport: Option<&str>, expires: Option<&str>) -> Service {
        Service {
            host: "turn.example".into(),
            port: Some(3478),
            kind: kind.into(),
            transport: transport.map(str::to_owned),
            username: Some("u".into()),
            password: Some("p".into()),
            expires: expires.map(str::to_owned),
            restricted: true,
            name: None,
        }
    }

    #[test]
    fn only_udp_stun_and_turn_are_used_and_the_earliest_expiry_counts() {
        let services = Services {
            kind_filter: None,
            services: vec![
                service("turn", Some("udp"), Some("2026-11-23T04:00:00Z")),
                service("turn", Some("tcp"), Some("2026-11-22T05:00:00Z")),
                service("stun", None, None),
                service("turns", Some("tcp"), None),
                service("turn", None, Some("not a date")),
            ],
        };
        let servers = ice_servers(&services);
        assert_eq!(
            servers.iter().map(|s| s.turn).collect::<Vec<_>>(),
            vec![true, false, true]
        );
        assert_eq!(
            earliest_expiry(&services).map(|t| t.to_rfc3339()),
            Some("2026-11-22T05:00:00+00:00".into())
        );
    }
}
