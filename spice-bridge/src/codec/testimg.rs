//! Synthetic desktop-like pictures for the codec tests, the codec benchmark and the fuzz seeds.
//!
//! Every generator returns packed 32-bit rows (B, G, R, X with X = 0xFF, stride = width × 4) and
//! is deterministic for a given [`Rng`] seed.

/// A small deterministic PRNG (xorshift64*), so pictures are the same on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// A value in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
        }
    }
}

fn put(pic: &mut [u8], w: u32, x: u32, y: u32, rgb: u32) {
    let i = (y as usize * w as usize + x as usize) * 4;
    if let Some(p) = pic.get_mut(i..i + 4) {
        p.copy_from_slice(&(rgb | 0xFF00_0000).to_le_bytes());
    }
}

fn fill(pic: &mut [u8], w: u32, h: u32, rect: (u32, u32, u32, u32), rgb: u32) {
    let (x0, y0, x1, y1) = rect;
    for y in y0..y1.min(h) {
        for x in x0..x1.min(w) {
            put(pic, w, x, y, rgb);
        }
    }
}

/// One colour everywhere.
pub fn solid(w: u32, h: u32, rgb: u32) -> Vec<u8> {
    (rgb | 0xFF00_0000)
        .to_le_bytes()
        .repeat(w as usize * h as usize)
}

/// A smooth two-axis gradient (the worst case for LZ: few exact repeats).
pub fn gradient(w: u32, h: u32) -> Vec<u8> {
    let mut pic = vec![0u8; w as usize * h as usize * 4];
    for y in 0..h {
        for x in 0..w {
            let r = x * 255 / w.max(1);
            let g = y * 255 / h.max(1);
            let b = (x + y) & 0xFF;
            put(&mut pic, w, x, y, (r << 16) | (g << 8) | b);
        }
    }
    pic
}

/// A photo-like picture: smooth colour fields (ramps and broad waves) with a little grain, so
/// neighbouring pixels differ by small steps almost everywhere (what QUIC is for).
pub fn photo(w: u32, h: u32, rng: &mut Rng) -> Vec<u8> {
    let mut pic = vec![0u8; w as usize * h as usize * 4];
    let wave = |v: u32| {
        let t = v % 256;
        if t < 128 {
            t
        } else {
            255 - t
        }
    };
    for y in 0..h {
        for x in 0..w {
            let g = |rng: &mut Rng| rng.below(7) as i32 - 3;
            let r = (30 + x * 120 / w.max(1) + wave(y * 2) / 2) as i32 + g(rng);
            let gg = (50 + wave(x + y) / 2 + y * 40 / h.max(1)) as i32 + g(rng);
            let b = (80 + y * 100 / h.max(1) + wave(x * 3) / 3) as i32 + g(rng);
            let c = |v: i32| v.clamp(0, 255) as u32;
            put(&mut pic, w, x, y, (c(r) << 16) | (c(gg) << 8) | c(b));
        }
    }
    pic
}

/// Random bytes (incompressible).
pub fn noise(w: u32, h: u32, rng: &mut Rng) -> Vec<u8> {
    let mut pic = vec![0u8; w as usize * h as usize * 4];
    for y in 0..h {
        for x in 0..w {
            let v = rng.next_u32() & 0xFF_FFFF;
            put(&mut pic, w, x, y, v);
        }
    }
    pic
}

/// Dark 6×10 glyphs from a 40-glyph random "font" in lines 14 pixels apart on a light
/// background, with word gaps: what a terminal or document looks like.
pub fn text(w: u32, h: u32, rng: &mut Rng) -> Vec<u8> {
    let mut pic = solid(w, h, 0x00F4_F4F0);
    draw_text(&mut pic, w, h, (0, 0, w, h), 0x0020_2020, rng);
    pic
}

fn draw_text(pic: &mut [u8], w: u32, h: u32, rect: (u32, u32, u32, u32), ink: u32, rng: &mut Rng) {
    let font: Vec<[u8; 10]> = (0..40)
        .map(|_| {
            let mut g = [0u8; 10];
            for row in g.iter_mut().skip(2).take(7) {
                *row = (rng.next_u32() & 0x3E) as u8;
            }
            g
        })
        .collect();
    let (x0, y0, x1, y1) = rect;
    let mut y = y0 + 2;
    while y + 10 <= y1.min(h) {
        let mut x = x0 + 4;
        let line_end = x1.min(w).saturating_sub(4 + rng.below(60));
        while x + 6 <= line_end {
            if rng.below(7) == 0 {
                x += 6; // space
                continue;
            }
            let glyph = &font[rng.below(40) as usize];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..6 {
                    if bits & (1 << gx) != 0 {
                        put(pic, w, x + gx, y + gy as u32, ink);
                    }
                }
            }
            x += 6;
        }
        y += 14;
    }
}

/// A desktop: gradient top bar, flat wallpaper, a few windows with title bars and text, one
/// photo-like (noisy) picture, a row of icons.
pub fn desktop(w: u32, h: u32, rng: &mut Rng) -> Vec<u8> {
    let mut pic = solid(w, h, 0x003A_6EA5);
    for y in 0..(h / 30).max(1).min(h) {
        for x in 0..w {
            put(
                &mut pic,
                w,
                x,
                y,
                0x0030_3030 + ((x * 64 / w.max(1)) * 0x0001_0101),
            );
        }
    }
    // Icons on the left.
    for i in 0..(h / 80) {
        let (x, y) = (10, 40 + i * 80);
        let colour = 0x0040_2000 + rng.next_u32() % 0x00BF_DFFF;
        fill(&mut pic, w, h, (x, y, x + 48, y + 48), colour);
        fill(&mut pic, w, h, (x + 8, y + 8, x + 40, y + 40), 0x00FF_FFFF);
    }
    // Windows.
    let windows = 1 + (w * h) / 300_000;
    for _ in 0..windows {
        let ww = (w / 3).max(1) + rng.below((w / 3).max(1));
        let wh = (h / 3).max(1) + rng.below((h / 3).max(1));
        let x0 = rng.below(w.saturating_sub(ww).max(1));
        let y0 = rng.below(h.saturating_sub(wh).max(1));
        fill(&mut pic, w, h, (x0, y0, x0 + ww, y0 + wh), 0x00FF_FFFF);
        fill(&mut pic, w, h, (x0, y0, x0 + ww, y0 + 24), 0x00DE_DEDE);
        draw_text(
            &mut pic,
            w,
            h,
            (x0, y0 + 28, x0 + ww, y0 + wh),
            0x0010_1010,
            rng,
        );
    }
    // A photo.
    let (pw, ph) = (w / 5, h / 5);
    let (px, py) = (w - pw - w / 20, h - ph - h / 20);
    for y in 0..ph {
        for x in 0..pw {
            let base = ((x * 200 / pw.max(1)) << 16) | ((y * 180 / ph.max(1)) << 8) | 0x40;
            let jitter = rng.next_u32() & 0x0F_0F0F;
            put(&mut pic, w, px + x, py + y, (base + jitter) & 0xFF_FFFF);
        }
    }
    pic
}

/// Converts a picture from the generators to `format`, with `pad` junk bytes after each row;
/// returns the bytes and the stride. Argb32 gets an alpha pattern (opaque areas, a transparent
/// band and an alpha ramp); Rgb16 sets the unused top bit on odd columns (it must be ignored).
pub fn convert(
    pic: &[u8],
    w: u32,
    h: u32,
    format: super::SourceFormat,
    pad: usize,
) -> (Vec<u8>, usize) {
    use super::SourceFormat;
    let bpp = format.bytes_per_pixel();
    let stride = w as usize * bpp + pad;
    let mut out = Vec::with_capacity(stride * h as usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            let i = (y * w as usize + x) * 4;
            let (b, g, r) = (pic[i], pic[i + 1], pic[i + 2]);
            match format {
                SourceFormat::Xrgb32 => out.extend_from_slice(&[b, g, r, pic[i + 3]]),
                SourceFormat::Argb32 => {
                    let a = if y % 16 < 4 {
                        0
                    } else if x % 32 < 8 {
                        (x * 8 + y) as u8
                    } else {
                        0xFF
                    };
                    out.extend_from_slice(&[b, g, r, a]);
                }
                SourceFormat::Rgb24 => out.extend_from_slice(&[b, g, r]),
                SourceFormat::Rgb16 => {
                    let v = (u16::from(r >> 3) << 10)
                        | (u16::from(g >> 3) << 5)
                        | u16::from(b >> 3)
                        | if x % 2 == 1 { 0x8000 } else { 0 };
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out.extend(std::iter::repeat_n(0xAB, pad));
    }
    (out, stride)
}
