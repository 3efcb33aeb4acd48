//! XEP-0392 consistent colours: the same JID gets the same colour here as in
//! Conversations, Dino or Gajim (hue from SHA-1, then HSLuv with saturation 100 and
//! lightness 50).

use sha1::{Digest, Sha1};

/// XEP-0392 §5.1: the hue angle in degrees for `id`.
pub fn hue(id: &str) -> f64 {
    let digest = Sha1::digest(id.as_bytes());
    let v = u16::from_le_bytes([digest[0], digest[1]]);
    f64::from(v) / 65536.0 * 360.0
}

/// The colour of `id` as sRGB components in 0..=1.
pub fn rgb(id: &str) -> (f64, f64, f64) {
    hsluv_to_rgb(hue(id), 100.0, 50.0)
}

// HSLuv (https://www.hsluv.org/math/), written from its published definition.

const M: [[f64; 3]; 3] = [
    [3.240969941904521, -1.537383177570093, -0.498610760293],
    [-0.96924363628087, 1.87596750150772, 0.041555057407175],
    [0.055630079696993, -0.20397695888897, 1.056971514242878],
];
const REF_U: f64 = 0.19783000664283;
const REF_V: f64 = 0.46831999493879;
const KAPPA: f64 = 903.2962962;
const EPSILON: f64 = 0.0088564516;

/// The six lines bounding the sRGB gamut in the chroma plane at lightness `l`.
fn bounds(l: f64) -> Vec<(f64, f64)> {
    let sub1 = (l + 16.0).powi(3) / 1_560_896.0;
    let sub2 = if sub1 > EPSILON { sub1 } else { l / KAPPA };
    let mut lines = Vec::with_capacity(6);
    for [m1, m2, m3] in M {
        for t in [0.0, 1.0] {
            let top1 = (284_517.0 * m1 - 94_839.0 * m3) * sub2;
            let top2 =
                (838_422.0 * m3 + 769_860.0 * m2 + 731_718.0 * m1) * l * sub2 - 769_860.0 * t * l;
            let bottom = (632_260.0 * m3 - 126_452.0 * m2) * sub2 + 126_452.0 * t;
            lines.push((top1 / bottom, top2 / bottom));
        }
    }
    lines
}

fn max_chroma(l: f64, h: f64) -> f64 {
    let theta = h.to_radians();
    bounds(l)
        .into_iter()
        .map(|(slope, intercept)| intercept / (theta.sin() - slope * theta.cos()))
        .filter(|len| *len >= 0.0)
        .fold(f64::MAX, f64::min)
}

fn from_linear(c: f64) -> f64 {
    if c <= 0.0031308 {
        12.92 * c
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

pub fn hsluv_to_rgb(h: f64, s: f64, l: f64) -> (f64, f64, f64) {
    if l > 99.999_999_9 {
        return (1.0, 1.0, 1.0);
    }
    if l < 1e-8 {
        return (0.0, 0.0, 0.0);
    }
    // HSLuv → LCh(uv) → Luv → XYZ → linear RGB → sRGB.
    let c = max_chroma(l, h) / 100.0 * s;
    let (u, v) = (c * h.to_radians().cos(), c * h.to_radians().sin());
    let var_u = u / (13.0 * l) + REF_U;
    let var_v = v / (13.0 * l) + REF_V;
    let y = if l <= 8.0 {
        l / KAPPA
    } else {
        ((l + 16.0) / 116.0).powi(3)
    };
    let x = -(9.0 * y * var_u) / ((var_u - 4.0) * var_v - var_u * var_v);
    let z = (9.0 * y - 15.0 * var_v * y - var_v * x) / (3.0 * var_v);
    let [r, g, b] = M.map(|[a, b, c]| from_linear(a * x + b * y + c * z).clamp(0.0, 1.0));
    (r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The XEP's test vectors (§6), to three decimals.
    #[test]
    fn xep_0392_test_vectors() {
        let cases = [
            ("Romeo", 327.255249, (0.865, 0.000, 0.686)),
            ("juliet@capulet.lit", 209.410400, (0.000, 0.515, 0.573)),
            ("😺", 331.199341, (0.872, 0.000, 0.659)),
            ("council", 359.994507, (0.918, 0.000, 0.394)),
        ];
        for (id, angle, (r, g, b)) in cases {
            assert!((hue(id) - angle).abs() < 1e-4, "{id}: {}", hue(id));
            let (rr, gg, bb) = rgb(id);
            for (got, want) in [(rr, r), (gg, g), (bb, b)] {
                assert!((got - want).abs() < 0.001, "{id}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn extremes_do_not_panic_or_leave_the_gamut() {
        for h in [0.0, 90.0, 180.0, 270.0, 359.99] {
            for l in [0.0, 1.0, 50.0, 99.0, 100.0] {
                let (r, g, b) = hsluv_to_rgb(h, 100.0, l);
                for c in [r, g, b] {
                    assert!((0.0..=1.0).contains(&c), "{h} {l}: {c}");
                }
            }
        }
    }
}
