//! The display model: what the guest has drawn, kept as pixels, plus the cursor and monitors.
//!
//! This is the API the QXL device drives. Every call validates its arguments, applies the
//! operation to the model's own surfaces (so late-joining clients and UPDATE_AREA see the
//! current picture) and queues it to each connected display/cursor channel without ever
//! blocking: a channel's queue has a byte budget, and when a slow client's queue overflows its
//! pending operations are dropped and the channel sends a full refresh (a snapshot of the model)
//! once the client reads again.
//!
//! Pixels are `u32` values `0xAARRGGBB` (the alpha byte is ignored on xRGB surfaces), which is
//! the little-endian B,G,R,X byte order of the Spice 32-bit formats.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

pub use crate::wire::types::{Point, Rect};

/// Largest surface width/height accepted.
pub const MAX_SURFACE_DIM: u32 = 16384;
/// Largest cursor width/height accepted.
pub const MAX_CURSOR_DIM: u16 = 512;
/// Most surfaces the model holds.
pub const MAX_SURFACES: usize = 1024;
/// Most monitors.
pub const MAX_MONITORS: usize = 16;
/// Most clip rectangles per draw.
pub const MAX_CLIPS: usize = crate::wire::types::MAX_CLIP_RECTS;
/// Queue cost charged per operation besides its pixel bytes.
const OP_COST: usize = 64;

/// Why a model call was refused (the model is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// No surface with that id.
    #[error("surface {0} does not exist")]
    NoSurface(u32),
    /// A surface with that id exists already.
    #[error("surface {0} exists already")]
    SurfaceExists(u32),
    /// Size zero or above the bound.
    #[error("bad size {0}x{1}")]
    BadSize(u32, u32),
    /// Too many surfaces.
    #[error("more than {MAX_SURFACES} surfaces")]
    TooManySurfaces,
    /// A rectangle with left > right or top > bottom.
    #[error("rectangle {0:?} is inverted")]
    BadRect(Rect),
    /// Image and destination sizes differ.
    #[error("image is {0}x{1} but destination is {2}x{3}")]
    SizeMismatch(u32, u32, u32, u32),
    /// Pixel buffer length does not match the size.
    #[error("buffer has {got} elements, need {need}")]
    BufferSize {
        /// needed
        need: usize,
        /// given
        got: usize,
    },
    /// Too many clip rectangles or monitors.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// Surface 0 (primary) must be xRGB.
    #[error("the primary surface must be 32-bit xRGB")]
    PrimaryFormat,
}

/// Surface pixel formats the model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurfaceFormat {
    /// 32-bit xRGB (`SPICE_SURFACE_FMT_32_xRGB` = 32)
    Xrgb32,
    /// 32-bit ARGB (`SPICE_SURFACE_FMT_32_ARGB` = 96)
    Argb32,
}

impl SurfaceFormat {
    /// The `SpiceSurfaceFmt` value.
    pub fn wire(self) -> u32 {
        match self {
            SurfaceFormat::Xrgb32 => 32,
            SurfaceFormat::Argb32 => 96,
        }
    }
}

/// A colour palette for 8-bit images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    /// Cache key (0 = never cache); the same non-zero key must always mean the same entries.
    pub unique: u64,
    /// 0x00RRGGBB entries (at most 256).
    pub entries: Vec<u32>,
}

/// An 8-bit palette picture as it came from the guest (sent as a palette BITMAP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaletteImage {
    /// the palette
    pub palette: Arc<Palette>,
    /// one index per pixel, rows top first
    pub indices: Arc<[u8]>,
}

/// A source picture for [`DisplayModel::draw_copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    id: u64,
    width: u32,
    height: u32,
    pixels: Arc<[u32]>,
    palette: Option<PaletteImage>,
}

impl Image {
    /// A `width` x `height` picture, rows top first, `pixels.len() == width * height`.
    /// `id` is the cache key: 0 = never cache; the same non-zero id must always mean the same
    /// pixels (QXL image ids have that property).
    pub fn new(id: u64, width: u32, height: u32, pixels: Vec<u32>) -> Result<Image, ModelError> {
        check_dims(width, height)?;
        let need = (width as usize)
            .checked_mul(height as usize)
            .ok_or(ModelError::BadSize(width, height))?;
        if pixels.len() != need {
            return Err(ModelError::BufferSize {
                need,
                got: pixels.len(),
            });
        }
        Ok(Image {
            id,
            width,
            height,
            pixels: pixels.into(),
            palette: None,
        })
    }

    /// A `width` x `height` 8-bit picture: `indices` (one per pixel, rows top first) into
    /// `palette`. Every index must be below the palette length.
    pub fn with_palette(
        id: u64,
        width: u32,
        height: u32,
        indices: Vec<u8>,
        palette: Arc<Palette>,
    ) -> Result<Image, ModelError> {
        if palette.entries.is_empty() || palette.entries.len() > 256 {
            return Err(ModelError::TooMany("palette entries"));
        }
        if let Some(&bad) = indices
            .iter()
            .find(|&&i| usize::from(i) >= palette.entries.len())
        {
            return Err(ModelError::BufferSize {
                need: palette.entries.len(),
                got: usize::from(bad) + 1,
            });
        }
        let pixels = indices
            .iter()
            .map(|&i| palette.entries[usize::from(i)] & 0x00ff_ffff)
            .collect();
        let mut img = Image::new(id, width, height, pixels)?;
        img.palette = Some(PaletteImage {
            palette,
            indices: indices.into(),
        });
        Ok(img)
    }

    /// The palette form, for pictures made with [`Image::with_palette`].
    pub fn palette(&self) -> Option<&PaletteImage> {
        self.palette.as_ref()
    }
    /// Cache key (0 = none).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Width.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Pixels, rows top first.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }
}

fn check_dims(w: u32, h: u32) -> Result<(), ModelError> {
    if w == 0 || h == 0 || w > MAX_SURFACE_DIM || h > MAX_SURFACE_DIM {
        return Err(ModelError::BadSize(w, h));
    }
    Ok(())
}

/// Cursor shape kinds (Spice cursor types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// 32-bit ARGB, `w*h*4` bytes (B,G,R,A)
    Alpha,
    /// 1 bpp AND mask then XOR mask, each `((w+7)/8)*h` bytes
    Mono,
    /// 32-bit colour (`w*h*4` bytes) then a 1-bpp AND mask of `((w+7)/8)*h` bytes
    Color32,
}

impl CursorKind {
    /// Spice cursor type value.
    pub fn wire(self) -> u8 {
        match self {
            CursorKind::Alpha => 0,
            CursorKind::Mono => 1,
            CursorKind::Color32 => 6,
        }
    }
}

/// A cursor shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    /// cache key (0 = never cache)
    pub id: u64,
    /// kind
    pub kind: CursorKind,
    /// width
    pub width: u16,
    /// height
    pub height: u16,
    /// hot spot x (< width)
    pub hot_x: u16,
    /// hot spot y (< height)
    pub hot_y: u16,
    /// shape bytes (layout per kind)
    pub data: Arc<[u8]>,
}

impl CursorShape {
    /// Validates and builds a shape.
    pub fn new(
        id: u64,
        kind: CursorKind,
        width: u16,
        height: u16,
        hot: (u16, u16),
        data: Vec<u8>,
    ) -> Result<CursorShape, ModelError> {
        if width == 0 || height == 0 || width > MAX_CURSOR_DIM || height > MAX_CURSOR_DIM {
            return Err(ModelError::BadSize(width.into(), height.into()));
        }
        let (w, h) = (usize::from(width), usize::from(height));
        let mask = w.div_ceil(8) * h;
        let need = match kind {
            CursorKind::Alpha => w * h * 4,
            CursorKind::Mono => 2 * mask,
            CursorKind::Color32 => w * h * 4 + mask,
        };
        if data.len() != need {
            return Err(ModelError::BufferSize {
                need,
                got: data.len(),
            });
        }
        Ok(CursorShape {
            id,
            kind,
            width,
            height,
            hot_x: hot.0.min(width - 1),
            hot_y: hot.1.min(height - 1),
            data: data.into(),
        })
    }
}

/// One monitor (a rectangle of the primary surface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monitor {
    /// monitor id
    pub id: u32,
    /// x offset in the primary surface
    pub x: u32,
    /// y offset
    pub y: u32,
    /// width
    pub width: u32,
    /// height
    pub height: u32,
}

/// A draw or surface operation as queued to display channels.
#[derive(Debug, Clone)]
pub(crate) enum DisplayOp {
    SurfaceCreate {
        id: u32,
        width: u32,
        height: u32,
        format: SurfaceFormat,
    },
    SurfaceDestroy {
        id: u32,
    },
    Copy {
        surface: u32,
        dst: Rect,
        image: Image,
        clip: Vec<Rect>,
    },
    CopySurface {
        src_surface: u32,
        src_area: Rect,
        surface: u32,
        dst: Rect,
        clip: Vec<Rect>,
    },
    Fill {
        surface: u32,
        rect: Rect,
        color: u32,
        clip: Vec<Rect>,
    },
    Rop {
        surface: u32,
        rect: Rect,
        kind: RopKind,
        clip: Vec<Rect>,
    },
    CopyBits {
        surface: u32,
        src: Point,
        dst: Rect,
        clip: Vec<Rect>,
    },
    Monitors {
        max_allowed: u16,
        monitors: Vec<Monitor>,
    },
    Mark,
    Reset,
    /// Not produced by the model: a display channel's round-trip probe, ordered after the
    /// operations queued before it.
    Ping(u32),
}

/// Mask-only raster operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopKind {
    /// set to black
    Blackness,
    /// set to white
    Whiteness,
    /// invert colour bits
    Invert,
}

impl DisplayOp {
    fn cost(&self) -> usize {
        match self {
            DisplayOp::Copy { image, clip, .. } => {
                OP_COST + image.pixels.len() * 5 + clip.len() * 16
            }
            DisplayOp::Fill { clip, .. }
            | DisplayOp::Rop { clip, .. }
            | DisplayOp::CopyBits { clip, .. }
            | DisplayOp::CopySurface { clip, .. } => OP_COST + clip.len() * 16,
            _ => OP_COST,
        }
    }
}

/// Cursor state as sent to a joining client.
#[derive(Debug, Clone, Default)]
pub(crate) struct CursorState {
    pub shape: Option<Arc<CursorShape>>,
    pub x: i16,
    pub y: i16,
    pub visible: bool,
    pub trail_length: u16,
    pub trail_frequency: u16,
}

/// A cursor operation as queued to cursor channels.
#[derive(Debug, Clone)]
pub(crate) enum CursorOp {
    Set(CursorState),
    Move(i16, i16),
    Hide,
    Trail(u16, u16),
}

struct FeedQ<T> {
    items: VecDeque<T>,
    cost: usize,
    overflowed: bool,
    closed: bool,
}

/// A bounded queue from the model to one channel connection.
pub(crate) struct Feed<T> {
    q: Mutex<FeedQ<T>>,
    limit: usize,
    /// Woken on every push.
    pub notify: Notify,
}

/// What a channel gets from its feed.
pub(crate) enum Taken<T> {
    Items(Vec<T>),
    /// Its queue overflowed: send a full refresh (see [`DisplayModel::display_refresh`]).
    Refresh,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update; the data is still
    // structurally valid (every update is applied in full or not at all).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Feed<T> {
    fn new(limit: usize) -> Arc<Feed<T>> {
        Arc::new(Feed {
            q: Mutex::new(FeedQ {
                items: VecDeque::new(),
                cost: 0,
                overflowed: true, // a new feed starts with a full refresh
                closed: false,
            }),
            limit,
            notify: Notify::new(),
        })
    }

    fn push(&self, item: T, cost: usize) -> bool {
        let mut q = lock(&self.q);
        if q.closed {
            return false;
        }
        let mut overflow_now = false;
        if !q.overflowed {
            if q.cost.saturating_add(cost) > self.limit {
                q.items.clear();
                q.cost = 0;
                q.overflowed = true;
                overflow_now = true;
            } else {
                q.items.push_back(item);
                q.cost += cost;
            }
        }
        drop(q);
        self.notify.notify_one();
        overflow_now
    }

    /// Takes everything queued.
    pub fn take(&self) -> Taken<T> {
        let mut q = lock(&self.q);
        if q.overflowed {
            return Taken::Refresh;
        }
        q.cost = 0;
        Taken::Items(q.items.drain(..).collect())
    }

    /// Detaches the feed (the model stops queueing to it).
    pub fn close(&self) {
        let mut q = lock(&self.q);
        q.closed = true;
        q.items.clear();
    }

    fn reset_for_refresh(&self) {
        let mut q = lock(&self.q);
        q.items.clear();
        q.cost = 0;
        q.overflowed = false;
    }
}

struct Surface {
    width: u32,
    height: u32,
    format: SurfaceFormat,
    pixels: Vec<u32>,
}

impl Surface {
    fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// The pixels of `area` (inside the surface, checked by the caller), rows top first.
    fn copy_out(&self, area: &Rect) -> Vec<u32> {
        let (w, h) = (area.width() as usize, area.height() as usize);
        let sw = self.width as usize;
        let mut tmp = Vec::with_capacity(w * h);
        for y in 0..h {
            let o = (area.top as usize + y) * sw + area.left as usize;
            tmp.extend_from_slice(&self.pixels[o..o + w]);
        }
        tmp
    }

    /// Writes `tmp` (the pixels of a `dst`-sized picture, rows top first) at `dst`, only where
    /// `clip` and the surface let it show.
    fn paste(&mut self, dst: &Rect, clip: &[Rect], tmp: &[u32]) {
        let (w, sw) = (dst.width() as usize, self.width as usize);
        for r in visible(dst, clip, &self.bounds()) {
            for y in r.top..r.bottom {
                let sy = (y - dst.top) as usize;
                let sx = (r.left - dst.left) as usize;
                let d = y as usize * sw + r.left as usize;
                self.pixels[d..d + r.width() as usize]
                    .copy_from_slice(&tmp[sy * w + sx..][..r.width() as usize]);
            }
        }
    }
}

/// Counters kept by the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// operations applied
    pub ops: u64,
    /// operations refused
    pub rejected: u64,
    /// times a channel queue overflowed (its client then gets a full refresh)
    pub overflows: u64,
    /// draws whose rows partly repeated the surface's rows elsewhere, sent as a COPY_BITS
    /// ([`crate::motion`])
    pub moves: u64,
    /// rows of draws not sent as pixels (moved, or equal to what the surface already shows)
    pub rows_not_sent: u64,
}

struct State {
    surfaces: BTreeMap<u32, Surface>,
    monitors: Vec<Monitor>,
    max_monitors: u16,
    cursor: CursorState,
    display_feeds: Vec<Weak<Feed<DisplayOp>>>,
    cursor_feeds: Vec<Weak<Feed<CursorOp>>>,
    stats: ModelStats,
}

/// The display model. Cheap to clone (a handle); usable from any thread.
#[derive(Clone)]
pub struct DisplayModel {
    state: Arc<Mutex<State>>,
    queue_limit: usize,
}

impl std::fmt::Debug for DisplayModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DisplayModel")
    }
}

impl Default for DisplayModel {
    fn default() -> Self {
        DisplayModel::new()
    }
}

/// The rectangles of `rect` that `clip` leaves visible (all of `rect` when `clip` is empty),
/// cut to `bounds`.
fn visible(rect: &Rect, clip: &[Rect], bounds: &Rect) -> Vec<Rect> {
    let r = rect.intersect(bounds);
    if clip.is_empty() {
        return if r.is_empty() { vec![] } else { vec![r] };
    }
    clip.iter()
        .map(|c| c.intersect(&r))
        .filter(|c| !c.is_empty())
        .collect()
}

/// Validates `rect` and `clip`, then runs `f` on each row segment of `rect` that is visible
/// on `surface` through `clip` (shared by the solid-colour operations).
fn paint_rows(
    st: &mut State,
    surface: u32,
    rect: &Rect,
    clip: &[Rect],
    mut f: impl FnMut(&mut [u32]),
) -> Result<(), ModelError> {
    check_rect(rect)?;
    check_clip(clip)?;
    let s = st
        .surfaces
        .get_mut(&surface)
        .ok_or(ModelError::NoSurface(surface))?;
    let sw = s.width as usize;
    for r in visible(rect, clip, &s.bounds()) {
        for y in r.top..r.bottom {
            let d = y as usize * sw + r.left as usize;
            f(&mut s.pixels[d..d + r.width() as usize]);
        }
    }
    Ok(())
}

fn check_rect(r: &Rect) -> Result<(), ModelError> {
    if r.is_normalized() {
        Ok(())
    } else {
        Err(ModelError::BadRect(*r))
    }
}

fn check_clip(clip: &[Rect]) -> Result<(), ModelError> {
    if clip.len() > MAX_CLIPS {
        return Err(ModelError::TooMany("clip rectangles"));
    }
    clip.iter().try_for_each(check_rect)
}

impl DisplayModel {
    /// An empty model (no surfaces, no cursor) with a 64 MiB queue budget per client.
    pub fn new() -> DisplayModel {
        DisplayModel::with_queue_limit(64 << 20)
    }

    /// An empty model whose per-client queues hold at most `bytes` of pending work.
    pub fn with_queue_limit(bytes: usize) -> DisplayModel {
        DisplayModel {
            state: Arc::new(Mutex::new(State {
                surfaces: BTreeMap::new(),
                monitors: Vec::new(),
                max_monitors: 1,
                cursor: CursorState::default(),
                display_feeds: Vec::new(),
                cursor_feeds: Vec::new(),
                stats: ModelStats::default(),
            })),
            queue_limit: bytes,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn emit(st: &mut State, op: DisplayOp) {
        let cost = op.cost();
        st.stats.ops += 1;
        let mut overflows = 0;
        st.display_feeds.retain(|w| match w.upgrade() {
            Some(f) => {
                if f.push(op.clone(), cost) {
                    overflows += 1;
                }
                true
            }
            None => false,
        });
        st.stats.overflows += overflows;
    }

    fn emit_cursor(st: &mut State, op: CursorOp) {
        st.stats.ops += 1;
        let mut overflows = 0;
        st.cursor_feeds.retain(|w| match w.upgrade() {
            Some(f) => {
                if f.push(op.clone(), OP_COST) {
                    overflows += 1;
                }
                true
            }
            None => false,
        });
        st.stats.overflows += overflows;
    }

    fn apply<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(R, Option<DisplayOp>), ModelError>,
    ) -> Result<R, ModelError> {
        let mut st = self.state();
        match f(&mut st) {
            Ok((r, op)) => {
                if let Some(op) = op {
                    Self::emit(&mut st, op);
                }
                Ok(r)
            }
            Err(e) => {
                st.stats.rejected += 1;
                Err(e)
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> ModelStats {
        self.state().stats
    }

    /// Creates surface `id` (0 = the primary surface, which must be xRGB), filled with black.
    pub fn create_surface(
        &self,
        id: u32,
        width: u32,
        height: u32,
        format: SurfaceFormat,
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            check_dims(width, height)?;
            if id == 0 && format != SurfaceFormat::Xrgb32 {
                return Err(ModelError::PrimaryFormat);
            }
            if st.surfaces.contains_key(&id) {
                return Err(ModelError::SurfaceExists(id));
            }
            if st.surfaces.len() >= MAX_SURFACES {
                return Err(ModelError::TooManySurfaces);
            }
            let n = (width as usize)
                .checked_mul(height as usize)
                .ok_or(ModelError::BadSize(width, height))?;
            st.surfaces.insert(
                id,
                Surface {
                    width,
                    height,
                    format,
                    pixels: vec![0; n],
                },
            );
            Ok((
                (),
                Some(DisplayOp::SurfaceCreate {
                    id,
                    width,
                    height,
                    format,
                }),
            ))
        })
    }

    /// Destroys surface `id`.
    pub fn destroy_surface(&self, id: u32) -> Result<(), ModelError> {
        self.apply(|st| {
            st.surfaces.remove(&id).ok_or(ModelError::NoSurface(id))?;
            Ok(((), Some(DisplayOp::SurfaceDestroy { id })))
        })
    }

    /// Copies `image` to `dst` on `surface` (no scaling: `dst` must have the image's size),
    /// limited to `clip` (a union of rectangles; empty = no clipping).
    pub fn draw_copy(
        &self,
        surface: u32,
        dst: Rect,
        image: &Image,
        clip: &[Rect],
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            check_rect(&dst)?;
            check_clip(clip)?;
            if dst.width() != image.width || dst.height() != image.height {
                return Err(ModelError::SizeMismatch(
                    image.width,
                    image.height,
                    dst.width(),
                    dst.height(),
                ));
            }
            let s = st
                .surfaces
                .get_mut(&surface)
                .ok_or(ModelError::NoSurface(surface))?;
            let sw = s.width as usize;
            // Motion before pixels: only for plain unclipped pictures inside the surface (what
            // the QXL bridge sends); cacheable or palette images go as they are.
            let motion = (clip.is_empty()
                && image.id == 0
                && image.palette.is_none()
                && dst.intersect(&s.bounds()) == dst)
                .then(|| {
                    let (w, left, top) =
                        (dst.width() as usize, dst.left as usize, dst.top as usize);
                    let px = &s.pixels;
                    crate::motion::analyse(&image.pixels, w, dst.height() as usize, |y| {
                        &px[(top + y) * sw + left..][..w]
                    })
                })
                .flatten();
            for r in visible(&dst, clip, &s.bounds()) {
                for y in r.top..r.bottom {
                    let sy = (y - dst.top) as usize;
                    let sx = (r.left - dst.left) as usize;
                    let src = &image.pixels[sy * image.width as usize + sx..][..r.width() as usize];
                    let d = y as usize * sw + r.left as usize;
                    s.pixels[d..d + r.width() as usize].copy_from_slice(src);
                }
            }
            let Some(motion) = motion else {
                return Ok((
                    (),
                    Some(DisplayOp::Copy {
                        surface,
                        dst,
                        image: image.clone(),
                        clip: clip.to_vec(),
                    }),
                ));
            };
            // The move first: its source rows are still the old ones on the client.
            let w = dst.width();
            if let Some(m) = motion.moved {
                st.stats.moves += 1;
                Self::emit(
                    st,
                    DisplayOp::CopyBits {
                        surface,
                        src: Point {
                            x: dst.left,
                            y: dst.top + (m.top as isize + m.dy) as i32,
                        },
                        dst: Rect::new(
                            dst.left,
                            dst.top + m.top as i32,
                            w as i32,
                            (m.bottom - m.top) as i32,
                        ),
                        clip: Vec::new(),
                    },
                );
            }
            let mut sent = 0;
            for (a, b) in motion.changed {
                let rows = image.pixels[a * w as usize..b * w as usize].to_vec();
                let strip = Image::new(0, w, (b - a) as u32, rows)?;
                sent += b - a;
                Self::emit(
                    st,
                    DisplayOp::Copy {
                        surface,
                        dst: Rect::new(dst.left, dst.top + a as i32, w as i32, (b - a) as i32),
                        image: strip,
                        clip: Vec::new(),
                    },
                );
            }
            st.stats.rows_not_sent += (image.height as usize - sent) as u64;
            Ok(((), None))
        })
    }

    /// Copies `src_area` of surface `src_surface` to `dst` (same size) on `surface`.
    pub fn copy_surface(
        &self,
        src_surface: u32,
        src_area: Rect,
        surface: u32,
        dst: Rect,
        clip: &[Rect],
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            check_rect(&dst)?;
            check_rect(&src_area)?;
            check_clip(clip)?;
            if dst.width() != src_area.width() || dst.height() != src_area.height() {
                return Err(ModelError::SizeMismatch(
                    src_area.width(),
                    src_area.height(),
                    dst.width(),
                    dst.height(),
                ));
            }
            let src = st
                .surfaces
                .get(&src_surface)
                .ok_or(ModelError::NoSurface(src_surface))?;
            if src_area.intersect(&src.bounds()) != src_area {
                return Err(ModelError::BadRect(src_area));
            }
            let tmp = src.copy_out(&src_area);
            st.surfaces
                .get_mut(&surface)
                .ok_or(ModelError::NoSurface(surface))?
                .paste(&dst, clip, &tmp);
            Ok((
                (),
                Some(DisplayOp::CopySurface {
                    src_surface,
                    src_area,
                    surface,
                    dst,
                    clip: clip.to_vec(),
                }),
            ))
        })
    }

    /// Fills `rect` with `color` (0xAARRGGBB), limited to `clip`.
    pub fn fill(
        &self,
        surface: u32,
        rect: Rect,
        color: u32,
        clip: &[Rect],
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            paint_rows(st, surface, &rect, clip, |row| row.fill(color))?;
            Ok((
                (),
                Some(DisplayOp::Fill {
                    surface,
                    rect,
                    color,
                    clip: clip.to_vec(),
                }),
            ))
        })
    }

    /// Blackness / whiteness / invert over `rect`, limited to `clip` (clip rectangles must not
    /// overlap for `Invert`).
    pub fn rop(
        &self,
        surface: u32,
        rect: Rect,
        kind: RopKind,
        clip: &[Rect],
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            paint_rows(st, surface, &rect, clip, |row| {
                for p in row {
                    *p = match kind {
                        RopKind::Blackness => 0,
                        RopKind::Whiteness => 0x00ff_ffff,
                        RopKind::Invert => *p ^ 0x00ff_ffff,
                    };
                }
            })?;
            Ok((
                (),
                Some(DisplayOp::Rop {
                    surface,
                    rect,
                    kind,
                    clip: clip.to_vec(),
                }),
            ))
        })
    }

    /// Copies the `dst`-sized area at `src` to `dst` within one surface (scrolling), limited to
    /// `clip`. The source must lie inside the surface.
    pub fn copy_bits(
        &self,
        surface: u32,
        src: Point,
        dst: Rect,
        clip: &[Rect],
    ) -> Result<(), ModelError> {
        self.apply(|st| {
            check_rect(&dst)?;
            check_clip(clip)?;
            let s = st
                .surfaces
                .get_mut(&surface)
                .ok_or(ModelError::NoSurface(surface))?;
            let src_rect = Rect::new(src.x, src.y, dst.width() as i32, dst.height() as i32);
            if src_rect.intersect(&s.bounds()) != src_rect {
                return Err(ModelError::BadRect(src_rect));
            }
            // Through a copy: source and destination may overlap (a scroll).
            let tmp = s.copy_out(&src_rect);
            s.paste(&dst, clip, &tmp);
            Ok((
                (),
                Some(DisplayOp::CopyBits {
                    surface,
                    src,
                    dst,
                    clip: clip.to_vec(),
                }),
            ))
        })
    }

    /// Tells clients a complete frame is on screen (Spice MARK).
    pub fn mark(&self) {
        let _ = self.apply(|_| Ok(((), Some(DisplayOp::Mark))));
    }

    /// Destroys every surface and tells clients to reset (guest device reset).
    pub fn reset(&self) {
        let mut st = self.state();
        let ids: Vec<u32> = st.surfaces.keys().rev().copied().collect();
        for id in ids {
            st.surfaces.remove(&id);
            Self::emit(&mut st, DisplayOp::SurfaceDestroy { id });
        }
        st.monitors.clear();
        Self::emit(&mut st, DisplayOp::Reset);
    }

    /// Sets the monitor layout (at most [`MAX_MONITORS`]); empty = one monitor covering the
    /// primary surface.
    pub fn set_monitors(&self, max_allowed: u16, monitors: &[Monitor]) -> Result<(), ModelError> {
        self.apply(|st| {
            if monitors.len() > MAX_MONITORS {
                return Err(ModelError::TooMany("monitors"));
            }
            st.monitors = monitors.to_vec();
            st.max_monitors = max_allowed.max(1);
            Ok((
                (),
                Some(DisplayOp::Monitors {
                    max_allowed: st.max_monitors,
                    monitors: Self::monitors_of(st),
                }),
            ))
        })
    }

    fn monitors_of(st: &State) -> Vec<Monitor> {
        if !st.monitors.is_empty() {
            return st.monitors.clone();
        }
        match st.surfaces.get(&0) {
            Some(p) => vec![Monitor {
                id: 0,
                x: 0,
                y: 0,
                width: p.width,
                height: p.height,
            }],
            None => vec![],
        }
    }

    /// Sets the cursor shape (shown at the current position).
    pub fn set_cursor(&self, shape: CursorShape) {
        let mut st = self.state();
        st.cursor.shape = Some(Arc::new(shape));
        st.cursor.visible = true;
        let c = st.cursor.clone();
        Self::emit_cursor(&mut st, CursorOp::Set(c));
    }

    /// Moves the cursor (and shows it).
    pub fn move_cursor(&self, x: i16, y: i16) {
        let mut st = self.state();
        st.cursor.x = x;
        st.cursor.y = y;
        st.cursor.visible = true;
        Self::emit_cursor(&mut st, CursorOp::Move(x, y));
    }

    /// Hides the cursor.
    pub fn hide_cursor(&self) {
        let mut st = self.state();
        st.cursor.visible = false;
        Self::emit_cursor(&mut st, CursorOp::Hide);
    }

    /// Sets the cursor trail.
    pub fn set_cursor_trail(&self, length: u16, frequency: u16) {
        let mut st = self.state();
        st.cursor.trail_length = length;
        st.cursor.trail_frequency = frequency;
        Self::emit_cursor(&mut st, CursorOp::Trail(length, frequency));
    }

    /// A copy of surface `id`: (width, height, pixels rows top first).
    pub fn read_surface(&self, id: u32) -> Option<(u32, u32, Vec<u32>)> {
        let st = self.state();
        st.surfaces
            .get(&id)
            .map(|s| (s.width, s.height, s.pixels.clone()))
    }

    /// The size of surface `id` (width, height), without copying its pixels.
    pub fn surface_size(&self, id: u32) -> Option<(u32, u32)> {
        self.state().surfaces.get(&id).map(|s| (s.width, s.height))
    }

    /// Ids of the surfaces that exist.
    pub fn surface_ids(&self) -> Vec<u32> {
        self.state().surfaces.keys().copied().collect()
    }

    pub(crate) fn subscribe_display(&self) -> Arc<Feed<DisplayOp>> {
        let f = Feed::new(self.queue_limit);
        self.state().display_feeds.push(Arc::downgrade(&f));
        f
    }

    pub(crate) fn subscribe_cursor(&self) -> Arc<Feed<CursorOp>> {
        let f = Feed::new(self.queue_limit);
        self.state().cursor_feeds.push(Arc::downgrade(&f));
        f
    }

    /// The whole current picture as operations (surfaces with their content, monitors), and
    /// the feed reset so that later operations follow it. Atomic with respect to model calls.
    pub(crate) fn display_refresh(&self, feed: &Feed<DisplayOp>) -> Vec<DisplayOp> {
        let st = self.state();
        feed.reset_for_refresh();
        let mut ops = Vec::new();
        for (&id, s) in &st.surfaces {
            ops.push(DisplayOp::SurfaceCreate {
                id,
                width: s.width,
                height: s.height,
                format: s.format,
            });
        }
        for (&id, s) in &st.surfaces {
            ops.push(DisplayOp::Copy {
                surface: id,
                dst: s.bounds(),
                image: Image {
                    id: 0,
                    width: s.width,
                    height: s.height,
                    pixels: s.pixels.clone().into(),
                    palette: None,
                },
                clip: vec![],
            });
        }
        let monitors = Self::monitors_of(&st);
        if !monitors.is_empty() {
            ops.push(DisplayOp::Monitors {
                max_allowed: st.max_monitors,
                monitors,
            });
        }
        ops
    }

    /// The current cursor state, and the feed reset.
    pub(crate) fn cursor_refresh(&self, feed: &Feed<CursorOp>) -> CursorState {
        let st = self.state();
        feed.reset_for_refresh();
        st.cursor.clone()
    }

    /// The monitors a client should be told about after the primary surface is created.
    pub(crate) fn current_monitors(&self) -> (u16, Vec<Monitor>) {
        let st = self.state();
        (st.max_monitors, Self::monitors_of(&st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_with_primary(w: u32, h: u32) -> DisplayModel {
        let m = DisplayModel::new();
        m.create_surface(0, w, h, SurfaceFormat::Xrgb32).unwrap();
        m
    }

    #[test]
    fn fill_respects_clip_and_bounds() {
        let m = model_with_primary(4, 4);
        m.fill(
            0,
            Rect::new(-2, -2, 10, 10),
            0x112233,
            &[Rect::new(1, 1, 2, 1)],
        )
        .unwrap();
        let (_, _, px) = m.read_surface(0).unwrap();
        let set: Vec<usize> = (0..16).filter(|&i| px[i] != 0).collect();
        assert_eq!(set, vec![5, 6]);
    }

    #[test]
    fn draw_copy_places_pixels_and_checks_size() {
        let m = model_with_primary(3, 2);
        let img = Image::new(0, 2, 1, vec![1, 2]).unwrap();
        m.draw_copy(0, Rect::new(1, 1, 2, 1), &img, &[]).unwrap();
        assert_eq!(m.read_surface(0).unwrap().2, vec![0, 0, 0, 0, 1, 2]);
        assert!(matches!(
            m.draw_copy(0, Rect::new(0, 0, 3, 1), &img, &[]),
            Err(ModelError::SizeMismatch(..))
        ));
        assert!(m.draw_copy(7, Rect::new(0, 0, 2, 1), &img, &[]).is_err());
        assert_eq!(m.stats().rejected, 2);
    }

    #[test]
    fn copy_bits_scrolls_up() {
        let m = model_with_primary(1, 3);
        let img = Image::new(0, 1, 3, vec![1, 2, 3]).unwrap();
        m.draw_copy(0, Rect::new(0, 0, 1, 3), &img, &[]).unwrap();
        m.copy_bits(0, Point { x: 0, y: 1 }, Rect::new(0, 0, 1, 2), &[])
            .unwrap();
        assert_eq!(m.read_surface(0).unwrap().2, vec![2, 3, 3]);
        assert!(m
            .copy_bits(0, Point { x: 0, y: 2 }, Rect::new(0, 0, 1, 2), &[])
            .is_err());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let m = DisplayModel::new();
        assert!(m.create_surface(0, 0, 5, SurfaceFormat::Xrgb32).is_err());
        assert!(m.create_surface(0, 5, 5, SurfaceFormat::Argb32).is_err());
        assert!(m
            .create_surface(0, 99999, 5, SurfaceFormat::Xrgb32)
            .is_err());
        m.create_surface(0, 5, 5, SurfaceFormat::Xrgb32).unwrap();
        assert!(m.create_surface(0, 5, 5, SurfaceFormat::Xrgb32).is_err());
        let inverted = Rect {
            top: 3,
            left: 0,
            bottom: 1,
            right: 2,
        };
        assert!(m.fill(0, inverted, 1, &[]).is_err());
        assert!(Image::new(0, 2, 2, vec![0; 3]).is_err());
        let pal = Arc::new(Palette {
            unique: 1,
            entries: vec![0x10, 0x20],
        });
        assert!(Image::with_palette(0, 2, 1, vec![0, 2], pal.clone()).is_err());
        let img = Image::with_palette(0, 2, 1, vec![1, 0], pal).unwrap();
        assert_eq!(img.pixels(), &[0x20, 0x10]);
        assert!(CursorShape::new(1, CursorKind::Alpha, 2, 2, (0, 0), vec![0; 15]).is_err());
        assert!(CursorShape::new(1, CursorKind::Mono, 9, 1, (0, 0), vec![0; 4]).is_ok());
    }

    #[test]
    fn slow_feed_overflows_into_refresh_without_blocking() {
        let m = DisplayModel::with_queue_limit(1000);
        m.create_surface(0, 8, 8, SurfaceFormat::Xrgb32).unwrap();
        let feed = m.subscribe_display();
        // a new feed starts with a refresh
        assert!(matches!(feed.take(), Taken::Refresh));
        let snap = m.display_refresh(&feed);
        assert_eq!(snap.len(), 3); // create, copy, monitors
        for i in 0..100 {
            m.fill(0, Rect::new(0, 0, 1, 1), i, &[]).unwrap();
        }
        assert!(matches!(feed.take(), Taken::Refresh));
        assert!(m.stats().overflows >= 1);
        let snap = m.display_refresh(&feed);
        match &snap[1] {
            DisplayOp::Copy { image, .. } => assert_eq!(image.pixels()[0], 99),
            other => panic!("unexpected {other:?}"),
        }
        m.fill(0, Rect::new(0, 0, 1, 1), 5, &[]).unwrap();
        match feed.take() {
            Taken::Items(v) => assert_eq!(v.len(), 1),
            Taken::Refresh => panic!("no overflow expected"),
        }
    }
}
