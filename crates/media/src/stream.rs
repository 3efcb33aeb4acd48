//! One Jingle content: its send chain, its rtpbin session and its receive chain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use gst::prelude::*;
use gst_video::prelude::*;

use crate::codec::{self, CodecElements};
use crate::devices::capture_element;
use crate::packet::{self, Packet};
use crate::props::{make, set, set_str};
use crate::stats::{add, Counters};
use crate::{
    MediaConfig, MediaError, MediaKind, PacketCallback, Source, StreamId, StreamSpec, VideoFrame,
};

type SharedPacketCallback = Arc<dyn Fn(&[u8]) + Send + Sync>;
pub(crate) type FrameCallback = Arc<dyn Fn(VideoFrame) + Send + Sync>;
pub(crate) type FrameSlot = Arc<RwLock<Option<FrameCallback>>>;

/// 1025 bands: a 2048-point FFT (2 × (bands − 1)). A power of two makes `level` +
/// `spectrum` about a quarter cheaper than the 2046 points of 1024 bands, for the same
/// 23.4 Hz resolution at 48 kHz.
const SPECTRUM_BANDS: u32 = 1025;
pub(crate) const SPECTRUM_THRESHOLD_DB: i32 = -80;
const ANALYSIS_INTERVAL_NS: u64 = 100_000_000;

/// What a stream needs from its call.
pub(crate) struct CallContext<'a> {
    pub pipeline: &'a gst::Pipeline,
    pub rtpbin: &'a gst::Element,
    pub config: &'a MediaConfig,
    pub muted: bool,
    pub camera_enabled: Arc<AtomicBool>,
    pub frames: FrameSlot,
}

pub(crate) struct Stream {
    pub id: StreamId,
    pub spec: StreamSpec,
    pub counters: Arc<Counters>,
    rtp_in: gst_app::AppSrc,
    rtcp_in: gst_app::AppSrc,
    pub encoder: gst::Element,
    /// Audio: mutes what we send.
    pub volume: Option<gst::Element>,
    /// Collects every remote SSRC of the session in front of the depayloader.
    pub funnel: gst::Element,
    pub level: Option<gst::Element>,
    pub spectrum: Option<gst::Element>,
    appsinks: Vec<gst_app::AppSink>,
}

impl Stream {
    /// Classifies and pushes one incoming plain RTP or RTCP packet.
    pub fn push(&self, data: &[u8]) {
        let c = &self.counters;
        let target = match packet::classify(data, self.spec.payload_type) {
            Packet::Rtp => {
                add(&c.packets_received, 1);
                add(&c.bytes_received, data.len() as u64);
                &self.rtp_in
            }
            Packet::Rtcp => {
                add(&c.rtcp_received, 1);
                &self.rtcp_in
            }
            Packet::Rejected(why) => {
                add(&c.packets_rejected, 1);
                tracing::trace!(stream = %self.id, ?why, len = data.len(), "dropped incoming packet");
                return;
            }
        };
        if let Err(e) = target.push_buffer(gst::Buffer::from_slice(data.to_vec())) {
            // Flushing before start and after stop; nothing to do about it.
            tracing::trace!(stream = %self.id, error = ?e, "appsrc refused packet");
        }
    }

    /// Drops the callbacks (and whatever they hold) once the pipeline is stopped.
    pub fn detach_callbacks(&self) {
        for sink in &self.appsinks {
            sink.set_callbacks(gst_app::AppSinkCallbacks::builder().build());
        }
    }
}

/// Elements and pads created so far, removed again if building fails half-way.
struct Parts<'a> {
    ctx: &'a CallContext<'a>,
    elements: Vec<gst::Element>,
    rtpbin_pads: Vec<gst::Pad>,
}

impl Parts<'_> {
    fn make(&mut self, factory: &str, what: &str) -> Result<gst::Element, MediaError> {
        let e = make(factory, what)?;
        self.keep(&e)?;
        Ok(e)
    }

    fn keep(&mut self, e: &gst::Element) -> Result<(), MediaError> {
        self.ctx
            .pipeline
            .add(e)
            .map_err(|err| MediaError::Pipeline(err.to_string()))?;
        self.elements.push(e.clone());
        Ok(())
    }

    fn capsfilter(&mut self, caps: gst::Caps) -> Result<gst::Element, MediaError> {
        let f = self.make("capsfilter", "caps filtering")?;
        set(&f, "caps", caps);
        Ok(f)
    }

    fn rtpbin_pad(&mut self, name: &str) -> Result<gst::Pad, MediaError> {
        let pad = self
            .ctx
            .rtpbin
            .request_pad_simple(name)
            .ok_or_else(|| MediaError::Pipeline(format!("rtpbin refused pad {name}")))?;
        self.rtpbin_pads.push(pad.clone());
        Ok(pad)
    }

    fn undo(self) {
        for e in self.elements.iter().rev() {
            let _ = e.set_state(gst::State::Null);
            let _ = self.ctx.pipeline.remove(e);
        }
        for pad in self.rtpbin_pads {
            self.ctx.rtpbin.release_request_pad(&pad);
        }
    }
}

fn link_chain(chain: &[gst::Element]) -> Result<(), MediaError> {
    gst::Element::link_many(chain).map_err(|e| {
        let names: Vec<String> = chain.iter().map(|e| e.name().to_string()).collect();
        MediaError::Pipeline(format!("cannot link {}: {e}", names.join(" → ")))
    })
}

fn link_pads(src: &gst::Pad, sink: &gst::Pad) -> Result<(), MediaError> {
    src.link(sink).map(|_| ()).map_err(|e| {
        MediaError::Pipeline(format!(
            "cannot link {} to {}: {e:?}",
            src.name(),
            sink.name()
        ))
    })
}

fn static_pad(e: &gst::Element, name: &str) -> Result<gst::Pad, MediaError> {
    e.static_pad(name)
        .ok_or_else(|| MediaError::Pipeline(format!("{} has no {name} pad", e.name())))
}

/// Builds one stream into the call's pipeline; on failure the pipeline is left as it was.
pub(crate) fn build(
    ctx: &CallContext<'_>,
    id: StreamId,
    spec: StreamSpec,
    outgoing: PacketCallback,
) -> Result<Stream, MediaError> {
    spec.validate()?;
    let elements = CodecElements::find(spec.codec)?;
    let mut parts = Parts {
        ctx,
        elements: Vec::new(),
        rtpbin_pads: Vec::new(),
    };
    match build_parts(&mut parts, id, spec, &elements, outgoing) {
        Ok(stream) => {
            // In NULL this does nothing; a stream added mid-call starts right away. Sinks
            // first, sources last: a live source started before the elements downstream of
            // it are PAUSED gets FLUSHING back from its first push and stops for good.
            for e in parts.elements.iter().rev() {
                if let Err(err) = e.sync_state_with_parent() {
                    tracing::warn!(element = %e.name(), error = %err, "could not start element");
                }
            }
            Ok(stream)
        }
        Err(e) => {
            parts.undo();
            Err(e)
        }
    }
}

fn build_parts(
    parts: &mut Parts<'_>,
    id: StreamId,
    spec: StreamSpec,
    elements: &CodecElements,
    outgoing: PacketCallback,
) -> Result<Stream, MediaError> {
    let ctx = parts.ctx;
    let n = id.0;
    let counters = Arc::new(Counters::default());
    let outgoing: SharedPacketCallback = Arc::from(outgoing);

    // Receive side first: with echo cancellation, the send side's webrtcdsp looks up the
    // echo probe of the playback chain by name.
    let funnel = parts.make("funnel", "receiving")?;
    let mut decode = vec![funnel.clone()];
    for e in codec::decode_chain(elements, spec.codec)? {
        parts.keep(&e)?;
        decode.push(e);
    }
    // decode_chain ends with the decoder.
    if let Some(decoder) = decode.last() {
        add_first_decoded_probe(decoder, counters.clone())?;
    }
    let (mut level, mut spectrum, mut echo_probe) = (None, None, None);
    let mut appsinks = Vec::new();
    match spec.kind {
        MediaKind::Audio => {
            // opusdec puts out interleaved S16, which level and spectrum take as is.
            let l = parts.make("level", "audio statistics")?;
            set(&l, "interval", ANALYSIS_INTERVAL_NS);
            set(&l, "post-messages", true);
            decode.push(l.clone());
            if ctx.config.analyse_audio {
                let s = parts.make("spectrum", "audio statistics")?;
                set(&s, "bands", SPECTRUM_BANDS);
                set(&s, "threshold", SPECTRUM_THRESHOLD_DB);
                set(&s, "interval", ANALYSIS_INTERVAL_NS);
                set(&s, "post-messages", true);
                set(&s, "message-magnitude", true);
                set(&s, "message-phase", false);
                set(&s, "multi-channel", false);
                decode.push(s.clone());
                spectrum = Some(s);
            }
            // Only a sound device (or the echo probe) needs another format or rate; a
            // fakesink takes the decoder's output as it is.
            if ctx.config.play_audio || ctx.config.echo_cancellation {
                let convert = parts.make("audioconvert", "audio playback")?;
                let resample = parts.make("audioresample", "audio playback")?;
                decode.extend([convert, resample]);
            }
            if ctx.config.echo_cancellation {
                let probe = parts.make("webrtcechoprobe", "echo cancellation")?;
                decode.push(probe.clone());
                echo_probe = Some(probe);
            }
            let sink = if ctx.config.play_audio {
                parts.make("autoaudiosink", "audio playback")?
            } else {
                let sink = parts.make("fakesink", "audio playback")?;
                set(&sink, "sync", false);
                set(&sink, "async", false);
                sink
            };
            decode.push(sink);
            level = Some(l);
        }
        MediaKind::Video => {
            let convert = parts.make("videoconvert", "video display")?;
            let rgba = parts.capsfilter(
                gst::Caps::builder("video/x-raw")
                    .field("format", "RGBA")
                    .build(),
            )?;
            let sink = gst_app::AppSink::builder()
                .sync(true)
                .async_(false)
                .max_buffers(2)
                .drop(true)
                .build();
            parts.keep(sink.upcast_ref())?;
            sink.set_callbacks(video_callbacks(id, counters.clone(), ctx.frames.clone()));
            decode.extend([convert, rgba, sink.clone().upcast()]);
            appsinks.push(sink);
        }
    }
    link_chain(&decode)?;

    // Send side.
    let (encoder, volume) =
        build_send_chain(parts, &spec, elements, echo_probe.as_ref(), &counters, n)?;

    // rtpbin: RTP/RTCP out to appsinks, in from appsrcs.
    let rtp_out = packet_appsink(counters.clone(), outgoing.clone(), false);
    let rtcp_out = packet_appsink(counters.clone(), outgoing, true);
    parts.keep(rtp_out.upcast_ref())?;
    parts.keep(rtcp_out.upcast_ref())?;
    let send_src = static_pad(ctx.rtpbin, &format!("send_rtp_src_{n}"))?;
    link_pads(&send_src, &static_pad(rtp_out.upcast_ref(), "sink")?)?;
    let rtcp_src = parts.rtpbin_pad(&format!("send_rtcp_src_{n}"))?;
    link_pads(&rtcp_src, &static_pad(rtcp_out.upcast_ref(), "sink")?)?;
    appsinks.extend([rtp_out, rtcp_out]);

    let rtp_in = incoming_appsrc(codec::rtp_caps(&spec));
    let rtcp_in = incoming_appsrc(gst::Caps::new_empty_simple("application/x-rtcp"));
    parts.keep(rtp_in.upcast_ref())?;
    parts.keep(rtcp_in.upcast_ref())?;
    let recv_rtp = parts.rtpbin_pad(&format!("recv_rtp_sink_{n}"))?;
    link_pads(&static_pad(rtp_in.upcast_ref(), "src")?, &recv_rtp)?;
    let recv_rtcp = parts.rtpbin_pad(&format!("recv_rtcp_sink_{n}"))?;
    link_pads(&static_pad(rtcp_in.upcast_ref(), "src")?, &recv_rtcp)?;

    Ok(Stream {
        id,
        spec,
        counters,
        rtp_in,
        rtcp_in,
        encoder,
        volume,
        funnel,
        level,
        spectrum,
        appsinks,
    })
}

/// source → … → encoder → payloader → rtpbin.send_rtp_sink_N; returns the encoder and,
/// for audio, the mute `volume`.
fn build_send_chain(
    parts: &mut Parts<'_>,
    spec: &StreamSpec,
    elements: &CodecElements,
    echo_probe: Option<&gst::Element>,
    counters: &Arc<Counters>,
    n: u32,
) -> Result<(gst::Element, Option<gst::Element>), MediaError> {
    let ctx = parts.ctx;
    let config = ctx.config;
    let source = source_element(config, spec.kind)?;
    parts.keep(&source)?;
    let mut chain = vec![source];
    let mut volume = None;
    match spec.kind {
        MediaKind::Audio => {
            // audiotestsrc makes 48 kHz mono itself; a microphone may need converting.
            if !matches!(config.source, Source::Test { .. }) {
                chain.push(parts.make("audioconvert", "audio capture")?);
                chain.push(parts.make("audioresample", "audio capture")?);
            }
            chain.push(
                parts.capsfilter(
                    gst::Caps::builder("audio/x-raw")
                        .field("rate", 48_000i32)
                        .field("channels", 1i32)
                        .build(),
                )?,
            );
            if let Some(probe) = echo_probe {
                let dsp = parts.make("webrtcdsp", "echo cancellation")?;
                set(&dsp, "probe", probe.name().as_str());
                // The playback delay through PipeWire/Pulse is unknown; let it adapt.
                set(&dsp, "delay-agnostic", true);
                chain.push(dsp);
                chain.push(parts.make("audioconvert", "audio capture")?);
            }
            let v = parts.make("volume", "muting")?;
            set(&v, "mute", ctx.muted);
            chain.push(v.clone());
            volume = Some(v);
        }
        MediaKind::Video => {
            let (width, height) = config.video_size;
            chain.push(parts.make("videoconvert", "video capture")?);
            chain.push(parts.make("videoscale", "video capture")?);
            chain.push(parts.make("videorate", "video capture")?);
            chain.push(
                parts.capsfilter(
                    gst::Caps::builder("video/x-raw")
                        .field("format", "I420")
                        .field("width", width as i32)
                        .field("height", height as i32)
                        .field(
                            "framerate",
                            gst::Fraction::new(config.framerate.max(1) as i32, 1),
                        )
                        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                        .build(),
                )?,
            );
            // A slow encoder drops old frames instead of delaying new ones.
            let queue = parts.make("queue", "video capture")?;
            set(&queue, "max-size-buffers", 2u32);
            set(&queue, "max-size-bytes", 0u32);
            set(&queue, "max-size-time", 0u64);
            set_str(&queue, "leaky", "downstream");
            chain.push(queue);
        }
    }
    let encoder = codec::encoder(elements, spec)?;
    parts.keep(&encoder)?;
    chain.push(encoder.clone());
    if let Some(caps) = codec::encoder_output_caps(spec.codec) {
        chain.push(parts.capsfilter(caps)?);
    }
    let pay = codec::payloader(elements, spec)?;
    parts.keep(&pay)?;
    chain.push(pay.clone());
    link_chain(&chain)?;
    let send_sink = parts.rtpbin_pad(&format!("send_rtp_sink_{n}"))?;
    link_pads(&static_pad(&pay, "src")?, &send_sink)?;

    if spec.kind == MediaKind::Video {
        add_camera_probe(&encoder, ctx.camera_enabled.clone())?;
        add_keyframe_counter(&encoder, counters.clone())?;
    }
    Ok((encoder, volume))
}

fn source_element(config: &MediaConfig, kind: MediaKind) -> Result<gst::Element, MediaError> {
    match (&config.source, kind) {
        (Source::Test { audio_freq, .. }, MediaKind::Audio) => {
            let src = make("audiotestsrc", "the test tone")?;
            set_str(&src, "wave", "sine");
            set(&src, "freq", *audio_freq);
            set(&src, "volume", 0.5f64);
            set(&src, "is-live", true);
            // 20 ms at 48 kHz: one Opus frame per buffer.
            set(&src, "samplesperbuffer", 960i32);
            Ok(src)
        }
        (Source::Test { video_pattern, .. }, MediaKind::Video) => {
            let src = make("videotestsrc", "the test picture")?;
            set(&src, "is-live", true);
            if !set_str(&src, "pattern", video_pattern) {
                return Err(MediaError::InvalidConfig(format!(
                    "unknown videotestsrc pattern {video_pattern:?}"
                )));
            }
            Ok(src)
        }
        (Source::Devices { microphone, .. }, MediaKind::Audio) => {
            capture_element(kind, microphone.as_deref())
        }
        (Source::Devices { camera, .. }, MediaKind::Video) => {
            capture_element(kind, camera.as_deref())
        }
    }
}

/// With the camera off, every frame reaching the encoder is painted black: the peer sees
/// black instead of a frozen picture, and RTP keeps flowing without renegotiation.
fn add_camera_probe(encoder: &gst::Element, enabled: Arc<AtomicBool>) -> Result<(), MediaError> {
    let pad = static_pad(encoder, "sink")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if enabled.load(Ordering::Relaxed) {
            return gst::PadProbeReturn::Ok;
        }
        let Some(video_info) = pad
            .current_caps()
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            paint_black(buffer.make_mut(), &video_info);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn paint_black(buffer: &mut gst::BufferRef, info: &gst_video::VideoInfo) {
    if info.format() != gst_video::VideoFormat::I420 {
        return;
    }
    let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info) else {
        return;
    };
    // Limited-range black: Y 16, U and V 128.
    for (plane, value) in [(0, 16u8), (1, 128), (2, 128)] {
        if let Ok(data) = frame.plane_data_mut(plane) {
            data.fill(value);
        }
    }
}

/// Stamps the first buffer leaving the decoder (see `StreamStats::first_decoded_at`),
/// then removes itself.
fn add_first_decoded_probe(
    decoder: &gst::Element,
    counters: Arc<Counters>,
) -> Result<(), MediaError> {
    let pad = static_pad(decoder, "src")?;
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, _| {
            counters.mark_decoded();
            gst::PadProbeReturn::Remove
        },
    );
    Ok(())
}

fn add_keyframe_counter(encoder: &gst::Element, counters: Arc<Counters>) -> Result<(), MediaError> {
    let pad = static_pad(encoder, "src")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                add(&counters.keyframes_sent, 1);
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// An appsink handing every RTP (or RTCP) packet rtpbin sends to `outgoing`.
fn packet_appsink(
    counters: Arc<Counters>,
    outgoing: SharedPacketCallback,
    rtcp: bool,
) -> gst_app::AppSink {
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .async_(false)
        .drop(false)
        .build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buffer.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if rtcp {
                    add(&counters.rtcp_sent, 1);
                } else {
                    add(&counters.packets_sent, 1);
                    add(&counters.bytes_sent, map.len() as u64);
                }
                outgoing(map.as_slice());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    sink
}

fn video_callbacks(
    id: StreamId,
    counters: Arc<Counters>,
    frames: FrameSlot,
) -> gst_app::AppSinkCallbacks {
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
            let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            add(&counters.frames_decoded, 1);
            counters.width.store(info.width(), Ordering::Relaxed);
            counters.height.store(info.height(), Ordering::Relaxed);
            let callback = frames.read().ok().and_then(|slot| slot.clone());
            if let Some(callback) = callback {
                // Map as a video frame: a VideoMeta may give other strides than `info`.
                let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let (Ok(data), Some(&stride)) = (frame.plane_data(0), frame.plane_stride().first())
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let stride = usize::try_from(stride).unwrap_or(0);
                let len = (stride * info.height() as usize).min(data.len());
                callback(VideoFrame {
                    stream: id,
                    width: info.width(),
                    height: info.height(),
                    stride,
                    data: data[..len].to_vec(),
                });
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

/// An appsrc for incoming packets: live, timestamped on arrival for the jitterbuffer,
/// dropping new packets rather than growing when the pipeline stalls.
fn incoming_appsrc(caps: gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .caps(&caps)
        .is_live(true)
        .format(gst::Format::Time)
        .do_timestamp(true)
        .max_bytes(1 << 20)
        .leaky_type(gst_app::AppLeakyType::Downstream)
        .build()
}
