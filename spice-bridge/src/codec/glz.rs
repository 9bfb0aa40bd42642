//! GLZ_RGB (Spice image type 102): LZ with back-references into earlier images.
//!
//! GLZ is the LZ family of [`super::lz`] with one addition: a back-reference may copy pixels
//! from an *earlier image* that the client still holds in its GLZ window (one per session,
//! sized by the client in DISPLAY_INIT, in pixels). The server side is [`GlzDictionary`] (it
//! remembers what the client holds and assigns image ids) with [`encode_glz_into`]; the client
//! side, for our tests and fuzzing, is [`GlzDecoderWindow`].
//!
//! Only 32-bit xRGB pictures (LZ type RGB32, top row first) are produced and accepted.
//!
//! # Facts used, and where they come from
//!
//! Read from spice-gtk `src/decode-glz.c` and `src/decode-glz-tmpl.c` (the client decoder that
//! spice-gtk 0.42 runs), `src/channel-display.c` (`spice_display_channel_up`: DISPLAY_INIT),
//! `src/spice-session.c` (window size, one window per session), and sheet `spice-protocol.md`
//! §4.5, §4.6, §4.8, §9.4. The code below is our own, written from these facts:
//!
//! * **Body**: `data_size` u32 LE (the `SpiceImage` body, as for LZ_RGB), then the GLZ stream.
//! * **Stream header**, 33 bytes, big-endian: magic `0x20205A4C`, version `0x00010001`, one byte
//!   `lz_type | top_down << 4` (RGB32 = 8), width u32, height u32, stride u32 (bytes; unused for
//!   RGB types by spice-gtk), image id u64, `win_head_dist` u32.
//! * **Control byte** `c`: `c < 32` is a literal run of `c + 1` pixels, 3 bytes each (B, G, R).
//!   Otherwise a reference: length `L = c >> 5` (7 means "add the following bytes while each is
//!   255"; RGB32 lengths carry no bias), bit 4 is the *pixel flag*, bits 0..3 are bits 0..3 of
//!   the pixel offset. Then, after any length bytes: one byte of offset bits 4..11; then a byte
//!   whose top two bits `k` count the image-distance bytes that follow. With pixel flag 0 its low
//!   6 bits are image-distance bits 0..5 and the `k` following bytes are bits 6.. (8 each). With
//!   pixel flag 1, bit 5 says one more offset byte (bits 17..24) comes last, bits 0..4 are offset
//!   bits 12..16, and the `k` following bytes are the image distance from bit 0.
//! * **Image distance 0** is a reference inside the image being decoded: the copy starts
//!   `offset + 1` pixels back (so a run is offset 0). **Image distance d > 0** names the image
//!   with id `id - d`; the offset is then the absolute pixel index in that image (no bias).
//! * **Window**: after decoding image `id`, spice-gtk keeps it and frees every image with an id
//!   below `id - win_head_dist` (of the newest image received in unbroken id order). Its window
//!   starts empty, waits for ids from 0 upwards (a gap stops freeing), and **waits forever**
//!   (coroutine) for a referenced image it does not hold. It checks only the start offset of a
//!   reference against the referenced image's size, not the end. So the encoder must give ids
//!   0, 1, 2, … with no gap, every id it hands out must be sent, `win_head_dist` must not
//!   exceed the id, and a reference must stay inside an image the client still holds.
//! * spice-gtk announces dictionary id 1 and a window of its `glz-window-size` (bytes, 12 to
//!   64 MiB by default) divided by 4, in pixels; it clears the window only when the session
//!   ends. spice-html5 announces a window of 0 and cannot decode GLZ, so a window of 0 means
//!   "no GLZ" (sheet §4.6, §4.8).
//!
//! Checked end to end: `tests/real_clients.rs` `spicy_screenshot_decodes_glz_pixel_for_pixel`
//! (spice-gtk 0.42 shows a GLZ picture built from references into two earlier ones, pixel for
//! pixel).
//!
//! # Limits
//!
//! * One dictionary per display channel connection. spice-gtk keeps its window for the whole
//!   session, so a display channel that reconnects within one session would start ids at 0
//!   again against a window that still holds images: **unhandled** (spice-gtk does not reconnect
//!   a display channel on its own).
//! * Offsets into earlier images are at most 25 bits, so pixels past 2^25 of an earlier image
//!   are never referenced; within one image the same bound applies to the distance.

use std::collections::VecDeque;

use super::lz::{LZ_MAGIC, LZ_VERSION};
use super::{SourceFormat, SourceImage};

/// LZ image type RGB32 (`LZ_IMAGE_TYPE_RGB32`).
const LZ_TYPE_RGB32: u8 = 8;
/// Length of the GLZ stream header.
pub const GLZ_HEADER_LEN: usize = 33;
/// The largest dictionary window we keep, whatever the client offers (pixels; 4 bytes each on
/// the server). spice-gtk's largest window is 16 Mi pixels.
pub const MAX_WINDOW_PIXELS: u64 = 1 << 24;
/// Largest pixel offset a reference can carry (25 bits).
const MAX_OFFSET: u64 = (1 << 25) - 1;
/// Largest offset of the short form (12 bits).
const MAX_SHORT_OFFSET: u64 = (1 << 12) - 1;
/// Largest image distance of the long-offset form (3 bytes).
const MAX_LONG_FORM_DIST: u64 = (1 << 24) - 1;
/// Largest image distance of the short-offset form (6 bits + 3 bytes).
const MAX_SHORT_FORM_DIST: u64 = (1 << 30) - 1;
/// Literal run limit (`c < 32`).
const MAX_LITERALS: usize = 32;
/// Shortest match we emit.
const MIN_MATCH: usize = 2;
/// Hash table size (log2).
const HASH_LOG: u32 = 16;
/// Marks an empty hash slot.
const NO_IMAGE: u64 = u64::MAX;

/// Errors of the GLZ encoder and decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlzError {
    /// The client announced no window (0 pixels): it does not take GLZ (spice-html5).
    #[error("the client has no GLZ window")]
    NoWindow,
    /// The picture does not fit in the client's window (send LZ instead).
    #[error("image of {pixels} pixels does not fit a GLZ window of {window} pixels")]
    WindowTooSmall {
        /// Pixels of the picture.
        pixels: u64,
        /// Window size in pixels.
        window: u64,
    },
    /// The picture is not 32-bit xRGB or its geometry is invalid.
    #[error("unsupported source for GLZ: {0}")]
    Source(String),
    /// The stream ended early.
    #[error("GLZ stream truncated at byte {offset}")]
    Truncated {
        /// Offset where a byte was missing.
        offset: usize,
    },
    /// A ZLIB_GLZ_RGB body whose zlib stream is broken or does not inflate to the GLZ size
    /// it states.
    #[error("ZLIB_GLZ: {0}")]
    Zlib(String),
    /// Wrong magic or version.
    #[error("bad GLZ magic {magic:#010x} or version {version:#010x}")]
    BadMagic {
        /// Magic read.
        magic: u32,
        /// Version read.
        version: u32,
    },
    /// Type byte other than RGB32 top-down.
    #[error("unsupported GLZ type byte {0:#04x}")]
    UnsupportedType(u8),
    /// Zero, oversized or inconsistent geometry.
    #[error("bad GLZ geometry {width}x{height} stride {stride}")]
    BadGeometry {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// Stride in the header.
        stride: u32,
    },
    /// The image id is not the next one the window expects.
    #[error("GLZ image id {got}, expected {expected}")]
    UnexpectedId {
        /// Id expected.
        expected: u64,
        /// Id in the header.
        got: u64,
    },
    /// `win_head_dist` reaches before id 0.
    #[error("GLZ win_head_dist {dist} exceeds image id {id}")]
    BadHeadDist {
        /// Image id.
        id: u64,
        /// Distance in the header.
        dist: u32,
    },
    /// A reference to an image the window does not hold (or that this image lets go).
    #[error("GLZ reference to image {image} which is not in the window")]
    MissingImage {
        /// Referenced image id (`id - distance`, saturated).
        image: u64,
    },
    /// A reference reaching outside its source or past the end of the image.
    #[error("GLZ reference out of bounds at pixel {at}: offset {offset}, length {len}")]
    BadReference {
        /// Output pixel where the reference starts.
        at: u64,
        /// Offset as encoded.
        offset: u64,
        /// Length in pixels.
        len: u64,
    },
    /// A literal run past the end of the image.
    #[error("GLZ literal run past the end of the image at pixel {at}")]
    LiteralOverrun {
        /// Output pixel where the run starts.
        at: u64,
    },
    /// Bytes after the last pixel.
    #[error("{extra} bytes after the GLZ image")]
    TrailingData {
        /// Number of extra bytes.
        extra: usize,
    },
    /// The window would hold more pixels than the client offered.
    #[error("GLZ window would hold {held} pixels, more than its {window}")]
    WindowOverflow {
        /// Pixels that would be held.
        held: u64,
        /// Window size.
        window: u64,
    },
}

/// One image the client holds: its id and pixels as 0x00RRGGBB, top row first.
#[derive(Clone, Debug)]
struct WindowImage {
    id: u64,
    pixels: Vec<u32>,
}

/// The server's copy of a client's GLZ window (per client session): the last images sent,
/// with their ids, bounded by the window size the client chose (at most
/// [`MAX_WINDOW_PIXELS`]).
#[derive(Debug, Clone)]
pub struct GlzDictionary {
    window: u64,
    /// Oldest first; ids contiguous, the last one `next_id - 1`.
    images: VecDeque<WindowImage>,
    held: u64,
    next_id: u64,
    /// Hash of three pixels → (image id, pixel index).
    hash: Vec<(u64, u32)>,
}

impl GlzDictionary {
    /// A dictionary for a client that announced `window_pixels` in DISPLAY_INIT
    /// (`glz_dictionary_window_size`; negative or zero means no GLZ).
    pub fn new(window_pixels: i64) -> Self {
        let window = u64::try_from(window_pixels)
            .unwrap_or(0)
            .min(MAX_WINDOW_PIXELS);
        Self {
            window,
            images: VecDeque::new(),
            held: 0,
            next_id: 0,
            hash: Vec::new(),
        }
    }

    /// The same, its first image getting id `first_id` instead of 0: a display channel that
    /// reconnects within a session continues the session's ids, because spice-gtk clears its
    /// window only when the session (re)connects.
    pub fn starting_at(mut self, first_id: u64) -> Self {
        if self.images.is_empty() {
            self.next_id = first_id;
        }
        self
    }

    /// Window size in pixels (0: the client takes no GLZ).
    pub fn window_pixels(&self) -> u64 {
        self.window
    }

    /// The id the next encoded image gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Ids of the images currently held (oldest first).
    pub fn held_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.images.iter().map(|i| i.id)
    }

    fn image(&self, id: u64) -> Option<&WindowImage> {
        image_by_id(&self.images, id)
    }
}

fn hash3(p: &[u32]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for v in p.iter().take(3) {
        h = (h ^ (v & 0xff_ffff)).wrapping_mul(0x0100_0193);
    }
    (h >> (32 - HASH_LOG)) as usize
}

/// Bytes a reference costs (see the module facts).
fn ref_cost(len: usize, image_dist: u64, offset: u64) -> Option<usize> {
    let len_bytes = if len >= 7 { (len - 7) / 255 + 1 } else { 0 };
    let dist_bytes = |v: u64| match v {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        _ => 3,
    };
    if offset <= MAX_SHORT_OFFSET && image_dist <= MAX_SHORT_FORM_DIST {
        Some(3 + len_bytes + dist_bytes(image_dist >> 6))
    } else if offset <= MAX_OFFSET && image_dist <= MAX_LONG_FORM_DIST {
        let far = usize::from(offset > (1 << 17) - 1);
        Some(3 + len_bytes + dist_bytes(image_dist) + far)
    } else {
        None
    }
}

fn write_ref(out: &mut Vec<u8>, len: usize, image_dist: u64, offset: u64) {
    let l = len.min(7) as u8;
    let short = offset <= MAX_SHORT_OFFSET && image_dist <= MAX_SHORT_FORM_DIST;
    out.push(l << 5 | u8::from(!short) << 4 | (offset & 0xf) as u8);
    if len >= 7 {
        let mut rest = len - 7;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
    out.push((offset >> 4) as u8);
    let nbytes = |v: u64| -> u8 {
        match v {
            0 => 0,
            1..=0xff => 1,
            0x100..=0xffff => 2,
            _ => 3,
        }
    };
    if short {
        let hi = image_dist >> 6;
        let k = nbytes(hi);
        out.push(k << 6 | (image_dist & 0x3f) as u8);
        for i in 0..k {
            out.push((hi >> (8 * i)) as u8);
        }
    } else {
        let k = nbytes(image_dist);
        let far = offset > (1 << 17) - 1;
        out.push(k << 6 | u8::from(far) << 5 | ((offset >> 12) & 0x1f) as u8);
        for i in 0..k {
            out.push((image_dist >> (8 * i)) as u8);
        }
        if far {
            out.push((offset >> 17) as u8);
        }
    }
}

fn flush_literals(out: &mut Vec<u8>, lits: &[u32]) {
    for chunk in lits.chunks(MAX_LITERALS) {
        out.push((chunk.len() - 1) as u8);
        for p in chunk {
            let [b, g, r, _] = p.to_le_bytes();
            out.extend_from_slice(&[b, g, r]);
        }
    }
}

fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Length of a match inside the current image: `cur[pos..]` against `cur[pos - dist..]`,
/// copied forward pixel by pixel (so it may overlap).
fn self_len(cur: &[u32], pos: usize, dist: usize) -> usize {
    let mut n = 0;
    while pos + n < cur.len() && cur[pos + n] == cur[pos + n - dist] {
        n += 1;
    }
    n
}

/// The image with `id` in a window whose ids are contiguous, oldest first.
fn image_by_id(images: &VecDeque<WindowImage>, id: u64) -> Option<&WindowImage> {
    let first = images.front()?.id;
    let idx = usize::try_from(id.checked_sub(first)?).ok()?;
    images.get(idx)
}

/// zlib level spice-server deflates GLZ pictures with for ZLIB_GLZ_RGB.
pub const ZLIB_LEVEL: u32 = 3;

/// A GLZ stream deflated for ZLIB_GLZ_RGB (zlib format, [`ZLIB_LEVEL`]).
pub fn deflate(glz: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(ZLIB_LEVEL));
    // Writing to a Vec cannot fail.
    let _ = z.write_all(glz);
    z.finish().unwrap_or_default()
}

/// The GLZ stream of a ZLIB_GLZ_RGB body: `data` inflated, which must give exactly `glz_size`
/// bytes (never more are produced, whatever the stream says).
pub fn inflate(data: &[u8], glz_size: u32) -> Result<Vec<u8>, GlzError> {
    use std::io::Read;
    let want = glz_size as usize;
    let mut out = Vec::with_capacity(want.min(1 << 20));
    flate2::read::ZlibDecoder::new(data)
        .take(want as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| GlzError::Zlib(e.to_string()))?;
    if out.len() != want {
        return Err(GlzError::Zlib(format!(
            "inflates to {} bytes, not the {want} stated",
            out.len()
        )));
    }
    Ok(out)
}

/// Encodes `src` (32-bit xRGB) as a GLZ_RGB body (`data_size` u32 LE, then the stream) appended
/// to `out`, with references into the images `dict` says the client holds, and records it in
/// `dict` under a new id, which is returned.
///
/// **The body must be sent**: the client waits for every id in order. On error nothing is
/// recorded and `out` is unchanged; the caller sends LZ_RGB instead.
pub fn encode_glz_into(
    dict: &mut GlzDictionary,
    src: &SourceImage<'_>,
    out: &mut Vec<u8>,
) -> Result<u64, GlzError> {
    if dict.window == 0 {
        return Err(GlzError::NoWindow);
    }
    if src.format != SourceFormat::Xrgb32 {
        return Err(GlzError::Source(format!("{:?}", src.format)));
    }
    let row = src
        .validate()
        .map_err(|e| GlzError::Source(e.to_string()))?;
    let n = src.pixel_count();
    if n > dict.window {
        return Err(GlzError::WindowTooSmall {
            pixels: n,
            window: dict.window,
        });
    }
    let stride = u32::try_from(row).map_err(|e| GlzError::Source(e.to_string()))?;
    let cur: Vec<u32> = (0..src.height as usize)
        .flat_map(|y| {
            src.row(y, row)
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], 0]))
        })
        .collect();

    // Make room: the client must be able to hold the held images plus this one.
    while dict.held + n > dict.window {
        let Some(old) = dict.images.pop_front() else {
            break;
        };
        dict.held -= old.pixels.len() as u64;
    }
    let id = dict.next_id;
    let head = dict.images.front().map_or(id, |i| i.id);
    let Ok(win_head_dist) = u32::try_from(id - head) else {
        // Cannot happen: the held images and this one (at least a pixel each) fit a window
        // of at most 2^24 pixels. Refuse rather than lie to the client.
        return Err(GlzError::Source("too many images held".into()));
    };
    if dict.hash.is_empty() {
        dict.hash = vec![(NO_IMAGE, 0); 1 << HASH_LOG];
    }

    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&LZ_MAGIC.to_be_bytes());
    out.extend_from_slice(&LZ_VERSION.to_be_bytes());
    out.push(LZ_TYPE_RGB32 | 1 << 4);
    out.extend_from_slice(&src.width.to_be_bytes());
    out.extend_from_slice(&src.height.to_be_bytes());
    out.extend_from_slice(&stride.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&win_head_dist.to_be_bytes());

    let w = src.width as usize;
    let len = cur.len();
    let prev = dict.images.back().filter(|p| p.pixels.len() == len);
    let mut lits: Vec<u32> = Vec::with_capacity(MAX_LITERALS);
    let mut pos = 0usize;
    while pos < len {
        // (length, image distance, encoded offset)
        let mut best: Option<(usize, u64, u64)> = None;
        let mut consider = |l: usize, d: u64, o: u64| {
            if l < MIN_MATCH {
                return;
            }
            let Some(cost) = ref_cost(l, d, o) else {
                return;
            };
            if cost >= 3 * l {
                return;
            }
            let better = match best {
                None => true,
                Some((bl, bd, bo)) => {
                    let bc = ref_cost(bl, bd, bo).unwrap_or(usize::MAX);
                    3 * l - cost > 3 * bl - bc.min(3 * bl)
                }
            };
            if better {
                best = Some((l, d, o));
            }
        };
        if pos >= 1 {
            consider(self_len(&cur, pos, 1), 0, 0);
        }
        if pos >= w && w > 1 {
            consider(self_len(&cur, pos, w), 0, (w - 1) as u64);
        }
        if let Some(p) = prev {
            if (pos as u64) <= MAX_OFFSET {
                consider(
                    common_len(&cur[pos..], &p.pixels[pos..]),
                    id - p.id,
                    pos as u64,
                );
            }
        }
        let h = (pos + 3 <= len).then(|| hash3(&cur[pos..]));
        if let Some(h) = h {
            let (hid, hpos) = dict.hash[h];
            let hpos = hpos as usize;
            if hid == id && hpos < pos {
                let l = self_len(&cur, pos, pos - hpos);
                consider(l, 0, (pos - hpos - 1) as u64);
            } else if hid != NO_IMAGE && hid >= head && hid < id {
                if let Some(img) = dict.image(hid) {
                    if hpos < img.pixels.len() {
                        let l = common_len(&cur[pos..], &img.pixels[hpos..]);
                        consider(l, id - hid, hpos as u64);
                    }
                }
            }
        }
        let step = match best {
            Some((l, d, o)) => {
                flush_literals(out, &lits);
                lits.clear();
                write_ref(out, l, d, o);
                l
            }
            None => {
                lits.push(cur[pos]);
                if lits.len() == MAX_LITERALS {
                    flush_literals(out, &lits);
                    lits.clear();
                }
                1
            }
        };
        // Index the positions just covered (pixel indexes fit in u32: n <= 2^24).
        for q in pos..pos + step {
            if q + 3 <= len {
                dict.hash[hash3(&cur[q..])] = (id, q as u32);
            }
        }
        pos += step;
    }
    flush_literals(out, &lits);

    let data_size = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&data_size.to_le_bytes());
    dict.held += n;
    dict.images.push_back(WindowImage { id, pixels: cur });
    dict.next_id += 1;
    Ok(id)
}

/// A parsed GLZ stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlzHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Dictionary id of the image.
    pub id: u64,
    /// The client may drop images with ids below `id - win_head_dist` after this one.
    pub win_head_dist: u32,
}

/// A client's GLZ window (our model of spice-gtk's), for tests and fuzzing: decodes GLZ_RGB
/// streams and keeps the images the server says it may still reference.
#[derive(Debug, Clone)]
pub struct GlzDecoderWindow {
    window: u64,
    images: VecDeque<WindowImage>,
    next_id: u64,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, GlzError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(GlzError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }
    fn be<const N: usize>(&mut self) -> Result<[u8; N], GlzError> {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8()?;
        }
        Ok(a)
    }
}

impl GlzDecoderWindow {
    /// A fresh window of `window_pixels` (what the client announced): it expects id 0 first.
    pub fn new(window_pixels: u64) -> Self {
        Self {
            window: window_pixels,
            images: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Ids held (oldest first).
    pub fn held_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.images.iter().map(|i| i.id)
    }

    fn image(&self, id: u64) -> Option<&WindowImage> {
        image_by_id(&self.images, id)
    }

    /// Decodes one GLZ stream (without the `data_size` prefix) of at most `max_pixels`,
    /// returning its header and pixels (0x00RRGGBB, top row first), and keeps it in the window.
    /// On error the window is unchanged.
    pub fn decode(
        &mut self,
        data: &[u8],
        max_pixels: u64,
    ) -> Result<(GlzHeader, Vec<u32>), GlzError> {
        let mut c = Cursor { data, pos: 0 };
        let magic = u32::from_be_bytes(c.be()?);
        let version = u32::from_be_bytes(c.be()?);
        if magic != LZ_MAGIC || version != LZ_VERSION {
            return Err(GlzError::BadMagic { magic, version });
        }
        let ty = c.u8()?;
        if ty != LZ_TYPE_RGB32 | 1 << 4 {
            return Err(GlzError::UnsupportedType(ty));
        }
        let width = u32::from_be_bytes(c.be()?);
        let height = u32::from_be_bytes(c.be()?);
        let stride = u32::from_be_bytes(c.be()?);
        let id = u64::from_be_bytes(c.be()?);
        let win_head_dist = u32::from_be_bytes(c.be()?);
        let n = u64::from(width) * u64::from(height);
        if n == 0 || n > max_pixels || n > self.window || u64::from(stride) != u64::from(width) * 4
        {
            return Err(GlzError::BadGeometry {
                width,
                height,
                stride,
            });
        }
        if id != self.next_id {
            return Err(GlzError::UnexpectedId {
                expected: self.next_id,
                got: id,
            });
        }
        let head = id
            .checked_sub(u64::from(win_head_dist))
            .ok_or(GlzError::BadHeadDist {
                id,
                dist: win_head_dist,
            })?;
        let n = usize::try_from(n).map_err(|_| GlzError::BadGeometry {
            width,
            height,
            stride,
        })?;
        let mut out: Vec<u32> = Vec::with_capacity(n);
        let mut ctrl = c.u8()?;
        loop {
            let at = out.len() as u64;
            if ctrl < 32 {
                let count = usize::from(ctrl) + 1;
                if out.len() + count > n {
                    return Err(GlzError::LiteralOverrun { at });
                }
                for _ in 0..count {
                    let [b, g, r] = c.be::<3>()?;
                    out.push(u32::from_le_bytes([b, g, r, 0]));
                }
            } else {
                let mut len = u64::from(ctrl >> 5);
                let long = ctrl & 0x10 != 0;
                let mut offset = u64::from(ctrl & 0x0f);
                if len == 7 {
                    loop {
                        let b = c.u8()?;
                        len += u64::from(b);
                        if b != 255 {
                            break;
                        }
                    }
                }
                offset += u64::from(c.u8()?) << 4;
                let b = c.u8()?;
                let k = b >> 6;
                let mut dist: u64;
                if !long {
                    dist = u64::from(b & 0x3f);
                    for i in 0..k {
                        dist += u64::from(c.u8()?) << (6 + 8 * u32::from(i));
                    }
                } else {
                    offset += u64::from(b & 0x1f) << 12;
                    dist = 0;
                    for i in 0..k {
                        dist += u64::from(c.u8()?) << (8 * u32::from(i));
                    }
                    if b & 0x20 != 0 {
                        offset += u64::from(c.u8()?) << 17;
                    }
                }
                let bad = GlzError::BadReference { at, offset, len };
                let end = at.checked_add(len).ok_or(bad.clone())?;
                if end > n as u64 {
                    return Err(bad);
                }
                let len = len as usize;
                if dist == 0 {
                    let back = offset + 1;
                    if back > at {
                        return Err(bad);
                    }
                    let from = (at - back) as usize;
                    for i in 0..len {
                        let p = out[from + i];
                        out.push(p);
                    }
                } else {
                    let rid = id.saturating_sub(dist);
                    if dist > id || rid < head {
                        return Err(GlzError::MissingImage { image: rid });
                    }
                    let img = self
                        .image(rid)
                        .ok_or(GlzError::MissingImage { image: rid })?;
                    let src_end = offset.checked_add(len as u64).ok_or(bad.clone())?;
                    if src_end > img.pixels.len() as u64 {
                        return Err(bad);
                    }
                    out.extend_from_slice(&img.pixels[offset as usize..src_end as usize]);
                }
            }
            if out.len() >= n {
                break;
            }
            ctrl = c.u8()?;
        }
        if c.pos != data.len() {
            return Err(GlzError::TrailingData {
                extra: data.len() - c.pos,
            });
        }
        // Keep it, then let go of what the server says is no longer referenced.
        let kept: u64 = self
            .images
            .iter()
            .filter(|i| i.id >= head)
            .map(|i| i.pixels.len() as u64)
            .sum::<u64>()
            + n as u64;
        if kept > self.window {
            return Err(GlzError::WindowOverflow {
                held: kept,
                window: self.window,
            });
        }
        self.images.push_back(WindowImage {
            id,
            pixels: out.clone(),
        });
        while self.images.front().is_some_and(|i| i.id < head) {
            self.images.pop_front();
        }
        self.next_id = id + 1;
        Ok((
            GlzHeader {
                width,
                height,
                id,
                win_head_dist,
            },
            out,
        ))
    }

    /// Decodes a GLZ_RGB image body (`data_size` u32 LE, then the stream).
    pub fn decode_body(
        &mut self,
        body: &[u8],
        max_pixels: u64,
    ) -> Result<(GlzHeader, Vec<u32>), GlzError> {
        let size = body
            .get(..4)
            .ok_or(GlzError::Truncated { offset: body.len() })?;
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let data = &body[4..];
        if size != data.len() {
            return Err(GlzError::TrailingData {
                extra: data.len().abs_diff(size),
            });
        }
        self.decode(data, max_pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_over_glz_inflates_to_exactly_the_stated_size_or_is_refused() {
        let glz: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let z = deflate(&glz);
        assert!(z.len() < glz.len() / 10, "{} bytes", z.len());
        assert_eq!(inflate(&z, glz.len() as u32).unwrap(), glz);
        // a stream that inflates to more, or to less, than it states; garbage; an empty one
        assert!(matches!(inflate(&z, 4999), Err(GlzError::Zlib(_))));
        assert!(matches!(inflate(&z, 5001), Err(GlzError::Zlib(_))));
        assert!(matches!(inflate(&[1, 2, 3, 4], 10), Err(GlzError::Zlib(_))));
        assert!(matches!(inflate(&[], 10), Err(GlzError::Zlib(_))));
        // a bomb: 64 MiB of zeros stated as 100 bytes stops after 101
        let bomb = deflate(&vec![0u8; 64 << 20]);
        assert!(matches!(inflate(&bomb, 100), Err(GlzError::Zlib(_))));
    }
    use crate::codec::testimg::Rng;

    fn bytes(px: &[u32]) -> Vec<u8> {
        px.iter().flat_map(|p| p.to_le_bytes()).collect()
    }

    fn src(data: &[u8], w: u32, h: u32) -> SourceImage<'_> {
        SourceImage {
            data,
            width: w,
            height: h,
            stride: w as usize * 4,
            format: SourceFormat::Xrgb32,
        }
    }

    /// Encodes each picture, decodes it in a client window of the same size, checks the
    /// pixels; returns the body sizes.
    fn roundtrip(window: i64, pics: &[(u32, u32, Vec<u32>)]) -> Vec<usize> {
        let mut dict = GlzDictionary::new(window);
        let mut client = GlzDecoderWindow::new(dict.window_pixels());
        let mut sizes = Vec::new();
        for (i, (w, h, px)) in pics.iter().enumerate() {
            let data = bytes(px);
            let mut body = Vec::new();
            let id = encode_glz_into(&mut dict, &src(&data, *w, *h), &mut body).unwrap();
            assert_eq!(id, i as u64);
            let (hdr, got) = client.decode_body(&body, 1 << 26).unwrap();
            assert_eq!((hdr.width, hdr.height, hdr.id), (*w, *h, id));
            let want: Vec<u32> = px.iter().map(|p| p & 0xff_ffff).collect();
            assert!(got == want, "picture {i} ({w}x{h}) differs");
            assert_eq!(
                client.held_ids().collect::<Vec<_>>(),
                dict.held_ids().collect::<Vec<_>>()
            );
            sizes.push(body.len());
        }
        sizes
    }

    fn ui(w: u32, h: u32, seed: u32) -> Vec<u32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if y < 24 {
                    0x0030_5080
                } else if x % 97 < 2 || y % 41 == 0 {
                    0x00c0_c0c0
                } else if (x / 7 + y / 13 + seed) % 11 == 0 {
                    0x0010_1010 + ((x * 31 + y * 17 + seed) % 200)
                } else {
                    0xffff_ff00 | (seed & 0xff)
                }
            })
            .collect()
    }

    fn noise(n: usize, rng: &mut Rng) -> Vec<u32> {
        (0..n).map(|_| rng.next_u32()).collect()
    }

    #[test]
    fn repeated_ui_references_the_first_image() {
        let (w, h) = (1024, 768);
        let a = ui(w, h, 1);
        let sizes = roundtrip(3 << 20, &[(w, h, a.clone()), (w, h, a.clone())]);
        let lz =
            crate::codec::encode(crate::codec::ImageCodec::LzRgb, &src(&bytes(&a), w, h)).unwrap();
        eprintln!(
            "1024x768 UI: GLZ first {} bytes, second {} bytes, LZ_RGB {} bytes",
            sizes[0],
            sizes[1],
            lz.body.len()
        );
        assert!(sizes[1] * 20 < sizes[0], "{sizes:?}");
        assert!(sizes[1] * 20 < lz.body.len());
    }

    #[test]
    fn scrolled_page_and_noise_round_trip() {
        let (w, h) = (300, 200);
        let mut rng = Rng::new(7);
        let page: Vec<u32> = noise((w * (h + 60)) as usize, &mut rng)
            .iter()
            .map(|p| p & 0x0f0f0f)
            .collect();
        let at = |dy: u32| page[(dy * w) as usize..((dy + h) * w) as usize].to_vec();
        let sizes = roundtrip(
            1 << 20,
            &[
                (w, h, at(0)),
                (w, h, at(20)),
                (w, h, at(40)),
                (w, h, noise(60000, &mut rng)),
            ],
        );
        assert!(sizes[1] * 4 < sizes[0], "scroll reuses the page: {sizes:?}");
    }

    #[test]
    fn odd_sizes_round_trip() {
        let mut rng = Rng::new(3);
        let pics: Vec<_> = [
            (1u32, 1u32),
            (3, 7),
            (1023, 5),
            (64, 1),
            (1, 64),
            (9, 9),
            (1, 1),
        ]
        .iter()
        .map(|&(w, h)| (w, h, noise((w * h) as usize, &mut rng)))
        .collect();
        roundtrip(1 << 16, &pics);
    }

    #[test]
    fn window_too_small_zero_or_huge_is_refused() {
        let data = vec![0u8; 100 * 100 * 4];
        let mut d = GlzDictionary::new(5000);
        let mut out = Vec::new();
        assert!(matches!(
            encode_glz_into(&mut d, &src(&data, 100, 100), &mut out),
            Err(GlzError::WindowTooSmall { .. })
        ));
        let mut d0 = GlzDictionary::new(0);
        assert_eq!(
            encode_glz_into(&mut d0, &src(&data, 100, 100), &mut out),
            Err(GlzError::NoWindow)
        );
        assert_eq!(GlzDictionary::new(-5).window_pixels(), 0);
        assert_eq!(
            GlzDictionary::new(i64::MAX).window_pixels(),
            MAX_WINDOW_PIXELS
        );
        let mut big = GlzDictionary::new(i64::MAX);
        assert!(encode_glz_into(&mut big, &src(&data, u32::MAX, u32::MAX), &mut out).is_err());
        assert!(encode_glz_into(&mut big, &src(&data, 0, 5), &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(big.next_id(), 0, "a refused picture takes no id");
    }

    #[test]
    fn window_eviction_keeps_client_and_server_in_step() {
        // Window of 2.5 pictures: each new one drops the oldest; references only go to held ones.
        let (w, h) = (100, 100);
        let pics: Vec<_> = (0..8).map(|i| (w, h, ui(w, h, i % 3))).collect();
        let mut dict = GlzDictionary::new(25_000);
        let mut client = GlzDecoderWindow::new(25_000);
        for (i, (w, h, px)) in pics.iter().enumerate() {
            let data = bytes(px);
            let mut body = Vec::new();
            encode_glz_into(&mut dict, &src(&data, *w, *h), &mut body).unwrap();
            client.decode_body(&body, 1 << 20).unwrap();
            let held: Vec<u64> = dict.held_ids().collect();
            assert!(
                held.len() <= 2 && held.last() == Some(&(i as u64)),
                "{held:?}"
            );
            assert_eq!(client.held_ids().collect::<Vec<_>>(), held);
        }
    }

    #[test]
    fn decoder_rejects_references_it_cannot_satisfy() {
        let (w, h) = (64, 64);
        let a = ui(w, h, 0);
        let mut dict = GlzDictionary::new(1 << 20);
        let (mut b0, mut b1) = (Vec::new(), Vec::new());
        encode_glz_into(&mut dict, &src(&bytes(&a), w, h), &mut b0).unwrap();
        encode_glz_into(&mut dict, &src(&bytes(&a), w, h), &mut b1).unwrap();
        // The second image without the first: wrong id, and with the first missing.
        let mut fresh = GlzDecoderWindow::new(1 << 20);
        assert!(matches!(
            fresh.decode_body(&b1, 1 << 20),
            Err(GlzError::UnexpectedId { .. })
        ));
        // A window too small for both.
        let mut small = GlzDecoderWindow::new(5000);
        small.decode_body(&b0, 1 << 20).unwrap();
        assert!(small.decode_body(&b1, 1 << 20).is_err());
        // Every truncation fails without panicking and leaves the window as it was.
        let mut c = GlzDecoderWindow::new(1 << 20);
        c.decode_body(&b0, 1 << 20).unwrap();
        let stream = &b1[4..];
        for cut in 0..stream.len() {
            assert!(c.decode(&stream[..cut], 1 << 20).is_err(), "cut {cut}");
        }
        let mut long = stream.to_vec();
        long.push(0);
        assert!(matches!(
            c.decode(&long, 1 << 20),
            Err(GlzError::TrailingData { extra: 1 })
        ));
        c.decode(stream, 1 << 20).unwrap();
    }

    #[test]
    fn reference_bytes_follow_the_spice_gtk_layout() {
        // Round trip of every form through the writer and the decoder's parser: short offset
        // with image distances needing 0..3 extra bytes, long offset with and without the far
        // byte, long lengths.
        for &(len, dist, off) in &[
            (2usize, 0u64, 0u64),
            (7, 0, 4095),
            (300, 1, 12),
            (9, 64, 4095),
            (9, 70_000, 3),
            (9, (1 << 30) - 1, 3),
            (5, 0, 4096),
            (5, 3, (1 << 17) - 1),
            (5, 300, 1 << 17),
            (5, (1 << 24) - 1, MAX_OFFSET),
        ] {
            let mut out = Vec::new();
            write_ref(&mut out, len, dist, off);
            assert_eq!(
                out.len(),
                ref_cost(len, dist, off).unwrap(),
                "{len} {dist} {off}"
            );
            // Parse with the decoder's rules.
            let c = out[0];
            let mut i = 1;
            let mut l = u64::from(c >> 5);
            if l == 7 {
                loop {
                    let b = out[i];
                    i += 1;
                    l += u64::from(b);
                    if b != 255 {
                        break;
                    }
                }
            }
            let mut o = u64::from(c & 15) + (u64::from(out[i]) << 4);
            i += 1;
            let b = out[i];
            i += 1;
            let k = b >> 6;
            let mut d;
            if c & 0x10 == 0 {
                d = u64::from(b & 0x3f);
                for j in 0..k {
                    d += u64::from(out[i]) << (6 + 8 * j);
                    i += 1;
                }
            } else {
                o += u64::from(b & 0x1f) << 12;
                d = 0;
                for j in 0..k {
                    d += u64::from(out[i]) << (8 * j);
                    i += 1;
                }
                if b & 0x20 != 0 {
                    o += u64::from(out[i]) << 17;
                    i += 1;
                }
            }
            assert_eq!((l, d, o, i), (len as u64, dist, off, out.len()));
        }
    }
}

/// Writes the seed corpora of the GLZ fuzz targets (`fuzz/corpus/glz_roundtrip/seed-*`,
/// `fuzz/corpus/glz_decode/seed-*`). Run it explicitly:
/// `cargo test -p spice-bridge --lib write_glz_fuzz_seeds -- --ignored`.
#[cfg(test)]
#[test]
#[ignore = "writes files into fuzz/corpus"]
fn write_glz_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        crate::fuzzing::glz_roundtrip(bytes);
        crate::fuzzing::glz_decode(bytes);
    };
    // window byte, then (a, b, mode, len, pattern...) per picture
    let pic = |a: u8, b: u8, mode: u8, pattern: &[u8]| {
        let mut v = vec![a, b, mode, pattern.len() as u8];
        v.extend_from_slice(pattern);
        v
    };
    let text: Vec<u8> = (0..64u8).map(|i| if i % 9 < 2 { 3 } else { 0 }).collect();
    let noisy: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let seqs: Vec<(&str, u8, Vec<Vec<u8>>)> = vec![
        ("repeat", 31, vec![pic(40, 30, 0, &text), pic(0, 0, 1, &[])]),
        (
            "scroll",
            31,
            vec![
                pic(50, 40, 0, &noisy),
                pic(7, 0, 2, &text),
                pic(3, 0, 2, &noisy),
            ],
        ),
        (
            "retouch",
            20,
            vec![pic(63, 63, 0, &text), pic(5, 9, 3, &noisy)],
        ),
        (
            "evict",
            7,
            (0..8)
                .map(|k| pic(30 + k, 20, if k % 2 == 0 { 0 } else { 5 }, &text))
                .collect(),
        ),
        (
            "too-big",
            0,
            vec![pic(63, 63, 0, &noisy), pic(9, 9, 0, &text)],
        ),
        (
            "odd",
            10,
            vec![
                pic(0, 0, 0, &[1]),
                pic(2, 6, 0, &noisy),
                pic(255, 4, 0, &noisy),
            ],
        ),
    ];
    for (name, window, pics) in seqs {
        let mut v = vec![window];
        for p in pics {
            v.extend_from_slice(&p);
        }
        write("glz_roundtrip", name, &v);
    }
    // glz_decode: streams a window holding ids 0 and 1 (crate::fuzzing::glz_fuzz_window)
    // accepts as id 2, and one a fresh window accepts as id 0.
    let (dict, _) = crate::fuzzing::glz_fuzz_window();
    for (name, w, h, px) in [
        (
            "same",
            32u32,
            16u32,
            (0..512u32)
                .map(|i| (i / 5) % 7 * 0x0023_1105)
                .collect::<Vec<_>>(),
        ),
        (
            "scrolled",
            32,
            16,
            (0..512u32).map(|i| (i / 5 + 3) % 7 * 0x0023_1105).collect(),
        ),
        (
            "noise",
            13,
            11,
            (0..143u32).map(|i| i.wrapping_mul(2_654_435_761)).collect(),
        ),
        (
            "long",
            64,
            64,
            (0..4096u32).map(|i| (i / 700) * 0x10101).collect(),
        ),
    ] {
        let bytes: Vec<u8> = px.iter().flat_map(|p| p.to_le_bytes()).collect();
        let src = SourceImage::xrgb32(&bytes, w, h);
        let mut fresh = GlzDictionary::new(1 << 14);
        let mut body = Vec::new();
        encode_glz_into(&mut fresh, &src, &mut body).unwrap();
        write("glz_decode", &format!("{name}-id0"), &body[4..]);
        let mut d2 = dict.clone();
        let mut body = Vec::new();
        encode_glz_into(&mut d2, &src, &mut body).unwrap();
        write("glz_decode", &format!("{name}-id2"), &body[4..]);
    }
}
