//! Per-stream counters, and reading the `level` and `spectrum` messages of the decoded
//! remote audio.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gst::glib;

/// A snapshot of one stream's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    /// RTP packets accepted by `push_incoming`.
    pub packets_received: u64,
    pub bytes_received: u64,
    pub rtcp_received: u64,
    /// Packets `push_incoming` dropped (malformed, or not the negotiated payload type).
    pub packets_rejected: u64,
    /// RTP packets handed to the `outgoing` callback.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub rtcp_sent: u64,
    /// Audio: the strongest frequency of the decoded remote audio, from `spectrum`;
    /// `None` in silence or when no audio was decoded in the last half second.
    pub peak_frequency_hz: Option<f64>,
    /// Audio: the loudest channel's RMS of the decoded remote audio, from `level`;
    /// `None` when no audio was decoded in the last half second.
    pub rms_db: Option<f64>,
    /// Video: remote frames decoded and converted to RGBA.
    pub frames_decoded: u64,
    /// Video: size of the last decoded remote frame.
    pub width: u32,
    pub height: u32,
    /// Video: key frames our encoder produced.
    pub keyframes_sent: u64,
    /// When the first decoded remote buffer (audio samples or a video frame) left this
    /// stream's decoder, on the monotonic clock; `None` until then. Set once, by a pad
    /// probe on the decoder's source pad, so it is as precise as the streaming thread
    /// (not rounded to the `level`/`spectrum` interval). Compare it with an `Instant`
    /// taken elsewhere in the process, e.g. when the call was accepted.
    pub first_decoded_at: Option<Instant>,
}

/// Lock-free counters shared with the streaming threads.
#[derive(Debug)]
pub(crate) struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub rtcp_received: AtomicU64,
    pub packets_rejected: AtomicU64,
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub rtcp_sent: AtomicU64,
    peak_frequency_hz: AtomicF64,
    rms_db: AtomicF64,
    pub frames_decoded: AtomicU64,
    pub width: AtomicU32,
    pub height: AtomicU32,
    pub keyframes_sent: AtomicU64,
    first_decoded_at: OnceLock<Instant>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            rtcp_received: AtomicU64::new(0),
            packets_rejected: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            rtcp_sent: AtomicU64::new(0),
            peak_frequency_hz: AtomicF64::none(),
            rms_db: AtomicF64::none(),
            frames_decoded: AtomicU64::new(0),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            keyframes_sent: AtomicU64::new(0),
            first_decoded_at: OnceLock::new(),
        }
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> StreamStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamStats {
            packets_received: get(&self.packets_received),
            bytes_received: get(&self.bytes_received),
            rtcp_received: get(&self.rtcp_received),
            packets_rejected: get(&self.packets_rejected),
            packets_sent: get(&self.packets_sent),
            bytes_sent: get(&self.bytes_sent),
            rtcp_sent: get(&self.rtcp_sent),
            peak_frequency_hz: self.peak_frequency_hz.get_fresh(),
            rms_db: self.rms_db.get_fresh(),
            frames_decoded: get(&self.frames_decoded),
            width: self.width.load(Ordering::Relaxed),
            height: self.height.load(Ordering::Relaxed),
            keyframes_sent: get(&self.keyframes_sent),
            first_decoded_at: self.first_decoded_at.get().copied(),
        }
    }

    /// Records that the decoder produced its first buffer (only the first call counts).
    pub fn mark_decoded(&self) {
        let _ = self.first_decoded_at.set(Instant::now());
    }

    /// Takes a `level` element message: the loudest channel's RMS.
    pub fn update_level(&self, s: &gst::StructureRef) {
        let Ok(rms) = s.get::<glib::ValueArray>("rms") else {
            return;
        };
        let loudest = rms
            .iter()
            .filter_map(|v| v.get::<f64>().ok())
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            });
        self.rms_db.set(loudest);
    }

    /// Takes a `spectrum` element message (single channel) for audio at `rate` Hz.
    pub fn update_spectrum(&self, s: &gst::StructureRef, rate: u32, threshold_db: f32) {
        let Ok(list) = s.get::<gst::List>("magnitude") else {
            return;
        };
        let magnitudes: Vec<f32> = list.iter().filter_map(|v| v.get::<f32>().ok()).collect();
        self.peak_frequency_hz
            .set(peak_frequency(&magnitudes, rate, threshold_db));
    }
}

/// The frequency of the strongest band, refined by a parabola through its neighbours;
/// `None` when nothing rises above the spectrum's threshold (silence).
pub(crate) fn peak_frequency(magnitudes: &[f32], rate: u32, threshold_db: f32) -> Option<f64> {
    let (i, &peak) = magnitudes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    if peak <= threshold_db + 1.0 {
        return None;
    }
    // spectrum runs an FFT of 2 * (bands - 1) points and reports bins 0..bands, so band i
    // is centred on i * rate / (2 * (bands - 1)).
    let band_width = f64::from(rate) / 2.0 / (magnitudes.len().max(2) - 1) as f64;
    let offset = match (i.checked_sub(1), magnitudes.get(i + 1)) {
        (Some(l), Some(&r)) => {
            let (a, b, c) = (f64::from(magnitudes[l]), f64::from(peak), f64::from(r));
            let denominator = a - 2.0 * b + c;
            if denominator.abs() > f64::EPSILON {
                (0.5 * (a - c) / denominator).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    Some((i as f64 + offset) * band_width)
}

/// Audio analysis older than this describes a stream that stopped.
const FRESH_FOR: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// An `Option<f64>` in an atomic, NaN standing for `None`, with the time it was set.
#[derive(Debug)]
struct AtomicF64 {
    bits: AtomicU64,
    set_at_ms: AtomicU64,
}

impl AtomicF64 {
    fn none() -> Self {
        AtomicF64 {
            bits: AtomicU64::new(f64::NAN.to_bits()),
            set_at_ms: AtomicU64::new(0),
        }
    }

    fn set(&self, value: Option<f64>) {
        let v = value.filter(|v| !v.is_nan()).unwrap_or(f64::NAN);
        self.bits.store(v.to_bits(), Ordering::Relaxed);
        self.set_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn get(&self) -> Option<f64> {
        Some(f64::from_bits(self.bits.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
    }

    fn get_fresh(&self) -> Option<f64> {
        let age = now_ms().saturating_sub(self.set_at_ms.load(Ordering::Relaxed));
        self.get().filter(|_| age <= FRESH_FOR.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(bands: usize, rate: u32, freq: f64) -> Vec<f32> {
        // A peak smeared over neighbouring bands, as a windowed FFT shows it.
        let band_width = f64::from(rate) / 2.0 / (bands - 1) as f64;
        (0..bands)
            .map(|i| {
                let centre = i as f64 * band_width;
                let d = (centre - freq) / band_width;
                (-80.0 + 70.0 * (-d * d).exp()) as f32
            })
            .collect()
    }

    #[test]
    fn peak_is_found_between_bands() {
        for freq in [440.0, 880.0, 1000.0, 3000.0] {
            let peak = peak_frequency(&tone(1024, 48_000, freq), 48_000, -80.0);
            let peak = peak.unwrap_or_default();
            assert!((peak - freq).abs() < 6.0, "{freq} Hz found as {peak} Hz");
        }
    }

    #[test]
    fn silence_has_no_peak() {
        assert_eq!(peak_frequency(&[-80.0; 1024], 48_000, -80.0), None);
        assert_eq!(peak_frequency(&[], 48_000, -80.0), None);
    }

    #[test]
    fn first_decoded_is_kept() {
        let c = Counters::default();
        assert_eq!(c.snapshot().first_decoded_at, None);
        let before = Instant::now();
        c.mark_decoded();
        let first = c.snapshot().first_decoded_at.expect("set");
        assert!(first >= before);
        std::thread::sleep(Duration::from_millis(5));
        c.mark_decoded();
        assert_eq!(c.snapshot().first_decoded_at, Some(first));
    }

    #[test]
    fn optional_floats_round_trip() {
        let a = AtomicF64::none();
        assert_eq!(a.get(), None);
        a.set(Some(-12.5));
        assert_eq!(a.get(), Some(-12.5));
        assert_eq!(a.get_fresh(), Some(-12.5));
        a.set_at_ms.store(0, Ordering::Relaxed);
        std::thread::sleep(FRESH_FOR + Duration::from_millis(10));
        assert_eq!(a.get_fresh(), None);
        a.set(Some(f64::NAN));
        assert_eq!(a.get(), None);
    }
}
