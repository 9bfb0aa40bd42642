//! BGRX pictures to and from I420 (the YUV 4:2:0 layout VP8 codes), in the colour matrix the
//! client's decoder will assume.
//!
//! A VP8 frame carries no colour matrix, and GStreamer's `vp8dec` (what spice-gtk plays VP8
//! streams with) leaves it to `gst_video_info_set_format`'s default for its size: BT.601 up to
//! 576 rows, BT.709 above, BT.2020 from 2160 rows, all limited range (Y 16-235, UV 16-240).
//! [`Matrix::for_height`] picks the same, so the client's colours are the guest's.
//!
//! Plain safe Rust on validated sizes; integer arithmetic in 16.16 fixed point.

/// The YUV matrix of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    /// ITU-R BT.601 (standard definition).
    Bt601,
    /// ITU-R BT.709 (high definition).
    Bt709,
    /// ITU-R BT.2020 (ultra high definition).
    Bt2020,
}

impl Matrix {
    /// The matrix GStreamer assumes for an untagged YUV frame `height` rows tall.
    pub fn for_height(height: u32) -> Matrix {
        if height >= 2160 {
            Matrix::Bt2020
        } else if height > 576 {
            Matrix::Bt709
        } else {
            Matrix::Bt601
        }
    }

    /// (Kr, Kb) of the matrix.
    fn kr_kb(self) -> (f64, f64) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
            Matrix::Bt2020 => (0.2627, 0.0593),
        }
    }

    /// Fixed-point coefficients for both directions.
    fn coefficients(self) -> Coefficients {
        let (kr, kb) = self.kr_kb();
        let kg = 1.0 - kr - kb;
        let fx = |v: f64| (v * 65536.0).round() as i32;
        // limited range: Y' scaled by 219/255, colour differences by 224/255
        let ys = 219.0 / 255.0;
        let cs = 224.0 / 255.0;
        let cb = 2.0 * (1.0 - kb);
        let cr = 2.0 * (1.0 - kr);
        Coefficients {
            yr: fx(kr * ys),
            yg: fx(kg * ys),
            yb: fx(kb * ys),
            ur: fx(-kr / cb * cs),
            ug: fx(-kg / cb * cs),
            ub: fx((1.0 - kb) / cb * cs),
            vr: fx((1.0 - kr) / cr * cs),
            vg: fx(-kg / cr * cs),
            vb: fx(-kb / cr * cs),
            // inverse
            iy: fx(1.0 / ys),
            ivr: fx(cr / cs),
            iug: fx(-cb * kb / kg / cs),
            ivg: fx(-cr * kr / kg / cs),
            iub: fx(cb / cs),
        }
    }
}

struct Coefficients {
    yr: i32,
    yg: i32,
    yb: i32,
    ur: i32,
    ug: i32,
    ub: i32,
    vr: i32,
    vg: i32,
    vb: i32,
    iy: i32,
    ivr: i32,
    iug: i32,
    ivg: i32,
    iub: i32,
}

const HALF: i32 = 1 << 15;

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// The three planes of an I420 picture: where each starts in one buffer and its stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I420Layout {
    /// Picture width in pixels.
    pub width: usize,
    /// Picture height in pixels.
    pub height: usize,
    /// Offsets of the Y, U and V planes.
    pub offset: [usize; 3],
    /// Strides of the Y, U and V planes.
    pub stride: [usize; 3],
}

impl I420Layout {
    /// Chroma width and height ((w+1)/2, (h+1)/2).
    pub fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    /// Bytes a buffer must hold for this layout, or `None` on overflow.
    pub fn required_len(&self) -> Option<usize> {
        let (cw, ch) = self.chroma_size();
        let end = |plane: usize, w: usize, h: usize| -> Option<usize> {
            if h == 0 {
                return Some(0);
            }
            self.offset[plane]
                .checked_add(self.stride[plane].checked_mul(h - 1)?)?
                .checked_add(w)
        };
        Some(
            end(0, self.width, self.height)?
                .max(end(1, cw, ch)?)
                .max(end(2, cw, ch)?),
        )
    }

    fn strides_fit(&self) -> bool {
        let (cw, _) = self.chroma_size();
        self.stride[0] >= self.width && self.stride[1] >= cw && self.stride[2] >= cw
    }
}

/// Errors of the conversions: a buffer that does not hold the stated geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("picture buffer too short or strides too small for {width}x{height}")]
pub struct LayoutError {
    /// Stated width.
    pub width: usize,
    /// Stated height.
    pub height: usize,
}

/// Writes the BGRX picture `src` (rows of `src_stride` bytes, 4 bytes a pixel: B, G, R, X) into
/// `dst` laid out as `layout`, in `matrix`. Each chroma sample is the mean of its 2x2 block (of
/// the pixels that exist at odd edges).
pub fn bgrx_to_i420(
    src: &[u8],
    src_stride: usize,
    layout: &I420Layout,
    matrix: Matrix,
    dst: &mut [u8],
) -> Result<(), LayoutError> {
    let (w, h) = (layout.width, layout.height);
    let err = LayoutError {
        width: w,
        height: h,
    };
    let src_need = src_stride
        .checked_mul(h.saturating_sub(1))
        .and_then(|v| v.checked_add(w.checked_mul(4)?))
        .ok_or(err.clone())?;
    if src_stride < w * 4
        || src.len() < src_need
        || !layout.strides_fit()
        || layout.required_len().is_none_or(|n| dst.len() < n)
    {
        return Err(err);
    }
    let c = matrix.coefficients();
    for y in 0..h {
        let row = &src[y * src_stride..y * src_stride + w * 4];
        let out = &mut dst[layout.offset[0] + y * layout.stride[0]..][..w];
        for (x, px) in row.chunks_exact(4).enumerate() {
            let (b, g, r) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            out[x] = clamp_u8(((c.yr * r + c.yg * g + c.yb * b + HALF) >> 16) + 16);
        }
    }
    let (cw, ch) = layout.chroma_size();
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0i32, 0i32, 0i32, 0i32);
            for y in (2 * cy)..(2 * cy + 2).min(h) {
                for x in (2 * cx)..(2 * cx + 2).min(w) {
                    let p = &src[y * src_stride + x * 4..][..4];
                    b += i32::from(p[0]);
                    g += i32::from(p[1]);
                    r += i32::from(p[2]);
                    n += 1;
                }
            }
            // n is 1, 2 or 4; the mean in 16.16 keeps the fraction
            let (r, g, b) = (r * 65536 / n, g * 65536 / n, b * 65536 / n);
            // 16.16 coefficients times 16.16 means: 32 fraction bits, rounded
            let dot = |cr: i32, cg: i32, cb: i32| {
                ((i64::from(cr) * i64::from(r)
                    + i64::from(cg) * i64::from(g)
                    + i64::from(cb) * i64::from(b)
                    + (1i64 << 31))
                    >> 32) as i32
            };
            let (u, v) = (dot(c.ur, c.ug, c.ub), dot(c.vr, c.vg, c.vb));
            dst[layout.offset[1] + cy * layout.stride[1] + cx] = clamp_u8(u + 128);
            dst[layout.offset[2] + cy * layout.stride[2] + cx] = clamp_u8(v + 128);
        }
    }
    Ok(())
}

/// Converts the I420 picture in `src` (laid out as `layout`) to packed BGRX rows (`width * 4`
/// bytes each, X = 0), in `matrix`; chroma is taken from the sample covering each pixel.
pub fn i420_to_bgrx(
    src: &[u8],
    layout: &I420Layout,
    matrix: Matrix,
) -> Result<Vec<u8>, LayoutError> {
    let (w, h) = (layout.width, layout.height);
    if !layout.strides_fit() || layout.required_len().is_none_or(|n| src.len() < n) {
        return Err(LayoutError {
            width: w,
            height: h,
        });
    }
    let c = matrix.coefficients();
    let mut out = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let yy = i32::from(src[layout.offset[0] + y * layout.stride[0] + x]) - 16;
            let u = i32::from(src[layout.offset[1] + (y / 2) * layout.stride[1] + x / 2]) - 128;
            let v = i32::from(src[layout.offset[2] + (y / 2) * layout.stride[2] + x / 2]) - 128;
            let l = c.iy * yy;
            let r = (l + c.ivr * v + HALF) >> 16;
            let g = (l + c.iug * u + c.ivg * v + HALF) >> 16;
            let b = (l + c.iub * u + HALF) >> 16;
            let o = (y * w + x) * 4;
            out[o] = clamp_u8(b);
            out[o + 1] = clamp_u8(g);
            out[o + 2] = clamp_u8(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(w: usize, h: usize) -> I420Layout {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        I420Layout {
            width: w,
            height: h,
            offset: [0, w * h, w * h + cw * ch],
            stride: [w, cw, cw],
        }
    }

    #[test]
    fn grey_levels_map_to_the_limited_range() {
        for m in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
            let l = packed(2, 2);
            let mut yuv = vec![0u8; 6];
            bgrx_to_i420(&[0u8; 16], 8, &l, m, &mut yuv).unwrap();
            assert_eq!(yuv, [16, 16, 16, 16, 128, 128], "{m:?} black");
            bgrx_to_i420(&[255u8; 16], 8, &l, m, &mut yuv).unwrap();
            assert_eq!(yuv, [235, 235, 235, 235, 128, 128], "{m:?} white");
        }
    }

    #[test]
    fn primaries_round_trip_within_two_levels() {
        // flat 2x2 blocks of one colour each, so chroma subsampling loses nothing
        let colours: [[u8; 3]; 6] = [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [200, 120, 40],
            [17, 80, 230],
            [128, 128, 128],
        ];
        for m in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
            for bgr in colours {
                let (w, h) = (4usize, 2usize);
                let src: Vec<u8> = (0..w * h)
                    .flat_map(|_| [bgr[0], bgr[1], bgr[2], 0])
                    .collect();
                let l = packed(w, h);
                let mut yuv = vec![0u8; l.required_len().unwrap()];
                bgrx_to_i420(&src, w * 4, &l, m, &mut yuv).unwrap();
                let back = i420_to_bgrx(&yuv, &l, m).unwrap();
                for (a, b) in src.iter().zip(&back) {
                    assert!(
                        (*a as i32 - *b as i32).abs() <= 2,
                        "{m:?} {bgr:?} -> {back:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn odd_sizes_and_short_buffers() {
        let l = packed(3, 3);
        let mut yuv = vec![0u8; l.required_len().unwrap()];
        assert_eq!(yuv.len(), 9 + 4 + 4);
        bgrx_to_i420(&[90u8; 36], 12, &l, Matrix::Bt601, &mut yuv).unwrap();
        assert!(bgrx_to_i420(&[90u8; 35], 12, &l, Matrix::Bt601, &mut yuv).is_err());
        assert!(bgrx_to_i420(&[90u8; 36], 8, &l, Matrix::Bt601, &mut yuv).is_err());
        assert!(bgrx_to_i420(&[90u8; 36], 12, &l, Matrix::Bt601, &mut yuv[..16]).is_err());
        assert!(i420_to_bgrx(&yuv[..16], &l, Matrix::Bt601).is_err());
        let bad = I420Layout {
            stride: [2, 2, 2],
            ..l
        };
        assert!(i420_to_bgrx(&yuv, &bad, Matrix::Bt601).is_err());
    }

    #[test]
    fn gstreamer_default_matrix_by_height() {
        assert_eq!(Matrix::for_height(270), Matrix::Bt601);
        assert_eq!(Matrix::for_height(576), Matrix::Bt601);
        assert_eq!(Matrix::for_height(577), Matrix::Bt709);
        assert_eq!(Matrix::for_height(1080), Matrix::Bt709);
        assert_eq!(Matrix::for_height(2160), Matrix::Bt2020);
    }
}
