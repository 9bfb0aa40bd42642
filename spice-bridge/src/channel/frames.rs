//! The frames of the running video streams: a JPEG picture per MJPEG frame, or the next frame
//! of the stream's own VP8 encoder ([`vpx_codec`]), at the quality of the stream's rung.
//!
//! [`super::video::VideoStreams`] decides what streams and on which rung; this turns pictures
//! into frame bytes. A VP8 encoder lives as long as its stream: VP8 frames refer to earlier
//! ones, so every frame of a stream goes through the same encoder, in order, and a new stream
//! starts with a key frame.

use std::collections::HashMap;

use vpx_codec::{Vp8Encoder, Vp8Settings};

use super::video::{StreamState, QUALITY_LADDER, VP8_CQ_LADDER};
use crate::codec::SourceImage;
use crate::session::VideoCodec;

/// libvpx speed for stream frames: its real-time range, fast enough for 1080p at video rate
/// on one core, at a few percent more bytes than the slowest setting.
const VP8_CPU_USED: u8 = 8;

/// The bit-rate ceiling of a VP8 stream: about a bit a pixel at 30 frames a second, far above
/// what constrained quality needs for video, so the rung (not the ceiling) sets the quality.
fn vp8_max_kbps(width: u32, height: u32) -> u32 {
    (u64::from(width) * u64::from(height) * 30 / 1000).clamp(200, 100_000) as u32
}

struct Vp8Stream {
    enc: Vp8Encoder,
    rung: usize,
}

/// The per-stream encoders of one display channel.
#[derive(Default)]
pub(crate) struct FrameEncoders {
    vp8: HashMap<u32, Vp8Stream>,
}

impl FrameEncoders {
    /// The frame of stream `id` (in `state`) for the packed BGRX picture `bgrx` of
    /// `width` x `height`, to be shown at `mm_time` (ms).
    pub(crate) fn frame(
        &mut self,
        id: u32,
        state: StreamState,
        bgrx: &[u8],
        width: u32,
        height: u32,
        mm_time: u32,
    ) -> Result<Vec<u8>, String> {
        match state.codec {
            VideoCodec::Mjpeg => {
                let src = SourceImage::xrgb32(bgrx, width, height);
                let mut jpeg = Vec::new();
                crate::codec::jpeg::encode_into(&src, QUALITY_LADDER[state.rung], &mut jpeg)
                    .map_err(|e| e.to_string())?;
                Ok(jpeg)
            }
            VideoCodec::Vp8 => {
                let cq = VP8_CQ_LADDER[state.rung];
                let s = match self.vp8.entry(id) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let enc = Vp8Encoder::new(Vp8Settings {
                            width,
                            height,
                            cq_level: cq,
                            max_kbps: vp8_max_kbps(width, height),
                            cpu_used: VP8_CPU_USED,
                        })
                        .map_err(|e| e.to_string())?;
                        v.insert(Vp8Stream {
                            enc,
                            rung: state.rung,
                        })
                    }
                };
                if s.enc.size() != (width, height) {
                    return Err(format!(
                        "a {width}x{height} frame for a {:?} stream",
                        s.enc.size()
                    ));
                }
                if s.rung != state.rung {
                    s.enc.set_cq_level(cq).map_err(|e| e.to_string())?;
                    s.rung = state.rung;
                }
                s.enc
                    .encode(bgrx, width as usize * 4, i64::from(mm_time), false)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Stream `id` ended: its encoder goes.
    pub(crate) fn end(&mut self, id: u32) {
        self.vp8.remove(&id);
    }

    /// Every stream ended.
    pub(crate) fn clear(&mut self) {
        self.vp8.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{decode_jpeg, photo_image, psnr};

    fn state(codec: VideoCodec, rung: usize) -> StreamState {
        StreamState {
            unique_id: 1,
            codec,
            rung,
        }
    }

    /// What a test stream shows.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Content {
        /// Smooth gradients moving a few pixels a frame, as filmed video is.
        Smooth,
        /// Fresh per-pixel noise in every frame ([`photo_image`], the bench's `video` workload):
        /// nothing for a codec's motion search to find, the hardest case.
        Grain,
        /// A camera pan over a still grainy picture (the bench's `movie` workload): the grain
        /// moves with the picture.
        Pan,
    }

    /// Frames per test stream.
    const FRAMES: u32 = 30;

    /// The [`FRAMES`] frames of a 480x270 moving picture.
    fn pictures(content: Content) -> Vec<crate::model::Image> {
        let (w, h) = (480u32, 270u32);
        // the pan's still picture, made once: room for 40 frames of 3 columns and 1 row
        let big = (content == Content::Pan).then(|| photo_image(0, w + 3 * 40, h + 40, 0));
        (0..FRAMES)
            .map(|i| match content {
                Content::Grain => photo_image(0, w, h, i),
                Content::Pan => {
                    let big = big.as_ref().expect("made above for a pan");
                    let px = (0..h)
                        .flat_map(|y| (0..w).map(move |x| (x + 3 * i, y + i)))
                        .map(|(x, y)| big.pixels()[(y * big.width() + x) as usize])
                        .collect();
                    crate::model::Image::new(0, w, h, px).unwrap()
                }
                Content::Smooth => smooth(w, h, i),
            })
            .collect()
    }

    /// Frame `i` of smooth gradients moving a few pixels a frame.
    fn smooth(w: u32, h: u32, i: u32) -> crate::model::Image {
        let px = (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let fx = f64::from(x) + 3.0 * f64::from(i);
                    let fy = f64::from(y) + 1.5 * f64::from(i);
                    let r = 128.0 + 100.0 * (fx / 37.0).sin() * (fy / 53.0).cos();
                    let g = 128.0 + 90.0 * ((fx + fy) / 71.0).sin();
                    let b = 128.0 + 110.0 * (fy / 29.0).sin();
                    ((r as u32) << 16) | ((g as u32) << 8) | b as u32
                })
            })
            .collect();
        crate::model::Image::new(0, w, h, px).unwrap()
    }

    /// `pics` 40 ms apart through `codec` at `rung`: (bytes a frame, mean PSNR of what a
    /// client decodes).
    fn run(pics: &[crate::model::Image], codec: VideoCodec, rung: usize) -> (usize, f64) {
        let mut enc = FrameEncoders::default();
        let mut dec = vpx_codec::Vp8Decoder::new().unwrap();
        let (mut bytes, mut db) = (0usize, 0f64);
        let n = pics.len() as u32;
        for (i, pic) in (0u32..).zip(pics) {
            let (w, h) = (pic.width(), pic.height());
            let data = crate::channel::display::bgrx_bytes(pic.pixels());
            let f = enc
                .frame(7, state(codec, rung), &data, w, h, i * 40)
                .unwrap();
            bytes += f.len();
            let shown: Vec<u32> = match codec {
                VideoCodec::Mjpeg => decode_jpeg(&f).unwrap().2,
                VideoCodec::Vp8 => dec
                    .decode(&f)
                    .unwrap()
                    .unwrap()
                    .bgrx
                    .chunks_exact(4)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
                    .collect(),
            };
            db += psnr(&shown, pic.pixels());
        }
        (bytes / n as usize, db / f64::from(n))
    }

    #[test]
    fn vp8_rungs_match_the_jpeg_ladder() {
        for content in [Content::Smooth, Content::Pan, Content::Grain] {
            let pics = pictures(content);
            for rung in 0..QUALITY_LADDER.len() {
                let (jb, jdb) = run(&pics, VideoCodec::Mjpeg, rung);
                let (vb, vdb) = run(&pics, VideoCodec::Vp8, rung);
                eprintln!(
                    "{content:?} rung {rung}: MJPEG q{} {jb} B {jdb:.2} dB | VP8 cq {} {vb} B {vdb:.2} dB",
                    QUALITY_LADDER[rung], VP8_CQ_LADDER[rung]
                );
                // Moving video, smooth or a pan over grain: VP8 takes fewer bytes at every
                // rung for the same quality (within 0.3 dB). Fresh grain in every frame has
                // nothing for motion compensation to find: there VP8 wins on the lower four
                // rungs only.
                if content != Content::Grain || rung <= 3 {
                    assert!(vb < jb, "{content:?} rung {rung}: {vb} >= {jb} bytes");
                    assert!(vdb >= jdb - 0.3, "{content:?} rung {rung}: {vdb:.2} dB");
                }
            }
        }
    }
}
