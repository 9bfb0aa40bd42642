//! Pixel arithmetic: rop descriptors, ternary rops, alpha blending and Porter-Duff
//! compositing on 0xAARRGGBB values.
//!
//! Definitions (tested against independent per-pixel formulas in `tests/render_*.rs`):
//! - **Rop descriptor** (`SPICE_ROPD_*`): the operand (source or brush) and the destination are
//!   first inverted if their INVERS bit is set; then the first op bit present, in the order PUT,
//!   OR, AND, XOR, BLACKNESS, WHITENESS, INVERS, gives `operand`, `operand | dest`,
//!   `operand & dest`, `operand ^ dest`, `0`, `0xFFFFFFFF`, `!dest` (the original destination);
//!   no op bit leaves the destination unchanged; INVERS_RES inverts the result. All 32 bits take
//!   part (an xRGB surface ignores its top byte). This is spice-common's
//!   `ropd_descriptor_to_rop` mapping.
//! - **Rop3**: bit `i` of the result is bit `(p<<2 | s<<1 | d)` of the code, where p, s, d are
//!   bit `i` of the brush, source and destination (the Windows ternary raster-op numbering:
//!   0xCC = source copy, 0xF0 = pattern copy, 0x55 = invert destination).
//! - **Alpha**: `mul(a, b) = round(a·b / 255)` (pixman's DIV_255). Images with alpha are
//!   premultiplied, as in pixman and spice.

use super::blend;
use crate::abi::cmd::ropd;

/// Which descriptor bits invert the operand and the destination for a given draw type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RopInputs {
    pub operand_inv: u16,
    pub dest_inv: u16,
}

/// COPY/BLEND/ALPHA: the source is the operand.
pub(crate) const SRC_DEST: RopInputs = RopInputs {
    operand_inv: ropd::INVERS_SRC,
    dest_inv: ropd::INVERS_DEST,
};
/// FILL/STROKE/TEXT: the brush is the operand.
pub(crate) const BRUSH_DEST: RopInputs = RopInputs {
    operand_inv: ropd::INVERS_BRUSH,
    dest_inv: ropd::INVERS_DEST,
};
/// OPAQUE: the brush is the operand and the source plays the destination.
pub(crate) const BRUSH_SRC: RopInputs = RopInputs {
    operand_inv: ropd::INVERS_BRUSH,
    dest_inv: ropd::INVERS_SRC,
};

/// Applies rop descriptor `desc` to `operand` and `dest`.
#[inline]
pub(crate) fn ropd_apply(desc: u16, inputs: RopInputs, operand: u32, dest: u32) -> u32 {
    let s = if desc & inputs.operand_inv != 0 {
        !operand
    } else {
        operand
    };
    let d = if desc & inputs.dest_inv != 0 {
        !dest
    } else {
        dest
    };
    let r = if desc & ropd::OP_PUT != 0 {
        s
    } else if desc & ropd::OP_OR != 0 {
        s | d
    } else if desc & ropd::OP_AND != 0 {
        s & d
    } else if desc & ropd::OP_XOR != 0 {
        s ^ d
    } else if desc & ropd::OP_BLACKNESS != 0 {
        0
    } else if desc & ropd::OP_WHITENESS != 0 {
        0xFFFF_FFFF
    } else if desc & ropd::OP_INVERS != 0 {
        !dest
    } else {
        return dest;
    };
    if desc & ropd::INVERS_RES != 0 {
        !r
    } else {
        r
    }
}

/// True when `desc` is a plain PUT of the operand (the fast path).
pub(crate) fn is_plain_put(desc: u16, inputs: RopInputs) -> bool {
    desc & ropd::OP_PUT != 0 && desc & (inputs.operand_inv | ropd::INVERS_RES) == 0
}

/// Ternary raster op `code` of brush `p`, source `s`, destination `d`.
#[inline]
pub(crate) fn rop3(code: u8, p: u32, s: u32, d: u32) -> u32 {
    let mut r = 0u32;
    for i in 0..8u8 {
        if (code >> i) & 1 != 0 {
            let pp = if i & 4 != 0 { p } else { !p };
            let ss = if i & 2 != 0 { s } else { !s };
            let dd = if i & 1 != 0 { d } else { !d };
            r |= pp & ss & dd;
        }
    }
    r
}

/// round(a·b/255) for a, b ≤ 255.
#[inline]
pub(crate) fn mul(a: u32, b: u32) -> u32 {
    let t = a * b + 0x80;
    (t + (t >> 8)) >> 8
}

#[inline]
fn ch(p: u32, shift: u32) -> u32 {
    (p >> shift) & 0xFF
}

/// Premultiplied OVER of `src` (alpha `sa`) scaled by `alpha`, onto `dst`.
/// Per channel: `r = min(255, mul(s, alpha) + mul(d, 255 − mul(sa, alpha)))`.
#[inline]
pub(crate) fn over_alpha(src: u32, sa: u32, alpha: u32, dst: u32, dest_has_alpha: bool) -> u32 {
    let sa2 = mul(sa, alpha);
    let inv = 255 - sa2;
    let mut out = 0u32;
    for shift in [0u32, 8, 16] {
        let v = (mul(ch(src, shift), alpha) + mul(ch(dst, shift), inv)).min(255);
        out |= v << shift;
    }
    let a = if dest_has_alpha {
        (sa2 + mul(ch(dst, 24), inv)).min(255)
    } else {
        0xFF
    };
    out | a << 24
}

/// Porter-Duff factors (Fa, Fb) in 0..=255 for operator `op` (0..=13), source alpha `sa`,
/// destination alpha `da`. Any other operator gets OVER's factors (`composite` sends the
/// disjoint, conjoint and blend-mode operators to `blend` first).
#[inline]
pub(crate) fn pd_factors(op: u8, sa: u32, da: u32) -> (u32, u32) {
    match op {
        0 => (0, 0),
        1 => (255, 0),
        2 => (0, 255),
        4 => (255 - da, 255),
        5 => (da, 0),
        6 => (0, sa),
        7 => (255 - da, 0),
        8 => (0, 255 - sa),
        9 => (da, 255 - sa),
        10 => (255 - da, sa),
        11 => (255 - da, 255 - sa),
        12 => (255, 255),
        13 => {
            // min(1, (1 − da)/sa)
            let fa = ((255 - da) * 255)
                .checked_div(sa)
                .map_or(255, |v| v.min(255));
            (fa, 255)
        }
        _ => (255, 255 - sa),
    }
}

/// Composite of premultiplied `s` onto premultiplied `d` with operator `op` (pixman's / X
/// Render's numbering). 0..=13 are exact integer Porter-Duff; DISJOINT_*, CONJOINT_* and the
/// blend modes go to `blend`; unknown values draw as OVER.
#[inline]
pub(crate) fn composite(op: u8, s: u32, d: u32) -> u32 {
    if blend::is_extended(op) {
        return blend::composite(op, s, d);
    }
    let (sa, da) = (ch(s, 24), ch(d, 24));
    let (fa, fb) = pd_factors(op, sa, da);
    let mut out = 0u32;
    for shift in [0u32, 8, 16, 24] {
        let v = (mul(ch(s, shift), fa) + mul(ch(d, shift), fb)).min(255);
        out |= v << shift;
    }
    out
}

/// Composite with component alpha: every channel of premultiplied `s` is scaled by the matching
/// channel of mask `m` and carries the source alpha times that channel (X Render). All
/// operators take the f32 path of `blend` here; unknown values draw as OVER.
#[inline]
pub(crate) fn composite_ca(op: u8, s: u32, m: u32, d: u32) -> u32 {
    blend::composite_ca(op, s, m, d)
}

/// Multiplies every channel of premultiplied `p` by `m`/255.
#[inline]
pub(crate) fn scale_px(p: u32, m: u32) -> u32 {
    let mut out = 0u32;
    for shift in [0u32, 8, 16, 24] {
        out |= mul(ch(p, shift), m) << shift;
    }
    out
}

/// Linear interpolation of the colour channels: `d + (s − d)·a/255` (glyph coverage).
#[inline]
pub(crate) fn lerp(s: u32, d: u32, a: u32) -> u32 {
    let mut out = d & 0xFF00_0000;
    for shift in [0u32, 8, 16] {
        let (sv, dv) = (ch(s, shift), ch(d, shift));
        let v = mul(sv, a) + mul(dv, 255 - a);
        out |= v.min(255) << shift;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_is_rounded_division_by_255() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                let exact = ((a * b) as f64 / 255.0).round() as u32;
                assert_eq!(mul(a, b), exact, "{a}*{b}");
            }
        }
    }

    #[test]
    fn rop3_named_codes() {
        let (p, s, d) = (0xF0F0_F0F0, 0xCCCC_CCCC, 0xAAAA_AAAA);
        assert_eq!(rop3(0xCC, p, s, d), s);
        assert_eq!(rop3(0xF0, p, s, d), p);
        assert_eq!(rop3(0xAA, p, s, d), d);
        assert_eq!(rop3(0x55, p, s, d), !d);
        assert_eq!(rop3(0x66, p, s, d), s ^ d);
        assert_eq!(rop3(0x00, p, s, d), 0);
        assert_eq!(rop3(0xFF, p, s, d), !0);
    }
}
