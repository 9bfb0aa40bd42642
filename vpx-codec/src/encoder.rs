//! The VP8 encoder: libvpx's VP8 encoder in real-time mode, one frame in, one frame out.

use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;

use vpx_sys::{
    vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_enc_cfg_t,
    vpx_codec_err_t, vpx_image_t, vpx_img_fmt, vpx_kf_mode, vpx_rc_mode,
};

use crate::color::{bgrx_to_i420, I420Layout, Matrix};
use crate::{Error, MAX_DIMENSION};

/// How far above the constrained-quality level the quantizer may go when the bit-rate ceiling
/// presses (a bound on how bad a frame can get).
const MAX_Q_ABOVE_CQ: u32 = 8;

/// Row alignment of the pictures handed to libvpx (vpxenc's own; with 1, an odd width gets
/// chroma rows one sample too short).
const STRIDE_ALIGN: usize = 32;

/// How a stream is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Settings {
    /// Frame width in pixels (1..=16383).
    pub width: u32,
    /// Frame height in pixels (1..=16383).
    pub height: u32,
    /// Constrained-quality level, 0 (best) to 63: the quantizer the encoder aims at. See
    /// [`Vp8Encoder::set_cq_level`].
    pub cq_level: u8,
    /// The most bits a second may take, in kbit/s (the ceiling of constrained quality).
    pub max_kbps: u32,
    /// libvpx speed, 0 (slowest, smallest) to 16 (fastest).
    pub cpu_used: u8,
}

/// A VP8 encoder for one stream. Frames depend on earlier ones: feed every frame of the
/// stream, in order, to one encoder, and send every frame it returns.
pub struct Vp8Encoder {
    // Boxed: libvpx keeps pointers into the context and the configuration.
    ctx: Box<vpx_codec_ctx_t>,
    cfg: Box<vpx_codec_enc_cfg_t>,
    layout: I420Layout,
    matrix: Matrix,
    yuv: Vec<u8>,
    /// Presentation time of the previous frame, if any.
    last_pts: Option<i64>,
}

// SAFETY: the encoder context is owned by this value alone and libvpx keeps no thread-local
// state for it; it may move between threads (never shared: every method takes `&mut self`).
unsafe impl Send for Vp8Encoder {}

fn check(call: &'static str, ctx: *mut vpx_codec_ctx_t, r: vpx_codec_err_t) -> Result<(), Error> {
    if r == vpx_codec_err_t::VPX_CODEC_OK {
        return Ok(());
    }
    Err(Error::Libvpx {
        call,
        message: crate::decoder::error_text(ctx, r),
    })
}

impl Vp8Encoder {
    /// A real-time encoder for frames of `s.width` x `s.height`.
    pub fn new(s: Vp8Settings) -> Result<Self, Error> {
        if !(1..=MAX_DIMENSION).contains(&s.width) || !(1..=MAX_DIMENSION).contains(&s.height) {
            return Err(Error::Size {
                width: s.width,
                height: s.height,
            });
        }
        // SAFETY: a plain C struct of pointers and integers, for which all-zero is a valid
        // (empty) value; libvpx initialises it below.
        let mut ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let mut cfg = Box::new(std::mem::MaybeUninit::<vpx_codec_enc_cfg_t>::uninit());
        // SAFETY: the interface is a static of libvpx; cfg points to writable memory of the
        // struct's size, which the call fills whole when it succeeds.
        let r = unsafe {
            vpx_sys::vpx_codec_enc_config_default(vpx_sys::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        check("vpx_codec_enc_config_default", ptr::null_mut(), r)?;
        // SAFETY: initialised by the successful call above.
        let mut cfg: Box<vpx_codec_enc_cfg_t> = unsafe { cfg.assume_init() };
        cfg.g_w = s.width;
        cfg.g_h = s.height;
        // presentation times in milliseconds
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = 1000;
        cfg.g_threads = 1;
        // real time: every frame comes out as it goes in
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 0;
        // every frame is sent: the client shows each one it gets
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CQ;
        cfg.rc_target_bitrate = s.max_kbps.max(1);
        // set_cq_level below narrows these
        cfg.rc_min_quantizer = 0;
        cfg.rc_max_quantizer = 63;
        cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        // a key frame now and then bounds how long a decoding error can last
        cfg.kf_max_dist = 300;
        // SAFETY: ctx and cfg are live and boxed (stable addresses for libvpx); the ABI
        // version is the one of the headers the bindings were made from.
        let r = unsafe {
            vpx_sys::vpx_codec_enc_init_ver(
                &mut *ctx,
                vpx_sys::vpx_codec_vp8_cx(),
                &*cfg,
                0,
                vpx_sys::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        check("vpx_codec_enc_init", &mut *ctx, r)?;
        let (w, h) = (s.width as usize, s.height as usize);
        // Room for libvpx's I420 layout: rows padded to STRIDE_ALIGN, 1.5 bytes a pixel of the
        // even-rounded size.
        let mut yuv = vec![0u8; w.next_multiple_of(STRIDE_ALIGN) * h.next_multiple_of(2) * 3 / 2];
        let layout = wrap(&mut yuv, s.width, s.height)?.1;
        let mut enc = Vp8Encoder {
            ctx,
            cfg,
            layout,
            matrix: Matrix::for_height(s.height),
            yuv,
            last_pts: None,
        };
        enc.control(
            vp8e_enc_control_id::VP8E_SET_CPUUSED,
            c_int::from(s.cpu_used.min(16)),
        )?;
        enc.set_cq_level(s.cq_level)?;
        Ok(enc)
    }

    fn control(&mut self, id: vp8e_enc_control_id, value: c_int) -> Result<(), Error> {
        // SAFETY: an initialised encoder context; these controls take one int.
        let r = unsafe { vpx_sys::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        check("vpx_codec_control", &mut *self.ctx, r)
    }

    /// Sets the constrained-quality level (0 best .. 63): lower levels spend more bits on each
    /// frame. Takes effect from the next frame.
    pub fn set_cq_level(&mut self, level: u8) -> Result<(), Error> {
        let level = level.min(63);
        // the quantizer stays within [level / 2, level + MAX_Q_ABOVE_CQ]
        self.cfg.rc_min_quantizer = u32::from(level) / 2;
        self.cfg.rc_max_quantizer = (u32::from(level) + MAX_Q_ABOVE_CQ).min(63);
        self.apply_config()?;
        self.control(vp8e_enc_control_id::VP8E_SET_CQ_LEVEL, c_int::from(level))
    }

    fn apply_config(&mut self) -> Result<(), Error> {
        // SAFETY: an initialised encoder context and a live configuration.
        let r = unsafe { vpx_sys::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        check("vpx_codec_enc_config_set", &mut *self.ctx, r)
    }

    /// Sets the bit-rate ceiling in kbit/s.
    pub fn set_max_kbps(&mut self, kbps: u32) -> Result<(), Error> {
        self.cfg.rc_target_bitrate = kbps.max(1);
        self.apply_config()
    }

    /// The frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.cfg.g_w, self.cfg.g_h)
    }

    /// Encodes the BGRX picture `bgrx` (rows of `stride` bytes; the encoder's size) shown at
    /// `pts_ms`; `key` forces a key frame. Returns the VP8 frame (the first is always a key
    /// frame).
    pub fn encode(
        &mut self,
        bgrx: &[u8],
        stride: usize,
        pts_ms: i64,
        key: bool,
    ) -> Result<Vec<u8>, Error> {
        bgrx_to_i420(bgrx, stride, &self.layout, self.matrix, &mut self.yuv)?;
        let (img, layout) = wrap(&mut self.yuv, self.cfg.g_w, self.cfg.g_h)?;
        if layout != self.layout {
            return Err(Error::Libvpx {
                call: "vpx_img_wrap",
                message: "the I420 layout changed".into(),
            });
        }
        let flags = if key {
            vpx_sys::VPX_EFLAG_FORCE_KF as vpx_sys::vpx_enc_frame_flags_t
        } else {
            0
        };
        // Times must go up. The rate control spreads the bit budget over each frame's duration;
        // the next frame's time is not known yet, so the gap since the previous one stands in
        // (33 ms, 30 frames a second, for the first).
        let pts = match self.last_pts {
            Some(last) => pts_ms.max(last + 1),
            None => pts_ms,
        };
        let duration = self.last_pts.map_or(33, |last| (pts - last).clamp(1, 1000)) as c_ulong;
        // SAFETY: an initialised encoder and an image wrapping a live, correctly sized buffer.
        let r = unsafe {
            vpx_sys::vpx_codec_encode(
                &mut *self.ctx,
                &img,
                pts,
                duration,
                flags,
                vpx_sys::VPX_DL_REALTIME as c_ulong,
            )
        };
        check("vpx_codec_encode", &mut *self.ctx, r)?;
        self.last_pts = Some(pts);
        let mut out = Vec::new();
        let mut iter: vpx_sys::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: an initialised encoder; the packet lives until the next call on it.
            let pkt = unsafe { vpx_sys::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: libvpx returned a valid packet; for a frame packet the `frame` member
            // is the active one and buf/sz describe its bytes.
            unsafe {
                if (*pkt).kind == vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = (*pkt).data.frame;
                    if !f.buf.is_null() && f.sz > 0 {
                        out.extend_from_slice(std::slice::from_raw_parts(
                            f.buf as *const u8,
                            f.sz as usize,
                        ));
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Libvpx {
                call: "vpx_codec_get_cx_data",
                message: "no frame for the picture".into(),
            });
        }
        Ok(out)
    }
}

/// Wraps `yuv` as an I420 picture of `w` x `h` the way libvpx lays it out, and returns the image
/// descriptor with that layout (checked to fit in `yuv`).
fn wrap(yuv: &mut [u8], w: u32, h: u32) -> Result<(vpx_image_t, I420Layout), Error> {
    let refused = |message: String| Error::Libvpx {
        call: "vpx_img_wrap",
        message,
    };
    // SAFETY: all-zero is a valid empty image descriptor (its enums have 0 variants).
    let mut img: vpx_image_t = unsafe { std::mem::zeroed() };
    // SAFETY: only computes plane pointers into `yuv`; nothing is read or written here. That the planes fit in `yuv` is checked below, before any use.
    let wrapped = unsafe {
        vpx_sys::vpx_img_wrap(
            &mut img,
            vpx_img_fmt::VPX_IMG_FMT_I420,
            w as c_uint,
            h as c_uint,
            STRIDE_ALIGN as c_uint,
            yuv.as_mut_ptr(),
        )
    };
    if wrapped.is_null() {
        return Err(refused("refused the picture".into()));
    }
    let base = yuv.as_mut_ptr();
    // Strides as libvpx chose them; the chroma planes placed here, one after the other. (For an
    // odd height libvpx puts V only h/2 rows after U, over U's last row.)
    let mut stride = [0usize; 3];
    for (p, (out, &s)) in stride.iter_mut().zip(&img.stride).enumerate() {
        *out = usize::try_from(s).map_err(|_| refused(format!("negative stride of plane {p}")))?;
    }
    if img.planes[0] != base {
        return Err(refused("the Y plane is not at the start".into()));
    }
    let (wu, hu) = (w as usize, h as usize);
    let u = stride[0]
        .checked_mul(hu.next_multiple_of(2))
        .ok_or_else(|| refused("size overflow".into()))?;
    let v = stride[1]
        .checked_mul(hu.div_ceil(2))
        .and_then(|n| n.checked_add(u))
        .ok_or_else(|| refused("size overflow".into()))?;
    let layout = I420Layout {
        width: wu,
        height: hu,
        offset: [0, u, v],
        stride,
    };
    if layout.required_len().is_none_or(|n| n > yuv.len()) {
        return Err(refused(format!(
            "layout {layout:?} does not fit {} bytes",
            yuv.len()
        )));
    }
    // SAFETY: both offsets are inside `yuv` (checked just above).
    unsafe {
        img.planes[1] = base.add(u);
        img.planes[2] = base.add(v);
    }
    Ok((img, layout))
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in new() and is destroyed once, here.
        unsafe {
            vpx_sys::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}
