//! Display channel (reference sheet §4): SET_ACK, then after the client's DISPLAY_INIT the
//! whole current picture (INVAL_ALL_PALETTES, SURFACE_CREATE, MONITORS_CONFIG, one DRAW_COPY per
//! surface, MARK), then every model operation as it happens.
//!
//! The writer encodes operations when it sends them, so the pixmap-cache mirror is always what
//! the client has. A slow client's queue overflows into a refresh (see [`crate::model`]): known
//! surfaces are diffed against the snapshot, so the client ends up with exactly the model's
//! surfaces and pixels.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

use crate::transport::{Reader, Writer};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::frames::FrameEncoders;
use super::video::{self, Ended, ReportVerdict, Verdict, VideoStreams};
use super::{
    ack_window, handle_base, read_msg, BaseAction, ChannelError, MsgWriter, Out, OUTBOX_LEN,
};
use crate::codec::glz::GlzDictionary;
use crate::codec::ClientImageCaps;
use crate::model::{DisplayOp, Image as ModelImage, Monitor, RopKind, Taken};
use crate::session::{ConnCtx, ImageCompression, VideoCodec};
use crate::wire::display::{
    bitmap, cap, image_flags, rop, server_id, Bitmap, Brush, CopyBits, DisplayBase,
    DisplayClientMessage, DrawCopy, DrawFill, DrawMaskOnly, Head, Image, ImageBody,
    InvalAllPalettes, InvalList, InvalPalette, LzPlt, Mark, MonitorsConfig, Palette, PaletteRef,
    QMask, Reset, StreamActivateReport, StreamCreate, StreamData, StreamDestroy, SurfaceCreate,
    SurfaceDestroy, STREAM_FLAG_TOP_DOWN, SURFACE_FLAG_PRIMARY,
};
use crate::wire::types::{Clip, Rect};
use crate::wire::{to_vec, Message};

/// Largest display-channel message accepted from the client.
pub const MAX_DISPLAY_MSG: u32 = 1024;
/// Operations sent per writer turn before the outbox is looked at again.
const BATCH: usize = 64;

/// Server-side mirror of the client's pixmap cache (ids in LRU order, sizes in pixels).
#[derive(Debug, Default)]
pub(crate) struct PixmapCache {
    capacity: u64,
    used: u64,
    lru: VecDeque<(u64, u64)>,
}

impl PixmapCache {
    pub(crate) fn new(capacity: u64) -> Self {
        PixmapCache {
            capacity,
            used: 0,
            lru: VecDeque::new(),
        }
    }

    /// True (and refreshed) if `id` is in the client's cache.
    pub(crate) fn hit(&mut self, id: u64) -> bool {
        if let Some(p) = self.lru.iter().position(|e| e.0 == id) {
            if let Some(e) = self.lru.remove(p) {
                self.lru.push_back(e);
            }
            return true;
        }
        false
    }

    /// Reserves space for `id`; returns the ids the client must drop first, or `None` if the
    /// image cannot be cached.
    pub(crate) fn insert(&mut self, id: u64, pixels: u64) -> Option<Vec<u64>> {
        if id == 0 || pixels > self.capacity {
            return None;
        }
        let mut evicted = Vec::new();
        while self.used + pixels > self.capacity {
            let (eid, ep) = self.lru.pop_front()?;
            self.used -= ep;
            evicted.push(eid);
        }
        self.lru.push_back((id, pixels));
        self.used += pixels;
        Some(evicted)
    }
}

/// Palettes the client keeps (`CLIENT_PALETTE_CACHE_SIZE`).
pub const PALETTE_CACHE_SIZE: usize = 128;

/// Server-side mirror of the client's palette cache (uniques in LRU order).
#[derive(Debug, Default)]
pub(crate) struct PaletteCache {
    lru: VecDeque<u64>,
}

impl PaletteCache {
    /// How to send palette `unique`: (from cache?, id evicted to make room).
    pub(crate) fn lookup(&mut self, unique: u64) -> (bool, Option<u64>) {
        if unique == 0 {
            return (false, None);
        }
        if let Some(p) = self.lru.iter().position(|&u| u == unique) {
            self.lru.remove(p);
            self.lru.push_back(unique);
            return (true, None);
        }
        let evicted = if self.lru.len() >= PALETTE_CACHE_SIZE {
            self.lru.pop_front()
        } else {
            None
        };
        self.lru.push_back(unique);
        (false, evicted)
    }
}

fn clip_of(v: &[Rect]) -> Clip {
    Clip(v.to_vec())
}

/// Per-connection encoder state.
pub(crate) struct DisplayEncoder {
    known: BTreeMap<u32, (u32, u32, u32)>,
    cache: PixmapCache,
    palettes: PaletteCache,
    compression: ImageCompression,
    caps: ClientImageCaps,
    monitors_cap: bool,
    /// JPEG allowed for photo-like pictures (lossy).
    jpeg: bool,
    /// GLZ pictures deflated with zlib (ZLIB_GLZ_RGB) where that is smaller.
    zlib_glz: bool,
    /// Video stream detection and the running streams.
    video: VideoStreams,
    /// The running streams' frame encoders.
    frames: FrameEncoders,
    /// The client announced STREAM_REPORT: ask it for reports on each stream.
    stream_reports: bool,
    /// Streams ended by a refresh whose STREAM_DESTROYs are still to be sent.
    stream_ended_by_refresh: Vec<u32>,
    /// Streams started and stream frames sent since the last [`DisplayEncoder::take_counts`].
    streams: u64,
    vp8_streams: u64,
    stream_frames: u64,
    /// STREAM_REPORTs about running streams since the last take_counts.
    stream_reports_seen: u64,
    /// Images encoded as LZ_PLT and as JPEG since the last [`DisplayEncoder::take_counts`].
    palette_images: u64,
    jpeg_images: u64,
    glz_images: u64,
    zlib_glz_images: u64,
    /// The client's GLZ window as we know it (window 0, so no GLZ, until DISPLAY_INIT).
    glz: GlzDictionary,
    /// The session's next GLZ id (shared with a display channel that replaces this one).
    pub(crate) glz_ids: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Encoded messages for one operation.
type Msgs = Vec<(u16, Vec<u8>)>;

/// What a [`DisplayEncoder`] produced since it was last asked (for the server's statistics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EncodedCounts {
    pub palette_images: u64,
    pub jpeg_images: u64,
    pub glz_images: u64,
    pub zlib_glz_images: u64,
    pub streams: u64,
    pub vp8_streams: u64,
    pub stream_frames: u64,
    pub stream_reports: u64,
}

/// The server's stream codecs (`configured`, in its order) that a client with display caps
/// `caps` decodes. A client without MULTI_CODEC predates codec caps and plays MJPEG only.
fn client_video_codecs(
    configured: &[VideoCodec],
    caps: &crate::wire::types::Caps,
) -> Vec<VideoCodec> {
    configured
        .iter()
        .copied()
        .filter(|c| {
            if caps.has(cap::MULTI_CODEC) {
                caps.has(c.display_cap())
            } else {
                *c == VideoCodec::Mjpeg
            }
        })
        .collect()
}

fn m<M: Message>(v: &M) -> (u16, Vec<u8>) {
    (M::TYPE, to_vec(v))
}

/// The bytes of a picture as B,G,R,X rows (the Spice 32BIT bitmap layout).
pub fn bgrx_bytes(pixels: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels.len() * 4);
    for p in pixels {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out
}

impl DisplayEncoder {
    pub(crate) fn new(
        compression: ImageCompression,
        jpeg: bool,
        video: VideoStreams,
        caps: ClientImageCaps,
        monitors_cap: bool,
    ) -> Self {
        DisplayEncoder {
            known: BTreeMap::new(),
            cache: PixmapCache::default(),
            palettes: PaletteCache::default(),
            compression,
            caps,
            monitors_cap,
            jpeg,
            video,
            frames: FrameEncoders::default(),
            stream_reports: false,
            stream_ended_by_refresh: Vec::new(),
            streams: 0,
            vp8_streams: 0,
            stream_frames: 0,
            stream_reports_seen: 0,
            palette_images: 0,
            jpeg_images: 0,
            zlib_glz: false,
            zlib_glz_images: 0,
            glz_images: 0,
            glz: GlzDictionary::new(0),
            glz_ids: std::sync::Arc::default(),
        }
    }

    pub(crate) fn set_cache_capacity(&mut self, pixels: u64) {
        self.cache = PixmapCache::new(pixels);
    }

    /// What was encoded since the last call (for [`crate::server::ServerStats`]).
    pub(crate) fn take_counts(&mut self) -> EncodedCounts {
        EncodedCounts {
            palette_images: std::mem::take(&mut self.palette_images),
            jpeg_images: std::mem::take(&mut self.jpeg_images),
            glz_images: std::mem::take(&mut self.glz_images),
            zlib_glz_images: std::mem::take(&mut self.zlib_glz_images),
            streams: std::mem::take(&mut self.streams),
            vp8_streams: std::mem::take(&mut self.vp8_streams),
            stream_frames: std::mem::take(&mut self.stream_frames),
            stream_reports: std::mem::take(&mut self.stream_reports_seen),
        }
    }

    /// When the next running video stream times out, if one runs.
    pub(crate) fn stream_deadline(&self) -> Option<std::time::Instant> {
        self.video.deadline()
    }

    /// Ends the running streams that timed out at `now`: STREAM_DESTROY and their last frames
    /// again, losslessly.
    pub(crate) fn expire_streams(&mut self, now: std::time::Instant) -> Msgs {
        let mut out = Msgs::new();
        for e in self.video.expire(now) {
            self.end_stream(e, true, &mut out);
        }
        out
    }

    /// A STREAM_REPORT from the client: the reported stream's quality follows it; a client
    /// that cannot decode the stream gets it ended (and no more streams).
    pub(crate) fn stream_report(&mut self, r: &crate::wire::display::StreamReport) -> Msgs {
        let mut out = Msgs::new();
        match self.video.on_report(r) {
            ReportVerdict::Ignored => {}
            ReportVerdict::Rung(rung) => {
                self.stream_reports_seen += 1;
                debug!(
                    stream = r.stream_id,
                    rung,
                    drops = r.num_drops,
                    delay_ms = r.last_frame_delay,
                    "stream report"
                );
            }
            ReportVerdict::CannotDecode(codec) => {
                warn!(
                    stream = r.stream_id,
                    codec = codec.name(),
                    next = self
                        .video
                        .next_codec()
                        .map_or("none (streaming off)", |c| c.name()),
                    "the client cannot decode this stream codec"
                );
                for e in self.video.end_codec(codec) {
                    self.end_stream(e, true, &mut out);
                }
            }
        }
        out
    }

    /// Destroys stream `e` on the client; with `resend`, draws its last frame over it
    /// losslessly so no lossy pixels stay on the screen.
    fn end_stream(&mut self, e: Ended, resend: bool, out: &mut Msgs) {
        self.frames.end(e.id);
        out.push(m(&StreamDestroy { id: e.id }));
        if resend && self.known.contains_key(&0) {
            // Lossless whatever the JPEG setting: this is what stays on the screen.
            let jpeg = std::mem::replace(&mut self.jpeg, false);
            self.encode_copy(0, e.dest, &e.last, &[], out);
            self.jpeg = jpeg;
        }
    }

    /// Stream messages for a copy to the primary surface: `true` when the copy went as a
    /// stream frame (and needs nothing else), `false` when it is to be sent as an image (a
    /// stream it draws over has been ended in `out` first).
    fn stream_copy(
        &mut self,
        dst: Rect,
        image: &ModelImage,
        clipped: bool,
        out: &mut Msgs,
    ) -> bool {
        let (verdict, ended) = self
            .video
            .on_copy(dst, image, clipped, std::time::Instant::now());
        for e in ended {
            self.end_stream(e, true, out);
        }
        let id = match verdict {
            Verdict::Image => return false,
            Verdict::Start { id } | Verdict::Frame { id } => id,
        };
        let Some(state) = self.video.stream(id) else {
            return false;
        };
        let data = bgrx_bytes(image.pixels());
        let mm_time = super::mm_time().wrapping_add(video::PLAYOUT_DELAY_MS);
        let frame = match self.frames.frame(
            id,
            state,
            &data,
            image.width(),
            image.height(),
            mm_time,
        ) {
            Ok(f) => f,
            Err(e) => {
                // Not expected for the sizes VideoStreams accepts: the picture goes as an
                // image instead (after a STREAM_DESTROY if the stream had started).
                warn!(stream = id, codec = state.codec.name(), error = %e, "stream frame not encoded");
                for e in self.video.end_one(id) {
                    if matches!(verdict, Verdict::Frame { .. }) {
                        self.end_stream(e, false, out);
                    } else {
                        self.frames.end(e.id);
                    }
                }
                return false;
            }
        };
        if let Verdict::Start { id } = verdict {
            self.streams += 1;
            if state.codec == VideoCodec::Vp8 {
                self.vp8_streams += 1;
            }
            out.push(m(&StreamCreate {
                surface_id: 0,
                id,
                flags: STREAM_FLAG_TOP_DOWN,
                codec_type: state.codec.wire_type(),
                stamp: 0,
                stream_width: image.width(),
                stream_height: image.height(),
                src_width: image.width(),
                src_height: image.height(),
                dest: dst,
                clip: Clip::default(),
            }));
            if self.stream_reports {
                out.push(m(&StreamActivateReport {
                    stream_id: id,
                    unique_id: state.unique_id,
                    max_window_size: video::REPORT_WINDOW,
                    timeout_ms: video::REPORT_TIMEOUT_MS,
                }));
            }
        }
        self.stream_frames += 1;
        out.push(m(&StreamData {
            id,
            multi_media_time: mm_time,
            data: frame,
        }));
        true
    }

    /// Before `op` is encoded: a draw over a running stream's area ends it (with the
    /// lossless resend), a change of the primary surface ends it without one.
    fn streams_before(&mut self, op: &DisplayOp, out: &mut Msgs) {
        let area = match op {
            DisplayOp::Fill {
                surface: 0, rect, ..
            }
            | DisplayOp::Rop {
                surface: 0, rect, ..
            } => Some(*rect),
            DisplayOp::CopyBits {
                surface: 0,
                src,
                dst,
                ..
            } => {
                let from = Rect::new(src.x, src.y, dst.width() as i32, dst.height() as i32);
                for e in self.video.touch(from) {
                    self.end_stream(e, true, out);
                }
                Some(*dst)
            }
            DisplayOp::CopySurface {
                surface: 0, dst, ..
            } => Some(*dst),
            DisplayOp::CopySurface {
                src_surface: 0,
                src_area,
                ..
            } => Some(*src_area),
            DisplayOp::SurfaceCreate { id: 0, .. }
            | DisplayOp::SurfaceDestroy { id: 0 }
            | DisplayOp::Reset => {
                for e in self.video.end() {
                    self.end_stream(e, false, out);
                }
                None
            }
            _ => None,
        };
        for e in area.map(|a| self.video.touch(a)).unwrap_or_default() {
            self.end_stream(e, true, out);
        }
    }

    /// The GLZ window the client announced in DISPLAY_INIT (`glz_dictionary_window_size`,
    /// pixels); 0 or negative (spice-html5) means the client gets no GLZ.
    pub(crate) fn set_glz_window(&mut self, pixels: i32) {
        self.glz =
            GlzDictionary::new(i64::from(pixels)).starting_at(self.glz_ids.load(Ordering::Relaxed));
    }

    pub(crate) fn set_compression(&mut self, c: ImageCompression) {
        self.compression = c;
    }

    /// Whether photo-like pictures may go as JPEG, and GLZ pictures deflated with zlib, from
    /// now on (the WAN options, after the main channel's network test).
    pub(crate) fn set_wan(&mut self, jpeg: bool, zlib_glz: bool) {
        self.jpeg = jpeg;
        self.zlib_glz = zlib_glz;
    }

    /// The image body for `img` under the current compression setting; palette pictures go
    /// as 8-bit BITMAPs using the palette cache (messages to send first go to `out`).
    fn image_body(&mut self, img: &ModelImage, out: &mut Msgs) -> ImageBody {
        if let Some(p) = img.palette() {
            let (cached, evicted) = self.palettes.lookup(p.palette.unique);
            if let Some(id) = evicted {
                out.push(m(&InvalPalette { id }));
            }
            let (palette, flags) = if cached {
                (
                    PaletteRef::FromCache(p.palette.unique),
                    bitmap::TOP_DOWN | bitmap::PAL_FROM_CACHE,
                )
            } else {
                let cache_me = if p.palette.unique != 0 {
                    bitmap::PAL_CACHE_ME
                } else {
                    0
                };
                (
                    PaletteRef::Inline(Palette {
                        unique: p.palette.unique,
                        entries: p.palette.entries.clone(),
                    }),
                    bitmap::TOP_DOWN | cache_me,
                )
            };
            return ImageBody::Bitmap(Bitmap {
                format: bitmap::FMT_8BIT,
                flags,
                width: img.width(),
                height: img.height(),
                stride: img.width(),
                palette,
                data: p.indices.to_vec(),
            });
        }
        let data = bgrx_bytes(img.pixels());
        if let Some(body) = crate::channel::display::compress(
            self.compression,
            self.jpeg,
            self.zlib_glz,
            self.caps,
            &mut self.glz,
            img,
            &data,
        ) {
            match body {
                ImageBody::LzPlt(_) => self.palette_images += 1,
                ImageBody::Jpeg(_) => self.jpeg_images += 1,
                ImageBody::Glz(_) | ImageBody::ZlibGlz { .. } => {
                    self.glz_images += 1;
                    if matches!(body, ImageBody::ZlibGlz { .. }) {
                        self.zlib_glz_images += 1;
                    }
                    self.glz_ids.store(self.glz.next_id(), Ordering::Relaxed);
                }
                _ => {}
            }
            return body;
        }
        ImageBody::Bitmap(Bitmap {
            format: bitmap::FMT_32BIT,
            flags: bitmap::TOP_DOWN,
            width: img.width(),
            height: img.height(),
            stride: img.width() * 4,
            palette: PaletteRef::None,
            data,
        })
    }

    /// DRAW_COPY of `image` to `dst` on `surface` (known to the client), with the pixmap
    /// cache and the image codecs.
    fn encode_copy(
        &mut self,
        surface: u32,
        dst: Rect,
        image: &ModelImage,
        clip: &[Rect],
        out: &mut Msgs,
    ) {
        let base = |surface: u32, bbox: Rect, clip: &[Rect]| DisplayBase {
            surface_id: surface,
            bbox,
            clip: clip_of(clip),
        };
        let pixels = u64::from(image.width()) * u64::from(image.height());
        let (body, flags) = if image.id() != 0 && self.cache.hit(image.id()) {
            (ImageBody::FromCache, 0)
        } else {
            let body = self.image_body(image, out);
            match self.cache.insert(image.id(), pixels) {
                Some(evicted) => {
                    if !evicted.is_empty() {
                        out.push(m(&InvalList(evicted)));
                    }
                    (body, image_flags::CACHE_ME)
                }
                None => (body, 0),
            }
        };
        out.push(m(&DrawCopy {
            base: base(surface, dst, clip),
            image: Image {
                id: image.id(),
                flags,
                width: image.width(),
                height: image.height(),
                body,
            },
            src_area: Rect::new(0, 0, image.width() as i32, image.height() as i32),
            rop: rop::OP_PUT,
            scale_mode: 0,
            mask: QMask::default(),
        }));
    }

    fn monitors_msg(max_allowed: u16, monitors: &[Monitor]) -> (u16, Vec<u8>) {
        m(&MonitorsConfig {
            max_allowed,
            heads: monitors
                .iter()
                .map(|mo| Head {
                    monitor_id: mo.id,
                    surface_id: 0,
                    width: mo.width,
                    height: mo.height,
                    x: mo.x,
                    y: mo.y,
                    flags: 0,
                })
                .collect(),
        })
    }

    /// Encodes one operation (`monitors` is the model's current layout, used after a primary
    /// surface create). Operations on surfaces the client does not have are dropped.
    pub(crate) fn encode(
        &mut self,
        op: &DisplayOp,
        monitors: &dyn Fn() -> (u16, Vec<Monitor>),
    ) -> Msgs {
        let mut out = Msgs::new();
        for id in std::mem::take(&mut self.stream_ended_by_refresh) {
            out.push(m(&StreamDestroy { id }));
        }
        if self.known.contains_key(&0) {
            self.streams_before(op, &mut out);
        }
        let base = |surface: u32, bbox: Rect, clip: &[Rect]| DisplayBase {
            surface_id: surface,
            bbox,
            clip: clip_of(clip),
        };
        match op {
            DisplayOp::SurfaceCreate {
                id,
                width,
                height,
                format,
            } => {
                let want = (*width, *height, format.wire());
                match self.known.get(id) {
                    Some(k) if *k == want => return out,
                    Some(_) => out.push(m(&SurfaceDestroy { surface_id: *id })),
                    None => {}
                }
                self.known.insert(*id, want);
                out.push(m(&SurfaceCreate {
                    surface_id: *id,
                    width: *width,
                    height: *height,
                    format: format.wire(),
                    flags: if *id == 0 { SURFACE_FLAG_PRIMARY } else { 0 },
                }));
                if *id == 0 && self.monitors_cap {
                    let (max, mons) = monitors();
                    if !mons.is_empty() {
                        out.push(Self::monitors_msg(max, &mons));
                    }
                }
            }
            DisplayOp::SurfaceDestroy { id } => {
                if self.known.remove(id).is_some() {
                    out.push(m(&SurfaceDestroy { surface_id: *id }));
                }
            }
            DisplayOp::Copy {
                surface,
                dst,
                image,
                clip,
            } => {
                if !self.known.contains_key(surface) {
                    return out;
                }
                // A clip that leaves the whole destination visible (the Linux qxl driver sends
                // its one dirty rectangle as a clip) does not clip.
                let clipped = !clip.is_empty() && !clip.iter().any(|c| c.intersect(dst) == *dst);
                if *surface == 0 && self.stream_copy(*dst, image, clipped, &mut out) {
                    return out;
                }
                self.encode_copy(*surface, *dst, image, clip, &mut out);
            }
            DisplayOp::CopySurface {
                src_surface,
                src_area,
                surface,
                dst,
                clip,
            } => {
                if !self.known.contains_key(surface) || !self.known.contains_key(src_surface) {
                    return out;
                }
                out.push(m(&DrawCopy {
                    base: base(*surface, *dst, clip),
                    image: Image {
                        id: 0,
                        flags: 0,
                        width: self.known[src_surface].0,
                        height: self.known[src_surface].1,
                        body: ImageBody::Surface(*src_surface),
                    },
                    src_area: *src_area,
                    rop: rop::OP_PUT,
                    scale_mode: 0,
                    mask: QMask::default(),
                }));
            }
            DisplayOp::Fill {
                surface,
                rect,
                color,
                clip,
            } => {
                if self.known.contains_key(surface) {
                    out.push(m(&DrawFill {
                        base: base(*surface, *rect, clip),
                        brush: Brush::Solid(*color),
                        rop: rop::OP_PUT,
                        mask: QMask::default(),
                    }));
                }
            }
            DisplayOp::Rop {
                surface,
                rect,
                kind,
                clip,
            } => {
                if self.known.contains_key(surface) {
                    let id = match kind {
                        RopKind::Blackness => server_id::DRAW_BLACKNESS,
                        RopKind::Whiteness => server_id::DRAW_WHITENESS,
                        RopKind::Invert => server_id::DRAW_INVERS,
                    };
                    out.push((
                        id,
                        to_vec(&DrawMaskOnly {
                            base: base(*surface, *rect, clip),
                            mask: QMask::default(),
                        }),
                    ));
                }
            }
            DisplayOp::CopyBits {
                surface,
                src,
                dst,
                clip,
            } => {
                if self.known.contains_key(surface) {
                    out.push(m(&CopyBits {
                        base: base(*surface, *dst, clip),
                        src_pos: *src,
                    }));
                }
            }
            DisplayOp::Monitors {
                max_allowed,
                monitors,
            } => {
                if self.monitors_cap && self.known.contains_key(&0) && !monitors.is_empty() {
                    out.push(Self::monitors_msg(*max_allowed, monitors));
                }
            }
            DisplayOp::Mark => {
                if self.known.contains_key(&0) {
                    out.push(m(&Mark {}));
                }
            }
            DisplayOp::Reset => out.push(m(&Reset {})),
            DisplayOp::Ping(id) => out.push(m(&crate::wire::base::Ping {
                id: *id,
                timestamp: 0,
                padding: 0,
            })),
        }
        out
    }

    /// Operations that bring the client from what it knows to `snapshot` (destroys for
    /// surfaces the snapshot lacks first), followed by a MARK.
    pub(crate) fn refresh_ops(&mut self, snapshot: Vec<DisplayOp>) -> Vec<DisplayOp> {
        // The snapshot repaints everything: running streams just stop. Their destroys are sent
        // with the next operation (the snapshot's surface create).
        self.stream_ended_by_refresh = self.video.end().into_iter().map(|e| e.id).collect();
        self.frames.clear();
        let ids: Vec<u32> = snapshot
            .iter()
            .filter_map(|o| match o {
                DisplayOp::SurfaceCreate { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let mut ops: Vec<DisplayOp> = self
            .known
            .keys()
            .filter(|k| !ids.contains(k))
            .map(|&id| DisplayOp::SurfaceDestroy { id })
            .collect();
        ops.extend(snapshot);
        ops.push(DisplayOp::Mark);
        ops
    }
}

/// Compressed body for `img` (its pixels as B,G,R,X in `bgrx`), or `None` to send a plain
/// BITMAP (compression off, a tiny image, or compression not smaller).
///
/// In the GLZ modes (`Auto` = auto_glz, `Glz`), where LZ_RGB would be chosen and the client has
/// a GLZ window (`glz`), the picture goes as GLZ_RGB and is recorded in `glz`: a GLZ body, once
/// made, must be sent (the client waits for every image id). A picture larger than the window
/// goes as LZ_RGB, as spice-server does. With `zlib_glz` the GLZ stream is deflated on top
/// (ZLIB_GLZ_RGB) when that is smaller, as spice-server does on a WAN.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compress(
    mode: ImageCompression,
    jpeg: bool,
    zlib_glz: bool,
    caps: ClientImageCaps,
    glz: &mut GlzDictionary,
    img: &ModelImage,
    bgrx: &[u8],
) -> Option<ImageBody> {
    use crate::codec::{
        choose_codec, encode, encode_palette_lz, with_jpeg, CompressionPolicy, ImageCodec,
        SourceImage, MIN_SIZE_TO_COMPRESS,
    };
    let (policy, glz_mode) = match mode {
        ImageCompression::Off => return None,
        ImageCompression::Lz => (CompressionPolicy::Lz, false),
        ImageCompression::Lz4 => (CompressionPolicy::Lz4, false),
        ImageCompression::Quic => (CompressionPolicy::Quic, false),
        ImageCompression::Auto => (CompressionPolicy::Auto, true),
        ImageCompression::AutoLz => (CompressionPolicy::Auto, false),
        ImageCompression::Glz => (CompressionPolicy::Lz, true),
    };
    if (bgrx.len() as u64) < MIN_SIZE_TO_COMPRESS {
        return None;
    }
    let src = SourceImage::xrgb32(bgrx, img.width(), img.height());
    if let Some(p) = encode_palette_lz(policy, caps, &src) {
        return Some(ImageBody::LzPlt(LzPlt {
            flags: 0,
            palette: PaletteRef::Inline(Palette {
                unique: 0,
                entries: p.entries,
            }),
            data: p.lz,
        }));
    }
    let codec = with_jpeg(choose_codec(policy, caps, &src), jpeg);
    if glz_mode && codec == ImageCodec::LzRgb && glz.window_pixels() > 0 {
        let mut body = Vec::new();
        if crate::codec::glz::encode_glz_into(glz, &src, &mut body).is_ok() {
            // Sent whatever happens now: the id is taken. The body always holds data_size and
            // the 33-byte header, so the slice never falls back to empty.
            let glz_stream = body.get(4..).unwrap_or_default();
            if let (true, Ok(glz_size)) = (zlib_glz, u32::try_from(glz_stream.len())) {
                let data = crate::codec::glz::deflate(glz_stream);
                if data.len() < glz_stream.len() {
                    return Some(ImageBody::ZlibGlz { glz_size, data });
                }
            }
            return Some(ImageBody::Glz(glz_stream.to_vec()));
        }
    }
    let e = encode(codec, &src).ok()?;
    let data = e.body.get(4..)?.to_vec();
    match e.codec {
        ImageCodec::LzRgb => Some(ImageBody::LzRgb(data)),
        ImageCodec::Lz4 => Some(ImageBody::Lz4(data)),
        ImageCodec::Quic => Some(ImageBody::Quic(data)),
        ImageCodec::Jpeg => Some(ImageBody::Jpeg(data)),
        ImageCodec::Bitmap => None,
    }
}

fn count(stats: &crate::server::ServerStats, c: EncodedCounts) {
    stats
        .palette_images
        .fetch_add(c.palette_images, Ordering::Relaxed);
    stats
        .jpeg_images
        .fetch_add(c.jpeg_images, Ordering::Relaxed);
    stats.glz_images.fetch_add(c.glz_images, Ordering::Relaxed);
    stats
        .zlib_glz_images
        .fetch_add(c.zlib_glz_images, Ordering::Relaxed);
    stats.streams.fetch_add(c.streams, Ordering::Relaxed);
    stats
        .vp8_streams
        .fetch_add(c.vp8_streams, Ordering::Relaxed);
    stats
        .stream_frames
        .fetch_add(c.stream_frames, Ordering::Relaxed);
    stats
        .stream_reports
        .fetch_add(c.stream_reports, Ordering::Relaxed);
}

async fn send_all<W: AsyncWrite + Unpin>(
    w: &mut MsgWriter<W>,
    msgs: Msgs,
    images: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    for (t, b) in msgs {
        if t == server_id::DRAW_COPY {
            images.fetch_add(1, Ordering::Relaxed);
        }
        w.send(t, &b).await?;
    }
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts queued draws dropped because a later one paints over them.
fn superseded(stats: &crate::session::ServerStats, n: u64) {
    if n > 0 {
        stats.draws_superseded.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) async fn run(ctx: ConnCtx, mut rd: Reader, wr: Writer) -> Result<(), ChannelError> {
    let (out, mut out_rx) = mpsc::channel::<Out>(OUTBOX_LEN);
    let model = ctx.shared.model.clone();
    let feed = model.subscribe_display();
    let bytes = ctx.shared.stats.display_bytes.clone();
    let mut w =
        MsgWriter::new(wr, ctx.linked.header, bytes).one_write_per_message(ctx.transport.tls);
    w.start_acks(ack_window(&ctx.session)).await?;
    w.flush().await?;
    *lock(&ctx.session.display_tx) = Some(out.clone());
    let mut enc = DisplayEncoder::new(
        ctx.shared.config.compression,
        ctx.shared.config.jpeg_wan.enabled(false),
        VideoStreams::new(
            ctx.shared.config.streaming_video,
            client_video_codecs(&ctx.shared.config.video_codecs, &ctx.linked.channel_caps),
            ctx.shared.config.stream_idle_timeout,
        ),
        ClientImageCaps {
            lz4: ctx.linked.channel_caps.has(cap::LZ4_COMPRESSION),
            palette_lz: ctx.linked.channel_caps.has(cap::COMPOSITE),
        },
        ctx.linked.channel_caps.has(cap::MONITORS_CONFIG),
    );
    enc.stream_reports = ctx.linked.channel_caps.has(cap::STREAM_REPORT);
    enc.glz_ids = ctx.session.glz_next_id.clone();
    let shared = ctx.shared.clone();
    let session = ctx.session.clone();
    let feed2 = feed.clone();
    let writer = async move {
        let mut active = false;
        let mut deferred_pings: Vec<u32> = Vec::new();
        let mut pending: VecDeque<DisplayOp> = VecDeque::new();
        let monitors = || model.current_monitors();
        loop {
            let open = w.window_open();
            let ready = active && open && !pending.is_empty();
            // A running video stream ends after its idle timeout (checked once the queued
            // operations are out, so a frame still in `pending` is not taken for a pause).
            let stream_deadline = enc.stream_deadline();
            let stream_sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                stream_deadline.unwrap_or_else(std::time::Instant::now),
            ));
            tokio::select! {
                biased;
                item = out_rx.recv() => match item {
                    None => break,
                    Some(Out::Ack) => w.acked(),
                    Some(Out::StreamReport(r)) => {
                        let msgs = enc.stream_report(&r);
                        count(&shared.stats, enc.take_counts());
                        send_all(&mut w, msgs, &shared.stats.images_sent).await?;
                    }
                    Some(Out::Msg(t, b)) => w.send(t, &b).await?,
                    // a ping before DISPLAY_INIT waits until the first snapshot is taken, so its
                    // PONG proves the client is past the initial picture
                    Some(Out::Ping(id)) if !active => deferred_pings.push(id),
                    Some(Out::Ping(id)) => {
                        // after everything the model queued so far
                        match feed2.take() {
                            Taken::Items(v) => {
                                superseded(&shared.stats, super::pending::queue(&mut pending, v))
                            }
                            Taken::Refresh => {
                                pending.retain(|o| matches!(o, DisplayOp::Ping(_)));
                                let snap = model.display_refresh(&feed2);
                                pending.extend(enc.refresh_ops(snap));
                            }
                        }
                        pending.push_back(DisplayOp::Ping(id));
                    }
                    // SpiceImageCompression: 1 off, 2 auto_glz, 3 auto_lz, 4 quic, 5 glz,
                    // 6 lz, 7 lz4.
                    Some(Out::VideoCodecs(v)) => enc.video.prefer(&v),
                    Some(Out::Compression(c)) => enc.set_compression(match c {
                        1 => ImageCompression::Off,
                        2 => ImageCompression::Auto,
                        3 => ImageCompression::AutoLz,
                        4 => ImageCompression::Quic,
                        5 => ImageCompression::Glz,
                        7 => ImageCompression::Lz4,
                        _ => ImageCompression::Lz,
                    }),
                    Some(Out::DisplayInit(init)) => {
                        enc.set_cache_capacity(init.pixmap_cache_size.max(0) as u64);
                        enc.set_glz_window(init.glz_dictionary_window_size);
                        w.send_msg(&InvalAllPalettes {}).await?;
                        active = true;
                        match feed2.take() {
                            Taken::Refresh => {
                                let snap = model.display_refresh(&feed2);
                                pending.extend(enc.refresh_ops(snap));
                            }
                            Taken::Items(v) => {
                                superseded(&shared.stats, super::pending::queue(&mut pending, v))
                            }
                        }
                        for id in deferred_pings.drain(..) {
                            w.send_msg(&crate::wire::base::Ping { id, timestamp: 0, padding: 0 }).await?;
                        }
                    }
                },
                _ = std::future::ready(()), if ready => {
                    // the main channel's network test may end after this channel linked
                    let low = session.low_bandwidth.load(Ordering::Relaxed);
                    enc.set_wan(
                        shared.config.jpeg_wan.enabled(low),
                        shared.config.zlib_glz_wan.enabled(low),
                    );
                    for _ in 0..BATCH {
                        if !w.window_open() { break; }
                        let Some(op) = pending.pop_front() else { break };
                        let msgs = enc.encode(&op, &monitors);
                        count(&shared.stats, enc.take_counts());
                        send_all(&mut w, msgs, &shared.stats.images_sent).await?;
                    }
                }
                _ = stream_sleep, if stream_deadline.is_some() && pending.is_empty() => {
                    let msgs = enc.expire_streams(std::time::Instant::now());
                    send_all(&mut w, msgs, &shared.stats.images_sent).await?;
                }
                _ = feed2.notify.notified(), if active && open && pending.is_empty() => {
                    match feed2.take() {
                        Taken::Items(v) => {
                                superseded(&shared.stats, super::pending::queue(&mut pending, v))
                            }
                        Taken::Refresh => {
                            pending.retain(|o| matches!(o, DisplayOp::Ping(_)));
                            let snap = model.display_refresh(&feed2);
                            pending.extend(enc.refresh_ops(snap));
                        }
                    }
                }
            }
            if out_rx.is_empty() && (pending.is_empty() || !w.window_open()) {
                w.flush().await?;
            }
        }
        Ok::<(), ChannelError>(())
    };
    let reader = async {
        let mut synced = false;
        let mut inited = false;
        while let Some((t, body)) = read_msg(&mut rd, ctx.linked.header, MAX_DISPLAY_MSG).await? {
            match handle_base(t, &body, true, &mut synced)? {
                BaseAction::NotBase => {}
                BaseAction::Ack => {
                    super::push(&out, Out::Ack)?;
                    continue;
                }
                BaseAction::Pong(id) => {
                    if let Some(tx) = lock(&ctx.session.pongs).remove(&id) {
                        let _ = tx.send(());
                    }
                    continue;
                }
                BaseAction::Done => continue,
            }
            let msg = DisplayClientMessage::parse(t, &body).map_err(|err| match err {
                crate::wire::WireError::UnknownMessage { .. } => ChannelError::Unknown(t),
                err => ChannelError::Malformed { msg_type: t, err },
            })?;
            match msg {
                DisplayClientMessage::Init(i) => {
                    if inited {
                        return Err(ChannelError::OutOfOrder("second DISPLAY_INIT".into()));
                    }
                    inited = true;
                    super::push(&out, Out::DisplayInit(i))?;
                }
                _ if !inited => {
                    return Err(ChannelError::OutOfOrder(format!(
                        "display message {t} before DISPLAY_INIT"
                    )))
                }
                DisplayClientMessage::PreferredCompression(p) => {
                    super::push(&out, Out::Compression(p.image_compression))?
                }
                DisplayClientMessage::PreferredVideoCodecType(v) => {
                    super::push(&out, Out::VideoCodecs(v))?
                }
                // Reports may trail a stream that has just ended: the writer ignores those.
                DisplayClientMessage::StreamReport(r) => super::push(&out, Out::StreamReport(r))?,
            }
        }
        Ok::<(), ChannelError>(())
    };
    let r = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    feed.close();
    {
        let mut d = lock(&ctx.session.display_tx);
        if d.as_ref().is_some_and(|tx| tx.same_channel(&out)) {
            *d = None;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixmap_cache_evicts_least_recently_used_and_refuses_oversize() {
        let mut c = PixmapCache::new(100);
        assert_eq!(c.insert(1, 40), Some(vec![]));
        assert_eq!(c.insert(2, 40), Some(vec![]));
        assert!(c.hit(1));
        assert_eq!(c.insert(3, 40), Some(vec![2]));
        assert!(c.hit(1) && c.hit(3) && !c.hit(2));
        assert_eq!(c.insert(4, 101), None);
        assert_eq!(c.insert(0, 1), None, "id 0 is never cached");
    }

    #[test]
    fn palette_cache_sends_once_and_evicts_the_oldest() {
        let mut c = PaletteCache::default();
        assert_eq!(c.lookup(1), (false, None));
        assert_eq!(c.lookup(1), (true, None));
        for u in 2..=PALETTE_CACHE_SIZE as u64 {
            assert_eq!(c.lookup(u), (false, None));
        }
        assert_eq!(c.lookup(500), (false, Some(1)));
        assert_eq!(c.lookup(0), (false, None));
        assert_eq!(c.lookup(0), (false, None), "unique 0 is never cached");
    }
}
