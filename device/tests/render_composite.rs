//! Pixel tests for every COMPOSITE operator, through the public API (guest memory → decode →
//! render → snapshot). Each expectation is computed per pixel in f64 by formulas written here
//! from the specifications, independently of the renderer:
//! - X Render protocol, section 8 "Compositing Operators": `C = Ca·Fa + Cb·Fb` per channel with
//!   the Fa/Fb table (Porter-Duff, Disjoint*, Conjoint*); a quotient with divisor 0 is +∞;
//!   component alpha multiplies the source and its alpha by each mask channel.
//! - W3C Compositing and Blending Level 1: `co = cs·(1 − αb) + cb·(1 − αs) + αs·αb·B(cb/αb,
//!   cs/αs)`, `αo = αs + αb − αs·αb`, with the separable `B` functions and the non-separable
//!   HSL functions (Lum, ClipColor, SetLum, Sat, SetSat).
//!
//! Tolerance: ±1 per 8-bit channel against the f64 value rounded to the nearest integer. The
//! renderer computes in f32 (or, for 0x00..=0x0d without component alpha, in exact 8-bit
//! integer steps, each rounded) and stores 8 bits: a value within rounding error of k + 0.5 may
//! land on either side, and the integer path rounds a product twice (`s·Fa` and `d·Fb`), so a
//! correct renderer can be 1 away from the rounded exact value but never 2.

use qxl_device::abi::cmd::*;
use qxl_device::decode::build::Builder;
use qxl_device::decode::testmem::VecMemory;
use qxl_device::decode::*;
use qxl_device::mem::{GuestMemory, QxlPhys};
use qxl_device::render::Renderer;
use zerocopy::IntoBytes;

/// The grid: source pixel `SRC[x]` over destination pixel `DST[y]`, every pair once.
const N: u32 = 20;

/// Premultiplies straight colour (r, g, b) by alpha `a`.
fn pm(a: u32, r: u32, g: u32, b: u32) -> u32 {
    let m = |c: u32| ((c * a) as f64 / 255.0).round() as u32;
    a << 24 | m(r) << 16 | m(g) << 8 | m(b)
}

/// A small deterministic generator (xorshift32) for extra pixels.
fn rng(seed: u32) -> impl FnMut() -> u32 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }
}

/// Pixels with alpha 0, 1, mid values, 254 and 255 and colours 0, 255 and mid values; the last
/// entries are pseudo-random.
fn pixels(fixed: &[(u32, u32, u32, u32)], seed: u32) -> Vec<u32> {
    let mut v: Vec<u32> = fixed.iter().map(|&(a, r, g, b)| pm(a, r, g, b)).collect();
    let mut next = rng(seed);
    while v.len() < N as usize {
        let x = next();
        let a = [0, 255, x >> 24][(x % 3) as usize];
        v.push(pm(a, (x >> 16) & 255, (x >> 8) & 255, x & 255));
    }
    v
}

fn sources() -> Vec<u32> {
    pixels(
        &[
            (0, 0, 0, 0),
            (255, 0, 0, 0),
            (255, 255, 255, 255),
            (255, 255, 0, 0),
            (255, 0, 255, 0),
            (255, 0, 0, 255),
            (255, 128, 128, 128),
            (128, 255, 128, 0),
            (1, 255, 255, 255),
            (64, 10, 200, 90),
            (200, 255, 0, 255),
            (254, 30, 60, 250),
            (77, 0, 0, 255),
            (128, 128, 128, 128),
            (180, 250, 240, 5),
            (255, 200, 100, 50),
        ],
        0x1234_5678,
    )
}

fn dests() -> Vec<u32> {
    pixels(
        &[
            (0, 0, 0, 0),
            (255, 0, 0, 0),
            (255, 255, 255, 255),
            (255, 0, 128, 255),
            (255, 255, 255, 0),
            (128, 128, 128, 128),
            (1, 255, 0, 0),
            (254, 254, 1, 127),
            (100, 0, 255, 0),
            (200, 64, 32, 16),
            (255, 60, 200, 180),
            (30, 255, 255, 255),
            (160, 10, 10, 250),
            (255, 127, 127, 127),
            (220, 255, 180, 90),
            (90, 40, 0, 200),
        ],
        0x9E37_79B9,
    )
}

/// Mask pixels for component alpha: channels independently 0, 255 or mid values.
fn masks() -> Vec<u32> {
    let mut v = vec![
        0u32,
        0xFFFF_FFFF,
        0xFF00_FF00,
        0x00FF_00FF,
        0x80C0_4020,
        0xFF80_8080,
    ];
    let mut next = rng(0xC0FF_EE11);
    while v.len() < 23 {
        v.push(next());
    }
    v
}

fn mask_at(m: &[u32], x: u32, y: u32) -> u32 {
    m[((x * 7 + y * 3) as usize) % m.len()]
}

struct Rig {
    mem: VecMemory,
    r: Renderer,
}

/// Surface 0 (`N`×`N`, `format` ARGB32 or xRGB32) holding `DST[y]` in row `y`.
fn rig(format: u32) -> Rig {
    let mem = VecMemory::with_slot(1 << 22);
    let data = mem.alloc(1, (N * N * 4) as usize);
    let d = dests();
    let init: Vec<u8> = (0..N)
        .flat_map(|y| (0..N).map(move |_| y))
        .flat_map(|y| d[y as usize].to_le_bytes())
        .collect();
    mem.write(data, &init).unwrap();
    let mut r = Renderer::new(16, 64 << 20);
    let desc =
        validate_surface(&mem, N, N, (N * 4) as i32, format, data, &Limits::default()).unwrap();
    r.create_surface(0, &desc, true, &mem).unwrap();
    Rig { mem, r }
}

impl Rig {
    /// A top-down premultiplied RGBA bitmap image of `N`×`N` pixels.
    fn rgba_image(&self, px: impl Fn(u32, u32) -> u32) -> QxlPhys {
        let data: Vec<u8> = (0..N)
            .flat_map(|y| (0..N).map(move |x| (x, y)))
            .flat_map(|(x, y)| px(x, y).to_le_bytes())
            .collect();
        Builder::new(&self.mem).bitmap_image(
            bitmap_fmt::RGBA,
            bitmap_flags::TOP_DOWN,
            N,
            N,
            N * 4,
            QxlPhys(0),
            &data,
            0,
        )
    }

    /// COMPOSITE `flags` (operator in bits 0..8) of `SRC[x]` over the whole surface, with an
    /// optional mask image; returns the snapshot.
    fn composite(&mut self, flags: u32, mask: Option<QxlPhys>) -> Vec<u32> {
        let s = sources();
        let src = self.rgba_image(|x, _| s[x as usize]);
        let zero = QxlPoint16 {
            x: 0.into(),
            y: 0.into(),
        };
        let c = QxlComposite {
            flags: flags.into(),
            src: src.0.into(),
            src_transform: 0.into(),
            mask: mask.map_or(0, |m| m.0).into(),
            mask_transform: 0.into(),
            src_origin: zero,
            mask_origin: zero,
        };
        let bbox = Rect::new(0, 0, N as i32, N as i32);
        let a = Builder::new(&self.mem).drawable(
            0,
            draw_type::COMPOSITE,
            bbox,
            QxlPhys(0),
            c.as_bytes(),
        );
        let cmd = decode_display(&self.mem, cmd_type::DRAW, a, &Limits::default()).unwrap();
        self.r.draw(&cmd, &self.mem).unwrap();
        self.r.snapshot(0).unwrap().pixels
    }
}

// ---------------------------------------------------------------------------------------------
// The reference: channels as f64 in [0, 1], order [blue, green, red, alpha].

type Px = [f64; 4];

fn unpack(p: u32) -> Px {
    [0, 8, 16, 24].map(|sh| ((p >> sh) & 255) as f64 / 255.0)
}

/// x / y, +∞ when y is 0 (X Render: "when the divisor is zero, define the quotient to be
/// positive infinity").
fn q(x: f64, y: f64) -> f64 {
    if y == 0.0 {
        f64::INFINITY
    } else {
        x / y
    }
}

/// X Render's (Fa, Fb) for `op`, source alpha `a` (Aa) and destination alpha `b` (Ab), written
/// row by row from the protocol's table; `None` for the blend modes and unknown values.
fn render_factors(op: u8, a: f64, b: f64) -> Option<(f64, f64)> {
    let min1 = |v: f64| v.min(1.0);
    let max0 = |v: f64| v.max(0.0);
    Some(match op {
        0x00 => (0.0, 0.0),                                       // Clear
        0x01 => (1.0, 0.0),                                       // Src
        0x02 => (0.0, 1.0),                                       // Dst
        0x03 => (1.0, 1.0 - a),                                   // Over
        0x04 => (1.0 - b, 1.0),                                   // OverReverse
        0x05 => (b, 0.0),                                         // In
        0x06 => (0.0, a),                                         // InReverse
        0x07 => (1.0 - b, 0.0),                                   // Out
        0x08 => (0.0, 1.0 - a),                                   // OutReverse
        0x09 => (b, 1.0 - a),                                     // Atop
        0x0a => (1.0 - b, a),                                     // AtopReverse
        0x0b => (1.0 - b, 1.0 - a),                               // Xor
        0x0c => (1.0, 1.0),                                       // Add
        0x0d => (min1(q(1.0 - b, a)), 1.0),                       // Saturate
        0x10 => (0.0, 0.0),                                       // DisjointClear
        0x11 => (1.0, 0.0),                                       // DisjointSrc
        0x12 => (0.0, 1.0),                                       // DisjointDst
        0x13 => (1.0, min1(q(1.0 - a, b))),                       // DisjointOver
        0x14 => (min1(q(1.0 - b, a)), 1.0),                       // DisjointOverReverse
        0x15 => (max0(1.0 - q(1.0 - b, a)), 0.0),                 // DisjointIn
        0x16 => (0.0, max0(1.0 - q(1.0 - a, b))),                 // DisjointInReverse
        0x17 => (min1(q(1.0 - b, a)), 0.0),                       // DisjointOut
        0x18 => (0.0, min1(q(1.0 - a, b))),                       // DisjointOutReverse
        0x19 => (max0(1.0 - q(1.0 - b, a)), min1(q(1.0 - a, b))), // DisjointAtop
        0x1a => (min1(q(1.0 - b, a)), max0(1.0 - q(1.0 - a, b))), // DisjointAtopReverse
        0x1b => (min1(q(1.0 - b, a)), min1(q(1.0 - a, b))),       // DisjointXor
        0x20 => (0.0, 0.0),                                       // ConjointClear
        0x21 => (1.0, 0.0),                                       // ConjointSrc
        0x22 => (0.0, 1.0),                                       // ConjointDst
        0x23 => (1.0, max0(1.0 - q(a, b))),                       // ConjointOver
        0x24 => (max0(1.0 - q(b, a)), 1.0),                       // ConjointOverReverse
        0x25 => (min1(q(b, a)), 0.0),                             // ConjointIn
        0x26 => (0.0, min1(q(a, b))),                             // ConjointInReverse
        0x27 => (max0(1.0 - q(b, a)), 0.0),                       // ConjointOut
        0x28 => (0.0, max0(1.0 - q(a, b))),                       // ConjointOutReverse
        0x29 => (min1(q(b, a)), max0(1.0 - q(a, b))),             // ConjointAtop
        0x2a => (max0(1.0 - q(b, a)), min1(q(a, b))),             // ConjointAtopReverse
        0x2b => (max0(1.0 - q(b, a)), max0(1.0 - q(a, b))),       // ConjointXor
        _ => return None,
    })
}

/// W3C separable blend functions B(cb, cs).
fn separable(op: u8, cb: f64, cs: f64) -> Option<f64> {
    let multiply = |cb: f64, cs: f64| cb * cs;
    let screen = |cb: f64, cs: f64| cb + cs - cb * cs;
    let hard_light = |cb: f64, cs: f64| {
        if cs <= 0.5 {
            multiply(cb, 2.0 * cs)
        } else {
            screen(cb, 2.0 * cs - 1.0)
        }
    };
    Some(match op {
        0x30 => multiply(cb, cs),
        0x31 => screen(cb, cs),
        0x32 => hard_light(cs, cb), // Overlay: HardLight with the operands swapped
        0x33 => cb.min(cs),
        0x34 => cb.max(cs),
        0x35 => {
            if cb == 0.0 {
                0.0
            } else if cs == 1.0 {
                1.0
            } else {
                (cb / (1.0 - cs)).min(1.0)
            }
        }
        0x36 => {
            if cb == 1.0 {
                1.0
            } else if cs == 0.0 {
                0.0
            } else {
                1.0 - ((1.0 - cb) / cs).min(1.0)
            }
        }
        0x37 => hard_light(cb, cs),
        0x38 => {
            if cs <= 0.5 {
                cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb)
            } else {
                let d = if cb <= 0.25 {
                    ((16.0 * cb - 12.0) * cb + 4.0) * cb
                } else {
                    cb.sqrt()
                };
                cb + (2.0 * cs - 1.0) * (d - cb)
            }
        }
        0x39 => (cb - cs).abs(),
        0x3a => cb + cs - 2.0 * cb * cs,
        _ => return None,
    })
}

/// Colours for the HSL functions as (r, g, b).
type Rgb = [f64; 3];

fn lum(c: Rgb) -> f64 {
    0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]
}

fn clip_color(c: Rgb) -> Rgb {
    let l = lum(c);
    let n = c.iter().cloned().fold(f64::INFINITY, f64::min);
    let x = c.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut c = c;
    if n < 0.0 {
        c = c.map(|v| l + (v - l) * l / (l - n));
    }
    if x > 1.0 {
        c = c.map(|v| l + (v - l) * (1.0 - l) / (x - l));
    }
    c
}

fn set_lum(c: Rgb, l: f64) -> Rgb {
    let d = l - lum(c);
    clip_color(c.map(|v| v + d))
}

fn sat(c: Rgb) -> f64 {
    let n = c.iter().cloned().fold(f64::INFINITY, f64::min);
    let x = c.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    x - n
}

fn set_sat(c: Rgb, s: f64) -> Rgb {
    // Cmax, Cmid, Cmin by index (the spec's "(Cmin, Cmid, Cmax)" of the colour).
    let mut i = [0usize, 1, 2];
    i.sort_by(|&a, &b| c[a].partial_cmp(&c[b]).unwrap());
    let (lo, mid, hi) = (i[0], i[1], i[2]);
    let mut out = [0.0; 3];
    if c[hi] > c[lo] {
        out[mid] = (c[mid] - c[lo]) * s / (c[hi] - c[lo]);
        out[hi] = s;
    }
    out
}

fn hsl(op: u8, cb: Rgb, cs: Rgb) -> Option<Rgb> {
    Some(match op {
        0x3b => set_lum(set_sat(cs, sat(cb)), lum(cb)),
        0x3c => set_lum(set_sat(cb, sat(cs)), lum(cb)),
        0x3d => set_lum(cs, lum(cb)),
        0x3e => set_lum(cb, lum(cs)),
        _ => return None,
    })
}

/// The spec result, channels in 0..=255 (unrounded), for source `s` whose channel `i` carries
/// alpha `sa[i]`, over destination `d`. `None` if `op` has no definition.
fn reference(op: u8, s: Px, sa: Px, d: Px) -> Option<[f64; 4]> {
    let da = d[3];
    let mut out = [0.0; 4];
    if render_factors(op, 0.5, 0.5).is_some() {
        for i in 0..4 {
            let (fa, fb) = render_factors(op, sa[i], da)?;
            out[i] = (s[i] * fa + d[i] * fb).min(1.0);
        }
    } else if separable(op, 0.5, 0.5).is_some() {
        for i in 0..3 {
            let mix = if sa[i] == 0.0 || da == 0.0 {
                0.0
            } else {
                sa[i] * da * separable(op, d[i] / da, s[i] / sa[i])?
            };
            out[i] = s[i] * (1.0 - da) + d[i] * (1.0 - sa[i]) + mix;
        }
        out[3] = sa[3] + da - sa[3] * da;
    } else {
        let a = sa[3];
        let rgb = |p: Px, al: f64| [p[2] / al, p[1] / al, p[0] / al];
        let mix = if a == 0.0 || da == 0.0 {
            [0.0; 3]
        } else {
            hsl(op, rgb(d, da), rgb(s, a))?
        };
        // mix is (r, g, b); channel order here is (b, g, r).
        for (i, m) in [mix[2], mix[1], mix[0]].into_iter().enumerate() {
            out[i] = s[i] * (1.0 - da) + d[i] * (1.0 - a) + a * da * m;
        }
        out[3] = a + da - a * da;
    }
    Some(out.map(|v| v * 255.0))
}

/// Every operator value spice or X Render defines in 0x00..=0x3e.
fn defined_ops() -> Vec<u8> {
    (0x00..=0x0d)
        .chain(0x10..=0x1b)
        .chain(0x20..=0x2b)
        .chain(0x30..=0x3e)
        .collect()
}

/// Compares `got` (0xAARRGGBB) with `want` (b, g, r, a; 0..=255 unrounded) within ±1 of the
/// rounded value; `channels` 4 compares alpha too, 3 only colour.
fn assert_close(got: u32, want: [f64; 4], channels: usize, what: &str) {
    for (i, w) in want.iter().enumerate().take(channels) {
        let g = (got >> (8 * i)) & 255;
        let w = w.round().clamp(0.0, 255.0);
        assert!(
            (g as f64 - w).abs() <= 1.0,
            "{what}: channel {i} (0 b, 1 g, 2 r, 3 a) got {g} want {w} (pixel {got:#010x})"
        );
    }
}

#[test]
fn every_operator_matches_its_spec_formula_on_an_argb_destination() {
    let (s, d) = (sources(), dests());
    for op in defined_ops() {
        let mut g = rig(surface_fmt::ARGB32);
        let px = g.composite(op as u32, None);
        for y in 0..N {
            for x in 0..N {
                let (sp, dp) = (unpack(s[x as usize]), unpack(d[y as usize]));
                let want = reference(op, sp, [sp[3]; 4], dp).unwrap();
                let got = px[(y * N + x) as usize];
                let what = format!(
                    "op {op:#04x} src {:#010x} dst {:#010x}",
                    s[x as usize], d[y as usize]
                );
                assert_close(got, want, 4, &what);
            }
        }
    }
}

#[test]
fn every_operator_treats_a_destination_without_alpha_as_opaque() {
    let (s, d) = (sources(), dests());
    for op in defined_ops() {
        let mut g = rig(surface_fmt::XRGB32);
        let px = g.composite(op as u32, None);
        for y in 0..N {
            for x in 0..N {
                // The xRGB surface holds the colour bits of DST[y]; its alpha is 1.
                let opaque = d[y as usize] | 0xFF00_0000;
                let (sp, dp) = (unpack(s[x as usize]), unpack(opaque));
                let want = reference(op, sp, [sp[3]; 4], dp).unwrap();
                let got = px[(y * N + x) as usize];
                let what = format!(
                    "op {op:#04x} src {:#010x} dst {opaque:#010x}",
                    s[x as usize]
                );
                assert_close(got, want, 3, &what);
            }
        }
    }
}

#[test]
fn component_alpha_scales_each_source_channel_by_its_mask_channel() {
    let (s, d, m) = (sources(), dests(), masks());
    for op in defined_ops() {
        let mut g = rig(surface_fmt::ARGB32);
        let mask = g.rgba_image(|x, y| mask_at(&m, x, y));
        let px = g.composite(op as u32 | 1 << 18, Some(mask));
        for y in 0..N {
            for x in 0..N {
                let (sp, dp) = (unpack(s[x as usize]), unpack(d[y as usize]));
                let mp = unpack(mask_at(&m, x, y));
                let got = px[(y * N + x) as usize];
                let what = format!(
                    "CA op {op:#04x} src {:#010x} mask {:#010x} dst {:#010x}",
                    s[x as usize],
                    mask_at(&m, x, y),
                    d[y as usize]
                );
                let want = if (0x3b..=0x3e).contains(&op) {
                    // The HSL modes have no per-channel form: pixman leaves the destination.
                    unpack(d[y as usize]).map(|v| v * 255.0)
                } else {
                    let src = [0, 1, 2, 3].map(|i| sp[i] * mp[i]);
                    let sa = [0, 1, 2, 3].map(|i| sp[3] * mp[i]);
                    reference(op, src, sa, dp).unwrap()
                };
                assert_close(got, want, 4, &what);
            }
        }
    }
}

#[test]
fn without_component_alpha_the_mask_alpha_scales_the_whole_source() {
    // OVER and MULTIPLY with the same RGBA mask but the flag clear: only the mask's alpha
    // counts (the source IN the mask is an 8-bit pixel, as in pixman).
    let (s, d, m) = (sources(), dests(), masks());
    for op in [0x03u8, 0x30] {
        let mut g = rig(surface_fmt::ARGB32);
        let mask = g.rgba_image(|x, y| mask_at(&m, x, y));
        let px = g.composite(op as u32, Some(mask));
        for y in 0..N {
            for x in 0..N {
                let ma = (mask_at(&m, x, y) >> 24) as f64 / 255.0;
                let masked = [0, 8, 16, 24]
                    .map(|sh| ((((s[x as usize] >> sh) & 255) as f64 * ma).round()) as u32);
                let masked = masked[3] << 24 | masked[2] << 16 | masked[1] << 8 | masked[0];
                let sp = unpack(masked);
                let want = reference(op, sp, [sp[3]; 4], unpack(d[y as usize])).unwrap();
                let what = format!("op {op:#04x} masked src {masked:#010x}");
                assert_close(px[(y * N + x) as usize], want, 4, &what);
            }
        }
    }
}

#[test]
fn unknown_operators_draw_as_over_without_panicking() {
    let (s, d) = (sources(), dests());
    for op in [0x0eu32, 0x0f, 0x1c, 0x2f, 0x3f, 0x80, 0xff] {
        for ca in [false, true] {
            let mut g = rig(surface_fmt::ARGB32);
            let mask = ca.then(|| g.rgba_image(|_, _| 0xFFFF_FFFF));
            let flags = op | if ca { 1 << 18 } else { 0 };
            let px = g.composite(flags, mask);
            for y in 0..N {
                for x in 0..N {
                    let (sp, dp) = (unpack(s[x as usize]), unpack(d[y as usize]));
                    let want = reference(0x03, sp, [sp[3]; 4], dp).unwrap();
                    let what = format!("unknown op {op:#04x} (ca {ca})");
                    assert_close(px[(y * N + x) as usize], want, 4, &what);
                }
            }
        }
    }
}
