//! Video streams on the display channel (sheet `spice-protocol.md` §4.7, §9.8): an area of the
//! primary surface that the guest redraws at video rate goes as a video stream (STREAM_CREATE,
//! one MJPEG or VP8 frame per STREAM_DATA, STREAM_DESTROY) instead of one lossless image per
//! frame.
//!
//! [`VideoStreams`] only decides; the display encoder builds the messages. The rules, after
//! spice-server's (its numbers where we keep them, ours where we differ):
//!
//! * A *candidate* frame is a copy of a whole picture of at least 96×96 pixels
//!   (`RED_STREAM_MIN_SIZE`) onto the primary surface, not cached by the guest, not clipped.
//!   With `streaming-video=filter` it must also look photographic
//!   ([`crate::codec::is_highly_gradual`]); with `all` any picture counts.
//! * Candidates to the same destination, each within [`MAX_GAP`] (400 ms; spice-server's
//!   `RED_STREAM_DETECTION_MAX_DELTA` is 200 ms) of the previous one, start a stream at the
//!   [`START_FRAMES`]th: 5 frames where spice-server waits for 20, so a short clip streams too.
//! * While a stream runs, each candidate to its destination is a stream frame. A smaller
//!   picture inside its area (subtitles, a player's controls) is sent as an image and the stream
//!   runs on: the guest's frames are composed, so the next ones carry it (spice-server clips the
//!   stream with STREAM_CLIP instead, as its frames are the video alone). Anything else drawn
//!   over the area, a surface change or 1 s without a frame (`RED_STREAM_TIMEOUT`) ends it:
//!   STREAM_DESTROY, then the last frame, with those pictures drawn in, again as a lossless
//!   image, so what stays on the client's screen is exact (spice-server also resends a lossy
//!   area losslessly).
//! * Up to [`MAX_STREAMS`] streams at once (two videos on a page), each with its own id,
//!   timeout, report tag and quality.
//! * Codec: the first of the server's list (QEMU's `video-codecs`) that the client announces
//!   (CODEC_MJPEG, CODEC_VP8; a client without MULTI_CODEC plays MJPEG only), the client's
//!   PREFERRED_VIDEO_CODEC_TYPE first, as spice-server orders them.
//! * Bit rate: a client with the STREAM_REPORT capability is asked for a report every
//!   [`REPORT_WINDOW`] frames or [`REPORT_TIMEOUT_MS`]. A report with dropped frames or a late
//!   last frame steps the stream down one rung (fewer bytes a frame: the JPEG quality of
//!   [`QUALITY_LADDER`], the VP8 quality level of [`VP8_CQ_LADDER`]); [`GOOD_REPORTS_TO_STEP_UP`]
//!   clean reports in a row step it back up. A report saying the client cannot decode the
//!   stream (no frames, drops = 0xFFFFFFFF) ends the streams of that codec, and the channel
//!   goes on with the next codec the client announced, or without streams.

use std::time::{Duration, Instant};

use crate::codec::is_highly_gradual_rgb;
use crate::model::Image;
use crate::session::{StreamingVideo, VideoCodec};
use crate::wire::types::Rect;

/// Smallest width and height of a streamed area (`RED_STREAM_MIN_SIZE`).
pub const MIN_SIZE: u32 = 96;
/// Longest gap between two frames that still counts as video. spice-server's
/// `RED_STREAM_DETECTION_MAX_DELTA` is 200 ms; ours is looser so that video on a slow guest
/// still streams (the test rig's TCG guest draws a 480x270 frame every ~250 ms).
pub const MAX_GAP: Duration = Duration::from_millis(400);
/// Frames to the same destination that start a stream.
pub const START_FRAMES: u32 = 5;
/// JPEG qualities a stream moves between (spice-server's MJPEG ladder); a stream starts at the
/// top and steps down when the client reports dropped or late frames.
pub const QUALITY_LADDER: [u8; 7] = [20, 30, 40, 50, 60, 70, 80];
/// VP8 constrained-quality levels (0 best .. 63) of the same rungs, lowest quality first: each
/// gives about the PSNR of the JPEG rung beside it, in 30-70% of its bytes on smooth moving
/// video (`frames::tests::vp8_rungs_match_the_jpeg_ladder` prints and checks the figures).
pub const VP8_CQ_LADDER: [u8; 7] = [34, 26, 14, 10, 6, 3, 1];
/// Frames per STREAM_REPORT asked of the client (spice-server: 5).
pub const REPORT_WINDOW: u32 = 5;
/// Longest time between two STREAM_REPORTs asked of the client (spice-server: 1 s).
pub const REPORT_TIMEOUT_MS: u32 = 1000;
/// Good reports in a row that step the quality back up.
const GOOD_REPORTS_TO_STEP_UP: u32 = 3;
/// How far ahead of the server's multimedia clock a frame is stamped. spice-gtk drops a frame
/// whose time has passed when it arrives; spice-server keeps the client's clock 400 ms behind
/// instead (`MM_TIME_DELTA`), which delays all video by that much.
pub const PLAYOUT_DELAY_MS: u32 = 100;
/// Stream ids go up to this (exclusive) and wrap (`SPICE_MAX_NUM_STREAMS` is 64).
const MAX_STREAM_ID: u32 = 64;
/// Streams (and places about to become streams) at once on one channel; spice-server allows
/// 50, which a desktop never needs and which would hold 50 frames for the lossless resends.
pub const MAX_STREAMS: usize = 8;
/// Places being watched for video rate at once (the one drawn longest ago makes room).
const MAX_CANDIDATES: usize = 2 * MAX_STREAMS;

/// What to do with a copy to the primary surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not video: send it as an image.
    Image,
    /// Create stream `id` over `dest`, then send this copy as its first frame.
    Start { id: u32 },
    /// A frame of running stream `id`.
    Frame { id: u32 },
}

/// A stream that ended: destroy `id`, then draw `last` at `dest` losslessly.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    /// Stream id.
    pub id: u32,
    /// Its destination on the primary surface.
    pub dest: Rect,
    /// The last frame sent.
    pub last: Image,
}

struct Candidate {
    dest: Rect,
    frames: u32,
    last: Instant,
}

struct Active {
    id: u32,
    codec: VideoCodec,
    /// Tag of its reports (a fresh one per stream, so a late report of an ended stream with the
    /// same id is not taken for this one).
    unique_id: u32,
    dest: Rect,
    last: Instant,
    last_frame: Image,
    /// Rung of the quality ladders (index into [`QUALITY_LADDER`] and [`VP8_CQ_LADDER`]).
    quality: usize,
    good_reports: u32,
}

/// What a STREAM_REPORT changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportVerdict {
    /// Not about the running stream (an ended one, or a stale tag): nothing to do.
    Ignored,
    /// The running stream's rung is now this (index into the ladders).
    Rung(usize),
    /// The client cannot decode this codec: end its streams; new streams take the next codec.
    CannotDecode(VideoCodec),
}

/// A running stream as the encoder needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// Tag of its reports.
    pub unique_id: u32,
    /// Its codec.
    pub codec: VideoCodec,
    /// Its rung of the quality ladders.
    pub rung: usize,
}

/// The stream state of one display channel.
pub(crate) struct VideoStreams {
    mode: StreamingVideo,
    /// Codecs for new streams, first choice first (the server's list that the client decodes).
    codecs: Vec<VideoCodec>,
    /// The server's list as configured (the client's preference reorders `codecs` from it).
    configured: Vec<VideoCodec>,
    idle_timeout: Duration,
    /// Places drawn at video rate that are not streams yet (at most [`MAX_CANDIDATES`]).
    candidates: Vec<Candidate>,
    /// Running streams (at most [`MAX_STREAMS`]), none overlapping another.
    active: Vec<Active>,
    next_id: u32,
    next_unique: u32,
}

impl VideoStreams {
    /// Streams per `mode` (`Off` never starts one) in the first of `codecs` (the server's list
    /// that the client decodes, in the server's order; none: no streams).
    pub(crate) fn new(
        mode: StreamingVideo,
        codecs: Vec<VideoCodec>,
        idle_timeout: Duration,
    ) -> Self {
        VideoStreams {
            mode: if codecs.is_empty() {
                StreamingVideo::Off
            } else {
                mode
            },
            configured: codecs.clone(),
            codecs,
            idle_timeout,
            candidates: Vec::new(),
            active: Vec::new(),
            next_id: 0,
            next_unique: 1,
        }
    }

    /// Running stream `id`'s report tag, codec and rung.
    pub(crate) fn stream(&self, id: u32) -> Option<StreamState> {
        self.active
            .iter()
            .find(|a| a.id == id)
            .map(|a| StreamState {
                unique_id: a.unique_id,
                codec: a.codec,
                rung: a.quality,
            })
    }

    /// The codec new streams get.
    pub(crate) fn next_codec(&self) -> Option<VideoCodec> {
        self.codecs.first().copied()
    }

    /// The client's PREFERRED_VIDEO_CODEC_TYPE (`SpiceVideoCodecType`s, most wanted first):
    /// those of its codecs this channel may use go first, in its order; the rest follow in the
    /// server's. Unknown types are ignored. Running streams keep their codec.
    pub(crate) fn prefer(&mut self, wire_types: &[u8]) {
        let mut order: Vec<VideoCodec> = Vec::new();
        for c in wire_types
            .iter()
            .filter_map(|&t| VideoCodec::from_wire_type(t))
        {
            if self.codecs.contains(&c) && !order.contains(&c) {
                order.push(c);
            }
        }
        for &c in &self.configured {
            if self.codecs.contains(&c) && !order.contains(&c) {
                order.push(c);
            }
        }
        self.codecs = order;
    }

    /// A STREAM_REPORT from the client.
    pub(crate) fn on_report(&mut self, r: &crate::wire::display::StreamReport) -> ReportVerdict {
        let Some(a) = self
            .active
            .iter_mut()
            .find(|a| a.id == r.stream_id && a.unique_id == r.unique_id)
        else {
            return ReportVerdict::Ignored;
        };
        if r.num_frames == 0 && r.num_drops == u32::MAX {
            let codec = a.codec;
            self.codecs.retain(|&c| c != codec);
            if self.codecs.is_empty() {
                self.mode = StreamingVideo::Off;
            }
            return ReportVerdict::CannotDecode(codec);
        }
        if r.num_drops > 0 || r.last_frame_delay < 0 {
            a.good_reports = 0;
            a.quality = a.quality.saturating_sub(1);
        } else {
            a.good_reports += 1;
            if a.good_reports >= GOOD_REPORTS_TO_STEP_UP && a.quality + 1 < QUALITY_LADDER.len() {
                a.quality += 1;
                a.good_reports = 0;
            }
        }
        ReportVerdict::Rung(a.quality)
    }

    /// The ids of the running streams.
    #[cfg(test)]
    pub(crate) fn active_ids(&self) -> Vec<u32> {
        self.active.iter().map(|a| a.id).collect()
    }

    /// The destinations of the running streams.
    #[cfg(test)]
    pub(crate) fn active_dests(&self) -> Vec<Rect> {
        self.active.iter().map(|a| a.dest).collect()
    }

    /// A copy of `image` (whole, unclipped when `clipped` is false) to `dest` on the primary
    /// surface at `now`. Ends the running streams it draws over (returned) when it is not one
    /// of their frames or a picture inside one.
    pub(crate) fn on_copy(
        &mut self,
        dest: Rect,
        image: &Image,
        clipped: bool,
        now: Instant,
    ) -> (Verdict, Vec<Ended>) {
        let eligible = self.eligible(dest, image, clipped);
        if let Some(a) = self.active.iter_mut().find(|a| a.dest == dest) {
            if eligible {
                a.last = now;
                a.last_frame = image.clone();
                return (Verdict::Frame { id: a.id }, Vec::new());
            }
        }
        // A smaller picture inside a stream (subtitles, a player's controls) goes as an image
        // and the stream runs on: the guest's next frames have it composed in. It is folded
        // into the last frame, which is what goes losslessly when the stream ends.
        if !clipped {
            if let Some(a) = self
                .active
                .iter_mut()
                .find(|a| a.dest != dest && a.dest.intersect(&dest) == dest)
            {
                if let Some(f) = overlay(&a.last_frame, a.dest, image, dest) {
                    a.last_frame = f;
                    return (Verdict::Image, Vec::new());
                }
            }
        }
        // Not a frame of a running stream: those it draws over end.
        let ended = self.end_where(|a| !a.dest.intersect(&dest).is_empty());
        self.candidates
            .retain(|c| c.dest == dest || c.dest.intersect(&dest).is_empty());
        if !eligible {
            self.candidates.retain(|c| c.dest != dest);
            return (Verdict::Image, ended);
        }
        let frames = match self.candidates.iter_mut().find(|c| c.dest == dest) {
            Some(c) if now.saturating_duration_since(c.last) <= MAX_GAP => {
                c.frames += 1;
                c.last = now;
                c.frames
            }
            Some(c) => {
                (c.frames, c.last) = (1, now);
                1
            }
            None => {
                if self.candidates.len() == MAX_CANDIDATES {
                    // the one drawn longest ago makes room
                    if let Some(i) =
                        (0..self.candidates.len()).min_by_key(|&i| self.candidates[i].last)
                    {
                        self.candidates.swap_remove(i);
                    }
                }
                self.candidates.push(Candidate {
                    dest,
                    frames: 1,
                    last: now,
                });
                1
            }
        };
        if frames < START_FRAMES || self.active.len() >= MAX_STREAMS {
            return (Verdict::Image, ended);
        }
        self.candidates.retain(|c| c.dest != dest);
        let Some(codec) = self.next_codec() else {
            return (Verdict::Image, ended);
        };
        let id = self.free_id();
        let unique_id = self.next_unique;
        self.next_unique = self.next_unique.wrapping_add(1).max(1);
        self.active.push(Active {
            id,
            codec,
            unique_id,
            dest,
            last: now,
            last_frame: image.clone(),
            quality: QUALITY_LADDER.len() - 1,
            good_reports: 0,
        });
        (Verdict::Start { id }, ended)
    }

    /// The next stream id no running stream has (ids wrap at 64, `SPICE_MAX_NUM_STREAMS`).
    fn free_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = (self.next_id + 1) % MAX_STREAM_ID;
            if self.active.iter().all(|a| a.id != id) {
                return id;
            }
        }
    }

    /// Ends the running streams `which` selects.
    fn end_where(&mut self, which: impl Fn(&Active) -> bool) -> Vec<Ended> {
        let mut ended = Vec::new();
        self.active.retain(|a| {
            if which(a) {
                ended.push(Ended {
                    id: a.id,
                    dest: a.dest,
                    last: a.last_frame.clone(),
                });
                false
            } else {
                true
            }
        });
        ended
    }

    /// Something other than a stream frame is drawn over `area` of the primary surface: the
    /// running streams it overlaps end, and candidates there are forgotten.
    pub(crate) fn touch(&mut self, area: Rect) -> Vec<Ended> {
        self.candidates
            .retain(|c| c.dest.intersect(&area).is_empty());
        self.end_where(|a| !a.dest.intersect(&area).is_empty())
    }

    /// Ends running stream `id`.
    pub(crate) fn end_one(&mut self, id: u32) -> Vec<Ended> {
        self.end_where(|a| a.id == id)
    }

    /// Ends the running streams of `codec`.
    pub(crate) fn end_codec(&mut self, codec: VideoCodec) -> Vec<Ended> {
        self.end_where(|a| a.codec == codec)
    }

    /// Ends every running stream (the primary surface goes away or is repainted).
    pub(crate) fn end(&mut self) -> Vec<Ended> {
        self.candidates.clear();
        self.end_where(|_| true)
    }

    /// When the next running stream times out.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.active.iter().map(|a| a.last + self.idle_timeout).min()
    }

    /// Ends the running streams that have had no frame for the idle timeout at `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Ended> {
        let timeout = self.idle_timeout;
        self.end_where(|a| now >= a.last + timeout)
    }

    fn eligible(&self, dest: Rect, image: &Image, clipped: bool) -> bool {
        let whole = dest.width() == image.width() && dest.height() == image.height();
        let fits = whole
            && !clipped
            && image.id() == 0
            && image.width() >= MIN_SIZE
            && image.height() >= MIN_SIZE
            && image.width() <= max_dimension(self.next_codec())
            && image.height() <= max_dimension(self.next_codec());
        match self.mode {
            StreamingVideo::Off => false,
            StreamingVideo::All => fits,
            StreamingVideo::Filter => fits && looks_like_video(image),
        }
    }
}

/// The largest frame side `codec` codes.
fn max_dimension(codec: Option<VideoCodec>) -> u32 {
    match codec {
        Some(VideoCodec::Vp8) => vpx_codec::MAX_DIMENSION,
        _ => crate::codec::jpeg::MAX_DIMENSION,
    }
}

/// `frame` (shown at `frame_dest`) with `image` (a whole picture at `dest`, inside
/// `frame_dest`) drawn over it; `None` if `image` is not whole or not inside.
fn overlay(frame: &Image, frame_dest: Rect, image: &Image, dest: Rect) -> Option<Image> {
    if dest.width() != image.width() || dest.height() != image.height() {
        return None;
    }
    let fw = frame.width() as usize;
    let (x0, y0) = (
        usize::try_from(dest.left - frame_dest.left).ok()?,
        usize::try_from(dest.top - frame_dest.top).ok()?,
    );
    let w = image.width() as usize;
    if x0 + w > fw || y0 + image.height() as usize > frame.height() as usize {
        return None;
    }
    let mut px = frame.pixels().to_vec();
    for (y, row) in image.pixels().chunks_exact(w.max(1)).enumerate() {
        let at = (y0 + y) * fw + x0;
        px[at..at + w].copy_from_slice(row);
    }
    Image::new(0, frame.width(), frame.height(), px).ok()
}

/// spice-server's filter keeps text and UI out of streams: the picture must be photographic.
fn looks_like_video(image: &Image) -> bool {
    is_highly_gradual_rgb(image.pixels(), image.width(), image.height())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(w: u32, h: u32, seed: u32) -> Image {
        crate::testing::photo_image(0, w, h, seed)
    }

    fn streams(mode: StreamingVideo) -> VideoStreams {
        VideoStreams::new(
            mode,
            vec![VideoCodec::Mjpeg],
            crate::server::STREAM_IDLE_TIMEOUT,
        )
    }

    #[test]
    fn five_photo_frames_to_one_place_start_a_stream_then_frames_follow() {
        let mut s = streams(StreamingVideo::Filter);
        let dest = Rect::new(272, 249, 480, 270);
        let t0 = Instant::now();
        for i in 0..START_FRAMES - 1 {
            let t = t0 + Duration::from_millis(u64::from(i) * 100);
            assert_eq!(
                s.on_copy(dest, &photo(480, 270, i), false, t).0,
                Verdict::Image
            );
        }
        let t = t0 + Duration::from_millis(400);
        assert_eq!(
            s.on_copy(dest, &photo(480, 270, 9), false, t).0,
            Verdict::Start { id: 0 }
        );
        let t = t + Duration::from_millis(500);
        assert_eq!(
            s.on_copy(dest, &photo(480, 270, 10), false, t).0,
            Verdict::Frame { id: 0 }
        );
        assert_eq!(s.deadline(), Some(t + crate::server::STREAM_IDLE_TIMEOUT));
        assert!(s.expire(t + Duration::from_millis(999)).is_empty());
        let e = s
            .expire(t + crate::server::STREAM_IDLE_TIMEOUT)
            .pop()
            .expect("timed out");
        assert_eq!((e.id, e.dest), (0, dest));
        assert_eq!(
            e.last,
            photo(480, 270, 10),
            "the last frame, for the lossless resend"
        );
        assert!(s.active_dests().first().copied().is_none());
    }

    #[test]
    fn a_picture_inside_the_stream_keeps_it_and_is_in_the_lossless_resend() {
        let mut s = streams(StreamingVideo::Filter);
        let dest = Rect::new(100, 50, 480, 270);
        let t0 = Instant::now();
        for i in 0..START_FRAMES {
            let t = t0 + Duration::from_millis(u64::from(i) * 100);
            s.on_copy(dest, &photo(480, 270, i), false, t);
        }
        assert_eq!(s.active_dests().first().copied(), Some(dest));
        // subtitles: a 200x20 text picture at (140, 290), inside the stream
        let sub_dest = Rect::new(140, 290, 200, 20);
        let sub = Image::new(0, 200, 20, vec![0x00ff_ffff; 200 * 20]).unwrap();
        let t = t0 + Duration::from_millis(500);
        let (v, ended) = s.on_copy(sub_dest, &sub, false, t);
        assert_eq!((v, ended.is_empty()), (Verdict::Image, true));
        assert_eq!(
            s.active_dests().first().copied(),
            Some(dest),
            "the stream runs on"
        );
        let e = s
            .expire(t + crate::server::STREAM_IDLE_TIMEOUT)
            .pop()
            .unwrap();
        let last = photo(480, 270, START_FRAMES - 1);
        for (i, (&got, &frame)) in e.last.pixels().iter().zip(last.pixels()).enumerate() {
            let (x, y) = (i % 480, i / 480);
            let inside = (40..240).contains(&x) && (240..260).contains(&y);
            assert_eq!(got, if inside { 0x00ff_ffff } else { frame }, "({x}, {y})");
        }
        // one that reaches outside the stream, or is clipped, ends it
        for (d, clipped) in [(Rect::new(90, 50, 200, 20), false), (sub_dest, true)] {
            for i in 0..START_FRAMES {
                s.on_copy(
                    dest,
                    &photo(480, 270, i),
                    false,
                    t0 + Duration::from_secs(9),
                );
            }
            assert_eq!(s.active_dests().first().copied(), Some(dest));
            let (v, ended) = s.on_copy(d, &sub, clipped, t0 + Duration::from_secs(9));
            assert_eq!(
                (v, ended.first().map(|e| e.dest)),
                (Verdict::Image, Some(dest))
            );
        }
    }

    #[test]
    fn gaps_other_places_text_small_cached_or_clipped_pictures_do_not_stream() {
        let dest = Rect::new(0, 0, 200, 100);
        let t0 = Instant::now();
        let run = |s: &mut VideoStreams, img: &Image, clipped: bool, gap_ms: u64| {
            (0..10u64)
                .map(|i| {
                    let t = t0 + Duration::from_millis(i * gap_ms);
                    s.on_copy(dest, img, clipped, t).0
                })
                .filter(|v| *v != Verdict::Image)
                .count()
        };
        let p = photo(200, 100, 1);
        assert_eq!(
            run(&mut streams(StreamingVideo::Filter), &p, false, 401),
            0,
            "too slow"
        );
        assert_eq!(
            run(&mut streams(StreamingVideo::Filter), &p, true, 50),
            0,
            "clipped"
        );
        assert_eq!(
            run(&mut streams(StreamingVideo::Off), &p, false, 50),
            0,
            "off"
        );
        let no_codec = &mut VideoStreams::new(
            StreamingVideo::All,
            Vec::new(),
            crate::server::STREAM_IDLE_TIMEOUT,
        );
        assert_eq!(run(no_codec, &p, false, 50), 0, "client without a codec");
        let text = crate::testing::palette_image(0, 200, 100, 2);
        assert_eq!(
            run(&mut streams(StreamingVideo::Filter), &text, false, 50),
            0,
            "text"
        );
        assert_eq!(
            run(&mut streams(StreamingVideo::All), &text, false, 50),
            6,
            "all"
        );
        let cached = crate::testing::photo_image(7, 200, 100, 1);
        assert_eq!(
            run(&mut streams(StreamingVideo::All), &cached, false, 50),
            0,
            "cached"
        );
        let small = photo(95, 100, 1);
        let mut s = streams(StreamingVideo::All);
        let d = Rect::new(0, 0, 95, 100);
        assert!((0..10).all(|i| {
            s.on_copy(d, &small, false, t0 + Duration::from_millis(i * 10))
                .0
                == Verdict::Image
        }));
    }

    #[test]
    fn places_drawn_at_video_rate_together_stream_at_once_up_to_the_cap() {
        let mut s = streams(StreamingVideo::All);
        let t0 = Instant::now();
        let p = photo(200, 100, 1);
        // two videos side by side, their frames interleaved: both stream
        let (a, b) = (Rect::new(0, 0, 200, 100), Rect::new(300, 0, 200, 100));
        let v: Vec<Verdict> = (0..12u64)
            .map(|i| {
                let d = if i % 2 == 0 { a } else { b };
                s.on_copy(d, &p, false, t0 + Duration::from_millis(i * 10))
                    .0
            })
            .collect();
        assert_eq!(
            v[8..],
            [
                Verdict::Start { id: 0 },
                Verdict::Start { id: 1 },
                Verdict::Frame { id: 0 },
                Verdict::Frame { id: 1 }
            ]
        );
        assert_eq!(s.active_dests(), [a, b]);
        // each times out on its own
        let t = t0 + Duration::from_millis(200);
        s.on_copy(a, &p, false, t);
        let ended = s.expire(t0 + Duration::from_millis(110) + s.idle_timeout);
        assert_eq!(ended.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
        assert_eq!(s.deadline(), Some(t + s.idle_timeout));
        // at most MAX_STREAMS at once
        let mut s = streams(StreamingVideo::All);
        let place = |k: usize| Rect::new(k as i32 * 100, 200, 96, 96);
        let q = photo(96, 96, 2);
        for round in 0..START_FRAMES {
            for k in 0..MAX_STREAMS + 2 {
                let t = t0 + Duration::from_millis(u64::from(round) * 50 + k as u64);
                s.on_copy(place(k), &q, false, t);
            }
        }
        assert_eq!(s.active_dests().len(), MAX_STREAMS);
    }

    #[test]
    fn a_draw_over_the_stream_ends_it_and_a_draw_elsewhere_does_not() {
        let mut s = streams(StreamingVideo::All);
        let dest = Rect::new(100, 100, 200, 100);
        let t0 = Instant::now();
        for i in 0..START_FRAMES {
            s.on_copy(dest, &photo(200, 100, i), false, t0);
        }
        assert_eq!(s.active_dests().first().copied(), Some(dest));
        assert!(
            s.touch(Rect::new(0, 0, 100, 100)).is_empty(),
            "touches only the corner"
        );
        assert!(
            s.touch(Rect::new(299, 199, 5, 5)).len() == 1,
            "overlaps the last pixel"
        );
        assert!(s.active_dests().first().copied().is_none());
        // A copy of another size over it ends it too, and is sent as an image.
        for i in 0..START_FRAMES {
            s.on_copy(dest, &photo(200, 100, i), false, t0);
        }
        let (v, ended) = s.on_copy(Rect::new(150, 150, 96, 96), &photo(96, 96, 1), false, t0);
        assert_eq!(v, Verdict::Image);
        assert_eq!(
            ended.first().map(|e| e.id),
            Some(1),
            "the second stream got id 1"
        );
        assert!(s.end().is_empty());
    }

    fn report(
        id: u32,
        unique: u32,
        frames: u32,
        drops: u32,
        delay: i32,
    ) -> crate::wire::display::StreamReport {
        crate::wire::display::StreamReport {
            stream_id: id,
            unique_id: unique,
            start_frame_mm_time: 0,
            end_frame_mm_time: 0,
            num_frames: frames,
            num_drops: drops,
            last_frame_delay: delay,
            audio_delay: u32::MAX,
        }
    }

    #[test]
    fn reports_step_the_quality_down_on_drops_and_up_after_clean_ones() {
        let mut s = streams(StreamingVideo::All);
        let dest = Rect::new(0, 0, 200, 100);
        let t0 = Instant::now();
        assert_eq!(
            s.on_report(&report(0, 1, 5, 0, 50)),
            ReportVerdict::Ignored,
            "no stream"
        );
        for i in 0..START_FRAMES {
            s.on_copy(dest, &photo(200, 100, i), false, t0);
        }
        let id = s.active_ids()[0];
        let StreamState {
            unique_id: unique,
            rung,
            ..
        } = s.stream(id).unwrap();
        let top = QUALITY_LADDER.len() - 1;
        assert_eq!(rung, top, "starts at the top of the ladder");
        assert_eq!(
            s.on_report(&report(id, unique + 1, 5, 3, 50)),
            ReportVerdict::Ignored
        );
        assert_eq!(
            s.on_report(&report(id, unique, 5, 2, 50)),
            ReportVerdict::Rung(top - 1)
        );
        assert_eq!(
            s.on_report(&report(id, unique, 5, 0, -20)),
            ReportVerdict::Rung(top - 2),
            "late"
        );
        for _ in 0..2 {
            assert_eq!(
                s.on_report(&report(id, unique, 5, 0, 40)),
                ReportVerdict::Rung(top - 2)
            );
        }
        assert_eq!(
            s.on_report(&report(id, unique, 5, 0, 40)),
            ReportVerdict::Rung(top - 1)
        );
        for _ in 0..20 {
            s.on_report(&report(id, unique, 5, 9, 0));
        }
        assert_eq!(
            s.stream(id).unwrap().rung,
            0,
            "the bottom of the ladder holds"
        );
        // "Cannot decode": the stream ends and no other starts on this channel.
        assert_eq!(
            s.on_report(&report(id, unique, 0, u32::MAX, 0)),
            ReportVerdict::CannotDecode(VideoCodec::Mjpeg)
        );
        assert_eq!(s.end().len(), 1);
        for i in 0..10 {
            assert_eq!(
                s.on_copy(dest, &photo(200, 100, i), false, t0).0,
                Verdict::Image
            );
        }
    }

    #[test]
    fn codec_choice_follows_the_server_list_the_client_preference_and_failures() {
        let t0 = Instant::now();
        let mut s = VideoStreams::new(
            StreamingVideo::All,
            vec![VideoCodec::Mjpeg, VideoCodec::Vp8],
            crate::server::STREAM_IDLE_TIMEOUT,
        );
        let start = |s: &mut VideoStreams, x: i32| {
            let dest = Rect::new(x, 0, 200, 100);
            for i in 0..START_FRAMES {
                s.on_copy(dest, &photo(200, 100, i), false, t0);
            }
            let id = *s.active_ids().last().unwrap();
            s.stream(id).unwrap()
        };
        assert_eq!(start(&mut s, 0).codec, VideoCodec::Mjpeg, "server order");
        // the client prefers VP8 (and names a codec this server lacks, H.264 = 3)
        s.prefer(&[3, 2, 1]);
        let vp8 = start(&mut s, 300);
        assert_eq!(vp8.codec, VideoCodec::Vp8, "client preference");
        assert_eq!(s.active_ids().len(), 2, "the MJPEG stream runs on");
        // the client cannot decode VP8 after all: back to MJPEG for new streams
        let id = s.active_ids()[1];
        assert_eq!(
            s.on_report(&report(id, vp8.unique_id, 0, u32::MAX, 0)),
            ReportVerdict::CannotDecode(VideoCodec::Vp8)
        );
        assert_eq!(s.end_codec(VideoCodec::Vp8).len(), 1);
        assert_eq!(start(&mut s, 600).codec, VideoCodec::Mjpeg);
        // a preference for a codec no longer usable changes nothing
        s.prefer(&[2]);
        assert_eq!(s.next_codec(), Some(VideoCodec::Mjpeg));
    }
}
