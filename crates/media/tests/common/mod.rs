//! Two in-process calls wired back to back: A's outgoing packets are B's incoming ones
//! and vice versa, with no network and no SRTP in between.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use natter_media::{
    CallMedia, MediaConfig, MediaEvent, PacketCallback, Source, StreamId, StreamSpec, VideoFrame,
};

/// Real pipelines on a 2-core machine: one call pair at a time keeps timing honest.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "natter_media=info".into()),
        )
        .with_test_writer()
        .try_init();
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn test_config(freq: f64) -> MediaConfig {
    MediaConfig {
        source: Source::Test {
            audio_freq: freq,
            video_pattern: "smpte".into(),
        },
        play_audio: false,
        echo_cancellation: false,
        video_size: (640, 480),
        framerate: 30,
        analyse_audio: true,
    }
}

/// One direction of one stream: where packets go, and which payload types passed by.
#[derive(Default)]
pub struct Wire {
    peer: OnceLock<(Weak<CallMedia>, StreamId)>,
    pub payload_types: Mutex<BTreeSet<u8>>,
    /// Scrambles the payload of every n-th RTP packet (0: none), headers intact.
    pub corrupt_every: AtomicU64,
    rtp_packets: AtomicU64,
}

impl Wire {
    fn outgoing(self: &Arc<Self>) -> PacketCallback {
        let wire = self.clone();
        Box::new(move |packet| {
            let mut scrambled = None;
            if packet.len() > 1 && !(192..=223).contains(&packet[1]) {
                if let Ok(mut pts) = wire.payload_types.lock() {
                    pts.insert(packet[1] & 0x7f);
                }
                let n = wire.rtp_packets.fetch_add(1, Ordering::Relaxed);
                let every = wire.corrupt_every.load(Ordering::Relaxed);
                if every > 0 && n.is_multiple_of(every) && packet.len() > 12 {
                    let mut p = packet.to_vec();
                    let mut noise = Noise::new(n);
                    for b in &mut p[12..] {
                        *b ^= noise.next() as u8;
                    }
                    scrambled = Some(p);
                }
            }
            if let Some((peer, id)) = wire.peer.get() {
                if let Some(peer) = peer.upgrade() {
                    peer.push_incoming(*id, scrambled.as_deref().unwrap_or(packet));
                }
            }
        })
    }
}

/// What one side saw of the other's video.
#[derive(Default)]
pub struct Screen {
    pub last: Mutex<Option<VideoFrame>>,
}

impl Screen {
    /// Mean of R, G and B over the last frame.
    pub fn brightness(&self) -> Option<f64> {
        let last = self.last.lock().ok()?;
        let frame = last.as_ref()?;
        let mut sum = 0u64;
        let mut n = 0u64;
        for row in frame.data.chunks(frame.stride).take(frame.height as usize) {
            for px in row[..(frame.width as usize * 4).min(row.len())].chunks_exact(4) {
                sum += u64::from(px[0]) + u64::from(px[1]) + u64::from(px[2]);
                n += 3;
            }
        }
        (n > 0).then(|| sum as f64 / n as f64)
    }
}

pub struct Side {
    pub media: Arc<CallMedia>,
    pub ids: Vec<StreamId>,
    /// Outgoing wires, one per stream.
    pub wires: Vec<Arc<Wire>>,
    pub screen: Arc<Screen>,
    pub errors: Arc<Mutex<Vec<MediaEvent>>>,
}

impl Side {
    pub fn stats(&self, stream: usize) -> natter_media::StreamStats {
        self.media.stats(self.ids[stream])
    }
}

pub struct Call {
    pub a: Side,
    pub b: Side,
}

impl Call {
    /// Builds both sides with `specs[i] = (A's spec, B's spec)` and wires them together.
    pub fn new(a: MediaConfig, b: MediaConfig, specs: &[(StreamSpec, StreamSpec)]) -> Call {
        let a = side(a);
        let b = side(b);
        let mut a = a;
        let mut b = b;
        for (spec_a, spec_b) in specs {
            let a_to_b = Arc::new(Wire::default());
            let b_to_a = Arc::new(Wire::default());
            let a_id = a
                .media
                .add_stream(spec_a.clone(), a_to_b.outgoing())
                .expect("add stream to A");
            let b_id = b
                .media
                .add_stream(spec_b.clone(), b_to_a.outgoing())
                .expect("add stream to B");
            let _ = a_to_b.peer.set((Arc::downgrade(&b.media), b_id));
            let _ = b_to_a.peer.set((Arc::downgrade(&a.media), a_id));
            a.ids.push(a_id);
            b.ids.push(b_id);
            a.wires.push(a_to_b);
            b.wires.push(b_to_a);
        }
        Call { a, b }
    }

    pub fn start(&self) {
        self.a.media.start().expect("start A");
        self.b.media.start().expect("start B");
    }

    pub fn assert_no_errors(&self) {
        for side in [&self.a, &self.b] {
            let errors = side.errors.lock().map(|e| e.clone()).unwrap_or_default();
            let errors: Vec<_> = errors
                .into_iter()
                .filter(|e| matches!(e, MediaEvent::Error { .. }))
                .collect();
            assert!(errors.is_empty(), "pipeline errors: {errors:?}");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.a.media.stop();
        self.b.media.stop();
    }
}

fn side(config: MediaConfig) -> Side {
    let media = Arc::new(CallMedia::new(config).expect("create call media"));
    let screen = Arc::new(Screen::default());
    let s = screen.clone();
    media.on_video_frame(Box::new(move |frame| {
        if let Ok(mut last) = s.last.lock() {
            *last = Some(frame);
        }
    }));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    media.on_event(Box::new(move |event| {
        if let Ok(mut errors) = e.lock() {
            errors.push(event);
        }
    }));
    Side {
        media,
        ids: Vec::new(),
        wires: Vec::new(),
        screen,
        errors,
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples `cond` every 100 ms for `duration`; true if it held every time.
pub fn holds_for(duration: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if !cond() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

pub fn hears(side: &Side, stream: usize, freq: f64) -> bool {
    let s = side.stats(stream);
    s.peak_frequency_hz
        .is_some_and(|f| (f - freq).abs() <= 20.0)
        && s.rms_db.is_some_and(|r| r > -40.0)
}

/// A tiny deterministic generator for garbage (xorshift64*).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
