//! Composite operators beyond the exact integer Porter-Duff path of `ops.rs`: the X Render
//! DISJOINT_* (0x10..=0x1b) and CONJOINT_* (0x20..=0x2b) operators, the W3C "Compositing and
//! Blending Level 1" blend modes MULTIPLY..EXCLUSION (0x30..=0x3a) and HSL_HUE..HSL_LUMINOSITY
//! (0x3b..=0x3e), and component alpha (a per-channel mask) for every operator.
//!
//! Definitions (pixels are premultiplied; channels are taken as values in [0, 1]):
//! - **Porter-Duff family** (X Render protocol, section 8 "Compositing Operators"): every
//!   channel, alpha included, is `C = Ca·Fa + Cb·Fb`, limited to [0, 1], with `Fa`/`Fb` from the
//!   protocol's table. Operators 0x?0..=0x?b of the three families share one shape (CLEAR, SRC,
//!   DST, OVER, OVER_REVERSE, IN, IN_REVERSE, OUT, OUT_REVERSE, ATOP, ATOP_REVERSE, XOR), built
//!   from four terms that differ per family (`Aa` = source alpha, `Ab` = destination alpha):
//!
//!   | term  | Porter-Duff | disjoint                | conjoint           |
//!   |-------|-------------|-------------------------|--------------------|
//!   | out_a | 1 − Ab      | min(1, (1 − Ab)/Aa)     | max(1 − Ab/Aa, 0)  |
//!   | in_a  | Ab          | max(1 − (1 − Ab)/Aa, 0) | min(1, Ab/Aa)      |
//!   | out_b | 1 − Aa      | min(1, (1 − Aa)/Ab)     | max(1 − Aa/Ab, 0)  |
//!   | in_b  | Aa          | max(1 − (1 − Aa)/Ab, 0) | min(1, Aa/Ab)      |
//!
//!   A quotient whose divisor is zero is +∞, as the protocol defines.
//! - **Blend modes** (W3C Compositing Level 1, "Blending" and "Compositing"): colour
//!   `co = cs·(1 − αb) + cb·(1 − αs) + αs·αb·B(cb/αb, cs/αs)`, alpha `αo = αs + αb − αs·αb`;
//!   `B` is the spec's separable function per channel, or its non-separable HSL function on the
//!   whole colour (Lum, ClipColor, SetLum, Sat, SetSat). Where αs or αb is 0 the `B` term is 0.
//! - **Component alpha** (X Render): each source channel is multiplied by the matching mask
//!   channel and its alpha is the source alpha times that mask channel; the operator then runs
//!   per channel with that alpha (the alpha channel uses the mask's alpha). The HSL modes have
//!   no per-channel form: with component alpha they leave the destination unchanged, as pixman
//!   does.
//!
//! The math is f32; results are rounded once to 8 bits (within ±1 of the exact formula).
//! Unknown operator values draw as OVER. Nothing here can panic or loop on any input:
//! divisions are guarded and every result is clamped to 0..=255 (NaN becomes 0).

/// The four channels of a pixel, in [0, 1]: index 0 blue, 1 green, 2 red, 3 alpha.
type Px = [f32; 4];

const ALPHA: usize = 3;

fn unpack(p: u32) -> Px {
    let ch = |shift: u32| ((p >> shift) & 0xFF) as f32 / 255.0;
    [ch(0), ch(8), ch(16), ch(24)]
}

fn pack(c: Px) -> u32 {
    let mut out = 0u32;
    for (i, v) in c.iter().enumerate() {
        // `as u32` saturates and maps NaN to 0.
        let b = (v * 255.0).round().clamp(0.0, 255.0) as u32;
        out |= b << (8 * i);
    }
    out
}

/// True for the operators this module draws (the rest are the integer Porter-Duff path).
pub(crate) fn is_extended(op: u8) -> bool {
    matches!(op, 0x10..=0x1b | 0x20..=0x2b | 0x30..=0x3e)
}

/// `op` with unified alpha: premultiplied `s` onto premultiplied `d`.
pub(crate) fn composite(op: u8, s: u32, d: u32) -> u32 {
    let s = unpack(s);
    let sa = [s[ALPHA]; 4];
    pack(apply(op, s, sa, unpack(d)))
}

/// `op` with component alpha: premultiplied `s`, per-channel mask `m`, premultiplied `d`.
pub(crate) fn composite_ca(op: u8, s: u32, m: u32, d: u32) -> u32 {
    if matches!(op, 0x3b..=0x3e) {
        return d;
    }
    let (s, m) = (unpack(s), unpack(m));
    let sa = s[ALPHA];
    let src = [s[0] * m[0], s[1] * m[1], s[2] * m[2], s[3] * m[3]];
    let alpha = [sa * m[0], sa * m[1], sa * m[2], sa * m[3]];
    pack(apply(op, src, alpha, unpack(d)))
}

/// `n / d`, +∞ when `d` is zero (X Render's rule; also turns 0/0 into +∞, not NaN).
fn div(n: f32, d: f32) -> f32 {
    if d > 0.0 {
        n / d
    } else {
        f32::INFINITY
    }
}

/// (Fa, Fb) of a Porter-Duff-family operator for source alpha `aa` and destination alpha `ab`,
/// or `None` if `op` is not one.
fn factors(op: u8, aa: f32, ab: f32) -> Option<(f32, f32)> {
    let (out_a, in_a, out_b, in_b) = match op >> 4 {
        0 => (1.0 - ab, ab, 1.0 - aa, aa),
        1 => (
            div(1.0 - ab, aa).min(1.0),
            (1.0 - div(1.0 - ab, aa)).max(0.0),
            div(1.0 - aa, ab).min(1.0),
            (1.0 - div(1.0 - aa, ab)).max(0.0),
        ),
        2 => (
            (1.0 - div(ab, aa)).max(0.0),
            div(ab, aa).min(1.0),
            (1.0 - div(aa, ab)).max(0.0),
            div(aa, ab).min(1.0),
        ),
        _ => return None,
    };
    Some(match (op >> 4, op & 0x0F) {
        (_, 0x0) => (0.0, 0.0),
        (_, 0x1) => (1.0, 0.0),
        (_, 0x2) => (0.0, 1.0),
        (_, 0x3) => (1.0, out_b),
        (_, 0x4) => (out_a, 1.0),
        (_, 0x5) => (in_a, 0.0),
        (_, 0x6) => (0.0, in_b),
        (_, 0x7) => (out_a, 0.0),
        (_, 0x8) => (0.0, out_b),
        (_, 0x9) => (in_a, out_b),
        (_, 0xA) => (out_a, in_b),
        (_, 0xB) => (out_a, out_b),
        // ADD and SATURATE exist only in the plain Porter-Duff family.
        (0, 0xC) => (1.0, 1.0),
        (0, 0xD) => (div(1.0 - ab, aa).min(1.0), 1.0),
        _ => return None,
    })
}

/// Applies `op` to source colour `s` whose channel `i` has alpha `sa[i]`, onto `d`.
fn apply(op: u8, s: Px, sa: Px, d: Px) -> Px {
    let da = d[ALPHA];
    let mut out = [0.0f32; 4];
    if let Some(sep) = separable(op) {
        for i in 0..3 {
            let b = if sa[i] > 0.0 && da > 0.0 {
                sa[i] * da * sep(unit(d[i] / da), unit(s[i] / sa[i]))
            } else {
                0.0
            };
            out[i] = s[i] * (1.0 - da) + d[i] * (1.0 - sa[i]) + b;
        }
        out[ALPHA] = sa[ALPHA] + da - sa[ALPHA] * da;
        return out;
    }
    if matches!(op, 0x3b..=0x3e) {
        // Non-separable: unified alpha only (component alpha returns earlier).
        let a = sa[ALPHA];
        let b = if a > 0.0 && da > 0.0 {
            let cs = [s[0] / a, s[1] / a, s[2] / a].map(unit);
            let cb = [d[0] / da, d[1] / da, d[2] / da].map(unit);
            let r = match op {
                0x3b => set_lum(set_sat(cs, sat(cb)), lum(cb)),
                0x3c => set_lum(set_sat(cb, sat(cs)), lum(cb)),
                0x3d => set_lum(cs, lum(cb)),
                _ => set_lum(cb, lum(cs)),
            };
            r.map(|v| a * da * v)
        } else {
            [0.0; 3]
        };
        for i in 0..3 {
            out[i] = s[i] * (1.0 - da) + d[i] * (1.0 - a) + b[i];
        }
        out[ALPHA] = a + da - a * da;
        return out;
    }
    for i in 0..4 {
        let (fa, fb) = factors(op, sa[i], da)
            .or_else(|| factors(0x03, sa[i], da))
            .unwrap_or((1.0, 0.0));
        out[i] = s[i] * fa + d[i] * fb;
    }
    out
}

/// Limits an un-premultiplied channel to [0, 1] (a colour above its alpha is not premultiplied).
fn unit(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// The separable blend function `B(cb, cs)` of `op`, if it is one.
fn separable(op: u8) -> Option<fn(f32, f32) -> f32> {
    Some(match op {
        0x30 => |cb, cs| cb * cs,
        0x31 => screen,
        0x32 => |cb, cs| hard_light(cs, cb),
        0x33 => |cb: f32, cs: f32| cb.min(cs),
        0x34 => |cb: f32, cs: f32| cb.max(cs),
        0x35 => |cb: f32, cs: f32| {
            if cb == 0.0 {
                0.0
            } else if cs >= 1.0 {
                1.0
            } else {
                (cb / (1.0 - cs)).min(1.0)
            }
        },
        0x36 => |cb: f32, cs: f32| {
            if cb >= 1.0 {
                1.0
            } else if cs == 0.0 {
                0.0
            } else {
                1.0 - ((1.0 - cb) / cs).min(1.0)
            }
        },
        0x37 => hard_light,
        0x38 => |cb: f32, cs: f32| {
            if cs <= 0.5 {
                cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb)
            } else {
                let dcb = if cb <= 0.25 {
                    ((16.0 * cb - 12.0) * cb + 4.0) * cb
                } else {
                    cb.sqrt()
                };
                cb + (2.0 * cs - 1.0) * (dcb - cb)
            }
        },
        0x39 => |cb: f32, cs: f32| (cb - cs).abs(),
        0x3a => |cb, cs| cb + cs - 2.0 * cb * cs,
        _ => return None,
    })
}

fn screen(cb: f32, cs: f32) -> f32 {
    cb + cs - cb * cs
}

fn hard_light(cb: f32, cs: f32) -> f32 {
    if cs <= 0.5 {
        cb * 2.0 * cs
    } else {
        screen(cb, 2.0 * cs - 1.0)
    }
}

/// The spec's Lum: 0.3 red (index 2) + 0.59 green (index 1) + 0.11 blue (index 0).
fn lum(c: [f32; 3]) -> f32 {
    0.3 * c[2] + 0.59 * c[1] + 0.11 * c[0]
}

fn clip_color(c: [f32; 3]) -> [f32; 3] {
    let l = lum(c);
    let n = c[0].min(c[1]).min(c[2]);
    let x = c[0].max(c[1]).max(c[2]);
    let mut c = c;
    if n < 0.0 && l - n > 0.0 {
        c = c.map(|v| l + (v - l) * l / (l - n));
    }
    if x > 1.0 && x - l > 0.0 {
        c = c.map(|v| l + (v - l) * (1.0 - l) / (x - l));
    }
    c
}

fn set_lum(c: [f32; 3], l: f32) -> [f32; 3] {
    let d = l - lum(c);
    clip_color(c.map(|v| v + d))
}

fn sat(c: [f32; 3]) -> f32 {
    c[0].max(c[1]).max(c[2]) - c[0].min(c[1]).min(c[2])
}

fn set_sat(c: [f32; 3], s: f32) -> [f32; 3] {
    // Indices of the max, mid and min channels (ties keep any order: the result is the same).
    let mut idx = [0usize, 1, 2];
    idx.sort_by(|&a, &b| c[b].total_cmp(&c[a]));
    let (max, mid, min) = (idx[0], idx[1], idx[2]);
    let mut out = [0.0f32; 3];
    let range = c[max] - c[min];
    if range > 0.0 {
        out[mid] = (c[mid] - c[min]) * s / range;
        out[max] = s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_gives_a_pixel_without_panicking() {
        // Non-premultiplied values (colour above alpha) and zero alphas included.
        let vals = [0u32, 1, 0x7F, 0x80, 0xFE, 0xFF];
        for op in 0..=255u8 {
            for &a in &vals {
                for &c in &vals {
                    let p = a << 24 | c << 16 | (255 - c) << 8 | (c / 2);
                    let q = (255 - a) << 24 | c << 8 | 0x40;
                    let _ = composite(op, p, q);
                    let _ = composite_ca(op, p, q, p);
                }
            }
        }
    }

    #[test]
    fn disjoint_over_reverse_is_saturate() {
        for (s, d) in [(0x8040_2010u32, 0xC0A0_8060u32), (0xFF00_FF00, 0x1010_1010)] {
            assert_eq!(composite(0x14, s, d), composite(0x0d, s, d));
        }
    }
}
