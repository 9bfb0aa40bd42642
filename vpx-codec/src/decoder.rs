//! The VP8 decoder: what a client does with the frames, for tests and fuzz targets.

use std::ffi::CStr;
use std::os::raw::{c_int, c_uint};
use std::ptr;

use vpx_sys::{vpx_codec_ctx_t, vpx_codec_err_t, vpx_img_fmt};

use crate::color::{i420_to_bgrx, I420Layout, Matrix};
use crate::Error;

/// libvpx's text for error `r` of `ctx` (or of no context).
pub(crate) fn error_text(ctx: *mut vpx_codec_ctx_t, r: vpx_codec_err_t) -> String {
    // SAFETY: libvpx returns static strings for error codes, and for a live context its own
    // detail string (or NULL).
    unsafe {
        let mut s = CStr::from_ptr(vpx_sys::vpx_codec_err_to_string(r))
            .to_string_lossy()
            .into_owned();
        if !ctx.is_null() {
            let d = vpx_sys::vpx_codec_error_detail(ctx);
            if !d.is_null() {
                s.push_str(": ");
                s.push_str(&CStr::from_ptr(d).to_string_lossy());
            }
        }
        s
    }
}

/// A decoded frame: packed BGRX rows (`width * 4` bytes each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels, B, G, R, 0.
    pub bgrx: Vec<u8>,
}

/// A VP8 decoder for one stream.
pub struct Vp8Decoder {
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: as for the encoder: owned context, `&mut self` methods only.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// A decoder (single-threaded).
    pub fn new() -> Result<Self, Error> {
        // SAFETY: all-zero is a valid empty context; libvpx initialises it.
        let mut ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: a live boxed context, the VP8 decoder interface, no configuration (defaults).
        let r = unsafe {
            vpx_sys::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx_sys::vpx_codec_vp8_dx(),
                ptr::null(),
                0,
                vpx_sys::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if r != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Libvpx {
                call: "vpx_codec_dec_init",
                message: error_text(ptr::null_mut(), r),
            });
        }
        Ok(Vp8Decoder { ctx })
    }

    /// Decodes one frame as a client would, converting it with the matrix GStreamer assumes for
    /// its height. `Ok(None)` when the data decoded to no picture.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<DecodedFrame>, Error> {
        let len = c_uint::try_from(frame.len()).map_err(|_| Error::Libvpx {
            call: "vpx_codec_decode",
            message: "frame over 4 GiB".into(),
        })?;
        // SAFETY: an initialised decoder; `frame` is live for the call (libvpx copies what it
        // keeps).
        let r = unsafe {
            vpx_sys::vpx_codec_decode(&mut *self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0)
        };
        if r != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Error::Libvpx {
                call: "vpx_codec_decode",
                message: error_text(&mut *self.ctx, r),
            });
        }
        let mut iter: vpx_sys::vpx_codec_iter_t = ptr::null();
        let mut last = None;
        loop {
            // SAFETY: an initialised decoder; the image stays valid until the next decode.
            let img = unsafe { vpx_sys::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: a valid image from libvpx.
            let img = unsafe { &*img };
            if img.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
                return Err(Error::Libvpx {
                    call: "vpx_codec_get_frame",
                    message: format!("format {:?}", img.fmt),
                });
            }
            let (w, h) = (img.d_w as usize, img.d_h as usize);
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let plane = |p: usize, pw: usize, ph: usize| -> Vec<u8> {
                let stride = img.stride[p] as usize;
                let mut v = Vec::with_capacity(pw * ph);
                for y in 0..ph {
                    // SAFETY: libvpx's plane p holds ph rows of at least pw bytes, `stride`
                    // apart (its own layout for the frame it returned).
                    v.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(img.planes[p].add(y * stride), pw)
                    });
                }
                v
            };
            let mut yuv = plane(0, w, h);
            yuv.extend(plane(1, cw, ch));
            yuv.extend(plane(2, cw, ch));
            let layout = I420Layout {
                width: w,
                height: h,
                offset: [0, w * h, w * h + cw * ch],
                stride: [w, cw, cw],
            };
            let bgrx = i420_to_bgrx(&yuv, &layout, Matrix::for_height(h as u32))?;
            last = Some(DecodedFrame {
                width: w as u32,
                height: h as u32,
                bgrx,
            });
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed once.
        unsafe {
            vpx_sys::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}
