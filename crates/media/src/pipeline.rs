//! [`CallMedia`]: the pipeline of one call, its rtpbin and its bus.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;

use crate::props::{make, set, set_str};
use crate::stream::{self, CallContext, FrameSlot, Stream};
use crate::{
    codec, MediaConfig, MediaError, MediaEvent, MediaKind, PacketCallback, Source, StreamId,
    StreamSpec, StreamStats, VideoFrame,
};

type EventCallback = Arc<dyn Fn(MediaEvent) + Send + Sync>;

/// Jitterbuffer depth: enough for Wi-Fi jitter, little enough for conversation.
const JITTERBUFFER_MS: u32 = 100;
const BUS_POLL_MS: u64 = 100;

/// The media of one call: one GStreamer pipeline with one `rtpbin`.
///
/// Callbacks (`outgoing`, [`CallMedia::on_video_frame`], [`CallMedia::on_event`]) run on
/// GStreamer threads: they must return quickly and must not call [`CallMedia::stop`] or
/// drop the last reference to this `CallMedia`; hand work over to another thread instead.
pub struct CallMedia {
    pipeline: gst::Pipeline,
    rtpbin: gst::Element,
    config: MediaConfig,
    shared: Arc<Shared>,
    next_session: AtomicU32,
    stopping: Arc<AtomicBool>,
    bus_thread: Mutex<Option<JoinHandle<()>>>,
}

/// State the pipeline's signal handlers and the bus thread see.
struct Shared {
    streams: RwLock<Vec<Arc<Stream>>>,
    frames: FrameSlot,
    events: RwLock<Option<EventCallback>>,
    muted: AtomicBool,
    camera_enabled: Arc<AtomicBool>,
}

impl Shared {
    fn stream(&self, id: StreamId) -> Option<Arc<Stream>> {
        let streams = self.streams.read().ok()?;
        streams.iter().find(|s| s.id == id).cloned()
    }

    fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn emit(&self, event: MediaEvent) {
        let callback = self.events.read().ok().and_then(|c| c.clone());
        if let Some(callback) = callback {
            callback(event);
        }
    }
}

impl CallMedia {
    pub fn new(config: MediaConfig) -> Result<Self, MediaError> {
        crate::init()?;
        validate(&config)?;
        let pipeline = gst::Pipeline::new();
        let rtpbin = make("rtpbin", "RTP")?;
        set(&rtpbin, "latency", JITTERBUFFER_MS);
        // Lost-packet events let opusdec conceal or recover from FEC.
        set(&rtpbin, "do-lost", true);
        set(&rtpbin, "drop-on-latency", true);
        // AVPF allows early RTCP feedback, so a PLI goes out right away (RFC 4585).
        set_str(&rtpbin, "rtp-profile", "avpf");
        hide_tool_from_sdes(&rtpbin);
        pipeline
            .add(&rtpbin)
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;

        let shared = Arc::new(Shared {
            streams: RwLock::new(Vec::new()),
            frames: Arc::new(RwLock::new(None)),
            events: RwLock::new(None),
            muted: AtomicBool::new(false),
            camera_enabled: Arc::new(AtomicBool::new(true)),
        });
        connect_rtpbin(&rtpbin, Arc::downgrade(&shared));

        let stopping = Arc::new(AtomicBool::new(false));
        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
        let bus_thread = spawn_bus_thread(
            bus,
            pipeline.downgrade(),
            Arc::downgrade(&shared),
            stopping.clone(),
        )?;
        Ok(CallMedia {
            pipeline,
            rtpbin,
            config,
            shared,
            next_session: AtomicU32::new(0),
            stopping,
            bus_thread: Mutex::new(Some(bus_thread)),
        })
    }

    /// Adds a stream; `outgoing` is called (from a GStreamer streaming thread) with every
    /// plain RTP and RTCP packet to send.
    pub fn add_stream(
        &self,
        spec: StreamSpec,
        outgoing: PacketCallback,
    ) -> Result<StreamId, MediaError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(MediaError::Stopped);
        }
        let id = StreamId(self.next_session.fetch_add(1, Ordering::SeqCst));
        let ctx = CallContext {
            pipeline: &self.pipeline,
            rtpbin: &self.rtpbin,
            config: &self.config,
            muted: self.shared.muted.load(Ordering::SeqCst),
            camera_enabled: self.shared.camera_enabled.clone(),
            frames: self.shared.frames.clone(),
        };
        let codec = spec.codec;
        let stream = stream::build(&ctx, id, spec, outgoing)?;
        if let Ok(mut streams) = self.shared.streams.write() {
            streams.push(Arc::new(stream));
        }
        tracing::debug!(%id, %codec, "stream added");
        Ok(id)
    }

    /// Sets the pipeline PLAYING.
    pub fn start(&self) -> Result<(), MediaError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(MediaError::Stopped);
        }
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|e| MediaError::StateChange(format!("cannot start: {e}")))
    }

    /// Takes one plain RTP or RTCP packet of stream `id` (rtcp-mux); any thread, any bytes.
    pub fn push_incoming(&self, id: StreamId, packet: &[u8]) {
        match self.shared.stream(id) {
            Some(stream) => stream.push(packet),
            None => tracing::trace!(%id, "packet for an unknown stream"),
        }
    }

    /// Audio: sends silence while muted, without renegotiation.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::SeqCst);
        for stream in self.shared.streams() {
            if let Some(volume) = &stream.volume {
                set(volume, "mute", muted);
            }
        }
    }

    /// Video: while off, sends black frames (the capture keeps running), without
    /// renegotiation; the peer's decoder stays in step, so no key frame is needed after.
    pub fn set_camera_enabled(&self, on: bool) {
        self.shared.camera_enabled.store(on, Ordering::SeqCst);
    }

    /// Makes our encoder of a video stream produce a key frame now.
    pub fn request_keyframe(&self, id: StreamId) {
        let Some(stream) = self.shared.stream(id) else {
            return;
        };
        if stream.spec.kind != MediaKind::Video {
            return;
        }
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        let sent = stream
            .encoder
            .static_pad("src")
            .is_some_and(|pad| pad.send_event(event));
        tracing::debug!(%id, sent, "key frame requested");
    }

    /// Receives every decoded remote video frame as RGBA; replaces an earlier callback.
    pub fn on_video_frame(&self, callback: Box<dyn Fn(VideoFrame) + Send + Sync>) {
        if let Ok(mut slot) = self.shared.frames.write() {
            *slot = Some(Arc::from(callback));
        }
    }

    /// Receives errors and warnings of the pipeline; replaces an earlier callback.
    pub fn on_event(&self, callback: Box<dyn Fn(MediaEvent) + Send + Sync>) {
        if let Ok(mut slot) = self.shared.events.write() {
            *slot = Some(Arc::from(callback));
        }
    }

    /// Counters of a stream; all zero for an unknown one.
    pub fn stats(&self, id: StreamId) -> StreamStats {
        self.shared
            .stream(id)
            .map(|s| s.counters.snapshot())
            .unwrap_or_default()
    }

    /// Stops the pipeline and drops all callbacks. Idempotent; also done on drop.
    pub fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(error = %e, "pipeline did not stop cleanly");
        }
        let handle = self.bus_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() && handle.join().is_err() {
                tracing::warn!("bus thread panicked");
            }
        }
        for stream in self.shared.streams() {
            stream.detach_callbacks();
        }
        if let Ok(mut slot) = self.shared.frames.write() {
            *slot = None;
        }
        if let Ok(mut slot) = self.shared.events.write() {
            *slot = None;
        }
        tracing::debug!("call media stopped");
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.stop();
    }
}

fn validate(config: &MediaConfig) -> Result<(), MediaError> {
    let (w, h) = config.video_size;
    if w == 0 || h == 0 || w > 7680 || h > 4320 || config.framerate == 0 || config.framerate > 120 {
        return Err(MediaError::InvalidConfig(format!(
            "video {w}x{h} at {} fps",
            config.framerate
        )));
    }
    if let Source::Test { audio_freq, .. } = config.source {
        if !(audio_freq.is_finite() && audio_freq > 0.0 && audio_freq < 20_000.0) {
            return Err(MediaError::InvalidConfig(format!(
                "test tone of {audio_freq} Hz"
            )));
        }
    }
    Ok(())
}

/// rtpbin announces "tool=GStreamer" in RTCP SDES by default; peers need not know.
fn hide_tool_from_sdes(rtpbin: &gst::Element) {
    let is_structure = rtpbin
        .find_property("sdes")
        .is_some_and(|p| p.value_type() == gst::Structure::static_type());
    if !is_structure {
        return;
    }
    let mut sdes = rtpbin.property::<gst::Structure>("sdes");
    sdes.remove_field("tool");
    rtpbin.set_property("sdes", sdes);
}

fn connect_rtpbin(rtpbin: &gst::Element, shared: Weak<Shared>) {
    let weak = shared.clone();
    // The receiver maps the negotiated payload type to caps (depayloader, clock rate).
    rtpbin.connect("request-pt-map", false, move |args| {
        let session = args.get(1).and_then(|v| v.get::<u32>().ok());
        let pt = args.get(2).and_then(|v| v.get::<u32>().ok());
        let caps = match (weak.upgrade(), session, pt) {
            (Some(shared), Some(session), Some(pt)) => shared
                .stream(StreamId(session))
                .filter(|s| u32::from(s.spec.payload_type) == pt)
                .map(|s| codec::rtp_caps(&s.spec)),
            _ => None,
        };
        if caps.is_none() {
            tracing::debug!(?session, ?pt, "no caps for payload type");
        }
        Some(caps.to_value())
    });

    let weak = shared.clone();
    rtpbin.connect_pad_added(move |_, pad| {
        let Some(session) = recv_rtp_src_session(pad) else {
            return;
        };
        let Some(stream) = weak.upgrade().and_then(|s| s.stream(StreamId(session))) else {
            tracing::warn!(session, "remote media for an unknown session");
            return;
        };
        let Some(sink) = stream.funnel.request_pad_simple("sink_%u") else {
            tracing::warn!(session, "funnel refused a pad");
            return;
        };
        match pad.link(&sink) {
            Ok(_) => tracing::debug!(pad = %pad.name(), "remote source linked"),
            Err(e) => {
                tracing::warn!(pad = %pad.name(), error = ?e, "cannot link remote source");
                stream.funnel.release_request_pad(&sink);
            }
        }
    });

    rtpbin.connect_pad_removed(move |_, pad| {
        let Some(session) = recv_rtp_src_session(pad) else {
            return;
        };
        let Some(stream) = shared.upgrade().and_then(|s| s.stream(StreamId(session))) else {
            return;
        };
        // The removed pad is already unlinked; free the funnel pads left without a peer.
        for sink in stream.funnel.sink_pads() {
            if sink.peer().is_none() {
                stream.funnel.release_request_pad(&sink);
            }
        }
    });
}

/// The session of an rtpbin `recv_rtp_src_<session>_<ssrc>_<pt>` pad.
fn recv_rtp_src_session(pad: &gst::Pad) -> Option<u32> {
    let name = pad.name();
    let rest = name.strip_prefix("recv_rtp_src_")?;
    rest.split('_').next()?.parse().ok()
}

fn spawn_bus_thread(
    bus: gst::Bus,
    pipeline: glib::WeakRef<gst::Pipeline>,
    shared: Weak<Shared>,
    stopping: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, MediaError> {
    std::thread::Builder::new()
        .name("natter-media-bus".into())
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(BUS_POLL_MS))
                else {
                    continue;
                };
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                handle_message(&message, &shared, &pipeline);
            }
        })
        .map_err(|e| MediaError::Pipeline(format!("cannot start bus thread: {e}")))
}

fn handle_message(
    message: &gst::Message,
    shared: &Shared,
    pipeline: &glib::WeakRef<gst::Pipeline>,
) {
    use gst::MessageView;
    let element = || {
        message
            .src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_default()
    };
    match message.view() {
        MessageView::Error(e) => {
            let element = element();
            tracing::error!(%element, error = %e.error(), debug = ?e.debug(), "pipeline error");
            shared.emit(MediaEvent::Error {
                element,
                message: e.error().to_string(),
            });
        }
        MessageView::Warning(w) => {
            let element = element();
            tracing::warn!(%element, warning = %w.error(), debug = ?w.debug(), "pipeline warning");
            shared.emit(MediaEvent::Warning {
                element,
                message: w.error().to_string(),
            });
        }
        MessageView::Element(e) => {
            let (Some(s), Some(src)) = (e.structure(), message.src()) else {
                return;
            };
            for stream in shared.streams() {
                let is = |el: &Option<gst::Element>| {
                    el.as_ref()
                        .is_some_and(|el| el.upcast_ref::<gst::Object>() == src)
                };
                if is(&stream.level) && s.name() == "level" {
                    stream.counters.update_level(s);
                } else if is(&stream.spectrum) && s.name() == "spectrum" {
                    let rate = stream
                        .spectrum
                        .as_ref()
                        .and_then(|e| e.static_pad("sink"))
                        .and_then(|p| p.current_caps())
                        .and_then(|c| gst_audio::AudioInfo::from_caps(&c).ok())
                        .map_or(48_000, |i| i.rate());
                    stream
                        .counters
                        .update_spectrum(s, rate, stream::SPECTRUM_THRESHOLD_DB as f32);
                }
            }
        }
        MessageView::Latency(_) => {
            // A sink's latency changed (e.g. the jitterbuffer's); redistribute it.
            if let Some(pipeline) = pipeline.upgrade() {
                if let Err(e) = pipeline.recalculate_latency() {
                    tracing::debug!(error = %e, "latency not recalculated");
                }
            }
        }
        MessageView::StateChanged(s) => {
            let is_pipeline = pipeline
                .upgrade()
                .is_some_and(|p| message.src() == Some(p.upcast_ref::<gst::Object>()));
            if is_pipeline {
                tracing::debug!(old = ?s.old(), new = ?s.current(), "pipeline state");
            }
        }
        _ => {}
    }
}
